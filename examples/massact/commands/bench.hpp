// massact bench MODEL_DIR [-p 256] [-n 0] [-d DEPTH] [-r 3] [-t THREADS] [--precision f32|bf16|q8] [--bandwidth] [--json]:
// prefill and decode speed, like llama-bench. Timing excludes loading and includes everything a forward does
// (embedding to logits); each figure is the best of the repeats, after one warm-up run. One more, profiled
// prefill gives the split of its time per stage (products, attention, norms, activations, the rest).
// Decoding is bounded by memory: every token reads every weight once. The JSON gives those bytes
// (decode_weight_bytes) and, with --bandwidth, the machine's read bandwidth with the same threads (a STREAM-style
// sum over 1 GiB) and the decode speed as a fraction of the limit it sets.
#pragma once

#include "common.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace massact_tool {

struct BenchArgs {
    std::string model = default_model();
    Index prefill = 256;  // -p: tokens of the prefill forward (0: none)
    Index decode = 0;     // -n: tokens decoded one at a time (0: none)
    Index depth = -1;     // -d: tokens in the KV cache before decoding (< 0: -p)
    int repeats = 3;
    int threads = 0;      // 0: OpenMP's default
    std::string precision = "f32";
    std::string kv_cache = "f32";
    bool bandwidth = false;  // --bandwidth: measure the read bandwidth too
    bool json = false;
};

/// The bytes of stored weights one decoded token reads: every block matrix (every expert of a mixture) and the LM
/// head, as stored (quantized blocks included); the embedding contributes one row.
inline double decode_weight_bytes(const massact::Transformer& m) {
    double total = 0;
    auto add = [&](const massact::WeightMatrix& w) {
        if (w.bound() && w.source()) total += static_cast<double>(w.source()->nbytes) * double(w.out() * w.in()) /
                                             std::max(1.0, double(w.source()->numel()));
    };
    for (const auto& L : m.weights().layers) {
        for (const auto* w : {&L.q, &L.k, &L.v, &L.qkv, &L.o, &L.gate, &L.up, &L.gate_up, &L.down, &L.router}) add(*w);
        for (const auto& X : L.experts)
            for (const auto* w : {&X.gate, &X.up, &X.gate_up, &X.down}) add(*w);
    }
    add(m.weights().lm_head);
    return total;
}

/// Read bandwidth in GB/s with the current OpenMP team: the best of 5 sums over a 1 GiB buffer (64-bit words, which
/// vectorise without reassociating floats), each thread reading its contiguous share, as a decode step streams
/// its share of every matrix.
inline double read_bandwidth_gbps() {
    const std::size_t n = (std::size_t(1) << 30) / sizeof(std::uint64_t);
    std::vector<std::uint64_t> buf(n);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (std::size_t i = 0; i < n; ++i) buf[i] = i;  // (touched by the thread that will read it)
    double best = 1e300;
    std::uint64_t sink = 0;
    for (int r = 0; r < 5; ++r) {
        std::uint64_t s = 0;
        const auto t0 = std::chrono::steady_clock::now();
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) reduction(+ : s)
#endif
        for (std::size_t i = 0; i < n; ++i) s += buf[i];
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        sink += s;
    }
    if (sink == 42) std::printf(" ");  // (keeps the sums)
    return static_cast<double>(n * sizeof(std::uint64_t)) / best / 1e9;
}

/// Best (shortest) of `repeats` timings of f() after one untimed warm-up; `before()` runs untimed before each.
template <typename Before, typename F>
double best_seconds(int repeats, Before&& before, F&& f) {
    double best = 1e300;
    for (int r = -1; r < repeats; ++r) {
        before();
        const auto t0 = std::chrono::steady_clock::now();
        f();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (r >= 0) best = std::min(best, s);
    }
    return best;
}

inline int run_bench(BenchArgs& a) {
    massact::RunOptions opts;
    opts.precision = massact::kernels::precision_from_name(a.precision, "--precision");
    if (a.prefill < 0 || a.decode < 0) throw Error("-p and -n must not be negative");
    if (a.prefill == 0 && a.decode == 0) throw Error("nothing to measure: give -p or -n a positive value");
    if (a.threads < 0) throw Error("-t: must not be negative, got " + std::to_string(a.threads));
#if defined(_OPENMP)
    if (a.threads > 0) omp_set_num_threads(a.threads);
    const int threads = omp_get_max_threads();
#else
    const int threads = 1;
#endif
    const massact::Transformer m(a.model);
    const Index V = m.config().vocab_size, depth = a.depth < 0 ? a.prefill : a.depth;
    auto random_ids = [&](Index n, Index seed) {
        TokenBatch ids(1, std::max<Index>(n, 1));
        for (Index t = 0; t < ids.cols(); ++t) ids(0, t) = ((t + seed) * 7919 + 1) % V;
        return ids;
    };
    nlohmann::json j = {{"model", a.model},   {"threads", threads},    {"precision", massact::kernels::precision_name(m.precision_for(opts.precision))},
                        {"tokens", a.prefill}, {"repeats", a.repeats}, {"native_bf16_dot", massact::kernels::native_bf16_dot()}};
    massact::Workspace ws;
    if (a.prefill > 0) {
        const TokenBatch ids = random_ids(a.prefill, 0);
        m.validate(ids);
        const double s = best_seconds(a.repeats, [] {}, [&] { m.run(ids, ws, {}, opts); });
        j["prefill_tokens_per_s"] = static_cast<double>(a.prefill) / s;
        std::printf("prefill %6lld tokens            %10.1f tokens/s  (%d threads, %s)\n", static_cast<long long>(a.prefill),
                    static_cast<double>(a.prefill) / s, threads, a.precision.c_str());
        massact::StageTimes st;
        massact::RunOptions profiled = opts;
        profiled.profile = &st;
        m.run(ids, ws, {}, profiled);
        const std::pair<const char*, double> stages[] = {{"matmul", st.matmul},         {"attention", st.attention},
                                                         {"norm", st.norm},             {"activation", st.activation},
                                                         {"other", st.other()}};
        nlohmann::json split = nlohmann::json::object();
        std::printf("  time per stage:");
        for (const auto& [name, sec] : stages) {
            split[name] = {{"seconds", sec}, {"fraction", sec / st.total}};
            std::printf(" %s %.1f%%", name, 100.0 * sec / st.total);
        }
        std::printf("\n");
        j["prefill_stages"] = split;
    }
    if (a.decode > 0) {
        m.validate(random_ids(1, 0), depth + a.decode - 1);
        massact::CachePolicy dense;
        dense.storage = massact::kernels::kv_format_from_name(a.kv_cache, "--kv-cache");
        massact::KVCache filled(m.config(), 1, dense);
        if (depth > 0) m.run(random_ids(depth, 1), filled, ws, {}, opts);
        massact::KVCache cache = filled;
        const TokenBatch next = random_ids(a.decode, 2);
        const double s = best_seconds(a.repeats, [&] { cache = filled; }, [&] {
            for (Index t = 0; t < a.decode; ++t) m.run(next.middleCols(t, 1), cache, ws, {}, opts);
        });
        j["decode_tokens_per_s"] = static_cast<double>(a.decode) / s;
        j["decode_tokens"] = a.decode;
        j["kv_cache"] = a.kv_cache;
        j["decode_depth"] = depth;
        std::printf("decode  %6lld tokens at cache %-6lld %7.1f tokens/s  (%d threads, %s, KV cache %s)\n",
                    static_cast<long long>(a.decode), static_cast<long long>(depth), static_cast<double>(a.decode) / s, threads,
                    a.precision.c_str(), a.kv_cache.c_str());
        const double bytes = decode_weight_bytes(m);
        j["decode_weight_bytes"] = bytes;
        if (a.bandwidth) {
            const double gbps = read_bandwidth_gbps(), limit = gbps * 1e9 / bytes;
            j["read_bandwidth_gbps"] = gbps;
            j["decode_bandwidth_limit_tokens_per_s"] = limit;
            j["decode_fraction_of_limit"] = static_cast<double>(a.decode) / s / limit;
            std::printf("  weights read per token %.2f GB, read bandwidth %.1f GB/s: limit %.1f tokens/s, decode at %.2f of it\n",
                        bytes / 1e9, gbps, limit, static_cast<double>(a.decode) / s / limit);
        }
    }
    if (a.json) std::printf("%s\n", j.dump(1).c_str());
    return 0;
}

inline void add_bench(CLI::App& app, BenchArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("bench", "Prefill and decode speed in tokens/s (best of the repeats, after a warm-up)");
    cmd->add_option("model", a.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    cmd->add_option("-p,--prefill", a.prefill, "Tokens in one prefill forward (0: skip)")->capture_default_str();
    cmd->add_option("-n,--decode", a.decode, "Tokens decoded one at a time through the KV cache (0: skip)")->capture_default_str();
    cmd->add_option("-d,--depth", a.depth, "Tokens in the KV cache before decoding (default: -p)");
    cmd->add_option("-r,--repeats", a.repeats, "Timed repeats (the best is reported)")->check(CLI::PositiveNumber)->capture_default_str();
    cmd->add_option("-t,--threads", a.threads, "OpenMP threads (0: OMP_NUM_THREADS or all cores)")->capture_default_str();
    add_precision_option(cmd, a.precision);
    add_kv_cache_option(cmd, a.kv_cache);
    cmd->add_flag("--bandwidth", a.bandwidth, "Measure the read bandwidth (1 GiB, same threads) and decode's fraction of the limit it sets");
    cmd->add_flag("--json", a.json, "Print the results as JSON after the table");
    cmd->callback([&] { action = [&] { return run_bench(a); }; });
}

}  // namespace massact_tool

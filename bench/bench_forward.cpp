// Forward-pass (prefill) speed beside llama.cpp on the same weights, measured in the same run:
//   BM_Forward/<model>/<precision>   massact's forward of T = 256 tokens, embedding to all logits
//     models: tiny-llama (bundled), tinyllama-1.1b (random BF16 weights, TinyLlama-1.1B's shapes)
//     precision: f32 (the exact path) or bf16 (bfloat16 products, float32 sums)
//   tokens/s        massact's throughput
//   GFLOP/s         massact's (projections, all logits, causal attention) / time
//   peer_tokens/s   llama-bench -p 256 -n 0 on the GGUF of the same weights (F32 for f32, BF16 for bf16),
//                   run once per benchmark, right after massact's iterations
//   ratio           tokens/s / peer_tokens/s (> 1: faster than llama.cpp here)
// The peer and its GGUF files come from bench/peers.sh, which builds llama.cpp from npm's node-llama-cpp
// bundle into PEERS_DIR (default /tmp/massact-peers); without them the benchmark stops with that message.
#include "bench_flops.hpp"
#include "random_checkpoint.hpp"

#include <sys/stat.h>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>

namespace {

bool exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

std::string peers_dir() {
    const char* d = std::getenv("PEERS_DIR");
    return d && *d ? d : "/tmp/massact-peers";
}

/// llama-bench's tokens/s for a prefill of T tokens on `gguf` (one run, the threads massact uses); < 0 on failure.
double llama_bench(const std::string& gguf, massact::Index T, int threads) {
    const std::string cmd = peers_dir() + "/llama.cpp/build/bin/llama-bench -m " + gguf + " -p " + std::to_string(T) +
                            " -n 0 -r 3 -o csv -t " + std::to_string(threads) + " 2>/dev/null";
    FILE* f = ::popen(cmd.c_str(), "r");
    if (!f) return -1;
    char line[4096];
    std::string last;
    while (std::fgets(line, sizeof line, f)) last = line;
    if (::pclose(f) != 0 || last.empty()) return -1;
    // csv: the avg_ts column is the second to last
    std::vector<std::string> cols;
    std::string cell;
    bool quoted = false;
    for (char ch : last) {
        if (ch == '"') quoted = !quoted;
        else if (ch == ',' && !quoted) cols.push_back(cell), cell.clear();
        else if (ch != '\n') cell += ch;
    }
    cols.push_back(cell);
    return cols.size() >= 2 ? std::atof(cols[cols.size() - 2].c_str()) : -1;
}

void run_forward(benchmark::State& state, const std::string& dir, const std::string& gguf, massact::kernels::Precision precision) {
    if (!exists(gguf) || !exists(peers_dir() + "/llama.cpp/build/bin/llama-bench")) {
        state.SkipWithError(("no peer: " + gguf + " or llama-bench missing; run bench/peers.sh first").c_str());
        return;
    }
    const massact::Transformer model(dir);
    const massact::Index T = state.range(0);
    massact::TokenBatch ids(1, T);
    for (massact::Index t = 0; t < T; ++t) ids(0, t) = (t * 131 + 1) % model.config().vocab_size;
    massact::Workspace ws;  // buffers reused across iterations, as an engine would
    massact::RunOptions opts;
    opts.precision = precision;
    model.run(ids, ws, {}, opts);  // warm-up
    double seconds = 0;
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        benchmark::DoNotOptimize(model.run(ids, ws, {}, opts).data());
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    const double tps = double(T) * double(state.iterations()) / seconds;
#if defined(_OPENMP)
    const int threads = omp_get_max_threads();
#else
    const int threads = 1;
#endif
    const double peer = llama_bench(gguf, T, threads);
    if (peer <= 0) {
        state.SkipWithError(("llama-bench failed on " + gguf).c_str());
        return;
    }
    const double flops = bench::gemm_flops(bench::forward_gemms(model.config(), T)) + bench::attention_flops(model.config(), T);
    state.counters["tokens/s"] = tps;
    state.counters["GFLOP/s"] = flops * tps / double(T) / 1e9;
    state.counters["peer_tokens/s"] = peer;
    state.counters["ratio"] = tps / peer;
}

void BM_ForwardTinyLlama(benchmark::State& state, massact::kernels::Precision p, const char* kind) {
    run_forward(state, std::string(MASSACT_SOURCE_DIR) + "/examples/models/tiny-llama",
                peers_dir() + "/tiny-llama-" + kind + ".gguf", p);
}

void BM_ForwardTinyLlama1B(benchmark::State& state, massact::kernels::Precision p, const char* kind) {
    const std::string dir = peers_dir() + "/tinyllama-1.1b";  // written by bench/peers.sh (make_checkpoint)
    run_forward(state, dir, peers_dir() + "/tinyllama-1.1b-" + kind + ".gguf", p);
}

using massact::kernels::Precision;
BENCHMARK_CAPTURE(BM_ForwardTinyLlama, f32, Precision::F32, "f32")->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_ForwardTinyLlama, bf16, Precision::BF16, "bf16")->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_ForwardTinyLlama1B, f32, Precision::F32, "f32")->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK_CAPTURE(BM_ForwardTinyLlama1B, bf16, Precision::BF16, "bf16")->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

}  // namespace

BENCHMARK_MAIN();

// massact stream MODEL (--data FILE | --ids-file FILE[:TENSOR]) [--tokens N] [--policy dense|cache|recompute]
//                [--sinks S] [--window W] [--compare] [--kv-cache f16] [--kv-quant kv4,keep-first=1] [--json OUT] [--figure OUT.png]
// massact generate MODEL (--prompt TEXT | --ids ...) [-n 64] [--temperature 0] [--seed S] [--sinks S --window W]
#pragma once

#include "common.hpp"

#include "../input.hpp"
#include "../progress.hpp"
#include "../../plot/gnuplot.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace massact_tool {

struct StreamArgs {
    std::string model = default_model();
    std::string data, ids_file;
    Index tokens = 2048;
    std::string policy = "cache";
    Index sinks = 4, window = 60;
    bool sinks_given = false, compare = false;
    std::string json, figure;
    std::string precision = "f32";
    std::string kv_cache = "f32";
    std::string kv_quant;
};

/// The stream: BOS + the text of --data encoded as one text, or the first sequence of --ids-file as given;
/// its first `tokens` tokens (0: all).
inline std::vector<std::int64_t> stream_tokens(const StreamArgs& a) {
    if (a.data.empty() == a.ids_file.empty()) throw Error("give one of --data and --ids-file");
    if (a.tokens < 0 || a.tokens == 1) throw Error("--tokens: " + std::to_string(a.tokens) + ": expected at least 2 (0: the whole stream)");
    TokenBatch b;
    if (!a.data.empty()) {
        b = tokenize_text(a.model, read_text_file(a.data, "--data"), "--data");
    } else {
        bool single = false;
        b = read_ids_file(a.ids_file, single);
    }
    const Index n = a.tokens == 0 ? b.cols() : std::min(a.tokens, b.cols());
    if (a.tokens > b.cols())
        std::fprintf(stderr, "massact: note: the stream has %lld tokens, fewer than --tokens %lld\n", static_cast<long long>(b.cols()),
                     static_cast<long long>(a.tokens));
    return std::vector<std::int64_t>(b.data(), b.data() + n);  // row-major: the first sequence
}

/// The runs of --compare: dense, window 0+W, sinks 1+(W-1) and 4+(W-4), recompute W (W: the cache size).
inline std::vector<massact::analysis::StreamOptions> compare_runs(Index W) {
    using massact::analysis::StreamPolicy;
    std::vector<massact::analysis::StreamOptions> runs(5);
    runs[0].policy = StreamPolicy::Dense;
    const Index sinks[] = {0, 1, 4};
    for (int i = 0; i < 3; ++i) {
        runs[static_cast<std::size_t>(1 + i)].sinks = std::min(sinks[i], W - 1);
        runs[static_cast<std::size_t>(1 + i)].window = W - runs[static_cast<std::size_t>(1 + i)].sinks;
    }
    runs[4].policy = StreamPolicy::Recompute;
    runs[4].sinks = 0;
    runs[4].window = W;
    return runs;
}

inline std::string run_label(const massact::analysis::StreamOptions& o) {
    using massact::analysis::StreamPolicy;
    if (o.policy == StreamPolicy::Dense) return "dense";
    if (o.policy == StreamPolicy::Recompute) return "recompute " + std::to_string(o.window);
    return (o.sinks == 0 ? "window " : "sinks ") + std::to_string(o.sinks) + "+" + std::to_string(o.window);
}

/// The run's label with its KV quantization, if any.
inline std::string run_label_kv(const massact::analysis::StreamOptions& o) {
    return run_label(o) + (o.kv_quant.active() ? " kv " + o.kv_quant.name() : "");
}

inline double mean_of(const std::vector<double>& v, std::size_t from, std::size_t to) {
    to = std::min(to, v.size());
    if (from >= to) return std::nan("");
    double s = 0;
    for (std::size_t i = from; i < to; ++i) s += v[i];
    return s / static_cast<double>(to - from);
}

inline nlohmann::json stream_json(const massact::analysis::StreamResult& r) {
    nlohmann::json j = {{"policy", massact::analysis::policy_name(r.options.policy)},
                        {"sinks", r.options.policy == massact::analysis::StreamPolicy::Cache ? r.options.sinks : 0},
                        {"window", r.options.policy == massact::analysis::StreamPolicy::Dense ? 0 : r.options.window},
                        {"tokens", r.nll.size() + 1},
                        {"ppl", r.ppl},
                        {"tokens_per_s", r.tokens_per_s()},
                        {"kv_quant", r.options.kv_quant.name()},
                        {"nll", r.nll}};
    if (!r.sink_attention.empty()) j["sink_attention"] = r.sink_attention;
    return j;
}

inline int run_stream(StreamArgs& a) {
    using namespace massact::analysis;
    const massact::Transformer m(a.model);
    const auto ids = stream_tokens(a);
    std::vector<StreamOptions> runs;
    const massact::KVQuant kvq = massact::KVQuant::parse(a.kv_quant, "--kv-quant");
    if (a.compare && kvq.active())
        throw Error("--kv-quant: --compare includes the recompute policy, which has no KV cache to quantize; run --policy dense or cache");
    if (a.compare) {
        if (a.window < 2) throw Error("--window: --compare needs a cache of at least 2 tokens, got " + std::to_string(a.window));
        runs = compare_runs(a.window);
    } else {
        StreamOptions o;
        o.policy = parse_policy(a.policy);
        o.window = a.window;
        o.sinks = o.policy == StreamPolicy::Recompute && !a.sinks_given ? 0 : a.sinks;
        if (o.policy == StreamPolicy::Recompute && o.sinks != 0)
            throw Error("--sinks: the recompute policy keeps no sink tokens (it runs the last W tokens from scratch)");
        if (o.policy != StreamPolicy::Dense && a.window < 1) throw Error("--window: must be at least 1, got " + std::to_string(a.window));
        if (a.sinks < 0) throw Error("--sinks: must not be negative, got " + std::to_string(a.sinks));
        runs.push_back(o);
    }
    std::vector<StreamResult> results;
    for (auto& o : runs) {
        o.run.precision = massact::kernels::precision_from_name(a.precision, "--precision");
        o.cache_storage = massact::kernels::kv_format_from_name(a.kv_cache, "--kv-cache");
        o.kv_quant = kvq;
        Progress bar(run_label_kv(o));
        o.progress = [&bar](Index done, Index total) { bar(done, total); };
        results.push_back(stream_nll(m, ids, o));
    }
    const std::size_t n = ids.size() - 1;
    std::printf("%zu tokens; log-perplexity (mean NLL) by position, perplexity, speed\n", n + 1);
    int width = 16;  // (the label column fits the longest label)
    for (const auto& r : results) width = std::max(width, static_cast<int>(run_label_kv(r.options).size()));
    std::printf("%-*s %10s %10s %10s %10s %12s\n", width, "policy", "first 1/4", "last 1/2", "ppl", "log ppl", "tokens/s");
    for (const auto& r : results)
        std::printf("%-*s %10.3f %10.3f %10.3f %10.4f %12.1f\n", width, run_label_kv(r.options).c_str(), mean_of(r.nll, 0, n / 4),
                    mean_of(r.nll, n / 2, n), r.ppl, std::log(r.ppl), r.tokens_per_s());
    if (!a.figure.empty()) {
        std::vector<massact_plot::StreamCurve> curves;
        for (const auto& r : results) curves.push_back({run_label(r.options), r.nll, r.sink_attention});
        massact_plot::write_figure(a.figure, [&](const massact_plot::Figure& f) {
            return massact_plot::stream_curves(f, curves, std::max<Index>(16, static_cast<Index>(n) / 48), "streaming: " + m.config().model_type);
        });
    }
    if (!a.json.empty()) {
        nlohmann::json j;
        if (a.compare) {
            j = {{"model", a.model}, {"tokens", n + 1}, {"runs", nlohmann::json::array()}};
            for (const auto& r : results) j["runs"].push_back(stream_json(r));
        } else {
            j = stream_json(results[0]);
        }
        massact::io::write_text_file_atomic(a.json, j.dump(1) + "\n");
    }
    return 0;
}

inline void add_stream(CLI::App& app, StreamArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("stream", "Per-token loss of a long stream under a KV-cache policy (StreamingLLM)");
    cmd->add_option("model", a.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    cmd->add_option("--data", a.data, "Text file: BOS + the whole text encoded as one stream");
    cmd->add_option("--ids-file", a.ids_file, "FILE[:TENSOR]: token ids as given (the first sequence)");
    cmd->add_option("--tokens", a.tokens, "Use the first N tokens of the stream (0: all)")->capture_default_str();
    cmd->add_option("--policy", a.policy,
                    "dense (every token, absolute positions), cache (S sinks + W recent, positions = index in the cache), "
                    "recompute (the last W tokens from scratch for each prediction)")
        ->capture_default_str();
    cmd->add_option("--sinks", a.sinks, "cache: the first S tokens are kept")
        ->capture_default_str()
        ->each([&](const std::string&) { a.sinks_given = true; });
    cmd->add_option("--window", a.window, "cache: the W most recent tokens are kept (S + W in all); recompute: window length")
        ->capture_default_str();
    cmd->add_flag("--compare", a.compare,
                  "Run dense, window 0+W, sinks 1+(W-1) and 4+(W-4), recompute W (W = --window, the cache size)");
    cmd->add_option("--json", a.json, "Write {ppl, nll, policy, sinks, window, tokens, tokens_per_s} (--compare: {runs})");
    cmd->add_option("--figure", a.figure, "Write log-perplexity vs position and attention on the sinks (PNG, gnuplot)");
    add_precision_option(cmd, a.precision);
    add_kv_cache_option(cmd, a.kv_cache);
    add_kv_quant_option(cmd, a.kv_quant);
    cmd->callback([&] { action = [&] { return run_stream(a); }; });
}

struct GenerateArgs {
    std::string model = default_model();
    TokenInput input;
    Index n = 64;
    double temperature = 0.0;
    std::uint64_t seed = 0;
    Index sinks = 0, window = 0;
    std::string precision = "f32";
    std::string kv_cache = "f32";
    std::string kv_quant;
};

inline int run_generate(GenerateArgs& a) {
    const massact::Transformer m(a.model);
    if (!a.input.ids_file.empty() || !a.input.text_file.empty()) throw Error("generate: give --prompt or --ids");
    const TokenBatch b = load_tokens(a.input, a.model);
    if (a.n < 0) throw Error("-n: must not be negative, got " + std::to_string(a.n));
    if (a.temperature < 0) throw Error("--temperature: must not be negative, got " + fmt(a.temperature));
    if (a.sinks < 0 || a.window < 0) throw Error("--sinks and --window must not be negative");
    if (a.sinks > 0 && a.window == 0) throw Error("--sinks: needs --window (the recent tokens kept besides the sinks)");
    massact::analysis::GenerateOptions o;
    o.max_tokens = a.n;
    o.temperature = a.temperature;
    o.seed = a.seed;
    o.stop = m.config().eos_token_ids;
    o.run.precision = massact::kernels::precision_from_name(a.precision, "--precision");
    if (a.window > 0) o.cache = massact::CachePolicy::streaming(a.sinks, a.window);
    o.cache.storage = massact::kernels::kv_format_from_name(a.kv_cache, "--kv-cache");
    o.cache.quant = massact::KVQuant::parse(a.kv_quant, "--kv-quant");
    const std::vector<std::int64_t> prompt(b.data(), b.data() + b.cols());
    if (!massact::text::has_tokenizer(a.model)) {  // ids only
        massact::analysis::generate(m, prompt, o, [](std::int64_t t) {
            std::printf("%lld ", static_cast<long long>(t));
            std::fflush(stdout);
            return true;
        });
        std::printf("\n");
        return 0;
    }
    const auto tok = massact::text::load_tokenizer(a.model);
    std::vector<std::int64_t> out;
    std::string shown;
    // Print what the decoded text gained; a partial UTF-8 character waits for the token that completes it.
    auto show = [&](bool last) {
        const std::string text = tok.decode(out, true);
        if (text.compare(0, shown.size(), shown) != 0 || (!last && text.find("\xEF\xBF\xBD", shown.size()) != std::string::npos)) return;
        std::fputs(text.c_str() + shown.size(), stdout);
        std::fflush(stdout);
        shown = text;
    };
    std::fputs(tok.decode(prompt, true).c_str(), stdout);
    massact::analysis::generate(m, prompt, o, [&](std::int64_t t) {
        out.push_back(t);
        show(false);
        return true;
    });
    show(true);
    std::printf("\n");
    return 0;
}

inline void add_generate(CLI::App& app, GenerateArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("generate", "Continue a prompt, one token at a time through a KV cache, streamed");
    cmd->add_option("model", a.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    add_token_options(cmd, a.input);
    cmd->add_option("-n,--max-tokens", a.n, "Tokens to generate (fewer if the model's EOS comes first)")->capture_default_str();
    cmd->add_option("--temperature", a.temperature, "0: greedy; > 0: sample from softmax(logits / T)")->capture_default_str();
    cmd->add_option("--seed", a.seed, "Seed of the sampler")->capture_default_str();
    cmd->add_option("--sinks", a.sinks, "Keep the first S tokens in the cache (with --window)")->capture_default_str();
    cmd->add_option("--window", a.window, "Keep the W most recent tokens (0: keep everything)")->capture_default_str();
    add_precision_option(cmd, a.precision);
    add_kv_cache_option(cmd, a.kv_cache);
    add_kv_quant_option(cmd, a.kv_quant);
    cmd->callback([&] { action = [&] { return run_generate(a); }; });
}

}  // namespace massact_tool

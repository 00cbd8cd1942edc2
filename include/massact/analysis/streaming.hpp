// massact/analysis/streaming.hpp - generation with a KV cache, and StreamingLLM's experiment: the
// per-token loss of a long stream under a cache policy (Xiao et al. 2024, "Efficient Streaming Language
// Models with Attention Sinks").
//
// The stream is one token sequence x_0 .. x_{N-1} (usually BOS first); token t+1 is predicted from what
// the policy lets the model see of x_0 .. x_t, and nll[t] = -log p(x_{t+1} | ...) (log-softmax in double).
//   Dense      every earlier token, absolute positions (the full forward; breaks past the trained length).
//   Cache      a KV cache of S sink tokens + the W most recent (S + W in all, the new one included),
//              positions = index in the cache, the query at the last index (StreamingLLM). S = 0 is plain
//              window attention: the first tokens are evicted once the cache is full.
//   Recompute  the last W tokens x_{t-W+1} .. x_t run from scratch at positions 0 .. W-1 ("sliding window
//              with re-computation": exact for a model trained on W-token windows that need not start at
//              BOS, and W times the work of a cache).
#pragma once

#include "massact/analysis/perplexity.hpp"
#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/model/hooks.hpp"
#include "massact/model/kv_cache.hpp"
#include "massact/model/transformer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace massact::analysis {

enum class StreamPolicy { Dense, Cache, Recompute };

inline const char* policy_name(StreamPolicy p) {
    switch (p) {
        case StreamPolicy::Dense: return "dense";
        case StreamPolicy::Cache: return "cache";
        case StreamPolicy::Recompute: return "recompute";
    }
    return "?";
}

inline StreamPolicy parse_policy(const std::string& s) {
    if (s == "dense") return StreamPolicy::Dense;
    if (s == "cache") return StreamPolicy::Cache;
    if (s == "recompute") return StreamPolicy::Recompute;
    throw Error("stream policy \"" + s + "\": expected dense, cache or recompute");
}

struct StreamOptions {
    StreamPolicy policy = StreamPolicy::Cache;
    Index sinks = 4;    // Cache: S
    Index window = 60;  // Cache: W (S + W tokens in the cache); Recompute: the window length
    Index chunk = 256;  // Dense: tokens per incremental forward
    Index batch = 16;   // Recompute: windows per forward
    bool sink_attention = true;  // record the attention on the cache's first tokens (Dense, Cache)
    kernels::KVFormat cache_storage = kernels::KVFormat::F32;  // Dense, Cache: keys and values in f32, f16 or bf16
    KVQuant kv_quant{};          // Dense, Cache: fake quantization of the cached keys and values (KIVI, KVQuant, IntactKV)
    RunOptions run;              // e.g. precision (Precision::Q8: a quantized GGUF decoded as llama.cpp does)
    std::function<void(Index, Index)> progress;  // (tokens done, total)
};

struct StreamResult {
    StreamOptions options;
    std::vector<double> nll;             // [N-1]: nll[t] = -log p(x_{t+1} | the policy's view of x_0..x_t)
    std::vector<double> sink_attention;  // [N-1]: attention of token t on the first max(S, 1) held tokens
    double ppl = 0.0;                    // exp(mean nll)
    double seconds = 0.0;                // wall time of the forwards
    double tokens_per_s() const { return seconds > 0 ? static_cast<double>(nll.size() + 1) / seconds : 0.0; }
};

namespace detail {

/// Mean over the attention layers and heads of the attention each new query pays to the first `first` keys (none for a
/// model without attention), from the streamed
/// softmax (attn.hook_pattern_columns at keys 0 .. first-1 of an incremental forward, [N = 1, H, T, first]: no
/// [H, T, K] pattern is materialised); out[t] for query t.
class SinkAttention {
public:
    SinkAttention(const ModelConfig& c, Index first) : first_(first) {
        for (int l = 0; l < c.num_layers; ++l) layers_ += c.layer_attention(l);  // (the mean over the layers with attention)
    }
    Hooks hooks() {
        Hooks h;
        h.add_if_present("blocks.*.attn.hook_pattern_columns", [this](Activation& a) {
            const Index H = a.shape[1], T = a.shape[2], C = a.shape[3];
            sum_.resize(static_cast<std::size_t>(T), 0.0);
            for (Index hh = 0; hh < H; ++hh)
                for (Index t = 0; t < T; ++t) {
                    const float* row = a.data + (hh * T + t) * C;
                    double s = 0.0;
                    for (Index j = 0; j < C; ++j) s += row[j];  // (keys past the held ones read 0)
                    sum_[static_cast<std::size_t>(t)] += s / static_cast<double>(H * layers_);
                }
        });
        return h;
    }
    /// `run` asking the forward for the probabilities of keys 0 .. first-1.
    RunOptions columns(RunOptions run) const {
        run.pattern_columns.resize(1, first_);
        for (Index j = 0; j < first_; ++j) run.pattern_columns(0, j) = j;
        return run;
    }
    /// The values of the last forward's queries, appended to out; resets.
    void take(std::vector<double>& out) {
        out.insert(out.end(), sum_.begin(), sum_.end());
        sum_.clear();
    }

private:
    int layers_ = 0;
    Index first_;
    std::vector<double> sum_;
};

inline TokenBatch row_of(const std::vector<std::int64_t>& ids, Index from, Index n) {
    TokenBatch b(1, n);
    for (Index i = 0; i < n; ++i) b(0, i) = ids[static_cast<std::size_t>(from + i)];
    return b;
}

}  // namespace detail

/// Feed `ids` to the model through `cache` as its policy allows: as many tokens per forward as fit
/// without an eviction in between (at most `chunk`), then one at a time. `each(first, logits)` sees the
/// logits [T, V] of tokens first .. first + T - 1 after each forward.
inline void feed(const Transformer& model, KVCache& cache, Workspace& ws, const std::vector<std::int64_t>& ids,
                 Index chunk, const std::function<void(Index, const RowMatrixF&)>& each, const Hooks& hooks = {},
                 const RunOptions& options = {}) {
    const CachePolicy& pol = cache.policy();
    const auto n = static_cast<Index>(ids.size());
    for (Index t = 0; t < n;) {
        Index step = std::min(chunk, n - t);
        if (pol.evicts()) step = std::max<Index>(1, std::min(step, pol.capacity() - cache.size()));
        const RowMatrixF& logits = model.run(detail::row_of(ids, t, step), cache, ws, hooks, options);
        if (each) each(t, logits);
        t += step;
    }
}

/// The per-token loss of one token stream under a policy (see the top of this file).
inline StreamResult stream_nll(const Transformer& model, const std::vector<std::int64_t>& ids, const StreamOptions& o) {
    const auto N = static_cast<Index>(ids.size());
    if (N < 2) throw Error("stream: the stream needs at least 2 tokens, got " + std::to_string(N));
    if (o.policy != StreamPolicy::Dense && (o.window < 1 || o.sinks < 0))
        throw Error("stream: the " + std::string(policy_name(o.policy)) + " policy needs a window >= 1 and sinks >= 0 (got window " +
                    std::to_string(o.window) + ", sinks " + std::to_string(o.sinks) + ")");
    if (o.policy == StreamPolicy::Recompute && o.sinks != 0)
        throw Error("stream: the recompute policy keeps no sink tokens (it runs the last W tokens from scratch): use --sinks 0");
    if (o.policy == StreamPolicy::Recompute && o.kv_quant.active())
        throw Error("stream: the recompute policy runs without a KV cache: there is no cache to quantize (" + o.kv_quant.name() + ")");
    StreamResult r;
    r.options = o;
    r.nll.reserve(static_cast<std::size_t>(N - 1));
    const auto start = std::chrono::steady_clock::now();
    const Index V = model.config().vocab_size;
    Workspace ws;
    if (o.policy == StreamPolicy::Recompute) {
        require_at_least(o.batch, 1, "stream: batch");
        // Predictions 1 .. W come from one forward over x_0 .. x_{W-1}; prediction t > W from x_{t-W} .. x_{t-1}.
        const Index W = std::min(o.window, N - 1);
        const RowMatrixF& first = model.run(detail::row_of(ids, 0, W), ws, {}, o.run);
        for (Index t = 0; t < W; ++t) r.nll.push_back(-log_prob(first.row(t).data(), V, ids[static_cast<std::size_t>(t + 1)]));
        if (o.progress) o.progress(W, N - 1);
        for (Index t0 = W + 1; t0 < N; t0 += o.batch) {  // targets t0 .. t0 + nb - 1
            const Index nb = std::min(o.batch, N - t0);
            TokenBatch windows(nb, W);
            for (Index b = 0; b < nb; ++b)
                for (Index i = 0; i < W; ++i) windows(b, i) = ids[static_cast<std::size_t>(t0 + b - W + i)];
            const RowMatrixF& logits = model.run(windows, ws, {}, o.run);
            for (Index b = 0; b < nb; ++b)
                r.nll.push_back(-log_prob(logits.row(b * W + W - 1).data(), V, ids[static_cast<std::size_t>(t0 + b)]));
            if (o.progress) o.progress(t0 + nb - 1, N - 1);
        }
    } else {
        CachePolicy pol = o.policy == StreamPolicy::Dense ? CachePolicy::dense() : CachePolicy::streaming(o.sinks, o.window);
        pol.storage = o.cache_storage;
        pol.quant = o.kv_quant;
        KVCache cache(model.config(), 1, pol);
        detail::SinkAttention sinks(model.config(), std::max<Index>(o.sinks, 1));
        const Hooks hooks = o.sink_attention ? sinks.hooks() : Hooks{};
        const std::vector<std::int64_t> inputs(ids.begin(), ids.end() - 1);  // the last token is only a target
        feed(model, cache, ws, inputs, o.chunk, [&](Index t0, const RowMatrixF& logits) {
            for (Index i = 0; i < logits.rows(); ++i)
                r.nll.push_back(-log_prob(logits.row(i).data(), V, ids[static_cast<std::size_t>(t0 + i + 1)]));
            if (o.sink_attention) sinks.take(r.sink_attention);
            if (o.progress) o.progress(t0 + logits.rows(), N - 1);
        }, hooks, o.sink_attention ? sinks.columns(o.run) : o.run);
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double sum = 0.0;
    for (double x : r.nll) sum += x;
    r.ppl = std::exp(sum / static_cast<double>(r.nll.size()));
    return r;
}

struct GenerateOptions {
    Index max_tokens = 64;
    double temperature = 0.0;  // 0: greedy (the first of equal maxima)
    std::uint64_t seed = 0;
    CachePolicy cache;  // default: dense
    std::vector<std::int64_t> stop;  // token ids that end the generation (e.g. EOS; it is returned too)
    RunOptions run;                  // e.g. precision
};

/// Sample the next token from one logits row: argmax at temperature 0, else softmax(logits / temperature).
inline std::int64_t sample_token(const float* logits, Index V, double temperature, std::mt19937_64& rng) {
    if (temperature <= 0.0) return static_cast<std::int64_t>(std::max_element(logits, logits + V) - logits);
    const float m = *std::max_element(logits, logits + V);
    std::vector<double> p(static_cast<std::size_t>(V));
    double sum = 0.0;
    for (Index j = 0; j < V; ++j) sum += p[static_cast<std::size_t>(j)] = std::exp((static_cast<double>(logits[j]) - m) / temperature);
    double u = std::uniform_real_distribution<double>(0.0, sum)(rng);
    for (Index j = 0; j < V; ++j)
        if ((u -= p[static_cast<std::size_t>(j)]) < 0.0) return static_cast<std::int64_t>(j);
    return static_cast<std::int64_t>(V - 1);
}

/// Continue `prompt` by up to max_tokens tokens, one forward per token through a KV cache. `on_token` is
/// called with each new token as it is chosen (return false to stop). Returns the new tokens.
inline std::vector<std::int64_t> generate(const Transformer& model, const std::vector<std::int64_t>& prompt,
                                          const GenerateOptions& o,
                                          const std::function<bool(std::int64_t)>& on_token = {}) {
    if (prompt.empty()) throw Error("generate: empty prompt");
    KVCache cache(model.config(), 1, o.cache);
    Workspace ws;
    std::mt19937_64 rng(o.seed);
    const Index V = model.config().vocab_size;
    std::vector<float> last(static_cast<std::size_t>(V));
    feed(model, cache, ws, prompt, 512, [&](Index, const RowMatrixF& logits) {
        std::copy(logits.row(logits.rows() - 1).data(), logits.row(logits.rows() - 1).data() + V, last.begin());
    }, {}, o.run);
    std::vector<std::int64_t> out;
    while (static_cast<Index>(out.size()) < o.max_tokens) {
        const std::int64_t next = sample_token(last.data(), V, o.temperature, rng);
        out.push_back(next);
        const bool more = on_token ? on_token(next) : true;
        if (!more || std::find(o.stop.begin(), o.stop.end(), next) != o.stop.end()) break;
        if (static_cast<Index>(out.size()) == o.max_tokens) break;
        const RowMatrixF& logits = model.run(detail::row_of(out, static_cast<Index>(out.size()) - 1, 1), cache, ws, {}, o.run);
        std::copy(logits.data(), logits.data() + V, last.begin());
    }
    return out;
}

}  // namespace massact::analysis

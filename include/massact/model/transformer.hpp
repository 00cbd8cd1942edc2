// massact/model/transformer.hpp - the reference transformer with TransformerLens-style hook sites.
//
// One forward for every family: it reads the block description (model/config.hpp), never the family.
// Arithmetic follows Hugging Face in float32 (docs/formats.md). A block is
//   sequential: h = x + A(x); out = h + M(h)          parallel: out = x + A(x) + M(x)
//   A(x) = post_attn_norm(o(attention(q, k, v of pre_attn_norm(x))))
//   M(h) = post_mlp_norm(mlp(pre_mlp_norm(h)))       (each norm only where the description has it)
// Activations are row-major [N*T, width] matrices: sequence b, position t is row b*T + t.
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/io/checkpoint.hpp"
#include "massact/kernels/activation.hpp"
#include "massact/kernels/attention.hpp"
#include "massact/kernels/deltanet.hpp"
#include "massact/kernels/fake_quant.hpp"
#include "massact/kernels/norm.hpp"
#include "massact/kernels/resample.hpp"
#include "massact/kernels/rope.hpp"
#include "massact/model/config.hpp"
#include "massact/model/families.hpp"
#include "massact/model/gguf_model.hpp"
#include "massact/model/hooks.hpp"
#include "massact/model/kv_cache.hpp"
#include "massact/model/sites.hpp"
#include "massact/model/weights.hpp"
#include "massact/text/gguf_vocab.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace massact {

/// Token ids of N sequences of equal length T: [N, T].
using TokenBatch = RowMatrix<std::int64_t>;

/// Token vectors as a batch [N, T]: sequences of unequal length are an error, unless `pad` (>= 0) fills the
/// shorter ones on the right (causal attention: tokens after a sequence change none of its positions).
inline TokenBatch make_batch(const std::vector<std::vector<std::int64_t>>& seqs, std::int64_t pad = -1) {
    if (seqs.empty()) throw Error("make_batch: no sequences");
    std::size_t T = 0;
    for (const auto& s : seqs) T = std::max(T, s.size());
    if (T == 0) throw Error("make_batch: every sequence is empty");
    TokenBatch b(static_cast<Index>(seqs.size()), static_cast<Index>(T));
    for (std::size_t i = 0; i < seqs.size(); ++i) {
        if (seqs[i].size() != T && pad < 0)
            throw Error("make_batch: sequence " + std::to_string(i) + " has " + std::to_string(seqs[i].size()) + " tokens, the longest " +
                        std::to_string(T) + " (give a pad id, or sequences of one length)");
        for (std::size_t t = 0; t < T; ++t) b(static_cast<Index>(i), static_cast<Index>(t)) = t < seqs[i].size() ? seqs[i][t] : pad;
    }
    return b;
}
/// One sequence as a batch [1, T].
inline TokenBatch make_batch(const std::vector<std::int64_t>& ids) { return make_batch(std::vector<std::vector<std::int64_t>>{ids}); }

/// Logits [N*T, V] (what a forward returns) read as [N, T, V]: at(n, t) is sequence n's row at position t.
struct LogitsView {
    const RowMatrixF& rows;
    Index N, T;
    LogitsView(const RowMatrixF& logits, Index n, Index t) : rows(logits), N(n), T(t) {
        if (n * t != logits.rows()) throw Error("logits: " + std::to_string(logits.rows()) + " rows are not " + std::to_string(n) + " x " + std::to_string(t));
    }
    Index vocab() const { return rows.cols(); }
    Eigen::Map<const Eigen::RowVectorXf> at(Index n, Index t) const { return {rows.row(n * T + t).data(), rows.cols()}; }
    float operator()(Index n, Index t, Index v) const { return rows(n * T + t, v); }
};

/// Inference-time changes to the attention function of every layer (the sink literature's variants). Any kind but None
/// replaces the model's own function (a softpick model run with Softmax1 computes softmax1); the model's sink slot stays.
struct AttentionOverride {
    enum class Kind { None, Softmax, Softmax1, Clipped, SinkLogit, Softpick, Sigmoid };
    Kind kind = Kind::None;
    float zeta = -0.03f, gamma = 1.03f;  // Clipped
    float sink_logit = 0.0f;             // SinkLogit: one extra logit of this value in every head
    float sigmoid_bias = 0.0f;           // Sigmoid: p = sigmoid(s + sigmoid_bias)
};

/// An override from its name, as the tool's --softmax and Python's load(softmax=) spell it: "standard" (or "": the
/// model's own function), "softmax", "softmax1", "clipped[:ZETA,GAMMA]", "sink=X", "softpick", "sigmoid[:B]".
/// `what` names the option in errors.
inline AttentionOverride parse_attention_override(const std::string& spec, const std::string& what) {
    AttentionOverride o;
    using K = AttentionOverride::Kind;
    auto number = [&](const std::string& v) { return parse_number(v, what, spec); };
    auto after = [&](const std::string& prefix) { return spec.rfind(prefix, 0) == 0 ? spec.substr(prefix.size()) : std::string(); };
    if (spec.empty() || spec == "standard") return o;
    if (spec == "softmax") o.kind = K::Softmax;
    else if (spec == "softmax1") o.kind = K::Softmax1;
    else if (spec == "softpick") o.kind = K::Softpick;
    else if (spec == "sigmoid" || spec.rfind("sigmoid:", 0) == 0) {
        o.kind = K::Sigmoid;
        if (spec != "sigmoid") o.sigmoid_bias = number(after("sigmoid:"));
    } else if (spec == "clipped" || spec.rfind("clipped:", 0) == 0) {
        o.kind = K::Clipped;
        if (spec != "clipped") {
            const std::string rest = after("clipped:");
            const auto comma = rest.find(',');
            if (comma == std::string::npos) throw Error(what + ": \"" + spec + "\": expected clipped:ZETA,GAMMA");
            o.zeta = number(rest.substr(0, comma));
            o.gamma = number(rest.substr(comma + 1));
        }
    } else if (spec.rfind("sink=", 0) == 0) {
        o.kind = K::SinkLogit;
        o.sink_logit = number(after("sink="));
    } else {
        throw Error(what + ": unknown variant \"" + spec + "\" (standard, softmax, softmax1, clipped[:zeta,gamma], sink=X, softpick, sigmoid[:B])");
    }
    return o;
}

/// The attention function a run computes: the override's, else the model's.
inline kernels::AttentionFn attention_fn(const ModelConfig& c, const AttentionOverride& o) {
    using K = AttentionOverride::Kind;
    if (o.kind == K::Softpick) return kernels::AttentionFn::Softpick;
    if (o.kind == K::Sigmoid) return kernels::AttentionFn::Sigmoid;
    return o.kind == K::None ? c.attention_fn : kernels::AttentionFn::Softmax;
}

/// Whether attention has an extra slot: the model's own sink, or a run's softmax1 / sink-logit override.
inline bool has_sink_slot(const ModelConfig& c, const AttentionOverride& o) {
    return c.sink != SinkKind::None || o.kind == AttentionOverride::Kind::Softmax1 || o.kind == AttentionOverride::Kind::SinkLogit;
}

/// Seconds a forward spent per stage (RunOptions::profile adds to it): products with weight matrices,
/// attention (scores to z, RoPE and the KV cache included), norms, MLP activations, and the rest
/// (embedding, residual adds, hook calls); total is the whole run.
struct StageTimes {
    double matmul = 0, attention = 0, norm = 0, activation = 0, total = 0;
    double other() const { return total - matmul - attention - norm - activation; }
};

namespace detail {
/// Adds the seconds of its lifetime to *sink (nothing when sink is null).
class StageTimer {
public:
    explicit StageTimer(double* sink) : sink_(sink) {
        if (sink_) t0_ = std::chrono::steady_clock::now();
    }
    ~StageTimer() {
        if (sink_) *sink_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    }
    StageTimer(const StageTimer&) = delete;
    StageTimer& operator=(const StageTimer&) = delete;

private:
    double* sink_;
    std::chrono::steady_clock::time_point t0_{};
};
}  // namespace detail

/// The most test-time registers a forward appends (RunOptions::extra_tokens).
constexpr Index kMaxExtraTokens = 1024;

struct RunOptions {
    bool logits = true;           // compute logits (false: stop after ln_final)
    int last_layer = -1;          // >= 0: stop after this block (no final norm, no logits: set logits = false too)
    AttentionOverride attention;  // default: the model's own softmax
    Index attention_tile = 64;    // query rows per streaming attention tile
    /// Products of activations and weights: F32, the exact path; BF16 rounds both operands to bfloat16 and
    /// sums in float32 (llama.cpp's and PyTorch's bf16 matmuls), faster where the CPU has BF16 dot products;
    /// Q8 multiplies a quantized GGUF's weights in integers with activations quantized per block when decoding
    /// (llama.cpp's CPU path: kernels/gemv_q8.hpp), everything else as F32.
    kernels::Precision precision = kernels::Precision::F32;
    StageTimes* profile = nullptr;  // if set, the run adds its time per stage
    /// The keys whose probabilities blocks.{l}.attn.hook_pattern_columns reports, [N, H, T, C]: row b holds the C key
    /// indices of sequence b (indices into the forward's keys, cached ones first; -1 or a key a query does not see:
    /// probability 0). Empty: key 0 of every sequence (C = 1). A hook on that site alone leaves attention streamed
    /// (no [N, H, T, K] pattern), so attention on the first token or a delimiter costs O(T) memory at any length.
    RowMatrix<Index> pattern_columns;
    /// Vision only: test-time registers (Jiang et al. 2025), this many tokens appended after the patches, zero vectors
    /// before the first block (no position embedding); hooks see them at positions T0..T0+E-1 (T0 = CLS, registers and
    /// patches). The pooled output still reads CLS.
    Index extra_tokens = 0;

    Index columns() const { return pattern_columns.size() == 0 ? 1 : pattern_columns.cols(); }
};

/// Buffers of a forward pass, named for what they hold (R = N*T rows). Reusing one Workspace across
/// forwards (one thread at a time) avoids re-allocating activations and the weight-conversion buffer.
/// N images [N, C, H, W] (row-major, float32, already resized and normalised as the model expects).
struct PixelBatch {
    std::vector<float> data;
    Index n = 0, channels = 0, height = 0, width = 0;
    const float* image(Index i) const { return data.data() + i * channels * height * width; }
    /// Images [first, first + count) as a batch of their own (a copy of only their pixels).
    PixelBatch slice(Index first, Index count) const {
        PixelBatch b{{}, count, channels, height, width};
        b.data.assign(image(first), image(first) + count * channels * height * width);
        return b;
    }
};

struct Workspace {
    RowMatrixF logits;       // [R, V], the result of Transformer::run
    RowMatrixF x;            // [R, d] residual stream
    RowMatrixF attn_in;      // [R, d] ln1 output (attention input)
    RowMatrixF mlp_in;       // [R, d] ln2 output (MLP input)
    RowMatrixF qkv;          // [R, (H + 2 KV) hd] fused projection
    RowMatrixF q, k, v;      // [R, H*hd], [R, KV*hd], [R, KV*hd]
    RowMatrixF z;            // [R, H*hd] attention output per head
    RowMatrixF gate;         // [R, H*hd] gated attention: the gate logits, then sigmoid
    RowMatrixF mla_q, mla_qa, mla_kv, mla_latent, mla_kvb;  // multi-head latent attention's projections (MlaSpec);
                                                            // mla_q, mla_kv: Gated DeltaNet's fused qkvz and ba
    RowMatrixF mla_up, mla_qabs, mla_zabs;  // MLA over a latent cache: kv_b_proj in float, absorbed queries, latent outputs
    RowMatrixF dn_conv, dn_beta, dn_decay;  // Gated DeltaNet: [R, conv] convolved q, k, v; [R, Hv] beta and decay
    RowMatrixF attn_out;     // [R, d] o(z), after the post-attention norm
    RowMatrixF mlp_hidden;   // [R, I] hook_pre, then hook_post (in place)
    RowMatrixF mlp_linear;   // [R, I] the gated MLP's up projection (hook_pre_linear); [R, 2I] fused gate_up
    RowMatrixF mlp_out;      // [R, d] down(...), after the post-MLP norm
    RowMatrixF router;       // [R, E] router logits; expert_w: routing weights
    RowMatrixF expert_w;
    RowMatrixF expert_in, expert_h, expert_u, expert_out;  // rows routed to one expert
    RowMatrixF expert_slots;  // [R * k, d] each routed expert's output (only when mlp.hook_expert_out is hooked)
    RowMatrixF pos;          // [R, d] learned position embeddings
    RowMatrixF patches;      // vision: [N*P, C*p*p] image patches, flattened (channel, row, column)
    RowMatrixF hidden;       // vision: last_hidden_state [R, d], the result of Transformer::run_pixels
    RowMatrixF pooled;       // vision: pooler_output [N, d]
    std::vector<float> scores, sink, kvp;  // [N, H, T, K] and [N, H, T] when attention hooks are set (K keys)
    std::vector<float> columns;            // [N, H, T, C] attn.hook_pattern_columns
    LinearScratch weights;                 // the products' precision and packed weight blocks
};

namespace detail {

/// The indices of the k largest values, largest first (ties: the lower index first).
inline std::vector<Index> top_indices(const std::vector<float>& v, int k) {
    std::vector<Index> order(v.size());
    std::iota(order.begin(), order.end(), Index(0));
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](Index a, Index b) {
        return v[static_cast<std::size_t>(a)] > v[static_cast<std::size_t>(b)] || (v[static_cast<std::size_t>(a)] == v[static_cast<std::size_t>(b)] && a < b);
    });
    order.resize(static_cast<std::size_t>(k));
    return order;
}

/// Group-limited routing (DeepSeek): the experts in `groups` equal groups, each group scored by its best value (Max) or
/// the sum of its two best (TopTwoSum); the values outside the `keep` best groups become 0, as transformers masks them.
inline void keep_best_groups(std::vector<float>& v, int groups, int keep, GroupScore how) {
    const auto per = static_cast<Index>(v.size()) / groups;
    std::vector<float> score(static_cast<std::size_t>(groups));
    const float ninf = -std::numeric_limits<float>::infinity();
    for (int g = 0; g < groups; ++g) {  // the group's best and second best values, in one pass
        float first = ninf, second = ninf;
        for (Index i = g * per; i < (g + 1) * per; ++i) {
            const float x = v[static_cast<std::size_t>(i)];
            if (x > first) second = first, first = x;
            else if (x > second) second = x;
        }
        score[static_cast<std::size_t>(g)] = how == GroupScore::Max ? first : first + second;
    }
    std::vector<bool> kept(static_cast<std::size_t>(groups), false);
    for (const Index g : top_indices(score, keep)) kept[static_cast<std::size_t>(g)] = true;
    for (std::size_t i = 0; i < v.size(); ++i)
        if (!kept[i / static_cast<std::size_t>(per)]) v[i] = 0.0f;
}

/// out = norm(x) row by row, rows of `width` features. The weights span `k * width` entries: row i uses
/// the slice (i % k) (per-head norms: the rows of [R*H, hd] cycle through the heads).
inline void apply_norm(const NormSpec& s, const NormWeights& w, float* out, const float* x, Index rows, Index width) {
    const auto eps = static_cast<float>(s.eps);
    const Index k = static_cast<Index>(w.scale.size()) / width;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (rows * width > (1 << 15))
#endif
    for (Index i = 0; i < rows; ++i) {
        const Index off = (i % k) * width;
        if (s.kind == NormKind::RMSNorm)
            kernels::rms_norm_row<float>(out + i * width, x + i * width, w.scale.data() + off, width, eps);
        else
            kernels::layer_norm_row<float>(out + i * width, x + i * width, w.scale.data() + off, w.shift.data() + off, width, eps);
    }
}

/// xIELU with params = {a_p, a_n, beta, eps} (ActivationFn::XIELU).
inline void xielu(float* out, const float* x, Index n, const float* params) {
    if (!params) throw Error("forward: xIELU needs its per-layer parameters");
    const float ap = params[0], an = params[1], beta = params[2], eps = params[3];
    for (Index i = 0; i < n; ++i) {
        const float v = x[i];
        out[i] = v > 0.0f ? ap * v * v + beta * v : (std::expm1(std::min(v, eps)) - v) * an + beta * v;
    }
}

/// out = act(x); `params`: the layer's learned activation parameters where the function has them (xIELU).
inline void activate(ActivationFn f, float* out, const float* x, Index n, const float* params = nullptr) {
    switch (f) {
        case ActivationFn::XIELU: xielu(out, x, n, params); break;
        case ActivationFn::SiLU: kernels::silu<float>(out, x, n); break;
        case ActivationFn::GeluTanh: kernels::gelu_tanh<float>(out, x, n); break;
        case ActivationFn::GeluErf: kernels::gelu_erf<float>(out, x, n); break;
        case ActivationFn::Relu: kernels::relu<float>(out, x, n); break;
        case ActivationFn::QuickGelu: kernels::quick_gelu<float>(out, x, n); break;
        case ActivationFn::Relu2:
            kernels::relu<float>(out, x, n);
            for (Index i = 0; i < n; ++i) out[i] *= out[i];
            break;
    }
}

/// gate = act(gate) * up, in place.
inline void gated(ActivationFn f, float* gate, const float* up, Index n, const float* params = nullptr) {
    if (f == ActivationFn::SiLU) {
        kernels::swiglu<float>(gate, gate, up, n);
    } else {
        activate(f, gate, gate, n, params);
        for (Index i = 0; i < n; ++i) gate[i] *= up[i];
    }
}

/// gpt-oss: out[j] = (clamp(up, -limit, limit) + 1) * g * sigmoid(alpha g), g = min(gate, limit), from
/// interleaved pairs gu[2j] = gate, gu[2j + 1] = up.
inline void clamped_swiglu(const float* gu, float* out, Index n, double limit, double alpha) {
    const auto lim = static_cast<float>(limit), a = static_cast<float>(alpha);
    for (Index j = 0; j < n; ++j) {
        const float g = std::min(gu[2 * j], lim), u = std::clamp(gu[2 * j + 1], -lim, lim);
        out[j] = (u + 1.0f) * (g / (1.0f + std::exp(-a * g)));
    }
}

inline void softcap(float* x, Index n, double cap) {
    const auto c = static_cast<float>(cap);
    for (Index i = 0; i < n; ++i) x[i] = c * std::tanh(x[i] / c);
}

/// The hooks of one forward, resolved once: a site without hooks costs one pointer test.
class HookCalls {
public:
    using FnList = std::vector<const HookFn*>;
    /// Only sites the model has (model/sites.hpp) are resolved: the forward may pass the others, they stay silent.
    HookCalls(const Hooks& hooks, const ModelConfig& c, bool sink_slot, const TokenBatch& ids) : ids_(ids), hooks_(&hooks) {
        if (hooks.empty()) return;
        embed_ = hooks.matching("hook_embed");
        if (c.positions == PositionKind::Learned) pos_ = hooks.matching("hook_pos_embed");
        final_ = hooks.matching("ln_final.hook_normalized");
        logits_ = hooks.matching("logits");
        site_.resize(static_cast<std::size_t>(c.num_layers));
        for (int l = 0; l < c.num_layers; ++l)
            for (const auto& s : block_site_table())
                if (s.exists(c, l, sink_slot))
                    site_[static_cast<std::size_t>(l)][static_cast<std::size_t>(s.id)] = hooks.matching(block_site_name(l, s.id));
    }
    bool has(int l, BlockSite s) const {
        return !site_.empty() && !site_[static_cast<std::size_t>(l)][static_cast<std::size_t>(s)].empty();
    }
    /// Whether a hook at block site (l, s) may edit it (Hooks::edits).
    bool edits(int l, BlockSite s) const { return has(l, s) && hooks_->edits(block_site_name(l, s)); }
    void block(int l, BlockSite s, float* data, std::vector<Index> shape) {
        if (has(l, s)) call(site_[static_cast<std::size_t>(l)][static_cast<std::size_t>(s)], block_site_name(l, s), l, data, std::move(shape));
    }
    void embed(float* data, std::vector<Index> shape) { call(embed_, "hook_embed", -1, data, std::move(shape)); }
    void pos(float* data, std::vector<Index> shape) { call(pos_, "hook_pos_embed", -1, data, std::move(shape)); }
    void ln_final(float* data, std::vector<Index> shape) { call(final_, "ln_final.hook_normalized", -1, data, std::move(shape)); }
    void logits(float* data, std::vector<Index> shape) { call(logits_, "logits", -1, data, std::move(shape)); }
    bool wants_logits() const { return !logits_.empty(); }

private:
    void call(const FnList& f, const std::string& name, int layer, float* data, std::vector<Index> shape) {
        if (f.empty()) return;
        Activation a{name, layer, data, std::move(shape), &ids_};
        for (const HookFn* fn : f) (*fn)(a);
    }
    const TokenBatch& ids_;
    const Hooks* hooks_;
    FnList embed_, pos_, final_, logits_;
    std::vector<std::array<FnList, static_cast<std::size_t>(BlockSite::Count)>> site_;
};

}  // namespace detail

class Transformer {
public:
    /// Load a Hugging Face model directory (config.json + model.safetensors or sharded index) or a GGUF file.
    explicit Transformer(const std::string& path, const LoadOptions& opt = {}) : Transformer(path, open_model_files(path), opt) {}
    /// A model from a config and tensors already opened (e.g. a GGUF file held in memory); `name` is its path.
    Transformer(const std::string& name, ModelFiles files, const LoadOptions& opt)
        : dir_(name), config_(std::move(files.config)), ckpt_(std::move(files.checkpoint)), weights_(bind_weights(*ckpt_, config_, opt)) {}

    const std::string& dir() const { return dir_; }
    const ModelConfig& config() const { return config_; }
    const ModelWeights& weights() const { return weights_; }
    const io::Checkpoint& checkpoint() const { return *ckpt_; }

    /// The model's tokenizer (DIR/tokenizer.json, or the GGUF file's vocabulary), read on first use and shared
    /// by copies; a model without one throws massact::Error naming its path.
    const text::Tokenizer& tokenizer() const {
        std::call_once(tokenizer_->once, [&] {
            if (text::has_tokenizer(dir_)) tokenizer_->tokenizer.emplace(text::load_tokenizer(dir_));
        });
        if (!tokenizer_->tokenizer) throw Error(dir_ + ": no tokenizer (no tokenizer.json beside config.json, no GGUF vocabulary)");
        return *tokenizer_->tokenizer;
    }
    bool has_tokenizer() const { return text::has_tokenizer(dir_); }

    /// One linear map of a block, as with_weights hands it out.
    struct LinearRef {
        int layer;
        std::string role;  // as for_each_linear names them (weights.hpp): q, k, v, ..., expert.E.gate, shared.up, shared_gate
        const WeightMatrix& weight;
    };

    /// A copy of this model (sharing the checkpoint) whose block linears are replaced where `edit` says
    /// so: edit(ref, w) receives the float32 weight as an [out, in] matrix and returns true to use the
    /// (changed) matrix in the copy. The embedding and the LM head stay. Fake quantization is built on it.
    template <typename Edit>
    Transformer with_weights(Edit&& edit) const {
        Transformer t(*this);
        for (int l = 0; l < config_.num_layers; ++l) {
            LayerWeights& L = t.weights_.layers[static_cast<std::size_t>(l)];
            for_each_linear(L, [&](WeightMatrix& m, const std::string& role) {
                RowMatrixF w = m.to_matrix();
                if (!edit(LinearRef{l, role, m}, w)) return;
                std::vector<float> data(static_cast<std::size_t>(w.size()));
                if (m.stored_in_out()) RowMap<float>(data.data(), m.in(), m.out()) = w.transpose();
                else RowMap<float>(data.data(), m.out(), m.in()) = w;
                m.replace(std::move(data));
            });
        }
        return t;
    }

    /// The same function computed in another basis of the residual stream (QuaRot, SpinQuant): the copy whose residual
    /// stream is x Q where this model's is x, for an orthogonal Q [d, d]. Each norm's scale g is first folded into the
    /// linears that read the norm's output, so that the norm commutes with Q (RMSNorm(x Q) = RMSNorm(x) Q once g = 1):
    /// the embedding becomes E Q, each linear reading the residual stream (after ln1, ln2 or the final norm) W diag(g) Q,
    /// each linear writing it Q^T W with its bias b Q. Needs pre-norm RMSNorm blocks without post norms, layer scales,
    /// learned positions or an embedding norm (refused with the reason). Its logits are this model's up to rounding.
    Transformer with_rotated_residual(const RowMatrixF& Q) const {
        const ModelConfig& c = config_;
        const Index d = c.hidden_size;
        auto refuse = [&](const std::string& why) {
            throw Error("rotate: this " + c.model_type + " model " + why + ": a rotation of the residual stream needs pre-norm RMSNorm blocks");
        };
        if (Q.rows() != d || Q.cols() != d)
            throw Error("rotate: the rotation is " + std::to_string(Q.rows()) + " x " + std::to_string(Q.cols()) + ", the residual stream has " +
                        std::to_string(d) + " dims");
        const double off = (Q.transpose().cast<double>() * Q.cast<double>() - Eigen::MatrixXd::Identity(d, d)).cwiseAbs().maxCoeff();
        if (!(off < 1e-4)) throw Error("rotate: the rotation is not orthogonal (max |Q^T Q - I| = " + std::to_string(off) + ")");
        if (c.is_vision()) refuse("is a vision model");
        if (c.norm.kind != NormKind::RMSNorm || c.norm.bias) refuse("uses LayerNorm (its mean and shift do not commute with a rotation)");
        if (!c.pre_attn_norm || c.post_attn_norm || c.post_mlp_norm || (c.has_mlp && !c.pre_mlp_norm)) refuse("has post norms or blocks without pre norms");
        if (c.parallel) refuse("has parallel blocks");
        if (weights_.embed_norm.bound() || weights_.pos_embed.bound()) refuse("normalises the embedding or adds learned positions to it");
        for (const LayerWeights& L : weights_.layers)
            if (!L.ls_attn.empty() || !L.ls_mlp.empty()) refuse("has layer scales");
        Transformer t(*this);
        ModelWeights& W = t.weights_;
        auto matrix = [](const WeightMatrix& m) { return m.to_matrix(); };
        auto put = [](WeightMatrix& m, const RowMatrixF& w) {
            std::vector<float> data(static_cast<std::size_t>(w.size()));
            if (m.stored_in_out()) RowMap<float>(data.data(), m.in(), m.out()) = w.transpose();
            else RowMap<float>(data.data(), m.out(), m.in()) = w;
            m.replace(std::move(data));
        };
        auto gain = [&](const NormWeights& n) {  // the norm's scale as it multiplies (Gemma's 1 + w is folded at load)
            Eigen::RowVectorXf g = Eigen::RowVectorXf::Ones(d);
            if (n.bound() && c.norm.weight) g = Eigen::Map<const Eigen::RowVectorXf>(n.scale.data(), d);
            return g;
        };
        auto unit = [&](NormWeights& n) {
            if (n.bound()) std::fill(n.scale.begin(), n.scale.end(), 1.0f);
        };
        auto reads = [&](WeightMatrix& m, const Eigen::RowVectorXf& g) { put(m, (matrix(m).array().rowwise() * g.array()).matrix() * Q); };
        auto writes = [&](WeightMatrix& m, std::vector<float>& bias) {
            put(m, Q.transpose() * matrix(m));
            if (!bias.empty()) Eigen::Map<Eigen::RowVectorXf>(bias.data(), d) = Eigen::Map<const Eigen::RowVectorXf>(bias.data(), d) * Q;
        };
        put(W.embed, Q.transpose() * matrix(W.embed));  // (the embedding as a map is [d, V]: E Q is Q^T E^T transposed)
        static const std::set<std::string> attention_side = {"q", "k", "v", "qkv", "q_a", "kv_a", "in_qkvz", "in_ba", "in_qkv", "in_z",
                                                            "in_b", "in_a", "in_proj"};
        static const std::set<std::string> mlp_side = {"gate", "up", "gate_up", "router", "shared_gate"};
        static const std::set<std::string> writers = {"o", "out", "out_proj", "down"};
        auto tail = [](const std::string& role) { return role.substr(role.rfind('.') + 1); };
        for (LayerWeights& L : W.layers) {
            const Eigen::RowVectorXf g1 = gain(L.ln_attn), g2 = gain(L.ln_mlp);
            std::vector<float> none;
            for_each_linear(L, [&](WeightMatrix& m, const std::string& role) {
                const bool expert = role.find('.') != std::string::npos;  // expert.E.x, shared.x
                if (attention_side.count(role)) reads(m, g1);
                else if (mlp_side.count(expert ? tail(role) : role)) reads(m, g2);
                else if (writers.count(expert ? tail(role) : role)) {
                    std::vector<float>* bias = &none;
                    if (role == "o") bias = &L.o_b;
                    else if (role == "down") bias = &L.down_b;
                    else if (role == "out_proj") bias = &L.mamba.out_b;
                    else if (role == "shared.down") bias = &L.shared.down_b;
                    else if (expert) bias = &L.experts[static_cast<std::size_t>(std::stoi(role.substr(7)))].down_b;
                    writes(m, *bias);
                }  // (q_b, kv_b read the latent, not the residual stream)
            });
            unit(L.ln_attn);
            unit(L.ln_mlp);
        }
        reads(W.lm_head, gain(W.final_norm));
        unit(W.final_norm);
        return t;
    }

    /// The precision a run asking for `p` gets: p itself, or for Precision::Auto the fastest path that keeps the
    /// weights' own precision: Q8 when a block matrix is stored in a type the integer path reads (a quantized GGUF:
    /// llama.cpp's arithmetic), BF16 when every block matrix is BF16 (rounding them to bfloat16 changes nothing; the
    /// activations are rounded too, as PyTorch's and llama.cpp's bf16 products do), F32 otherwise.
    kernels::Precision precision_for(kernels::Precision p) const {
        if (p != kernels::Precision::Auto) return p;
        bool all_bf16 = true, any = false;
        bool q8 = false;
        for (const auto& L : weights_.layers)
            for_each_linear(L, [&](const WeightMatrix& m, const std::string&) {
                if (!m.source()) return;
                const io::DType d = m.source()->dtype;  // (the file's type, whatever copy a small model keeps)
                any = true;
                q8 = q8 || (io::quantized(d) && kernels::gemv_q8_reads(io::ggml_type(d)));
                all_bf16 = all_bf16 && d == io::DType::BF16;
            });
        if (q8) return kernels::Precision::Q8;
        return any && all_bf16 ? kernels::Precision::BF16 : kernels::Precision::F32;
    }

    /// Every hook site name, in execution order (with the sink-pattern site when a run adds a slot).
    std::vector<std::string> hook_sites(const RunOptions& o = {}) const { return hook_site_names(config_, has_sink_slot(o)); }

    /// Shape of one hook site's tensor for N sequences of T tokens (attending to `keys` keys: T, or the
    /// cached tokens and the new ones in an incremental forward).
    std::vector<Index> hook_shape(const std::string& site, Index N, Index T, const RunOptions& o = {}, Index keys = -1) const {
        return hook_site_shape(config_, site, N, T, has_sink_slot(o), keys, o.columns());
    }

    /// Refuse hooks whose (required) pattern matches no site of this model: a typo would silently do nothing.
    void check_hooks(const Hooks& hooks, const RunOptions& o = {}) const {
        if (hooks.empty()) return;
        const auto missing = hooks.unmatched(hook_sites(o));
        if (!missing.empty())
            throw Error("hook pattern \"" + missing.front() + "\" matches no hook site of this " + config_.model_type +
                        " model (see docs/formats.md for the sites)");
    }

    /// Check ids against the vocabulary and the position limit (positions up to last_position); throws
    /// massact::Error.
    void validate(const TokenBatch& ids, Index last_position = -1) const {
        if (config_.is_vision())
            throw Error("forward: this " + config_.model_type + " model reads images (pixels), not token ids");
        if (ids.rows() == 0 || ids.cols() == 0) throw Error("forward: empty token batch");
        if (last_position < 0) last_position = ids.cols() - 1;
        if (config_.positions == PositionKind::Learned && last_position >= config_.max_positions)
            throw Error("forward: position " + std::to_string(last_position) + " exceeds the " +
                        std::to_string(config_.max_positions) + " learned positions");
        for (Index i = 0; i < ids.size(); ++i)
            if (ids.data()[i] < 0 || ids.data()[i] >= config_.vocab_size)
                throw Error("forward: token id " + std::to_string(ids.data()[i]) + " at sequence " +
                            std::to_string(i / ids.cols()) + ", position " + std::to_string(i % ids.cols()) +
                            " is outside the vocabulary [0, " + std::to_string(config_.vocab_size) + ")");
    }

    /// Run the model on N sequences of T tokens. Returns logits [N*T, V] (empty if options.logits is false).
    RowMatrixF forward(const TokenBatch& ids, const Hooks& hooks = {}, const RunOptions& options = {}) const {
        Workspace ws;
        run(ids, ws, hooks, options);
        return std::move(ws.logits);
    }

    /// The same, with buffers kept in `w` between calls (no allocation once sizes are stable).
    /// Returns a reference to w.logits.
    const RowMatrixF& run(const TokenBatch& ids, Workspace& w, const Hooks& hooks = {}, const RunOptions& options = {}) const {
        validate(ids);
        if (options.extra_tokens != 0) throw Error("forward: extra_tokens (test-time registers) apply to vision models only");
        if (options.last_layer >= 0 && options.logits)
            throw Error("forward: last_layer " + std::to_string(options.last_layer) +
                        " stops before the logits: set RunOptions::logits = false (read the hidden states with a hook)");
        Pass p(ids, w, detail::HookCalls(hooks, config_, has_sink_slot(options), ids), options);
        p.pos.resize(static_cast<std::size_t>(p.T));
        std::iota(p.pos.begin(), p.pos.end(), Index(0));
        for (const RopeSpec& r : config_.rope) p.rope_own.push_back(rope_table(r, p.T));
        for (const auto& t : p.rope_own) p.rope.push_back(&t);
        return forward_pass(p, hooks);
    }

    /// Check images against a vision model: channels, at least one patch each way; throws massact::Error.
    void validate(const PixelBatch& px) const {
        const VisionSpec& v = config_.vision;
        if (!config_.is_vision())
            throw Error("forward: this " + config_.model_type + " model reads token ids, not pixels");
        if (px.n <= 0) throw Error("forward: empty image batch");
        if (px.channels != v.channels)
            throw Error("forward: images have " + std::to_string(px.channels) + " channels, the model expects " + std::to_string(v.channels));
        if (px.height < v.patch_size || px.width < v.patch_size)
            throw Error("forward: images of " + std::to_string(px.height) + "x" + std::to_string(px.width) +
                        " pixels are smaller than one " + std::to_string(v.patch_size) + "x" + std::to_string(v.patch_size) + " patch");
        if (static_cast<Index>(px.data.size()) != px.n * px.channels * px.height * px.width)
            throw Error("forward: image buffer holds " + std::to_string(px.data.size()) + " values for [" + std::to_string(px.n) +
                        ", " + std::to_string(px.channels) + ", " + std::to_string(px.height) + ", " + std::to_string(px.width) + "]");
    }

    /// The token kinds of a vision model's sequence for h x w images: 0 = CLS, 1 + k = register k,
    /// 1 + R + i = patch i (row-major over the patch grid), whether or not the model has the CLS token (SigLIP's
    /// sequence starts at kind 1). They stand in for token ids in hooks and scans.
    /// `extra` test-time registers follow the patches (RunOptions::extra_tokens).
    TokenBatch vision_tokens(Index n, Index h, Index w, Index extra = 0) const {
        TokenBatch ids(n, config_.vision.tokens(h, w) + extra);
        const Index skip = config_.vision.cls ? 0 : 1;
        for (Index i = 0; i < n; ++i)
            for (Index t = 0; t < ids.cols(); ++t) ids(i, t) = t + skip;
        return ids;
    }

    /// A vision model's forward over images: returns last_hidden_state [N*T, d] (w.hidden: ln_final's
    /// output, or for CLIP the last block's); w.pooled gets pooler_output [N, d]. Hooks see [N, T, ...]
    /// with T = 1 + registers + patches. With options.last_layer the forward stops after that block and both
    /// outputs are empty (as the logits of run), never an earlier image's.
    const RowMatrixF& run_pixels(const PixelBatch& px, Workspace& w, const Hooks& hooks = {}, const RunOptions& options = {}) const {
        validate(px);
        if (options.extra_tokens < 0 || options.extra_tokens > kMaxExtraTokens)
            throw Error("forward: extra_tokens " + std::to_string(options.extra_tokens) + " (expected 0.." + std::to_string(kMaxExtraTokens) + ")");
        w.hidden.resize(0, 0);
        w.pooled.resize(0, 0);
        const TokenBatch ids = vision_tokens(px.n, px.height, px.width, options.extra_tokens);
        Pass p(ids, w, detail::HookCalls(hooks, config_, has_sink_slot(options), ids), options);
        p.pixels = &px;
        p.pos.resize(static_cast<std::size_t>(p.T));
        std::iota(p.pos.begin(), p.pos.end(), Index(0));
        if (config_.vision.rope_2d) {  // one table row per token (position = index in the sequence)
            p.rope_own.push_back(patch_rope_table(px.height / config_.vision.patch_size, px.width / config_.vision.patch_size, p.T));
            p.rope.push_back(&p.rope_own.back());
        }
        forward_pass(p, hooks);
        return w.hidden;
    }

    /// Incremental forward: the N sequences of `cache` (N = cache.batch()) continue with T new tokens each.
    /// Their keys and values are appended to the cache (after its policy's eviction); attention sees the
    /// held tokens and the new ones, at the positions the policy gives. Hooks see the new tokens' rows
    /// ([N, T, ...]); attention scores and patterns are [N, H, T, K] over the K = size() keys held after the
    /// append. Logits [N*T, V] of the new tokens. Decoding token by token equals the full forward. If the
    /// forward throws, the new tokens are taken out of the cache again.
    const RowMatrixF& run(const TokenBatch& ids, KVCache& cache, Workspace& w, const Hooks& hooks = {},
                          const RunOptions& options = {}) const {
        const ModelConfig& c = config_;
        if (const std::string why = cache.mismatch(c, ids.rows()); !why.empty())
            throw Error("forward: the KV cache does not fit this model and batch: " + why);
        if (ids.rows() == 0 || ids.cols() == 0) throw Error("forward: empty token batch");
        if (options.last_layer >= 0)
            throw Error("forward: last_layer cannot be used with a KV cache (the later layers would miss the new tokens)");
        if (options.extra_tokens != 0) throw Error("forward: extra_tokens (test-time registers) apply to vision models only");
        const Index past = cache.begin_step(ids.cols());
        try {
            validate(ids, cache.position(cache.size() - 1));
            Pass p(ids, w, detail::HookCalls(hooks, c, has_sink_slot(options), ids), options);
            if (cache.latent()) refuse_per_head_kv_hooks(p);
            p.cache = &cache;
            p.past = past;
            for (Index t = 0; t < p.T; ++t) p.pos.push_back(cache.position(past + t));
            Index last = 0;
            for (Index j = 0; j < cache.size(); ++j) last = std::max(last, cache.position(j));
            for (std::size_t i = 0; i < c.rope.size(); ++i) p.rope.push_back(&cached_rope_table(cache.rope_memo()[i], c.rope[i], last + 1));
            const RowMatrixF& out = forward_pass(p, hooks);
            cache.commit_step();
            return out;
        } catch (...) {
            cache.abort_step(past, ids.cols());
            throw;
        }
    }

private:
    /// The state of one forward.
    struct Pass {
        Pass(const TokenBatch& i, Workspace& ws, detail::HookCalls h, const RunOptions& o)
            : ids(i), w(ws), hooks(std::move(h)), options(o), N(i.rows()), T(i.cols()) {
            w.weights.precision = o.precision;
        }
        const TokenBatch& ids;
        Workspace& w;
        detail::HookCalls hooks;
        const RunOptions& options;
        Index N, T;
        KVCache* cache = nullptr;                    // incremental forward: keys and values go here
        Index past = 0;                              // tokens the cache held before these
        std::vector<Index> pos;                      // [T] the new tokens' positions
        std::vector<const kernels::RopeTable*> rope;  // one per RopeSpec, rows indexed by position
        std::vector<kernels::RopeTable> rope_own;    // (the tables of a forward without cache)
        std::vector<float> override_logits;          // [H] the run's extra slot logit (softmax1: 0), if any
        std::vector<float> alibi;                    // [H] ALiBi slopes, if the model has them
        const PixelBatch* pixels = nullptr;          // vision: the images (ids then hold token kinds)
        Index R() const { return N * T; }
        Index keys() const { return past + T; }
        /// Where a stage's seconds go (null when the run is not profiled).
        double* stage(double StageTimes::*field) const { return options.profile ? &(options.profile->*field) : nullptr; }
    };

    /// A latent cache (MLA) holds no per-head keys or values: hooks that may edit them would edit nothing attention
    /// reads (readers, Hooks::observe, are fine).
    void refuse_per_head_kv_hooks(const Pass& p) const {
        for (int l = 0; l < config_.num_layers; ++l)
            for (BlockSite s : {BlockSite::K, BlockSite::V, BlockSite::RotK})
                if (config_.layer_attention(l) && p.hooks.edits(l, s))
                    throw Error("forward: a hook that may edit " + block_site_name(l, s) +
                                ": this KV cache holds multi-head latent attention's compressed KV, not the heads' keys and values (hook " +
                                block_site_name(l, BlockSite::Latent) +
                                " instead, read with Hooks::observe, or make the cache with CachePolicy::latent = false)");
    }

    const RowMatrixF& forward_pass(Pass& p, const Hooks& hooks) const {
        detail::StageTimer timer(p.stage(&StageTimes::total));
        const ModelConfig& c = config_;
        check_hooks(hooks, p.options);
        require_at_least(p.options.attention_tile, 1, "forward: attention_tile");
        p.w.weights.precision = precision_for(p.options.precision);
        if (p.options.pattern_columns.size() > 0 && p.options.pattern_columns.rows() != p.N)
            throw Error("forward: pattern_columns has " + std::to_string(p.options.pattern_columns.rows()) + " rows for " +
                        std::to_string(p.N) + " sequences (one row of key indices per sequence)");
        const AttentionOverride& o = p.options.attention;
        if (c.positions == PositionKind::Alibi) p.alibi = c.alibi_slopes();
        if (attention_fn(c, o) != kernels::AttentionFn::Softmax && c.sink != SinkKind::None)
            throw Error(std::string("forward: ") + kernels::attention_fn_name(attention_fn(c, o)) +
                        " attention on a model with an attention sink slot (" + c.model_type +
                        "): the slot is a softmax variant; use softmax1 or sink=X instead");
        if (o.kind == AttentionOverride::Kind::Softmax1 || o.kind == AttentionOverride::Kind::SinkLogit)
            p.override_logits.assign(static_cast<std::size_t>(c.num_heads), o.kind == AttentionOverride::Kind::Softmax1 ? 0.0f : o.sink_logit);
        embed(p);
        for (int l = 0; l < c.num_layers; ++l) {
            block(p, l);
            if (p.options.last_layer == l) {
                p.w.logits.resize(0, 0);
                return p.w.logits;
            }
        }
        unembed(p);
        return p.w.logits;
    }

    /// The input stage: embed_tokens or embed_patches.
    void embed(Pass& p) const {
        switch (config_.input) {
            case InputStage::Patches: return embed_patches(p);
            case InputStage::Tokens: return embed_tokens(p);
        }
    }

    /// x [R, d] = embed[ids] * embed_scale (+ learned positions).
    void embed_tokens(Pass& p) const {
        const ModelConfig& c = config_;
        RowMatrixF& x = p.w.x;
        x.resize(p.R(), c.hidden_size);
        for (Index r = 0; r < p.R(); ++r) weights_.embed.row(p.ids.data()[r], x.row(r).data());
        if (c.embed_scale != 1.0) x *= static_cast<float>(c.embed_scale);
        p.hooks.embed(x.data(), {p.N, p.T, c.hidden_size});
        if (c.positions == PositionKind::Learned) {
            RowMatrixF& pos = p.w.pos;
            pos.resize(p.R(), c.hidden_size);
            for (Index r = 0; r < p.R(); ++r) weights_.pos_embed.row(p.pos[static_cast<std::size_t>(r % p.T)] + c.pos_offset, pos.row(r).data());
            p.hooks.pos(pos.data(), {p.N, p.T, c.hidden_size});
            x += pos;
        }
        if (c.embed_norm) detail::apply_norm(c.norm, weights_.embed_norm, x.data(), x.data(), x.rows(), x.cols());
    }

    /// Vision: x [N*T, d] = [CLS + pos_0, registers, patch_i W^T + b + pos_(1+i)] per image (the position table
    /// resized bicubically to another patch grid), then the embedding norm if the model has one (CLIP).
    void embed_patches(Pass& p) const {
        const ModelConfig& c = config_;
        const VisionSpec& v = c.vision;
        const PixelBatch& px = *p.pixels;
        const Index N = p.N, T = p.T, d = c.hidden_size, P = v.patch_size, C = v.channels, R = v.registers;
        const Index gh = px.height / P, gw = px.width / P, np = gh * gw;
        RowMatrixF& patches = p.w.patches;
        patches.resize(N * np, C * P * P);
        for (Index n = 0; n < N; ++n)
            for (Index gy = 0; gy < gh; ++gy)
                for (Index gx = 0; gx < gw; ++gx) {
                    float* row = patches.row(n * np + gy * gw + gx).data();
                    for (Index ch = 0; ch < C; ++ch)
                        for (Index i = 0; i < P; ++i) {
                            const float* src = px.image(n) + (ch * px.height + gy * P + i) * px.width + gx * P;
                            std::copy(src, src + P, row + (ch * P + i) * P);
                        }
                }
        RowMatrixF& proj = p.w.attn_out;
        proj.resize(N * np, d);
        linear(p, weights_.embed, patches, proj, &weights_.patch_b);
        const std::vector<float> pos = weights_.pos_table.empty() ? std::vector<float>(static_cast<std::size_t>((1 + np) * d), 0.0f)
                                                                  : patch_positions(gh, gw);  // (DINOv3: none, its RoPE)
        RowMatrixF& x = p.w.x;
        x.resize(N * T, d);
        auto add = [&](Index row, const float* a, const float* b) {
            for (Index j = 0; j < d; ++j) x(row, j) = a[j] + (b ? b[j] : 0.0f);
        };
        const Index first = v.first_patch(), reg0 = v.cls ? 1 : 0;  // (SigLIP: no CLS, the patches first)
        for (Index n = 0; n < N; ++n) {
            if (v.cls) add(n * T, weights_.cls.data(), pos.data());
            for (Index k = 0; k < R; ++k) add(n * T + reg0 + k, weights_.registers.data() + k * d, nullptr);
            for (Index i = 0; i < np; ++i) add(n * T + first + i, proj.row(n * np + i).data(), pos.data() + (1 + i) * d);
            for (Index t = first + np; t < T; ++t) x.row(n * T + t).setZero();  // test-time registers
        }
        p.hooks.embed(x.data(), {N, T, d});
        if (c.embed_norm) detail::apply_norm(c.norm, weights_.embed_norm, x.data(), x.data(), x.rows(), x.cols());
    }

    /// DINOv3's 2-D RoPE (VisionSpec::rope_2d) for a gh x gw patch grid and T tokens: rows of CLS and the registers
    /// (and test-time registers after the patches) are the identity; patch i at (y, x) gets the angles 2 pi y f_j and
    /// 2 pi x f_j, in float32 as transformers computes them.
    kernels::RopeTable patch_rope_table(Index gh, Index gw, Index T) const {
        const ModelConfig& c = config_;
        const Index half = c.head_dim / 2, quarter = c.head_dim / 4, first = c.vision.first_patch();
        kernels::RopeTable t;
        t.cos = RowMatrixF::Ones(T, half);
        t.sin = RowMatrixF::Zero(T, half);
        std::vector<float> f(static_cast<std::size_t>(quarter));
        for (Index j = 0; j < quarter; ++j)
            f[static_cast<std::size_t>(j)] = 1.0f / static_cast<float>(std::pow(c.rope[0].theta, static_cast<double>(static_cast<float>(4.0 * j / c.head_dim))));
        const float two_pi = static_cast<float>(2.0 * 3.14159265358979323846);
        for (Index gy = 0; gy < gh; ++gy)
            for (Index gx = 0; gx < gw; ++gx) {
                const float y = 2.0f * ((static_cast<float>(gy) + 0.5f) / static_cast<float>(gh)) - 1.0f;
                const float x = 2.0f * ((static_cast<float>(gx) + 0.5f) / static_cast<float>(gw)) - 1.0f;
                const Index row = first + gy * gw + gx;
                for (Index j = 0; j < quarter; ++j)
                    for (const auto& [col, coord] : {std::pair<Index, float>{j, y}, std::pair<Index, float>{quarter + j, x}}) {
                        const float angle = two_pi * coord * f[static_cast<std::size_t>(j)];
                        t.cos(row, col) = static_cast<float>(std::cos(static_cast<double>(angle)));
                        t.sin(row, col) = static_cast<float>(std::sin(static_cast<double>(angle)));
                    }
            }
        return t;
    }

    /// The position table [1 + gh*gw, d] for a grid of gh x gw patches: the model's own, or its patch part
    /// resized bicubically from the trained (square) grid, as transformers' interpolate_pos_encoding does.
    std::vector<float> patch_positions(Index gh, Index gw) const {
        const Index d = config_.hidden_size, g0 = config_.vision.image_size / config_.vision.patch_size;
        const std::vector<float>& table = weights_.pos_table;
        if (gh == g0 && gw == g0) return table;
        std::vector<float> planar(static_cast<std::size_t>(d * g0 * g0));  // [d, g0, g0]
        for (Index i = 0; i < g0 * g0; ++i)
            for (Index j = 0; j < d; ++j) planar[static_cast<std::size_t>(j * g0 * g0 + i)] = table[static_cast<std::size_t>((1 + i) * d + j)];
        const std::vector<float> r = kernels::resize_bicubic_torch(planar.data(), d, g0, g0, gh, gw);
        std::vector<float> out(static_cast<std::size_t>((1 + gh * gw) * d));
        std::copy(table.begin(), table.begin() + d, out.begin());
        for (Index i = 0; i < gh * gw; ++i)
            for (Index j = 0; j < d; ++j) out[static_cast<std::size_t>((1 + i) * d + j)] = r[static_cast<std::size_t>(j * gh * gw + i)];
        return out;
    }

    /// One block: attention and MLP around the residual stream x [R, d], sequential or parallel.
    void block(Pass& p, int l) const {
        const ModelConfig& c = config_;
        const LayerWeights& L = weights_.layers[static_cast<std::size_t>(l)];
        Workspace& w = p.w;
        const std::vector<Index> resid = {p.N, p.T, c.hidden_size};
        p.hooks.block(l, BlockSite::ResidPre, w.x.data(), resid);
        const RowMatrixF* attn_in = &w.x;
        if (c.pre_attn_norm) {
            norm(p, L.ln_attn, w.attn_in, w.x);
            p.hooks.block(l, BlockSite::Ln1, w.attn_in.data(), resid);
            attn_in = &w.attn_in;
        }
        switch (c.layers[static_cast<std::size_t>(l)].mixer) {
            case Mixer::Attention: attention(p, l, *attn_in); break;
            case Mixer::GatedDeltaNet: deltanet(p, l, *attn_in); break;
            case Mixer::Mamba2: mamba(p, l, *attn_in); break;
        }
        if (!c.has_mlp) {  // (Mamba-2: norm and mixer only)
            w.x += w.attn_out;
            p.hooks.block(l, BlockSite::ResidPost, w.x.data(), resid);
            return;
        }
        const RowMatrixF* mlp_in = attn_in;  // parallel without its own MLP norm: the MLP reads ln1's output
        if (!c.parallel) {
            w.x += w.attn_out;
            p.hooks.block(l, BlockSite::ResidMid, w.x.data(), resid);
            mlp_in = &w.x;
        }
        if (c.pre_mlp_norm) {
            norm(p, L.ln_mlp, w.mlp_in, w.x);
            p.hooks.block(l, BlockSite::Ln2, w.mlp_in.data(), resid);
            mlp_in = &w.mlp_in;
        }
        if (c.layer_moe(l))
            moe(p, l, *mlp_in);
        else
            mlp(p, l, *mlp_in);
        if (c.parallel) w.x += w.attn_out;
        w.x += w.mlp_out;
        p.hooks.block(l, BlockSite::ResidPost, w.x.data(), resid);
    }

    /// q, k, v [R, .] from the block input n [R, d] (fused, separate or latent; a gated q split into q and gate), clipped
    /// where the family clips them; their hooks.
    void project_qkv(Pass& p, int l, const RowMatrixF& n) const {
        const ModelConfig& c = config_;
        const LayerWeights& L = weights_.layers[static_cast<std::size_t>(l)];
        Workspace& w = p.w;
        const Index N = p.N, T = p.T, R = p.R(), H = c.num_heads, KV = c.num_kv_heads, hd = c.head_dim;
        RowMatrixF &q = w.q, &k = w.k, &v = w.v;
        if (c.has_mla()) {
            mla_qkv(p, l, n);
        } else if (L.qkv.bound()) {  // fused, in the family's layout
            w.qkv.resize(R, (H + 2 * KV) * hd);
            linear(p, L.qkv, n, w.qkv, &L.qkv_b);
            split_qkv(w.qkv, q, k, v);
        } else {
            q.resize(R, (c.attn_output_gate ? 2 : 1) * H * hd);
            k.resize(R, KV * hd);
            v.resize(R, KV * hd);
            linear(p, L.q, n, q, &L.q_b);
            linear(p, L.k, n, k, &L.k_b);
            linear(p, L.v, n, v, &L.v_b);
            if (c.attn_output_gate) {  // rows [q_0; g_0; q_1; g_1; ...] by head
                w.gate.resize(R, H * hd);
                for (Index r = 0; r < R; ++r)
                    for (Index h = 0; h < H; ++h) {
                        const float* src = q.row(r).data() + 2 * h * hd;
                        std::copy(src + hd, src + 2 * hd, w.gate.row(r).data() + h * hd);
                        std::copy(src, src + hd, q.row(r).data() + h * hd);  // (compacts in place: h * hd <= 2 h hd)
                    }
                q.conservativeResize(R, H * hd);
            }
        }
        if (c.clip_qkv > 0) {
            const auto clip = static_cast<float>(c.clip_qkv);
            for (RowMatrixF* m : {&q, &k, &v}) *m = m->cwiseMax(-clip).cwiseMin(clip);
        }
        p.hooks.block(l, BlockSite::Q, q.data(), {N, T, H, hd});
        p.hooks.block(l, BlockSite::K, k.data(), {N, T, KV, hd});
        p.hooks.block(l, BlockSite::V, v.data(), {N, T, KV, hd});
    }

    /// q and k placed: their norms (before or after RoPE), RoPE (not in a NoPE layer), Llama 4's temperature of NoPE
    /// layers; the rot hooks. A cache that keeps raw keys gets them before the rotation.
    void position_qk(Pass& p, int l) const {
        const ModelConfig& c = config_;
        const LayerWeights& L = weights_.layers[static_cast<std::size_t>(l)];
        Workspace& w = p.w;
        const Index N = p.N, T = p.T, R = p.R(), H = c.num_heads, KV = c.num_kv_heads, hd = c.head_dim;
        RowMatrixF &q = w.q, &k = w.k;
        auto qk_norm = [&] {  // per head: rows of [R*H, hd]; whole: rows of [R, H*hd]
            detail::StageTimer timer(p.stage(&StageTimes::norm));
            const bool whole = c.qk_norm == QKNorm::Whole;
            detail::apply_norm(c.qk_norm_spec, L.q_norm, q.data(), q.data(), whole ? R : R * H, whole ? H * hd : hd);
            detail::apply_norm(c.qk_norm_spec, L.k_norm, k.data(), k.data(), whole ? R : R * KV, whole ? KV * hd : hd);
        };
        const bool nope = c.layers[static_cast<std::size_t>(l)].nope;
        if (c.layer_qk_norm(l) && !c.qk_norm_after_rope) qk_norm();
        if (!c.has_rope()) return;
        // (a NoPE layer's rot sites hold q and k as they are)
        const kernels::RopeTable& rope = rope_of(p, l);
        if (p.cache && p.cache->keeps_raw_keys()) store_rows(p, p.cache->layer(l).k_raw, k);
        if (!nope) {
            detail::StageTimer timer(p.stage(&StageTimes::attention));
            for (Index r = 0; r < R; ++r) {
                rotate(rope, q.row(r).data(), H, p.pos[static_cast<std::size_t>(r % T)]);
                rotate(rope, k.row(r).data(), KV, p.pos[static_cast<std::size_t>(r % T)]);
            }
        }
        if (c.layer_qk_norm(l) && c.qk_norm_after_rope) qk_norm();
        if (nope && c.attn_temperature_scale > 0)  // Llama 4's temperature tuning of NoPE layers, by absolute position
            for (Index r = 0; r < R; ++r) {
                const double pos = static_cast<double>(p.pos[static_cast<std::size_t>(r % T)]);
                q.row(r) *= static_cast<float>(std::log1p(std::floor((pos + 1.0) / c.attn_temperature_floor)) * c.attn_temperature_scale + 1.0);
            }
        p.hooks.block(l, BlockSite::RotQ, q.data(), {N, T, H, hd});
        p.hooks.block(l, BlockSite::RotK, k.data(), {N, T, KV, hd});
    }

    /// attn_out [R, d] = post_norm(o(attention(n))) for the block input n [R, d].
    void attention(Pass& p, int l, const RowMatrixF& n) const {
        const ModelConfig& c = config_;
        const LayerWeights& L = weights_.layers[static_cast<std::size_t>(l)];
        Workspace& w = p.w;
        const Index N = p.N, T = p.T, R = p.R(), H = c.num_heads, hd = c.head_dim;
        project_qkv(p, l, n);
        position_qk(p, l);
        w.z.resize(R, H * hd);
        {
            detail::StageTimer timer(p.stage(&StageTimes::attention));
            if (p.cache) cache_keys_values(p, l);
            if (p.cache && p.cache->latent())
                attend_latent(p, l, L);
            else
                attend(p, l, L, w.z);
        }
        p.hooks.block(l, BlockSite::Z, w.z.data(), {N, T, H, hd});
        if (c.v_dim() != hd) {  // (MLA: the heads' values without their zero padding, as o_proj reads them)
            const Index vd = c.v_dim();
            for (Index r = 0; r < R; ++r)
                for (Index h = 0; h < H; ++h) std::copy_n(w.z.row(r).data() + h * hd, vd, w.z.row(r).data() + h * vd);
            w.z.conservativeResize(R, H * vd);
        }
        if (c.attn_output_gate) {
            w.gate = (1.0f + (-w.gate.array()).exp()).inverse().matrix();
            p.hooks.block(l, BlockSite::Gate, w.gate.data(), {N, T, H, hd});
            w.z.array() *= w.gate.array();
        }
        if (c.attn_sub_norm) norm(p, L.attn_sub_norm, w.z, w.z);
        w.attn_out.resize(R, c.hidden_size);
        linear(p, L.o, w.z, w.attn_out, &L.o_b);
        mixer_out(p, l, L);
    }

    /// The token mixer's output projection done (attn_out [R, d]): its post-norm, layer scale and residual scale.
    void mixer_out(Pass& p, int l, const LayerWeights& L) const {
        const ModelConfig& c = config_;
        Workspace& w = p.w;
        const Index N = p.N, T = p.T;
        if (c.post_attn_norm) {
            norm(p, L.ln_attn_post, w.attn_out, w.attn_out);
            p.hooks.block(l, BlockSite::Ln1Post, w.attn_out.data(), {N, T, c.hidden_size});
        }
        if (!L.ls_attn.empty()) scale_columns(w.attn_out, L.ls_attn);
        if (c.residual_scale != 1.0) w.attn_out *= static_cast<float>(c.residual_scale);
        p.hooks.block(l, BlockSite::AttnOut, w.attn_out.data(), {N, T, c.hidden_size});
    }

    /// A Gated DeltaNet layer (DeltaNetSpec): attn_out [R, d] for the block input n [R, d]; with a cache, the
    /// convolution and the recurrent state continue the held ones (the step's new ones wait for commit_step).
    void deltanet(Pass& p, int l, const RowMatrixF& n) const {
        const ModelConfig& c = config_;
        const DeltaNetSpec& s = c.deltanet;
        const LayerWeights& L = weights_.layers[static_cast<std::size_t>(l)];
        const DeltaNetWeights& D = L.deltanet;
        Workspace& w = p.w;
        const Index N = p.N, T = p.T, R = p.R(), Hk = s.k_heads, Hv = s.v_heads, dk = s.k_dim, dv = s.v_dim;
        const Index Kw = s.key_width(), Vw = s.value_width(), C = s.conv_dim(), taps = s.conv_kernel;
        RowMatrixF &mixed = w.qkv, &z = w.gate, &beta = w.dn_beta, &decay = w.dn_decay;
        deltanet_inputs(p, D, n);
        {
            detail::StageTimer timer(p.stage(&StageTimes::attention));
            w.dn_conv.resize(R, C);
            KVCache::Layer* cl = p.cache ? &p.cache->layer(l) : nullptr;
            for (Index b = 0; b < N; ++b) {
                const Index hist = b * (taps - 1) * C;
                kernels::causal_conv1d_silu(mixed.row(b * T).data(), C, T, C, D.conv.data(), taps, cl ? cl->conv.data() + hist : nullptr,
                                            cl ? cl->conv_next.data() + hist : nullptr, w.dn_conv.row(b * T).data(), C);
            }
            w.q = w.dn_conv.leftCols(Kw);
            w.k = w.dn_conv.middleCols(Kw, Kw);
            w.v = w.dn_conv.rightCols(Vw);
            kernels::l2_normalize_rows(w.q.data(), R * Hk, dk, dk);
            kernels::l2_normalize_rows(w.k.data(), R * Hk, dk, dk);
            for (Index r = 0; r < R; ++r)
                for (Index h = 0; h < Hv; ++h) {  // beta = sigmoid(b); decay = exp(-exp(A_log) softplus(a + dt_bias))
                    const double a = static_cast<double>(decay(r, h)) + D.dt_bias[static_cast<std::size_t>(h)];
                    const double sp = a > 20 ? a : std::log1p(std::exp(a));
                    decay(r, h) = static_cast<float>(std::exp(static_cast<double>(static_cast<float>(D.neg_a[static_cast<std::size_t>(h)] * sp))));
                    beta(r, h) = 1.0f / (1.0f + std::exp(-beta(r, h)));
                }
        }
        p.hooks.block(l, BlockSite::DnQ, w.q.data(), {N, T, Hk, dk});
        p.hooks.block(l, BlockSite::DnK, w.k.data(), {N, T, Hk, dk});
        p.hooks.block(l, BlockSite::DnV, w.v.data(), {N, T, Hv, dv});
        p.hooks.block(l, BlockSite::DnBeta, beta.data(), {N, T, Hv});
        p.hooks.block(l, BlockSite::DnDecay, decay.data(), {N, T, Hv});
        w.z.resize(R, Vw);
        {
            detail::StageTimer timer(p.stage(&StageTimes::attention));
            const kernels::DeltaRuleShape shape{Hk, Hv, dk, dv};
            KVCache::Layer* cl = p.cache ? &p.cache->layer(l) : nullptr;
            std::vector<float> scratch;
            for (Index b = 0; b < N; ++b) {
                const Index at = b * shape.state_size(), r0 = b * T;
                if (!cl) scratch.resize(static_cast<std::size_t>(shape.state_size()));
                kernels::gated_delta_rule(shape, w.q.row(r0).data(), Kw, w.k.row(r0).data(), Kw, w.v.row(r0).data(), Vw, beta.row(r0).data(),
                                          Hv, decay.row(r0).data(), Hv, cl ? cl->state.data() + at : nullptr,
                                          cl ? cl->state_next.data() + at : scratch.data(), w.z.row(r0).data(), Vw, T);
            }
        }
        p.hooks.block(l, BlockSite::DnZ, w.z.data(), {N, T, Hv, dv});
        z = z.array() / (1.0f + (-z.array()).exp());  // silu(z)
        p.hooks.block(l, BlockSite::DnGate, z.data(), {N, T, Hv, dv});
        {
            detail::StageTimer timer(p.stage(&StageTimes::norm));
            const NormSpec ns{NormKind::RMSNorm, s.norm_eps, true, false, false};
            detail::apply_norm(ns, D.norm, w.z.data(), w.z.data(), R * Hv, dv);
        }
        w.z.array() *= z.array();
        w.attn_out.resize(R, c.hidden_size);
        linear(p, D.out, w.z, w.attn_out);
        mixer_out(p, l, L);
    }

    /// A Mamba-2 layer (MambaSpec): attn_out [R, d] for the block input n [R, d]; with a cache, the convolution and the
    /// state continue the held ones (the step's new ones wait for commit_step).
    void mamba(Pass& p, int l, const RowMatrixF& n) const {
        const ModelConfig& c = config_;
        const MambaSpec& s = c.mamba;
        const LayerWeights& L = weights_.layers[static_cast<std::size_t>(l)];
        const MambaWeights& M = L.mamba;
        Workspace& w = p.w;
        const Index N = p.N, T = p.T, R = p.R(), H = s.heads, P = s.head_dim, G = s.groups, S = s.state, I = s.inner(), C = s.conv_dim();
        RowMatrixF &proj = w.qkv, &x = w.v, &B = w.q, &Cm = w.k, &dt = w.dn_decay, &y = w.z, &gate = w.gate;
        proj.resize(R, I + C + H);  // [z; xBC; dt]
        linear(p, M.in, n, proj, &M.in_b);
        const kernels::SsdShape shape{H, P, G, S};
        KVCache::Layer* cl = p.cache ? &p.cache->layer(l) : nullptr;
        {
            detail::StageTimer timer(p.stage(&StageTimes::attention));
            w.dn_conv.resize(R, C);
            const Index taps = s.conv_kernel, hist = (taps - 1) * C;
            for (Index b = 0; b < N; ++b)
                kernels::causal_conv1d_silu(proj.row(b * T).data() + I, proj.cols(), T, C, M.conv.data(), taps, cl ? cl->conv.data() + b * hist : nullptr,
                                            cl ? cl->conv_next.data() + b * hist : nullptr, w.dn_conv.row(b * T).data(), C,
                                            M.conv_b.empty() ? nullptr : M.conv_b.data());
            x = w.dn_conv.leftCols(I);
            B = w.dn_conv.middleCols(I, G * S);
            Cm = w.dn_conv.rightCols(G * S);
            dt = proj.rightCols(H);
            for (Index r = 0; r < R; ++r)
                for (Index h = 0; h < H; ++h) {  // softplus (threshold 20, as torch), then time_step_limit
                    const float a = dt(r, h) + M.dt_bias[static_cast<std::size_t>(h)];
                    float v = a > 20.0f ? a : std::log1p(std::exp(a));
                    v = std::max(v, static_cast<float>(s.dt_min));
                    if (s.dt_max > 0) v = std::min(v, static_cast<float>(s.dt_max));
                    dt(r, h) = v;
                }
        }
        p.hooks.block(l, BlockSite::SsmX, x.data(), {N, T, H, P});
        p.hooks.block(l, BlockSite::SsmB, B.data(), {N, T, G, S});
        p.hooks.block(l, BlockSite::SsmC, Cm.data(), {N, T, G, S});
        p.hooks.block(l, BlockSite::SsmDt, dt.data(), {N, T, H});
        y.resize(R, I);
        std::vector<float> states(static_cast<std::size_t>(cl ? 0 : N * shape.state_size()));
        {
            detail::StageTimer timer(p.stage(&StageTimes::attention));
            for (Index b = 0; b < N; ++b) {
                const Index r0 = b * T, at = b * shape.state_size();
                kernels::ssd_scan(shape, x.row(r0).data(), I, B.row(r0).data(), G * S, Cm.row(r0).data(), G * S, dt.row(r0).data(), H,
                                  M.neg_a.data(), M.D.data(), cl ? cl->state.data() + at : nullptr,
                                  cl ? cl->state_next.data() + at : states.data() + at, y.row(r0).data(), I, T);
            }
        }
        if (p.hooks.has(l, BlockSite::SsmState)) {  // (a copy: the hook reads the state, the cache keeps its own)
            std::vector<float> st = cl ? cl->state_next : states;
            p.hooks.block(l, BlockSite::SsmState, st.data(), {N, H, P, S});
        }
        p.hooks.block(l, BlockSite::SsmY, y.data(), {N, T, H, P});
        gate = proj.leftCols(I);
        gate = gate.array() / (1.0f + (-gate.array()).exp());  // silu(z)
        p.hooks.block(l, BlockSite::SsmGate, gate.data(), {N, T, H, P});
        y.array() *= gate.array();
        norm(p, M.norm, y, y);
        w.attn_out.resize(R, c.hidden_size);
        linear(p, M.out, y, w.attn_out, &M.out_b);
        mixer_out(p, l, L);
    }

    /// A Gated DeltaNet layer's projections of n [R, d]: w.qkv [R, conv] = [q; k; v] by channel, w.gate [R, Vw] = z,
    /// w.dn_beta [R, Hv] = b and w.dn_decay [R, Hv] = a (raw), from the separate or the grouped layout.
    void deltanet_inputs(Pass& p, const DeltaNetWeights& D, const RowMatrixF& n) const {
        const DeltaNetSpec& s = config_.deltanet;
        Workspace& w = p.w;
        const Index R = p.R(), Hk = s.k_heads, Hv = s.v_heads, dk = s.k_dim, Kw = s.key_width(), Vw = s.value_width();
        RowMatrixF &mixed = w.qkv, &z = w.gate, &beta = w.dn_beta, &decay = w.dn_decay;
        mixed.resize(R, s.conv_dim());
        z.resize(R, Vw);
        beta.resize(R, Hv);
        decay.resize(R, Hv);
        if (!s.grouped) {
            linear(p, D.qkv, n, mixed);
            linear(p, D.z, n, z);
            linear(p, D.b, n, beta);
            linear(p, D.a, n, decay);
            return;
        }
        // Qwen3-Next: per key head g, [q_g, k_g, v (per value heads), z (per value heads)] and [b (per), a (per)]
        const Index per = Hv / Hk, pv = per * s.v_dim;
        RowMatrixF& qkvz = w.mla_q;
        RowMatrixF& ba = w.mla_kv;
        qkvz.resize(R, 2 * Kw + 2 * Vw);
        ba.resize(R, 2 * Hv);
        linear(p, D.qkvz, n, qkvz);
        linear(p, D.ba, n, ba);
        for (Index r = 0; r < R; ++r)
            for (Index g = 0; g < Hk; ++g) {
                const float* src = qkvz.row(r).data() + g * (2 * dk + 2 * pv);
                std::copy_n(src, dk, mixed.row(r).data() + g * dk);
                std::copy_n(src + dk, dk, mixed.row(r).data() + Kw + g * dk);
                std::copy_n(src + 2 * dk, pv, mixed.row(r).data() + 2 * Kw + g * pv);
                std::copy_n(src + 2 * dk + pv, pv, z.row(r).data() + g * pv);
                std::copy_n(ba.row(r).data() + g * 2 * per, per, beta.row(r).data() + g * per);
                std::copy_n(ba.row(r).data() + g * 2 * per + per, per, decay.row(r).data() + g * per);
            }
    }

    /// Multi-head latent attention (MlaSpec): w.q, w.k, w.v [R, H*hd] with each head laid out [q_rope; q_nope; 0],
    /// [k_rope; k_nope; 0] and [v; 0]; the normalised latent goes to attn.hook_latent.
    void mla_qkv(Pass& p, int l, const RowMatrixF& n) const {
        const ModelConfig& c = config_;
        const MlaSpec& m = c.mla;
        const LayerWeights& L = weights_.layers[static_cast<std::size_t>(l)];
        Workspace& w = p.w;
        const Index R = p.R(), H = c.num_heads, hd = c.head_dim, qk = m.qk(), nope = m.qk_nope, rope = m.qk_rope, vd = m.v_head_dim;
        const NormSpec ns{NormKind::RMSNorm, m.norm_eps, true, false, false};
        auto rms = [&](const NormWeights& nw, RowMatrixF& x) {
            detail::StageTimer timer(p.stage(&StageTimes::norm));
            detail::apply_norm(ns, nw, x.data(), x.data(), x.rows(), x.cols());
        };
        RowMatrixF &qf = w.mla_q, &kv = w.mla_kv, &latent = w.mla_latent, &kvb = w.mla_kvb;
        qf.resize(R, H * qk);
        if (L.q_a.bound()) {
            w.mla_qa.resize(R, m.q_lora_rank);
            linear(p, L.q_a, n, w.mla_qa);
            rms(L.q_a_norm, w.mla_qa);
            linear(p, L.q_up, w.mla_qa, qf);
        } else {
            linear(p, L.q, n, qf);
        }
        kv.resize(R, m.kv_lora_rank + rope);
        linear(p, L.kv_a, n, kv);
        latent = kv.leftCols(m.kv_lora_rank);
        rms(L.kv_a_norm, latent);
        p.hooks.block(l, BlockSite::Latent, latent.data(), {p.N, p.T, m.kv_lora_rank});
        kvb.resize(R, H * (nope + vd));
        linear(p, L.kv_up, latent, kvb);
        w.q.setZero(R, H * hd);
        w.k.setZero(R, H * hd);
        w.v.setZero(R, H * hd);
        for (Index r = 0; r < R; ++r)
            for (Index h = 0; h < H; ++h) {
                const float* qs = qf.row(r).data() + h * qk;
                const float* ks = kvb.row(r).data() + h * (nope + vd);
                float *qd = w.q.row(r).data() + h * hd, *kd = w.k.row(r).data() + h * hd;
                std::copy_n(qs + nope, rope, qd), std::copy_n(qs, nope, qd + rope);
                std::copy_n(kv.row(r).data() + m.kv_lora_rank, rope, kd), std::copy_n(ks, nope, kd + rope);
                std::copy_n(ks + nope, vd, w.v.row(r).data() + h * hd);
            }
    }

    /// q [R, H*hd], k, v [R, KV*hd] from a fused projection's output in the config's layout.
    void split_qkv(const RowMatrixF& qkv, RowMatrixF& q, RowMatrixF& k, RowMatrixF& v) const {
        const ModelConfig& c = config_;
        const Index H = c.num_heads, KV = c.num_kv_heads, hd = c.head_dim;
        if (c.qkv_layout == QkvLayout::Concat) {
            q = qkv.leftCols(H * hd);
            k = qkv.middleCols(H * hd, KV * hd);
            v = qkv.rightCols(KV * hd);
            return;
        }
        q.resize(qkv.rows(), H * hd);
        k.resize(qkv.rows(), KV * hd);
        v.resize(qkv.rows(), KV * hd);
        const Index per = H / KV;  // query heads of one KV group (PerHead: H == KV, one each)
        for (Index g = 0; g < KV; ++g) {
            const Index base = g * (per + 2) * hd;  // [q_g1 .. q_gper, k_g, v_g]
            q.middleCols(g * per * hd, per * hd) = qkv.middleCols(base, per * hd);
            k.middleCols(g * hd, hd) = qkv.middleCols(base + per * hd, hd);
            v.middleCols(g * hd, hd) = qkv.middleCols(base + (per + 1) * hd, hd);
        }
    }

    const kernels::RopeTable& rope_of(const Pass& p, int l) const {
        return *p.rope[static_cast<std::size_t>(config_.layers[static_cast<std::size_t>(l)].rope)];
    }

    /// Rotate the `heads` heads of one row of q or k to `position`.
    void rotate(const kernels::RopeTable& t, float* x, Index heads, Index position) const {
        const ModelConfig& c = config_;
        const auto pairs = c.rope_pairs == RopePairs::Half ? kernels::RopeLayout::RotateHalf : kernels::RopeLayout::Interleaved;
        for (Index h = 0; h < heads; ++h)
            kernels::rope_apply_head<float>(x + h * c.head_dim, t.cos.row(position).data(), t.sin.row(position).data(), t.half(), pairs);
    }

    /// Copy the new tokens' rows of x [N*T, width] into the cache tensor m at held tokens past..past+T.
    static void store_rows(const Pass& p, RowMatrixF& m, const RowMatrixF& x) {
        for (Index b = 0; b < p.N; ++b) m.middleRows(p.cache->row(b, p.past), p.T) = x.middleRows(b * p.T, p.T);
    }
    static void store_rows(const Pass& p, KVRows& m, const RowMatrixF& x) {
        for (Index b = 0; b < p.N; ++b)
            for (Index t = 0; t < p.T; ++t) m.store(p.cache->row(b, p.past + t), x.row(b * p.T + t).data());
    }

    /// Append the new keys (rotated) and values to the cache; rotate the held keys whose position changed
    /// (after an eviction with positions = index in the cache) again from the keys before RoPE; quantize what the
    /// cache's KVQuant says.
    void cache_keys_values(Pass& p, int l) const {
        KVCache& cache = *p.cache;
        KVCache::Layer& C = cache.layer(l);
        if (cache.latent()) return cache_latent(p, C);
        store_rows(p, C.k, p.w.k);
        store_rows(p, C.v, p.w.v);
        const bool rotated = cache.keeps_raw_keys() && !config_.layers[static_cast<std::size_t>(l)].nope;
        if (rotated) {
            std::vector<float> key(static_cast<std::size_t>(C.k_raw.cols()));
            for (Index j = 0; j < p.keys(); ++j) {
                Index& at = C.k_pos[static_cast<std::size_t>(j)];
                const Index want = cache.position(j);
                if (j < p.past && at != want)
                    for (Index b = 0; b < p.N; ++b) rotate_cached_key(p, l, cache.row(b, j), want, key.data());
                at = want;
            }
        }
        if (cache.policy().quant.active()) quantize_cached(p, l, rotated);
    }

    /// A latent cache's rows for the new tokens: [the rotated key shared by the heads (head 0's rotary part of k); the
    /// normalised latent, as attn.hook_latent left it].
    void cache_latent(Pass& p, KVCache::Layer& C) const {
        const MlaSpec& m = config_.mla;
        std::vector<float> row(static_cast<std::size_t>(m.qk_rope + m.kv_lora_rank));
        for (Index b = 0; b < p.N; ++b)
            for (Index t = 0; t < p.T; ++t) {
                const Index r = b * p.T + t;
                std::copy_n(p.w.k.row(r).data(), m.qk_rope, row.data());
                std::copy_n(p.w.mla_latent.row(r).data(), m.kv_lora_rank, row.data() + m.qk_rope);
                C.k.store(p.cache->row(b, p.past + t), row.data());
            }
    }

    /// Held key row r (of k_raw) rotated to `position` (and q/k-normed after RoPE where the model does) into k.
    void rotate_cached_key(Pass& p, int l, Index r, Index position, float* key) const {
        KVCache::Layer& C = p.cache->layer(l);
        std::copy_n(C.k_raw.row(r).data(), C.k_raw.cols(), key);
        rotate(rope_of(p, l), key, config_.num_kv_heads, position);
        if (config_.layer_qk_norm(l) && config_.qk_norm_after_rope) {  // (Llama 4: the norm follows RoPE)
            const bool whole = config_.qk_norm == QKNorm::Whole;
            const Index KV = config_.num_kv_heads, hd = config_.head_dim;
            detail::apply_norm(config_.qk_norm_spec, weights_.layers[static_cast<std::size_t>(l)].k_norm, key, key, whole ? 1 : KV,
                               whole ? KV * hd : hd);
        }
        C.k.store(r, key);
    }

    /// The cache's KV quantization (KVQuant, kv_cache.hpp) of this step: the new tokens' rows (per token) or the token
    /// groups the step completed (per channel); keys before RoPE are quantized in k_raw and rotated again into k
    /// (`rotated`: this layer's keys are rotated from k_raw).
    void quantize_cached(Pass& p, int l, bool rotated) const {
        KVCache& cache = *p.cache;
        KVCache::Layer& C = cache.layer(l);
        const KVQuant& q = cache.policy().quant;
        const Index width = C.k.cols(), S = q.keep_first, G = q.token_group;
        const Index group = q.channel_group > 0 ? q.channel_group : config_.head_dim;
        const auto& held = cache.held();
        auto stream = [&](Index j) { return held[static_cast<std::size_t>(j)]; };
        // each key or value tensor: rows changed (held token indices), through a row accessor
        auto quantize = [&](int bits, KVQuant::Axis axis, const std::function<float*(Index)>& row, std::vector<Index>* changed) {
            if (bits == 0) return;
            for (Index j = p.past; j < p.keys(); ++j) {
                if (stream(j) < S) continue;
                if (axis == KVQuant::Axis::Token) {
                    for (Index b = 0; b < p.N; ++b)
                        for (Index c0 = 0; c0 < width; c0 += group) kernels::quantize_asymmetric(row(cache.row(b, j)) + c0, std::min(group, width - c0), 1, bits);
                    if (changed) changed->push_back(j);
                } else if ((stream(j) - S + 1) % G == 0) {  // the last token of a group: the group's held tokens, per channel
                    Index j0 = j;
                    while (j0 > 0 && stream(j0 - 1) > stream(j) - G) --j0;
                    for (Index b = 0; b < p.N; ++b)
                        for (Index c = 0; c < width; ++c) kernels::quantize_asymmetric(row(cache.row(b, j0)) + c, j - j0 + 1, width, bits);
                    if (changed)
                        for (Index i = j0; i <= j; ++i) changed->push_back(i);
                }
            }
        };
        quantize(q.value_bits, q.value_axis, [&](Index r) { return C.v.f32_row(r); }, nullptr);
        if (q.key_bits == 0) return;
        if (!(rotated && q.keys_before_rope)) {
            quantize(q.key_bits, q.key_axis, [&](Index r) { return C.k.f32_row(r); }, nullptr);
            return;
        }
        std::vector<Index> changed;
        quantize(q.key_bits, q.key_axis, [&](Index r) { return C.k_raw.row(r).data(); }, &changed);
        std::vector<float> key(static_cast<std::size_t>(width));
        for (Index j : changed)
            for (Index b = 0; b < p.N; ++b) rotate_cached_key(p, l, cache.row(b, j), C.k_pos[static_cast<std::size_t>(j)], key.data());
    }

    /// Layer l's attention as the kernels take it: heads, scale, window, chunk, sinks, ALiBi, and the run's override.
    kernels::AttentionSpec attention_spec(const Pass& p, int l, const LayerWeights& L) const {
        const ModelConfig& c = config_;
        kernels::AttentionSpec spec;
        const bool latent = p.cache && p.cache->latent();  // (one key/value head: the held [shared key; latent] rows)
        spec.heads = c.num_heads;
        spec.kv_heads = latent ? 1 : c.num_kv_heads;
        spec.head_dim = latent ? c.mla.qk_rope + c.mla.kv_lora_rank : c.head_dim;
        spec.scale = static_cast<float>(c.attn_scale);
        spec.softcap = static_cast<float>(c.attn_softcap);
        spec.window = c.window(l);
        spec.chunk = c.layers[static_cast<std::size_t>(l)].chunk;
        spec.causal = c.causal;
        if (!p.alibi.empty()) spec.alibi = p.alibi.data();
        if (!L.sinks.empty()) spec.sink_logits = L.sinks.data();
        if (!L.k_bias_slot.empty()) {
            spec.k_bias = L.k_bias_slot.data();
            spec.v_bias = L.v_bias_slot.data();
        }
        if (!p.override_logits.empty()) spec.sink_logits = p.override_logits.data();  // softmax1 / sink=X
        const AttentionOverride& o = p.options.attention;
        spec.fn = attention_fn(c, o);
        spec.sigmoid_bias = static_cast<float>(o.kind == AttentionOverride::Kind::Sigmoid ? o.sigmoid_bias : c.attention_sigmoid_bias);
        if (o.kind == AttentionOverride::Kind::Clipped) {
            spec.clipped = true;
            spec.zeta = o.zeta;
            spec.gamma = o.gamma;
        }
        return spec;
    }

    /// Sequence b's queries, and its keys and values: this pass's rows, or the cache's (past and present). A latent
    /// cache's rows are keys and values at once (attend_latent's absorbed queries read them).
    kernels::AttentionInput attention_input(const Pass& p, int l, Index b) const {
        const Workspace& w = p.w;
        const Index T = p.T;
        const bool latent = p.cache && p.cache->latent();
        const RowMatrixF& q = latent ? w.mla_qabs : w.q;
        kernels::AttentionInput in;
        in.q = q.data() + b * T * q.cols();
        in.q_stride = q.cols();
        in.T = T;
        in.past = p.past;
        if (!p.cache) {
            in.k_stride = w.k.cols();
            in.v_stride = w.v.cols();
            in.k = w.k.data() + b * T * w.k.cols();
            in.v = w.v.data() + b * T * w.v.cols();
            return in;
        }
        const KVCache::Layer& C = p.cache->layer(l);
        const Index first = p.cache->row(b, 0) * C.k.cols();
        in.k_stride = in.v_stride = C.k.cols();
        in.kv_format = C.k.format();
        const KVRows& V = latent ? C.k : C.v;
        if (in.kv_format == kernels::KVFormat::F32) {
            in.k = C.k.f32() + first;
            in.v = V.f32() + first;
        } else {
            in.k16 = C.k.half() + first;
            in.v16 = V.half() + first;
        }
        return in;
    }

    /// Sequence b's keys for attn.hook_pattern_columns.
    static const Index* pattern_columns_of(const Pass& p, Index b) {
        static constexpr Index key0 = 0;
        return p.options.pattern_columns.size() == 0 ? &key0 : p.options.pattern_columns.row(b).data();
    }

    /// z [R, H * head width] from q, k, v: streaming, or through [N, H, T, K] buffers when hooks read the scores.
    void attend(Pass& p, int l, const LayerWeights& L, RowMatrixF& z) const {
        Workspace& w = p.w;
        const Index N = p.N, T = p.T, H = config_.num_heads, C = p.options.columns();
        const kernels::AttentionSpec spec = attention_spec(p, l, L);
        const bool want_sink = spec.n_extra() > 0 && p.hooks.has(l, BlockSite::SinkPattern);
        const bool want_columns = p.hooks.has(l, BlockSite::PatternColumns);
        if (want_columns) w.columns.assign(static_cast<std::size_t>(N * H * T * C), 0.0f);
        if (p.hooks.has(l, BlockSite::AttnScores) || p.hooks.has(l, BlockSite::Pattern) || want_sink)
            return attend_materialised(p, l, spec, want_columns, z);
        for (Index b = 0; b < N; ++b) {
            kernels::ColumnProbs cols;
            if (want_columns) cols = {pattern_columns_of(p, b), C, w.columns.data() + b * H * T * C};
            kernels::causal_attention(spec, attention_input(p, l, b), z.data() + b * T * z.cols(), z.cols(), nullptr,
                                      p.options.attention_tile, cols);
        }
        if (want_columns) p.hooks.block(l, BlockSite::PatternColumns, w.columns.data(), {N, H, T, C});
    }

    /// attend() through [N, H, T, K] scores and pattern, which hooks can read or edit before the values are combined.
    void attend_materialised(Pass& p, int l, const kernels::AttentionSpec& spec, bool want_columns, RowMatrixF& z) const {
        Workspace& w = p.w;
        const Index N = p.N, T = p.T, H = config_.num_heads, K = p.keys(), C = p.options.columns(), per = H * T * K;
        w.scores.resize(static_cast<std::size_t>(N * per));
        w.sink.assign(static_cast<std::size_t>(N * H * T), 0.0f);
        w.kvp.assign(static_cast<std::size_t>(N * H * T), 0.0f);
        for (Index b = 0; b < N; ++b) kernels::attention_scores(spec, attention_input(p, l, b), w.scores.data() + b * per);
        p.hooks.block(l, BlockSite::AttnScores, w.scores.data(), {N, H, T, K});
        for (Index b = 0; b < N; ++b)
            kernels::attention_probs(spec, attention_input(p, l, b), w.scores.data() + b * per, w.sink.data() + b * H * T,
                                     w.kvp.data() + b * H * T);
        p.hooks.block(l, BlockSite::Pattern, w.scores.data(), {N, H, T, K});
        if (spec.n_extra() > 0) p.hooks.block(l, BlockSite::SinkPattern, w.sink.data(), {N, H, T});
        if (want_columns) {  // (the pattern as the hooks left it: the weights applied below)
            for (Index b = 0; b < N; ++b) {
                const Index* cols = pattern_columns_of(p, b);
                for (Index r = 0; r < H * T; ++r)
                    for (Index j = 0; j < C; ++j)
                        w.columns[static_cast<std::size_t>((b * H * T + r) * C + j)] =
                            cols[j] >= 0 && cols[j] < K ? w.scores[static_cast<std::size_t>(b * per + r * K + cols[j])] : 0.0f;
            }
            p.hooks.block(l, BlockSite::PatternColumns, w.columns.data(), {N, H, T, C});
        }
        for (Index b = 0; b < N; ++b)
            kernels::attention_combine(spec, attention_input(p, l, b), w.scores.data() + b * per, w.kvp.data() + b * H * T,
                                       z.data() + b * T * z.cols(), z.cols());
    }

    /// MLA over a latent cache: the heads attend to the held [shared rotary key; latent] rows as one key/value head of
    /// width qk_rope + kv_lora_rank, with kv_b_proj absorbed: q'_h = [q_rope_h; W_UK_h^T q_nope_h] (W_UK_h: head h's key
    /// rows of kv_b_proj), z_h = W_UV_h (the latent part of the attention-weighted rows). Scores, pattern and z equal
    /// attention over the decompressed keys and values up to float rounding; z [R, H*hd] as attend() leaves it.
    void attend_latent(Pass& p, int l, const LayerWeights& L) const {
        const ModelConfig& c = config_;
        const MlaSpec& m = c.mla;
        Workspace& w = p.w;
        const Index R = p.R(), H = c.num_heads, hd = c.head_dim, rope = m.qk_rope, r = m.kv_lora_rank, D = rope + r;
        const Index nope = m.qk_nope, vd = m.v_head_dim, per = nope + vd;
        w.mla_up.resize(H * per, r);  // [H * (nope + vd), r]: per head W_UK_h [nope, r], then W_UV_h [vd, r]
        L.kv_up.block(0, H * per, 0, r, w.mla_up.data());
        w.mla_qabs.resize(R, H * D);
        for (Index h = 0; h < H; ++h) {
            w.mla_qabs.middleCols(h * D, rope) = w.q.middleCols(h * hd, rope);
            w.mla_qabs.middleCols(h * D + rope, r).noalias() = w.q.middleCols(h * hd + rope, nope) * w.mla_up.middleRows(h * per, nope);
        }
        w.mla_zabs.resize(R, H * D);
        attend(p, l, L, w.mla_zabs);
        w.z.setZero(R, H * hd);
        for (Index h = 0; h < H; ++h)
            w.z.middleCols(h * hd, vd).noalias() = w.mla_zabs.middleCols(h * D + rope, r) * w.mla_up.middleRows(h * per + nope, vd).transpose();
    }

    /// mlp_out [R, d] = post_norm(down(act(gate(n)) * up(n))) or post_norm(down(act(up(n)))).
    void mlp(Pass& p, int l, const RowMatrixF& n) const {
        const ModelConfig& c = config_;
        const LayerWeights& L = weights_.layers[static_cast<std::size_t>(l)];
        Workspace& w = p.w;
        const Index R = p.R(), I = c.layer_intermediate(l);
        const std::vector<Index> shape = {p.N, p.T, I};
        RowMatrixF &h = w.mlp_hidden, &u = w.mlp_linear;
        h.resize(R, I);
        if (c.mlp == MlpKind::Gated) {
            if (L.gate_up.bound()) {  // fused [gate; up]
                u.resize(R, 2 * I);
                linear(p, L.gate_up, n, u, &L.gate_up_b);
                h = u.leftCols(I);
                u = u.rightCols(I).eval();
            } else {
                u.resize(R, I);
                linear(p, L.gate, n, h, &L.gate_b);
                linear(p, L.up, n, u, &L.up_b);
            }
            p.hooks.block(l, BlockSite::MlpPre, h.data(), shape);
            p.hooks.block(l, BlockSite::MlpPreLinear, u.data(), shape);
            detail::StageTimer timer(p.stage(&StageTimes::activation));
            detail::gated(c.act, h.data(), u.data(), R * I, L.act_params.data());
        } else {
            linear(p, L.up, n, h, &L.up_b);
            p.hooks.block(l, BlockSite::MlpPre, h.data(), shape);
            detail::StageTimer timer(p.stage(&StageTimes::activation));
            detail::activate(c.act, h.data(), h.data(), R * I, L.act_params.data());
        }
        p.hooks.block(l, BlockSite::MlpPost, h.data(), shape);
        if (c.mlp_sub_norm) norm(p, L.mlp_sub_norm, h, h);
        w.mlp_out.resize(R, c.hidden_size);
        linear(p, L.down, h, w.mlp_out, &L.down_b);
        p.hooks.block(l, BlockSite::MlpDown, w.mlp_out.data(), {p.N, p.T, c.hidden_size});
        mlp_post(p, l, L);
    }

    /// Mixture of experts: router logits [R, E]; scores (softmax, or DeepSeek-V3's sigmoid), the top-k experts by score
    /// (plus a choice bias; within the best groups when the router has groups), their weights the scores (renormalised
    /// when norm_topk) times routed_scale; then mlp_out = sum over routed experts e of weight_e * down_e(act(gate_e(n)) *
    /// up_e(n)), experts in order, plus the shared expert.
    void moe(Pass& p, int l, const RowMatrixF& n) const {
        const ModelConfig& c = config_;
        const LayerWeights& L = weights_.layers[static_cast<std::size_t>(l)];
        Workspace& w = p.w;
        const Index R = p.R(), E = c.num_experts, I = c.intermediate_size, d = c.hidden_size;
        w.router.resize(R, E);
        linear(p, L.router, n, w.router, &L.router_b);
        p.hooks.block(l, BlockSite::MlpRouter, w.router.data(), {p.N, p.T, E});
        RowMatrixF& rw = w.expert_w;
        rw.setZero(R, E);
        std::vector<float> prob(static_cast<std::size_t>(E)), choice(static_cast<std::size_t>(E));
        for (Index r = 0; r < R; ++r) {
            const float* logit = w.router.row(r).data();
            if (c.router_score == RouterScore::Sigmoid) {
                for (Index e = 0; e < E; ++e) prob[static_cast<std::size_t>(e)] = 1.0f / (1.0f + std::exp(-logit[e]));
            } else {
                const float mx = *std::max_element(logit, logit + E);
                float sum = 0.0f;
                for (Index e = 0; e < E; ++e) sum += (prob[static_cast<std::size_t>(e)] = std::exp(logit[e] - mx));
                for (auto& x : prob) x /= sum;
            }
            choice = prob;
            if (!L.router_score_bias.empty())
                for (Index e = 0; e < E; ++e) choice[static_cast<std::size_t>(e)] += L.router_score_bias[static_cast<std::size_t>(e)];
            if (c.router_groups > 0) detail::keep_best_groups(choice, c.router_groups, c.router_topk_groups, c.group_score);
            const std::vector<Index> top = detail::top_indices(choice, c.experts_per_token);
            float sum = 0.0f;
            for (const Index e : top) sum += prob[static_cast<std::size_t>(e)];
            for (const Index e : top)
                rw(r, e) = (c.norm_topk ? prob[static_cast<std::size_t>(e)] / sum : prob[static_cast<std::size_t>(e)]) *
                           static_cast<float>(c.routed_scale);
        }
        p.hooks.block(l, BlockSite::MlpExpertWeights, rw.data(), {p.N, p.T, E});
        w.mlp_out.setZero(R, d);
        const bool slots = p.hooks.has(l, BlockSite::MlpExpertOut);
        const Index k = c.experts_per_token;
        std::vector<Index> filled;
        if (slots) {
            w.expert_slots.setZero(R * k, d);
            filled.assign(static_cast<std::size_t>(R), 0);
        }
        std::vector<Index> rows;
        for (Index e = 0; e < E; ++e) {
            rows.clear();
            for (Index r = 0; r < R; ++r)
                if (rw(r, e) != 0.0f) rows.push_back(r);
            if (rows.empty()) continue;
            const ExpertWeights& X = L.experts[static_cast<std::size_t>(e)];
            const auto m = static_cast<Index>(rows.size());
            w.expert_in.resize(m, d);
            for (Index i = 0; i < m; ++i) {
                const Index r = rows[static_cast<std::size_t>(i)];
                w.expert_in.row(i) = c.routing_on_input ? (n.row(r) * rw(r, e)).eval() : n.row(r);
            }
            expert_mlp(p, X, I, w.expert_in);
            for (Index i = 0; i < m; ++i) {
                const Index r = rows[static_cast<std::size_t>(i)];
                if (c.routing_on_input) w.mlp_out.row(r) += w.expert_out.row(i);
                else w.mlp_out.row(r) += w.expert_out.row(i) * rw(r, e);
                if (slots) w.expert_slots.row(r * k + filled[static_cast<std::size_t>(r)]++) = w.expert_out.row(i);
            }
        }
        if (slots) p.hooks.block(l, BlockSite::MlpExpertOut, w.expert_slots.data(), {p.N, p.T, k, d});
        if (c.shared_expert_size > 0) {  // every token: + shared(n) (times sigmoid(shared_gate n))
            expert_mlp(p, L.shared, c.shared_expert_size, n);
            if (c.shared_expert_gated) {
                RowMatrixF& g = w.expert_u;
                g.resize(R, 1);
                linear(p, L.shared_gate, n, g);
                for (Index r = 0; r < R; ++r) w.expert_out.row(r) *= 1.0f / (1.0f + std::exp(-g(r, 0)));
            }
            w.mlp_out += w.expert_out;
        }
        mlp_post(p, l, L);
    }

    /// expert_out [m, d] = down(act(gate x) * up x) of one expert of width I (routed or shared): separate gate and up, or
    /// a fused gate_up in the config's layout (halves [gate; up], or gpt-oss's interleaved columns and clamped SwiGLU).
    void expert_mlp(Pass& p, const ExpertWeights& X, Index I, const RowMatrixF& x) const {
        const ModelConfig& c = config_;
        Workspace& w = p.w;
        const Index m = x.rows();
        w.expert_h.resize(m, I);
        if (X.gate_up.bound()) {
            w.expert_u.resize(m, 2 * I);
            linear(p, X.gate_up, x, w.expert_u, &X.gate_up_b);
            if (c.gate_up_layout == GateUpLayout::Interleaved) {
                detail::clamped_swiglu(w.expert_u.data(), w.expert_h.data(), m * I, c.swiglu_limit, c.swiglu_alpha);
            } else {
                w.expert_h = w.expert_u.leftCols(I);
                w.expert_u = w.expert_u.rightCols(I).eval();
                detail::gated(c.act, w.expert_h.data(), w.expert_u.data(), m * I);
            }
        } else {
            w.expert_u.resize(m, I);
            linear(p, X.gate, x, w.expert_h);
            linear(p, X.up, x, w.expert_u);
            detail::gated(c.act, w.expert_h.data(), w.expert_u.data(), m * I);
        }
        w.expert_out.resize(m, c.hidden_size);
        linear(p, X.down, w.expert_h, w.expert_out, &X.down_b);
    }

    void mlp_post(Pass& p, int l, const LayerWeights& L) const {
        const ModelConfig& c = config_;
        const std::vector<Index> resid = {p.N, p.T, c.hidden_size};
        if (c.post_mlp_norm) {
            norm(p, L.ln_mlp_post, p.w.mlp_out, p.w.mlp_out);
            p.hooks.block(l, BlockSite::Ln2Post, p.w.mlp_out.data(), resid);
        }
        if (!L.ls_mlp.empty()) scale_columns(p.w.mlp_out, L.ls_mlp);
        if (c.residual_scale != 1.0) p.w.mlp_out *= static_cast<float>(c.residual_scale);
        p.hooks.block(l, BlockSite::MlpOut, p.w.mlp_out.data(), resid);
    }

    /// SigLIP's attention-pooling head over the normalised tokens n [N*T, d]: per image, the probe's query attends over
    /// every token (H heads of nn.MultiheadAttention, scale 1/sqrt(hd)), a = out_proj(z); pooled = a + fc2(act(fc1(ln(a)))).
    void map_pool(Pass& p, const RowMatrixF& n) const {
        const ModelConfig& c = config_;
        const ModelWeights& W = weights_;
        const Index N = p.N, T = p.T, d = c.hidden_size, H = c.num_heads, hd = c.head_dim;
        RowMatrixF probe = Eigen::Map<const RowMatrixF>(W.map_probe.data(), 1, d), q(1, 3 * d), kv(N * T, 3 * d);
        linear(p, W.map_in, probe, q, &W.map_in_b);  // (only its first d columns, the query, are used)
        linear(p, W.map_in, n, kv, &W.map_in_b);      // (its last 2d columns: keys and values)
        RowMatrixF z(N, d), a(N, d);
        std::vector<double> s(static_cast<std::size_t>(T));
        const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
        for (Index b = 0; b < N; ++b)
            for (Index h = 0; h < H; ++h) {
                double mx = -std::numeric_limits<double>::infinity(), sum = 0;
                for (Index t = 0; t < T; ++t) {
                    double dot = 0;
                    for (Index j = 0; j < hd; ++j) dot += double(q(0, h * hd + j)) * kv(b * T + t, d + h * hd + j);
                    s[static_cast<std::size_t>(t)] = dot * scale;
                    mx = std::max(mx, s[static_cast<std::size_t>(t)]);
                }
                for (double& x : s) sum += (x = std::exp(x - mx));
                for (Index j = 0; j < hd; ++j) {
                    double acc = 0;
                    for (Index t = 0; t < T; ++t) acc += s[static_cast<std::size_t>(t)] * kv(b * T + t, 2 * d + h * hd + j);
                    z(b, h * hd + j) = static_cast<float>(acc / sum);
                }
            }
        linear(p, W.map_out, z, a, &W.map_out_b);
        RowMatrixF u(N, d), hdn(N, c.intermediate_size), m(N, d);
        detail::apply_norm(c.norm, W.map_norm, u.data(), a.data(), N, d);
        linear(p, W.map_fc1, u, hdn, &W.map_fc1_b);
        detail::activate(c.act, hdn.data(), hdn.data(), hdn.size());
        linear(p, W.map_fc2, hdn, m, &W.map_fc2_b);
        p.w.pooled = a + m;
    }

    /// The final norm, then the output stage: logits or the pooled feature.
    void unembed(Pass& p) const {
        Workspace& w = p.w;
        RowMatrixF& n = w.attn_in;
        norm(p, weights_.final_norm, n, w.x);
        p.hooks.ln_final(n.data(), {p.N, p.T, config_.hidden_size});
        switch (config_.output) {
            case OutputStage::Pooled: return pool(p, n);
            case OutputStage::Logits: return lm_head(p, n);
        }
    }

    /// A vision tower's end: last_hidden_state and pooler_output (the CLS row, an attention-pooling head or tanh(dense));
    /// no vocabulary, no logits.
    void pool(Pass& p, const RowMatrixF& n) const {
        const ModelConfig& c = config_;
        Workspace& w = p.w;
        w.hidden = c.vision.last_is_normalized ? n : w.x;
        w.pooled.resize(p.N, c.hidden_size);
        for (Index b = 0; b < p.N; ++b) w.pooled.row(b) = n.row(b * p.T);
        if (c.vision.map_head) map_pool(p, n);
        if (weights_.pooler.bound()) {
            RowMatrixF cls = w.pooled;
            linear(p, weights_.pooler, cls, w.pooled, &weights_.pooler_b);
            w.pooled = w.pooled.array().tanh().matrix();
        }
        w.logits.resize(0, 0);
    }

    /// logits [R, V] = lm_head(n) (scaled and soft-capped where the model says), when the run or a hook wants them.
    void lm_head(Pass& p, const RowMatrixF& n) const {
        const ModelConfig& c = config_;
        Workspace& w = p.w;
        RowMatrixF& logits = w.logits;
        if (!p.options.logits && !p.hooks.wants_logits()) {
            logits.resize(0, 0);
            return;
        }
        logits.resize(p.R(), c.vocab_size);
        linear(p, weights_.lm_head, n, logits, &weights_.lm_head_b);
        if (c.logit_scale != 1.0) logits *= static_cast<float>(c.logit_scale);
        if (c.final_softcap > 0) detail::softcap(logits.data(), logits.size(), c.final_softcap);
        p.hooks.logits(logits.data(), {p.N, p.T, c.vocab_size});
    }

    bool has_sink_slot(const RunOptions& o) const { return massact::has_sink_slot(config_, o.attention); }

    /// x[:, j] *= s[j] (a layer scale).
    static void scale_columns(RowMatrixF& x, const std::vector<float>& s) {
        x.array().rowwise() *= Eigen::Map<const Eigen::RowVectorXf>(s.data(), static_cast<Index>(s.size())).array();
    }

    /// y = x W^T (+ bias), timed as a product.
    static void linear(Pass& p, const WeightMatrix& W, const Eigen::Ref<const RowMatrixF>& x, Eigen::Ref<RowMatrixF> y,
                       const std::vector<float>* bias = nullptr) {
        detail::StageTimer timer(p.stage(&StageTimes::matmul));
        W.apply(x, y, p.w.weights, bias);
    }

    void norm(Pass& p, const NormWeights& nw, RowMatrixF& out, const RowMatrixF& x) const {
        detail::StageTimer timer(p.stage(&StageTimes::norm));
        out.resize(x.rows(), x.cols());
        detail::apply_norm(config_.norm, nw, out.data(), x.data(), x.rows(), x.cols());
    }

    /// cos/sin for positions [0, T) (transformers: float32 angles, cos/sin scaled by the rope's attention factor).
    static kernels::RopeTable rope_table(const RopeSpec& r, Index T) {
        return scaled(r, kernels::make_rope_table(r.inv_freq(static_cast<double>(T)), 0, T));
    }

    static kernels::RopeTable scaled(const RopeSpec& r, kernels::RopeTable t) {
        const double s = r.cos_sin_scale();
        if (s != 1.0) {
            t.cos *= static_cast<float>(s);
            t.sin *= static_cast<float>(s);
        }
        return t;
    }

    /// A cache's table for positions [0, T): grown by the new rows, rebuilt when the frequencies change
    /// (dynamic and LongRoPE scaling depend on the length).
    static const kernels::RopeTable& cached_rope_table(KVCache::RopeMemo& m, const RopeSpec& r, Index T) {
        std::vector<float> inv = r.inv_freq(static_cast<double>(T));
        if (inv != m.inv_freq) {
            m.inv_freq = std::move(inv);
            m.table = {};
        }
        const Index have = m.table.cos.rows();
        if (T > have) {
            const Index grown = std::max(T, 2 * have);
            kernels::RopeTable more = scaled(r, kernels::make_rope_table(m.inv_freq, have, grown - have));
            kernels::RopeTable t;
            t.cos.resize(grown, static_cast<Index>(m.inv_freq.size()));
            t.sin.resize(grown, t.cos.cols());
            if (have > 0) {
                t.cos.topRows(have) = m.table.cos;
                t.sin.topRows(have) = m.table.sin;
            }
            t.cos.bottomRows(grown - have) = more.cos;
            t.sin.bottomRows(grown - have) = more.sin;
            m.table = std::move(t);
        }
        return m.table;
    }

    std::string dir_;
    ModelConfig config_;
    std::shared_ptr<const io::Checkpoint> ckpt_;  // shared by the copies with_weights makes
    ModelWeights weights_;
    struct TokenizerSlot {
        std::once_flag once;
        std::optional<text::Tokenizer> tokenizer;
    };
    std::shared_ptr<TokenizerSlot> tokenizer_ = std::make_shared<TokenizerSlot>();  // (read on first use)
};

}  // namespace massact

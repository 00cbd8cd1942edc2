// massact/model/transformer.hpp - the reference transformer (GPT-2 and the Llama family)
// with TransformerLens-style hook sites.
//
// Arithmetic follows Hugging Face in float32 (shared/docs/formats.md):
//   Llama block: h = x + o(Attn(RMSNorm1(x))); out = h + down(silu(gate(n)) * up(n)), n = RMSNorm2(h)
//   GPT-2 block: h = x + c_proj(Attn(LN1(x))); out = h + c_proj(gelu(c_fc(LN2(h))))
// Activations are row-major [N*T, width] matrices: sequence b, position t is row b*T + t.
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/io/checkpoint.hpp"
#include "massact/kernels/activation.hpp"
#include "massact/kernels/attention.hpp"
#include "massact/kernels/norm.hpp"
#include "massact/kernels/rope.hpp"
#include "massact/model/config.hpp"
#include "massact/model/hooks.hpp"
#include "massact/model/weights.hpp"

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace massact {

/// Token ids of N sequences of equal length T: [N, T].
using TokenBatch = RowMatrix<std::int64_t>;

/// Inference-time changes to the attention softmax of every layer (the sink literature's variants).
struct AttentionOverride {
    enum class Kind { None, Softmax1, Clipped, SinkLogit };
    Kind kind = Kind::None;
    float zeta = -0.03f, gamma = 1.03f;  // Clipped
    float sink_logit = 0.0f;             // SinkLogit: one extra logit of this value in every head
};

struct RunOptions {
    bool logits = true;           // compute logits (false: stop after ln_final)
    int last_layer = -1;          // >= 0: stop after this block (no final norm, no logits)
    AttentionOverride attention;  // default: the model's own softmax
    Index attention_tile = 64;    // query rows per streaming attention tile
};

/// Hook sites inside a block, in execution order.
enum class BlockSite : int {
    ResidPre, Ln1, Q, K, V, AttnScores, Pattern, SinkPattern, Z, AttnOut, ResidMid, Ln2, MlpPre, MlpPost, MlpOut,
    ResidPost, Count
};

inline const char* block_site_suffix(BlockSite s) {
    static constexpr const char* names[] = {
        "hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
        "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_sink_pattern", "attn.hook_z", "hook_attn_out",
        "hook_resid_mid", "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post"};
    return names[static_cast<int>(s)];
}

inline std::string block_site_name(int layer, BlockSite s) {
    return "blocks." + std::to_string(layer) + "." + block_site_suffix(s);
}

/// Buffers of a forward pass. Reusing one Workspace across forwards (one thread at a time) avoids
/// re-allocating activations and the weight-conversion buffer, and their page faults.
struct Workspace {
    RowMatrixF logits;  // [N*T, V], the result of Transformer::run
    RowMatrixF x, n, q, k, v, z, a, mlp, up, qkv, pos;
    std::vector<float> scores, sink, kvp;
    std::vector<float> weights;  // one matrix converted from F16/BF16 at a time
};

class Transformer {
public:
    /// Load a Hugging Face model directory (config.json + model.safetensors or sharded index).
    explicit Transformer(const std::string& dir, const LoadOptions& opt = {})
        : dir_(dir), config_(load_config(dir)), ckpt_(std::make_unique<io::Checkpoint>(dir)),
          weights_(bind_weights(*ckpt_, config_, opt)), inv_freq_(rope_inv_freq_f32()) {}

    const std::string& dir() const { return dir_; }
    const ModelConfig& config() const { return config_; }
    const ModelWeights& weights() const { return weights_; }
    const io::Checkpoint& checkpoint() const { return *ckpt_; }

    /// Every hook site name, in execution order.
    std::vector<std::string> hook_sites() const {
        std::vector<std::string> out = {"hook_embed"};
        if (config_.family == Family::GPT2) out.push_back("hook_pos_embed");
        for (int l = 0; l < config_.num_layers; ++l)
            for (int s = 0; s < static_cast<int>(BlockSite::Count); ++s) {
                if (static_cast<BlockSite>(s) == BlockSite::SinkPattern && !has_sink_slot({})) continue;
                out.push_back(block_site_name(l, static_cast<BlockSite>(s)));
            }
        out.push_back("ln_final.hook_normalized");
        out.push_back("logits");
        return out;
    }

    /// Check ids against the vocabulary and the position limit; throws massact::Error.
    void validate(const TokenBatch& ids) const {
        if (ids.rows() == 0 || ids.cols() == 0) throw Error("forward: empty token batch");
        if (config_.family == Family::GPT2 && ids.cols() > config_.max_positions)
            throw Error("forward: sequence length " + std::to_string(ids.cols()) + " exceeds n_positions " +
                        std::to_string(config_.max_positions));
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
        const ModelConfig& c = config_;
        const Index N = ids.rows(), T = ids.cols(), R = N * T, d = c.hidden_size, H = c.num_heads,
                    KV = c.num_kv_heads, hd = c.head_dim, I = c.intermediate_size;
        const bool gpt2 = c.family == Family::GPT2;

        // Resolve hooks once per forward: a site without hooks is an empty list.
        using FnList = std::vector<const HookFn*>;
        std::vector<std::array<FnList, static_cast<std::size_t>(BlockSite::Count)>> site(
            hooks.empty() ? 0 : static_cast<std::size_t>(c.num_layers));
        FnList h_embed, h_pos, h_final, h_logits;
        if (!hooks.empty()) {
            h_embed = hooks.matching("hook_embed");
            if (gpt2) h_pos = hooks.matching("hook_pos_embed");
            h_final = hooks.matching("ln_final.hook_normalized");
            h_logits = hooks.matching("logits");
            for (int l = 0; l < c.num_layers; ++l)
                for (int s = 0; s < static_cast<int>(BlockSite::Count); ++s)
                    site[static_cast<std::size_t>(l)][static_cast<std::size_t>(s)] =
                        hooks.matching(block_site_name(l, static_cast<BlockSite>(s)));
        }
        auto fns = [&](int l, BlockSite s) -> const FnList* {
            if (site.empty()) return nullptr;
            const FnList& f = site[static_cast<std::size_t>(l)][static_cast<std::size_t>(s)];
            return f.empty() ? nullptr : &f;
        };
        auto call = [&ids](const FnList* f, const char* name, std::string& nbuf, int layer, float* data,
                           std::vector<Index> shape) {
            if (!f) return;
            nbuf = name;
            Activation a{nbuf, layer, data, std::move(shape), &ids};
            for (const HookFn* fn : *f) (*fn)(a);
        };
        std::string nbuf;
        auto call_block = [&](int l, BlockSite s, float* data, std::vector<Index> shape) {
            const FnList* f = fns(l, s);
            if (f) call(f, block_site_name(l, s).c_str(), nbuf, l, data, std::move(shape));
        };

        std::vector<float>& scratch = w.weights;  // float32 buffer for half-precision weights
        RowMatrixF& x = w.x;
        x.resize(R, d);
        for (Index r = 0; r < R; ++r) weights_.embed.row(ids.data()[r], x.row(r).data());
        call(h_embed.empty() ? nullptr : &h_embed, "hook_embed", nbuf, -1, x.data(), {N, T, d});
        if (gpt2) {
            RowMatrixF& pos = w.pos;
            pos.resize(R, d);
            for (Index r = 0; r < R; ++r) weights_.pos_embed.row(r % T, pos.row(r).data());
            call(h_pos.empty() ? nullptr : &h_pos, "hook_pos_embed", nbuf, -1, pos.data(), {N, T, d});
            x += pos;
        }

        kernels::RopeTable rope;
        if (!gpt2) rope = kernels::make_rope_table(inv_freq_, 0, T);

        RowMatrixF &n = w.n, &q = w.q, &k = w.k, &v = w.v, &z = w.z, &a = w.a, &mlp = w.mlp, &up = w.up, &qkv = w.qkv;
        n.resize(R, d);
        q.resize(R, H * hd);
        k.resize(R, KV * hd);
        v.resize(R, KV * hd);
        z.resize(R, H * hd);
        a.resize(R, d);
        mlp.resize(R, I);
        if (!gpt2) up.resize(R, I);
        std::vector<float>&scores = w.scores, &sink = w.sink, &kvp = w.kvp;
        const std::vector<float> zeros(static_cast<std::size_t>(H), 0.0f);
        std::vector<float> const_logits;
        if (options.attention.kind == AttentionOverride::Kind::SinkLogit)
            const_logits.assign(static_cast<std::size_t>(H), options.attention.sink_logit);

        for (int l = 0; l < c.num_layers; ++l) {
            const LayerWeights& L = weights_.layers[static_cast<std::size_t>(l)];
            call_block(l, BlockSite::ResidPre, x.data(), {N, T, d});

            norm(n, x, L.ln1_w, L.ln1_b);
            call_block(l, BlockSite::Ln1, n.data(), {N, T, d});

            if (gpt2) {
                qkv.resize(R, 3 * d);
                L.qkv.apply(n, qkv, scratch, &L.qkv_b);
                q = qkv.leftCols(d);
                k = qkv.middleCols(d, d);
                v = qkv.rightCols(d);
            } else {
                L.q.apply(n, q, scratch, &L.q_b);
                L.k.apply(n, k, scratch, &L.k_b);
                L.v.apply(n, v, scratch, &L.v_b);
                for (Index b = 0; b < N; ++b) {
                    kernels::rope<float>(q.middleRows(b * T, T), H, rope);
                    kernels::rope<float>(k.middleRows(b * T, T), KV, rope);
                }
            }
            call_block(l, BlockSite::Q, q.data(), {N, T, H, hd});
            call_block(l, BlockSite::K, k.data(), {N, T, KV, hd});
            call_block(l, BlockSite::V, v.data(), {N, T, KV, hd});

            // Attention, with this layer's sink slots and the run's softmax override.
            kernels::AttentionSpec spec;
            spec.heads = H;
            spec.kv_heads = KV;
            spec.head_dim = hd;
            spec.scale = c.scale_attn ? 1.0f / std::sqrt(static_cast<float>(hd)) : 1.0f;
            spec.window = c.sliding_window[static_cast<std::size_t>(l)];
            if (!L.sinks.empty()) spec.sink_logits = L.sinks.data();
            if (!L.k_bias_slot.empty()) {
                spec.k_bias = L.k_bias_slot.data();
                spec.v_bias = L.v_bias_slot.data();
            }
            switch (options.attention.kind) {
                case AttentionOverride::Kind::None: break;
                case AttentionOverride::Kind::Softmax1: spec.sink_logits = zeros.data(); break;
                case AttentionOverride::Kind::SinkLogit: spec.sink_logits = const_logits.data(); break;
                case AttentionOverride::Kind::Clipped:
                    spec.clipped = true;
                    spec.zeta = options.attention.zeta;
                    spec.gamma = options.attention.gamma;
                    break;
            }
            auto input = [&](Index b) {
                kernels::AttentionInput in;
                in.q = q.data() + b * T * q.cols();
                in.q_stride = q.cols();
                in.k = k.data() + b * T * k.cols();
                in.k_stride = k.cols();
                in.v = v.data() + b * T * v.cols();
                in.v_stride = v.cols();
                in.T = T;
                return in;
            };
            const bool want_sink = spec.n_extra() > 0 && fns(l, BlockSite::SinkPattern);
            if (fns(l, BlockSite::AttnScores) || fns(l, BlockSite::Pattern) || want_sink) {
                // Materialise [N, H, T, T] so hooks can read or edit scores and pattern.
                const Index per = H * T * T;
                scores.resize(static_cast<std::size_t>(N * per));
                sink.assign(static_cast<std::size_t>(N * H * T), 0.0f);
                kvp.assign(static_cast<std::size_t>(N * H * T), 0.0f);
                for (Index b = 0; b < N; ++b) kernels::attention_scores(spec, input(b), scores.data() + b * per);
                call_block(l, BlockSite::AttnScores, scores.data(), {N, H, T, T});
                for (Index b = 0; b < N; ++b)
                    kernels::attention_probs(spec, input(b), scores.data() + b * per, sink.data() + b * H * T,
                                             kvp.data() + b * H * T);
                call_block(l, BlockSite::Pattern, scores.data(), {N, H, T, T});
                if (spec.n_extra() > 0) call_block(l, BlockSite::SinkPattern, sink.data(), {N, H, T});
                for (Index b = 0; b < N; ++b)
                    kernels::attention_combine(spec, input(b), scores.data() + b * per, kvp.data() + b * H * T,
                                               z.data() + b * T * z.cols(), z.cols());
            } else {
                for (Index b = 0; b < N; ++b)
                    kernels::causal_attention(spec, input(b), z.data() + b * T * z.cols(), z.cols(), nullptr,
                                              options.attention_tile);
            }
            call_block(l, BlockSite::Z, z.data(), {N, T, H, hd});

            L.o.apply(z, a, scratch, &L.o_b);
            call_block(l, BlockSite::AttnOut, a.data(), {N, T, d});
            x += a;
            call_block(l, BlockSite::ResidMid, x.data(), {N, T, d});

            norm(n, x, L.ln2_w, L.ln2_b);
            call_block(l, BlockSite::Ln2, n.data(), {N, T, d});
            if (gpt2) {
                L.up.apply(n, mlp, scratch, &L.up_b);
                call_block(l, BlockSite::MlpPre, mlp.data(), {N, T, I});
                if (c.act == ActivationFn::GeluTanh)
                    kernels::gelu_tanh<float>(mlp, mlp);
                else
                    kernels::gelu_erf<float>(mlp, mlp);
            } else {
                L.gate.apply(n, mlp, scratch, &L.gate_b);
                L.up.apply(n, up, scratch, &L.up_b);
                call_block(l, BlockSite::MlpPre, mlp.data(), {N, T, I});
                kernels::swiglu<float>(mlp.data(), mlp.data(), up.data(), R * I);
            }
            call_block(l, BlockSite::MlpPost, mlp.data(), {N, T, I});
            L.down.apply(mlp, a, scratch, &L.down_b);
            call_block(l, BlockSite::MlpOut, a.data(), {N, T, d});
            x += a;
            call_block(l, BlockSite::ResidPost, x.data(), {N, T, d});
            if (options.last_layer == l) {
                w.logits.resize(0, 0);
                return w.logits;
            }
        }

        norm(n, x, weights_.final_w, weights_.final_b);
        call(h_final.empty() ? nullptr : &h_final, "ln_final.hook_normalized", nbuf, -1, n.data(), {N, T, d});
        RowMatrixF& logits = w.logits;
        if (!options.logits && h_logits.empty()) logits.resize(0, 0);
        if (options.logits || !h_logits.empty()) {
            logits.resize(R, c.vocab_size);
            weights_.lm_head.apply(n, logits, scratch);
            call(h_logits.empty() ? nullptr : &h_logits, "logits", nbuf, -1, logits.data(), {N, T, c.vocab_size});
        }
        return logits;
    }

private:
    bool has_sink_slot(const RunOptions& o) const {
        return config_.sink != SinkKind::None || o.attention.kind == AttentionOverride::Kind::Softmax1 ||
               o.attention.kind == AttentionOverride::Kind::SinkLogit;
    }

    void norm(RowMatrixF& out, const RowMatrixF& x, const std::vector<float>& w, const std::vector<float>& b) const {
        const auto eps = static_cast<float>(config_.norm_eps);
        const Eigen::Map<const Eigen::VectorXf> wv(w.data(), x.cols());
        if (config_.norm == NormKind::RMSNorm)
            kernels::rms_norm(out, x, wv, eps);
        else
            kernels::layer_norm(out, x, wv, Eigen::Map<const Eigen::VectorXf>(b.data(), x.cols()), eps);
    }

    /// Hugging Face computes inv_freq in float32: 1 / base^(2j/d), then scaling.
    std::vector<float> rope_inv_freq_f32() const {
        if (config_.family == Family::GPT2) return {};
        const auto d = config_.rope_inv_freq();
        std::vector<float> out(d.size());
        for (std::size_t j = 0; j < d.size(); ++j) out[j] = static_cast<float>(d[j]);
        return out;
    }

    std::string dir_;
    ModelConfig config_;
    std::unique_ptr<io::Checkpoint> ckpt_;
    ModelWeights weights_;
    std::vector<float> inv_freq_;
};

}  // namespace massact

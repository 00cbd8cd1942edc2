// massact/model/describe.hpp - the block description as readable text (massact info).
#pragma once

#include "massact/model/config.hpp"
#include "massact/model/kv_cache.hpp"

#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace massact {

inline std::string describe_norm(const NormSpec& n) {
    std::string s = n.kind == NormKind::RMSNorm ? "RMSNorm" : "LayerNorm";
    if (!n.weight) s += " without weights";
    else if (n.one_plus) s += " (scale 1 + w)";
    if (n.kind == NormKind::LayerNorm && n.weight && !n.bias) s += " without bias";
    char eps[32];
    std::snprintf(eps, sizeof eps, ", eps %g", n.eps);
    return s + eps;
}

inline const char* activation_name(ActivationFn f) {
    switch (f) {
        case ActivationFn::SiLU: return "SiLU";
        case ActivationFn::GeluTanh: return "GELU (tanh)";
        case ActivationFn::GeluErf: return "GELU (erf)";
        case ActivationFn::Relu: return "ReLU";
        case ActivationFn::QuickGelu: return "quick GELU";
        case ActivationFn::Relu2: return "squared ReLU";
        case ActivationFn::XIELU: return "xIELU";
    }
    return "?";
}

inline std::string describe_rope(const RopeSpec& r, int head_dim) {
    static const char* names[] = {"none", "linear", "llama3", "yarn", "longrope", "dynamic"};
    char buf[160];
    std::snprintf(buf, sizeof buf, "RoPE theta %g, %d of %d features per head, scaling %s", r.theta, r.rotary_dim, head_dim,
                  names[static_cast<int>(r.scaling)]);
    std::string s = buf;
    if (r.scaling != RopeScaling::None && r.scaling != RopeScaling::LongRope) {
        std::snprintf(buf, sizeof buf, " (factor %g)", r.factor);
        s += buf;
    }
    if (r.cos_sin_scale() != 1.0) {
        std::snprintf(buf, sizeof buf, ", cos/sin x %.6g", r.cos_sin_scale());
        s += buf;
    }
    return s;
}

namespace describe_detail {

using Lines = std::vector<std::pair<std::string, std::string>>;

template <typename... Args>
std::string fmt(const char* f, Args... a) {
    char buf[256];
    std::snprintf(buf, sizeof buf, f, a...);
    return buf;
}

/// The block's shape and where its norms sit.
inline void block_and_norms(const ModelConfig& c, Lines& out) {
    out.emplace_back("block", !c.has_mlp   ? std::string("h = x + mixer(norm(x)), no MLP")
                              : c.parallel ? "parallel: x + attn(ln1 x) + mlp(" + std::string(c.pre_mlp_norm ? "ln2" : "ln1") + " x)"
                                           : "sequential: h = x + attn(x); out = h + mlp(h)");
    std::string places;
    if (c.pre_attn_norm) places += "pre-attention ";
    if (c.post_attn_norm) places += "post-attention ";
    if (c.pre_mlp_norm) places += "pre-MLP ";
    if (c.post_mlp_norm) places += "post-MLP ";
    out.emplace_back("norms", describe_norm(c.norm) + "; " + places + "final");
}

/// Softmax attention: heads, weights, fused projections, biases, gate.
inline std::string attention(const ModelConfig& c) {
    std::string att = fmt("%d query heads, %d key/value heads, head_dim %d, scale %.6g", c.num_heads, c.num_kv_heads, c.head_dim, c.attn_scale);
    if (c.attention_fn == kernels::AttentionFn::Softpick) att += ", softpick weights (rows need not sum to 1)";
    if (c.attention_fn == kernels::AttentionFn::Sigmoid) att += fmt(", sigmoid weights sigmoid(s + b) with b = %.6g, unnormalised", c.attention_sigmoid_bias);
    if (c.attn_softcap > 0) att += fmt(", logit soft-cap %g", c.attn_softcap);
    if (c.clip_qkv > 0) att += fmt(", q/k/v clipped to +-%g", c.clip_qkv);
    if (c.names.block.qkv.size())
        att += c.qkv_layout == QkvLayout::Concat    ? ", fused qkv [q; k; v]"
               : c.qkv_layout == QkvLayout::PerHead ? ", fused qkv per head [q_h; k_h; v_h]"
                                                    : ", fused qkv per KV group [q..; k; v]";
    if (c.qkv_bias && !(c.q_bias && c.k_bias && c.v_bias))
        att += fmt("; biases q %s, k %s, v %s", c.q_bias ? "yes" : "no", c.k_bias ? "yes" : "no", c.v_bias ? "yes" : "no");
    else
        att += fmt("; biases qkv %s", c.qkv_bias ? "yes" : "no");
    att += fmt(", output %s", c.o_bias ? "yes" : "no");
    if (c.attn_sub_norm) att += "; a norm before o_proj";
    if (c.attn_output_gate) att += "; output gated by sigmoid(g) per head and dim (g from q_proj)";
    return att;
}

/// The token mixers besides plain attention (Mamba-2, latent attention, Gated DeltaNet) and attention's extras.
inline void mixers(const ModelConfig& c, Lines& out) {
    if (c.has_attention()) out.emplace_back("attention", attention(c));
    if (c.layers.size() && c.layers.front().mixer == Mixer::Mamba2) {
        const MambaSpec& m = c.mamba;
        out.emplace_back("state space", fmt("Mamba-2: %d heads of %d, %d group(s) of B/C, state %d, a causal convolution of %d taps with SiLU%s, ",
                                            m.heads, m.head_dim, m.groups, m.state, m.conv_kernel, m.conv_bias ? " (bias)" : "") +
                                            fmt("dt = softplus(. + dt_bias) in [%g, ", m.dt_min) +
                                            (m.dt_max > 0 ? fmt("%g]", m.dt_max) : std::string("inf)")) +
                                            ", decay exp(-dt exp(A_log)), skip D, output RMSNorm of y * silu(z)");
    }
    if (c.has_mla()) {
        const MlaSpec& m = c.mla;
        out.emplace_back("latent attention",
                         (m.q_lora_rank > 0 ? fmt("q from a rank-%d projection (normalised); ", m.q_lora_rank) : std::string()) +
                             fmt("k/v from a latent of %d (normalised) per token, per head %d + %d rotary q/k features (the "
                                 "rotary key shared by the heads), %d value features",
                                 m.kv_lora_rank, m.qk_nope, m.qk_rope, m.v_head_dim));
    }
    if (c.has_deltanet()) {
        const DeltaNetSpec& d = c.deltanet;
        out.emplace_back("linear attention",
                         fmt("Gated DeltaNet: %d key heads of %d, %d value heads of %d, a causal convolution of %d taps with SiLU, ", d.k_heads,
                             d.k_dim, d.v_heads, d.v_dim, d.conv_kernel) +
                             fmt("L2-normalised q/k, a state [%d x %d] per value head with a learned decay and beta, output RMSNorm "
                                 "gated by silu(z)",
                                 d.k_dim, d.v_dim) +
                             (d.grouped ? "; projections fused per key head (in_proj_qkvz, in_proj_ba)" : ""));
    }
    if (c.qk_norm != QKNorm::None)
        out.emplace_back("q/k norms", describe_norm(c.qk_norm_spec) + (c.qk_norm == QKNorm::PerHead ? ", per head" : ", over the whole projection") +
                                          (c.qk_norm_after_rope ? ", after RoPE" : "") + (c.qk_norm_nope_layers ? "" : ", RoPE layers only"));
    if (c.attn_temperature_scale > 0)
        out.emplace_back("temperature",
                         fmt("NoPE layers: q x (1 + %g ln(1 + floor((pos + 1) / %g)))", c.attn_temperature_scale, c.attn_temperature_floor));
}

/// The router of a mixture of experts.
inline std::string router(const ModelConfig& c) {
    std::string r = fmt("; mixture of %d experts, top %d by %s%s%s", c.num_experts, c.experts_per_token,
                        c.router_score == RouterScore::Sigmoid ? "sigmoid" : "softmax", c.norm_topk ? " (renormalised)" : "",
                        c.router_bias ? ", router bias" : "");
    if (!c.names.block.router_score_bias.empty()) r += ", a bias on the scores for the choice";
    if (c.router_groups > 0)
        r += fmt(", within the best %d of %d groups (by their %s)", c.router_topk_groups, c.router_groups,
                 c.group_score == GroupScore::Max ? "best expert" : "two best");
    if (c.routed_scale != 1.0) r += fmt(", weights x %g", c.routed_scale);
    if (c.routing_on_input) r += ", the weight multiplying the expert's input";
    if (c.dense_intermediate_size > 0) r += fmt("; dense layers of width %d", c.dense_intermediate_size);
    return r;
}

inline std::string mlp(const ModelConfig& c) {
    std::string m = !c.has_mlp              ? std::string("none")
                    : c.swiglu_limit > 0    ? fmt("gated: down((clamp(up, +-%g) + 1) * g sigmoid(%g g)), g = min(gate, %g)", c.swiglu_limit,
                                                  c.swiglu_alpha, c.swiglu_limit)
                    : c.mlp == MlpKind::Gated ? fmt("gated: down(%s(gate) * up)", activation_name(c.act))
                                              : fmt("down(%s(up))", activation_name(c.act));
    if (c.has_mlp) m += fmt(", width %d", c.intermediate_size);
    if (c.names.block.gate_up.size()) m += ", fused gate_up";
    if (c.mlp_bias) m += ", biases";
    if (c.moe()) m += router(c);
    if (c.shared_expert_size > 0)
        m += fmt("; a shared expert of width %d%s", c.shared_expert_size, c.shared_expert_gated ? " behind a sigmoid gate" : "");
    if (c.mlp_sub_norm) m += "; a norm before down_proj";
    return m;
}

/// A vision model's input, tokens, positions and pooled output.
inline void vision(const ModelConfig& c, Lines& out) {
    const auto& v = c.vision;
    const int g = v.image_size / v.patch_size;
    out.emplace_back("input", fmt("%d x %d pixels, %d channels, %d x %d patches of %d x %d", v.image_size, v.image_size, v.channels, g, g,
                                  v.patch_size, v.patch_size));
    out.emplace_back("tokens", fmt("%s%d registers, %d patches; bidirectional attention", v.cls ? "CLS, " : "no CLS, ", v.registers, g * g));
    if (v.rope_2d)
        out.emplace_back("positions", fmt("2-D RoPE of the patch centres in [-1, 1] (theta %g), CLS and registers unrotated", c.rope[0].theta));
    else
        out.emplace_back("positions", std::string("learned table over ") + (v.cls ? "CLS and " : "") + "the patch grid (bicubic for other grids)");
    out.emplace_back("pooled", v.map_head       ? "attention-pooling head: a probe attends over ln_final's tokens, then a + MLP(LayerNorm(a))"
                               : v.pooler_dense ? "tanh(dense(ln_final CLS))"
                                                : "ln_final CLS");
}

/// Positions (learned, ALiBi, RoPE, none) and the embedding's and logits' scalings.
inline void positions_and_ends(const ModelConfig& c, Lines& out) {
    if (c.positions == PositionKind::Learned)
        out.emplace_back("positions", fmt("learned, %d", c.max_positions) + (c.pos_offset ? fmt(" (rows offset by %d)", c.pos_offset) : std::string()));
    if (c.positions == PositionKind::Alibi) out.emplace_back("positions", fmt("ALiBi, slopes 2^(-%g k / n)", c.alibi_max_bias));
    if (c.positions == PositionKind::None) out.emplace_back("positions", "none (the order is in the recurrence)");
    if (c.is_vision()) vision(c, out);
    for (std::size_t i = 0; i < c.rope.size() && !c.vision.rope_2d; ++i)
        out.emplace_back(c.rope.size() == 1 ? "positions" : (i == 0 ? "positions (full)" : "positions (sliding)"), describe_rope(c.rope[i], c.head_dim));
    if (c.has_rope() && c.rope_pairs == RopePairs::Interleaved) out.emplace_back("rotary pairs", "interleaved (2j, 2j + 1)");
    if (c.embed_norm) out.emplace_back("embedding norm", describe_norm(c.norm));
    if (c.lm_head_bias) out.emplace_back("LM head", "with bias");
    if (c.embed_scale != 1.0) out.emplace_back("embedding", fmt("scaled by %.6g", c.embed_scale));
    if (c.logit_scale != 1.0) out.emplace_back("logit scale", fmt("logits multiplied by %.6g", c.logit_scale));
    if (c.final_softcap > 0) out.emplace_back("logits", fmt("soft-capped at %g", c.final_softcap));
    if (c.residual_scale != 1.0) out.emplace_back("residual scale", fmt("attention and MLP outputs multiplied by %.6g", c.residual_scale));
    out.emplace_back("tied embedding", c.tie_embeddings ? "yes" : "no");
    out.emplace_back("attention sink", c.sink == SinkKind::KVBias ? "explicit key/value bias"
                                       : c.sink == SinkKind::Logit ? "learned sink logit"
                                                                   : "none");
}

/// What kind of layer `s` is, in words.
inline std::string layer_kind(const ModelConfig& c, const LayerSpec& s) {
    std::string k = s.mixer == Mixer::GatedDeltaNet ? std::string("Gated DeltaNet (linear attention, no KV rows)")
                    : s.mixer == Mixer::Mamba2      ? std::string("Mamba-2 (state space, no attention)")
                    : s.window                      ? fmt("sliding window %d", s.window)
                    : s.chunk                       ? fmt("chunked attention, chunks of %d", s.chunk)
                                                    : std::string(c.causal ? "full causal attention" : "bidirectional attention");
    if (c.has_rope() && s.nope) k += ", no RoPE (NoPE)";
    if (c.moe()) k += s.dense_mlp ? ", dense MLP" : ", experts";
    return k;
}

/// What a KV cache (the default policy) holds: floats per token and attention layer, and the recurrent layers' fixed
/// state per sequence.
inline std::string kv_cache(const ModelConfig& c) {
    int attention = 0, recurrent = 0;
    std::int64_t state = 0;
    for (int l = 0; l < c.num_layers; ++l) {
        if (c.layer_attention(l)) {
            ++attention;
        } else {
            ++recurrent;
            state += c.recurrent_state_size(l) + c.conv_history_size(l);
        }
    }
    const std::int64_t heads = 2LL * c.num_kv_heads * c.head_dim;
    std::string s;
    if (attention > 0)
        s = KVCache::holds_latent(c, CachePolicy{})
                ? fmt("%d attention layers, %lld floats per token each: the latent and the shared rotary key (the heads' keys and "
                      "values: %lld)",
                      attention, static_cast<long long>(c.mla.kv_lora_rank + c.mla.qk_rope), static_cast<long long>(heads))
                : fmt("%d attention layers, %lld floats per token each: keys and values of %d heads of %d", attention,
                      static_cast<long long>(heads), c.num_kv_heads, c.head_dim);
    if (recurrent > 0)
        s += (s.empty() ? "" : "; ") + fmt("%d recurrent layers, %lld floats per sequence in all (states and convolution histories)",
                                           recurrent, static_cast<long long>(state));
    return s;
}

/// The layers, equal (window, rope, NoPE, MLP, chunk, mixer) runs grouped.
inline void layers(const ModelConfig& c, Lines& out) {
    std::map<std::tuple<int, int, bool, bool, int, int>, std::vector<int>> groups;
    for (int l = 0; l < c.num_layers; ++l) {
        const LayerSpec& s = c.layers[static_cast<std::size_t>(l)];
        groups[{s.window, s.rope, s.nope, s.dense_mlp, s.chunk, static_cast<int>(s.mixer)}].push_back(l);
    }
    if (groups.size() == 1) {
        out.emplace_back("layers", fmt("%d, all alike (", c.num_layers) + layer_kind(c, c.layers.front()) + ")");
        return;
    }
    for (const auto& g : groups) {
        std::string ls;
        for (int l : g.second) ls += (ls.empty() ? "" : ",") + std::to_string(l);
        out.emplace_back("layers " + ls, layer_kind(c, c.layers[static_cast<std::size_t>(g.second.front())]));
    }
}

}  // namespace describe_detail

/// "key value" lines: norms, attention, MLP, positions, and what the layers differ in.
inline std::vector<std::pair<std::string, std::string>> describe_blocks(const ModelConfig& c) {
    describe_detail::Lines out;
    describe_detail::block_and_norms(c, out);
    describe_detail::mixers(c, out);
    out.emplace_back("MLP", describe_detail::mlp(c));
    describe_detail::positions_and_ends(c, out);
    if (!c.is_vision()) out.emplace_back("KV cache", describe_detail::kv_cache(c));
    describe_detail::layers(c, out);
    return out;
}

}  // namespace massact

// massact/model/sites.hpp - the hook sites of a model, from one table.
//
// Names follow TransformerLens: blocks.{l}.attn.hook_q / hook_k are the projections *before* RoPE
// (and before q/k norms), hook_rot_q / hook_rot_k after; ln1_post / ln2_post are the post-norms of
// Gemma 2/3 and OLMo 2, and hook_attn_out / hook_mlp_out are what is added to the residual stream
// (after those post-norms). The table says, per site, its shape and when a model has it; the
// forward (model/transformer.hpp), hook_sites(), the interventions and the tool all read it.
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/model/config.hpp"

#include <cstdlib>
#include <string>
#include <vector>

namespace massact {

/// Hook sites inside a block, in execution order.
enum class BlockSite : int {
    ResidPre, Ln1, DnQ, DnK, DnV, DnBeta, DnDecay, DnZ, DnGate, SsmX, SsmB, SsmC, SsmDt, SsmY, SsmGate, SsmState, Latent, Q, K, V, RotQ, RotK, AttnScores, Pattern, SinkPattern, PatternColumns, Z, Gate, Ln1Post, AttnOut, ResidMid, Ln2,
    MlpRouter, MlpExpertWeights, MlpExpertOut, MlpPre, MlpPreLinear, MlpPost, MlpDown, Ln2Post, MlpOut, ResidPost, Count
};

/// What the last axes of a site hold ([N, T, ...] unless said otherwise).
enum class SiteShape {
    Resid,      // [N, T, d]
    QHeads,     // [N, T, H, hd]
    KVHeads,    // [N, T, KV, hd]
    Scores,     // [N, H, T, K] (K = T, or the keys of a KV cache)
    SinkProbs,  // [N, H, T]
    Columns,    // [N, H, T, C]: the pattern at C chosen keys (RunOptions::pattern_columns; C = 1: key 0)
    Mlp,        // [N, T, I] (I: the layer's MLP width)
    Latent,     // [N, T, kv_lora_rank]: multi-head latent attention's normalised latent
    Experts,    // [N, T, E]
    ExpertSlots,  // [N, T, k, d]: one row per routed expert of a token (k = experts per token)
    DnKeys,     // [N, T, k_heads, k_dim]: Gated DeltaNet's q and k
    DnValues,   // [N, T, v_heads, v_dim]: its v, output and gate
    DnHeads,    // [N, T, v_heads]: its beta and decay
    SsmHeads,   // [N, T, heads, head_dim]: Mamba-2's x, y and gate
    SsmGroups,  // [N, T, groups, state]: its B and C
    SsmDt,      // [N, T, heads]: its step dt
    SsmState,   // [N, heads, head_dim, state]: its state after the last token
};

struct SiteInfo {
    BlockSite id;
    const char* suffix;  // after "blocks.{l}."
    SiteShape shape;
    bool (*exists)(const ModelConfig&, int layer, bool sink_slot);
};

namespace detail {
inline bool always(const ModelConfig&, int, bool) { return true; }
inline bool attention(const ModelConfig& c, int l, bool) { return c.layer_attention(l); }
inline bool deltanet(const ModelConfig& c, int l, bool) { return c.layers[static_cast<std::size_t>(l)].mixer == Mixer::GatedDeltaNet; }
inline bool mamba(const ModelConfig& c, int l, bool) { return c.layers[static_cast<std::size_t>(l)].mixer == Mixer::Mamba2; }
inline bool dense_mlp(const ModelConfig& c, int l, bool) { return c.has_mlp && !c.layer_moe(l); }
}  // namespace detail

/// The table: one row per block site, in execution order.
inline const std::vector<SiteInfo>& block_site_table() {
    using C = const ModelConfig&;
    static const std::vector<SiteInfo> table = {
        {BlockSite::ResidPre, "hook_resid_pre", SiteShape::Resid, detail::always},
        {BlockSite::Ln1, "ln1.hook_normalized", SiteShape::Resid, [](C c, int, bool) { return c.pre_attn_norm; }},
        // Multi-head latent attention: the normalised latent kv_b reads (what the cache of an MLA model holds).
        // Gated DeltaNet layers (no attention): q and k after the convolution and their L2 norm, v after the convolution,
        // beta = sigmoid(b), the decay exp(g) in (0, 1], the rule's output o per value head, silu(z) that gates its norm.
        {BlockSite::DnQ, "linear_attn.hook_q", SiteShape::DnKeys, detail::deltanet},
        {BlockSite::DnK, "linear_attn.hook_k", SiteShape::DnKeys, detail::deltanet},
        {BlockSite::DnV, "linear_attn.hook_v", SiteShape::DnValues, detail::deltanet},
        {BlockSite::DnBeta, "linear_attn.hook_beta", SiteShape::DnHeads, detail::deltanet},
        {BlockSite::DnDecay, "linear_attn.hook_decay", SiteShape::DnHeads, detail::deltanet},
        {BlockSite::DnZ, "linear_attn.hook_z", SiteShape::DnValues, detail::deltanet},
        {BlockSite::DnGate, "linear_attn.hook_gate", SiteShape::DnValues, detail::deltanet},
        // Mamba-2 layers: x, B, C after the convolution, dt after softplus and clamping, the scan's output y (with the D
        // skip) before the gated norm, silu(z), and the state after the last token (read-only: the scan has run).
        {BlockSite::SsmX, "ssm.hook_x", SiteShape::SsmHeads, detail::mamba},
        {BlockSite::SsmB, "ssm.hook_B", SiteShape::SsmGroups, detail::mamba},
        {BlockSite::SsmC, "ssm.hook_C", SiteShape::SsmGroups, detail::mamba},
        {BlockSite::SsmDt, "ssm.hook_dt", SiteShape::SsmDt, detail::mamba},
        {BlockSite::SsmY, "ssm.hook_y", SiteShape::SsmHeads, detail::mamba},
        {BlockSite::SsmGate, "ssm.hook_gate", SiteShape::SsmHeads, detail::mamba},
        {BlockSite::SsmState, "ssm.hook_state", SiteShape::SsmState, detail::mamba},
        {BlockSite::Latent, "attn.hook_latent", SiteShape::Latent, [](C c, int l, bool) { return c.has_mla() && c.layer_attention(l); }},
        {BlockSite::Q, "attn.hook_q", SiteShape::QHeads, detail::attention},
        {BlockSite::K, "attn.hook_k", SiteShape::KVHeads, detail::attention},
        {BlockSite::V, "attn.hook_v", SiteShape::KVHeads, detail::attention},
        {BlockSite::RotQ, "attn.hook_rot_q", SiteShape::QHeads, [](C c, int l, bool) { return c.has_rope() && c.layer_attention(l); }},
        {BlockSite::RotK, "attn.hook_rot_k", SiteShape::KVHeads, [](C c, int l, bool) { return c.has_rope() && c.layer_attention(l); }},
        {BlockSite::AttnScores, "attn.hook_attn_scores", SiteShape::Scores, detail::attention},
        {BlockSite::Pattern, "attn.hook_pattern", SiteShape::Scores, detail::attention},
        {BlockSite::SinkPattern, "attn.hook_sink_pattern", SiteShape::SinkProbs, [](C c, int l, bool sink) { return sink && c.layer_attention(l); }},
        // The probabilities of a few keys (massact's own site, read-only): what sink metrics need, without [T, K].
        {BlockSite::PatternColumns, "attn.hook_pattern_columns", SiteShape::Columns, detail::attention},
        {BlockSite::Z, "attn.hook_z", SiteShape::QHeads, detail::attention},
        // Gated attention: sigmoid(g), multiplied into z (hook_z holds z before it) on the way to o_proj.
        {BlockSite::Gate, "attn.hook_gate", SiteShape::QHeads, [](C c, int l, bool) { return c.attn_output_gate && c.layer_attention(l); }},
        {BlockSite::Ln1Post, "ln1_post.hook_normalized", SiteShape::Resid, [](C c, int, bool) { return c.post_attn_norm; }},
        {BlockSite::AttnOut, "hook_attn_out", SiteShape::Resid, detail::always},
        {BlockSite::ResidMid, "hook_resid_mid", SiteShape::Resid, [](C c, int, bool) { return !c.parallel && c.has_mlp; }},
        {BlockSite::Ln2, "ln2.hook_normalized", SiteShape::Resid, [](C c, int, bool) { return c.pre_mlp_norm; }},
        {BlockSite::MlpRouter, "mlp.hook_router", SiteShape::Experts, [](C c, int l, bool) { return c.layer_moe(l); }},
        {BlockSite::MlpExpertWeights, "mlp.hook_expert_weights", SiteShape::Experts, [](C c, int l, bool) { return c.layer_moe(l); }},
        // Each routed expert's output down_e(act(gate_e x) * up_e x) before its routing weight, slot s = the token's s-th
        // routed expert in index order (massact's own site, read-only; filled only when hooked).
        {BlockSite::MlpExpertOut, "mlp.hook_expert_out", SiteShape::ExpertSlots, [](C c, int l, bool) { return c.layer_moe(l); }},
        {BlockSite::MlpPre, "mlp.hook_pre", SiteShape::Mlp, detail::dense_mlp},
        {BlockSite::MlpPreLinear, "mlp.hook_pre_linear", SiteShape::Mlp,
         [](C c, int l, bool s) { return detail::dense_mlp(c, l, s) && c.mlp == MlpKind::Gated; }},
        {BlockSite::MlpPost, "mlp.hook_post", SiteShape::Mlp, detail::dense_mlp},
        // The down projection's output before a post-MLP norm (massact's own site: where a weight edit lands).
        {BlockSite::MlpDown, "mlp.hook_down", SiteShape::Resid, [](C c, int l, bool s) { return detail::dense_mlp(c, l, s) && c.post_mlp_norm; }},
        {BlockSite::Ln2Post, "ln2_post.hook_normalized", SiteShape::Resid, [](C c, int, bool) { return c.post_mlp_norm; }},
        {BlockSite::MlpOut, "hook_mlp_out", SiteShape::Resid, [](C c, int, bool) { return c.has_mlp; }},
        {BlockSite::ResidPost, "hook_resid_post", SiteShape::Resid, detail::always},
    };
    return table;
}

inline const SiteInfo& block_site_info(BlockSite s) { return block_site_table()[static_cast<std::size_t>(s)]; }
inline const char* block_site_suffix(BlockSite s) { return block_site_info(s).suffix; }
inline std::string block_site_name(int layer, BlockSite s) {
    return "blocks." + std::to_string(layer) + "." + block_site_suffix(s);
}

/// Every hook site of a model, in execution order. sink_slot: attention has an extra slot (the
/// model's own sink, or a run's softmax1 / sink-logit override).
inline std::vector<std::string> hook_site_names(const ModelConfig& c, bool sink_slot) {
    std::vector<std::string> out = {"hook_embed"};
    if (c.positions == PositionKind::Learned) out.push_back("hook_pos_embed");
    for (int l = 0; l < c.num_layers; ++l)
        for (const auto& s : block_site_table())
            if (s.exists(c, l, sink_slot)) out.push_back(block_site_name(l, s.id));
    out.push_back("ln_final.hook_normalized");
    if (!c.is_vision()) out.push_back("logits");  // (a vision model has no vocabulary)
    return out;
}

/// Shape of a site's tensor with N sequences of T tokens attending to `keys` keys (< 0: T; more in an
/// incremental forward with a KV cache), `columns` keys reported by attn.hook_pattern_columns; throws for a name
/// the model does not have.
inline std::vector<Index> hook_site_shape(const ModelConfig& c, const std::string& name, Index N, Index T, bool sink_slot,
                                          Index keys = -1, Index columns = 1) {
    if (keys < 0) keys = T;
    const Index d = c.hidden_size;
    if (name == "hook_embed" || name == "ln_final.hook_normalized" ||
        (name == "hook_pos_embed" && c.positions == PositionKind::Learned))
        return {N, T, d};
    if (name == "logits" && !c.is_vision()) return {N, T, c.vocab_size};
    if (name.rfind("blocks.", 0) == 0) {
        const std::size_t dot = name.find('.', 7);
        char* end = nullptr;
        const long l = dot == std::string::npos ? -1 : std::strtol(name.c_str() + 7, &end, 10);
        if (l >= 0 && l < c.num_layers && end == name.c_str() + dot)
            for (const auto& s : block_site_table())
                if (name.compare(dot + 1, std::string::npos, s.suffix) == 0 && s.exists(c, static_cast<int>(l), sink_slot)) {
                    const Index H = c.num_heads, KV = c.num_kv_heads, hd = c.head_dim;
                    switch (s.shape) {
                        case SiteShape::Resid: return {N, T, d};
                        case SiteShape::QHeads: return {N, T, H, hd};
                        case SiteShape::KVHeads: return {N, T, KV, hd};
                        case SiteShape::Scores: return {N, H, T, keys};
                        case SiteShape::SinkProbs: return {N, H, T};
                        case SiteShape::Columns: return {N, H, T, columns};
                        case SiteShape::Mlp: return {N, T, c.layer_intermediate(static_cast<int>(l))};
                        case SiteShape::Latent: return {N, T, c.mla.kv_lora_rank};
                        case SiteShape::Experts: return {N, T, c.num_experts};
                        case SiteShape::ExpertSlots: return {N, T, c.experts_per_token, d};
                        case SiteShape::DnKeys: return {N, T, c.deltanet.k_heads, c.deltanet.k_dim};
                        case SiteShape::DnValues: return {N, T, c.deltanet.v_heads, c.deltanet.v_dim};
                        case SiteShape::DnHeads: return {N, T, c.deltanet.v_heads};
                        case SiteShape::SsmHeads: return {N, T, c.mamba.heads, c.mamba.head_dim};
                        case SiteShape::SsmGroups: return {N, T, c.mamba.groups, c.mamba.state};
                        case SiteShape::SsmDt: return {N, T, c.mamba.heads};
                        case SiteShape::SsmState: return {N, c.mamba.heads, c.mamba.head_dim, c.mamba.state};
                    }
                }
    }
    throw Error("hook site \"" + name + "\" does not exist in this " + c.model_type + " model (see docs/formats.md for the sites)");
}

}  // namespace massact

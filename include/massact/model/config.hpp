// massact/model/config.hpp - the block description: what every layer of a checkpoint computes,
// and under which Hugging Face tensor names its weights are stored.
//
// A ModelConfig is plain data. It is filled from config.json by one mapping per family
// (model/families.hpp); the forward (model/transformer.hpp) reads only this description and
// never asks which family a model belongs to. docs/formats.md lists the fields per family.
#pragma once

#include "massact/core/error.hpp"
#include "massact/kernels/attention.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace massact {

enum class NormKind { RMSNorm, LayerNorm };
/// Relu2: relu(x)^2 (Nemotron, BitNet); XIELU: Apertus's xIELU with four learned scalars per layer
/// (x > 0: a_p x^2 + b x; else a_n (expm1(min(x, eps)) - x) + b x; a_p = softplus(alpha_p), a_n = b + softplus(alpha_n)).
enum class ActivationFn { SiLU, GeluTanh, GeluErf, Relu, QuickGelu, Relu2, XIELU };
/// A fused gate/up projection's output columns: [gate; up] halves (Phi-3, GLM-4, GraniteMoE's experts) or interleaved
/// gate, up, gate, up ... (gpt-oss, whose experts use the clamped SwiGLU).
enum class GateUpLayout { Halves, Interleaved };
enum class RopeScaling { None, Linear, Llama3, Yarn, LongRope, Dynamic };
/// An extra attention slot every query sees (Sun et al. 2024 Sec. 6; gpt-oss).
enum class SinkKind { None, KVBias, Logit };
/// q/k normalisation after the projection: per head over head_dim (Qwen3, Gemma 3, StableLM), or over
/// the whole projection H*hd (OLMo 2).
enum class QKNorm { None, PerHead, Whole };
/// Gated: down(act(gate(x)) * up(x)) (SwiGLU, GeGLU); Plain: down(act(up(x))) (GPT-2, StarCoder2).
enum class MlpKind { Gated, Plain };
/// Rope: rotary q/k; Learned: a position table added to the embedding (GPT-2, OPT); Alibi: a per-head
/// linear bias slope_h * (j - i) on the scores (BLOOM, MPT), no position in the residual stream.
/// Patches: a vision transformer's table over [CLS, patch grid], added in the patch embedding. None: the model has
/// no positions (a state-space model: order is in its recurrence).
enum class PositionKind { Rope, Learned, Alibi, Patches, None };
/// Rotary pairs: (j, j + rotary_dim/2) (rotate-half: Llama, GPT-NeoX) or (2j, 2j + 1) (GPT-J).
enum class RopePairs { Half, Interleaved };
/// The output rows of a fused QKV projection: [q; k; v] (GPT-2, Phi-3, MPT, Falcon multi-query); per head
/// [q_h; k_h; v_h] (GPT-NeoX, BLOOM, Falcon without multi-query); per KV group [q_g1..q_gn; k_g; v_g]
/// (Falcon's new decoder architecture).
enum class QkvLayout { Concat, PerHead, Grouped };
/// How a router turns logits into expert scores: softmax over the experts (Mixtral, Qwen, DeepSeek-V2) or each
/// logit's sigmoid (DeepSeek-V3).
enum class RouterScore { Softmax, Sigmoid };
/// Group-limited routing (DeepSeek): a group's score is its best expert's (V2) or the sum of its two best (V3).
enum class GroupScore { Max, TopTwoSum };

/// What mixes the tokens of a layer: softmax attention, Gated DeltaNet linear attention (Yang et al. 2025; Qwen3-Next
/// and Qwen3.5 interleave the two), or a Mamba-2 state-space mixer (Dao and Gu 2024).
enum class Mixer { Attention, GatedDeltaNet, Mamba2 };

/// Gated DeltaNet: [q; k; v] = silu(causal_conv1d(W_qkv x)) (a depthwise convolution of conv_kernel taps), q and k
/// L2-normalised per key head, beta = sigmoid(W_b x), decay = exp(-exp(A_log) softplus(W_a x + dt_bias)) per value head;
/// each value head h (reading key head h / (v_heads / k_heads)) carries a state S [k_dim, v_dim]:
/// S = decay S;  S += k (beta (v - S^T k))^T;  o = S^T q / sqrt(k_dim);  out = W_o (rmsnorm(o) w silu(W_z x)).
/// Weights under names.block.linear_attn: in_proj_qkvz / in_proj_ba grouped by key head (Qwen3-Next: per key head
/// [q, k, v of its value heads, z of its value heads] and [b, a]), or in_proj_qkv, in_proj_z, in_proj_b, in_proj_a
/// (Qwen3.5); conv1d.weight [conv, 1, taps], A_log, dt_bias [v_heads], norm.weight [v_dim], out_proj.
struct DeltaNetSpec {
    int k_heads = 0, v_heads = 0, k_dim = 0, v_dim = 0;
    int conv_kernel = 0;
    bool grouped = false;    // the fused, per-key-head layout of Qwen3-Next
    double norm_eps = 1e-6;  // the gated RMSNorm's eps
    std::int64_t key_width() const { return std::int64_t(k_heads) * k_dim; }
    std::int64_t value_width() const { return std::int64_t(v_heads) * v_dim; }
    /// Channels of the convolution: [q; k; v].
    std::int64_t conv_dim() const { return 2 * key_width() + value_width(); }
};

/// Mamba-2's mixer (SSD with a scalar decay per head): [z; xBC; dt] = in_proj(x); [x; B; C] = silu(conv1d(xBC) + b)
/// (depthwise, conv_kernel taps); dt = clamp(softplus(dt + dt_bias), dt_min, dt_max); head h (group g = h / (heads /
/// groups)) keeps a state S [head_dim, state]: S = exp(dt A) S + dt x_h B_g^T, y_h = S C_g + D x_h, A = -exp(A_log);
/// out = out_proj(rmsnorm(y * silu(z)) w) (the norm over the whole width heads * head_dim). Weights under
/// names.block.ssm: in_proj, conv1d (weight, bias), dt_bias, A_log, D, norm, out_proj.
struct MambaSpec {
    int heads = 0, head_dim = 0, groups = 1, state = 0, conv_kernel = 0;
    bool conv_bias = true, proj_bias = false;
    double dt_min = 0.0, dt_max = 0.0;  // time_step_limit (dt_max <= 0: no upper limit)
    double norm_eps = 1e-5;
    std::int64_t inner() const { return std::int64_t(heads) * head_dim; }
    /// Channels of the convolution: [x; B; C].
    std::int64_t conv_dim() const { return inner() + 2 * std::int64_t(groups) * state; }
};

/// Multi-head latent attention (DeepSeek-V2/V3): q = q_proj(x), or q_b(norm(q_a(x))) with a rank q_lora_rank;
/// [c; k_rope] = kv_a(x), the latent c [kv_lora_rank] normalised, [k_nope_h; v_h] = kv_b(c) per head, and one
/// rotary key k_rope [qk_rope] shared by every head. The forward lays each head out as q = [q_rope; q_nope],
/// k = [k_rope; k_nope] (RoPE rotates a head's first qk_rope features, as partial rotary does; the scores are the
/// same sums as Hugging Face's [nope; rope] order) and v = [v_h], each zero-padded to head_dim = max(qk, v).
struct MlaSpec {
    int q_lora_rank = 0;   // 0: a plain q_proj
    int kv_lora_rank = 0;  // > 0: the model has MLA
    int qk_nope = 0, qk_rope = 0, v_head_dim = 0;
    double norm_eps = 1e-6;  // the q_a / kv_a RMSNorms' eps (transformers builds them with its default)
    int qk() const { return qk_nope + qk_rope; }
};

/// One normalisation: RMSNorm  y = x rsqrt(mean x^2 + eps) * s,  LayerNorm  y = (x - mean) / sqrt(var + eps) * s + b,
/// with s = w, 1 + w (Gemma) or 1 (no weight: OLMo's non-parametric LayerNorm), b = bias or 0.
struct NormSpec {
    NormKind kind = NormKind::RMSNorm;
    double eps = 1e-6;
    bool weight = true;    // has a learned scale w
    bool bias = false;     // has a learned shift b
    bool one_plus = false; // scale is (1 + w)
};

/// Rotary embedding of one layer type (Gemma 3 has one for sliding and one for full layers).
struct RopeSpec {
    double theta = 10000.0;
    int rotary_dim = 0;  // features of each head that rotate (partial rotary: < head_dim); pairs (j, j + rotary_dim/2)
    int freq_dim = 0;    // transformers' rotary dim when it is odd: ceil(dim/2) pairs at base^(-2j/dim) rotate dim + 1 features
    RopeScaling scaling = RopeScaling::None;
    double factor = 1.0;
    double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
    double original_max_positions = 0.0;                   // llama3, yarn, longrope
    double max_positions = 0.0;                            // dynamic, longrope: the config's max_position_embeddings
    double attention_factor = -1.0;                        // yarn, longrope: cos/sin scale (< 0: derived)
    double beta_fast = 32.0, beta_slow = 1.0, mscale = 0.0, mscale_all_dim = 0.0;  // yarn
    bool truncate = true;                                  // yarn
    std::vector<double> short_factor, long_factor;         // longrope, [rotary_dim / 2]
    std::vector<double> freq_factors;  // llama.cpp's rope_freqs tensor (GGUF), [rotary_dim / 2]: inverse frequency j / factor j

    /// Inverse frequencies (length rotary_dim/2) for a forward over positions [0, seq_len), computed in
    /// float32 as transformers' modeling_rope_utils does (dynamic and longrope depend on seq_len).
    std::vector<float> inv_freq(double seq_len) const {
        const int half = rotary_dim / 2;
        const double pi = 3.14159265358979323846;
        std::vector<float> inv(static_cast<std::size_t>(half));
        const double dim = freq_dim > 0 ? freq_dim : rotary_dim;
        double base = theta;
        if (scaling == RopeScaling::Dynamic && seq_len > max_positions)
            base = theta * std::pow(factor * seq_len / max_positions - (factor - 1), dim / (dim - 2.0));
        // transformers computes base ** (2j / dim) in float32; the double value rounded once is within an ulp.
        auto pos_freq = [&](int j) { return std::pow(base, 2.0 * j / dim); };
        double low = 0, high = 0;
        if (scaling == RopeScaling::Yarn) {
            auto corr = [&](double rot) {
                return dim * std::log(original_max_positions / (rot * 2 * pi)) / (2 * std::log(theta));
            };
            low = corr(beta_fast);
            high = corr(beta_slow);
            if (truncate) low = std::floor(low), high = std::ceil(high);
            low = std::max(low, 0.0);
            high = std::min(high, dim - 1.0);
            if (low == high) high += 0.001;
        }
        for (int j = 0; j < half; ++j) {
            const double p = pos_freq(j);
            auto f = static_cast<float>(1.0 / p);
            switch (scaling) {
                case RopeScaling::None:
                case RopeScaling::Dynamic: break;
                case RopeScaling::Linear: f = static_cast<float>(1.0 / p / factor); break;
                case RopeScaling::Llama3: {
                    const double old = original_max_positions, fd = 1.0 / p;
                    const double low_wavelen = old / low_freq_factor, high_wavelen = old / high_freq_factor;
                    const double wavelen = 2 * pi / fd;
                    double g = fd;
                    if (wavelen > low_wavelen) {
                        g = fd / factor;
                    } else if (wavelen >= high_wavelen) {
                        const double s = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        g = (1 - s) * fd / factor + s * fd;
                    }
                    f = static_cast<float>(g);
                    break;
                }
                case RopeScaling::Yarn: {
                    const float extra = f, inter = static_cast<float>(1.0 / (factor * p));
                    const float ramp = static_cast<float>(std::min(1.0, std::max(0.0, (j - low) / (high - low))));
                    const float e = 1.0f - ramp;  // extrapolation weight
                    f = inter * (1.0f - e) + extra * e;
                    break;
                }
                case RopeScaling::LongRope: {
                    const auto& ext = seq_len > original_max_positions ? long_factor : short_factor;
                    f = static_cast<float>(1.0 / (ext[static_cast<std::size_t>(j)] * p));
                    break;
                }
            }
            if (!freq_factors.empty())  // (as llama.cpp divides each rotation angle by its factor)
                f = static_cast<float>(static_cast<double>(f) / freq_factors[static_cast<std::size_t>(j)]);
            inv[static_cast<std::size_t>(j)] = f;
        }
        return inv;
    }

    /// The factor transformers multiplies cos and sin by (YaRN's mscale, LongRoPE's scaling).
    double cos_sin_scale() const {
        if (attention_factor >= 0) return attention_factor;
        if (scaling == RopeScaling::Yarn) {
            auto m = [](double s, double ms) { return s <= 1 ? 1.0 : 0.1 * ms * std::log(s) + 1.0; };
            if (mscale != 0 && mscale_all_dim != 0) return m(factor, mscale) / m(factor, mscale_all_dim);
            return m(factor, 1.0);
        }
        if (scaling == RopeScaling::LongRope) {
            const double f = max_positions / original_max_positions;
            return f <= 1 ? 1.0 : std::sqrt(1 + std::log(f) / std::log(original_max_positions));
        }
        return 1.0;
    }
};

/// Per-layer differences: the sliding window and which rotary embedding the layer uses.
struct LayerSpec {
    int window = 0;     // W > 0: key j visible to query i iff i - W < j <= i; 0: full causal
    int rope = 0;       // index into ModelConfig::rope
    bool nope = false;  // no rotary embedding in this layer of a RoPE model (SmolLM3, Cohere 2, EXAONE 4 global layers)
    bool dense_mlp = false;  // a dense MLP in a mixture-of-experts model (DeepSeek's first_k_dense_replace, mlp_only_layers)
    int chunk = 0;      // C > 0: chunked attention (Llama 4): key j visible to query i iff C floor(i / C) <= j <= i
    Mixer mixer = Mixer::Attention;  // Gated DeltaNet layers (layer_types "linear_attention") have no attention
};

/// Hugging Face tensor names of one block, relative to the layer prefix. Empty: the part does not exist
/// (or, for norms, has no weights). Biases are "<name>.bias" where the flags say they exist.
struct BlockNames {
    std::string ln_attn, ln_attn_post, ln_mlp, ln_mlp_post;  // pre/post attention, pre/post MLP norms
    std::string q, k, v, qkv, o;                             // qkv: fused [q; k; v] along the output
    std::string q_norm, k_norm;                              // "{h}" in the name: one tensor per head (StableLM)
    std::string q_a, q_a_norm, q_b, kv_a, kv_a_norm, kv_b;   // multi-head latent attention (MlaSpec)
    std::string gate, up, gate_up, down;                     // gate_up: fused [gate; up] (Phi-3)
    std::string router;                                      // MoE router [E, d]
    std::string router_score_bias;                           // [E] added to the scores for the choice only (DeepSeek-V3)
    std::string expert;                                      // MoE expert prefix with "{e}"; gate/up/down below it
    std::string expert_gate, expert_up, expert_down;
    std::string experts_gate_up, experts_down;               // all experts in one tensor each, [E, in, out] (gpt-oss)
                                                             // or [E, out, in] (experts_out_in: GraniteMoE)
    std::string shared_expert, shared_expert_gate;           // a shared expert's prefix (gate/up/down below it), its [1, d] gate
    std::string attn_sub_norm, mlp_sub_norm;                 // norms before o_proj and before down_proj (BitNet)
    std::string act_params;                                  // the activation's learned scalars (xIELU: "<name>.alpha_p", ...)
    std::string ls_attn, ls_mlp;                             // layer scales [d] on the attention / MLP output (DINOv2)
    std::string linear_attn;                                 // a Gated DeltaNet layer's prefix (DeltaNetSpec)
    std::string ssm;                                         // a Mamba-2 layer's prefix (MambaSpec)
    bool conv1d = false;                                     // GPT-2 Conv1D: stored [in, out]
};

/// A vision transformer's input side (ViT, DINOv2, DINOv2 with registers, CLIP's and SigLIP's vision towers): the image
/// is cut into patch x patch squares, each projected to d (a convolution with stride = kernel = patch);
/// the sequence is [CLS, register 1..R, patch 1..P] with position embeddings added to CLS and the
/// patches (row-major over the patch grid) before the registers are inserted (no positions on those).
/// SigLIP has no CLS: the sequence is the patches, and its pooled feature comes from an attention-pooling head.
/// The model's ends, stages of the description: what the first block reads (token embeddings, or patch embeddings of
/// images) and what follows the last (the LM head's logits, or a vision tower's hidden states and pooled feature).
enum class InputStage { Tokens, Patches };
enum class OutputStage { Logits, Pooled };

struct VisionSpec {
    int image_size = 0;  // the size the position table was trained for (square)
    int patch_size = 0;  // > 0: the model reads pixels, not token ids
    int channels = 3;
    int registers = 0;   // register tokens (DINOv2 with registers)
    /// The pooled feature: the CLS row of ln_final (DINOv2, CLIP), or tanh(dense(that)) (ViT's pooler).
    bool pooler_dense = false;
    /// Whether last_hidden_state is ln_final's output (ViT, DINOv2) or the last block's (CLIP, whose
    /// post_layernorm transformers applies to the pooled token only; massact applies it to every row).
    bool last_is_normalized = true;
    bool patch_bias = true;  // the patch projection has a bias (not CLIP's)
    bool cls = true;         // the sequence starts with a CLS token (not SigLIP's)
    /// The pooled feature from a multi-head attention-pooling head (SigLIP's MAP head): a learned probe attends over
    /// the normalised tokens (nn.MultiheadAttention), then pooled = a + fc2(act(fc1(layernorm(a)))).
    bool map_head = false;
    /// DINOv3: no position table; q and k of the patches rotate by a 2-D RoPE over the patch centres (CLS and the
    /// registers do not rotate): for head features j < hd/4 the angle 2 pi y_i f_j, for hd/4 <= j < hd/2 the angle
    /// 2 pi x_i f_(j - hd/4), f_j = theta^(-4j / hd), (y, x) the patch centre scaled to [-1, 1]; rotate-half pairs.
    bool rope_2d = false;

    /// Tokens of an image of h x w pixels (whole patches; a remainder is cut off, as the convolution does).
    std::int64_t tokens(std::int64_t h, std::int64_t w) const { return (cls ? 1 : 0) + registers + (h / patch_size) * (w / patch_size); }
    /// The position of the first patch in the sequence (after CLS and the registers).
    std::int64_t first_patch() const { return (cls ? 1 : 0) + registers; }
};

struct ModelNames {
    std::vector<std::string> prefixes = {"model."};  // of the body, tried in order: the first under which `embed` exists
    std::string embed = "embed_tokens";
    std::string embed_norm;                          // a norm right after the embedding (BLOOM)
    std::string pos_embed;                           // learned positions
    std::string layer = "layers.{l}.";
    std::string final_norm = "norm";
    std::string lm_head = "lm_head";                 // full name (outside the body prefix)
    // vision (embed is the patch projection there): full tensor names below the body prefix
    std::string cls_token, register_tokens, pos_table, pooler;  // pooler: "<name>.weight/.bias"
    std::string map_head;                            // SigLIP's attention-pooling head prefix ("head.")
    BlockNames block;
};

struct ModelConfig {
    std::string model_type;       // as in config.json
    std::vector<std::int64_t> eos_token_ids;  // config.json's eos_token_id (one or a list): where generation stops
    int vocab_size = 0;           // V
    int hidden_size = 0;          // d
    int num_layers = 0;           // L
    int num_heads = 0;            // H
    int num_kv_heads = 0;         // KV (GQA: query head h uses KV head h / (H / KV))
    int head_dim = 0;             // hd
    int intermediate_size = 0;    // MLP width I (of one expert for MoE)
    int dense_intermediate_size = 0;  // MoE models: the width of the layers with a dense MLP (LayerSpec::dense_mlp)
    int max_positions = 0;        // learned positions: table size; RoPE: informative

    // --- the block ---
    NormSpec norm;                // every norm of the model (final norm included)
    bool pre_attn_norm = true;    // n = norm(x) before attention (ln1)
    bool post_attn_norm = false;  // norm of the attention output before the residual add (Gemma 2/3, OLMo 2)
    bool pre_mlp_norm = true;     // norm before the MLP (ln2)
    bool post_mlp_norm = false;   // norm of the MLP output before the residual add
    bool parallel = false;        // x + attn(n1) + mlp(n2 or n1): attention and MLP read the block input
    QKNorm qk_norm = QKNorm::None;
    NormSpec qk_norm_spec;        // the q/k norms' own kind (StableLM: LayerNorm without bias)
    bool qk_norm_rows = false;    // per-head q/k norm weights stored as one [heads, hd] tensor (Cohere)
    bool qk_norm_after_rope = false;  // the q/k norms follow RoPE (Llama 4's weightless L2 norm), else they precede it
    bool qk_norm_nope_layers = true;  // NoPE layers have the q/k norms too (Llama 4: only its RoPE layers)
    double attn_temperature_scale = 0.0;  // > 0: NoPE layers scale q by 1 + scale ln(1 + floor((pos + 1) / floor)) (Llama 4)
    double attn_temperature_floor = 1.0;
    double attn_scale = 0.0;      // scores = q.k * attn_scale (1/sqrt(hd), query_pre_attn_scalar^-1/2, or 1)
    double attn_softcap = 0.0;    // > 0: scores = cap * tanh(scores / cap) (Gemma 2)
    double clip_qkv = 0.0;        // > 0: q, k, v clamped to [-clip, clip] (OLMo)
    bool qkv_bias = false, o_bias = false, mlp_bias = false;
    bool q_bias = true, k_bias = true, v_bias = true;  // with qkv_bias: which split projections have one (DINOv3 says each)
    QkvLayout qkv_layout = QkvLayout::Concat;  // of a fused projection (names.block.qkv)
    MlpKind mlp = MlpKind::Gated;
    ActivationFn act = ActivationFn::SiLU;
    int num_experts = 0;          // > 0: mixture of experts
    int experts_per_token = 0;    // top-k
    bool norm_topk = true;        // renormalise the top-k routing weights to sum 1
    RouterScore router_score = RouterScore::Softmax;
    int router_groups = 0;        // > 0: experts in this many groups; only the best router_topk_groups groups are chosen from
    int router_topk_groups = 0;
    GroupScore group_score = GroupScore::Max;
    double routed_scale = 1.0;    // routing weights multiplied by this (DeepSeek's routed_scaling_factor)
    bool routing_on_input = false;  // an expert reads weight * x and its output is added as it is (Llama 4), else weight * expert(x)
    bool router_bias = false;     // the router has a bias (gpt-oss)
    double swiglu_limit = 0.0;    // > 0: gpt-oss's clamped SwiGLU on interleaved [gate, up] columns:
                                  //   g = min(gate, limit), u = clamp(up, +-limit), (u + 1) g sigmoid(alpha g)
    double swiglu_alpha = 1.702;
    GateUpLayout gate_up_layout = GateUpLayout::Halves;
    bool experts_out_in = false;  // the [E, ...] expert tensors hold one [out, in] matrix per expert (nn.Linear layout)
    int shared_expert_size = 0;   // > 0: a shared expert of this width added to every token's routed output (Qwen2-MoE)
    bool shared_expert_gated = false;  // ... multiplied by sigmoid(shared_expert_gate x)
    bool attn_sub_norm = false;   // a norm of width H*hd on the attention output before o_proj (BitNet)
    bool attn_output_gate = false;  // gated attention (Qiu et al. 2025; Qwen3-Next): q_proj gives [q_h; g_h] per head and
                                    // the attention output is multiplied by sigmoid(g) before o_proj
    bool mlp_sub_norm = false;    // a norm of width I on the MLP hidden before down_proj (BitNet)
    MlaSpec mla;                  // multi-head latent attention when mla.kv_lora_rank > 0
    DeltaNetSpec deltanet;        // the Gated DeltaNet layers' shape (LayerSpec::mixer)
    MambaSpec mamba;              // the Mamba-2 layers' shape
    bool has_mlp = true;          // false: a block is norm + mixer only (Mamba-2); no MLP, no hook_resid_mid
    SinkKind sink = SinkKind::None;
    kernels::AttentionFn attention_fn = kernels::AttentionFn::Softmax;  // config "attention_softmax": softmax, softpick
    double attention_sigmoid_bias = 0.0;  // "sigmoid": p = sigmoid(s + bias) ("attention_sigmoid_bias", e.g. -ln n)

    // --- around the blocks ---
    PositionKind positions = PositionKind::Rope;
    std::vector<RopeSpec> rope;   // one per layer type
    RopePairs rope_pairs = RopePairs::Half;
    int pos_offset = 0;           // learned positions: row of position t is t + offset (OPT: 2)
    double alibi_max_bias = 8.0;  // ALiBi slopes 2^(-max_bias * k / n) (BLOOM, MPT: 8)
    bool embed_norm = false;      // norm after the embedding (BLOOM's word_embeddings_layernorm)
    bool lm_head_bias = false;    // the LM head has a bias (Phi-2, GPT-J)
    std::vector<LayerSpec> layers;
    double embed_scale = 1.0;     // embedding multiplied by this (Gemma: sqrt(d))
    double final_softcap = 0.0;   // > 0: logits = cap * tanh(logits / cap)
    double logit_scale = 1.0;     // logits multiplied by this before any soft-cap (Cohere; Granite: 1 / logits_scaling)
    double residual_scale = 1.0;  // attention and MLP outputs multiplied by this before the residual add (Granite)
    bool tie_embeddings = false;  // logits use the token embedding matrix
    bool causal = true;           // false: bidirectional attention (vision encoders)
    VisionSpec vision;            // patch_size > 0: a vision transformer (no vocabulary, no logits)
    InputStage input = InputStage::Tokens;     // (a vision family: Patches)
    OutputStage output = OutputStage::Logits;  // (a vision family: Pooled)
    ModelNames names;

    std::int64_t q_dim() const { return std::int64_t(num_heads) * head_dim; }
    std::int64_t kv_dim() const { return std::int64_t(num_kv_heads) * head_dim; }
    bool moe() const { return num_experts > 0; }
    /// Whether layer l routes over experts (an MoE model's dense layers do not).
    bool layer_moe(int l) const { return moe() && !layers[static_cast<std::size_t>(l)].dense_mlp; }
    /// The MLP width of layer l: an expert's in an MoE layer, dense_intermediate_size in an MoE model's dense layer.
    int layer_intermediate(int l) const { return moe() && !layer_moe(l) ? dense_intermediate_size : intermediate_size; }
    bool has_mla() const { return mla.kv_lora_rank > 0; }
    /// Whether layer l mixes tokens by attention (else Gated DeltaNet: no scores, no pattern, no KV rows).
    bool layer_attention(int l) const { return layers[static_cast<std::size_t>(l)].mixer == Mixer::Attention; }
    /// Whether any layer is a Gated DeltaNet layer.
    bool has_deltanet() const {
        for (const auto& s : layers)
            if (s.mixer == Mixer::GatedDeltaNet) return true;
        return false;
    }
    /// Whether some layer has attention (not a pure state-space model).
    bool has_attention() const {
        for (const auto& s : layers)
            if (s.mixer == Mixer::Attention) return true;
        return false;
    }
    /// Whether some layer carries a recurrent state (Gated DeltaNet, Mamba-2) instead of keys and values.
    bool has_recurrent() const {
        for (const auto& s : layers)
            if (s.mixer != Mixer::Attention) return true;
        return false;
    }
    /// Per sequence, the floats of layer l's convolution history (taps - 1 inputs) and of its recurrent state (0 for
    /// an attention layer): what a KV cache holds for it.
    std::int64_t conv_history_size(int l) const {
        switch (layers[static_cast<std::size_t>(l)].mixer) {
            case Mixer::GatedDeltaNet: return (deltanet.conv_kernel - 1) * deltanet.conv_dim();
            case Mixer::Mamba2: return (mamba.conv_kernel - 1) * mamba.conv_dim();
            default: return 0;
        }
    }
    std::int64_t recurrent_state_size(int l) const {
        switch (layers[static_cast<std::size_t>(l)].mixer) {
            case Mixer::GatedDeltaNet: return std::int64_t(deltanet.v_heads) * deltanet.k_dim * deltanet.v_dim;
            case Mixer::Mamba2: return mamba.inner() * mamba.state;
            default: return 0;
        }
    }
    /// Features of one head of v and z (o_proj reads H of them): head_dim, or MLA's v_head_dim.
    int v_dim() const { return has_mla() ? mla.v_head_dim : head_dim; }
    bool is_vision() const { return input == InputStage::Patches; }
    bool has_rope() const { return positions == PositionKind::Rope; }
    /// ALiBi slope of every head: n' = the power of two >= H, slopes 2^(-max_bias k / n'), k = 1..n';
    /// for H < n' the even k first, then the odd ones (MPT's gen_slopes; BLOOM's values in the same order).
    std::vector<float> alibi_slopes() const {
        int n = 1;
        while (n < num_heads) n *= 2;
        std::vector<double> all;
        for (int k = 1; k <= n; ++k) all.push_back(std::pow(2.0, -alibi_max_bias * k / n));
        std::vector<float> out;
        if (n != num_heads)
            for (int k = 1; k < n; k += 2) out.push_back(static_cast<float>(all[static_cast<std::size_t>(k)]));
        for (int k = 0; k < n; k += (n != num_heads ? 2 : 1)) out.push_back(static_cast<float>(all[static_cast<std::size_t>(k)]));
        out.resize(static_cast<std::size_t>(num_heads));
        return out;
    }
    int window(int layer) const { return layers[static_cast<std::size_t>(layer)].window; }
    /// Whether layer l normalises q and k (QKNorm, unless a NoPE layer of a model whose NoPE layers have none).
    bool layer_qk_norm(int l) const { return qk_norm != QKNorm::None && (qk_norm_nope_layers || !layers[static_cast<std::size_t>(l)].nope); }
    const RopeSpec& layer_rope(int layer) const { return rope[static_cast<std::size_t>(layers[static_cast<std::size_t>(layer)].rope)]; }
};

}  // namespace massact

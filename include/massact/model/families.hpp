// massact/model/families.hpp - config.json -> block description, one mapping per model_type.
//
// Each family is a short function that reads its config.json keys and sets flags and tensor names
// of the block description (model/config.hpp). Anything massact would compute differently from
// Hugging Face is refused with an error naming the field and its value. docs/formats.md lists
// the keys read per family.
#pragma once

#include "massact/core/error.hpp"
#include "massact/io/json_file.hpp"
#include "massact/model/config.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace massact {

namespace detail {

// Upper bounds on sizes read from config.json (far above any real model).
constexpr int kMaxLayers = 4096, kMaxHeads = 16384, kMaxHeadDim = 16384, kMaxWidth = 1 << 20, kMaxVocab = 1 << 24,
              kMaxExperts = 4096, kMaxPatches = 1 << 22;
/// A recurrent layer's state per head (Gated DeltaNet k_dim x v_dim, Mamba-2 head_dim x state): real models hold
/// 8 Ki - 16 Ki floats; the bound keeps a config from claiming a cache far beyond what its weights could use.
constexpr std::int64_t kMaxStatePerHead = std::int64_t(1) << 18;

/// config.json's fields, typed and bounded (io::JsonFields: errors name the file and the field).
using ConfigReader = io::JsonFields;

inline ActivationFn parse_activation(const ConfigReader& r, const std::string& key, const std::string& dflt) {
    const std::string a = r.get_str(key, dflt);
    if (a == "silu" || a == "swish") return ActivationFn::SiLU;
    if (a == "gelu_new" || a == "gelu_pytorch_tanh" || a == "gelu_fast" || a == "gelu_tanh") return ActivationFn::GeluTanh;
    if (a == "gelu") return ActivationFn::GeluErf;
    if (a == "relu") return ActivationFn::Relu;
    if (a == "quick_gelu") return ActivationFn::QuickGelu;
    if (a == "relu2") return ActivationFn::Relu2;
    if (a == "xielu") return ActivationFn::XIELU;  // (its parameters: the family names them, see apertus)
    r.fail(key, "unsupported value \"" + a + "\" (expected silu, gelu, gelu_new, gelu_pytorch_tanh, quick_gelu, relu, relu2 or xielu)");
}

/// int(head_dim * factor), as transformers computes the rotary dims; the factor must be in (0, 1].
inline int rotary_features(const ConfigReader& r, const std::string& key, int head_dim, double factor) {
    if (!(factor > 0.0 && factor <= 1.0)) r.fail(key, "expected a number in (0, 1], found " + std::to_string(factor));
    return static_cast<int>(head_dim * factor);
}

/// Read one rope object (rope_parameters / rope_scaling or one per-layer-type entry of it) into `s`.
inline void read_rope_object(const ConfigReader& r, const nlohmann::json& o, const std::string& key, int head_dim, RopeSpec& s) {
    if (!o.is_object()) r.fail(key, "expected an object or null, found " + io::json_brief(o));
    auto num = [&](const char* k, double dflt) {
        if (!o.contains(k) || o[k].is_null()) return dflt;
        if (!o[k].is_number()) r.fail(key + "." + k, "expected a number, found " + io::json_brief(o[k]));
        return o[k].get<double>();
    };
    auto factors = [&](const char* k) {
        std::vector<double> v;
        if (!o.contains(k) || !o[k].is_array()) r.fail(key + "." + k, "missing (expected a list of numbers)");
        for (const auto& x : o[k]) {
            if (!x.is_number()) r.fail(key + "." + k, "expected numbers, found " + io::json_brief(x));
            v.push_back(x.get<double>());
        }
        if (static_cast<int>(v.size()) != s.rotary_dim / 2)
            r.fail(key + "." + k, "has " + std::to_string(v.size()) + " entries, expected rotary dim / 2 = " +
                                      std::to_string(s.rotary_dim / 2));
        return v;
    };
    s.theta = num("rope_theta", s.theta);
    if (o.contains("partial_rotary_factor") && !o["partial_rotary_factor"].is_null())
        s.rotary_dim = rotary_features(r, key + ".partial_rotary_factor", head_dim, num("partial_rotary_factor", 1.0));
    std::string type = "default";
    for (const char* k : {"rope_type", "type"})
        if (o.contains(k) && o[k].is_string()) {
            type = o[k].get<std::string>();
            break;
        }
    const double omax = num("original_max_position_embeddings", 0.0);
    if (type == "default") {
        s.scaling = RopeScaling::None;
    } else if (type == "linear") {
        s.scaling = RopeScaling::Linear;
        s.factor = num("factor", 1.0);
    } else if (type == "llama3") {
        s.scaling = RopeScaling::Llama3;
        s.factor = num("factor", 8.0);
        s.low_freq_factor = num("low_freq_factor", 1.0);
        s.high_freq_factor = num("high_freq_factor", 4.0);
        s.original_max_positions = omax > 0 ? omax : 8192.0;
        if (s.high_freq_factor <= s.low_freq_factor) r.fail(key + ".high_freq_factor", "must exceed low_freq_factor");
    } else if (type == "yarn") {
        s.scaling = RopeScaling::Yarn;
        s.original_max_positions = omax > 0 ? omax : s.max_positions;
        // The config's factor; without one, max / original (transformers 5.17: the gpt-oss reference, whose
        // test config has max 128 and original 4096, is matched with factor 32, not 1/32).
        s.factor = num("factor", omax > 0 && s.max_positions > 0 ? s.max_positions / omax : 1.0);
        s.attention_factor = num("attention_factor", -1.0);
        s.beta_fast = num("beta_fast", 32.0);
        s.beta_slow = num("beta_slow", 1.0);
        s.mscale = num("mscale", 0.0);
        s.mscale_all_dim = num("mscale_all_dim", 0.0);
        if (o.contains("truncate") && o["truncate"].is_boolean()) s.truncate = o["truncate"].get<bool>();
    } else if (type == "longrope" || type == "su") {
        s.scaling = RopeScaling::LongRope;
        if (omax > 0) s.original_max_positions = omax;
        if (s.original_max_positions <= 0) s.original_max_positions = s.max_positions;
        if (!(s.original_max_positions > 0))  // (its scale and the short/long switch divide by it)
            r.fail("max_position_embeddings", "missing (rope_type " + type + " needs it or original_max_position_embeddings)");
        s.attention_factor = num("attention_factor", -1.0);
        s.short_factor = factors("short_factor");
        s.long_factor = factors("long_factor");
    } else if (type == "dynamic") {
        s.scaling = RopeScaling::Dynamic;
        s.factor = num("factor", 1.0);
    } else {
        r.fail(key + ".rope_type", "unsupported value \"" + type + "\" (massact supports default, linear, llama3, yarn, longrope, dynamic)");
    }
    if (s.factor <= 0) r.fail(key + ".factor", "must be positive");
    if (s.scaling != RopeScaling::None && s.scaling != RopeScaling::Llama3 && s.scaling != RopeScaling::LongRope &&
        s.scaling != RopeScaling::Linear && s.max_positions <= 0 && s.original_max_positions <= 0)
        r.fail("max_position_embeddings", "missing (needed by rope_type " + type + ")");
}

/// `layer_types` (present): a list of L strings, each one of `allowed`; their indices in `allowed`, per layer.
inline std::vector<int> read_layer_types(const ConfigReader& r, int L, const std::vector<std::string>& allowed) {
    const auto& lt = r.json()["layer_types"];
    if (!lt.is_array() || static_cast<int>(lt.size()) != L) r.fail("layer_types", "expected a list of " + std::to_string(L) + " strings");
    std::string expected;
    for (const auto& a : allowed) expected += (expected.empty() ? "" : " or ") + a;
    std::vector<int> out;
    for (const auto& t : lt) {
        const auto it = std::find(allowed.begin(), allowed.end(), t.is_string() ? t.get<std::string>() : std::string());
        if (it == allowed.end()) r.fail("layer_types", "unsupported value " + io::json_brief(t) + " (expected " + expected + ")");
        out.push_back(static_cast<int>(it - allowed.begin()));
    }
    return out;
}

/// Layer types from `layer_types` ("sliding_attention" / "full_attention"), or every layer `dflt`.
inline std::vector<bool> read_sliding_layers(const ConfigReader& r, int L, const std::function<bool(int)>& dflt) {
    std::vector<bool> sliding(static_cast<std::size_t>(L));
    if (r.present("layer_types")) {
        const std::vector<int> t = read_layer_types(r, L, {"full_attention", "sliding_attention"});
        for (int l = 0; l < L; ++l) sliding[static_cast<std::size_t>(l)] = t[static_cast<std::size_t>(l)] == 1;
    } else {
        for (int l = 0; l < L; ++l) sliding[static_cast<std::size_t>(l)] = dflt(l);
    }
    return sliding;
}

/// Rotary embeddings of full and sliding layers: rope_theta / partial_rotary_factor at top level, then
/// rope_scaling or rope_parameters (one object, or one per layer type). Sets c.rope and layers[].rope.
inline void read_rope(const ConfigReader& r, ModelConfig& c, const std::vector<bool>& sliding, double local_theta = 0) {
    RopeSpec base;
    base.theta = r.get_num("rope_theta", 10000.0);
    base.max_positions = c.max_positions;
    base.original_max_positions = r.get_num("original_max_position_embeddings", 0.0);
    base.rotary_dim = rotary_features(r, "partial_rotary_factor", c.head_dim, r.get_num("partial_rotary_factor", 1.0));
    RopeSpec full = base, local = base;
    if (local_theta > 0) local.theta = local_theta;
    for (const char* k : {"rope_parameters", "rope_scaling"}) {
        if (!r.present(k)) continue;
        const auto& p = r.json()[k];
        if (p.is_object() && (p.contains("full_attention") || p.contains("sliding_attention"))) {
            if (p.contains("full_attention")) read_rope_object(r, p["full_attention"], std::string(k) + ".full_attention", c.head_dim, full);
            if (p.contains("sliding_attention"))
                read_rope_object(r, p["sliding_attention"], std::string(k) + ".sliding_attention", c.head_dim, local);
        } else {
            read_rope_object(r, p, k, c.head_dim, full);
            if (local_theta <= 0) local = full;
        }
        break;
    }
    for (RopeSpec* s : {&full, &local}) {
        if (s->rotary_dim % 2 != 0 && s->rotary_dim < c.head_dim) s->freq_dim = s->rotary_dim++;  // as transformers' arange(0, dim, 2)
        if (s->rotary_dim <= 0 || s->rotary_dim % 2 != 0 || s->rotary_dim > c.head_dim)
            r.fail("partial_rotary_factor", "gives " + std::to_string(s->rotary_dim) + " rotary features of head_dim " +
                                                std::to_string(c.head_dim) + " (expected an even number > 0)");
    }
    c.rope = {full};
    bool any_sliding = false;
    for (bool s : sliding) any_sliding = any_sliding || s;
    if (any_sliding) c.rope.push_back(local);
    for (int l = 0; l < c.num_layers; ++l)
        c.layers[static_cast<std::size_t>(l)].rope = sliding[static_cast<std::size_t>(l)] ? static_cast<int>(c.rope.size()) - 1 : 0;
}

/// One rotary embedding for every layer.
inline void read_rope(const ConfigReader& r, ModelConfig& c) {
    read_rope(r, c, std::vector<bool>(static_cast<std::size_t>(c.num_layers), false), 0.0);
}

/// Sizes every decoder family names the same way (hidden_size, num_hidden_layers, ...); the MLP width
/// under `mlp_key` (or `mlp_default` when that key is absent and the default is > 0).
inline void read_sizes(const ConfigReader& r, ModelConfig& c, const char* mlp_key = "intermediate_size", int mlp_default = 0) {
    c.hidden_size = r.get_size("hidden_size", kMaxWidth);
    c.num_layers = r.get_size("num_hidden_layers", kMaxLayers);
    c.num_heads = r.get_size("num_attention_heads", kMaxHeads);
    c.num_kv_heads = r.get_size("num_key_value_heads", c.num_heads, kMaxHeads);
    c.vocab_size = r.get_size("vocab_size", kMaxVocab);
    c.intermediate_size = mlp_default > 0 ? r.get_size(mlp_key, mlp_default, kMaxWidth) : r.get_size(mlp_key, kMaxWidth);
    c.max_positions = r.get_int("max_position_embeddings", 0);
    if (!r.present("head_dim") && c.hidden_size % c.num_heads != 0)
        r.fail("num_attention_heads", "does not divide hidden_size and no head_dim is given");
    c.head_dim = r.get_size("head_dim", c.hidden_size / c.num_heads, kMaxHeadDim);
    if (c.num_heads % c.num_kv_heads != 0)
        r.fail("num_key_value_heads", "value " + std::to_string(c.num_kv_heads) + " does not divide num_attention_heads " +
                                          std::to_string(c.num_heads));
    c.layers.assign(static_cast<std::size_t>(c.num_layers), LayerSpec{});
}

/// Windows: `window` on the layers `sliding` marks.
inline void set_windows(ModelConfig& c, const std::vector<bool>& sliding, int window) {
    for (int l = 0; l < c.num_layers; ++l)
        c.layers[static_cast<std::size_t>(l)].window = sliding[static_cast<std::size_t>(l)] ? window : 0;
}

/// The Llama block and names: RMSNorm pre-norms, q/k/v/o, SwiGLU gate/up/down, final model.norm.
inline void llama_block(const ConfigReader& r, ModelConfig& c) {
    read_sizes(r, c);
    c.norm = {NormKind::RMSNorm, r.get_num("rms_norm_eps", 1e-6), true, false, false};
    c.act = parse_activation(r, "hidden_act", "silu");
    c.tie_embeddings = r.get_bool("tie_word_embeddings", false);
    auto& n = c.names.block;
    n.ln_attn = "input_layernorm";
    n.ln_mlp = "post_attention_layernorm";
    n.q = "self_attn.q_proj";
    n.k = "self_attn.k_proj";
    n.v = "self_attn.v_proj";
    n.o = "self_attn.o_proj";
    n.gate = "mlp.gate_proj";
    n.up = "mlp.up_proj";
    n.down = "mlp.down_proj";
}

/// Sliding layers as Qwen2/Qwen3 define them without layer_types: use_sliding_window and layers >= max_window_layers.
inline std::vector<bool> qwen_sliding(const ConfigReader& r, const ModelConfig& c) {
    const bool use = r.get_bool("use_sliding_window", false);
    const double m = r.present("max_window_layers") ? r.get_num("max_window_layers", 0) : 0;
    if (!(m >= 0 && m <= kMaxLayers)) r.fail("max_window_layers", "expected a layer count in [0, " + std::to_string(kMaxLayers) + "]");
    const int from = static_cast<int>(m);
    return read_sliding_layers(r, c.num_layers, [&](int l) { return use && l >= from; });
}

/// sliding_window: absent, null or 0 mean none.
inline int window_size(const ConfigReader& r) {
    if (r.present("sliding_window") && r.json()["sliding_window"] == 0) return 0;
    return r.present("sliding_window") ? r.get_int("sliding_window") : 0;
}

/// Mistral's rule: sliding_window on every layer (or on the sliding ones of layer_types).
inline void uniform_windows(const ConfigReader& r, ModelConfig& c) {
    const auto sliding = read_sliding_layers(r, c.num_layers, [&](int) { return window_size(r) > 0; });
    set_windows(c, sliding, window_size(r));
}

// ---- the families ------------------------------------------------------------------------------

/// What GPT-2 and GPT-J share: the n_* sizes, LayerNorm (layer_norm_epsilon), activation_function, a plain MLP,
/// and the names transformer.wte, h.{l}.ln_1, ln_f.
inline void gpt_sizes_and_names(const ConfigReader& r, ModelConfig& c) {
    c.hidden_size = r.get_size("n_embd", kMaxWidth);
    c.num_layers = r.get_size("n_layer", kMaxLayers);
    c.num_heads = r.get_size("n_head", kMaxHeads);
    c.num_kv_heads = c.num_heads;
    c.max_positions = r.get_size("n_positions", kMaxVocab);
    c.vocab_size = r.get_size("vocab_size", kMaxVocab);
    c.intermediate_size = r.get_size("n_inner", 4 * c.hidden_size, 4 * kMaxWidth);
    if (c.hidden_size % c.num_heads != 0) r.fail("n_head", "does not divide n_embd");
    c.head_dim = c.hidden_size / c.num_heads;
    c.layers.assign(static_cast<std::size_t>(c.num_layers), LayerSpec{});
    c.norm = {NormKind::LayerNorm, r.get_num("layer_norm_epsilon", 1e-5), true, true, false};
    c.act = parse_activation(r, "activation_function", "gelu_new");
    c.mlp = MlpKind::Plain;
    c.names.embed = "wte";
    c.names.layer = "h.{l}.";
    c.names.final_norm = "ln_f";
    c.names.block.ln_attn = "ln_1";
}

/// GPT-2: learned positions, Conv1D ([in, out]) matrices with biases, fused c_attn, sequential block, tied embedding.
inline void family_gpt2(const ConfigReader& r, ModelConfig& c) {
    gpt_sizes_and_names(r, c);
    c.qkv_bias = c.o_bias = c.mlp_bias = true;
    c.tie_embeddings = r.get_bool("tie_word_embeddings", true);
    if (!r.get_bool("scale_attn_weights", true)) c.attn_scale = 1.0;
    if (r.get_bool("scale_attn_by_inverse_layer_idx", false)) r.fail("scale_attn_by_inverse_layer_idx", "unsupported value true");
    if (r.get_bool("add_cross_attention", false)) r.fail("add_cross_attention", "unsupported value true");
    c.positions = PositionKind::Learned;
    c.names.prefixes = {"transformer.", ""};
    c.names.pos_embed = "wpe";
    auto& n = c.names.block;
    n.conv1d = true;
    n.qkv = "attn.c_attn";
    n.o = "attn.c_proj";
    n.ln_mlp = "ln_2";
    n.up = "mlp.c_fc";
    n.down = "mlp.c_proj";
}

inline void family_llama(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
    c.mlp_bias = r.get_bool("mlp_bias", false);
}

inline void family_qwen2(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.qkv_bias = true;
    const auto sliding = qwen_sliding(r, c);
    set_windows(c, sliding, window_size(r));
}

inline void family_qwen3(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
    c.qk_norm = QKNorm::PerHead;
    c.qk_norm_spec = c.norm;
    c.names.block.q_norm = "self_attn.q_norm";
    c.names.block.k_norm = "self_attn.k_norm";
    const auto sliding = qwen_sliding(r, c);
    set_windows(c, sliding, window_size(r));
}

/// A mixture-of-experts MLP: expert count under `experts_key`, top-k, and the tensor names
/// <router>, <expert with {e}><gate|up|down>.
inline void set_moe(const ConfigReader& r, ModelConfig& c, const char* experts_key, const char* router, const char* expert,
                    const char* gate, const char* up, const char* down) {
    c.num_experts = r.get_size(experts_key, kMaxExperts);
    c.experts_per_token = r.get_size("num_experts_per_tok", kMaxExperts);
    if (c.experts_per_token > c.num_experts) r.fail("num_experts_per_tok", std::string("exceeds ") + experts_key);
    BlockNames& n = c.names.block;
    n.gate = n.up = n.down = "";
    n.router = router;
    n.expert = expert;
    n.expert_gate = gate;
    n.expert_up = up;
    n.expert_down = down;
}

inline void family_mixtral(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);  // Mistral's block; windows by the table's rule
    set_moe(r, c, "num_local_experts", "block_sparse_moe.gate", "block_sparse_moe.experts.{e}.", "w1", "w3", "w2");
}

/// The layers of Qwen's MoE families (Qwen2-MoE, Qwen3-MoE, Qwen3-Next) that have a dense MLP of intermediate_size
/// instead of experts: those in mlp_only_layers and those (l + 1) % decoder_sparse_step skips, transformers' rule.
inline std::vector<bool> qwen_dense_layers(const ConfigReader& r, const ModelConfig& c) {
    const int step = r.get_int("decoder_sparse_step", 1);
    if (step < 1) r.fail("decoder_sparse_step", "expected a positive number, found " + std::to_string(step));
    std::vector<bool> dense(static_cast<std::size_t>(c.num_layers), false);
    for (int l = 0; l < c.num_layers; ++l) dense[static_cast<std::size_t>(l)] = (l + 1) % step != 0;
    if (r.present("mlp_only_layers")) {
        const auto& m = r.json()["mlp_only_layers"];
        if (!m.is_array()) r.fail("mlp_only_layers", "expected a list of layer indices");
        for (const auto& x : m) {
            if (!x.is_number_integer() || x.get<long long>() < 0 || x.get<long long>() >= c.num_layers)
                r.fail("mlp_only_layers", "entry " + io::json_brief(x) + " is not a layer index");
            dense[static_cast<std::size_t>(x.get<long long>())] = true;
        }
    }
    return dense;
}

/// Give the `dense` layers a dense MLP of `width` at mlp.{gate,up,down}_proj beside the experts of the others.
inline void qwen_dense_mlp(ModelConfig& c, const std::vector<bool>& dense, int width) {
    if (std::none_of(dense.begin(), dense.end(), [](bool b) { return b; })) return;
    c.dense_intermediate_size = width;
    c.names.block.gate = "mlp.gate_proj", c.names.block.up = "mlp.up_proj", c.names.block.down = "mlp.down_proj";
    for (int l = 0; l < c.num_layers; ++l) c.layers[static_cast<std::size_t>(l)].dense_mlp = dense[static_cast<std::size_t>(l)];
}

inline void family_qwen3_moe(const ConfigReader& r, ModelConfig& c) {
    family_qwen3(r, c);
    const std::vector<bool> dense = qwen_dense_layers(r, c);
    if (std::all_of(dense.begin(), dense.end(), [](bool b) { return b; })) return;  // (no experts anywhere)
    const int width = c.intermediate_size;
    c.intermediate_size = r.get_size("moe_intermediate_size", kMaxWidth);
    set_moe(r, c, "num_experts", "mlp.gate", "mlp.experts.{e}.", "gate_proj", "up_proj", "down_proj");
    c.norm_topk = r.get_bool("norm_topk_prob", false);
    qwen_dense_mlp(c, dense, width);
}

/// Gemma: (1 + w) RMSNorm, GeGLU, embeddings scaled by sqrt(d), tied head.
inline void gemma_common(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.norm.one_plus = true;
    c.act = parse_activation(r, r.present("hidden_activation") ? "hidden_activation" : "hidden_act", "gelu_pytorch_tanh");
    c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
    c.embed_scale = std::sqrt(static_cast<double>(c.hidden_size));
    c.tie_embeddings = r.get_bool("tie_word_embeddings", true);
}

inline void family_gemma(const ConfigReader& r, ModelConfig& c) {
    gemma_common(r, c);
}

/// Gemma 2 / 3: sandwich norms (pre and post around attention and MLP), query_pre_attn_scalar,
/// soft-capping, sliding layers.
inline void gemma2_common(const ConfigReader& r, ModelConfig& c, int pattern) {
    gemma_common(r, c);
    c.post_attn_norm = c.post_mlp_norm = true;
    auto& n = c.names.block;
    n.ln_attn_post = "post_attention_layernorm";
    n.ln_mlp = "pre_feedforward_layernorm";
    n.ln_mlp_post = "post_feedforward_layernorm";
    if (r.present("query_pre_attn_scalar")) c.attn_scale = 1.0 / std::sqrt(r.get_num("query_pre_attn_scalar", 1.0));
    c.attn_softcap = r.get_num("attn_logit_softcapping", 0.0);
    c.final_softcap = r.get_num("final_logit_softcapping", 0.0);
    const auto sliding = read_sliding_layers(r, c.num_layers, [&](int l) { return (l + 1) % pattern != 0; });
    set_windows(c, sliding, window_size(r));
    read_rope(r, c, sliding, r.get_num("rope_local_base_freq", 0.0));
}

inline void family_gemma2(const ConfigReader& r, ModelConfig& c) { gemma2_common(r, c, 2); }

inline void family_gemma3_text(const ConfigReader& r, ModelConfig& c) {
    const int pattern = r.get_int("sliding_window_pattern", r.get_int("_sliding_window_pattern", 6));
    gemma2_common(r, c, pattern);
    c.qk_norm = QKNorm::PerHead;
    c.qk_norm_spec = c.norm;
    c.names.block.q_norm = "self_attn.q_norm";
    c.names.block.k_norm = "self_attn.k_norm";
    if (r.get_bool("use_bidirectional_attention", false)) r.fail("use_bidirectional_attention", "unsupported value true");
    // Gemma 3 text weights inside a multimodal checkpoint.
}

inline void family_phi3(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.norm.eps = r.get_num("rms_norm_eps", 1e-5);
    auto& n = c.names.block;
    n.q = n.k = n.v = n.gate = n.up = "";
    n.qkv = "self_attn.qkv_proj";
    n.gate_up = "mlp.gate_up_proj";
}

/// OLMo: non-parametric LayerNorm everywhere, optional clamping of q, k, v.
inline void family_olmo(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.norm = {NormKind::LayerNorm, 1e-5, false, false, false};
    c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
    c.clip_qkv = r.get_num("clip_qkv", 0.0);
    if (r.present("clip_qkv") && c.clip_qkv <= 0) r.fail("clip_qkv", "expected a positive number or null");
}

/// OLMo 2: no pre-norms; RMSNorm after attention and after the MLP; q/k RMSNorm over the whole projection.
inline void family_olmo2(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.norm.eps = r.get_num("rms_norm_eps", 1e-5);
    c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
    c.pre_attn_norm = c.pre_mlp_norm = false;
    c.post_attn_norm = c.post_mlp_norm = true;
    c.qk_norm = QKNorm::Whole;
    c.qk_norm_spec = c.norm;
    auto& n = c.names.block;
    n.ln_attn = n.ln_mlp = "";
    n.ln_attn_post = "post_attention_layernorm";
    n.ln_mlp_post = "post_feedforward_layernorm";
    n.q_norm = "self_attn.q_norm";
    n.k_norm = "self_attn.k_norm";
}

/// StarCoder2: LayerNorm with bias, biased projections, plain GELU MLP (c_fc, c_proj).
inline void family_starcoder2(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.norm = {NormKind::LayerNorm, r.get_num("norm_epsilon", 1e-5), true, true, false};
    c.act = parse_activation(r, "hidden_act", "gelu_pytorch_tanh");
    c.mlp = MlpKind::Plain;
    c.qkv_bias = c.o_bias = c.mlp_bias = r.get_bool("use_bias", true);
    auto& n = c.names.block;
    n.gate = "";
    n.up = "mlp.c_fc";
    n.down = "mlp.c_proj";
}

/// StableLM: LayerNorm with bias, partial rotary, optional per-head q/k LayerNorm and parallel residual.
inline void family_stablelm(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.norm = {NormKind::LayerNorm, r.get_num("layer_norm_eps", 1e-5), true, true, false};
    c.qkv_bias = r.get_bool("use_qkv_bias", false);
    if (r.get_bool("qk_layernorm", false)) {
        c.qk_norm = QKNorm::PerHead;
        c.qk_norm_spec = {NormKind::LayerNorm, c.norm.eps, true, false, false};
        c.names.block.q_norm = "self_attn.q_layernorm.norms.{h}";
        c.names.block.k_norm = "self_attn.k_layernorm.norms.{h}";
    }
    if (r.get_bool("use_parallel_residual", false)) {
        c.parallel = true;
        c.pre_mlp_norm = false;  // the MLP reads input_layernorm's output
        c.names.block.ln_mlp = "";
    }
}

// ---- families II: parallel blocks, fused QKV layouts, learned positions with an offset, ALiBi ----

/// Plain MLP (up, act, down) under these names, biases as `bias` says.
inline void plain_mlp(ModelConfig& c, const char* up, const char* down, bool bias) {
    c.mlp = MlpKind::Plain;
    c.mlp_bias = bias;
    c.names.block.gate = "";
    c.names.block.up = up;
    c.names.block.down = down;
}

/// A fused QKV projection under `name` in `layout`; no separate q/k/v.
inline void fused_qkv(ModelConfig& c, const char* name, QkvLayout layout) {
    auto& n = c.names.block;
    n.q = n.k = n.v = "";
    n.qkv = name;
    c.qkv_layout = layout;
}

/// The MLP reads the block input normalised by ln1, like attention: x + attn(ln1 x) + mlp(ln1 x).
inline void parallel_one_norm(ModelConfig& c) {
    c.parallel = true;
    c.pre_mlp_norm = false;
    c.names.block.ln_mlp = "";
}

/// GPT-NeoX / Pythia: LayerNorm, per-head fused QKV, partial rotary (rotary_pct), parallel residual with
/// two norms (use_parallel_residual, default) or sequential.
inline void family_gpt_neox(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.norm = {NormKind::LayerNorm, r.get_num("layer_norm_eps", 1e-5), true, true, false};
    c.act = parse_activation(r, "hidden_act", "gelu");
    c.qkv_bias = c.o_bias = r.get_bool("attention_bias", true);
    c.parallel = r.get_bool("use_parallel_residual", true);
    fused_qkv(c, "attention.query_key_value", QkvLayout::PerHead);
    plain_mlp(c, "mlp.dense_h_to_4h", "mlp.dense_4h_to_h", true);
    c.names.block.o = "attention.dense";
    c.names.prefixes = {"gpt_neox.", ""};
    c.names.embed = "embed_in";
    c.names.final_norm = "final_layer_norm";
    c.names.lm_head = "embed_out";
    read_rope(r, c);
    if (r.present("rotary_emb_base") && !r.present("rope_theta")) c.rope[0].theta = r.get_num("rotary_emb_base", 10000.0);
    if (r.present("rotary_pct")) c.rope[0].rotary_dim = rotary_features(r, "rotary_pct", c.head_dim, r.get_num("rotary_pct", 1.0));
}

/// GPT-J: parallel block with one norm, q/k/v without bias, interleaved partial rotary (rotary_dim), LM head bias.
inline void family_gptj(const ConfigReader& r, ModelConfig& c) {
    gpt_sizes_and_names(r, c);
    c.positions = PositionKind::Rope;
    c.tie_embeddings = r.get_bool("tie_word_embeddings", false);
    c.lm_head_bias = true;
    parallel_one_norm(c);
    auto& n = c.names.block;
    n.q = "attn.q_proj";
    n.k = "attn.k_proj";
    n.v = "attn.v_proj";
    n.o = "attn.out_proj";
    plain_mlp(c, "mlp.fc_in", "mlp.fc_out", true);
    c.names.prefixes = {"transformer."};
    read_rope(r, c);
    c.rope_pairs = RopePairs::Interleaved;
    if (r.present("rotary_dim")) {
        const int rd = r.get_size("rotary_dim", c.head_dim);
        if (rd % 2 != 0) r.fail("rotary_dim", "expected an even number");
        c.rope[0].rotary_dim = rd;
    }
}

/// Phi-1/1.5/2: LayerNorm, parallel block with one norm, biased q/k/v/dense, partial rotary, optional
/// per-head q/k LayerNorm, LM head bias.
inline void family_phi(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.norm = {NormKind::LayerNorm, r.get_num("layer_norm_eps", 1e-5), true, true, false};
    c.act = parse_activation(r, "hidden_act", "gelu_new");
    c.qkv_bias = c.o_bias = true;
    c.lm_head_bias = true;
    parallel_one_norm(c);
    c.names.block.o = "self_attn.dense";
    plain_mlp(c, "mlp.fc1", "mlp.fc2", true);
    c.names.final_norm = "final_layernorm";
    if (r.get_bool("qk_layernorm", false)) {
        c.qk_norm = QKNorm::PerHead;
        c.qk_norm_spec = c.norm;
        c.names.block.q_norm = "self_attn.q_layernorm";
        c.names.block.k_norm = "self_attn.k_layernorm";
    }
}

/// OPT: pre-LN (do_layer_norm_before), biased q/k/v/out, ReLU fc1/fc2, learned positions offset by 2.
inline void family_opt(const ConfigReader& r, ModelConfig& c) {
    read_sizes(r, c, "ffn_dim");
    c.norm = {NormKind::LayerNorm, 1e-5, true, true, false};
    c.act = parse_activation(r, "activation_function", "relu");
    c.qkv_bias = c.o_bias = r.get_bool("enable_bias", true);
    plain_mlp(c, "fc1", "fc2", c.qkv_bias);
    c.tie_embeddings = r.get_bool("tie_word_embeddings", true);
    if (!r.get_bool("do_layer_norm_before", true)) r.fail("do_layer_norm_before", "unsupported value false (post-LN OPT-350m)");
    if (r.present("word_embed_proj_dim") && r.get_int("word_embed_proj_dim", 0) != c.hidden_size)
        r.fail("word_embed_proj_dim", "differs from hidden_size (project_in/project_out are not supported)");
    if (r.get_bool("_remove_final_layer_norm", false)) r.fail("_remove_final_layer_norm", "unsupported value true");
    if (!r.get_bool("layer_norm_elementwise_affine", true)) r.fail("layer_norm_elementwise_affine", "unsupported value false");
    c.positions = PositionKind::Learned;
    c.pos_offset = 2;
    auto& n = c.names;
    n.prefixes = {"model.decoder.", "decoder."};
    n.pos_embed = "embed_positions";
    n.final_norm = "final_layer_norm";
    n.block.ln_attn = "self_attn_layer_norm";
    n.block.q = "self_attn.q_proj";
    n.block.k = "self_attn.k_proj";
    n.block.v = "self_attn.v_proj";
    n.block.o = "self_attn.out_proj";
    n.block.ln_mlp = "final_layer_norm";
}

/// Falcon: 7B/40B-style (multi-query fused QKV, parallel block with one norm), new_decoder_architecture
/// (grouped fused QKV, ln_attn and ln_mlp), or sequential (parallel_attn false).
inline void family_falcon(const ConfigReader& r, ModelConfig& c) {
    read_sizes(r, c, "ffn_hidden_size", 4 * r.get_size("hidden_size", kMaxWidth));
    c.norm = {NormKind::LayerNorm, r.get_num("layer_norm_epsilon", 1e-5), true, true, false};
    c.act = parse_activation(r, "activation", "gelu");
    c.tie_embeddings = r.get_bool("tie_word_embeddings", true);
    if (r.get_bool("alibi", false)) r.fail("alibi", "unsupported value true (Falcon-RW's ALiBi)");
    const bool bias = r.get_bool("bias", false), fresh = r.get_bool("new_decoder_architecture", false);
    c.qkv_bias = c.o_bias = bias;
    QkvLayout layout = QkvLayout::PerHead;
    if (fresh) {
        c.num_kv_heads = r.get_size("num_kv_heads", kMaxHeads);
        layout = QkvLayout::Grouped;
    } else if (r.get_bool("multi_query", true)) {
        c.num_kv_heads = 1;
        layout = QkvLayout::Concat;
    } else {
        c.num_kv_heads = c.num_heads;
    }
    if (c.num_heads % c.num_kv_heads != 0) r.fail("num_kv_heads", "does not divide num_attention_heads");
    auto& n = c.names;
    n.prefixes = {"transformer."};
    n.embed = "word_embeddings";
    n.layer = "h.{l}.";
    n.final_norm = "ln_f";
    fused_qkv(c, "self_attention.query_key_value", layout);
    n.block.o = "self_attention.dense";
    plain_mlp(c, "mlp.dense_h_to_4h", "mlp.dense_4h_to_h", bias);
    n.block.ln_attn = "input_layernorm";
    n.block.ln_mlp = "post_attention_layernorm";
    const bool parallel = r.get_bool("parallel_attn", true);
    const int lns = r.get_int("num_ln_in_parallel_attn", fresh ? 2 : 1);
    if (fresh && !parallel) r.fail("parallel_attn", "unsupported value false with new_decoder_architecture");
    if (parallel && fresh && lns == 2) {
        c.parallel = true;
        n.block.ln_attn = "ln_attn";
        n.block.ln_mlp = "ln_mlp";
    } else if (parallel) {
        parallel_one_norm(c);
    }
}

/// Sizes under the given keys for multi-head attention (KV = H) with an MLP of width 4 d.
inline void multi_head_sizes(const ConfigReader& r, ModelConfig& c, const char* hidden, const char* layers, const char* heads) {
    c.hidden_size = r.get_size(hidden, kMaxWidth);
    c.num_layers = r.get_size(layers, kMaxLayers);
    c.num_heads = c.num_kv_heads = r.get_size(heads, kMaxHeads);
    c.vocab_size = r.get_size("vocab_size", kMaxVocab);
    if (c.hidden_size % c.num_heads != 0) r.fail(heads, std::string("does not divide ") + hidden);
    c.head_dim = c.hidden_size / c.num_heads;
    c.intermediate_size = 4 * c.hidden_size;
    c.layers.assign(static_cast<std::size_t>(c.num_layers), LayerSpec{});
}

/// BLOOM: LayerNorm after the embedding, per-head fused QKV, ALiBi, GELU (tanh) MLP.
inline void family_bloom(const ConfigReader& r, ModelConfig& c) {
    multi_head_sizes(r, c, r.present("n_embed") ? "n_embed" : "hidden_size", "n_layer", "n_head");
    c.norm = {NormKind::LayerNorm, r.get_num("layer_norm_epsilon", 1e-5), true, true, false};
    c.act = ActivationFn::GeluTanh;
    c.qkv_bias = c.o_bias = true;
    c.tie_embeddings = r.get_bool("tie_word_embeddings", true);
    if (r.get_bool("apply_residual_connection_post_layernorm", false))
        r.fail("apply_residual_connection_post_layernorm", "unsupported value true");
    c.positions = PositionKind::Alibi;
    c.embed_norm = true;
    auto& n = c.names;
    n.prefixes = {"transformer.", ""};
    n.embed = "word_embeddings";
    n.embed_norm = "word_embeddings_layernorm";
    n.layer = "h.{l}.";
    n.final_norm = "ln_f";
    n.block.ln_attn = "input_layernorm";
    n.block.ln_mlp = "post_attention_layernorm";
    fused_qkv(c, "self_attention.query_key_value", QkvLayout::PerHead);
    n.block.o = "self_attention.dense";
    plain_mlp(c, "mlp.dense_h_to_4h", "mlp.dense_4h_to_h", true);
}

/// MPT: LayerNorm (no bias with no_bias), concatenated fused QKV, ALiBi (alibi_bias_max), optional clip_qkv.
inline void family_mpt(const ConfigReader& r, ModelConfig& c) {
    multi_head_sizes(r, c, "d_model", "n_layers", "n_heads");  // 4 d: as transformers' MptMLP, whatever expansion_ratio says
    c.max_positions = r.get_int("max_seq_len", 0);
    const bool bias = !r.get_bool("no_bias", false);
    c.norm = {NormKind::LayerNorm, r.get_num("layer_norm_epsilon", 1e-5), true, bias, false};
    const std::string nt = r.get_str("norm_type", "low_precision_layernorm");
    if (nt != "low_precision_layernorm" && nt != "layernorm") r.fail("norm_type", "unsupported value \"" + nt + "\"");
    c.act = ActivationFn::GeluErf;
    c.qkv_bias = c.o_bias = bias;
    c.tie_embeddings = r.get_bool("tie_word_embeddings", true);
    const nlohmann::json a = r.present("attn_config") ? r.json()["attn_config"] : nlohmann::json::object();
    if (!a.is_object()) r.fail("attn_config", "expected an object");
    auto get = [&](const char* k, const nlohmann::json& dflt) { return a.contains(k) && !a[k].is_null() ? a[k] : dflt; };
    if (!get("alibi", false).is_boolean() || !get("alibi", false).get<bool>())
        r.fail("attn_config.alibi", "unsupported value (massact reads MPT with ALiBi)");
    if (!get("alibi_bias_max", 8).is_number()) r.fail("attn_config.alibi_bias_max", "expected a number");
    c.alibi_max_bias = get("alibi_bias_max", 8).get<double>();
    if (get("qk_ln", false) != false) r.fail("attn_config.qk_ln", "unsupported value true");
    if (get("attn_type", "multihead_attention") != "multihead_attention")
        r.fail("attn_config.attn_type", "unsupported value " + io::json_brief(get("attn_type", "")));
    if (!get("clip_qkv", 0.0).is_number()) r.fail("attn_config.clip_qkv", "expected a number or null");
    c.clip_qkv = get("clip_qkv", 0.0).get<double>();
    if (get("softmax_scale", nlohmann::json()).is_number()) c.attn_scale = get("softmax_scale", 1.0).get<double>();
    c.positions = PositionKind::Alibi;
    auto& n = c.names;
    n.prefixes = {"transformer."};
    n.embed = "wte";
    n.layer = "blocks.{l}.";
    n.final_norm = "norm_f";
    n.block.ln_attn = "norm_1";
    n.block.ln_mlp = "norm_2";
    fused_qkv(c, "attn.Wqkv", QkvLayout::Concat);
    n.block.o = "attn.out_proj";
    plain_mlp(c, "ffn.up_proj", "ffn.down_proj", bias);
}

/// gpt-oss: learned sink logits per head, biased attention, alternating sliding layers, YaRN, and a
/// mixture of experts with a biased router and gpt-oss's clamped SwiGLU on [E, in, out] expert tensors.
inline void family_gpt_oss(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.norm.eps = r.get_num("rms_norm_eps", 1e-5);
    c.qkv_bias = c.o_bias = r.get_bool("attention_bias", true);
    c.sink = SinkKind::Logit;
    set_moe(r, c, "num_local_experts", "mlp.router", "", "", "", "");
    c.router_bias = true;
    c.mlp_bias = true;
    c.swiglu_limit = r.get_num("swiglu_limit", 7.0);
    c.gate_up_layout = GateUpLayout::Interleaved;
    c.names.block.experts_gate_up = "mlp.experts.gate_up_proj";
    c.names.block.experts_down = "mlp.experts.down_proj";
    const auto sliding = read_sliding_layers(r, c.num_layers, [](int l) { return l % 2 == 0; });
    set_windows(c, sliding, window_size(r));
}

/// How a family's sliding windows are read: not at all (llama ignores the key), Mistral's rule
/// (`sliding_window` on every layer or on the sliding ones of `layer_types`), or by the family itself.
enum class WindowRule { None, Uniform, Family };

/// A family: its keys mapped onto the block description. After `map`, parse_config applies the window
/// rule and reads one rotary embedding for all layers unless the family read per-layer-type ones.
struct FamilyEntry {
    const char* model_type;
    void (*map)(const ConfigReader&, ModelConfig&);
    WindowRule windows;
};

// ---- vision transformers: patches in, bidirectional attention, no vocabulary ----

/// What ViT, DINOv2 and CLIP's vision tower share: pre-LN LayerNorm blocks with biased q/k/v/o, a plain
/// MLP, bidirectional attention, [CLS, patches] with a learned position table.
inline void vision_common(const ConfigReader& r, ModelConfig& c, int mlp_width, const char* act) {
    c.hidden_size = r.get_size("hidden_size", kMaxWidth);
    c.num_layers = r.get_size("num_hidden_layers", kMaxLayers);
    c.num_heads = c.num_kv_heads = r.get_size("num_attention_heads", kMaxHeads);
    if (c.hidden_size % c.num_heads != 0)
        r.fail("num_attention_heads", std::to_string(c.num_heads) + " does not divide hidden_size " + std::to_string(c.hidden_size));
    c.head_dim = c.hidden_size / c.num_heads;
    c.intermediate_size = mlp_width;
    c.vocab_size = 0;
    c.norm = {NormKind::LayerNorm, r.get_num("layer_norm_eps", 1e-12), true, true, false};
    c.act = parse_activation(r, "hidden_act", act);
    c.qkv_bias = r.get_bool("qkv_bias", true);
    c.o_bias = true;
    plain_mlp(c, "", "", true);
    c.positions = PositionKind::Patches;
    c.causal = false;
    c.input = InputStage::Patches;
    c.output = OutputStage::Pooled;
    c.layers.assign(static_cast<std::size_t>(c.num_layers), LayerSpec{});
    auto& v = c.vision;
    v.image_size = r.get_size("image_size", kMaxWidth);
    v.patch_size = r.get_size("patch_size", kMaxWidth);
    v.channels = r.get_size("num_channels", 3, 64);
    if (v.patch_size > v.image_size) r.fail("patch_size", "larger than image_size " + std::to_string(v.image_size));
    const std::int64_t grid = v.image_size / v.patch_size;
    if (grid * grid > kMaxPatches)
        r.fail("image_size", std::to_string(v.image_size) + " / patch_size " + std::to_string(v.patch_size) + " gives " +
                                 std::to_string(grid * grid) + " patches (at most " + std::to_string(kMaxPatches) + ")");
    c.max_positions = static_cast<int>(grid * grid + 1);
}

/// The tensor names ViT and DINOv2 share: embeddings, encoder.layer.{l}.attention.*, the final layernorm.
inline void vit_names(ModelNames& n) {
    n.embed = "embeddings.patch_embeddings.projection";
    n.cls_token = "embeddings.cls_token";
    n.pos_table = "embeddings.position_embeddings";
    n.layer = "encoder.layer.{l}.";
    n.final_norm = "layernorm";
    n.block.q = "attention.attention.query";
    n.block.k = "attention.attention.key";
    n.block.v = "attention.attention.value";
    n.block.o = "attention.output.dense";
}

/// ViT (ViTModel, and the "vit." body of ViTForImageClassification): final LayerNorm, tanh pooler.
inline void family_vit(const ConfigReader& r, ModelConfig& c) {
    vision_common(r, c, r.get_size("intermediate_size", kMaxWidth), "gelu");
    c.vision.pooler_dense = true;
    auto& n = c.names;
    n.prefixes = {"", "vit."};
    vit_names(n);
    n.pooler = "pooler.dense";
    auto& b = n.block;
    b.ln_attn = "layernorm_before";
    b.ln_mlp = "layernorm_after";
    b.up = "intermediate.dense";
    b.down = "output.dense";
}

/// DINOv2: layer scale on both branches, MLP width hidden_size * mlp_ratio; the pooled feature is the
/// normalised CLS row. With registers: num_register_tokens after CLS.
inline void family_dinov2(const ConfigReader& r, ModelConfig& c) {
    const int d = r.get_size("hidden_size", kMaxWidth);
    const double ratio = r.get_num("mlp_ratio", 4.0);
    if (!(ratio > 0) || ratio > 64) r.fail("mlp_ratio", "expected a number in (0, 64], found " + std::to_string(ratio));
    if (r.get_bool("use_swiglu_ffn", false)) r.fail("use_swiglu_ffn", "unsupported value true (the SwiGLU MLP of DINOv2-giant)");
    vision_common(r, c, static_cast<int>(d * ratio), "gelu");
    c.norm.eps = r.get_num("layer_norm_eps", 1e-6);
    c.vision.registers = r.get_int("num_register_tokens", 0) * (c.model_type == "dinov2_with_registers" ? 1 : 0);
    auto& n = c.names;
    n.prefixes = {"", "dinov2.", "dinov2_with_registers."};
    vit_names(n);
    if (c.vision.registers > 0) n.register_tokens = "embeddings.register_tokens";
    auto& b = n.block;
    b.ln_attn = "norm1";
    b.ls_attn = "layer_scale1.lambda1";
    b.ln_mlp = "norm2";
    b.up = "mlp.fc1";
    b.down = "mlp.fc2";
    b.ls_mlp = "layer_scale2.lambda1";
}

/// The tensor names CLIP's and SigLIP's vision towers share: the position table, encoder.layers.{l} with layer_norm1,
/// self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1 / fc2, and post_layernorm.
inline void clip_encoder_names(ModelNames& n) {
    n.pos_table = "embeddings.position_embedding.weight";
    n.layer = "encoder.layers.{l}.";
    n.final_norm = "post_layernorm";
    auto& b = n.block;
    b.ln_attn = "layer_norm1";
    b.q = "self_attn.q_proj";
    b.k = "self_attn.k_proj";
    b.v = "self_attn.v_proj";
    b.o = "self_attn.out_proj";
    b.ln_mlp = "layer_norm2";
    b.up = "mlp.fc1";
    b.down = "mlp.fc2";
}

/// CLIP's vision tower: pre_layrnorm after the embedding, quick_gelu, no patch bias; post_layernorm
/// (ln_final here) acts on the pooled CLS row in transformers, so last_hidden_state is the last block's.
inline void family_clip_vision(const ConfigReader& r, ModelConfig& c) {
    vision_common(r, c, r.get_size("intermediate_size", kMaxWidth), "quick_gelu");
    c.norm.eps = r.get_num("layer_norm_eps", 1e-5);
    c.vision.patch_bias = false;
    c.vision.last_is_normalized = false;
    c.embed_norm = true;
    auto& n = c.names;
    n.prefixes = {"", "vision_model."};
    n.embed = "embeddings.patch_embedding";
    n.embed_norm = "pre_layrnorm";
    n.cls_token = "embeddings.class_embedding";
    clip_encoder_names(n);
}

/// SigLIP's vision tower (siglip_vision_model; the vision_config of siglip / siglip2-style configs): CLIP's block without
/// CLS, pre-norm or patch-bias quirks: the sequence is the patches with their position table, post_layernorm on every
/// token (last_hidden_state), and the pooled feature from the attention-pooling head `head.` (vision_use_head).
inline void family_siglip_vision(const ConfigReader& r, ModelConfig& c) {
    vision_common(r, c, r.get_size("intermediate_size", kMaxWidth), "gelu_pytorch_tanh");
    c.norm.eps = r.get_num("layer_norm_eps", 1e-6);
    c.vision.cls = false;
    c.vision.map_head = r.get_bool("vision_use_head", true);
    c.max_positions -= 1;  // (no CLS row in the position table)
    auto& n = c.names;
    n.prefixes = {"", "vision_model."};
    n.embed = "embeddings.patch_embedding";
    n.map_head = "head.";
    clip_encoder_names(n);
}

/// DINOv3 (dinov3_vit): DINOv2's block and layer scales with CLS and registers, no position table: a 2-D RoPE over the
/// patch centres (VisionSpec::rope_2d, rope_theta) on q and k of the patches; q/k/v/o biases as query_bias, key_bias,
/// value_bias, proj_bias say; the MLP up_proj / down_proj (use_gated_mlp: SwiGLU gate_proj too); pooled = normalised CLS.
inline void family_dinov3(const ConfigReader& r, ModelConfig& c) {
    vision_common(r, c, r.get_size("intermediate_size", kMaxWidth), "gelu");
    c.norm.eps = r.get_num("layer_norm_eps", 1e-5);
    if (c.head_dim % 4 != 0) r.fail("num_attention_heads", "gives a head width " + std::to_string(c.head_dim) + " not divisible by 4 (the 2-D RoPE)");
    c.q_bias = r.get_bool("query_bias", true);
    c.k_bias = r.get_bool("key_bias", false);
    c.v_bias = r.get_bool("value_bias", true);
    c.qkv_bias = c.q_bias || c.k_bias || c.v_bias;
    c.o_bias = r.get_bool("proj_bias", true);
    c.mlp_bias = r.get_bool("mlp_bias", true);
    if (r.get_bool("use_gated_mlp", false)) c.mlp = MlpKind::Gated;
    c.vision.registers = r.get_int("num_register_tokens", 0);
    if (c.vision.registers < 0 || c.vision.registers > 1024) r.fail("num_register_tokens", "expected 0..1024");
    c.vision.rope_2d = true;
    c.positions = PositionKind::Rope;
    RopeSpec rope;
    rope.theta = r.get_num("rope_theta", 100.0);
    rope.rotary_dim = c.head_dim;
    c.rope = {rope};
    auto& n = c.names;
    n.prefixes = {"", "dinov3_vit."};
    n.embed = "embeddings.patch_embeddings";
    n.cls_token = "embeddings.cls_token";
    if (c.vision.registers > 0) n.register_tokens = "embeddings.register_tokens";
    n.pos_table.clear();
    n.layer = "layer.{l}.";
    n.final_norm = "norm";
    auto& b = n.block;
    b.ln_attn = "norm1";
    b.q = "attention.q_proj";
    b.k = "attention.k_proj";
    b.v = "attention.v_proj";
    b.o = "attention.o_proj";
    b.ls_attn = "layer_scale1.lambda1";
    b.ln_mlp = "norm2";
    b.gate = c.mlp == MlpKind::Gated ? "mlp.gate_proj" : "";
    b.up = "mlp.up_proj";
    b.down = "mlp.down_proj";
    b.ls_mlp = "layer_scale2.lambda1";
}

// ---- families III: the 2025-26 decoders ----------------------------------------------------------

/// A list of L flags (0 / 1 or true / false) under `key`, or dflt(l) when the key is absent.
inline std::vector<bool> read_layer_flags(const ConfigReader& r, const std::string& key, int L, const std::function<bool(int)>& dflt) {
    std::vector<bool> out(static_cast<std::size_t>(L));
    if (!r.present(key)) {
        for (int l = 0; l < L; ++l) out[static_cast<std::size_t>(l)] = dflt(l);
        return out;
    }
    const auto& v = r.json()[key];
    if (!v.is_array() || static_cast<int>(v.size()) != L) r.fail(key, "expected a list of " + std::to_string(L) + " flags (0 or 1)");
    for (int l = 0; l < L; ++l) {
        const auto& x = v[static_cast<std::size_t>(l)];
        if (x.is_boolean()) out[static_cast<std::size_t>(l)] = x.get<bool>();
        else if (x.is_number_integer() && (x.get<long long>() == 0 || x.get<long long>() == 1)) out[static_cast<std::size_t>(l)] = x.get<long long>() == 1;
        else r.fail(key, "entry " + std::to_string(l) + " is " + io::json_brief(x) + " (expected 0 or 1)");
    }
    return out;
}

/// Sliding layers from layer_types, else every layer but each `pattern`-th (config key `pattern_key`, default dflt).
inline std::vector<bool> patterned_sliding(const ConfigReader& r, const ModelConfig& c, const char* pattern_key, int dflt) {
    const int pattern = r.get_int(pattern_key, dflt);
    return read_sliding_layers(r, c.num_layers, [&](int l) { return (l + 1) % pattern != 0; });
}

/// Seed-OSS: the Llama block with biases on q, k, v (attention_bias) and on o (attention_out_bias).
inline void family_seed_oss(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.qkv_bias = r.get_bool("attention_bias", true);
    c.o_bias = r.get_bool("attention_out_bias", false);
    c.mlp_bias = r.get_bool("mlp_bias", false);
}

/// SmolLM3: Llama with NoPE layers: no_rope_layers[l] = 0 (default: every no_rope_layer_interval-th layer) rotates
/// nothing; sliding windows only where use_sliding_window and only on NoPE layers unless layer_types says.
inline void family_smollm3(const ConfigReader& r, ModelConfig& c) {
    family_llama(r, c);
    const int every = r.get_int("no_rope_layer_interval", 4);
    const auto rope = read_layer_flags(r, "no_rope_layers", c.num_layers, [&](int l) { return (l + 1) % every != 0; });
    for (int l = 0; l < c.num_layers; ++l) c.layers[static_cast<std::size_t>(l)].nope = !rope[static_cast<std::size_t>(l)];
    const bool use = r.get_bool("use_sliding_window", false) && window_size(r) > 0;
    const auto sliding = read_sliding_layers(r, c.num_layers, [&](int l) { return use && !rope[static_cast<std::size_t>(l)]; });
    set_windows(c, use ? sliding : std::vector<bool>(static_cast<std::size_t>(c.num_layers), false), use ? window_size(r) : 0);
}

/// Granite: Llama with multipliers on the embedding, the attention scores (instead of 1/sqrt(hd)), the attention and
/// MLP outputs before the residual add, and the logits (divided by logits_scaling).
inline void family_granite(const ConfigReader& r, ModelConfig& c) {
    family_llama(r, c);
    c.embed_scale = r.get_num("embedding_multiplier", 1.0);
    c.attn_scale = r.get_num("attention_multiplier", 1.0);
    c.residual_scale = r.get_num("residual_multiplier", 1.0);
    const double logits_scaling = r.get_num("logits_scaling", 1.0);
    if (!(logits_scaling > 0)) r.fail("logits_scaling", "expected a positive number");
    c.logit_scale = 1.0 / logits_scaling;
}

/// GLM-4: sandwich norms (post_self_attn_layernorm after attention, post_mlp_layernorm after the MLP), fused
/// gate_up_proj, biased q/k/v, RoPE on interleaved pairs of the first partial_rotary_factor of each head.
inline void family_glm4(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.qkv_bias = r.get_bool("attention_bias", true);
    c.post_attn_norm = c.post_mlp_norm = true;
    c.rope_pairs = RopePairs::Interleaved;
    auto& n = c.names.block;
    n.ln_attn_post = "post_self_attn_layernorm";
    n.ln_mlp = "post_attention_layernorm";
    n.ln_mlp_post = "post_mlp_layernorm";
    n.gate = n.up = "";
    n.gate_up = "mlp.gate_up_proj";
}

/// OLMo 3: OLMo 2's block with sliding-window layers (default: all but every 4th) and a RoPE per layer type.
inline void family_olmo3(const ConfigReader& r, ModelConfig& c) {
    family_olmo2(r, c);
    const auto sliding = read_sliding_layers(r, c.num_layers, [](int l) { return (l + 1) % 4 != 0; });
    set_windows(c, sliding, window_size(r));
    read_rope(r, c, sliding);
}

/// EXAONE 4: post-norms only (as OLMo 2), per-head q/k RMSNorm; with a sliding window, the sliding layers use RoPE and
/// the global layers none (NoPE).
inline void family_exaone4(const ConfigReader& r, ModelConfig& c) {
    family_olmo2(r, c);
    c.qk_norm = QKNorm::PerHead;
    if (window_size(r) > 0) {
        if (r.present("sliding_window_pattern") && !r.json()["sliding_window_pattern"].is_number_integer() && !r.present("layer_types"))
            r.fail("sliding_window_pattern", "expected an integer (or layer_types), found " + io::json_brief(r.json()["sliding_window_pattern"]));
        const auto sliding = patterned_sliding(r, c, "sliding_window_pattern", 4);
        set_windows(c, sliding, window_size(r));
        for (int l = 0; l < c.num_layers; ++l) c.layers[static_cast<std::size_t>(l)].nope = !sliding[static_cast<std::size_t>(l)];
    }
}

/// VaultGemma: Gemma 2's block without the post-norms (input_layernorm and pre_feedforward_layernorm only).
inline void family_vaultgemma(const ConfigReader& r, ModelConfig& c) {
    gemma2_common(r, c, 2);
    c.post_attn_norm = c.post_mlp_norm = false;
    c.names.block.ln_attn_post = c.names.block.ln_mlp_post = "";
}

/// Nemotron: LayerNorm with scale 1 + w and a bias, squared-ReLU MLP (up, down), partial rotary (rotate-half).
inline void family_nemotron(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.norm = {NormKind::LayerNorm, r.get_num("norm_eps", 1e-5), true, true, true};
    c.act = parse_activation(r, "hidden_act", "relu2");
    c.mlp = MlpKind::Plain;
    c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
    c.mlp_bias = r.get_bool("mlp_bias", false);
    c.names.block.gate = "";
}

/// Cohere (Command R): a parallel block x + attn(ln x) + mlp(ln x) with one LayerNorm without bias, RoPE on interleaved
/// pairs, optional per-head q/k LayerNorms ([heads, hd] weights), logits multiplied by logit_scale, tied head.
inline void family_cohere(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.norm = {NormKind::LayerNorm, r.get_num("layer_norm_eps", 1e-5), true, false, false};
    c.parallel = true;
    c.pre_mlp_norm = false;
    c.names.block.ln_mlp = "";
    c.rope_pairs = RopePairs::Interleaved;
    c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
    c.logit_scale = r.get_num("logit_scale", 0.0625);
    c.tie_embeddings = r.get_bool("tie_word_embeddings", true);
    if (r.get_bool("use_qk_norm", false)) {
        c.qk_norm = QKNorm::PerHead;
        c.qk_norm_spec = c.norm;
        c.qk_norm_rows = true;
        c.names.block.q_norm = "self_attn.q_norm";
        c.names.block.k_norm = "self_attn.k_norm";
    }
}

/// Cohere 2 (Command R7B, A): Cohere's block with sliding layers (default: all but every sliding_window_pattern-th)
/// that use RoPE and global layers that use none.
inline void family_cohere2(const ConfigReader& r, ModelConfig& c) {
    family_cohere(r, c);
    const auto sliding = patterned_sliding(r, c, "sliding_window_pattern", 4);
    set_windows(c, sliding, window_size(r));
    for (int l = 0; l < c.num_layers; ++l) c.layers[static_cast<std::size_t>(l)].nope = !sliding[static_cast<std::size_t>(l)];
}

/// Qwen2-MoE: qwen2's attention (q/k/v biases), routed experts mlp.experts.{e} (softmax top-k, renormalised when
/// norm_topk_prob) plus a shared expert behind a sigmoid gate on every token.
/// Qwen2-MoE's and Qwen3-Next's MLP on every layer: experts mlp.experts.{e} of moe_intermediate_size behind router
/// mlp.gate (softmax top-k, renormalised when norm_topk_prob), and a shared expert times sigmoid(mlp.shared_expert_gate x).
inline void qwen_moe_with_shared_expert(const ConfigReader& r, ModelConfig& c, bool norm_topk_default) {
    const std::vector<bool> dense = qwen_dense_layers(r, c);
    if (std::all_of(dense.begin(), dense.end(), [](bool b) { return b; })) return;  // (no experts anywhere)
    const int width = c.intermediate_size;
    c.intermediate_size = r.get_size("moe_intermediate_size", kMaxWidth);
    set_moe(r, c, "num_experts", "mlp.gate", "mlp.experts.{e}.", "gate_proj", "up_proj", "down_proj");
    c.norm_topk = r.get_bool("norm_topk_prob", norm_topk_default);
    c.shared_expert_size = r.get_size("shared_expert_intermediate_size", 0, kMaxWidth);
    c.shared_expert_gated = c.shared_expert_size > 0;
    c.names.block.shared_expert = "mlp.shared_expert.";
    c.names.block.shared_expert_gate = "mlp.shared_expert_gate";
    qwen_dense_mlp(c, dense, width);
}

inline void family_qwen2_moe(const ConfigReader& r, ModelConfig& c) {
    family_qwen2(r, c);
    c.qkv_bias = r.get_bool("qkv_bias", true);
    qwen_moe_with_shared_expert(r, c, false);
}

/// OLMoE: OLMo 2's q/k RMSNorm over the whole projection on a pre-norm Llama block, optional clip_qkv, and experts
/// mlp.experts.{e} with softmax top-k routing (renormalised when norm_topk_prob).
inline void family_olmoe(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.norm.eps = r.get_num("rms_norm_eps", 1e-5);
    c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
    c.clip_qkv = r.get_num("clip_qkv", 0.0);
    if (r.present("clip_qkv") && c.clip_qkv <= 0) r.fail("clip_qkv", "expected a positive number or null");
    c.qk_norm = QKNorm::Whole;
    c.qk_norm_spec = c.norm;
    c.names.block.q_norm = "self_attn.q_norm";
    c.names.block.k_norm = "self_attn.k_norm";
    set_moe(r, c, "num_experts", "mlp.gate", "mlp.experts.{e}.", "gate_proj", "up_proj", "down_proj");
    c.norm_topk = r.get_bool("norm_topk_prob", false);
}

/// GraniteMoE: Granite's multipliers, experts as two [E, out, in] tensors (block_sparse_moe.input_linear [gate; up]
/// and output_linear), router block_sparse_moe.router.layer; softmax over the top-k logits (= renormalised top-k).
inline void family_granitemoe(const ConfigReader& r, ModelConfig& c) {
    family_granite(r, c);
    set_moe(r, c, "num_local_experts", "block_sparse_moe.router.layer", "", "", "", "");
    c.norm_topk = true;
    c.experts_out_in = true;
    c.names.block.experts_gate_up = "block_sparse_moe.input_linear";
    c.names.block.experts_down = "block_sparse_moe.output_linear";
}

/// Apertus: per-head q/k RMSNorm, a plain MLP (up, down) with xIELU (four learned scalars per layer,
/// mlp.act_fn.alpha_p / alpha_n / beta / eps), norms named attention_layernorm and feedforward_layernorm.
inline void family_apertus(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.norm.eps = r.get_num("rms_norm_eps", 1e-5);
    c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
    c.mlp_bias = r.get_bool("mlp_bias", false);
    c.act = parse_activation(r, "hidden_act", "xielu");
    c.mlp = MlpKind::Plain;
    c.qk_norm = QKNorm::PerHead;
    c.qk_norm_spec = c.norm;
    auto& n = c.names.block;
    n.ln_attn = "attention_layernorm";
    n.ln_mlp = "feedforward_layernorm";
    n.q_norm = "self_attn.q_norm";
    n.k_norm = "self_attn.k_norm";
    n.gate = "";
    n.act_params = "mlp.act_fn";
}

/// BitNet (b1.58, as transformers runs it unquantized): Llama with an RMSNorm on the attention output before o_proj
/// (self_attn.attn_sub_norm) and on the gated hidden before down_proj (mlp.ffn_sub_norm), squared-ReLU gate.
inline void family_bitnet(const ConfigReader& r, ModelConfig& c) {
    family_llama(r, c);
    c.norm.eps = r.get_num("rms_norm_eps", 1e-5);
    c.act = parse_activation(r, "hidden_act", "relu2");
    c.attn_sub_norm = c.mlp_sub_norm = true;
    c.names.block.attn_sub_norm = "self_attn.attn_sub_norm";
    c.names.block.mlp_sub_norm = "mlp.ffn_sub_norm";
    if (r.present("quantization_config"))
        r.fail("quantization_config", "packed ternary weights are not read (massact runs BitNet checkpoints stored in float)");
}

/// "attention_softmax" (softmax, softpick, sigmoid) and "attention_sigmoid_bias": the function that turns scores into the
/// weights applied to the values (Zuhri et al. 2025; Gu et al. 2025), for any family. softpick and sigmoid take no sink slot.
inline void read_attention_fn(const ConfigReader& r, ModelConfig& c) {
    const std::string fn = r.get_str("attention_softmax", "softmax");
    if (fn == "softpick") c.attention_fn = kernels::AttentionFn::Softpick;
    else if (fn == "sigmoid") c.attention_fn = kernels::AttentionFn::Sigmoid;
    else if (fn != "softmax") r.fail("attention_softmax", "unsupported value \"" + fn + "\" (expected softmax, softpick or sigmoid)");
    if (r.present("attention_sigmoid_bias")) {
        if (c.attention_fn != kernels::AttentionFn::Sigmoid)
            r.fail("attention_sigmoid_bias", "is set, but attention_softmax is \"" + fn + "\" (the bias belongs to sigmoid attention)");
        c.attention_sigmoid_bias = r.get_num("attention_sigmoid_bias", 0.0);
        if (!std::isfinite(c.attention_sigmoid_bias)) r.fail("attention_sigmoid_bias", "is not a finite number");
    }
    if (c.attention_fn != kernels::AttentionFn::Softmax && c.sink != SinkKind::None)
        r.fail("attention_softmax", "\"" + fn + "\" with an attention sink slot (attention_sink or learned sinks): the slot is a softmax variant");
}

/// Keys that change the arithmetic where a checkpoint sets them and that no family here implements: refused with their
/// name unless at the value that changes nothing (an ignored key would silently compute another model).
inline void refuse_unimplemented(const ConfigReader& r, const ModelConfig& c) {
    if (r.get_bool("attn_output_gate", false) && !c.attn_output_gate)
        r.fail("attn_output_gate", "unsupported value true for " + c.model_type + " (gated attention is read for qwen3_next)");
}

/// Gated DeltaNet layers where layer_types says "linear_attention" (the others "full_attention"); their shape from
/// linear_num_key_heads / linear_num_value_heads / linear_key_head_dim / linear_value_head_dim / linear_conv_kernel_dim,
/// weights under linear_attn. (DeltaNetSpec; `grouped`: Qwen3-Next's fused in_proj_qkvz / in_proj_ba).
inline void read_deltanet_layers(const ConfigReader& r, ModelConfig& c, bool grouped) {
    if (!r.present("layer_types")) r.fail("layer_types", "missing (it says which layers are linear_attention and which full_attention)");
    const std::vector<int> types = read_layer_types(r, c.num_layers, {"full_attention", "linear_attention"});
    for (int l = 0; l < c.num_layers; ++l)
        if (types[static_cast<std::size_t>(l)] == 1) c.layers[static_cast<std::size_t>(l)].mixer = Mixer::GatedDeltaNet;
    DeltaNetSpec& s = c.deltanet;
    s.k_heads = r.get_size("linear_num_key_heads", 16, kMaxHeads);
    s.v_heads = r.get_size("linear_num_value_heads", 32, kMaxHeads);
    s.k_dim = r.get_size("linear_key_head_dim", 128, kMaxHeadDim);
    s.v_dim = r.get_size("linear_value_head_dim", 128, kMaxHeadDim);
    s.conv_kernel = r.get_size("linear_conv_kernel_dim", 4, 64);
    s.grouped = grouped;
    s.norm_eps = c.norm.eps;
    if (std::int64_t(s.k_dim) * s.v_dim > kMaxStatePerHead)  // (the cache holds k_dim x v_dim floats per value head)
        r.fail("linear_value_head_dim", "gives a recurrent state of " + std::to_string(std::int64_t(s.k_dim) * s.v_dim) +
                                            " floats per head (linear_key_head_dim x linear_value_head_dim, at most " +
                                            std::to_string(kMaxStatePerHead) + ")");
    if (s.v_heads % s.k_heads != 0)
        r.fail("linear_num_value_heads", std::to_string(s.v_heads) + " is not a multiple of linear_num_key_heads " + std::to_string(s.k_heads));
    if (r.get_str("hidden_act", "silu") != "silu")
        r.fail("hidden_act", "unsupported value for the Gated DeltaNet convolution (expected silu)");
    c.names.block.linear_attn = "linear_attn.";
}

/// Qwen3-Next: gated attention (q_proj gives [q_h; g_h] per head; output x sigmoid(g)) interleaved with Gated DeltaNet
/// layers (layer_types), zero-centred RMSNorms (scale 1 + w, q/k norms per head too; the DeltaNet output norm's scale
/// is w), partial rotary; Qwen2-MoE's experts with a gated shared expert, except on the mlp_only_layers (a dense MLP of
/// intermediate_size).
inline void family_qwen3_next(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.norm.one_plus = true;
    c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
    c.qk_norm = QKNorm::PerHead;
    c.qk_norm_spec = c.norm;
    c.names.block.q_norm = "self_attn.q_norm";
    c.names.block.k_norm = "self_attn.k_norm";
    c.attn_output_gate = true;
    read_deltanet_layers(r, c, c.model_type == "qwen3_next");
    if (c.model_type != "qwen3_next") return;  // (Qwen3.5: a dense MLP everywhere)
    qwen_moe_with_shared_expert(r, c, true);
}

/// Mamba-2: every block is x + mixer(rmsnorm(x)) (MambaSpec) under backbone.layers.{l}.{norm, mixer}, no MLP, no
/// positions; embeddings backbone.embeddings, final norm backbone.norm_f. num_heads * head_dim must equal expand *
/// hidden_size; time_step_limit [lo, hi] clamps dt (transformers writes an infinite hi as {"__float__": "Infinity"}).
inline void family_mamba2(const ConfigReader& r, ModelConfig& c) {
    c.hidden_size = r.get_size("hidden_size", kMaxWidth);
    c.num_layers = r.get_size("num_hidden_layers", kMaxLayers);
    c.vocab_size = r.get_size("vocab_size", kMaxVocab);
    c.layers.assign(static_cast<std::size_t>(c.num_layers), LayerSpec{});
    for (auto& l : c.layers) l.mixer = Mixer::Mamba2;
    if (r.present("layer_types")) read_layer_types(r, c.num_layers, {"mamba"});  // (Mamba-2 blocks only)
    MambaSpec& m = c.mamba;
    m.heads = r.get_size("num_heads", 128, kMaxHeads);
    m.head_dim = r.get_size("head_dim", 64, kMaxHeadDim);
    m.groups = r.get_size("n_groups", 8, kMaxHeads);
    m.state = r.get_size("state_size", 128, kMaxHeadDim);
    m.conv_kernel = r.get_size("conv_kernel", 4, 64);
    m.conv_bias = r.get_bool("use_conv_bias", true);
    m.proj_bias = r.get_bool("use_bias", false);
    m.norm_eps = r.get_num("layer_norm_epsilon", 1e-5);
    const double expand = r.get_num("expand", 2.0);
    if (std::int64_t(m.head_dim) * m.state > kMaxStatePerHead)
        r.fail("state_size", "gives a state of " + std::to_string(std::int64_t(m.head_dim) * m.state) + " floats per head (head_dim x state_size, at most " +
                                 std::to_string(kMaxStatePerHead) + ")");
    if (m.heads % m.groups != 0) r.fail("n_groups", std::to_string(m.groups) + " does not divide num_heads " + std::to_string(m.heads));
    if (std::abs(expand * c.hidden_size - static_cast<double>(m.inner())) > 0.5)
        r.fail("num_heads", "num_heads x head_dim = " + std::to_string(m.inner()) + " differs from expand x hidden_size");
    if (r.present("time_step_limit")) {
        const auto& lim = r.json()["time_step_limit"];
        auto bound = [&](const nlohmann::json& v) {
            if (v.is_number()) return v.get<double>();
            if (v.is_object() && v.contains("__float__") && v["__float__"] == "Infinity") return 0.0;  // (no upper limit)
            r.fail("time_step_limit", "expected [low, high] numbers, found " + io::json_brief(lim));
            return 0.0;
        };
        if (!lim.is_array() || lim.size() != 2) r.fail("time_step_limit", "expected [low, high], found " + io::json_brief(lim));
        m.dt_min = bound(lim[0]);
        m.dt_max = bound(lim[1]);
        if (m.dt_min < 0 || (m.dt_max > 0 && m.dt_max < m.dt_min)) r.fail("time_step_limit", "expected 0 <= low <= high, found " + io::json_brief(lim));
    }
    if (r.get_str("hidden_act", "silu") != "silu") r.fail("hidden_act", "unsupported value for the Mamba-2 convolution (expected silu)");
    c.num_heads = c.num_kv_heads = m.heads;  // (no attention: the attention shapes name the SSM heads)
    c.head_dim = m.head_dim;
    c.norm = {NormKind::RMSNorm, m.norm_eps, true, false, false};
    c.positions = PositionKind::None;
    c.has_mlp = false;
    c.pre_mlp_norm = false;
    c.tie_embeddings = r.get_bool("tie_word_embeddings", true);
    c.names.prefixes = {"backbone."};
    c.names.embed = "embeddings";
    c.names.final_norm = "norm_f";
    c.names.block = BlockNames{};
    c.names.block.ln_attn = "norm";
    c.names.block.ssm = "mixer.";
}

/// DeepSeek-V2 / V3: multi-head latent attention (MlaSpec: q_lora_rank, kv_lora_rank, qk_nope_head_dim,
/// qk_rope_head_dim, v_head_dim; scores scaled by 1/sqrt(qk_nope + qk_rope), for V3 times YaRN's mscale(mscale_all_dim)^2)
/// on a Llama block; layers below first_k_dense_replace have a dense MLP of intermediate_size, the others
/// n_routed_experts experts of moe_intermediate_size plus n_shared_experts shared ones (one MLP, always added). V2
/// routes by softmax, greedy or group_limited_greedy (groups scored by their best expert), its rotary pairs interleaved;
/// V3 by sigmoid with e_score_correction_bias for the choice, groups scored by their two best, renormalised when
/// norm_topk_prob, pairs interleaved when rope_interleave. Both multiply the weights by routed_scaling_factor.
inline void deepseek_common(const ConfigReader& r, ModelConfig& c, bool v3) {
    llama_block(r, c);
    c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
    if (c.qkv_bias) r.fail("attention_bias", "unsupported value true (massact reads DeepSeek's attention without biases)");
    MlaSpec& m = c.mla;
    m.q_lora_rank = r.get_size("q_lora_rank", 0, kMaxWidth);
    m.kv_lora_rank = r.get_size("kv_lora_rank", kMaxWidth);
    m.qk_nope = r.get_size("qk_nope_head_dim", kMaxHeadDim);
    m.qk_rope = r.get_size("qk_rope_head_dim", kMaxHeadDim);
    m.v_head_dim = r.get_size("v_head_dim", kMaxHeadDim);
    if (m.qk_rope % 2 != 0) r.fail("qk_rope_head_dim", "expected an even number (rotary pairs)");
    if (r.present("head_dim") && r.get_int("head_dim") != m.qk_rope)
        r.fail("head_dim", "value " + std::to_string(r.get_int("head_dim")) + " differs from qk_rope_head_dim " + std::to_string(m.qk_rope) +
                               " (transformers' rotary embedding reads head_dim)");
    if (c.num_kv_heads != c.num_heads) r.fail("num_key_value_heads", "must equal num_attention_heads (MLA gives every head its key)");
    c.head_dim = std::max(m.qk(), m.v_head_dim);
    read_rope(r, c);
    for (RopeSpec& s : c.rope) s.rotary_dim = m.qk_rope;
    c.rope_pairs = !v3 || r.get_bool("rope_interleave", true) ? RopePairs::Interleaved : RopePairs::Half;
    c.attn_scale = 1.0 / std::sqrt(static_cast<double>(m.qk()));
    const RopeSpec& rs = c.rope.front();
    if (v3 && rs.scaling == RopeScaling::Yarn && rs.mscale_all_dim != 0 && rs.factor > 1) {
        const double ms = 0.1 * rs.mscale_all_dim * std::log(rs.factor) + 1.0;
        c.attn_scale *= ms * ms;
    }
    auto& n = c.names.block;
    n.q = "self_attn.q_proj";
    n.q_a = "self_attn.q_a_proj";
    n.q_a_norm = "self_attn.q_a_layernorm";
    n.q_b = "self_attn.q_b_proj";
    n.kv_a = "self_attn.kv_a_proj_with_mqa";
    n.kv_a_norm = "self_attn.kv_a_layernorm";
    n.kv_b = "self_attn.kv_b_proj";
    n.k = n.v = "";
    // experts
    c.dense_intermediate_size = c.intermediate_size;
    c.intermediate_size = r.get_size("moe_intermediate_size", kMaxWidth);
    set_moe(r, c, "n_routed_experts", "mlp.gate", "mlp.experts.{e}.", "gate_proj", "up_proj", "down_proj");
    n.gate = "mlp.gate_proj", n.up = "mlp.up_proj", n.down = "mlp.down_proj";  // (the dense layers)
    const int dense = r.present("first_k_dense_replace") && r.json()["first_k_dense_replace"] == 0 ? 0 : r.get_int("first_k_dense_replace", 0);
    for (int l = 0; l < std::min(dense, c.num_layers); ++l) c.layers[static_cast<std::size_t>(l)].dense_mlp = true;
    if (r.present("n_shared_experts") && !(r.json()["n_shared_experts"] == 0)) {
        c.shared_expert_size = r.get_size("n_shared_experts", kMaxExperts) * c.intermediate_size;
        if (c.shared_expert_size > kMaxWidth) r.fail("n_shared_experts", "gives an implausibly wide shared expert");
        n.shared_expert = "mlp.shared_experts.";
    } else if (v3) {
        r.fail("n_shared_experts", "missing (DeepSeek-V3 adds its shared experts to every MoE layer)");
    }
    c.routed_scale = r.get_num("routed_scaling_factor", 1.0);
    if (!std::isfinite(c.routed_scale)) r.fail("routed_scaling_factor", "is not a finite number");
    auto groups = [&] {
        c.router_groups = r.get_size("n_group", kMaxExperts);
        c.router_topk_groups = r.get_size("topk_group", kMaxExperts);
        if (c.num_experts % c.router_groups != 0) r.fail("n_group", "does not divide n_routed_experts");
        if (c.router_topk_groups > c.router_groups) r.fail("topk_group", "exceeds n_group");
        if (c.router_topk_groups * (c.num_experts / c.router_groups) < c.experts_per_token)
            r.fail("topk_group", "keeps fewer experts than num_experts_per_tok");
    };
    if (v3) {
        c.router_score = RouterScore::Sigmoid;
        c.norm_topk = r.get_bool("norm_topk_prob", true);
        n.router_score_bias = "mlp.gate.e_score_correction_bias";
        c.group_score = GroupScore::TopTwoSum;
        groups();
        if (c.num_experts / c.router_groups < 2) r.fail("n_group", "leaves fewer than two experts per group (groups are scored by their two best)");
    } else {
        c.norm_topk = false;  // (transformers' V2 router does not renormalise, whatever norm_topk_prob says)
        const std::string method = r.get_str("topk_method", "greedy");
        if (method == "group_limited_greedy") groups();
        else if (method != "greedy") r.fail("topk_method", "unsupported value \"" + method + "\" (expected greedy or group_limited_greedy)");
    }
}

inline void family_deepseek_v2(const ConfigReader& r, ModelConfig& c) { deepseek_common(r, c, false); }
inline void family_deepseek_v3(const ConfigReader& r, ModelConfig& c) { deepseek_common(r, c, true); }

/// Llama 4 (text): RoPE on interleaved pairs in the layers no_rope_layers marks 1, followed there by a weightless
/// L2 (RMS) norm of q and k when use_qk_norm; the other layers NoPE, their q scaled by temperature tuning
/// (attn_scale, floor_scale) when attn_temperature_tuning; chunked attention (attention_chunk_size) on the layers
/// layer_types calls chunked_attention. moe_layers have experts feed_forward.experts.{gate_up_proj [E, d, 2I] as
/// [gate | up], down_proj [E, I, d]}, routed by the sigmoid of the top-k router logits, the weight multiplying the
/// expert's input, plus a shared expert feed_forward.shared_expert of the expert width; the other layers a dense MLP
/// of intermediate_size_mlp.
inline void family_llama4_text(const ConfigReader& r, ModelConfig& c) {
    llama_block(r, c);
    c.norm.eps = r.get_num("rms_norm_eps", 1e-5);
    c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
    c.rope_pairs = RopePairs::Interleaved;
    const auto list = [&](const char* key) {
        std::vector<long long> v;
        if (!r.present(key)) return v;
        const auto& a = r.json()[key];
        if (!a.is_array()) r.fail(key, "expected a list of integers");
        for (const auto& x : a) {
            if (!x.is_number_integer()) r.fail(key, "entry " + io::json_brief(x) + " is not an integer");
            v.push_back(x.get<long long>());
        }
        return v;
    };
    auto rope_layers = list("no_rope_layers");  // 1: the layer uses RoPE (transformers' naming)
    if (rope_layers.empty()) {  // transformers' default: every no_rope_layer_interval-th layer NoPE
        const int interval = r.get_int("no_rope_layer_interval", 4);
        for (int l = 0; l < c.num_layers; ++l) rope_layers.push_back((l + 1) % interval != 0 ? 1 : 0);
    }
    if (static_cast<int>(rope_layers.size()) != c.num_layers)
        r.fail("no_rope_layers", "expected " + std::to_string(c.num_layers) + " entries");
    for (std::size_t l = 0; l < rope_layers.size(); ++l) {
        if (rope_layers[l] != 0 && rope_layers[l] != 1) r.fail("no_rope_layers", "expected entries 0 or 1");
        c.layers[l].nope = rope_layers[l] == 0;
    }
    if (r.get_bool("use_qk_norm", true)) {
        c.qk_norm = QKNorm::PerHead;
        c.qk_norm_spec = {NormKind::RMSNorm, c.norm.eps, false, false, false};
        c.qk_norm_after_rope = true;
        c.qk_norm_nope_layers = false;
    }
    if (r.get_bool("attn_temperature_tuning", true)) {
        c.attn_temperature_scale = r.get_num("attn_scale", 0.1);
        c.attn_temperature_floor = r.get_num("floor_scale", 8192.0);
        if (!(c.attn_temperature_floor > 0) || !std::isfinite(c.attn_temperature_scale))
            r.fail("floor_scale", "expected a positive floor_scale and a finite attn_scale");
    }
    const int chunk = r.get_size("attention_chunk_size", 8192, 1 << 30);
    if (!r.present("layer_types")) {  // transformers' default: the RoPE layers chunked
        for (int l = 0; l < c.num_layers; ++l)
            if (!c.layers[static_cast<std::size_t>(l)].nope) c.layers[static_cast<std::size_t>(l)].chunk = chunk;
    } else {
        const auto& lt = r.json()["layer_types"];
        if (!lt.is_array() || static_cast<int>(lt.size()) != c.num_layers)
            r.fail("layer_types", "expected a list of " + std::to_string(c.num_layers) + " strings");
        for (int l = 0; l < c.num_layers; ++l) {
            const auto& t = lt[static_cast<std::size_t>(l)];
            if (t == "chunked_attention") {
                c.layers[static_cast<std::size_t>(l)].chunk = chunk;
            } else if (t != "full_attention") {
                r.fail("layer_types", "unsupported value " + io::json_brief(t) + " (expected chunked_attention or full_attention)");
            }
        }
    }
    // experts
    auto& n = c.names.block;
    c.dense_intermediate_size = r.get_size("intermediate_size_mlp", c.intermediate_size, kMaxWidth);
    set_moe(r, c, "num_local_experts", "feed_forward.router", "", "", "", "");
    n.gate = "feed_forward.gate_proj", n.up = "feed_forward.up_proj", n.down = "feed_forward.down_proj";  // (the dense layers)
    n.experts_gate_up = "feed_forward.experts.gate_up_proj";
    n.experts_down = "feed_forward.experts.down_proj";
    c.router_score = RouterScore::Sigmoid;  // (sigmoid is monotonic: the top-k of the logits are the top-k of the scores)
    c.norm_topk = false;
    c.routing_on_input = true;
    c.shared_expert_size = c.intermediate_size;
    n.shared_expert = "feed_forward.shared_expert.";
    std::vector<bool> moe(static_cast<std::size_t>(c.num_layers), false);
    if (r.present("moe_layers")) {
        for (const long long l : list("moe_layers")) {
            if (l < 0 || l >= c.num_layers) r.fail("moe_layers", "entry " + std::to_string(l) + " is not a layer index");
            moe[static_cast<std::size_t>(l)] = true;
        }
    } else {
        const int step = r.get_int("interleave_moe_layer_step", 1);
        for (int l = step - 1; l < c.num_layers; l += step) moe[static_cast<std::size_t>(l)] = true;
    }
    for (int l = 0; l < c.num_layers; ++l) c.layers[static_cast<std::size_t>(l)].dense_mlp = !moe[static_cast<std::size_t>(l)];
}

/// The mapping table: model_type -> the function that fills the block description.
inline const std::vector<FamilyEntry>& family_table() {
    static const std::vector<FamilyEntry> table = {
        {"gpt2", family_gpt2, WindowRule::None},
        {"llama", family_llama, WindowRule::None},
        {"mistral", llama_block, WindowRule::Uniform},
        {"qwen2", family_qwen2, WindowRule::Family},
        {"qwen3", family_qwen3, WindowRule::Family},
        {"mixtral", family_mixtral, WindowRule::Uniform},
        {"qwen3_moe", family_qwen3_moe, WindowRule::Family},
        {"gemma", family_gemma, WindowRule::None},
        {"gemma2", family_gemma2, WindowRule::Family},
        {"gemma3_text", family_gemma3_text, WindowRule::Family},
        {"phi3", family_phi3, WindowRule::Uniform},
        {"olmo", family_olmo, WindowRule::None},
        {"olmo2", family_olmo2, WindowRule::None},
        {"starcoder2", family_starcoder2, WindowRule::Uniform},
        {"stablelm", family_stablelm, WindowRule::None},
        {"gpt_neox", family_gpt_neox, WindowRule::None},
        {"gptj", family_gptj, WindowRule::None},
        {"phi", family_phi, WindowRule::None},
        {"opt", family_opt, WindowRule::None},
        {"falcon", family_falcon, WindowRule::None},
        {"bloom", family_bloom, WindowRule::None},
        {"mpt", family_mpt, WindowRule::None},
        {"gpt_oss", family_gpt_oss, WindowRule::Family},
        {"vit", family_vit, WindowRule::None},
        {"dinov2", family_dinov2, WindowRule::None},
        {"dinov2_with_registers", family_dinov2, WindowRule::None},
        {"clip_vision_model", family_clip_vision, WindowRule::None},
        {"siglip_vision_model", family_siglip_vision, WindowRule::None},
        {"dinov3_vit", family_dinov3, WindowRule::None},
        {"seed_oss", family_seed_oss, WindowRule::None},
        {"smollm3", family_smollm3, WindowRule::Family},
        {"granite", family_granite, WindowRule::None},
        {"glm4", family_glm4, WindowRule::None},
        {"olmo3", family_olmo3, WindowRule::Family},
        {"exaone4", family_exaone4, WindowRule::Family},
        {"vaultgemma", family_vaultgemma, WindowRule::Family},
        {"nemotron", family_nemotron, WindowRule::None},
        {"cohere", family_cohere, WindowRule::None},
        {"cohere2", family_cohere2, WindowRule::Family},
        {"qwen2_moe", family_qwen2_moe, WindowRule::Family},
        {"olmoe", family_olmoe, WindowRule::None},
        {"granitemoe", family_granitemoe, WindowRule::None},
        {"apertus", family_apertus, WindowRule::None},
        {"bitnet", family_bitnet, WindowRule::None},
        {"qwen3_next", family_qwen3_next, WindowRule::None},
        {"qwen3_5_text", family_qwen3_next, WindowRule::None},
        {"mamba2", family_mamba2, WindowRule::None},
        {"deepseek_v2", family_deepseek_v2, WindowRule::None},
        {"deepseek_v3", family_deepseek_v3, WindowRule::None},
        {"llama4_text", family_llama4_text, WindowRule::None},
    };
    return table;
}

/// A config that holds the model massact reads in one of its fields: that field is read as a config of `inner_type`
/// (where it names no model_type itself, or always with `force_type`), its weights under `prefixes`.
struct WrapperEntry {
    const char* model_type;
    const char* field;
    const char* inner_type;
    bool force_type;
    std::vector<std::string> prefixes;
};

inline const std::vector<WrapperEntry>& wrapper_table() {
    static const std::vector<WrapperEntry> t = {
        {"gemma3", "text_config", "gemma3_text", false, {"model.language_model.", "language_model.model."}},  // multimodal: the language model
        {"clip", "vision_config", "clip_vision_model", true, {"vision_model."}},        // text and vision towers: the vision one
        {"siglip", "vision_config", "siglip_vision_model", true, {"vision_model."}},
    };
    return t;
}

}  // namespace detail

/// The model_type values massact reads: the family table's, then the wrappers' (gemma3: its text_config; clip and
/// siglip: their vision_config).
inline std::vector<std::string> supported_model_types() {
    std::vector<std::string> out;
    for (const auto& e : detail::family_table()) out.push_back(e.model_type);
    for (const auto& w : detail::wrapper_table()) out.push_back(w.model_type);
    return out;
}

/// Parse a config.json object. `file` is used in error messages.
inline ModelConfig parse_config(const nlohmann::json& j, const std::string& file = "config.json") {
    if (!j.is_object()) throw Error(file + ": expected a JSON object");
    std::string list;
    for (const auto& t : supported_model_types()) list += (list.empty() ? "" : ", ") + t;
    detail::ConfigReader r(j, file);
    if (!r.present("model_type")) r.fail("model_type", "missing (expected one of " + list + ")");
    const std::string type = r.get_str("model_type", "");
    for (const auto& w : detail::wrapper_table()) {
        if (type != w.model_type) continue;
        if (!r.present(w.field) || !j[w.field].is_object())
            r.fail(w.field, std::string("missing (a ") + w.model_type + " config holds the model massact reads there)");
        nlohmann::json inner = j[w.field];
        if (w.force_type || !inner.contains("model_type")) inner["model_type"] = w.inner_type;
        for (const auto& other : detail::wrapper_table())  // (one level only: a wrapper in a wrapper would recurse on the input)
            if (inner["model_type"] == other.model_type)
                r.fail(std::string(w.field) + ".model_type", std::string("\"") + other.model_type + "\" inside a " + w.model_type + " config (expected a model)");
        ModelConfig c = parse_config(inner, file + " (" + w.field + ")");
        c.names.prefixes = w.prefixes;
        return c;
    }
    ModelConfig c;
    c.model_type = type;
    const detail::FamilyEntry* entry = nullptr;
    for (const auto& e : detail::family_table())
        if (type == e.model_type) entry = &e;
    if (!entry) r.fail("model_type", "unsupported value \"" + type + "\" (expected one of " + list + ")");
    entry->map(r, c);
    detail::refuse_unimplemented(r, c);
    if (entry->windows == detail::WindowRule::Uniform) detail::uniform_windows(r, c);
    if (c.has_rope() && c.rope.empty()) detail::read_rope(r, c);
    if (c.attn_scale == 0.0) c.attn_scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
    if (r.present("attention_sink")) {
        const auto& s = j["attention_sink"];
        const std::string t = s.is_object() && s.contains("type") && s["type"].is_string() ? s["type"].get<std::string>() : io::json_brief(s);
        if (t == "kv_bias") c.sink = SinkKind::KVBias;
        else if (t == "logit") c.sink = SinkKind::Logit;
        else if (t == "none") c.sink = SinkKind::None;
        else r.fail("attention_sink.type", "unsupported value " + (s.is_object() && s.contains("type") ? io::json_brief(s["type"]) : io::json_brief(s)) +
                                               " (expected kv_bias or logit)");
    }
    detail::read_attention_fn(r, c);
    if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
        const auto& e = j["eos_token_id"];
        for (const auto& id : e.is_array() ? e : nlohmann::json::array({e})) {
            if (!id.is_number_integer()) r.fail("eos_token_id", "expected a token id or a list of them, found " + io::json_brief(e));
            c.eos_token_ids.push_back(id.get<std::int64_t>());
        }
    }
    return c;
}

inline ModelConfig load_config(const std::string& model_dir) {
    const std::string file = model_dir + "/config.json";
    return parse_config(io::read_json_file(file), file);
}

}  // namespace massact

// massact/model/gguf_model.hpp - a GGUF file as a Hugging Face model: its metadata rewritten as the
// config.json the family table reads, its tensors under Hugging Face names, and its vocabulary as a
// tokenizer.json. Nothing is converted: tensors stay quantized in the mapping and are dequantized per use.
//
// One table per architecture (detail::gguf_archs): llama.cpp's general.architecture, the Hugging Face model_type whose
// family reads the config, its metadata keys beside the shared ones, and what llama.cpp's converter changed in the
// tensors (llama's Q and K rows permuted for interleaved rotary pairs: the views undo it, TensorView::rope_heads, so
// hook_q and hook_k hold what the Hugging Face model computes; Gemma's norms stored as 1 + w). Tensor names map by
// role (detail::gguf_block_roles: attn_q is the block's q projection), the Hugging Face name being the family's own.
#pragma once

#include "massact/core/error.hpp"
#include "massact/io/checkpoint.hpp"
#include "massact/io/gguf.hpp"
#include "massact/model/config.hpp"
#include "massact/model/families.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace massact {

namespace detail {

/// A metadata key of llama.cpp's (after "<arch>.") and the config.json fields it fills: several where the families
/// name one quantity differently (each family reads its own name; the others are ignored).
struct GgufKey {
    const char* key;
    std::vector<const char*> fields;
};

/// What llama.cpp's converter changed in an architecture's tensors; undone when the file is opened.
enum GgufLayout : unsigned {
    kPermutedQK = 1,         // Q and K rows permuted per head for interleaved rotary pairs (TensorView::rope_heads)
    kNormsHoldOnePlus = 2,   // (1 + w) norms stored as 1 + w: read as plain scales (NormSpec::one_plus off)
    kQkvConcat = 4,          // a fused QKV reordered to [q; k; v] (Falcon's per-group, BLOOM's per-head layouts)
};

using BlockRole = std::string BlockNames::*;

/// One architecture llama.cpp writes: general.architecture, the Hugging Face model_type whose family reads the
/// config (another when the file has experts), what the converter changed, the architecture's own metadata keys.
struct GgufArch {
    const char* arch;
    const char* model_type;
    unsigned layout;
    std::vector<GgufKey> keys;
    /// Another model_type where a key is present (and not 0 / false / empty): llama with experts is Mixtral, olmo2
    /// with sliding layers OLMo 3.
    std::vector<std::pair<const char*, const char*>> variants = {};
    /// Block tensors the architecture names otherwise (Seed-OSS's pre-MLP norm is post_attention_norm).
    std::vector<std::pair<std::string, BlockRole>> roles = {};
    /// Fields llama.cpp derives rather than reads (Gemma 2's attention scale from the layer count), or null.
    void (*derive)(const io::GgufFile&, nlohmann::json&) = nullptr;
};

/// Falcon: llama.cpp tells the new decoder (Falcon-40B and later: grouped KV heads, a second norm before the MLP) from
/// the tensors; its blocks are always parallel.
inline void falcon_derive(const io::GgufFile& f, nlohmann::json& c) {
    const std::int64_t H = c["num_attention_heads"], KV = c.value("num_key_value_heads", H);
    const bool two_norms = f.find("blk.0.attn_norm_2.weight") != nullptr;
    c["new_decoder_architecture"] = two_norms || (KV != 1 && KV != H);
    c["multi_query"] = KV == 1;
    c["num_kv_heads"] = KV;
    c["num_ln_in_parallel_attn"] = two_norms ? 2 : 1;
    c["parallel_attn"] = true;
    c["ffn_hidden_size"] = c["intermediate_size"];
}

/// Gemma 2: llama.cpp scales queries by 1/sqrt(d / H) for the 46-layer (27B) model and 1/sqrt(head_dim) otherwise;
/// the converter drops query_pre_attn_scalar.
inline void gemma2_derive(const io::GgufFile&, nlohmann::json& c) {
    const std::int64_t d = c["hidden_size"], H = c["num_attention_heads"];
    c["query_pre_attn_scalar"] = c["num_hidden_layers"] == 46 ? d / H : c.value("head_dim", d / H);
}

/// The keys every architecture shares.
inline const std::vector<GgufKey>& gguf_common_keys() {
    static const std::vector<GgufKey> keys = {
        {"embedding_length", {"hidden_size"}},
        {"feed_forward_length", {"intermediate_size"}},
        {"block_count", {"num_hidden_layers"}},
        {"attention.head_count", {"num_attention_heads"}},
        {"attention.head_count_kv", {"num_key_value_heads"}},
        {"attention.key_length", {"head_dim"}},
        {"context_length", {"max_position_embeddings"}},
        {"attention.layer_norm_rms_epsilon", {"rms_norm_eps"}},
        {"attention.layer_norm_epsilon", {"layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"}},
        {"rope.freq_base", {"rope_theta"}},
        {"expert_count", {"num_experts", "num_local_experts", "n_routed_experts"}},
        {"expert_used_count", {"num_experts_per_tok"}},
        {"expert_feed_forward_length", {"moe_intermediate_size"}},
        {"expert_shared_feed_forward_length", {"shared_expert_intermediate_size"}},
        {"attention.sliding_window", {"sliding_window"}},
        {"attn_logit_softcapping", {"attn_logit_softcapping"}},
        {"final_logit_softcapping", {"final_logit_softcapping"}},
    };
    return keys;
}

inline const std::vector<GgufArch>& gguf_archs() {
    static const std::vector<GgufArch> archs = {
        {"llama", "llama", kPermutedQK, {}, {{"expert_count", "mixtral"}}},
        {"qwen2", "qwen2", 0, {}},
        {"qwen3", "qwen3", 0, {}},
        {"qwen2moe", "qwen2_moe", 0, {}},
        {"olmoe", "olmoe", 0, {}},
        {"gemma", "gemma", kNormsHoldOnePlus, {}},
        {"gemma2", "gemma2", kNormsHoldOnePlus, {}, {}, {}, gemma2_derive},
        {"olmo", "olmo", kPermutedQK, {}},
        {"olmo2", "olmo2", 0, {}, {{"attention.sliding_window_pattern", "olmo3"}}},
        {"starcoder2", "starcoder2", 0, {}},
        {"stablelm", "stablelm", 0, {{"use_parallel_residual", {"use_parallel_residual"}}}},
        {"phi3", "phi3", 0, {}},
        {"glm4", "glm4", 0, {}},
        {"granite", "granite", kPermutedQK,
         {{"attention.scale", {"attention_multiplier"}}, {"embedding_scale", {"embedding_multiplier"}},
          {"residual_scale", {"residual_multiplier"}}, {"logit_scale", {"logits_scaling"}}}},
        {"seed_oss", "seed_oss", 0, {}, {}, {{"post_attention_norm", &BlockNames::ln_mlp}}},
        {"smollm3", "smollm3", kPermutedQK, {}},
        {"exaone4", "exaone4", 0, {}},
        {"nemotron", "nemotron", kNormsHoldOnePlus, {}},
        // (Falcon-40B's two norms: llama.cpp's attn_norm feeds the MLP, attn_norm_2 the attention)
        {"falcon", "falcon", kQkvConcat, {}, {}, {{"attn_norm", &BlockNames::ln_mlp}, {"attn_norm_2", &BlockNames::ln_attn}}, falcon_derive},
        {"bloom", "bloom", kQkvConcat, {{"block_count", {"n_layer"}}, {"attention.head_count", {"n_head"}}}},
    };
    return archs;
}

inline const GgufArch* gguf_arch(const std::string& name) {
    for (const auto& a : gguf_archs())
        if (name == a.arch) return &a;
    return nullptr;
}

inline std::string gguf_arch_names() {
    std::string s;
    for (const auto& a : gguf_archs()) s += (s.empty() ? "" : ", ") + std::string(a.arch);
    return s;
}

/// A block tensor of llama.cpp's ("blk.{l}.<part>.weight") and its role in the block description: the Hugging Face
/// name is the family's own (ModelNames), so one table serves every family.
inline const std::vector<std::pair<std::string, BlockRole>>& gguf_block_roles() {
    static const std::vector<std::pair<std::string, BlockRole>> roles = {
        {"attn_norm", &BlockNames::ln_attn},        {"attn_q", &BlockNames::q},
        {"attn_k", &BlockNames::k},                 {"attn_v", &BlockNames::v},
        {"attn_qkv", &BlockNames::qkv},             {"attn_output", &BlockNames::o},
        {"attn_q_norm", &BlockNames::q_norm},       {"attn_k_norm", &BlockNames::k_norm},
        {"post_attention_norm", &BlockNames::ln_attn_post}, {"ffn_norm", &BlockNames::ln_mlp},
        {"post_ffw_norm", &BlockNames::ln_mlp_post}, {"ffn_gate", &BlockNames::gate},
        {"ffn_up", &BlockNames::up},                {"ffn_down", &BlockNames::down},
        {"attn_sub_norm", &BlockNames::attn_sub_norm}, {"ffn_sub_norm", &BlockNames::mlp_sub_norm},
        {"ffn_gate_inp", &BlockNames::router},      {"exp_probs_b", &BlockNames::router_score_bias},
        {"ffn_gate_inp_shexp", &BlockNames::shared_expert_gate},
        {"attn_q_a", &BlockNames::q_a},             {"attn_q_a_norm", &BlockNames::q_a_norm},
        {"attn_q_b", &BlockNames::q_b},             {"attn_kv_a_mqa", &BlockNames::kv_a},
        {"attn_kv_a_norm", &BlockNames::kv_a_norm}, {"attn_kv_b", &BlockNames::kv_b},
    };
    return roles;
}

/// The experts' tensors llama.cpp stacks [E, out, in] and the member of each expert they hold.
inline const std::vector<std::pair<std::string, BlockRole>>& gguf_expert_roles() {
    static const std::vector<std::pair<std::string, BlockRole>> roles = {
        {"ffn_gate_exps", &BlockNames::expert_gate}, {"ffn_up_exps", &BlockNames::expert_up}, {"ffn_down_exps", &BlockNames::expert_down}};
    return roles;
}

/// A shared expert's tensors and the name of each below the shared expert's prefix.
inline const std::vector<std::pair<std::string, const char*>>& gguf_shared_expert_parts() {
    static const std::vector<std::pair<std::string, const char*>> parts = {
        {"ffn_gate_shexp", "gate_proj"}, {"ffn_up_shexp", "up_proj"}, {"ffn_down_shexp", "down_proj"}};
    return parts;
}

/// Expert e of a stacked [E, out, in] tensor: its own rows (each expert's rows are whole blocks, so a byte range).
inline io::TensorView expert_slice(const io::TensorView& v, std::int64_t e) {
    io::TensorView x = v;
    const auto E = static_cast<std::size_t>(v.shape[0]);
    x.nbytes = v.nbytes / E;
    x.data = v.data + static_cast<std::size_t>(e) * x.nbytes;
    x.shape.erase(x.shape.begin());
    x.name = v.name + " (expert " + std::to_string(e) + ")";
    return x;
}

/// A metadata value as one number: a per-layer array must hold one value throughout.
inline nlohmann::json gguf_scalar(const io::GgufFile& f, const std::string& key) {
    const nlohmann::json& v = f.at(key);
    if (!v.is_array()) return v;
    if (v.empty() || !v[0].is_number() || std::any_of(v.begin(), v.end(), [&](const nlohmann::json& x) { return x != v[0]; }))
        throw Error(f.path() + ": metadata \"" + key + "\": per-layer values that differ (massact maps one value per model)");
    return v[0];
}

/// A GGUF tensor name cut into its stem ("blk.3.attn_q" / "output_norm"), kind (".weight" / ".bias"), and for a block
/// tensor its layer and part ("attn_q"); the Hugging Face prefix of that layer under the family's names.
struct GgufName {
    std::string stem, kind, layer, part, prefix;
    explicit GgufName(const std::string& name, const ModelNames& n) {
        const auto last = name.rfind('.');
        if (last == std::string::npos) return;
        stem = name.substr(0, last), kind = name.substr(last);
        if (stem.rfind("blk.", 0) != 0) return;
        const auto dot = stem.find('.', 4);
        if (dot == std::string::npos) return;
        layer = stem.substr(4, dot - 4), part = stem.substr(dot + 1);
        const auto at = n.layer.find("{l}");
        if (n.prefixes.empty() || layer.empty() || layer.size() > 6 || layer.find_first_not_of("0123456789") != std::string::npos || at == std::string::npos) {
            part.clear();
            return;
        }
        prefix = n.prefixes.front() + std::string(n.layer).replace(at, 3, layer);
    }
};

/// The Hugging Face name of a GGUF tensor under the family's names, or "" (a tensor massact does not read).
inline std::string gguf_hf_name(const std::string& name, const ModelConfig& c, const GgufArch& a) {
    const ModelNames& n = c.names;
    if (n.prefixes.empty()) return "";
    const std::string& body = n.prefixes.front();
    const GgufName g(name, n);
    if (g.stem == "token_embd") return body + n.embed + g.kind;
    if (g.stem == "output_norm") return body + n.final_norm + g.kind;
    if (g.stem == "output") return n.lm_head + g.kind;
    if (g.stem == "token_embd_norm" && !n.embed_norm.empty()) return body + n.embed_norm + g.kind;
    if (g.stem == "position_embd" && !n.pos_embed.empty()) return body + n.pos_embed + g.kind;
    if (g.part.empty()) return "";
    for (const auto& [part, sub] : gguf_shared_expert_parts())
        if (g.part == part) return n.block.shared_expert.empty() ? "" : g.prefix + n.block.shared_expert + sub + g.kind;
    for (const auto* roles : {&a.roles, &gguf_block_roles()})  // (an architecture's role the family lacks: the shared one)
        for (const auto& [part, role] : *roles) {
            if (g.part != part) continue;
            std::string hf = n.block.*role;
            if (hf.empty() && role == &BlockNames::up) hf = n.block.gate_up;  // [gate; up] fused (Phi-3)
            if (!hf.empty()) return g.prefix + hf + g.kind;
        }
    return "";
}

/// Expert e's Hugging Face name of a stacked experts tensor (ffn_gate_exps, ...), or "" when it is not one or the
/// family reads no per-expert tensors.
inline std::string gguf_expert_name(const std::string& name, const ModelConfig& c, std::int64_t e) {
    const GgufName g(name, c.names);
    const BlockNames& b = c.names.block;
    if (g.part.empty() || b.expert.empty()) return "";
    for (const auto& [part, role] : gguf_expert_roles()) {
        if (g.part != part) continue;
        std::string prefix = b.expert;
        const auto at = prefix.find("{e}");
        if (at == std::string::npos) return "";
        return g.prefix + prefix.replace(at, 3, std::to_string(e)) + b.*role + g.kind;
    }
    return "";
}

}  // namespace detail

/// The model files of a GGUF: config.json (as JSON), the tensors under Hugging Face names.
struct GgufModel {
    std::shared_ptr<const io::GgufFile> file;
    nlohmann::json config;
    std::map<std::string, io::TensorView> tensors;
    std::vector<double> rope_freqs;  // llama.cpp's rope_freqs.weight (Llama 3's frequency factors), when present
    unsigned layout = 0;             // detail::GgufLayout: what the converter changed
};

/// The config of a GGUF model: its metadata through the family table, and llama.cpp's RoPE frequency factors
/// (rope_freqs.weight: one factor per rotary pair, which llama.cpp divides every angle by) on each RoPE spec.
inline ModelConfig gguf_config(const GgufModel& g) {
    const std::string& path = g.file->path();
    ModelConfig c = parse_config(g.config, path + " (metadata)");
    if (g.layout & detail::kNormsHoldOnePlus) c.norm.one_plus = c.qk_norm_spec.one_plus = false;
    if (g.layout & detail::kQkvConcat) c.qkv_layout = QkvLayout::Concat;
    if (g.rope_freqs.empty()) return c;
    if (c.rope.empty()) throw Error(path + ": tensor \"rope_freqs.weight\": the model has no RoPE");
    for (RopeSpec& s : c.rope) {
        if (static_cast<int>(g.rope_freqs.size()) != s.rotary_dim / 2)
            throw Error(path + ": tensor \"rope_freqs.weight\": " + std::to_string(g.rope_freqs.size()) + " factors, expected " +
                        std::to_string(s.rotary_dim / 2) + " (one per rotary pair)");
        if (s.scaling != RopeScaling::None)
            throw Error(path + ": tensor \"rope_freqs.weight\" together with a RoPE scaling type: only one of them is supported");
        s.freq_factors = g.rope_freqs;
    }
    return c;
}

inline GgufModel open_gguf(std::shared_ptr<const io::GgufFile> file) {
    GgufModel m;
    m.file = std::move(file);
    const io::GgufFile& f = *m.file;
    const std::string& path = f.path();
    const std::string arch = f.get_string("general.architecture");
    const detail::GgufArch* a = detail::gguf_arch(arch);
    if (!a) throw Error(path + ": metadata \"general.architecture\": \"" + arch + "\" is not one massact maps (" + detail::gguf_arch_names() + ")");
    m.layout = a->layout;
    auto key = [&](const std::string& k) { return arch + "." + k; };
    nlohmann::json& c = m.config;
    c["model_type"] = a->model_type;
    for (const auto& [k, type] : a->variants) {
        if (!f.has(key(k))) continue;
        const nlohmann::json& v = f.at(key(k));
        if (!(v.is_array() ? v.empty() : v.is_boolean() ? !v.get<bool>() : v.is_number() && v.get<double>() == 0)) c["model_type"] = type;
    }
    for (const auto* keys : {&detail::gguf_common_keys(), &a->keys})
        for (const detail::GgufKey& k : *keys)
            if (f.has(key(k.key)))
                for (const char* field : k.fields) c[field] = detail::gguf_scalar(f, key(k.key));
    for (const char* k : {"embedding_length", "feed_forward_length", "block_count", "attention.head_count"})
        if (!f.has(key(k))) throw Error(path + ": metadata \"" + key(k) + "\" is missing");
    const std::int64_t H = c["num_attention_heads"], KV = c.value("num_key_value_heads", H);
    if (H < 1 || KV < 1 || H > (1 << 16) || KV > H)
        throw Error(path + ": metadata \"" + key("attention.head_count") + "\" / \"" + key("attention.head_count_kv") + "\": " +
                    std::to_string(H) + " / " + std::to_string(KV) + " heads (expected 1 <= KV <= H)");
    if (!c.contains("max_position_embeddings")) c["max_position_embeddings"] = 2048;
    if (f.has(key("attention.sliding_window_pattern"))) {  // per layer: true where the layer attends within the window
        const nlohmann::json& p = f.get_array(key("attention.sliding_window_pattern"));
        nlohmann::json types = nlohmann::json::array();
        for (const auto& x : p) {
            if (!x.is_boolean()) throw Error(path + ": metadata \"" + key("attention.sliding_window_pattern") + "\": expected booleans, one per layer");
            types.push_back(x.get<bool>() ? "sliding_attention" : "full_attention");
        }
        c["layer_types"] = types;
    }
    if (f.has(key("rope.scaling.type")) && f.get_string(key("rope.scaling.type")) != "none") {
        const std::string type = f.get_string(key("rope.scaling.type"));
        if (type != "linear" && type != "yarn")
            throw Error(path + ": metadata \"" + key("rope.scaling.type") + "\": \"" + type + "\" is not supported (linear, yarn)");
        c["rope_scaling"] = {{"rope_type", type}, {"factor", f.get_float(key("rope.scaling.factor"))}};
        if (f.has(key("rope.scaling.original_context_length")))
            c["rope_scaling"]["original_max_position_embeddings"] = f.get_int(key("rope.scaling.original_context_length"));
    }
    if (f.has("tokenizer.ggml.eos_token_id")) c["eos_token_id"] = f.get_int("tokenizer.ggml.eos_token_id");
    if (f.has("tokenizer.ggml.bos_token_id")) c["bos_token_id"] = f.get_int("tokenizer.ggml.bos_token_id");
    const std::int64_t head_dim = c.value("head_dim", c["hidden_size"].get<std::int64_t>() / H);
    if (f.has(key("rope.dimension_count"))) {
        const std::int64_t rot = f.get_int(key("rope.dimension_count"));
        if (rot < 2 || rot > head_dim || rot % 2 != 0)
            throw Error(path + ": metadata \"" + key("rope.dimension_count") + "\": " + std::to_string(rot) + " (expected an even number <= the head width " +
                        std::to_string(head_dim) + ")");
        if (rot != head_dim) {
            if (a->layout & detail::kPermutedQK) throw Error(path + ": partial rotary (" + key("rope.dimension_count") + ") is not supported for " + arch);
            c["partial_rotary_factor"] = static_cast<double>(rot) / static_cast<double>(head_dim);
        }
    }
    // what the tensors say: tied head, q/k/v biases, the vocabulary
    const io::GgufTensor* embd = f.find("token_embd.weight");
    if (!embd) throw Error(path + ": no tensor \"token_embd.weight\"");
    c["tie_word_embeddings"] = f.find("output.weight") == nullptr;
    c["vocab_size"] = embd->ne.size() == 2 ? embd->ne[1] : 0;
    if (f.find("blk.0.attn_q.bias") || f.find("blk.0.attn_qkv.bias")) c["attention_bias"] = c["use_qkv_bias"] = true;
    if (a->derive) a->derive(f, c);
    const ModelConfig mc = parse_config(c, path + " (metadata)");

    for (const io::GgufTensor& t : f.tensors()) {
        if (t.name == "rope_freqs.weight") {  // llama.cpp's precomputed llama3 factors
            const io::TensorView v = f.view(t);
            if (v.shape.size() != 1 || v.shape[0] < 1 || v.shape[0] > (1 << 16))
                throw Error(v.where() + ": shape " + io::shape_string(v.shape) + " (expected one factor per rotary pair)");
            for (const float x : v.to_float()) {
                if (!(std::isfinite(x) && x > 0))
                    throw Error(v.where() + ": factor " + std::to_string(x) + " (expected finite positive factors)");
                m.rope_freqs.push_back(x);
            }
            continue;
        }
        if (!detail::gguf_expert_name(t.name, mc, 0).empty()) {  // [E, out, in]: one view per expert
            const io::TensorView v = f.view(t);
            if (v.shape.size() != 3 || v.shape[0] != mc.num_experts)
                throw Error(v.where() + ": shape " + io::shape_string(v.shape) + " (expected [" + std::to_string(mc.num_experts) + ", out, in])");
            for (std::int64_t e = 0; e < v.shape[0]; ++e) m.tensors.emplace(detail::gguf_expert_name(t.name, mc, e), detail::expert_slice(v, e));
            continue;
        }
        const std::string hf = detail::gguf_hf_name(t.name, mc, *a);
        if (hf.empty()) continue;
        io::TensorView v = f.view(t);
        const bool q = t.name.find(".attn_q.weight") != std::string::npos, k = t.name.find(".attn_k.weight") != std::string::npos;
        if ((a->layout & detail::kPermutedQK) && (q || k)) {
            v.rope_heads = q ? H : KV;
            if (v.shape.size() != 2 || v.shape[0] % (2 * v.rope_heads) != 0)
                throw Error(v.where() + ": shape " + io::shape_string(v.shape) + " does not split into " + std::to_string(v.rope_heads) +
                            " heads of rotary pairs");
        }
        if (!m.tensors.emplace(hf, std::move(v)).second) throw Error(path + ": tensor \"" + t.name + "\": a second tensor for " + hf);
    }
    return m;
}

inline GgufModel open_gguf(const std::string& path) { return open_gguf(std::make_shared<const io::GgufFile>(path)); }

/// The config and checkpoint of a model path: a Hugging Face directory or a .gguf file.
struct ModelFiles {
    ModelConfig config;
    std::unique_ptr<io::Checkpoint> checkpoint;
};

inline ModelFiles open_model_files(const std::string& path) {
    if (!io::is_gguf_path(path)) return {load_config(path), std::make_unique<io::Checkpoint>(path)};
    GgufModel g = open_gguf(path);
    ModelFiles m{gguf_config(g), nullptr};
    m.checkpoint = std::make_unique<io::Checkpoint>(path, std::move(g.tensors), g.file);
    return m;
}

}  // namespace massact

// massact/model/gguf_model.hpp - a GGUF file as a Hugging Face model: its metadata rewritten as the
// config.json the family table reads, its tensors under Hugging Face names, and its vocabulary as a
// tokenizer.json. Nothing is converted: tensors stay quantized in the mapping and are dequantized per use.
//
// Architectures: llama (and Mistral, which llama.cpp stores as llama), qwen2, qwen3. llama.cpp's
// converter permutes the rows of llama's Q and K projections for interleaved rotary pairs; the views
// undo it (TensorView::rope_heads), so hook_q and hook_k hold what the Hugging Face model computes.
#pragma once

#include "massact/core/error.hpp"
#include "massact/io/checkpoint.hpp"
#include "massact/io/gguf.hpp"
#include "massact/model/config.hpp"
#include "massact/model/families.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace massact {

namespace detail {

/// One architecture: llama.cpp's name, the Hugging Face model_type, and whether Q/K rows are permuted.
struct GgufArch {
    const char* arch;
    const char* model_type;
    bool permuted_qk;
};

inline const GgufArch* gguf_arch(const std::string& name) {
    static const GgufArch table[] = {{"llama", "llama", true}, {"qwen2", "qwen2", false}, {"qwen3", "qwen3", false}};
    for (const auto& a : table)
        if (name == a.arch) return &a;
    return nullptr;
}

/// llama.cpp's tensor name suffixes and the Hugging Face ones (llama layout), per block.
inline const std::vector<std::pair<std::string, std::string>>& gguf_block_names() {
    static const std::vector<std::pair<std::string, std::string>> names = {
        {"attn_norm", "input_layernorm"},   {"attn_q", "self_attn.q_proj"},     {"attn_k", "self_attn.k_proj"},
        {"attn_v", "self_attn.v_proj"},     {"attn_output", "self_attn.o_proj"}, {"attn_q_norm", "self_attn.q_norm"},
        {"attn_k_norm", "self_attn.k_norm"}, {"ffn_norm", "post_attention_layernorm"}, {"ffn_gate", "mlp.gate_proj"},
        {"ffn_up", "mlp.up_proj"},          {"ffn_down", "mlp.down_proj"},
    };
    return names;
}

}  // namespace detail

/// The model files of a GGUF: config.json (as JSON), the tensors under Hugging Face names.
struct GgufModel {
    std::shared_ptr<const io::GgufFile> file;
    nlohmann::json config;
    std::map<std::string, io::TensorView> tensors;
    std::vector<double> rope_freqs;  // llama.cpp's rope_freqs.weight (Llama 3's frequency factors), when present
};

/// The config of a GGUF model: its metadata through the family table, and llama.cpp's RoPE frequency factors
/// (rope_freqs.weight: one factor per rotary pair, which llama.cpp divides every angle by) on each RoPE spec.
inline ModelConfig gguf_config(const GgufModel& g) {
    const std::string& path = g.file->path();
    ModelConfig c = parse_config(g.config, path + " (metadata)");
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
    if (!a) throw Error(path + ": metadata \"general.architecture\": \"" + arch + "\" is not one massact maps (llama, qwen2, qwen3)");
    auto key = [&](const std::string& k) { return arch + "." + k; };
    if (f.has(key("expert_count")) && f.get_int(key("expert_count")) > 0)
        throw Error(path + ": mixture-of-experts GGUF files (" + key("expert_count") + ") are not mapped yet");
    nlohmann::json& c = m.config;
    c["model_type"] = a->model_type;
    c["hidden_size"] = f.get_int(key("embedding_length"));
    c["intermediate_size"] = f.get_int(key("feed_forward_length"));
    c["num_hidden_layers"] = f.get_int(key("block_count"));
    c["num_attention_heads"] = f.get_int(key("attention.head_count"));
    c["num_key_value_heads"] = f.has(key("attention.head_count_kv")) ? f.get_int(key("attention.head_count_kv")) : c["num_attention_heads"].get<std::int64_t>();
    if (f.has(key("attention.key_length"))) c["head_dim"] = f.get_int(key("attention.key_length"));
    const std::int64_t H = c["num_attention_heads"], KV = c["num_key_value_heads"];
    if (H < 1 || KV < 1 || H > (1 << 16) || KV > H)
        throw Error(path + ": metadata \"" + key("attention.head_count") + "\" / \"" + key("attention.head_count_kv") + "\": " +
                    std::to_string(H) + " / " + std::to_string(KV) + " heads (expected 1 <= KV <= H)");
    c["max_position_embeddings"] = f.has(key("context_length")) ? f.get_int(key("context_length")) : 2048;
    c["rms_norm_eps"] = f.get_float(key("attention.layer_norm_rms_epsilon"));
    c["rope_theta"] = f.has(key("rope.freq_base")) ? f.get_float(key("rope.freq_base")) : 10000.0;
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
    if (a->permuted_qk && (f.has(key("rope.dimension_count")) &&
                           f.get_int(key("rope.dimension_count")) != (c.contains("head_dim") ? c["head_dim"].get<std::int64_t>()
                                                                                                : c["hidden_size"].get<std::int64_t>() / c["num_attention_heads"].get<std::int64_t>())))
        throw Error(path + ": partial rotary (" + key("rope.dimension_count") + ") is not supported for " + arch);

    for (const io::GgufTensor& t : f.tensors()) {
        std::string hf;
        if (t.name == "token_embd.weight") hf = "model.embed_tokens.weight";
        else if (t.name == "output_norm.weight") hf = "model.norm.weight";
        else if (t.name == "output.weight") hf = "lm_head.weight";
        else if (t.name.rfind("blk.", 0) == 0) {
            const auto dot = t.name.find('.', 4);
            const auto last = t.name.rfind('.');
            if (dot == std::string::npos || last <= dot) continue;
            const std::string layer = t.name.substr(4, dot - 4), part = t.name.substr(dot + 1, last - dot - 1), kind = t.name.substr(last);
            for (const auto& [g, h] : detail::gguf_block_names())
                if (part == g) hf = "model.layers." + layer + "." + h + kind;
        }
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
        if (hf.empty()) continue;
        io::TensorView v = f.view(t);
        if (a->permuted_qk && hf.compare(hf.size() - 7, 7, ".weight") == 0 && (t.name.find(".attn_q.") != std::string::npos || t.name.find(".attn_k.") != std::string::npos)) {
            v.rope_heads = t.name.find(".attn_q.") != std::string::npos ? H : KV;
            if (v.shape.size() != 2 || v.shape[0] % (2 * v.rope_heads) != 0)
                throw Error(v.where() + ": shape " + io::shape_string(v.shape) + " does not split into " + std::to_string(v.rope_heads) +
                            " heads of rotary pairs");
        }
        m.tensors.emplace(hf, std::move(v));
    }
    c["tie_word_embeddings"] = m.tensors.count("lm_head.weight") == 0;
    if (!m.tensors.count("model.embed_tokens.weight")) throw Error(path + ": no tensor \"token_embd.weight\"");
    c["vocab_size"] = m.tensors.at("model.embed_tokens.weight").shape[0];
    if (m.tensors.count("model.layers.0.self_attn.q_proj.bias")) c["attention_bias"] = true;
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

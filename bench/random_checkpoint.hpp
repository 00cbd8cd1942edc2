// Random Llama-shaped BF16 checkpoints written straight to disk (tensor by tensor, never all in
// memory): the benchmarks' TinyLlama-1.1B shape and the Llama-2-7B shape of the memory test.
#pragma once

#include <massact/massact.hpp>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace bench {

struct LlamaShape {
    const char* name;
    int hidden, layers, heads, kv_heads, intermediate, vocab;
};
inline constexpr LlamaShape kTinyLlama1B{"tinyllama-1.1b", 2048, 22, 32, 4, 5632, 32000};
inline constexpr LlamaShape kLlama2_7B{"llama2-7b", 4096, 32, 32, 32, 11008, 32000};

/// Writes DIR/config.json and DIR/model.safetensors: BF16 weights uniform in +-0.035 (std ~0.02),
/// norm weights 1. Returns the number of parameters.
inline std::int64_t write_random_llama(const std::string& dir, const LlamaShape& s, std::uint64_t seed = 1) {
    const std::int64_t d = s.hidden, I = s.intermediate, V = s.vocab, hd = s.hidden / s.heads, kv = s.kv_heads * hd;
    nlohmann::json cfg = {{"model_type", "llama"}, {"hidden_size", d}, {"intermediate_size", I},
                          {"num_hidden_layers", s.layers}, {"num_attention_heads", s.heads},
                          {"num_key_value_heads", s.kv_heads}, {"vocab_size", V}, {"rms_norm_eps", 1e-5},
                          {"rope_theta", 10000.0}, {"hidden_act", "silu"}, {"tie_word_embeddings", false},
                          {"max_position_embeddings", 4096}};
    massact::io::write_text_file_atomic(dir + "/config.json", cfg.dump(1));
    using massact::io::DType;
    std::vector<massact::io::SafetensorsStreamWriter::Entry> e;
    e.push_back({"model.embed_tokens.weight", DType::BF16, {V, d}});
    for (int l = 0; l < s.layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        e.push_back({p + "input_layernorm.weight", DType::BF16, {d}});
        e.push_back({p + "self_attn.q_proj.weight", DType::BF16, {d, d}});
        e.push_back({p + "self_attn.k_proj.weight", DType::BF16, {kv, d}});
        e.push_back({p + "self_attn.v_proj.weight", DType::BF16, {kv, d}});
        e.push_back({p + "self_attn.o_proj.weight", DType::BF16, {d, d}});
        e.push_back({p + "post_attention_layernorm.weight", DType::BF16, {d}});
        e.push_back({p + "mlp.gate_proj.weight", DType::BF16, {I, d}});
        e.push_back({p + "mlp.up_proj.weight", DType::BF16, {I, d}});
        e.push_back({p + "mlp.down_proj.weight", DType::BF16, {d, I}});
    }
    e.push_back({"model.norm.weight", DType::BF16, {d}});
    e.push_back({"lm_head.weight", DType::BF16, {V, d}});
    massact::io::SafetensorsStreamWriter w(dir + "/model.safetensors", e);
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    std::vector<std::uint16_t> buf;
    std::int64_t params = 0;
    for (const auto& t : e) {
        std::int64_t n = 1;
        for (auto v : t.shape) n *= v;
        params += n;
        buf.resize(static_cast<std::size_t>(n));
        const bool norm = t.shape.size() == 1;
        for (auto& b : buf) {
            if (norm) {
                b = massact::float_to_bf16(1.0f);
                continue;
            }
            x ^= x << 13;  // xorshift64
            x ^= x >> 7;
            x ^= x << 17;
            const float u = static_cast<float>(static_cast<std::int32_t>(x >> 32)) * (0.035f / 2147483648.0f);
            b = massact::float_to_bf16(u);
        }
        w.write_next(buf.data(), buf.size() * 2);
    }
    w.finish();
    return params;
}

}  // namespace bench

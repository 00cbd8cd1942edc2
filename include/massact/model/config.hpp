// massact/model/config.hpp - the architecture of a checkpoint, read from config.json.
//
// Supported model_type: gpt2, llama, mistral, qwen2 (shared/docs/formats.md).
// Anything massact would compute differently from Hugging Face is refused with
// an error naming the field and its value.
#pragma once

#include "massact/core/error.hpp"
#include "massact/io/json_file.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <string>
#include <vector>

namespace massact {

enum class Family { GPT2, Llama };
enum class NormKind { RMSNorm, LayerNorm };
enum class ActivationFn { SiLU, GeluTanh, GeluErf };
enum class RopeScaling { None, Linear, Llama3 };
/// An extra attention slot every query sees (Sun et al. 2024 Sec. 6; gpt-oss).
enum class SinkKind { None, KVBias, Logit };

struct ModelConfig {
    std::string model_type;       // "gpt2", "llama", "mistral", "qwen2"
    Family family = Family::Llama;
    int vocab_size = 0;           // V
    int hidden_size = 0;          // d
    int num_layers = 0;           // L
    int num_heads = 0;            // H
    int num_kv_heads = 0;         // KV (GQA: query head h uses KV head h / (H / KV))
    int head_dim = 0;             // hd
    int intermediate_size = 0;    // MLP width
    int max_positions = 0;        // GPT-2 n_positions (learned positions); informative for RoPE models
    NormKind norm = NormKind::RMSNorm;
    double norm_eps = 1e-5;
    ActivationFn act = ActivationFn::SiLU;
    bool qkv_bias = false;        // q/k/v projections have biases
    bool o_bias = false;          // output projection has a bias
    bool mlp_bias = false;
    bool tie_embeddings = false;  // logits use the token embedding matrix
    bool scale_attn = true;       // scores / sqrt(head_dim) (GPT-2 scale_attn_weights)
    // RoPE (Llama family)
    double rope_theta = 10000.0;
    RopeScaling rope_scaling = RopeScaling::None;
    double rope_factor = 1.0;
    double rope_low_freq_factor = 1.0;
    double rope_high_freq_factor = 4.0;
    double rope_original_max_positions = 8192.0;
    /// Per-layer sliding window W (0 = full causal): key j visible to query i iff i-W < j <= i.
    std::vector<int> sliding_window;
    SinkKind sink = SinkKind::None;

    int q_dim() const { return num_heads * head_dim; }
    int kv_dim() const { return num_kv_heads * head_dim; }

    /// RoPE inverse frequencies (length head_dim/2), with linear or llama3 scaling applied.
    std::vector<double> rope_inv_freq() const {
        const int half = head_dim / 2;
        std::vector<double> inv(static_cast<std::size_t>(half));
        const double pi = 3.14159265358979323846;
        for (int j = 0; j < half; ++j) {
            double f = std::pow(rope_theta, -2.0 * j / head_dim);
            if (rope_scaling == RopeScaling::Linear) {
                f /= rope_factor;
            } else if (rope_scaling == RopeScaling::Llama3) {
                const double old = rope_original_max_positions;
                const double low_wavelen = old / rope_low_freq_factor;
                const double high_wavelen = old / rope_high_freq_factor;
                const double wavelen = 2 * pi / f;
                if (wavelen < high_wavelen) {
                    // high frequency: keep
                } else if (wavelen > low_wavelen) {
                    f /= rope_factor;
                } else {
                    const double s = (old / wavelen - rope_low_freq_factor) /
                                     (rope_high_freq_factor - rope_low_freq_factor);
                    f = (1 - s) * f / rope_factor + s * f;
                }
            }
            inv[static_cast<std::size_t>(j)] = f;
        }
        return inv;
    }
};

namespace detail {

class ConfigReader {
public:
    ConfigReader(const nlohmann::json& j, std::string file) : j_(j), file_(std::move(file)) {}

    [[noreturn]] void fail(const std::string& field, const std::string& msg) const {
        throw Error(file_ + ": field \"" + field + "\": " + msg);
    }
    bool present(const std::string& k) const { return j_.contains(k) && !j_[k].is_null(); }
    int get_int(const std::string& k) const {
        if (!present(k)) fail(k, "missing (expected a positive integer)");
        return positive(k, j_[k]);
    }
    int get_int(const std::string& k, int dflt) const { return present(k) ? positive(k, j_[k]) : dflt; }
    double get_num(const std::string& k, double dflt) const {
        if (!present(k)) return dflt;
        if (!j_[k].is_number()) fail(k, "expected a number, found " + j_[k].dump());
        return j_[k].get<double>();
    }
    bool get_bool(const std::string& k, bool dflt) const {
        if (!present(k)) return dflt;
        if (!j_[k].is_boolean()) fail(k, "expected true or false, found " + j_[k].dump());
        return j_[k].get<bool>();
    }
    std::string get_str(const std::string& k, const std::string& dflt) const {
        if (!present(k)) return dflt;
        if (!j_[k].is_string()) fail(k, "expected a string, found " + j_[k].dump());
        return j_[k].get<std::string>();
    }
    const nlohmann::json& json() const { return j_; }

private:
    int positive(const std::string& k, const nlohmann::json& v) const {
        if (!v.is_number_integer() || v.get<long long>() <= 0 || v.get<long long>() > 1LL << 30)
            fail(k, "expected a positive integer, found " + v.dump());
        return static_cast<int>(v.get<long long>());
    }
    const nlohmann::json& j_;
    std::string file_;
};

inline void read_rope(const ConfigReader& r, ModelConfig& c, const std::string& file) {
    c.rope_theta = r.get_num("rope_theta", 10000.0);
    // Newer files: rope_parameters {rope_type, rope_theta, factor, ...}; older: rope_scaling {type|rope_type, ...}.
    const nlohmann::json* p = nullptr;
    std::string key;
    for (const char* k : {"rope_parameters", "rope_scaling"}) {
        if (r.present(k)) {
            if (!r.json()[k].is_object()) r.fail(k, "expected an object or null, found " + r.json()[k].dump());
            p = &r.json()[k];
            key = k;
            break;
        }
    }
    if (!p) return;
    const auto& o = *p;
    if (o.contains("rope_theta") && !o["rope_theta"].is_null()) {
        if (!o["rope_theta"].is_number()) r.fail(key + ".rope_theta", "expected a number, found " + o["rope_theta"].dump());
        c.rope_theta = o["rope_theta"].get<double>();
    }
    std::string type = "default";
    for (const char* k : {"rope_type", "type"})
        if (o.contains(k) && o[k].is_string()) { type = o[k].get<std::string>(); break; }
    auto num = [&](const char* k, double dflt) {
        if (!o.contains(k) || o[k].is_null()) return dflt;
        if (!o[k].is_number()) r.fail(key + "." + k, "expected a number, found " + o[k].dump());
        return o[k].get<double>();
    };
    if (type == "default") {
        c.rope_scaling = RopeScaling::None;
    } else if (type == "linear") {
        c.rope_scaling = RopeScaling::Linear;
        c.rope_factor = num("factor", 1.0);
    } else if (type == "llama3") {
        c.rope_scaling = RopeScaling::Llama3;
        c.rope_factor = num("factor", 8.0);
        c.rope_low_freq_factor = num("low_freq_factor", 1.0);
        c.rope_high_freq_factor = num("high_freq_factor", 4.0);
        c.rope_original_max_positions = num("original_max_position_embeddings", 8192.0);
        if (c.rope_high_freq_factor <= c.rope_low_freq_factor)
            r.fail(key + ".high_freq_factor", "must exceed low_freq_factor");
    } else {
        throw Error(file + ": field \"" + key + ".rope_type\": unsupported value \"" + type +
                    "\" (massact supports default, linear, llama3)");
    }
    if (c.rope_factor <= 0) r.fail(key + ".factor", "must be positive");
}

}  // namespace detail

/// Parse a config.json object. `file` is used in error messages.
inline ModelConfig parse_config(const nlohmann::json& j, const std::string& file = "config.json") {
    if (!j.is_object()) throw Error(file + ": expected a JSON object");
    detail::ConfigReader r(j, file);
    ModelConfig c;
    if (!r.present("model_type")) r.fail("model_type", "missing (expected gpt2, llama, mistral or qwen2)");
    c.model_type = r.get_str("model_type", "");
    if (c.model_type == "gpt2") {
        c.family = Family::GPT2;
        c.hidden_size = r.get_int("n_embd");
        c.num_layers = r.get_int("n_layer");
        c.num_heads = r.get_int("n_head");
        c.num_kv_heads = c.num_heads;
        c.max_positions = r.get_int("n_positions");
        c.vocab_size = r.get_int("vocab_size");
        c.intermediate_size = r.get_int("n_inner", 4 * c.hidden_size);
        c.norm = NormKind::LayerNorm;
        c.norm_eps = r.get_num("layer_norm_epsilon", 1e-5);
        const std::string act = r.get_str("activation_function", "gelu_new");
        if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast")
            c.act = ActivationFn::GeluTanh;
        else if (act == "gelu")
            c.act = ActivationFn::GeluErf;
        else
            r.fail("activation_function", "unsupported value \"" + act + "\" (expected gelu_new or gelu)");
        c.qkv_bias = c.o_bias = c.mlp_bias = true;
        c.tie_embeddings = r.get_bool("tie_word_embeddings", true);
        c.scale_attn = r.get_bool("scale_attn_weights", true);
        if (r.get_bool("scale_attn_by_inverse_layer_idx", false))
            r.fail("scale_attn_by_inverse_layer_idx", "unsupported value true");
        if (r.get_bool("add_cross_attention", false)) r.fail("add_cross_attention", "unsupported value true");
        if (c.hidden_size % c.num_heads != 0) r.fail("n_head", "does not divide n_embd");
        c.head_dim = c.hidden_size / c.num_heads;
    } else if (c.model_type == "llama" || c.model_type == "mistral" || c.model_type == "qwen2") {
        c.family = Family::Llama;
        c.hidden_size = r.get_int("hidden_size");
        c.num_layers = r.get_int("num_hidden_layers");
        c.num_heads = r.get_int("num_attention_heads");
        c.num_kv_heads = r.get_int("num_key_value_heads", c.num_heads);
        c.vocab_size = r.get_int("vocab_size");
        c.intermediate_size = r.get_int("intermediate_size");
        c.max_positions = r.get_int("max_position_embeddings", 0);
        if (!r.present("head_dim") && c.hidden_size % c.num_heads != 0)
            r.fail("num_attention_heads", "does not divide hidden_size and no head_dim is given");
        c.head_dim = r.get_int("head_dim", c.hidden_size / c.num_heads);
        if (c.head_dim % 2 != 0) r.fail("head_dim", "must be even for RoPE, found " + std::to_string(c.head_dim));
        if (c.num_heads % c.num_kv_heads != 0)
            r.fail("num_key_value_heads", "value " + std::to_string(c.num_kv_heads) + " does not divide num_attention_heads " +
                                              std::to_string(c.num_heads));
        c.norm = NormKind::RMSNorm;
        c.norm_eps = r.get_num("rms_norm_eps", 1e-6);
        const std::string act = r.get_str("hidden_act", "silu");
        if (act != "silu" && act != "swish") r.fail("hidden_act", "unsupported value \"" + act + "\" (expected silu)");
        c.act = ActivationFn::SiLU;
        c.tie_embeddings = r.get_bool("tie_word_embeddings", false);
        if (c.model_type == "qwen2") {
            c.qkv_bias = true;
            c.o_bias = false;
            c.mlp_bias = false;
        } else if (c.model_type == "llama") {
            c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
            c.mlp_bias = r.get_bool("mlp_bias", false);
        }
        const double prf = r.get_num("partial_rotary_factor", 1.0);
        if (prf != 1.0) r.fail("partial_rotary_factor", "unsupported value " + std::to_string(prf));
        detail::read_rope(r, c, file);
        // Sliding windows: mistral's sliding_window; qwen2's use_sliding_window/max_window_layers; or layer_types.
        c.sliding_window.assign(static_cast<std::size_t>(c.num_layers), 0);
        int window = 0;
        if (r.present("sliding_window")) window = r.get_int("sliding_window", 0);
        if (c.model_type == "mistral") {
            for (auto& w : c.sliding_window) w = window;
        } else if (c.model_type == "qwen2" && r.get_bool("use_sliding_window", false)) {
            const int from = r.present("max_window_layers") ? static_cast<int>(r.get_num("max_window_layers", 0)) : 0;
            for (int l = from; l < c.num_layers; ++l) c.sliding_window[static_cast<std::size_t>(l)] = window;
        }
        if (r.present("layer_types") && window > 0 && c.model_type != "llama") {
            const auto& lt = j["layer_types"];
            if (!lt.is_array() || static_cast<int>(lt.size()) != c.num_layers)
                r.fail("layer_types", "expected a list of " + std::to_string(c.num_layers) + " strings");
            for (int l = 0; l < c.num_layers; ++l) {
                const auto& t = lt[static_cast<std::size_t>(l)];
                const std::string s = t.is_string() ? t.get<std::string>() : t.dump();
                if (s == "sliding_attention") c.sliding_window[static_cast<std::size_t>(l)] = window;
                else if (s == "full_attention") c.sliding_window[static_cast<std::size_t>(l)] = 0;
                else r.fail("layer_types", "unsupported value " + t.dump());
            }
        }
    } else {
        r.fail("model_type", "unsupported value \"" + c.model_type + "\" (expected gpt2, llama, mistral or qwen2)");
    }
    if (c.sliding_window.empty()) c.sliding_window.assign(static_cast<std::size_t>(c.num_layers), 0);
    if (r.present("attention_sink")) {
        const auto& s = j["attention_sink"];
        const std::string type = s.is_object() && s.contains("type") && s["type"].is_string() ? s["type"].get<std::string>() : s.dump();
        if (type == "kv_bias") c.sink = SinkKind::KVBias;
        else if (type == "logit") c.sink = SinkKind::Logit;
        else if (type == "none") c.sink = SinkKind::None;
        else r.fail("attention_sink.type", "unsupported value " + (s.is_object() && s.contains("type") ? s["type"].dump() : s.dump()) +
                                               " (expected kv_bias or logit)");
    }
    return c;
}

inline ModelConfig load_config(const std::string& model_dir) {
    const std::string file = model_dir + "/config.json";
    return parse_config(io::read_json_file(file), file);
}

}  // namespace massact

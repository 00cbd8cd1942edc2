// The whole family, not just the two fixtures: small random checkpoints of every supported
// model_type and option, written by this test, run by massact and by a naive double-precision
// transformer written here from docs/formats.md.
#include "common.hpp"

#include <fstream>
#include <map>

using namespace massact;
using nlohmann::json;

namespace {

using Tensor = std::vector<double>;
struct Ckpt {
    std::map<std::string, Tensor> t;
    std::map<std::string, std::vector<std::int64_t>> shape;
};

/// Random checkpoint tensors, stored in `dtype`, written (optionally in two shards) with config.json.
struct Builder {
    std::mt19937 g{7};
    Ckpt ck;
    void add(const std::string& n, std::vector<std::int64_t> s, double scale, double mean = 0.0) {
        std::normal_distribution<double> d(mean, scale);
        std::int64_t cnt = 1;
        for (auto v : s) cnt *= v;
        Tensor x(static_cast<std::size_t>(cnt));
        for (auto& v : x) v = d(g);
        ck.t[n] = x;
        ck.shape[n] = s;
    }
    void write(const std::string& dir, const json& cfg, io::DType dtype, bool sharded) {
        std::ofstream(dir + "/config.json") << cfg.dump(1);
        io::SafetensorsWriter w[2];
        json index = {{"metadata", json::object()}, {"weight_map", json::object()}};
        int i = 0;
        for (auto& kv : ck.t) {
            auto& x = kv.second;
            io::SafetensorsWriter& out = w[sharded ? (i++ % 2) : 0];
            // Round to the stored dtype so the reference sees exactly what massact reads.
            if (dtype == io::DType::F32) {
                std::vector<float> f(x.begin(), x.end());
                for (std::size_t k = 0; k < x.size(); ++k) x[k] = f[k];
                out.add_f32(kv.first, ck.shape[kv.first], f.data());
            } else {
                std::vector<std::uint16_t> h(x.size());
                for (std::size_t k = 0; k < x.size(); ++k) {
                    h[k] = dtype == io::DType::BF16 ? float_to_bf16(float(x[k])) : float_to_f16(float(x[k]));
                    x[k] = dtype == io::DType::BF16 ? bf16_to_float(h[k]) : f16_to_float(h[k]);
                }
                out.add_raw(kv.first, dtype, ck.shape[kv.first], h.data());
            }
            index["weight_map"][kv.first] = sharded && (i % 2 == 0) ? "model-2.safetensors" : "model-1.safetensors";
        }
        if (sharded) {
            w[0].write(dir + "/model-1.safetensors");
            w[1].write(dir + "/model-2.safetensors");
            std::ofstream(dir + "/model.safetensors.index.json") << index.dump();
        } else {
            w[0].write(dir + "/model.safetensors");
        }
    }
};

// ---- naive double-precision transformer ------------------------------------------
struct Ref {
    std::vector<RowMatrixD> resid_post;  // per layer [T, d]
    RowMatrixD logits;
};

struct Spec {
    bool gpt2 = false;
    int d = 0, L = 0, H = 0, KV = 0, hd = 0, I = 0, V = 0, window = 0;
    bool qkv_bias = false, o_bias = false, mlp_bias = false, tied = false, gelu_erf = false;
    double eps = 1e-5;
    std::vector<double> inv_freq;
    std::string prefix;  // GPT-2 tensor prefix
    std::string sink;    // "", "kv_bias", "logit"
};

RowMatrixD lin(const RowMatrixD& x, const Tensor& w, int out, int in, const Tensor* b) {  // nn.Linear [out, in]
    RowMatrixD y = RowMatrixD::Zero(x.rows(), out);
    for (Index t = 0; t < x.rows(); ++t)
        for (int o = 0; o < out; ++o) {
            double s = b ? (*b)[static_cast<std::size_t>(o)] : 0.0;
            for (int i = 0; i < in; ++i) s += x(t, i) * w[static_cast<std::size_t>(o * in + i)];
            y(t, o) = s;
        }
    return y;
}
RowMatrixD conv1d(const RowMatrixD& x, const Tensor& w, int in, int out, const Tensor& b) {  // Conv1D [in, out]
    RowMatrixD y = RowMatrixD::Zero(x.rows(), out);
    for (Index t = 0; t < x.rows(); ++t)
        for (int o = 0; o < out; ++o) {
            double s = b[static_cast<std::size_t>(o)];
            for (int i = 0; i < in; ++i) s += x(t, i) * w[static_cast<std::size_t>(i * out + o)];
            y(t, o) = s;
        }
    return y;
}
RowMatrixD norm(const RowMatrixD& x, const Tensor& w, const Tensor* b, double eps) {
    RowMatrixD y(x.rows(), x.cols());
    for (Index t = 0; t < x.rows(); ++t) {
        const double n = double(x.cols());
        if (b) {
            const double mean = x.row(t).sum() / n;
            const double var = (x.row(t).array() - mean).square().sum() / n;
            for (Index i = 0; i < x.cols(); ++i)
                y(t, i) = (x(t, i) - mean) / std::sqrt(var + eps) * w[static_cast<std::size_t>(i)] + (*b)[static_cast<std::size_t>(i)];
        } else {
            const double ms = x.row(t).squaredNorm() / n;
            for (Index i = 0; i < x.cols(); ++i) y(t, i) = x(t, i) / std::sqrt(ms + eps) * w[static_cast<std::size_t>(i)];
        }
    }
    return y;
}

Ref reference(const Spec& s, const Ckpt& ck, const std::vector<std::int64_t>& ids) {
    auto W = [&](const std::string& n) -> const Tensor& { return ck.t.at(n); };
    const int T = static_cast<int>(ids.size());
    RowMatrixD x(T, s.d);
    const std::string emb = s.gpt2 ? s.prefix + "wte.weight" : "model.embed_tokens.weight";
    for (int t = 0; t < T; ++t)
        for (int i = 0; i < s.d; ++i) {
            x(t, i) = W(emb)[static_cast<std::size_t>(ids[t] * s.d + i)];
            if (s.gpt2) x(t, i) += W(s.prefix + "wpe.weight")[static_cast<std::size_t>(t * s.d + i)];
        }
    Ref r;
    for (int l = 0; l < s.L; ++l) {
        RowMatrixD q, k, v;
        const std::string p = s.gpt2 ? s.prefix + "h." + std::to_string(l) + "." : "model.layers." + std::to_string(l) + ".";
        if (s.gpt2) {
            const RowMatrixD n = norm(x, W(p + "ln_1.weight"), &W(p + "ln_1.bias"), s.eps);
            const RowMatrixD qkv = conv1d(n, W(p + "attn.c_attn.weight"), s.d, 3 * s.d, W(p + "attn.c_attn.bias"));
            q = qkv.leftCols(s.d);
            k = qkv.middleCols(s.d, s.d);
            v = qkv.rightCols(s.d);
        } else {
            const RowMatrixD n = norm(x, W(p + "input_layernorm.weight"), nullptr, s.eps);
            auto bias = [&](const char* nm) { return s.qkv_bias ? &W(p + "self_attn." + nm + ".bias") : nullptr; };
            q = lin(n, W(p + "self_attn.q_proj.weight"), s.H * s.hd, s.d, bias("q_proj"));
            k = lin(n, W(p + "self_attn.k_proj.weight"), s.KV * s.hd, s.d, bias("k_proj"));
            v = lin(n, W(p + "self_attn.v_proj.weight"), s.KV * s.hd, s.d, bias("v_proj"));
            auto rot = [&](RowMatrixD& m, int heads) {
                const int half = s.hd / 2;
                for (int t = 0; t < T; ++t)
                    for (int h = 0; h < heads; ++h)
                        for (int j = 0; j < half; ++j) {
                            const double a = t * s.inv_freq[static_cast<std::size_t>(j)];
                            const double x1 = m(t, h * s.hd + j), x2 = m(t, h * s.hd + j + half);
                            m(t, h * s.hd + j) = x1 * std::cos(a) - x2 * std::sin(a);
                            m(t, h * s.hd + j + half) = x2 * std::cos(a) + x1 * std::sin(a);
                        }
            };
            rot(q, s.H);
            rot(k, s.KV);
        }
        RowMatrixD z = RowMatrixD::Zero(T, s.H * s.hd);
        for (int h = 0; h < s.H; ++h) {
            const int g = h / (s.H / s.KV);
            for (int i = 0; i < T; ++i) {
                std::vector<double> sc(static_cast<std::size_t>(i + 1), -INFINITY);
                for (int j = 0; j <= i; ++j) {
                    if (s.window && j <= i - s.window) continue;
                    double dot = 0;
                    for (int e = 0; e < s.hd; ++e) dot += q(i, h * s.hd + e) * k(j, g * s.hd + e);
                    sc[static_cast<std::size_t>(j)] = dot / std::sqrt(double(s.hd));
                }
                double extra = -INFINITY;
                if (s.sink == "logit") extra = W(p + "self_attn.sinks")[static_cast<std::size_t>(h)];
                if (s.sink == "kv_bias") {
                    double dot = 0;
                    for (int e = 0; e < s.hd; ++e) dot += q(i, h * s.hd + e) * W(p + "self_attn.k_bias")[static_cast<std::size_t>(g * s.hd + e)];
                    extra = dot / std::sqrt(double(s.hd));
                }
                double m = extra;
                for (double v2 : sc) m = std::max(m, v2);
                double den = std::exp(extra - m);
                for (double v2 : sc) den += std::exp(v2 - m);
                for (int j = 0; j <= i; ++j)
                    for (int e = 0; e < s.hd; ++e) z(i, h * s.hd + e) += std::exp(sc[static_cast<std::size_t>(j)] - m) / den * v(j, g * s.hd + e);
                if (s.sink == "kv_bias")
                    for (int e = 0; e < s.hd; ++e)
                        z(i, h * s.hd + e) += std::exp(extra - m) / den * W(p + "self_attn.v_bias")[static_cast<std::size_t>(g * s.hd + e)];
            }
        }
        if (s.gpt2) {
            x += conv1d(z, W(p + "attn.c_proj.weight"), s.d, s.d, W(p + "attn.c_proj.bias"));
            const RowMatrixD n = norm(x, W(p + "ln_2.weight"), &W(p + "ln_2.bias"), s.eps);
            RowMatrixD hmid = conv1d(n, W(p + "mlp.c_fc.weight"), s.d, s.I, W(p + "mlp.c_fc.bias"));
            for (Index i = 0; i < hmid.size(); ++i) {
                const double a = hmid.data()[i];
                hmid.data()[i] = s.gelu_erf ? 0.5 * a * (1 + std::erf(a / std::sqrt(2.0)))
                                            : 0.5 * a * (1 + std::tanh(std::sqrt(2 / M_PI) * (a + 0.044715 * a * a * a)));
            }
            x += conv1d(hmid, W(p + "mlp.c_proj.weight"), s.I, s.d, W(p + "mlp.c_proj.bias"));
        } else {
            x += lin(z, W(p + "self_attn.o_proj.weight"), s.d, s.H * s.hd, s.o_bias ? &W(p + "self_attn.o_proj.bias") : nullptr);
            const RowMatrixD n = norm(x, W(p + "post_attention_layernorm.weight"), nullptr, s.eps);
            auto mb = [&](const char* nm) { return s.mlp_bias ? &W(p + "mlp." + nm + ".bias") : nullptr; };
            RowMatrixD gt = lin(n, W(p + "mlp.gate_proj.weight"), s.I, s.d, mb("gate_proj"));
            const RowMatrixD up = lin(n, W(p + "mlp.up_proj.weight"), s.I, s.d, mb("up_proj"));
            for (Index i = 0; i < gt.size(); ++i) gt.data()[i] = gt.data()[i] / (1 + std::exp(-gt.data()[i])) * up.data()[i];
            x += lin(gt, W(p + "mlp.down_proj.weight"), s.d, s.I, mb("down_proj"));
        }
        r.resid_post.push_back(x);
    }
    const RowMatrixD n = s.gpt2 ? norm(x, W(s.prefix + "ln_f.weight"), &W(s.prefix + "ln_f.bias"), s.eps)
                                : norm(x, W("model.norm.weight"), nullptr, s.eps);
    r.logits = lin(n, s.tied ? W(emb) : W("lm_head.weight"), s.V, s.d, nullptr);
    return r;
}

void build_llama_like(Builder& b, const Spec& s) {
    b.add("model.embed_tokens.weight", {s.V, s.d}, 1.0);
    for (int l = 0; l < s.L; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        b.add(p + "input_layernorm.weight", {s.d}, 0.1, 1.0);
        b.add(p + "post_attention_layernorm.weight", {s.d}, 0.1, 1.0);
        b.add(p + "self_attn.q_proj.weight", {s.H * s.hd, s.d}, 0.3);
        b.add(p + "self_attn.k_proj.weight", {s.KV * s.hd, s.d}, 0.3);
        b.add(p + "self_attn.v_proj.weight", {s.KV * s.hd, s.d}, 0.3);
        b.add(p + "self_attn.o_proj.weight", {s.d, s.H * s.hd}, 0.2);
        if (s.qkv_bias) {
            b.add(p + "self_attn.q_proj.bias", {s.H * s.hd}, 0.2);
            b.add(p + "self_attn.k_proj.bias", {s.KV * s.hd}, 0.2);
            b.add(p + "self_attn.v_proj.bias", {s.KV * s.hd}, 0.2);
        }
        if (s.o_bias) b.add(p + "self_attn.o_proj.bias", {s.d}, 0.2);
        b.add(p + "mlp.gate_proj.weight", {s.I, s.d}, 0.2);
        b.add(p + "mlp.up_proj.weight", {s.I, s.d}, 0.2);
        b.add(p + "mlp.down_proj.weight", {s.d, s.I}, 0.2);
        if (s.mlp_bias) {
            b.add(p + "mlp.gate_proj.bias", {s.I}, 0.2);
            b.add(p + "mlp.up_proj.bias", {s.I}, 0.2);
            b.add(p + "mlp.down_proj.bias", {s.d}, 0.2);
        }
        if (s.sink == "logit") b.add(p + "self_attn.sinks", {s.H}, 1.0);
        if (s.sink == "kv_bias") {
            b.add(p + "self_attn.k_bias", {s.KV, s.hd}, 0.5);
            b.add(p + "self_attn.v_bias", {s.KV, s.hd}, 0.5);
        }
    }
    b.add("model.norm.weight", {s.d}, 0.1, 1.0);
    if (!s.tied) b.add("lm_head.weight", {s.V, s.d}, 0.3);
}

/// Run massact on the checkpoint in `dir` and compare every resid_post and the logits with `r`.
void check_model(const std::string& dir, const std::vector<std::int64_t>& ids, const Ref& r) {
    const Transformer m(dir);
    TokenBatch b(1, static_cast<Index>(ids.size()));
    for (std::size_t t = 0; t < ids.size(); ++t) b(0, static_cast<Index>(t)) = ids[t];
    std::vector<RowMatrixF> resid;
    Hooks h;
    h.add("*hook_resid_post", [&](Activation& a) { resid.push_back(a.sequence(0)); });
    const RowMatrixF logits = m.forward(b, h);
    REQUIRE(resid.size() == r.resid_post.size());
    for (std::size_t l = 0; l < resid.size(); ++l) {
        CAPTURE(l);
        CHECK(test::max_abs_diff(resid[l], r.resid_post[l]) / r.resid_post[l].cwiseAbs().maxCoeff() < 2e-5);
    }
    CHECK(test::max_abs_diff(logits, r.logits) / r.logits.cwiseAbs().maxCoeff() < 2e-5);
}

void compare(const std::string& dir, const Spec& s, const Ckpt& ck) {
    std::vector<std::int64_t> ids;
    for (int t = 0; t < 11; ++t) ids.push_back((t * 37 + 5) % s.V);
    check_model(dir, ids, reference(s, ck, ids));
}

std::vector<double> plain_inv_freq(double theta, int hd) {
    std::vector<double> v;
    for (int j = 0; j < hd / 2; ++j) v.push_back(std::pow(theta, -2.0 * j / hd));
    return v;
}

}  // namespace

TEST_CASE("qwen2: GQA, q/k/v biases, tied embeddings, sharded F32 checkpoint") {
    Spec s;
    s.d = 32; s.L = 2; s.H = 4; s.KV = 2; s.hd = 8; s.I = 48; s.V = 64; s.qkv_bias = true; s.tied = true; s.eps = 1e-6;
    s.inv_freq = plain_inv_freq(1e6, s.hd);
    Builder b;
    build_llama_like(b, s);
    const std::string dir = test::temp_dir("qwen2");
    b.write(dir, {{"model_type", "qwen2"}, {"hidden_size", 32}, {"intermediate_size", 48}, {"num_hidden_layers", 2},
                  {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"vocab_size", 64}, {"rms_norm_eps", 1e-6},
                  {"rope_theta", 1e6}, {"tie_word_embeddings", true}, {"use_sliding_window", false}, {"sliding_window", 4}},
            io::DType::F32, true);
    compare(dir, s, b.ck);
}

TEST_CASE("mistral: sliding window, explicit head_dim != hidden/heads, BF16, rope_parameters") {
    Spec s;
    s.d = 32; s.L = 2; s.H = 4; s.KV = 1; s.hd = 12; s.I = 40; s.V = 50; s.window = 3;
    s.inv_freq = plain_inv_freq(5e4, s.hd);
    Builder b;
    build_llama_like(b, s);
    const std::string dir = test::temp_dir("mistral");
    b.write(dir, {{"model_type", "mistral"}, {"hidden_size", 32}, {"intermediate_size", 40}, {"num_hidden_layers", 2},
                  {"num_attention_heads", 4}, {"num_key_value_heads", 1}, {"head_dim", 12}, {"vocab_size", 50},
                  {"rms_norm_eps", 1e-5}, {"sliding_window", 3}, {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 5e4}}}},
            io::DType::BF16, false);
    compare(dir, s, b.ck);
}

TEST_CASE("llama: llama3 rope scaling, attention and MLP biases, F16") {
    Spec s;
    s.d = 32; s.L = 2; s.H = 2; s.KV = 2; s.hd = 16; s.I = 40; s.V = 40; s.qkv_bias = s.o_bias = s.mlp_bias = true;
    // llama3 scaling written out again from docs/formats.md with a small original context.
    const double old = 16, lo = 1, hi = 4, factor = 8;
    for (double f : plain_inv_freq(1e4, s.hd)) {
        const double wl = 2 * M_PI / f;
        if (wl < old / hi) s.inv_freq.push_back(f);
        else if (wl > old / lo) s.inv_freq.push_back(f / factor);
        else {
            const double sm = (old / wl - lo) / (hi - lo);
            s.inv_freq.push_back((1 - sm) * f / factor + sm * f);
        }
    }
    Builder b;
    build_llama_like(b, s);
    const std::string dir = test::temp_dir("llama3");
    b.write(dir, {{"model_type", "llama"}, {"hidden_size", 32}, {"intermediate_size", 40}, {"num_hidden_layers", 2},
                  {"num_attention_heads", 2}, {"vocab_size", 40}, {"rms_norm_eps", 1e-5}, {"attention_bias", true},
                  {"mlp_bias", true}, {"rope_theta", 1e4},
                  {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                                    {"original_max_position_embeddings", 16}}}},
            io::DType::F16, false);
    compare(dir, s, b.ck);
}

TEST_CASE("attention sinks: learned sink logits and explicit key/value bias") {
    for (const char* sink : {"logit", "kv_bias"}) {
        CAPTURE(sink);
        Spec s;
        s.d = 32; s.L = 2; s.H = 4; s.KV = 2; s.hd = 8; s.I = 40; s.V = 30; s.sink = sink;
        s.inv_freq = plain_inv_freq(1e4, s.hd);
        Builder b;
        build_llama_like(b, s);
        const std::string dir = test::temp_dir("sink");
        b.write(dir, {{"model_type", "llama"}, {"hidden_size", 32}, {"intermediate_size", 40}, {"num_hidden_layers", 2},
                      {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"vocab_size", 30}, {"rms_norm_eps", 1e-5},
                      {"attention_sink", {{"type", sink}}}},
                io::DType::BF16, false);
        compare(dir, s, b.ck);
    }
}

TEST_CASE("gpt2: no 'transformer.' prefix, erf GELU") {
    Spec s;
    s.gpt2 = true; s.d = 24; s.L = 2; s.H = 3; s.KV = 3; s.hd = 8; s.I = 96; s.V = 45; s.gelu_erf = true; s.tied = true;
    Builder b;
    b.add("wte.weight", {s.V, s.d}, 1.0);
    b.add("wpe.weight", {16, s.d}, 0.5);
    for (int l = 0; l < s.L; ++l) {
        const std::string p = "h." + std::to_string(l) + ".";
        b.add(p + "ln_1.weight", {s.d}, 0.1, 1.0);
        b.add(p + "ln_1.bias", {s.d}, 0.1);
        b.add(p + "attn.c_attn.weight", {s.d, 3 * s.d}, 0.3);
        b.add(p + "attn.c_attn.bias", {3 * s.d}, 0.1);
        b.add(p + "attn.c_proj.weight", {s.d, s.d}, 0.2);
        b.add(p + "attn.c_proj.bias", {s.d}, 0.1);
        b.add(p + "ln_2.weight", {s.d}, 0.1, 1.0);
        b.add(p + "ln_2.bias", {s.d}, 0.1);
        b.add(p + "mlp.c_fc.weight", {s.d, s.I}, 0.2);
        b.add(p + "mlp.c_fc.bias", {s.I}, 0.1);
        b.add(p + "mlp.c_proj.weight", {s.I, s.d}, 0.2);
        b.add(p + "mlp.c_proj.bias", {s.d}, 0.1);
    }
    b.add("ln_f.weight", {s.d}, 0.1, 1.0);
    b.add("ln_f.bias", {s.d}, 0.1);
    const std::string dir = test::temp_dir("gpt2");
    b.write(dir, {{"model_type", "gpt2"}, {"n_embd", 24}, {"n_layer", 2}, {"n_head", 3}, {"n_positions", 16},
                  {"vocab_size", 45}, {"activation_function", "gelu"}},
            io::DType::F32, false);
    compare(dir, s, b.ck);
}

// ---- families II: held-out checkpoints (sizes, flags and seeds the Hugging Face fixtures do not have) ----
namespace {

/// The LayerNorm families with a fused or split QKV and a plain MLP, described by their tensor names.
struct Classic {
    std::string type;  // model_type
    int d = 24, L = 2, H = 6, KV = 6, I = 40, V = 50, rotary = 0;
    std::string layout = "concat";          // fused QKV rows: concat, per_head, grouped; "" = q/k/v
    std::string par = "seq";                // seq, one (parallel, one norm), two (parallel, two norms)
    bool interleaved = false, alibi = false, embed_norm = false, lm_bias = false, bias = true, attn_bias = true, norm_bias = true;
    double alibi_max = 8.0;
    std::string act = "gelu";               // gelu (erf), gelu_tanh, relu
    std::string prefix, embed, ln1, ln2, qkv, q, k, v, o, up, down, final_norm, lm_head, layer = "h.{l}.";
    int hd() const { return d / H; }
};

std::string layer_prefix(const Classic& c, int l) {
    std::string p = c.layer;
    p.replace(p.find("{l}"), 3, std::to_string(l));
    return c.prefix + p;
}

void build_classic(Builder& b, const Classic& c) {
    const int hd = c.hd(), qkv = (c.H + 2 * c.KV) * hd;
    auto ln = [&](const std::string& n) {
        b.add(n + ".weight", {c.d}, 0.1, 1.0);
        if (c.norm_bias) b.add(n + ".bias", {c.d}, 0.1);
    };
    auto linear = [&](const std::string& n, int out, int in, bool bias) {
        b.add(n + ".weight", {out, in}, 0.3);
        if (bias) b.add(n + ".bias", {out}, 0.2);
    };
    b.add(c.prefix + c.embed + ".weight", {c.V, c.d}, 1.0);
    if (c.embed_norm) ln(c.prefix + "word_embeddings_layernorm");
    for (int l = 0; l < c.L; ++l) {
        const std::string p = layer_prefix(c, l);
        ln(p + c.ln1);
        if (c.par != "one") ln(p + c.ln2);
        const bool ab = c.bias && c.attn_bias;
        if (c.layout.empty()) {
            linear(p + c.q, c.H * hd, c.d, ab);
            linear(p + c.k, c.KV * hd, c.d, ab);
            linear(p + c.v, c.KV * hd, c.d, ab);
        } else {
            linear(p + c.qkv, qkv, c.d, ab);
        }
        linear(p + c.o, c.d, c.H * hd, ab);
        linear(p + c.up, c.I, c.d, c.bias);
        linear(p + c.down, c.d, c.I, c.bias);
    }
    ln(c.prefix + c.final_norm);
    linear(c.lm_head, c.V, c.d, c.lm_bias);
}

/// The forward written out from docs/formats.md in double precision; resid_post per layer and logits.
Ref classic_reference(const Classic& c, const Ckpt& ck, const std::vector<std::int64_t>& ids) {
    auto W = [&](const std::string& n) -> const Tensor& { return ck.t.at(n); };
    auto B = [&](const std::string& n) { return ck.t.count(n) ? &ck.t.at(n) : nullptr; };
    auto LN = [&](const RowMatrixD& x, const std::string& n) {
        static const Tensor zeros(4096, 0.0);
        return norm(x, W(n + ".weight"), B(n + ".bias") ? B(n + ".bias") : &zeros, 1e-5);
    };
    const int T = static_cast<int>(ids.size()), hd = c.hd(), per = c.H / c.KV;
    RowMatrixD x(T, c.d);
    for (int t = 0; t < T; ++t)
        for (int i = 0; i < c.d; ++i) x(t, i) = W(c.prefix + c.embed + ".weight")[static_cast<std::size_t>(ids[t] * c.d + i)];
    if (c.embed_norm) x = LN(x, c.prefix + "word_embeddings_layernorm");
    // ALiBi slopes as BLOOM's build_alibi_tensor (max bias 8) or MPT's gen_slopes (any max bias).
    std::vector<double> slopes;
    int n2 = 1;
    while (n2 < c.H) n2 *= 2;
    for (int k = 1; k <= n2; ++k) slopes.push_back(std::pow(2.0, -c.alibi_max * k / n2));
    if (n2 != c.H) {
        std::vector<double> s2;
        for (int k = 1; k < n2; k += 2) s2.push_back(slopes[static_cast<std::size_t>(k)]);
        for (int k = 0; k < n2; k += 2) s2.push_back(slopes[static_cast<std::size_t>(k)]);
        slopes = s2;
    }
    Ref r;
    for (int l = 0; l < c.L; ++l) {
        const std::string p = layer_prefix(c, l);
        const RowMatrixD n1 = LN(x, p + c.ln1);
        RowMatrixD q(T, c.H * hd), k(T, c.KV * hd), v(T, c.KV * hd);
        if (c.layout.empty()) {
            q = lin(n1, W(p + c.q + ".weight"), c.H * hd, c.d, B(p + c.q + ".bias"));
            k = lin(n1, W(p + c.k + ".weight"), c.KV * hd, c.d, B(p + c.k + ".bias"));
            v = lin(n1, W(p + c.v + ".weight"), c.KV * hd, c.d, B(p + c.v + ".bias"));
        } else {
            const RowMatrixD f = lin(n1, W(p + c.qkv + ".weight"), (c.H + 2 * c.KV) * hd, c.d, B(p + c.qkv + ".bias"));
            for (int h = 0; h < c.H; ++h) {  // where query head h, and KV head g, sit in the fused rows
                const int g = h / per;
                int qc, kc, vc;
                if (c.layout == "concat") qc = h * hd, kc = c.H * hd + g * hd, vc = (c.H + c.KV) * hd + g * hd;
                else qc = (g * (per + 2) + h % per) * hd, kc = (g * (per + 2) + per) * hd, vc = (g * (per + 2) + per + 1) * hd;
                q.middleCols(h * hd, hd) = f.middleCols(qc, hd);
                k.middleCols(g * hd, hd) = f.middleCols(kc, hd);
                v.middleCols(g * hd, hd) = f.middleCols(vc, hd);
            }
        }
        auto rot = [&](RowMatrixD& m, int heads) {
            const int half = c.rotary / 2;
            for (int t = 0; t < T; ++t)
                for (int h = 0; h < heads; ++h)
                    for (int j = 0; j < half; ++j) {
                        const double a = t * std::pow(10000.0, -2.0 * j / c.rotary);
                        const int i1 = h * hd + (c.interleaved ? 2 * j : j), i2 = h * hd + (c.interleaved ? 2 * j + 1 : j + half);
                        const double x1 = m(t, i1), x2 = m(t, i2);
                        m(t, i1) = x1 * std::cos(a) - x2 * std::sin(a);
                        m(t, i2) = x2 * std::cos(a) + x1 * std::sin(a);
                    }
        };
        if (c.rotary > 0) rot(q, c.H), rot(k, c.KV);
        RowMatrixD z = RowMatrixD::Zero(T, c.H * hd);
        for (int h = 0; h < c.H; ++h)
            for (int i = 0; i < T; ++i) {
                std::vector<double> sc(static_cast<std::size_t>(i + 1));
                double m = -INFINITY, den = 0;
                for (int j = 0; j <= i; ++j) {
                    double dot = 0;
                    for (int e = 0; e < hd; ++e) dot += q(i, h * hd + e) * k(j, (h / per) * hd + e);
                    sc[static_cast<std::size_t>(j)] = dot / std::sqrt(double(hd)) + (c.alibi ? slopes[static_cast<std::size_t>(h)] * j : 0.0);
                    m = std::max(m, sc[static_cast<std::size_t>(j)]);
                }
                for (double s : sc) den += std::exp(s - m);
                for (int j = 0; j <= i; ++j)
                    for (int e = 0; e < hd; ++e) z(i, h * hd + e) += std::exp(sc[static_cast<std::size_t>(j)] - m) / den * v(j, (h / per) * hd + e);
            }
        const RowMatrixD attn = lin(z, W(p + c.o + ".weight"), c.d, c.H * hd, B(p + c.o + ".bias"));
        auto mlp = [&](const RowMatrixD& n) {
            RowMatrixD u = lin(n, W(p + c.up + ".weight"), c.I, c.d, B(p + c.up + ".bias"));
            for (Index i = 0; i < u.size(); ++i) {
                const double a = u.data()[i];
                u.data()[i] = c.act == "relu" ? std::max(a, 0.0)
                              : c.act == "gelu" ? 0.5 * a * (1 + std::erf(a / std::sqrt(2.0)))
                                                : 0.5 * a * (1 + std::tanh(std::sqrt(2 / M_PI) * (a + 0.044715 * a * a * a)));
            }
            return RowMatrixD(lin(u, W(p + c.down + ".weight"), c.d, c.I, B(p + c.down + ".bias")));
        };
        if (c.par == "seq") {
            x += attn;
            x += mlp(LN(x, p + c.ln2));
        } else {
            const RowMatrixD m = mlp(c.par == "one" ? n1 : LN(x, p + c.ln2));
            x += attn + m;
        }
        r.resid_post.push_back(x);
    }
    r.logits = lin(LN(x, c.prefix + c.final_norm), W(c.lm_head + ".weight"), c.V, c.d, B(c.lm_head + ".bias"));
    return r;
}

void check_classic(const Classic& c, const json& cfg, unsigned seed) {
    Builder b;
    b.g.seed(seed);
    build_classic(b, c);
    const std::string dir = test::temp_dir(c.type);
    b.write(dir, cfg, io::DType::F32, false);
    std::vector<std::int64_t> ids;
    for (int t = 0; t < 13; ++t) ids.push_back((t * 31 + 3) % c.V);
    check_model(dir, ids, classic_reference(c, b.ck, ids));
}

Classic neox_names(Classic c) {
    c.prefix = "gpt_neox.", c.embed = "embed_in", c.layer = "layers.{l}.", c.ln1 = "input_layernorm", c.ln2 = "post_attention_layernorm";
    c.qkv = "attention.query_key_value", c.o = "attention.dense", c.up = "mlp.dense_h_to_4h", c.down = "mlp.dense_4h_to_h";
    c.final_norm = "final_layer_norm", c.lm_head = "embed_out", c.layout = "per_head";
    return c;
}
Classic falcon_names(Classic c) {
    c.prefix = "transformer.", c.embed = "word_embeddings", c.qkv = "self_attention.query_key_value", c.o = "self_attention.dense";
    c.up = "mlp.dense_h_to_4h", c.down = "mlp.dense_4h_to_h", c.final_norm = "ln_f", c.lm_head = "lm_head";
    c.ln1 = "input_layernorm", c.ln2 = "post_attention_layernorm";
    return c;
}

}  // namespace

TEST_CASE("held-out gpt_neox: 6 heads, rotary_pct 0.5, sequential and parallel, other seeds") {
    for (const bool parallel : {false, true}) {
        CAPTURE(parallel);
        Classic c = neox_names({});
        c.type = "gpt_neox";
        c.par = parallel ? "two" : "seq";
        c.rotary = 2;  // 0.5 of head_dim 4
        check_classic(c, {{"model_type", "gpt_neox"}, {"hidden_size", 24}, {"num_hidden_layers", 2}, {"num_attention_heads", 6},
                          {"intermediate_size", 40}, {"vocab_size", 50}, {"rotary_pct", 0.5}, {"use_parallel_residual", parallel},
                          {"max_position_embeddings", 64}, {"hidden_act", "gelu"}},
                      parallel ? 11u : 12u);
    }
}

TEST_CASE("held-out falcon: grouped QKV with 6 heads in 2 groups and biases; per-head QKV without multi-query") {
    Classic g = falcon_names({});
    g.type = "falcon";
    g.KV = 2, g.layout = "grouped", g.par = "two", g.ln1 = "ln_attn", g.ln2 = "ln_mlp", g.rotary = 4;
    check_classic(g, {{"model_type", "falcon"}, {"hidden_size", 24}, {"num_hidden_layers", 2}, {"num_attention_heads", 6},
                      {"num_kv_heads", 2}, {"new_decoder_architecture", true}, {"bias", true}, {"ffn_hidden_size", 40},
                      {"vocab_size", 50}, {"tie_word_embeddings", false}},
                  21u);
    Classic p = falcon_names({});
    p.type = "falcon";
    p.layout = "per_head", p.par = "one", p.bias = false, p.rotary = 4;
    check_classic(p, {{"model_type", "falcon"}, {"hidden_size", 24}, {"num_hidden_layers", 2}, {"num_attention_heads", 6},
                      {"multi_query", false}, {"parallel_attn", true}, {"bias", false}, {"ffn_hidden_size", 40},
                      {"vocab_size", 50}, {"tie_word_embeddings", false}},
                  22u);
}

TEST_CASE("held-out ALiBi: BLOOM and MPT with 6 heads (not a power of two), MPT with alibi_bias_max 4 and biases") {
    Classic bl = falcon_names({});
    bl.type = "bloom";
    bl.layout = "per_head", bl.alibi = true, bl.embed_norm = true, bl.I = 96, bl.act = "gelu_tanh";
    check_classic(bl, {{"model_type", "bloom"}, {"hidden_size", 24}, {"n_layer", 2}, {"n_head", 6}, {"vocab_size", 50},
                       {"tie_word_embeddings", false}},
                  31u);
    Classic mp;
    mp.type = "mpt";
    mp.prefix = "transformer.", mp.embed = "wte", mp.layer = "blocks.{l}.", mp.ln1 = "norm_1", mp.ln2 = "norm_2";
    mp.qkv = "attn.Wqkv", mp.o = "attn.out_proj", mp.up = "ffn.up_proj", mp.down = "ffn.down_proj", mp.final_norm = "norm_f";
    mp.lm_head = "lm_head", mp.alibi = true, mp.alibi_max = 4.0, mp.I = 96;
    check_classic(mp, {{"model_type", "mpt"}, {"d_model", 24}, {"n_layers", 2}, {"n_heads", 6}, {"vocab_size", 50},
                       {"no_bias", false}, {"max_seq_len", 64}, {"tie_word_embeddings", false},
                       {"attn_config", {{"alibi", true}, {"alibi_bias_max", 4}}}},
                  32u);
}

TEST_CASE("held-out gptj: interleaved rotary on 2 of 4 features, 6 heads, LM head bias") {
    Classic c;
    c.type = "gptj";
    c.prefix = "transformer.", c.embed = "wte", c.ln1 = "ln_1", c.layout = "", c.q = "attn.q_proj", c.k = "attn.k_proj";
    c.v = "attn.v_proj", c.o = "attn.out_proj", c.up = "mlp.fc_in", c.down = "mlp.fc_out", c.final_norm = "ln_f";
    c.lm_head = "lm_head", c.par = "one", c.rotary = 2, c.interleaved = true, c.lm_bias = true, c.act = "gelu_tanh";
    c.attn_bias = false;  // GPT-J's attention has no biases; its MLP and LM head do
    check_classic(c, {{"model_type", "gptj"}, {"n_embd", 24}, {"n_layer", 2}, {"n_head", 6}, {"n_inner", 40}, {"n_positions", 64},
                      {"vocab_size", 50}, {"rotary_dim", 2}, {"tie_word_embeddings", false}},
                  41u);
}

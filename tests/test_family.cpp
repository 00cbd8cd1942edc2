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

void compare(const std::string& dir, const Spec& s, const Ckpt& ck) {
    const Transformer m(dir);
    std::vector<std::int64_t> ids;
    for (int t = 0; t < 11; ++t) ids.push_back((t * 37 + 5) % s.V);
    TokenBatch b(1, static_cast<Index>(ids.size()));
    for (std::size_t t = 0; t < ids.size(); ++t) b(0, static_cast<Index>(t)) = ids[t];
    std::vector<RowMatrixF> resid;
    Hooks h;
    h.add("*hook_resid_post", [&](Activation& a) { resid.push_back(a.sequence(0)); });
    const RowMatrixF logits = m.forward(b, h);
    const Ref r = reference(s, ck, ids);
    REQUIRE(resid.size() == r.resid_post.size());
    for (std::size_t l = 0; l < resid.size(); ++l) {
        CAPTURE(l);
        CHECK(test::max_abs_diff(resid[l], r.resid_post[l]) / r.resid_post[l].cwiseAbs().maxCoeff() < 2e-5);
    }
    CHECK(test::max_abs_diff(logits, r.logits) / r.logits.cwiseAbs().maxCoeff() < 2e-5);
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

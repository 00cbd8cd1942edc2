// massact/model/weights.hpp - checkpoint tensors bound by their Hugging Face names.
//
// Matrices stay in the mapped file in their stored dtype. A WeightMatrix hands
// out float32 data on demand: F32 straight from the mapping, F16/BF16 either
// from a float32 copy made at load time (when the whole model fits the
// LoadOptions budget) or converted into a reusable scratch buffer per use, so
// a 7B checkpoint never exists in float32 all at once.
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/io/checkpoint.hpp"
#include "massact/model/config.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace massact {

struct LoadOptions {
    /// Convert half-precision matrices to a resident float32 copy when their float32 size is at most
    /// this many bytes in total; larger models convert each matrix per use.
    std::size_t resident_f32_budget = std::size_t(2) << 30;
};

/// A [out, in] linear map y = x W^T (nn.Linear, stored [out, in]) or y = x W (GPT-2 Conv1D, stored [in, out]).
class WeightMatrix {
public:
    WeightMatrix() = default;
    WeightMatrix(const io::TensorView* src, Index out, Index in, bool stored_in_out)
        : src_(src), out_(out), in_(in), in_out_(stored_in_out) {}

    bool bound() const { return src_ != nullptr; }
    Index out() const { return out_; }
    Index in() const { return in_; }
    bool stored_in_out() const { return in_out_; }
    const io::TensorView* source() const { return src_; }
    std::size_t f32_bytes() const { return static_cast<std::size_t>(out_ * in_) * sizeof(float); }

    /// Whether the float32 data can be used directly from the mapping (aligned F32).
    bool zero_copy() const {
        return src_->dtype == io::DType::F32 && reinterpret_cast<std::uintptr_t>(src_->data) % alignof(float) == 0;
    }
    void make_resident() {
        if (!zero_copy() && resident_.empty()) {
            resident_.resize(static_cast<std::size_t>(out_ * in_));
            src_->to_float(resident_.data());
        }
    }
    /// Float32 data in the stored layout; may convert into `scratch`.
    const float* data(std::vector<float>& scratch) const {
        if (zero_copy()) return reinterpret_cast<const float*>(src_->data);
        if (!resident_.empty()) return resident_.data();
        const std::size_t n = static_cast<std::size_t>(out_ * in_);
        if (scratch.size() < n) scratch.resize(n);
        const std::size_t chunk = 1 << 16;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
        for (std::int64_t c = 0; c < static_cast<std::int64_t>((n + chunk - 1) / chunk); ++c) {
            const std::size_t b = static_cast<std::size_t>(c) * chunk;
            src_->to_float(scratch.data() + b, b, std::min(chunk, n - b));
        }
        return scratch.data();
    }
    /// The element W[r, c] of the [out, in] map (whatever the stored layout).
    float at(Index r, Index c) const {
        float v = 0.0f;
        const Index idx = in_out_ ? c * out_ + r : r * in_ + c;
        if (!resident_.empty()) return resident_[static_cast<std::size_t>(idx)];
        src_->to_float(&v, static_cast<std::size_t>(idx), 1);
        return v;
    }
    /// One row of an [rows, cols]-stored matrix as float32 (embedding lookup).
    void row(Index r, float* out) const {
        const Index cols = in_out_ ? out_ : in_;
        if (!resident_.empty())
            std::copy(resident_.begin() + r * cols, resident_.begin() + (r + 1) * cols, out);
        else
            src_->to_float(out, static_cast<std::size_t>(r * cols), static_cast<std::size_t>(cols));
    }
    /// y [rows, out] = x [rows, in] W^T (+ bias [out] if given).
    void apply(const Eigen::Ref<const RowMatrixF>& x, Eigen::Ref<RowMatrixF> y, std::vector<float>& scratch,
               const std::vector<float>* bias = nullptr) const {
        const float* w = data(scratch);
        if (in_out_) {
            y.noalias() = x * ConstRowMap<float>(w, in_, out_);
        } else {
            y.noalias() = x * ConstRowMap<float>(w, out_, in_).transpose();
        }
        if (bias && !bias->empty()) y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias->data(), out_);
    }

private:
    const io::TensorView* src_ = nullptr;
    Index out_ = 0, in_ = 0;
    bool in_out_ = false;
    std::vector<float> resident_;
};

/// Per-block weights; unused members stay empty (e.g. gate for GPT-2, biases for Llama).
struct LayerWeights {
    std::vector<float> ln1_w, ln1_b;  // [d]
    WeightMatrix q, k, v;             // Llama: [H*hd, d], [KV*hd, d], [KV*hd, d]
    WeightMatrix qkv;                 // GPT-2 c_attn: [d, 3d] stored [in, out]
    std::vector<float> q_b, k_b, v_b, qkv_b;
    WeightMatrix o;                   // [d, H*hd]
    std::vector<float> o_b;
    std::vector<float> ln2_w, ln2_b;
    WeightMatrix gate, up, down;      // Llama [I, d], [I, d], [d, I]; GPT-2 uses up = c_fc, down = c_proj
    std::vector<float> gate_b, up_b, down_b;
    std::vector<float> k_bias_slot, v_bias_slot;  // [KV, hd] explicit attention bias (attention_sink kv_bias)
    std::vector<float> sinks;                      // [H] learned sink logits (attention_sink logit)
};

struct ModelWeights {
    WeightMatrix embed;      // [V, d]
    WeightMatrix pos_embed;  // [P, d] (GPT-2)
    std::vector<LayerWeights> layers;
    std::vector<float> final_w, final_b;  // [d]
    WeightMatrix lm_head;    // [V, d] (the embedding when tied)
};

namespace detail {

class Binder {
public:
    Binder(const io::Checkpoint& ck, std::string prefix) : ck_(ck), prefix_(std::move(prefix)) {}

    const io::TensorView& get(const std::string& name, std::vector<std::int64_t> shape) const {
        const std::string full = prefix_ + name;
        if (!ck_.has(full)) throw Error(ck_.dir() + ": missing tensor \"" + full + "\"");
        const auto& t = ck_.tensor(full);
        if (t.shape != shape)
            throw Error(t.where() + ": wrong shape " + io::shape_string(t.shape) + ", expected " +
                        io::shape_string(shape) + " from config.json");
        if (t.dtype != io::DType::F32 && t.dtype != io::DType::F16 && t.dtype != io::DType::BF16)
            throw Error(t.where() + ": unsupported dtype " + io::dtype_name(t.dtype) +
                        " for a weight (expected F32, F16 or BF16)");
        return t;
    }
    bool has(const std::string& name) const { return ck_.has(prefix_ + name); }
    std::vector<float> vec(const std::string& name, std::int64_t n) const { return get(name, {n}).to_float(); }
    std::vector<float> mat(const std::string& name, std::int64_t r, std::int64_t c) const { return get(name, {r, c}).to_float(); }
    WeightMatrix linear(const std::string& name, Index out, Index in) const {  // nn.Linear [out, in]
        return WeightMatrix(&get(name, {out, in}), out, in, false);
    }
    WeightMatrix conv1d(const std::string& name, Index out, Index in) const {  // Conv1D [in, out]
        return WeightMatrix(&get(name, {in, out}), out, in, true);
    }

private:
    const io::Checkpoint& ck_;
    std::string prefix_;
};

}  // namespace detail

inline ModelWeights bind_weights(const io::Checkpoint& ck, const ModelConfig& c, const LoadOptions& opt = {}) {
    ModelWeights w;
    const Index d = c.hidden_size, V = c.vocab_size, I = c.intermediate_size, H = c.num_heads, KV = c.num_kv_heads,
                hd = c.head_dim;
    w.layers.resize(static_cast<std::size_t>(c.num_layers));
    if (c.family == Family::GPT2) {
        const std::string pre = ck.has("transformer.wte.weight") ? "transformer." : "";
        detail::Binder b(ck, pre);
        w.embed = WeightMatrix(&b.get("wte.weight", {V, d}), d, V, true);  // rows are tokens
        w.pos_embed = WeightMatrix(&b.get("wpe.weight", {c.max_positions, d}), d, c.max_positions, true);
        for (int l = 0; l < c.num_layers; ++l) {
            auto& L = w.layers[static_cast<std::size_t>(l)];
            const std::string p = "h." + std::to_string(l) + ".";
            L.ln1_w = b.vec(p + "ln_1.weight", d);
            L.ln1_b = b.vec(p + "ln_1.bias", d);
            L.qkv = b.conv1d(p + "attn.c_attn.weight", 3 * d, d);
            L.qkv_b = b.vec(p + "attn.c_attn.bias", 3 * d);
            L.o = b.conv1d(p + "attn.c_proj.weight", d, d);
            L.o_b = b.vec(p + "attn.c_proj.bias", d);
            L.ln2_w = b.vec(p + "ln_2.weight", d);
            L.ln2_b = b.vec(p + "ln_2.bias", d);
            L.up = b.conv1d(p + "mlp.c_fc.weight", I, d);
            L.up_b = b.vec(p + "mlp.c_fc.bias", I);
            L.down = b.conv1d(p + "mlp.c_proj.weight", d, I);
            L.down_b = b.vec(p + "mlp.c_proj.bias", d);
        }
        w.final_w = b.vec("ln_f.weight", d);
        w.final_b = b.vec("ln_f.bias", d);
        // GPT-2's LM head is the token embedding ([V, d] = nn.Linear layout).
        const bool own_head = !c.tie_embeddings && ck.has("lm_head.weight");
        w.lm_head = own_head ? detail::Binder(ck, "").linear("lm_head.weight", V, d)
                             : WeightMatrix(w.embed.source(), V, d, false);
    } else {
        detail::Binder b(ck, "model.");
        w.embed = WeightMatrix(&b.get("embed_tokens.weight", {V, d}), d, V, true);
        for (int l = 0; l < c.num_layers; ++l) {
            auto& L = w.layers[static_cast<std::size_t>(l)];
            const std::string p = "layers." + std::to_string(l) + ".";
            L.ln1_w = b.vec(p + "input_layernorm.weight", d);
            L.q = b.linear(p + "self_attn.q_proj.weight", H * hd, d);
            L.k = b.linear(p + "self_attn.k_proj.weight", KV * hd, d);
            L.v = b.linear(p + "self_attn.v_proj.weight", KV * hd, d);
            L.o = b.linear(p + "self_attn.o_proj.weight", d, H * hd);
            if (c.qkv_bias) {
                L.q_b = b.vec(p + "self_attn.q_proj.bias", H * hd);
                L.k_b = b.vec(p + "self_attn.k_proj.bias", KV * hd);
                L.v_b = b.vec(p + "self_attn.v_proj.bias", KV * hd);
            }
            if (c.o_bias) L.o_b = b.vec(p + "self_attn.o_proj.bias", d);
            L.ln2_w = b.vec(p + "post_attention_layernorm.weight", d);
            L.gate = b.linear(p + "mlp.gate_proj.weight", I, d);
            L.up = b.linear(p + "mlp.up_proj.weight", I, d);
            L.down = b.linear(p + "mlp.down_proj.weight", d, I);
            if (c.mlp_bias) {
                L.gate_b = b.vec(p + "mlp.gate_proj.bias", I);
                L.up_b = b.vec(p + "mlp.up_proj.bias", I);
                L.down_b = b.vec(p + "mlp.down_proj.bias", d);
            }
            if (c.sink == SinkKind::KVBias) {
                L.k_bias_slot = b.mat(p + "self_attn.k_bias", KV, hd);
                L.v_bias_slot = b.mat(p + "self_attn.v_bias", KV, hd);
            } else if (c.sink == SinkKind::Logit) {
                L.sinks = b.vec(p + "self_attn.sinks", H);
            }
        }
        w.final_w = b.vec("norm.weight", d);
        if (c.tie_embeddings || !ck.has("lm_head.weight")) {
            if (!c.tie_embeddings)
                throw Error(ck.dir() + ": missing tensor \"lm_head.weight\" (config.json has tie_word_embeddings false)");
            w.lm_head = WeightMatrix(w.embed.source(), V, d, false);
        } else {
            w.lm_head = detail::Binder(ck, "").linear("lm_head.weight", V, d);
        }
    }
    // Residency: keep float32 copies when the whole model fits the budget.
    std::vector<WeightMatrix*> all = {&w.embed, &w.lm_head};
    if (w.pos_embed.bound()) all.push_back(&w.pos_embed);
    for (auto& L : w.layers)
        for (WeightMatrix* m : {&L.q, &L.k, &L.v, &L.qkv, &L.o, &L.gate, &L.up, &L.down})
            if (m->bound()) all.push_back(m);
    std::size_t total = 0;
    for (auto* m : all) total += m->zero_copy() ? 0 : m->f32_bytes();
    if (total <= opt.resident_f32_budget)
        for (auto* m : all) m->make_resident();
    return w;
}

}  // namespace massact

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
#include "massact/kernels/gemm.hpp"
#include "massact/kernels/gemv.hpp"
#include "massact/kernels/gemv_q8.hpp"
#include "massact/model/config.hpp"

#include <algorithm>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace massact {

struct LoadOptions {
    /// Convert half-precision matrices to a resident float32 copy when their float32 size is at most
    /// this many bytes in total; larger models convert each matrix per use.
    std::size_t resident_f32_budget = std::size_t(2) << 30;
};

/// What WeightMatrix::apply needs besides its operands: the product's precision and reusable buffers.
struct LinearScratch {
    kernels::Precision precision = kernels::Precision::F32;
    kernels::GemmScratch gemm;  // packed blocks of the register-blocked product
    std::vector<float> f32;     // a whole matrix in float32 (the Eigen path without xsimd)
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
        return !replaced_ && src_->dtype == io::DType::F32 && src_->rope_heads == 0 && reinterpret_cast<std::uintptr_t>(src_->data) % alignof(float) == 0;
    }
    /// Use `other`'s float32 copy when both read the same tensor (a tied LM head and the embedding).
    void share_resident(const WeightMatrix& other) {
        if (other.src_ == src_ && other.resident_) resident_ = other.resident_;
    }
    bool resident() const { return resident_ != nullptr; }
    /// Use `data` (float32, in the stored layout) instead of the checkpoint's values.
    void replace(std::vector<float> data) {
        if (data.size() != static_cast<std::size_t>(out_ * in_))
            throw Error("weight " + src_->name + ": replacement of " + std::to_string(data.size()) + " values for " + std::to_string(out_ * in_));
        resident_ = std::make_shared<const Floats>(data.begin(), data.end());
        replaced_ = true;
    }
    void make_resident() {
        if (!zero_copy() && !resident_) {
            auto buf = std::make_shared<Floats>(static_cast<std::size_t>(out_ * in_));
            src_->to_float(buf->data());
            resident_ = std::move(buf);
        }
    }
    /// Float32 data in the stored layout; may convert into `scratch`.
    const float* data(std::vector<float>& scratch) const {
        if (zero_copy()) return reinterpret_cast<const float*>(src_->data);
        if (resident_) return resident_->data();
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
    /// The whole [out, in] map as float32 (whatever the stored layout).
    RowMatrixF to_matrix() const {
        std::vector<float> scratch;
        const float* src = data(scratch);
        if (in_out_) return ConstRowMap<float>(src, in_, out_).transpose();
        return ConstRowMap<float>(src, out_, in_);
    }
    /// The element W[r, c] of the [out, in] map (whatever the stored layout).
    float at(Index r, Index c) const {
        float v = 0.0f;
        const Index idx = in_out_ ? c * out_ + r : r * in_ + c;
        if (resident_) return (*resident_)[static_cast<std::size_t>(idx)];
        src_->to_float(&v, static_cast<std::size_t>(idx), 1);
        return v;
    }
    /// One row of an [rows, cols]-stored matrix as float32 (embedding lookup).
    void row(Index r, float* out) const {
        const Index cols = in_out_ ? out_ : in_;
        if (resident_)
            std::copy(resident_->begin() + r * cols, resident_->begin() + (r + 1) * cols, out);
        else
            src_->to_float(out, static_cast<std::size_t>(r * cols), static_cast<std::size_t>(cols));
    }
    /// dst[i * cols + j] = W[n0 + i, k0 + j] in float32 for i < rows, j < cols (a block of the [out, in] map).
    void block(Index n0, Index rows, Index k0, Index cols, float* dst) const {
        const float* f = resident_ ? resident_->data() : zero_copy() ? reinterpret_cast<const float*>(src_->data) : nullptr;
        if (!in_out_) {
            if (k0 == 0 && cols == in_) {  // whole rows are one contiguous range: one conversion, not one per row
                const auto first = static_cast<std::size_t>(n0 * in_), n = static_cast<std::size_t>(rows * in_);
                if (f)
                    std::copy(f + first, f + first + n, dst);
                else
                    src_->to_float(dst, first, n);
                return;
            }
            for (Index i = 0; i < rows; ++i) {
                const Index first = (n0 + i) * in_ + k0;
                if (f)
                    std::copy(f + first, f + first + cols, dst + i * cols);
                else
                    src_->to_float(dst + i * cols, static_cast<std::size_t>(first), static_cast<std::size_t>(cols));
            }
            return;
        }
        std::vector<float> line(f ? 0 : static_cast<std::size_t>(rows));
        for (Index j = 0; j < cols; ++j) {  // stored [in, out]: a row of storage is a column of the block
            const Index first = (k0 + j) * out_ + n0;
            const float* r = f ? f + first : line.data();
            if (!f) src_->to_float(line.data(), static_cast<std::size_t>(first), static_cast<std::size_t>(rows));
            for (Index i = 0; i < rows; ++i) dst[i * cols + j] = r[i];
        }
    }

    /// The matrix as the few-row product reads it (kernels::gemv_stored): the float32 copy if there is one,
    /// else the stored bytes; type F64 (or another gemv cannot read) when neither applies, or when stored [in, out].
    kernels::StoredMatrix stored() const {
        kernels::StoredMatrix m;
        m.type = io::ggml::Type::F64;
        m.rows = out_;
        m.cols = in_;
        if (in_out_) return m;
        if (resident_) {
            m.type = io::ggml::Type::F32;
            m.data = reinterpret_cast<const unsigned char*>(resident_->data());
            m.row_bytes = static_cast<std::size_t>(in_) * sizeof(float);
            return m;
        }
        const io::DType d = src_->dtype;
        const io::ggml::Type t = d == io::DType::F32 ? io::ggml::Type::F32 : d == io::DType::F16 ? io::ggml::Type::F16
                               : d == io::DType::BF16 ? io::ggml::Type::BF16 : io::quantized(d) ? io::ggml_type(d) : io::ggml::Type::F64;
        const io::ggml::TypeInfo info = io::ggml::type_info(static_cast<std::uint32_t>(t));
        if (!kernels::gemv_reads(t) || in_ % static_cast<Index>(info.block) != 0) return m;
        m.type = t;
        m.data = src_->data;
        m.row_bytes = static_cast<std::size_t>(in_ / static_cast<Index>(info.block)) * info.bytes;
        return m;
    }

    /// y [rows, out] = x [rows, in] W^T (+ bias [out] if given), in s.precision. With xsimd: a few rows (decoding)
    /// read W in its stored form row by row (kernels::gemv_stored), more rows go through a register-blocked product
    /// that reads W block by block in its stored dtype; without xsimd, Eigen on a float32 copy.
    void apply(const Eigen::Ref<const RowMatrixF>& x, Eigen::Ref<RowMatrixF> y, LinearScratch& s,
               const std::vector<float>* bias = nullptr) const {
#if defined(MASSACT_HAS_XSIMD)
        const kernels::StoredMatrix m = x.rows() < kernels::gemm_detail::MR ? stored() : kernels::StoredMatrix{};
        const bool round = s.precision == kernels::Precision::BF16;
        const bool in_place = in_out_ && s.precision == kernels::Precision::F32 && x.rows() < 4 && (resident_ || zero_copy());
        if (in_place) {  // (a GPT-2 Conv1D [in, out] in float32: Eigen's GEMV reads it where it is)
            const float* w = data(s.f32);
            y.noalias() = x * ConstRowMap<float>(w, in_, out_);
        } else if (m.data && s.precision == kernels::Precision::Q8 && kernels::gemv_q8_reads(m.type)) {
            if (!resident_ && src_->rope_heads > 0)
                kernels::gemv_q8(m, [this](Index n) { return static_cast<Index>(src_->stored_row(static_cast<std::size_t>(n))); },
                                 x.data(), x.outerStride(), x.rows(), y.data(), y.outerStride());
            else
                kernels::gemv_q8(m, x.data(), x.outerStride(), x.rows(), y.data(), y.outerStride());
        } else if (m.data) {
            if (!resident_ && src_->rope_heads > 0)
                kernels::gemv_stored(m, [this](Index n) { return static_cast<Index>(src_->stored_row(static_cast<std::size_t>(n))); },
                                     x.data(), x.outerStride(), x.rows(), y.data(), y.outerStride(), round);
            else
                kernels::gemv_stored(m, x.data(), x.outerStride(), x.rows(), y.data(), y.outerStride(), round);
        } else {
            kernels::gemm_bt(
                x.data(), x.outerStride(), x.rows(), out_, in_,
                [this](Index n0, Index rows, Index k0, Index cols, float* dst) { block(n0, rows, k0, cols, dst); },
                y.data(), y.outerStride(), s.precision, s.gemm);
        }
#else
        {
            const float* w = data(s.f32);
            if (in_out_)
                y.noalias() = x * ConstRowMap<float>(w, in_, out_);
            else
                y.noalias() = x * ConstRowMap<float>(w, out_, in_).transpose();
        }
#endif
        if (bias && !bias->empty()) y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias->data(), out_);
    }

private:
    const io::TensorView* src_ = nullptr;
    Index out_ = 0, in_ = 0;
    bool in_out_ = false;
    // Float32 copies are aligned as Eigen aligns (64 bytes with AVX-512): where a row starts within a cache line decides
    // how the few-row kernels split it (kernels::gemv_detail::peel_to_line), and so the order of its sums, which must
    // not change from one run or process to the next.
    using Floats = std::vector<float, Eigen::aligned_allocator<float>>;
    std::shared_ptr<const Floats> resident_;  // float32 copy; shared by views of one tensor (tied embeddings)
    bool replaced_ = false;                               // resident_ holds edited values (with_weights)
};

/// A norm's effective parameters: scale s [n] (w, 1 + w, or ones) and shift b [n] (bias or zeros).
struct NormWeights {
    std::vector<float> scale, shift;
    bool bound() const { return !scale.empty(); }
};

/// One expert of a mixture-of-experts MLP.
struct ExpertWeights {
    WeightMatrix gate, up, down;  // [I, d], [I, d], [d, I]
    WeightMatrix gate_up;         // fused, columns interleaved gate, up (gpt-oss) [2I, d]
    std::vector<float> gate_up_b, down_b;
};

/// A Gated DeltaNet layer (DeltaNetSpec): the input projections in one of two layouts, the depthwise convolution, the
/// per-value-head decay and step parameters, the gated output norm and out_proj.
struct DeltaNetWeights {
    WeightMatrix qkvz, ba;             // grouped by key head (Qwen3-Next): [2 Kw + 2 Vw, d], [2 Hv, d]
    WeightMatrix qkv, z, b, a;         // separate (Qwen3.5): [2 Kw + Vw, d], [Vw, d], [Hv, d], [Hv, d]
    WeightMatrix out;                  // [d, Vw]
    std::vector<float> conv;           // [2 Kw + Vw, taps]
    std::vector<float> neg_a;          // [Hv] -exp(A_log)
    std::vector<float> dt_bias;        // [Hv]
    NormWeights norm;                  // [v_dim]
};

/// A Mamba-2 layer (MambaSpec).
struct MambaWeights {
    WeightMatrix in, out;              // in_proj [inner + conv + heads, d] ([z; xBC; dt]), out_proj [d, inner]
    std::vector<float> in_b, out_b;    // their biases (use_bias)
    std::vector<float> conv, conv_b;   // [conv, taps], [conv]
    std::vector<float> neg_a, dt_bias, D;  // [heads]: -exp(A_log), dt_bias, D
    NormWeights norm;                  // [inner]
};

/// Per-block weights; parts the block description does not have stay unbound / empty.
struct LayerWeights {
    NormWeights ln_attn, ln_attn_post, ln_mlp, ln_mlp_post;  // [d]
    WeightMatrix q, k, v;             // [H*hd, d], [KV*hd, d], [KV*hd, d]
    WeightMatrix qkv;                 // fused [(H + 2 KV) * hd, d] (GPT-2 c_attn, Phi-3 qkv_proj)
    std::vector<float> q_b, k_b, v_b, qkv_b;
    NormWeights q_norm, k_norm;       // [H*hd], [KV*hd] (per-head norms repeated or per head)
    // multi-head latent attention: q_a_proj [q_lora, d], q_b_proj [H*qk, q_lora], kv_a_proj_with_mqa [kv_lora + rope, d],
    // kv_b_proj [H*(nope + v), kv_lora], and the q_a / kv_a norms [q_lora], [kv_lora]
    WeightMatrix q_a, q_up, kv_a, kv_up;
    NormWeights q_a_norm, kv_a_norm;
    WeightMatrix o;                   // [d, H*hd]
    std::vector<float> o_b;
    WeightMatrix gate, up, gate_up, down;  // [I, d], [I, d], fused [2I, d], [d, I]
    std::vector<float> gate_b, up_b, gate_up_b, down_b;
    WeightMatrix router;                   // [E, d]
    std::vector<float> router_b;           // [E]
    std::vector<float> router_score_bias;  // [E]: added to the scores for the choice of experts (DeepSeek-V3)
    std::vector<std::shared_ptr<const io::TensorView>> slices;  // views of one expert inside [E, ...] tensors
    std::vector<ExpertWeights> experts;    // [E]
    ExpertWeights shared;                  // the shared expert (gate, up, down), when the model has one
    WeightMatrix shared_gate;              // [1, d]: its sigmoid gate
    NormWeights attn_sub_norm, mlp_sub_norm;  // BitNet's norms before o_proj [H*hd] and before down_proj [I]
    std::vector<float> act_params;         // xIELU: softplus(alpha_p), beta + softplus(alpha_n), beta, eps
    std::vector<float> k_bias_slot, v_bias_slot;  // [KV, hd] explicit attention bias (attention_sink kv_bias)
    std::vector<float> sinks;                      // [H] learned sink logits (attention_sink logit)
    std::vector<float> ls_attn, ls_mlp;            // [d] layer scales (DINOv2)
    DeltaNetWeights deltanet;                      // a Gated DeltaNet layer's (in place of q, k, v, o)
    MambaWeights mamba;                            // a Mamba-2 layer's
};

struct ModelWeights {
    WeightMatrix embed;      // [V, d]
    WeightMatrix pos_embed;  // [P + offset, d] (learned positions)
    NormWeights embed_norm;  // [d] (BLOOM)
    std::vector<LayerWeights> layers;
    NormWeights final_norm;  // [d]
    WeightMatrix lm_head;    // [V, d] (the embedding when tied)
    std::vector<float> lm_head_b;  // [V] (Phi-2, GPT-J)
    // vision: embed is the patch projection [d, C*p*p] (a patch flattened channel, row, column)
    std::vector<float> patch_b;    // [d]
    std::vector<float> cls;        // [d]
    std::vector<float> registers;  // [R, d]
    std::vector<float> pos_table;  // [1 + grid^2, d]: CLS, then the patch grid row by row
    WeightMatrix pooler;           // [d, d] (ViT), with pooler_b
    std::vector<float> pooler_b;
    // SigLIP's attention-pooling head (VisionSpec::map_head): probe [d], in_proj [3d, d] ([q; k; v]) and out_proj [d, d]
    // with biases, a LayerNorm [d], fc1 [I, d] and fc2 [d, I] with biases
    std::vector<float> map_probe, map_in_b, map_out_b, map_fc1_b, map_fc2_b;
    WeightMatrix map_in, map_out, map_fc1, map_fc2;
    NormWeights map_norm;
};

/// Every linear map of a block, with its role: q, k, v, qkv, in_qkvz, in_ba, in_qkv, in_z, in_b, in_a, out (Gated DeltaNet), in_proj, out_proj (Mamba-2), q_a, q_b, kv_a, kv_b (MLA), o, gate, up, gate_up, down, router, expert.E.gate / .up /
/// .gate_up / .down, shared.gate / .up / .down, shared_gate. Unbound ones are skipped. (LayerWeights& or const&.)
template <typename Layer, typename Fn>
inline void for_each_linear(Layer& L, Fn fn) {
    auto visit = [&](auto& m, const std::string& role) {
        if (m.bound()) fn(m, role);
    };
    visit(L.q, "q"), visit(L.k, "k"), visit(L.v, "v"), visit(L.qkv, "qkv");
    auto& D = L.deltanet;
    visit(D.qkvz, "in_qkvz"), visit(D.ba, "in_ba"), visit(D.qkv, "in_qkv"), visit(D.z, "in_z"), visit(D.b, "in_b"), visit(D.a, "in_a");
    visit(D.out, "out");
    visit(L.mamba.in, "in_proj"), visit(L.mamba.out, "out_proj");
    visit(L.q_a, "q_a"), visit(L.q_up, "q_b"), visit(L.kv_a, "kv_a"), visit(L.kv_up, "kv_b"), visit(L.o, "o");
    visit(L.gate, "gate"), visit(L.up, "up"), visit(L.gate_up, "gate_up"), visit(L.down, "down"), visit(L.router, "router");
    auto expert = [&](auto& X, const std::string& p) {
        visit(X.gate, p + "gate"), visit(X.up, p + "up"), visit(X.gate_up, p + "gate_up"), visit(X.down, p + "down");
    };
    for (std::size_t e = 0; e < L.experts.size(); ++e) expert(L.experts[e], "expert." + std::to_string(e) + ".");
    expert(L.shared, "shared.");
    visit(L.shared_gate, "shared_gate");
}

namespace detail {

inline std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    for (std::size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
    return s;
}

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
        if (t.dtype != io::DType::F32 && t.dtype != io::DType::F16 && t.dtype != io::DType::BF16 && !io::quantized(t.dtype))
            throw Error(t.where() + ": unsupported dtype " + io::dtype_name(t.dtype) +
                        " for a weight (expected F32, F16, BF16 or a GGUF quantization)");
        return t;
    }
    bool has(const std::string& name) const { return ck_.has(prefix_ + name); }
    const std::string& dir() const { return ck_.dir(); }
    std::vector<float> vec(const std::string& name, std::int64_t n) const { return get(name, {n}).to_float(); }
    /// A tensor of n values whatever its shape ([1, 1, d] and [d] tokens, [1, P, d] and [P, d] tables).
    std::vector<float> values(const std::string& name, std::int64_t n) const {
        const std::string full = prefix_ + name;
        if (!ck_.has(full)) throw Error(ck_.dir() + ": missing tensor \"" + full + "\"");
        const auto& t = ck_.tensor(full);
        if (t.numel() != n)
            throw Error(t.where() + ": wrong shape " + io::shape_string(t.shape) + ", expected " + std::to_string(n) +
                        " values from config.json");
        return get(name, t.shape).to_float();
    }
    std::vector<float> mat(const std::string& name, std::int64_t r, std::int64_t c) const { return get(name, {r, c}).to_float(); }
    /// A linear map [out, in]: nn.Linear stores [out, in], GPT-2's Conv1D [in, out].
    WeightMatrix linear(const std::string& name, Index out, Index in, bool conv1d = false) const {
        return conv1d ? WeightMatrix(&get(name, {in, out}), out, in, true) : WeightMatrix(&get(name, {out, in}), out, in, false);
    }
    /// A norm of width n from "<name>.weight" / "<name>.bias" as the spec says; "{h}" in the name: one
    /// tensor of width n / heads per head.
    /// rows: one [heads, n / heads] tensor, a row per head (Cohere's q/k norms).
    NormWeights norm(const std::string& name, const NormSpec& s, Index n, Index heads = 1, bool rows = false) const {
        NormWeights w;
        w.scale.assign(static_cast<std::size_t>(n), 1.0f);
        w.shift.assign(static_cast<std::size_t>(n), 0.0f);
        const Index per = n / heads;
        const bool each = name.find("{h}") != std::string::npos;  // one tensor per head; else one shared by all
        std::vector<float> scale, shift;
        for (Index h = 0; h < heads; ++h) {
            if (rows && h == 0) {
                if (s.weight) scale = mat(name + ".weight", heads, per);
                if (s.bias) shift = mat(name + ".bias", heads, per);
            } else if (!rows && (each || h == 0)) {
                const std::string nm = each ? replace_all(name, "{h}", std::to_string(h)) : name;
                if (s.weight) scale = vec(nm + ".weight", per);
                if (s.bias) shift = vec(nm + ".bias", per);
            }
            for (Index i = 0; i < per; ++i) {
                const auto k = static_cast<std::size_t>(h * per + i), j = static_cast<std::size_t>(rows ? h * per + i : i);
                if (s.weight) w.scale[k] = s.one_plus ? 1.0f + scale[j] : scale[j];
                if (s.bias) w.shift[k] = shift[j];
            }
        }
        return w;
    }

private:
    const io::Checkpoint& ck_;
    std::string prefix_;
};

}  // namespace detail

namespace detail {

/// A Gated DeltaNet layer's tensors under prefix `p` (DeltaNetSpec).
inline DeltaNetWeights bind_deltanet(const Binder& b, const ModelConfig& c, const std::string& p) {
    const DeltaNetSpec& s = c.deltanet;
    const Index d = c.hidden_size, Kw = s.key_width(), Vw = s.value_width(), Hv = s.v_heads;
    DeltaNetWeights D;
    if (s.grouped) {
        D.qkvz = b.linear(p + "in_proj_qkvz.weight", 2 * Kw + 2 * Vw, d);
        D.ba = b.linear(p + "in_proj_ba.weight", 2 * Hv, d);
    } else {
        D.qkv = b.linear(p + "in_proj_qkv.weight", 2 * Kw + Vw, d);
        D.z = b.linear(p + "in_proj_z.weight", Vw, d);
        D.b = b.linear(p + "in_proj_b.weight", Hv, d);
        D.a = b.linear(p + "in_proj_a.weight", Hv, d);
    }
    D.out = b.linear(p + "out_proj.weight", d, Vw);
    D.conv = b.get(p + "conv1d.weight", {s.conv_dim(), 1, s.conv_kernel}).to_float();
    if (b.has(p + "conv1d.bias")) throw Error(b.dir() + ": tensor \"" + p + "conv1d.bias\": the Gated DeltaNet convolution has no bias");
    D.neg_a = b.vec(p + "A_log", Hv);
    for (float& x : D.neg_a) x = -std::exp(x);
    D.dt_bias = b.vec(p + "dt_bias", Hv);
    D.norm = b.norm(p + "norm", NormSpec{NormKind::RMSNorm, s.norm_eps, true, false, false}, s.v_dim);
    return D;
}

/// A Mamba-2 layer's tensors under prefix `p` (MambaSpec).
inline MambaWeights bind_mamba(const Binder& b, const ModelConfig& c, const std::string& p) {
    const MambaSpec& s = c.mamba;
    const Index d = c.hidden_size, I = s.inner(), C = s.conv_dim(), H = s.heads, proj = I + C + H;
    MambaWeights M;
    M.in = b.linear(p + "in_proj.weight", proj, d);
    M.out = b.linear(p + "out_proj.weight", d, I);
    if (s.proj_bias) M.in_b = b.vec(p + "in_proj.bias", proj), M.out_b = b.vec(p + "out_proj.bias", d);
    M.conv = b.get(p + "conv1d.weight", {C, 1, s.conv_kernel}).to_float();
    if (s.conv_bias) M.conv_b = b.vec(p + "conv1d.bias", C);
    M.neg_a = b.vec(p + "A_log", H);
    for (float& x : M.neg_a) x = -std::exp(x);
    M.dt_bias = b.vec(p + "dt_bias", H);
    M.D = b.vec(p + "D", H);
    M.norm = b.norm(p + "norm", NormSpec{NormKind::RMSNorm, s.norm_eps, true, false, false}, I);
    return M;
}

/// Block l's tensors under layer prefix `p`, bound part by part (norms, mixer, MLP or experts, extras).
class LayerBinder {
public:
    LayerBinder(const Binder& b, const ModelConfig& c, int l, std::string p)
        : b_(b), c_(c), n_(c.names.block), l_(l), p_(std::move(p)), d_(c.hidden_size), I_(c.layer_intermediate(l)) {}

    LayerWeights bind() const {
        LayerWeights L;
        L.ln_attn = norm(c_.pre_attn_norm, n_.ln_attn);
        L.ln_attn_post = norm(c_.post_attn_norm, n_.ln_attn_post);
        L.ln_mlp = norm(c_.pre_mlp_norm, n_.ln_mlp);
        L.ln_mlp_post = norm(c_.post_mlp_norm, n_.ln_mlp_post);
        const Mixer mixer = c_.layers[static_cast<std::size_t>(l_)].mixer;
        if (mixer == Mixer::GatedDeltaNet)
            L.deltanet = bind_deltanet(b_, c_, p_ + n_.linear_attn);
        else if (mixer == Mixer::Mamba2)
            L.mamba = bind_mamba(b_, c_, p_ + n_.ssm);
        else
            attention(L);
        if (c_.layer_moe(l_))
            experts(L);
        else if (c_.has_mlp)
            dense_mlp(L);
        extras(L);
        return L;
    }

private:
    NormWeights norm(bool present, const std::string& name, Index width = 0, Index heads = 1, const NormSpec* spec = nullptr) const {
        return present ? b_.norm(p_ + name, spec ? *spec : c_.norm, width ? width : d_, heads, heads > 1 && c_.qk_norm_rows)
                       : NormWeights{};
    }
    std::vector<float> bias(bool present, const std::string& name, Index len) const {
        return present ? b_.vec(p_ + name + ".bias", len) : std::vector<float>{};
    }
    WeightMatrix linear(const std::string& name, Index out, Index in, bool in_out = false) const {
        return b_.linear(p_ + name + ".weight", out, in, in_out);
    }

    /// Multi-head latent attention's projections (optional q LoRA, the compressed KV and its up-projection).
    void latent_projections(LayerWeights& L) const {
        const MlaSpec& m = c_.mla;
        const Index H = c_.num_heads;
        const NormSpec ns{NormKind::RMSNorm, m.norm_eps, true, false, false};
        if (m.q_lora_rank > 0) {
            L.q_a = linear(n_.q_a, m.q_lora_rank, d_);
            L.q_a_norm = b_.norm(p_ + n_.q_a_norm, ns, m.q_lora_rank);
            L.q_up = linear(n_.q_b, H * m.qk(), m.q_lora_rank);
        } else {
            L.q = linear(n_.q, H * m.qk(), d_);
        }
        L.kv_a = linear(n_.kv_a, m.kv_lora_rank + m.qk_rope, d_);
        L.kv_a_norm = b_.norm(p_ + n_.kv_a_norm, ns, m.kv_lora_rank);
        L.kv_up = linear(n_.kv_b, H * (m.qk_nope + m.v_head_dim), m.kv_lora_rank);
    }

    /// Softmax attention: q/k/v (fused, separate or latent), q/k norms, the output projection, sink parameters.
    void attention(LayerWeights& L) const {
        const Index H = c_.num_heads, KV = c_.num_kv_heads, hd = c_.head_dim;
        if (c_.has_mla()) {
            latent_projections(L);
        } else if (!n_.qkv.empty()) {
            L.qkv = linear(n_.qkv, (H + 2 * KV) * hd, d_, n_.conv1d);
            L.qkv_b = bias(c_.qkv_bias, n_.qkv, (H + 2 * KV) * hd);
        } else {
            L.q = linear(n_.q, (c_.attn_output_gate ? 2 : 1) * H * hd, d_);  // (gated: [q_h; g_h] per head)
            L.k = linear(n_.k, KV * hd, d_);
            L.v = linear(n_.v, KV * hd, d_);
            L.q_b = bias(c_.qkv_bias && c_.q_bias, n_.q, H * hd);
            L.k_b = bias(c_.qkv_bias && c_.k_bias, n_.k, KV * hd);
            L.v_b = bias(c_.qkv_bias && c_.v_bias, n_.v, KV * hd);
        }
        if (c_.layer_qk_norm(l_)) {
            const bool whole = c_.qk_norm == QKNorm::Whole;
            L.q_norm = norm(true, n_.q_norm, H * hd, whole ? 1 : H, &c_.qk_norm_spec);
            L.k_norm = norm(true, n_.k_norm, KV * hd, whole ? 1 : KV, &c_.qk_norm_spec);
        }
        L.o = linear(n_.o, d_, H * c_.v_dim(), n_.conv1d);
        L.o_b = bias(c_.o_bias, n_.o, d_);
        if (c_.attn_sub_norm) L.attn_sub_norm = norm(true, n_.attn_sub_norm, H * hd);
        if (c_.sink == SinkKind::KVBias) {
            L.k_bias_slot = b_.mat(p_ + "self_attn.k_bias", KV, hd);
            L.v_bias_slot = b_.mat(p_ + "self_attn.v_bias", KV, hd);
        } else if (c_.sink == SinkKind::Logit) {
            L.sinks = b_.vec(p_ + "self_attn.sinks", H);
        }
    }

    /// A dense MLP: gated (gate and up, or both in one gate_up matrix) or plain, and down.
    void dense_mlp(LayerWeights& L) const {
        if (!n_.gate_up.empty()) {
            L.gate_up = linear(n_.gate_up, 2 * I_, d_);
            L.gate_up_b = bias(c_.mlp_bias, n_.gate_up, 2 * I_);
        } else {
            if (c_.mlp == MlpKind::Gated) {
                L.gate = linear(n_.gate, I_, d_);
                L.gate_b = bias(c_.mlp_bias, n_.gate, I_);
            }
            L.up = linear(n_.up, I_, d_, n_.conv1d);
            L.up_b = bias(c_.mlp_bias, n_.up, I_);
        }
        L.down = linear(n_.down, d_, I_, n_.conv1d);
        L.down_b = bias(c_.mlp_bias, n_.down, d_);
    }

    /// Expert e's matrix out of a stacked [E, in, out] (or [E, out, in]) tensor: a view of its slice.
    WeightMatrix expert_slice(LayerWeights& L, const io::TensorView& t, Index e, Index in, Index out) const {
        const bool oi = c_.experts_out_in;
        auto v = std::make_shared<io::TensorView>(t);
        v->name = t.name + "[" + std::to_string(e) + "]";
        v->shape = oi ? std::vector<std::int64_t>{out, in} : std::vector<std::int64_t>{in, out};
        v->nbytes = t.nbytes / static_cast<std::size_t>(c_.num_experts);
        v->data = t.data + static_cast<std::size_t>(e) * v->nbytes;
        L.slices.push_back(v);
        return WeightMatrix(v.get(), out, in, !oi);
    }

    /// Experts stored as [E, ...] tensors (gpt-oss): one matrix per expert, sliced.
    void stacked_experts(LayerWeights& L) const {
        const Index E = c_.num_experts;
        const bool oi = c_.experts_out_in;
        const io::TensorView& gu =
            oi ? b_.get(p_ + n_.experts_gate_up + ".weight", {E, 2 * I_, d_}) : b_.get(p_ + n_.experts_gate_up, {E, d_, 2 * I_});
        const io::TensorView& dn = oi ? b_.get(p_ + n_.experts_down + ".weight", {E, d_, I_}) : b_.get(p_ + n_.experts_down, {E, I_, d_});
        std::vector<float> gu_b, dn_b;
        if (c_.mlp_bias) gu_b = b_.mat(p_ + n_.experts_gate_up + "_bias", E, 2 * I_), dn_b = b_.mat(p_ + n_.experts_down + "_bias", E, d_);
        for (Index e = 0; e < E; ++e) {
            ExpertWeights X;
            X.gate_up = expert_slice(L, gu, e, d_, 2 * I_);
            X.down = expert_slice(L, dn, e, I_, d_);
            if (c_.mlp_bias) {
                X.gate_up_b.assign(gu_b.begin() + e * 2 * I_, gu_b.begin() + (e + 1) * 2 * I_);
                X.down_b.assign(dn_b.begin() + e * d_, dn_b.begin() + (e + 1) * d_);
            }
            L.experts.push_back(std::move(X));
        }
    }

    /// A mixture of experts: the router, the experts (stacked or one module each), the shared expert.
    void experts(LayerWeights& L) const {
        L.router = linear(n_.router, c_.num_experts, d_);
        L.router_b = bias(c_.router_bias, n_.router, c_.num_experts);
        if (!n_.router_score_bias.empty()) L.router_score_bias = b_.vec(p_ + n_.router_score_bias, c_.num_experts);
        if (!n_.experts_gate_up.empty()) {
            stacked_experts(L);
        } else {
            for (int e = 0; e < c_.num_experts; ++e) {
                const std::string ep = replace_all(n_.expert, "{e}", std::to_string(e));
                ExpertWeights X;
                X.gate = linear(ep + n_.expert_gate, I_, d_);
                X.up = linear(ep + n_.expert_up, I_, d_);
                X.down = linear(ep + n_.expert_down, d_, I_);
                L.experts.push_back(std::move(X));
            }
        }
        if (c_.shared_expert_size > 0) {
            const Index S = c_.shared_expert_size;
            L.shared.gate = linear(n_.shared_expert + "gate_proj", S, d_);
            L.shared.up = linear(n_.shared_expert + "up_proj", S, d_);
            L.shared.down = linear(n_.shared_expert + "down_proj", d_, S);
            if (c_.shared_expert_gated) L.shared_gate = linear(n_.shared_expert_gate, 1, d_);
        }
    }

    /// The MLP's sub-norm, xIELU's learned parameters, layer scales.
    void extras(LayerWeights& L) const {
        if (c_.mlp_sub_norm) L.mlp_sub_norm = norm(true, n_.mlp_sub_norm, I_);
        if (c_.act == ActivationFn::XIELU) {  // the activation's raw parameters, mapped as xIELU uses them
            if (n_.act_params.empty()) throw Error(b_.dir() + ": the xIELU activation's parameters have no tensor names in this family");
            auto softplus = [](double x) { return x > 20 ? x : std::log1p(std::exp(x)); };
            const std::string a = p_ + n_.act_params;
            const double ap = b_.values(a + ".alpha_p", 1)[0], an = b_.values(a + ".alpha_n", 1)[0];
            const float beta = b_.values(a + ".beta", 1)[0], eps = b_.values(a + ".eps", 1)[0];
            L.act_params = {static_cast<float>(softplus(ap)), static_cast<float>(beta + softplus(an)), beta, eps};
        }
        if (!n_.ls_attn.empty()) L.ls_attn = b_.vec(p_ + n_.ls_attn, d_);
        if (!n_.ls_mlp.empty()) L.ls_mlp = b_.vec(p_ + n_.ls_mlp, d_);
    }

    const Binder& b_;
    const ModelConfig& c_;
    const BlockNames& n_;
    int l_;
    std::string p_;
    Index d_, I_;
};

/// Keep float32 copies of every half-precision matrix when all of them fit the budget.
inline void make_resident(ModelWeights& w, const LoadOptions& opt) {
    std::vector<WeightMatrix*> all = {&w.embed};
    for (WeightMatrix* m : {&w.lm_head, &w.pos_embed, &w.pooler, &w.map_in, &w.map_out, &w.map_fc1, &w.map_fc2})
        if (m->bound()) all.push_back(m);
    for (auto& L : w.layers) for_each_linear(L, [&](WeightMatrix& m, const std::string&) { all.push_back(&m); });
    std::size_t total = 0;
    for (auto* m : all) {
        if (io::quantized(m->source()->dtype)) return;  // quantized models stay quantized: dequantized per use
        if (!m->zero_copy() && !(m == &w.lm_head && w.lm_head.source() == w.embed.source())) total += m->f32_bytes();
    }
    if (total > opt.resident_f32_budget) return;
    w.embed.make_resident();
    w.lm_head.share_resident(w.embed);  // tied: one copy for both views
    for (auto* m : all) m->make_resident();
}

}  // namespace detail

/// Bind every tensor the block description names; shapes come from config.json.
inline ModelWeights bind_weights(const io::Checkpoint& ck, const ModelConfig& c, const LoadOptions& opt = {}) {
    ModelWeights w;
    const Index d = c.hidden_size, V = c.vocab_size;
    const ModelNames& names = c.names;
    // The body's prefix: the first candidate under which the embedding exists.
    std::string prefix = names.prefixes.front();
    for (const auto& p : names.prefixes)
        if (ck.has(p + names.embed + ".weight")) {
            prefix = p;
            break;
        }
    const detail::Binder b(ck, prefix);
    if (c.is_vision()) {
        const VisionSpec& v = c.vision;
        const Index C = v.channels, P = v.patch_size;
        w.embed = WeightMatrix(&b.get(names.embed + ".weight", {d, C, P, P}), d, C * P * P, false);
        if (v.patch_bias) w.patch_b = b.vec(names.embed + ".bias", d);
        if (v.cls) w.cls = b.values(names.cls_token, d);
        else w.cls.assign(static_cast<std::size_t>(d), 0.0f);  // (no CLS: a zero row 0 of the position table, never added)
        if (v.registers > 0) w.registers = b.values(names.register_tokens, Index(v.registers) * d);
        if (!names.pos_table.empty()) {  // (rows: CLS if any, then the patch grid; none with DINOv3's 2-D RoPE)
            w.pos_table = b.values(names.pos_table, Index(c.max_positions) * d);
            if (!v.cls) w.pos_table.insert(w.pos_table.begin(), static_cast<std::size_t>(d), 0.0f);
        }
        if (v.map_head) {
            const Index I = c.intermediate_size;
            w.map_probe = b.values(names.map_head + "probe", d);
            w.map_in = b.linear(names.map_head + "attention.in_proj_weight", 3 * d, d);
            w.map_in_b = b.vec(names.map_head + "attention.in_proj_bias", 3 * d);
            w.map_out = b.linear(names.map_head + "attention.out_proj.weight", d, d);
            w.map_out_b = b.vec(names.map_head + "attention.out_proj.bias", d);
            w.map_norm = b.norm(names.map_head + "layernorm", c.norm, d);
            w.map_fc1 = b.linear(names.map_head + "mlp.fc1.weight", I, d);
            w.map_fc1_b = b.vec(names.map_head + "mlp.fc1.bias", I);
            w.map_fc2 = b.linear(names.map_head + "mlp.fc2.weight", d, I);
            w.map_fc2_b = b.vec(names.map_head + "mlp.fc2.bias", d);
        }
        if (!names.pooler.empty() && b.has(names.pooler + ".weight")) {
            w.pooler = b.linear(names.pooler + ".weight", d, d);
            w.pooler_b = b.vec(names.pooler + ".bias", d);
        }
    } else {
        w.embed = WeightMatrix(&b.get(names.embed + ".weight", {V, d}), d, V, true);  // rows are tokens
    }
    if (c.positions == PositionKind::Learned) {
        const Index rows = Index(c.max_positions) + c.pos_offset;
        w.pos_embed = WeightMatrix(&b.get(names.pos_embed + ".weight", {rows, d}), d, rows, true);
    }
    if (c.embed_norm) w.embed_norm = b.norm(names.embed_norm, c.norm, d);
    for (int l = 0; l < c.num_layers; ++l)
        w.layers.push_back(detail::LayerBinder(b, c, l, detail::replace_all(names.layer, "{l}", std::to_string(l))).bind());
    w.final_norm = b.norm(names.final_norm, c.norm, d);
    if (c.is_vision()) {
        detail::make_resident(w, opt);
        return w;
    }
    if (ck.has(names.lm_head + ".weight") && !c.tie_embeddings) {
        w.lm_head = detail::Binder(ck, "").linear(names.lm_head + ".weight", V, d);
    } else {
        if (!c.tie_embeddings)
            throw Error(ck.dir() + ": missing tensor \"" + names.lm_head + ".weight\" (config.json has tie_word_embeddings false)");
        w.lm_head = WeightMatrix(w.embed.source(), V, d, false);
    }
    if (c.lm_head_bias) w.lm_head_b = detail::Binder(ck, "").vec(names.lm_head + ".bias", V);
    detail::make_resident(w, opt);
    return w;
}

}  // namespace massact

// massact/analysis/quantization.hpp - fake quantization of a float model, and what outliers do to it
// (LLM.int8(), SmoothQuant, Yu et al.'s super weight, PrefixQuant).
//
// Weights (every linear map of every block; embedding and LM head stay float), on the [out, in] matrix,
// in groups: the whole tensor, one output channel (row), or blocks of B consecutive inputs of a row.
//   int8 / int4, symmetric round-to-nearest: m = max |w| over the group, Q = 127 or 7;
//     w' = (m / Q) * clamp(round(w * Q / m), -Q, Q), round half away from zero (w * Q / m is computed in
//     that order, so an exact tie of half-precision weights rounds as a tie); m = 0 leaves the group at 0.
//   NF4 (QLoRA): s = max |w| over the group; w' = s * the NF4 level nearest to w / s (16 levels, the
//     quantiles of a standard normal scaled to [-1, 1]).
//   int2, asymmetric round-to-nearest: lo, hi = min, max of w over the group, sc = (hi - lo) / 3;
//     w' = lo + sc * clamp(round((w - lo) / sc), 0, 3) (four levels from lo to hi; hi = lo leaves the group).
//   ternary (BitNet b1.58, absmean): g = mean |w| over the group; w' = g * clamp(round(w / (g + 1e-5)), -1, 1).
// Activations (W8A8): the inputs of the linear maps (ln1 output -> q, k, v; hook_z -> o; ln2 output ->
// gate, up; hook_post -> down), quantized in place by hooks with the same int8 rule, one scale per
// forward per tensor (max over the whole activation) or per token (max over its row).
// Protections, each an option of one experiment:
//   massive dims    the residual dims the detector reports stay float: the weight columns reading them and
//                   rows writing them, and those activation columns; all are left out of the scales.
//   outliers > 6    LLM.int8()'s decomposition: activation columns with any |x| > 6 in this forward stay float.
//   super weight    the super weights (find_super_weights) get their float values back after quantization.
//   first token     the first token's activations stay float and out of the per-tensor scale.
//   static scales   per-tensor activation scales fixed by a calibration pass (max |x|; beyond it values clip).
//   PrefixQuant     the outlier tokens (prefix_outlier_tokens) prefixed to every sequence, their positions float (their
//                   KV cache made offline) and out of the scales: static per-tensor scales then see no outlier token.
//   KV cache        keys after RoPE and values to 4 (2..8) bits, asymmetric per token and head (QuaRot's KV4), in a
//                   Hadamard basis of the head under a rotation; IntactKV keeps the first token's keys and values.
//   SmoothQuant     per input channel j of the linears sharing an input: s_j = max|X_j|^a / max|W_:,j|^(1-a)
//                   (a = 0.5, max |X_j| calibrated on the data); X_j / s_j and W_:,j * s_j, then quantized.
//   AWQ             per input channel, s_j = mean|X_j|^a (a searched on the calibration data: awq_search), W diag(s)
//                   quantized, X / s at run time (weight-only).
//   rotation        QuaRot / SpinQuant (analysis/rotation.hpp): the residual stream rotated by a randomized Hadamard or a
//                   random orthogonal matrix folded into the weights (norm scales first), the down_proj inputs by a
//                   Hadamard rotation online; then quantized (RTN or GPTQ on the rotated model's own Hessians).
// Activations may also be int4 (W4A4: Q = 7), per tensor or per token.
#pragma once

#include "massact/analysis/intervention.hpp"
#include "massact/analysis/perplexity.hpp"
#include "massact/analysis/rotation.hpp"
#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/kernels/fake_quant.hpp"
#include "massact/model/hooks.hpp"
#include "massact/model/transformer.hpp"

#include <Eigen/Cholesky>

#include <algorithm>
#include <cstdio>
#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace massact::analysis {

enum class QuantFormat { Float, Int8, Int4, NF4, Int2, Ternary };
enum class Granularity { PerTensor, PerChannel, Block, PerToken };

inline const char* format_name(QuantFormat f) {
    switch (f) {
        case QuantFormat::Float: return "float";
        case QuantFormat::Int8: return "int8";
        case QuantFormat::Int4: return "int4";
        case QuantFormat::NF4: return "nf4";
        case QuantFormat::Int2: return "int2";
        case QuantFormat::Ternary: return "ternary";
    }
    return "?";
}

/// The 16 NF4 levels (Dettmers et al. 2023, QLoRA).
inline const std::array<float, 16>& nf4_levels() {
    static const std::array<float, 16> v = {-1.0f, -0.6961928f, -0.5250731f, -0.3949175f, -0.2844414f, -0.1847734f, -0.0910500f, 0.0f,
                                           0.0795803f, 0.1609302f, 0.2461123f, 0.3379152f, 0.4407098f, 0.5626170f, 0.7229568f, 1.0f};
    return v;
}

/// Symmetric RTN of x in a group whose largest magnitude is m, to the integers [-Q, Q].
inline float rtn(float x, float m, int Q) {
    if (m == 0.0f) return 0.0f;
    const float q = std::round(x * static_cast<float>(Q) / m);
    return m / static_cast<float>(Q) * std::min(static_cast<float>(Q), std::max(static_cast<float>(-Q), q));
}

inline float nf4(float x, float s) {
    if (s == 0.0f) return 0.0f;
    const auto& lv = nf4_levels();
    const float y = x / s;
    const auto it = std::lower_bound(lv.begin(), lv.end(), y);
    if (it == lv.begin()) return s * lv.front();
    if (it == lv.end()) return s * lv.back();
    return s * (y - *(it - 1) <= *it - y ? *(it - 1) : *it);
}

struct WeightQuant {
    QuantFormat format = QuantFormat::Int8;
    Granularity granularity = Granularity::PerChannel;
    Index block = 64;  // Granularity::Block
};

/// Fake-quantize w [out, in] in place; keep_row[r] / keep_col[c] (optional) stay float and out of the scales.
inline void fake_quantize(Eigen::Ref<RowMatrixF> w, const WeightQuant& q, const std::vector<bool>& keep_row = {},
                          const std::vector<bool>& keep_col = {}) {
    if (q.format == QuantFormat::Float) return;
    const int Q = q.format == QuantFormat::Int8 ? 127 : 7;
    auto kept = [&](Index r, Index c) {
        return (!keep_row.empty() && keep_row[static_cast<std::size_t>(r)]) || (!keep_col.empty() && keep_col[static_cast<std::size_t>(c)]);
    };
    auto quantize = [&](Index r0, Index r1, Index c0, Index c1) {  // one group
        float s = 0.0f, lo = std::numeric_limits<float>::infinity(), hi = -lo;
        double sum = 0;
        Index n = 0;
        for (Index r = r0; r < r1; ++r)
            for (Index c = c0; c < c1; ++c)
                if (!kept(r, c)) {
                    s = std::max(s, std::abs(w(r, c)));
                    lo = std::min(lo, w(r, c));
                    hi = std::max(hi, w(r, c));
                    sum += std::abs(double(w(r, c)));
                    ++n;
                }
        if (n == 0) return;
        const float mean = static_cast<float>(sum / double(n)), step = (hi - lo) / 3.0f;
        auto one = [&](float x) {
            switch (q.format) {
                case QuantFormat::NF4: return nf4(x, s);
                case QuantFormat::Int2: return step > 0.0f ? kernels::asymmetric_level(x, lo, step, 3) : x;
                case QuantFormat::Ternary: return mean * std::min(1.0f, std::max(-1.0f, std::round(x / (mean + 1e-5f))));
                default: return rtn(x, s, Q);
            }
        };
        for (Index r = r0; r < r1; ++r)
            for (Index c = c0; c < c1; ++c)
                if (!kept(r, c)) w(r, c) = one(w(r, c));
    };
    switch (q.granularity) {
        case Granularity::PerTensor: quantize(0, w.rows(), 0, w.cols()); break;
        case Granularity::PerChannel:
        case Granularity::PerToken:
            for (Index r = 0; r < w.rows(); ++r) quantize(r, r + 1, 0, w.cols());
            break;
        case Granularity::Block:
            if (q.block < 1) throw Error("fake_quantize: block size must be positive");
            for (Index r = 0; r < w.rows(); ++r)
                for (Index c = 0; c < w.cols(); c += q.block) quantize(r, r + 1, c, std::min(w.cols(), c + q.block));
            break;
    }
}

/// GPTQ (Frantar et al. 2023): w [out, in] quantized one input column at a time, each column's rounding error spread
/// over the columns not yet quantized through the inverse Hessian of the layer's inputs H = X^T X [in, in] (inputs that
/// never fire: their column zeroed; damp * mean(diag H) added to the diagonal). With U the upper Cholesky factor of
/// H^-1, column i's error e = (w_i - q_i) / U_ii moves the later columns by -e U_i,j. The updates to the columns after a
/// batch of `batch` columns are applied once per batch (lazy batches: the column-by-column result in exact arithmetic).
/// Symmetric RTN to int8 / int4: scales per output row from its whole row (PerChannel), or per group of q.block inputs
/// from the group's weights as updated when the group is reached (Block; the batches are the groups). In double.
inline void gptq_quantize(Eigen::Ref<RowMatrixF> w, const Eigen::MatrixXd& H, const WeightQuant& q, double damp = 0.01, Index batch = 128) {
    const Index out = w.rows(), in = w.cols();
    if (H.rows() != in || H.cols() != in)
        throw Error("GPTQ: a Hessian of " + std::to_string(H.rows()) + " x " + std::to_string(H.cols()) + " for " + std::to_string(in) + " inputs");
    if (q.format != QuantFormat::Int8 && q.format != QuantFormat::Int4)
        throw Error(std::string("GPTQ: ") + format_name(q.format) + " weights (GPTQ here rounds to int8 or int4)");
    if (q.granularity != Granularity::PerChannel && q.granularity != Granularity::Block)
        throw Error("GPTQ: scales per output channel or per block of inputs only");
    if (q.granularity == Granularity::Block && q.block < 1) throw Error("GPTQ: block size must be positive");
    if (!(damp > 0)) throw Error("GPTQ: damping must be positive");
    const int Q = q.format == QuantFormat::Int8 ? 127 : 7;
    const bool groups = q.granularity == Granularity::Block;
    if (groups) batch = q.block;
    Eigen::MatrixXd W = w.cast<double>(), Hd = H;
    std::vector<double> scale(static_cast<std::size_t>(out), 0.0);
    auto set_scales = [&](const Eigen::Ref<const Eigen::MatrixXd>& cols) {
        for (Index r = 0; r < out; ++r) scale[static_cast<std::size_t>(r)] = cols.row(r).cwiseAbs().maxCoeff();
    };
    if (!groups) set_scales(W);
    for (Index i = 0; i < in; ++i)
        if (Hd(i, i) == 0.0) Hd(i, i) = 1.0, W.col(i).setZero();
    Hd.diagonal().array() += damp * Hd.diagonal().mean();
    const Eigen::LLT<Eigen::MatrixXd> chol(Hd);
    if (chol.info() != Eigen::Success) throw Error("GPTQ: the damped Hessian is not positive definite");
    const Eigen::LLT<Eigen::MatrixXd> chol_inv(chol.solve(Eigen::MatrixXd::Identity(in, in)));
    if (chol_inv.info() != Eigen::Success) throw Error("GPTQ: the inverse Hessian is not positive definite");
    const Eigen::MatrixXd U = chol_inv.matrixU();
    auto round = [&](double x, double m) {
        if (m == 0.0) return 0.0;
        return m / Q * std::min<double>(Q, std::max<double>(-Q, std::round(x * Q / m)));
    };
    for (Index i1 = 0; i1 < in; i1 += batch) {
        const Index n = std::min(batch, in - i1);
        Eigen::MatrixXd W1 = W.middleCols(i1, n), Err(out, n);
        if (groups) set_scales(W1);
        for (Index i = 0; i < n; ++i) {
            const double d = U(i1 + i, i1 + i);
            for (Index r = 0; r < out; ++r) {
                const double qv = round(W1(r, i), scale[static_cast<std::size_t>(r)]);
                Err(r, i) = (W1(r, i) - qv) / d;
                W1(r, i) = qv;
            }
            if (i + 1 < n) W1.rightCols(n - i - 1).noalias() -= Err.col(i) * U.row(i1 + i).segment(i1 + i + 1, n - i - 1);
        }
        W.middleCols(i1, n) = W1;
        if (i1 + n < in) W.rightCols(in - i1 - n).noalias() -= Err * U.block(i1, i1 + n, n, in - i1 - n);
    }
    w = W.cast<float>();
}

/// AWQ's search (Lin et al. 2024) for the linears `ws` [out, in] that read one input, with H = X^T X of that input over
/// the calibration data and mean_abs[j] = mean |X_j|: for alpha in {0, 1/grid, ..., (grid-1)/grid}, the scales
/// s_j = mean_abs_j^alpha, divided by sqrt(max s * min s); each W diag(s) quantized as q says, then divided by s again;
/// the loss sum over the linears of tr(dW H dW^T), dW the change of W (the squared output error on the calibration
/// data). The alpha of least loss wins (alpha 0: round-to-nearest). In deployment X / s is folded into the operation
/// before (a norm's scale, v_proj's or up_proj's rows); the study divides the activations by s at run time.
struct AwqSearch {
    double alpha = 0.0;
    std::vector<float> scales;    // s [in]
    double loss = 0.0, loss_rtn = 0.0;  // at alpha, and at alpha = 0
};

inline AwqSearch awq_search(const std::vector<RowMatrixF>& ws, const Eigen::MatrixXd& H, const std::vector<float>& mean_abs, const WeightQuant& q,
                            int grid = 20) {
    require_at_least(grid, 1, "awq_search: grid");
    const Index in = H.rows();
    if (H.cols() != in || static_cast<Index>(mean_abs.size()) != in) throw Error("awq_search: H and mean_abs must match the inputs");
    AwqSearch best;
    for (int g = 0; g < grid; ++g) {
        const double alpha = double(g) / grid;
        std::vector<float> s(static_cast<std::size_t>(in));
        double lo = std::numeric_limits<double>::infinity(), hi = 0;
        for (Index j = 0; j < in; ++j) {
            const double v = std::pow(std::max(double(mean_abs[static_cast<std::size_t>(j)]), 1e-8), alpha);
            s[static_cast<std::size_t>(j)] = static_cast<float>(v);
            lo = std::min(lo, v), hi = std::max(hi, v);
        }
        const double norm = std::sqrt(lo * hi);
        for (float& x : s) x = static_cast<float>(x / norm);
        const Eigen::Map<const Eigen::RowVectorXf> sv(s.data(), in);
        double loss = 0;
        for (const RowMatrixF& w : ws) {
            if (w.cols() != in) throw Error("awq_search: a weight's inputs differ from H's");
            RowMatrixF scaled = (w.array().rowwise() * sv.array()).matrix();
            fake_quantize(scaled, q);
            const Eigen::MatrixXd dw = (scaled.array().rowwise() / sv.array()).matrix().cast<double>() - w.cast<double>();
            loss += (dw * H).cwiseProduct(dw).sum();
        }
        if (g == 0) best.loss_rtn = loss;
        if (g == 0 || loss < best.loss) best = {alpha, s, loss, best.loss_rtn};
    }
    return best;
}

/// AWQ's clipping search (Lin et al. 2024), after its scaling: in each group of w [out, in] (an output row, or a block of
/// q.block inputs of a row), the clip c = m (1 - i / grid) for i = 0 .. max_shrink * grid - 1, m the group's max |w|;
/// the group clipped to [-c, c] and rounded to int8 / int4 with scale c; the c of least output error dw^T H_gg dw on the
/// calibration inputs (H = X^T X [in, in]) wins (i = 0: round-to-nearest). w is left quantized; returns the mean c / m.
inline double awq_clip_quantize(Eigen::Ref<RowMatrixF> w, const Eigen::MatrixXd& H, const WeightQuant& q, int grid = 20, double max_shrink = 0.5) {
    require_at_least(grid, 1, "awq_clip_quantize: grid");
    if (q.format != QuantFormat::Int8 && q.format != QuantFormat::Int4)
        throw Error(std::string("quant: AWQ's clipping search quantizes to int8 or int4, not ") + format_name(q.format));
    if (q.granularity != Granularity::PerChannel && q.granularity != Granularity::Block)
        throw Error("quant: AWQ's clipping search works per output channel or per block");
    const Index out = w.rows(), in = w.cols(), G = q.granularity == Granularity::Block ? q.block : in;
    require_at_least(G, 1, "awq_clip_quantize: block");
    if (H.rows() != in || H.cols() != in) throw Error("awq_clip_quantize: H must be [in, in] of the weight's inputs");
    const int Q = q.format == QuantFormat::Int8 ? 127 : 7;
    const int steps = std::max(1, static_cast<int>(max_shrink * grid));
    double ratio_sum = 0;
    Index groups = 0;
    for (Index c0 = 0; c0 < in; c0 += G) {
        const Index g = std::min(G, in - c0);
        const Eigen::MatrixXd Hg = H.block(c0, c0, g, g);
        const Eigen::MatrixXd w0 = w.middleCols(c0, g).cast<double>();
        const Eigen::VectorXd m = w0.cwiseAbs().rowwise().maxCoeff();
        Eigen::VectorXd best_err = Eigen::VectorXd::Constant(out, std::numeric_limits<double>::infinity()), best_c = m;
        Eigen::MatrixXd dw(out, g);
        for (int i = 0; i < steps; ++i) {
            const double shrink = 1.0 - double(i) / grid;
            for (Index r = 0; r < out; ++r) {
                const float c = static_cast<float>(m(r) * shrink);
                for (Index j = 0; j < g; ++j) {
                    const float x = std::min(c, std::max(-c, w(r, c0 + j)));
                    dw(r, j) = double(rtn(x, c, Q)) - w0(r, j);
                }
            }
            const Eigen::VectorXd err = (dw * Hg).cwiseProduct(dw).rowwise().sum();
            for (Index r = 0; r < out; ++r)
                if (err(r) < best_err(r)) best_err(r) = err(r), best_c(r) = m(r) * shrink;
        }
        for (Index r = 0; r < out; ++r) {
            const float c = static_cast<float>(best_c(r));
            for (Index j = 0; j < g; ++j) w(r, c0 + j) = rtn(std::min(c, std::max(-c, w(r, c0 + j))), c, Q);
            ratio_sum += m(r) > 0 ? best_c(r) / m(r) : 1.0;
            ++groups;
        }
    }
    return groups ? ratio_sum / double(groups) : 1.0;
}

/// One experiment: how weights and activations are quantized, and what is protected.
struct QuantExperiment {
    WeightQuant weights;
    QuantFormat activations = QuantFormat::Float;          // Float, Int8 or Int4
    Granularity act_granularity = Granularity::PerTensor;  // PerTensor or PerToken
    bool keep_massive_dims = false, outlier_threshold = false, restore_super_weight = false, keep_first_token = false;
    bool smooth_quant = false;
    bool gptq = false;  // weights by GPTQ (gptq_quantize) with the float model's inputs as calibration, instead of RTN
    RotationKind rotation = RotationKind::None;  // QuaRot / SpinQuant: quantize the rotated model (rotate_model, seed 0)
    bool awq = false;   // AWQ: weights scaled per input channel by awq_search's scales before quantization (weight-only)
    bool awq_clip = true;  // with awq: AWQ's clipping search per group (awq_clip_quantize; not for q and k, as AWQ)
    // Static activation scales: one per linear input and layer, max |x| over the calibration data (the weights already
    // quantized, activations float; positions and dims that stay float left out), fixed for every forward; values
    // beyond it clip. Per tensor only.
    bool static_scales = false;
    // PrefixQuant (Chen et al. 2024): QuantContext::prefix (the outlier tokens, prefix_outlier_tokens) prepended to
    // every sequence; their positions stay float (their KV cache is computed once, offline) and out of the scales; the
    // loss is over the sequence's own tokens.
    bool prefix_outliers = false;
    int kv_bits = 0;         // KV cache to kv_bits bits (2..8): keys (after RoPE) and values, asymmetric per token and head
    bool intact_kv = false;  // IntactKV: the first token's keys and values stay float (the prefix's always do)
    double smooth_alpha = 0.5, threshold = 6.0;

    std::string granularity() const {
        auto g = [&](Granularity x, Index b) {
            switch (x) {
                case Granularity::PerTensor: return std::string("per-tensor");
                case Granularity::PerChannel: return std::string("per-channel");
                case Granularity::Block: return "block-" + std::to_string(b);
                case Granularity::PerToken: return std::string("per-token");
            }
            return std::string("?");
        };
        std::string s = weights.format == QuantFormat::Float ? "" : "W " + g(weights.granularity, weights.block);
        if (activations != QuantFormat::Float)
            s += (s.empty() ? "" : ", ") + std::string("A ") + g(act_granularity, 0) + (static_scales ? " static" : "");
        if (kv_bits > 0) s += (s.empty() ? "" : ", ") + std::string("KV") + std::to_string(kv_bits);
        return s;
    }
    std::string protect() const {
        std::string s;
        auto number = [](double x) {  // shortest form: 6, 0.5, 0.85
            char b[32];
            std::snprintf(b, sizeof b, "%g", x);
            return std::string(b);
        };
        auto add = [&](bool on, const std::string& what) {
            if (on) s += (s.empty() ? "" : ", ") + std::string(what);
        };
        add(keep_massive_dims, "massive dims in float");
        add(outlier_threshold, "|x| > " + number(threshold) + " in float (LLM.int8)");
        add(restore_super_weight, "super weight restored");
        add(keep_first_token, "first token in float");
        add(prefix_outliers, "prefixed outlier tokens (PrefixQuant)");
        add(intact_kv, "first tokens' KV in float (IntactKV)");
        add(smooth_quant, "SmoothQuant a=" + number(smooth_alpha));
        add(rotation != RotationKind::None, std::string("rotation (") + rotation_name(rotation) + ")");
        add(gptq, "GPTQ");
        add(awq, awq_clip ? "AWQ" : "AWQ scales (no clipping)");
        return s.empty() ? "none" : s;
    }
};

/// What a quantization study needs from the float model once: massive dims, super weights, and (for
/// SmoothQuant) max |X_j| per linear input site and layer.
struct QuantContext {
    std::vector<Index> massive_dims;
    std::vector<SuperWeight> super_weights;
    std::map<std::string, std::vector<float>> act_absmax;  // linear-input site -> max |X_j| [width]
    std::map<std::string, std::vector<float>> smooth;      // linear-input site -> SmoothQuant's s_j [width]
    std::map<std::string, Eigen::MatrixXd> hessians;       // linear-input site -> X^T X [width, width] (GPTQ, AWQ)
    std::map<std::string, std::vector<float>> act_meanabs; // linear-input site -> mean |X_j| [width] (AWQ)
    std::map<std::string, std::vector<float>> awq;         // linear-input site -> AWQ's s_j [width] (prepare_awq)
    std::vector<Index> prefix;  // PrefixQuant's prefix (prefix_outlier_tokens): the outlier tokens, then BOS
    Index prefix_outliers = 0;  // the outlier tokens per sequence it found (o)
    double prefix_ratio = 64.0; // PrefixQuant's outlier criterion (prefix_outlier_tokens' ratio)
};

/// The linear-input sites of a block and the roles of the linears that read them.
inline const std::vector<std::pair<std::string, std::vector<std::string>>>& linear_inputs() {
    static const std::vector<std::pair<std::string, std::vector<std::string>>> v = {
        {"ln1.hook_normalized", {"q", "k", "v"}}, {"attn.hook_z", {"o"}}, {"ln2.hook_normalized", {"gate", "up"}}, {"mlp.hook_post", {"down"}}};
    return v;
}

/// Quantization studies need a sequential pre-norm block with separate projections (llama, mistral, qwen, gemma, ...).
inline void check_quant_model(const ModelConfig& c) {
    if (c.has_recurrent())
        throw Error("quant: this " + c.model_type + " model has Gated DeltaNet or Mamba-2 layers, whose projections the quantization "
                    "study does not map to calibration sites yet (it quantizes attention and MLP layers only)");
    if (c.parallel || !c.pre_attn_norm || !c.pre_mlp_norm || c.moe() || !c.names.block.qkv.empty() || !c.names.block.gate_up.empty() ||
        c.mlp != MlpKind::Gated)
        throw Error("quant: this " + c.model_type +
                    " model's blocks are not sequential pre-norm blocks with separate q, k, v and gated MLP projections, which the "
                    "quantization study needs (llama, mistral, qwen2/3, gemma, olmo2, ...)");
}

/// max |x| (SmoothQuant's calibration) or, with `mean`, mean |x| (AWQ's) per column of every linear-input site over the data.
inline std::map<std::string, std::vector<float>> activation_absmax(const Transformer& m, const TokenBatch& ids, Index batch, bool mean = false) {
    require_at_least(batch, 1, "activation_absmax: batch");
    std::map<std::string, std::pair<std::vector<double>, Index>> acc;  // site -> (max or sum per column, rows seen)
    Hooks h;
    for (const auto& [site, roles] : linear_inputs())
        h.add_if_present("blocks.*." + site, [&acc, mean](Activation& a) {
            const Index rows = a.shape[0] * a.shape[1], w = a.numel() / rows;  // hook_z: [N, T, H, hd] is [N*T, H*hd]
            auto& [v, seen] = acc[std::string(a.name)];
            v.resize(static_cast<std::size_t>(w), 0.0);
            seen += rows;
            for (Index r = 0; r < rows; ++r)
                for (Index c = 0; c < w; ++c) {
                    const double x = std::abs(a.data[r * w + c]);
                    auto& y = v[static_cast<std::size_t>(c)];
                    y = mean ? y + x : std::max(y, x);
                }
        });
    RunOptions o;
    o.logits = false;
    run_batches(m, ids, batch, h, o);
    std::map<std::string, std::vector<float>> out;
    for (const auto& [name, vs] : acc) {
        auto& f = out[name];
        for (double x : vs.first) f.push_back(static_cast<float>(mean ? x / double(vs.second) : x));
    }
    return out;
}

/// X^T X of every linear-input site over the data, in double (GPTQ's calibration); refused when they would take more
/// than `max_bytes`.
inline std::map<std::string, Eigen::MatrixXd> input_hessians(const Transformer& m, const TokenBatch& ids, Index batch,
                                                             std::size_t max_bytes = std::size_t(4) << 30, const Hooks& first = {}) {
    require_at_least(batch, 1, "input_hessians: batch");
    const ModelConfig& c = m.config();
    std::size_t bytes = 0;
    for (int l = 0; l < c.num_layers; ++l)
        for (const Index wdt : {Index(c.hidden_size), Index(c.num_heads) * c.v_dim(), Index(c.hidden_size), Index(c.layer_intermediate(l))})
            bytes += static_cast<std::size_t>(wdt * wdt) * sizeof(double);
    if (bytes > max_bytes)
        throw Error("quant: GPTQ's Hessians of this model take " + std::to_string(bytes >> 20) + " MiB (at most " +
                    std::to_string(max_bytes >> 20) + " MiB here)");
    std::map<std::string, Eigen::MatrixXd> out;
    Hooks h = first;  // (a rotated model's online rotations come before)
    for (const auto& [site, roles] : linear_inputs())
        h.add_if_present("blocks.*." + site, [&out](Activation& a) {
            const Index rows = a.shape[0] * a.shape[1], w = a.numel() / rows;
            const Eigen::MatrixXd x = RowMap<float>(a.data, rows, w).cast<double>();
            auto& H = out[std::string(a.name)];
            if (H.size() == 0) H = Eigen::MatrixXd::Zero(w, w);
            H.noalias() += x.transpose() * x;
        });
    RunOptions o;
    o.logits = false;
    run_batches(m, ids, batch, h, o);
    return out;
}

/// PrefixQuant's prefix (Chen et al. 2024). A token is an outlier in a layer when its largest |x| at the input of
/// down_proj (mlp.hook_post) exceeds `ratio` times the median over the sequence's tokens of that largest |x|. The number
/// of outlier tokens o = ceil(the largest, over layers, of the mean over sequences of the outlier count); the prefix is
/// the o token ids most often outliers (counted over sequences, layers and positions; ties: the smaller id; ids that are
/// outliers in fewer than a tenth of the sequences left out), BOS (`bos` >= 0) moved to the end or appended there.
/// Returns {prefix, o}.
inline std::pair<std::vector<Index>, Index> prefix_outlier_tokens(const Transformer& m, const TokenBatch& ids, Index batch, Index bos = -1,
                                                                  double ratio = 64.0) {
    require_at_least(batch, 1, "prefix_outlier_tokens: batch");
    const Index N = ids.rows(), L = m.config().num_layers;
    std::vector<double> count_per_layer(static_cast<std::size_t>(L), 0.0);  // outlier tokens, summed over sequences
    std::map<Index, Index> count;                                          // token id -> times an outlier
    std::map<Index, std::set<Index>> sequences;                            // token id -> sequences where it is one
    Index b0 = 0;
    Hooks h;
    h.add("blocks.*.mlp.hook_post", [&](Activation& a) {
        const Index n = a.shape[0], T = a.shape[1], w = a.numel() / (n * T);
        std::vector<float> peak(static_cast<std::size_t>(T));
        for (Index s = 0; s < n; ++s) {
            for (Index t = 0; t < T; ++t)
                peak[static_cast<std::size_t>(t)] = ConstRowMap<float>(a.data + (s * T + t) * w, 1, w).cwiseAbs().maxCoeff();
            std::vector<float> sorted = peak;
            std::sort(sorted.begin(), sorted.end());
            const double median = T % 2 ? sorted[static_cast<std::size_t>(T / 2)]
                                        : 0.5 * (double(sorted[static_cast<std::size_t>(T / 2 - 1)]) + sorted[static_cast<std::size_t>(T / 2)]);
            for (Index t = 0; t < T; ++t)
                if (peak[static_cast<std::size_t>(t)] > ratio * median) {
                    count_per_layer[static_cast<std::size_t>(a.layer)] += 1;
                    const Index id = (*a.tokens)(s, t);
                    ++count[id];
                    sequences[id].insert(b0 + s);
                }
        }
    });
    RunOptions o;
    o.logits = false;
    run_batches(m, ids, batch, h, o, &b0);
    double most = 0.0;
    for (double c : count_per_layer) most = std::max(most, c / double(std::max<Index>(N, 1)));
    const auto outliers = static_cast<Index>(std::ceil(most - 1e-9));
    std::vector<std::pair<Index, Index>> ranked;  // (count, id)
    for (const auto& [id, c] : count)
        if (10 * static_cast<Index>(sequences[id].size()) >= N) ranked.emplace_back(c, id);
    std::sort(ranked.begin(), ranked.end(), [](const auto& x, const auto& y) { return x.first != y.first ? x.first > y.first : x.second < y.second; });
    std::vector<Index> prefix;
    for (std::size_t i = 0; i < ranked.size() && static_cast<Index>(i) < outliers; ++i)
        if (ranked[i].second != bos) prefix.push_back(ranked[i].second);
    if (bos >= 0) prefix.push_back(bos);
    return {prefix, outliers};
}

/// The linears of a sequential block that linear_inputs() names, by role.
inline std::map<std::string, const WeightMatrix*> linear_roles(const LayerWeights& L) {
    return {{"q", &L.q}, {"k", &L.k}, {"v", &L.v}, {"o", &L.o}, {"gate", &L.gate}, {"up", &L.up}, {"down", &L.down}};
}

/// SmoothQuant's factors from ctx.act_absmax: for input channel j of the linears reading a site,
/// s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha) over those linears (1 where either is 0).
inline void prepare_smoothing(const Transformer& m, QuantContext& ctx, double alpha) {
    for (int l = 0; l < m.config().num_layers; ++l) {
        const auto by_role = linear_roles(m.weights().layers[static_cast<std::size_t>(l)]);
        for (const auto& [site, roles] : linear_inputs()) {
            const std::string name = "blocks." + std::to_string(l) + "." + site;
            const auto it = ctx.act_absmax.find(name);
            if (it == ctx.act_absmax.end()) throw Error("quant: SmoothQuant has no calibration for " + name);
            const auto& x = it->second;
            std::vector<float> wmax(x.size(), 0.0f);
            std::vector<float> scratch;
            for (const auto& role : roles) {
                const WeightMatrix& W = *by_role.at(role);
                const float* w = W.data(scratch);
                for (Index r = 0; r < W.out(); ++r)
                    for (Index c = 0; c < W.in(); ++c)
                        wmax[static_cast<std::size_t>(c)] = std::max(wmax[static_cast<std::size_t>(c)], std::abs(W.stored_in_out() ? w[c * W.out() + r] : w[r * W.in() + c]));
            }
            auto& sc = ctx.smooth[name];
            sc.assign(x.size(), 1.0f);
            for (std::size_t j = 0; j < x.size(); ++j)
                if (x[j] > 0.0f && wmax[j] > 0.0f) sc[j] = static_cast<float>(std::pow(x[j], alpha) / std::pow(wmax[j], 1.0 - alpha));
        }
    }
}

/// AWQ's scales for every linear-input site (ctx.awq) from ctx.hessians and ctx.act_meanabs, for weights quantized as q.
inline void prepare_awq(const Transformer& m, QuantContext& ctx, const WeightQuant& q, int grid = 20) {
    for (int l = 0; l < m.config().num_layers; ++l) {
        const auto by_role = linear_roles(m.weights().layers[static_cast<std::size_t>(l)]);
        for (const auto& [site, roles] : linear_inputs()) {
            const std::string name = "blocks." + std::to_string(l) + "." + site;
            const auto H = ctx.hessians.find(name);
            const auto mean = ctx.act_meanabs.find(name);
            if (H == ctx.hessians.end() || mean == ctx.act_meanabs.end()) throw Error("quant: AWQ has no calibration for " + name);
            std::vector<RowMatrixF> ws;
            for (const auto& role : roles) ws.push_back(by_role.at(role)->to_matrix());
            ctx.awq[name] = awq_search(ws, H->second, mean->second, q, grid).scales;
        }
    }
}

/// The model with the experiment's weights (quantized, smoothed, protected).
inline Transformer quantized_model(const Transformer& m, const QuantExperiment& e, const QuantContext& ctx) {
    const Index d = m.config().hidden_size;
    std::vector<bool> massive(static_cast<std::size_t>(d), false);
    if (e.keep_massive_dims)
        for (Index k : ctx.massive_dims) massive[static_cast<std::size_t>(k)] = true;
    return m.with_weights([&](const Transformer::LinearRef& ref, RowMatrixF& w) {
        if (ref.role == "router" || ref.role == "shared_gate") return false;  // (routing stays in float)
        const std::string prefix = "blocks." + std::to_string(ref.layer) + ".";
        if (e.smooth_quant || e.awq)
            for (const auto& [site, roles] : linear_inputs())
                if (std::find(roles.begin(), roles.end(), ref.role) != roles.end()) {
                    const auto& scales = e.awq ? ctx.awq : ctx.smooth;
                    const auto it = scales.find(prefix + site);
                    if (it == scales.end()) throw Error("quant: no input-channel scales for " + prefix + site + " (prepare_smoothing / prepare_awq)");
                    w.array().rowwise() *= Eigen::Map<const Eigen::RowVectorXf>(it->second.data(), w.cols()).array();
                }
        const bool reads_resid = ref.role == "q" || ref.role == "k" || ref.role == "v" || ref.role == "gate" || ref.role == "up";
        const bool writes_resid = ref.role == "o" || ref.role == "down";
        const std::vector<bool> none;
        std::vector<std::pair<const SuperWeight*, float>> restore;  // the super weights' values before quantization
        if (e.restore_super_weight && ref.role == "down")
            for (const auto& s : ctx.super_weights)
                if (s.layer == ref.layer) restore.emplace_back(&s, w(s.row, s.col));
        if (e.awq && e.awq_clip && ref.role != "q" && ref.role != "k") {
            for (const auto& [site, roles] : linear_inputs())  // (its inputs X / s: H scaled by 1 / s on both sides)
                if (std::find(roles.begin(), roles.end(), ref.role) != roles.end()) {
                    const auto H = ctx.hessians.find(prefix + site);
                    const auto s = ctx.awq.find(prefix + site);
                    if (H == ctx.hessians.end() || s == ctx.awq.end()) throw Error("quant: AWQ has no calibration for " + prefix + site);
                    const Eigen::VectorXd inv = Eigen::Map<const Eigen::VectorXf>(s->second.data(), w.cols()).cast<double>().cwiseInverse();
                    awq_clip_quantize(w, inv.asDiagonal() * H->second * inv.asDiagonal(), e.weights);
                }
        } else if (e.gptq) {
            for (const auto& [site, roles] : linear_inputs())
                if (std::find(roles.begin(), roles.end(), ref.role) != roles.end()) {
                    const auto it = ctx.hessians.find(prefix + site);
                    if (it == ctx.hessians.end()) throw Error("quant: no GPTQ Hessian for " + prefix + site + " (input_hessians)");
                    gptq_quantize(w, it->second, e.weights);
                }
        } else {
            fake_quantize(w, e.weights, writes_resid && e.keep_massive_dims ? massive : none, reads_resid && e.keep_massive_dims ? massive : none);
        }
        for (const auto& [s, value] : restore) w(s->row, s->col) = value;
        return true;
    });
}

/// Per-tensor static activation scales of one experiment: hook name (blocks.L.site) -> max |x| over the calibration data.
using StaticScales = std::map<std::string, float>;

/// The leading positions of every sequence that stay float: the first token, or PrefixQuant's prefix.
inline Index float_positions(const QuantExperiment& e, const QuantContext& ctx) {
    return std::max<Index>(e.keep_first_token ? 1 : 0, e.prefix_outliers ? static_cast<Index>(ctx.prefix.size()) : 0);
}

/// Hooks that fake-quantize the linear inputs as the experiment says, after dividing them by SmoothQuant's s_j
/// where its weights were multiplied by s_j (so a weight-only SmoothQuant experiment divides without quantizing).
/// None for weight-only experiments without SmoothQuant. Static scales (e.static_scales) are read from `statics`; with
/// `calibrate` the hooks instead raise them to the max |x| they see and quantize nothing.
inline Hooks activation_hooks(const ModelConfig& c, const QuantExperiment& e, const QuantContext& ctx,
                              const std::shared_ptr<StaticScales>& statics = nullptr, bool calibrate = false) {
    Hooks h;
    const bool quantize = e.activations != QuantFormat::Float;
    if (e.static_scales && (!quantize || e.act_granularity != Granularity::PerTensor))
        throw Error("quant: static activation scales are per tensor, of quantized activations (" + e.granularity() + ")");
    if (e.static_scales && !statics) throw Error("quant: static activation scales need their calibration (quant_study)");
    const Index skip = float_positions(e, ctx);
    if (!quantize && !e.smooth_quant && !e.awq) return h;
    const Index d = c.hidden_size;
    std::vector<bool> massive(static_cast<std::size_t>(d), false);
    for (Index k : ctx.massive_dims) massive[static_cast<std::size_t>(k)] = true;
    // (the hooks own what they read of ctx: a temporary context may be gone when they run)
    const auto smooth = std::make_shared<const std::map<std::string, std::vector<float>>>(e.awq ? ctx.awq : ctx.smooth);
    for (const auto& [site, roles] : linear_inputs())
        h.add_if_present("blocks.*." + site, [e, massive, d, quantize, smooth, skip, statics, calibrate,
                                              resid = roles.front() != "o" && roles.front() != "down"](Activation& a) {
            const Index N = a.shape[0], T = a.shape[1], w = a.numel() / (N * T);  // hook_z: [N, T, H, hd] is [N*T, H*hd]
            const std::string name(a.name);
            std::vector<bool> keep(static_cast<std::size_t>(w), false);
            if (e.keep_massive_dims && resid && w == d) keep = massive;  // (the residual stream's dims: ln1 / ln2 outputs only)
            if (e.outlier_threshold)  // on the activation as the model computed it (before any smoothing)
                for (Index i = 0; i < a.numel(); ++i)
                    if (std::abs(a.data[i]) > e.threshold) keep[static_cast<std::size_t>(i % w)] = true;
            RowMap<float> x(a.data, N * T, w);
            if (e.smooth_quant || e.awq) {
                const auto it = smooth->find(name);
                if (it == smooth->end()) throw Error("quant: no input-channel scales for " + name + " (prepare_smoothing / prepare_awq)");
                x.array().rowwise() /= Eigen::Map<const Eigen::RowVectorXf>(it->second.data(), w).array();
            }
            if (!quantize) return;
            const int levels = e.activations == QuantFormat::Int4 ? 7 : 127;
            auto skip_row = [&](Index r) { return r % T < skip; };
            auto quant_rows = [&](Index r0, Index r1, float scale) {
                for (Index r = r0; r < r1; ++r)
                    if (!skip_row(r))
                        for (Index c = 0; c < w; ++c)
                            if (!keep[static_cast<std::size_t>(c)]) x(r, c) = rtn(x(r, c), scale, levels);
            };
            auto absmax = [&](Index r0, Index r1) {
                float m = 0.0f;
                for (Index r = r0; r < r1; ++r)
                    if (!skip_row(r))
                        for (Index c = 0; c < w; ++c)
                            if (!keep[static_cast<std::size_t>(c)]) m = std::max(m, std::abs(x(r, c)));
                return m;
            };
            if (e.static_scales) {
                if (calibrate) {
                    float& m = (*statics)[name];
                    m = std::max(m, absmax(0, N * T));
                    return;
                }
                const auto it = statics->find(name);
                if (it == statics->end()) throw Error("quant: no static activation scale for " + name + " (its calibration did not reach it)");
                quant_rows(0, N * T, it->second);
            } else if (e.act_granularity == Granularity::PerToken) {
                for (Index r = 0; r < N * T; ++r) quant_rows(r, r + 1, absmax(r, r + 1));
            } else {
                quant_rows(0, N * T, absmax(0, N * T));
            }
        });
    return h;
}

/// Hooks that fake-quantize what a KV cache would hold, as e.kv_bits says: the keys after RoPE (hook_rot_k; hook_k
/// without RoPE) and the values, each token's head vector asymmetric min-max to kv_bits bits (quantize_asymmetric), as
/// QuaRot's KV4. Under a rotation (QuaRot) each head vector is quantized in a randomized Hadamard basis of the head
/// (seeded), x' = R^T q(R x): its own online rotation of keys and queries, of values and o_proj. PrefixQuant's prefix
/// keeps its KV in float (computed offline), and with e.intact_kv (IntactKV) at least the first token. None without
/// kv_bits.
inline Hooks kv_hooks(const ModelConfig& c, const QuantExperiment& e, const QuantContext& ctx, std::uint64_t seed = 0) {
    Hooks h;
    if (e.kv_bits == 0) return h;
    if (e.kv_bits < 2 || e.kv_bits > 8) throw Error("quant: the KV cache is quantized to 2..8 bits, not " + std::to_string(e.kv_bits));
    const Index skip = std::max<Index>(e.intact_kv ? 1 : 0, e.prefix_outliers ? static_cast<Index>(ctx.prefix.size()) : 0);
    const Index hd = c.head_dim;
    const auto R = std::make_shared<const RowMatrixF>(e.rotation == RotationKind::None ? RowMatrixF() : hadamard_rotation(hd, seed ^ 0x4b56ull));
    auto quantize = [skip, hd, R, bits = e.kv_bits](Activation& a) {  // [N, T, KV, hd]
        const Index N = a.shape[0], T = a.shape[1], heads = a.numel() / (N * T * hd);
        Eigen::VectorXf y(hd);
        for (Index r = 0; r < N * T; ++r) {
            if (r % T < skip) continue;
            for (Index k = 0; k < heads; ++k) {
                Eigen::Map<Eigen::VectorXf> x(a.data + (r * heads + k) * hd, hd);
                if (R->size() == 0) {
                    kernels::quantize_asymmetric(x.data(), hd, 1, bits);
                } else {
                    y.noalias() = *R * x;
                    kernels::quantize_asymmetric(y.data(), hd, 1, bits);
                    x.noalias() = R->transpose() * y;
                }
            }
        }
    };
    h.add_if_present(c.has_rope() ? "blocks.*.attn.hook_rot_k" : "blocks.*.attn.hook_k", quantize);
    h.add_if_present("blocks.*.attn.hook_v", quantize);
    return h;
}

struct QuantRow {
    QuantExperiment experiment;
    double ppl = 0.0, kl_mean = 0.0;            // perplexity; mean over tokens of KL(float || quantized), nats
    std::vector<double> max_abs_error_per_layer;  // max |h_quantized - h_float| of each block's output
    // Attribution: where the damage sits. Per predicting position t (0..T-2, mean over sequences): the NLL increase of
    // the next token and KL(float || quantized). Per block output: the mean |h_quantized - h_float| over the dims of the
    // first token (the carrier of the massive activations in most models) and of the other tokens.
    std::vector<double> nll_increase_per_position, kl_per_position;
    std::vector<double> error_first_token_per_layer, error_other_tokens_per_layer;
    double resid_max_abs = 0.0;  // the largest |h| of any block output of the quantized model, in its own basis (rotation)
};

struct QuantStudy {
    double ppl_float = 0.0;
    std::vector<QuantRow> rows;
    QuantContext context;
};

namespace detail {
inline QuantExperiment weights_as(QuantFormat f, Granularity g, Index block = 64) {
    QuantExperiment e;
    e.weights = {f, g, block};
    return e;
}
/// e with `set` applied to a copy.
template <class Set>
QuantExperiment with(QuantExperiment e, Set set) {
    set(e);
    return e;
}
}  // namespace detail

/// Weight-only rows: RTN int8 / int4 / NF4 / int2 / ternary at each granularity, each protection beside the row it
/// protects, then GPTQ, AWQ and the rotated weights.
inline std::vector<QuantExperiment> weight_only_experiments() {
    using detail::weights_as;
    using detail::with;
    std::vector<QuantExperiment> v;
    // e, then e with each protection `which` names (m: massive dims in float, s: super weight restored), in that order
    auto protected_too = [&](const QuantExperiment& e, const std::string& which) {
        v.push_back(e);
        for (char p : which) v.push_back(with(e, [&](QuantExperiment& x) { x.keep_massive_dims = p == 'm', x.restore_super_weight = p == 's'; }));
    };
    v.push_back(weights_as(QuantFormat::Int8, Granularity::PerTensor));
    v.push_back(weights_as(QuantFormat::Int8, Granularity::PerChannel));
    protected_too(weights_as(QuantFormat::Int4, Granularity::PerTensor), "m");
    protected_too(weights_as(QuantFormat::Int4, Granularity::PerChannel), "sm");
    for (Index b : {32, 64, 128}) v.push_back(weights_as(QuantFormat::Int4, Granularity::Block, b));
    v.push_back(weights_as(QuantFormat::NF4, Granularity::Block, 64));
    protected_too(weights_as(QuantFormat::Int2, Granularity::Block, 64), "m");
    protected_too(weights_as(QuantFormat::Ternary, Granularity::PerTensor), "ms");
    const QuantExperiment channel = weights_as(QuantFormat::Int4, Granularity::PerChannel), block = weights_as(QuantFormat::Int4, Granularity::Block, 128);
    for (const QuantExperiment& g : {channel, block}) v.push_back(with(g, [](QuantExperiment& x) { x.gptq = true; }));
    for (const QuantExperiment& a : {channel, block}) v.push_back(with(a, [](QuantExperiment& x) { x.awq = true; }));
    // QuaRot's weights: rotated, then RTN or GPTQ
    v.push_back(with(channel, [](QuantExperiment& x) { x.rotation = RotationKind::Hadamard; }));
    v.push_back(with(v.back(), [](QuantExperiment& x) { x.gptq = true; }));
    return v;
}

/// Rows with quantized activations: W8A8 per tensor with each protection, per token, rotated, with static scales (the
/// first token float, PrefixQuant); W4A4 per token plain, rotated (Hadamard: QuaRot; random orthogonal: SpinQuant's
/// starting point), rotated + GPTQ; W4A4 static per tensor rotated, without and with PrefixQuant's prefix.
inline std::vector<QuantExperiment> activation_experiments() {
    using detail::with;
    std::vector<QuantExperiment> v;
    const QuantExperiment a8 = with(detail::weights_as(QuantFormat::Int8, Granularity::PerChannel), [](QuantExperiment& x) { x.activations = QuantFormat::Int8; });
    v.push_back(a8);
    v.push_back(with(a8, [](QuantExperiment& x) { x.keep_massive_dims = true; }));
    v.push_back(with(a8, [](QuantExperiment& x) { x.outlier_threshold = true; }));
    v.push_back(with(a8, [](QuantExperiment& x) { x.keep_first_token = true; }));
    v.push_back(with(a8, [](QuantExperiment& x) { x.smooth_quant = true; }));
    v.push_back(with(a8, [](QuantExperiment& x) { x.act_granularity = Granularity::PerToken; }));
    v.push_back(with(a8, [](QuantExperiment& x) { x.rotation = RotationKind::Hadamard; }));
    const QuantExperiment a8s = with(a8, [](QuantExperiment& x) { x.static_scales = true; });
    v.push_back(a8s);
    v.push_back(with(a8s, [](QuantExperiment& x) { x.keep_first_token = true; }));
    v.push_back(with(a8s, [](QuantExperiment& x) { x.prefix_outliers = true; }));
    const QuantExperiment a4 = with(detail::weights_as(QuantFormat::Int4, Granularity::PerChannel), [](QuantExperiment& x) {
        x.activations = QuantFormat::Int4, x.act_granularity = Granularity::PerToken;
    });
    v.push_back(a4);
    for (RotationKind k : {RotationKind::Hadamard, RotationKind::Orthogonal}) v.push_back(with(a4, [k](QuantExperiment& x) { x.rotation = k; }));
    v.push_back(with(a4, [](QuantExperiment& x) { x.rotation = RotationKind::Hadamard, x.gptq = true; }));
    const QuantExperiment a4s = with(a4, [](QuantExperiment& x) {
        x.act_granularity = Granularity::PerTensor, x.static_scales = true, x.rotation = RotationKind::Hadamard;
    });
    v.push_back(a4s);
    v.push_back(with(a4s, [](QuantExperiment& x) { x.prefix_outliers = true; }));
    return v;
}

/// The KV cache to 4 bits: alone (float weights and activations), with IntactKV; QuaRot's W4A4KV4 (rotation + GPTQ)
/// without and with IntactKV; PrefixQuant's (rotation, prefix, static per-tensor scales).
inline std::vector<QuantExperiment> kv_cache_experiments() {
    using detail::with;
    const QuantExperiment kv = with(detail::weights_as(QuantFormat::Float, Granularity::PerTensor), [](QuantExperiment& x) { x.kv_bits = 4; });
    const QuantExperiment w4a4 = with(detail::weights_as(QuantFormat::Int4, Granularity::PerChannel), [](QuantExperiment& x) {
        x.activations = QuantFormat::Int4, x.rotation = RotationKind::Hadamard, x.kv_bits = 4;
    });
    const QuantExperiment quarot = with(w4a4, [](QuantExperiment& x) { x.act_granularity = Granularity::PerToken, x.gptq = true; });
    return {kv, with(kv, [](QuantExperiment& x) { x.intact_kv = true; }), quarot, with(quarot, [](QuantExperiment& x) { x.intact_kv = true; }),
            with(w4a4, [](QuantExperiment& x) { x.static_scales = true, x.prefix_outliers = true; })};
}

/// The standard table: the weight-only rows, the rows with quantized activations, the KV-cache rows.
inline std::vector<QuantExperiment> default_experiments() {
    std::vector<QuantExperiment> v = weight_only_experiments();
    for (auto* part : {activation_experiments, kv_cache_experiments}) {
        const auto more = part();
        v.insert(v.end(), more.begin(), more.end());
    }
    return v;
}

/// PrefixQuant's input: the prefix, then each row of `ids`, whose first token is left out when every row starts with the
/// prefix's last token (BOS: the prefix's own stands for it). Original position t is position `offset` + t.
struct PrefixedBatch {
    TokenBatch ids;
    Index offset = 0;
};
inline PrefixedBatch with_prefix(const TokenBatch& ids, const std::vector<Index>& prefix) {
    const Index P = static_cast<Index>(prefix.size()), N = ids.rows(), T = ids.cols();
    const bool drop = P > 0 && T > 0 && (ids.col(0).array() == prefix.back()).all();
    PrefixedBatch b;
    b.offset = P - (drop ? 1 : 0);
    b.ids.resize(N, b.offset + T);
    for (Index s = 0; s < N; ++s) {
        for (Index j = 0; j < P; ++j) b.ids(s, j) = prefix[static_cast<std::size_t>(j)];
        b.ids.row(s).tail(T) = ids.row(s);
    }
    return b;
}

/// The settings a study does not combine, refused by name.
inline void check_experiment(const QuantExperiment& e) {
    if (e.activations != QuantFormat::Float && e.activations != QuantFormat::Int8 && e.activations != QuantFormat::Int4)
        throw Error(std::string("quant: activations in ") + format_name(e.activations) + " are not simulated (float, int8 or int4)");
    if (e.gptq && (e.smooth_quant || e.keep_massive_dims || e.restore_super_weight))
        throw Error("quant: GPTQ with SmoothQuant or kept weights is not combined here (" + e.protect() + ")");
    if (e.rotation != RotationKind::None && (e.smooth_quant || e.keep_massive_dims || e.restore_super_weight || e.outlier_threshold))
        throw Error("quant: a rotation spreads the massive dims over all dims; it is not combined with protections that keep dims, "
                    "weights or SmoothQuant's scales (" + e.protect() + ")");
    if (e.awq && (e.smooth_quant || e.gptq || e.keep_massive_dims || e.restore_super_weight || e.rotation != RotationKind::None ||
                  e.activations != QuantFormat::Float || e.weights.format == QuantFormat::Float))
        throw Error("quant: AWQ is a weight-only method of quantized weights here, not combined with other settings (" + e.protect() + ")");
    if (e.static_scales && (e.activations == QuantFormat::Float || e.act_granularity != Granularity::PerTensor))
        throw Error("quant: static activation scales are per tensor, of quantized activations (" + e.granularity() + ")");
    if ((e.prefix_outliers || e.intact_kv) && e.outlier_threshold)
        throw Error("quant: PrefixQuant and IntactKV are not combined with LLM.int8()'s decomposition here (" + e.protect() + ")");
}

/// A study's rotated models (one per kind), each with its own context (GPTQ's Hessians of the rotated model).
using RotatedModels = std::map<RotationKind, std::pair<RotatedModel, QuantContext>>;

/// What the experiments need from the float model once, into ctx: SmoothQuant's factors, AWQ's and GPTQ's calibration,
/// PrefixQuant's prefix (BOS: the first token when every row starts with the same one), the rotated models.
inline RotatedModels prepare_study(const Transformer& m, const TokenBatch& ids, const std::vector<QuantExperiment>& experiments,
                                   QuantContext& ctx, Index batch) {
    const auto smooth = std::find_if(experiments.begin(), experiments.end(), [](const QuantExperiment& e) { return e.smooth_quant; });
    if (smooth != experiments.end()) {
        if (std::any_of(smooth, experiments.end(), [&](const QuantExperiment& e) { return e.smooth_quant && e.smooth_alpha != smooth->smooth_alpha; }))
            throw Error("quant: the SmoothQuant experiments of one study share one alpha");
        if (ctx.act_absmax.empty()) ctx.act_absmax = activation_absmax(m, ids, batch);
        prepare_smoothing(m, ctx, smooth->smooth_alpha);
    }
    RotatedModels rotated;
    for (const QuantExperiment& e : experiments) {
        check_experiment(e);
        if (e.prefix_outliers && ctx.prefix.empty()) {
            const bool common_first = (ids.col(0).array() == ids(0, 0)).all();
            std::tie(ctx.prefix, ctx.prefix_outliers) = prefix_outlier_tokens(m, ids, batch, common_first ? ids(0, 0) : Index(-1), ctx.prefix_ratio);
        }
        if ((e.awq || (e.gptq && e.rotation == RotationKind::None)) && ctx.hessians.empty()) ctx.hessians = input_hessians(m, ids, batch);
        if (e.awq && ctx.act_meanabs.empty()) ctx.act_meanabs = activation_absmax(m, ids, batch, true);
        if (e.rotation == RotationKind::None) continue;
        if (!rotated.count(e.rotation)) rotated.emplace(e.rotation, std::make_pair(rotate_model(m, e.rotation), QuantContext{}));
        auto& [r, rctx] = rotated.at(e.rotation);
        if (e.gptq && rctx.hessians.empty()) rctx.hessians = input_hessians(r.model, ids, batch, std::size_t(4) << 30, r.online());
    }
    return rotated;
}

/// Static activation scales of experiment e on its quantized model q: one calibration pass over `ids` with float
/// activations (after the online rotations `first`), each linear input's max |x|.
inline std::shared_ptr<StaticScales> calibrate_static_scales(const Transformer& q, const TokenBatch& ids, const QuantExperiment& e,
                                                             const QuantContext& ctx, const Hooks& first, Index batch, Workspace& ws) {
    auto statics = std::make_shared<StaticScales>();
    if (!e.static_scales) return statics;
    Hooks calibrate = first;
    calibrate.extend(activation_hooks(q.config(), e, ctx, statics, true));
    RunOptions o;
    o.logits = false;
    for (Index b0 = 0; b0 < ids.rows(); b0 += batch) q.run(ids.middleRows(b0, std::min(batch, ids.rows() - b0)), ws, calibrate, o);
    return statics;
}

/// A hook at every block output of the quantized run that compares it with the float run's (`resid`, [n, T, d] per
/// layer, held by the caller), into row: the largest |error|, the mean |error| on the first token and on the others, the
/// largest |h|. The quantized run's positions start `offset` later (a prefix, not compared); a rotated model's output is
/// turned back by residual^T first. `sequences`: the study's N (the means are over all of it).
inline HookFn resid_error_hook(QuantRow& row, const std::vector<std::vector<float>>& resid, const RotatedModel* rot, Index offset,
                               Index sequences) {
    auto back = std::make_shared<RowMatrixF>();  // a rotated model's block output in the float model's basis: h Q^T
    return [&row, &resid, rot, offset, sequences, back](Activation& a) {
        const auto& f = resid[static_cast<std::size_t>(a.layer)];
        const std::size_t l = static_cast<std::size_t>(a.layer);
        const Index n = a.shape[0], tq = a.shape[1], d = a.shape[2], t = tq - offset;  // (the float run's T: t)
        const float* h = a.data;
        if (rot) {
            back->noalias() = ConstRowMap<float>(a.data, a.numel() / d, d) * rot->residual.transpose();
            h = back->data();
        }
        for (Index s = 0; s < n; ++s)
            for (Index p = 0; p < t; ++p)
                for (Index j = 0; j < d; ++j) {
                    const Index i = (s * tq + offset + p) * d + j;
                    row.resid_max_abs = std::max(row.resid_max_abs, double(std::abs(a.data[i])));
                    const double e = std::abs(h[i] - f[static_cast<std::size_t>((s * t + p) * d + j)]);
                    row.max_abs_error_per_layer[l] = std::max(row.max_abs_error_per_layer[l], e);
                    if (p == 0) row.error_first_token_per_layer[l] += e / double(sequences * d);
                    else row.error_other_tokens_per_layer[l] += e / double(sequences * (t - 1) * d);
                }
    };
}

/// One experiment against the float model over `ids`: its row, and the float model's NLL summed (nll_float).
inline QuantRow run_experiment(const Transformer& m, const TokenBatch& ids, const QuantExperiment& e, QuantContext& ctx,
                               const RotatedModels& rotated, Index batch, double& nll_float, const std::function<void(Index)>& done = {}) {
    const Index N = ids.rows(), T = ids.cols(), L = m.config().num_layers;
    const RotatedModel* rot = e.rotation == RotationKind::None ? nullptr : &rotated.at(e.rotation).first;
    if (e.awq) prepare_awq(m, ctx, e.weights);  // (its scales depend on the weights' format)
    const Transformer& base = rot ? rot->model : m;
    const Transformer q = e.weights.format == QuantFormat::Float && !e.smooth_quant ? base : quantized_model(base, e, rot ? rotated.at(e.rotation).second : ctx);
    QuantRow row;
    row.experiment = e;
    for (auto* v : {&row.max_abs_error_per_layer, &row.error_first_token_per_layer, &row.error_other_tokens_per_layer})
        v->assign(static_cast<std::size_t>(L), 0.0);
    // the quantized model's input: PrefixQuant's prefix before each sequence (original position t at offset + t)
    const PrefixedBatch input = e.prefix_outliers ? with_prefix(ids, ctx.prefix) : PrefixedBatch{ids, 0};
    const Index offset = input.offset;
    Workspace wf, wq;
    const Hooks online = rot ? rot->online() : Hooks{};  // (the online rotations first, then the activations' quantization)
    Hooks keep, compare = online;
    compare.extend(activation_hooks(m.config(), e, ctx, calibrate_static_scales(q, input.ids, e, ctx, online, batch, wq)));
    compare.extend(kv_hooks(m.config(), e, ctx));
    std::vector<std::vector<float>> resid(static_cast<std::size_t>(L));
    keep.add("blocks.*.hook_resid_post", [&](Activation& a) { resid[static_cast<std::size_t>(a.layer)].assign(a.data, a.data + a.numel()); });
    compare.add("blocks.*.hook_resid_post", resid_error_hook(row, resid, rot, offset, N));
    PairLoss loss;
    RowMatrixF picked;  // the quantized run's logits at the original positions
    for (Index b0 = 0; b0 < N; b0 += batch) {
        // The float forward again for every experiment: keeping its logits and hidden states for the
        // whole data instead would cost N*T*(V + L*d) floats.
        const TokenBatch chunk = ids.middleRows(b0, std::min(batch, N - b0));
        const RowMatrixF& flog = m.run(chunk, wf, keep);
        const RowMatrixF& qlog = q.run(input.ids.middleRows(b0, chunk.rows()), wq, compare);
        if (offset > 0) {
            picked.resize(chunk.rows() * T, qlog.cols());
            for (Index s = 0; s < chunk.rows(); ++s) picked.middleRows(s * T, T) = qlog.middleRows(s * (offset + T) + offset, T);
        }
        loss.add(flog, offset > 0 ? picked : qlog, chunk);
        if (done) done(b0 + chunk.rows());
    }
    const double targets = static_cast<double>(N * (T - 1));
    row.ppl = std::exp(loss.nll_b / targets);
    row.kl_mean = loss.kl / targets;
    for (Index t = 0; t + 1 < T; ++t) {
        const std::size_t i = static_cast<std::size_t>(t);
        row.nll_increase_per_position.push_back((loss.nll_b_per_position[i] - loss.nll_a_per_position[i]) / double(N));
        row.kl_per_position.push_back(loss.kl_per_position[i] / double(N));
    }
    nll_float = loss.nll_a;
    return row;
}

/// Run each experiment over `ids` (batch rows per forward) against the float model. PrefixQuant's prefix is found
/// (prefix_outlier_tokens) unless ctx.prefix holds one.
inline QuantStudy quant_study(const Transformer& m, const TokenBatch& ids, const std::vector<QuantExperiment>& experiments,
                              QuantContext ctx, Index batch = 8, const std::function<void(Index, Index)>& progress = {}) {
    check_quant_model(m.config());
    const Index N = ids.rows(), T = ids.cols();
    require_at_least(N, 1, "quant: sequences");
    if (T < 2) throw Error("quant: sequences need at least 2 tokens, got " + std::to_string(T));
    require_at_least(batch, 1, "quant: batch");
    const RotatedModels rotated = prepare_study(m, ids, experiments, ctx, batch);
    QuantStudy study;
    for (std::size_t k = 0; k < experiments.size(); ++k) {
        const auto total = static_cast<Index>(experiments.size()) * N;
        double nll_float = 0;
        study.rows.push_back(run_experiment(m, ids, experiments[k], ctx, rotated, batch, nll_float, [&](Index done) {
            if (progress) progress(static_cast<Index>(k) * N + done, total);
        }));
        if (k == 0) study.ppl_float = std::exp(nll_float / static_cast<double>(N * (T - 1)));
    }
    study.context = std::move(ctx);
    return study;
}

}  // namespace massact::analysis

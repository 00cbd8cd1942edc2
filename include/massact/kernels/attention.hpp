// massact/kernels/attention.hpp - causal multi-head attention with GQA, sliding
// windows and the attention-sink variants.
//
// Queries may follow `past` cached keys (incremental decoding): query row r is key index i = past + r,
// and there are past + T keys. For query i of head h (KV head g = h / (heads / kv_heads)):
//   s_ij = q_i . k_j * scale for visible keys j (i - W < j <= i; W = 0: all j <= i),
//   optionally soft-capped: s = cap * tanh(s / cap), plus an ALiBi bias slope_h * (j - i)
//   (BLOOM adds slope_h * j and MPT slope_h * (j - T + 1): the same softmax, each row shifted),
//   extra slots: a per-head sink logit (gpt-oss; softmax1 is the logit 0) and/or
//   an explicit key/value bias (Sun et al. 2024 Sec. 6): s_b = q_i . k_bias[g] * scale,
//   p = softmax over visible keys and extra slots (optionally clipped),
//   z_i = sum_j p_ij v_j + p_b v_bias[g].
// Instead of the softmax, the weights may be softpick or sigmoid(s + b) over the visible keys (AttentionFn; rows
// then need not sum to 1, and there are no extra slots).
// Matches Hugging Face eager attention (docs/formats.md).
//
// Two ways to run it:
//   - causal_attention(): streams over tiles of `tile` queries; extra memory is
//     O(tile * T) per thread and no [T, T] matrix exists. Parallel over heads. It can also report the
//     probabilities every query gives to a few chosen keys (ColumnProbs: the first token, a delimiter), which
//     is what the sink metrics read, so that they need no [T, T] pattern either.
//   - attention_scores() / attention_probs() / attention_combine(): the same
//     stages on a full [heads, T, past + T] buffer, so hooks can read or edit
//     the scores and the pattern in between.
//
// Keys and values may be held in 16 bits (a KV cache in f16 or bf16): they are widened to float a chunk of keys
// at a time in the thread's scratch, so a long cache is read at half the bytes and the products stay float32.
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/core/half.hpp"
#include "massact/kernels/softmax.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace massact::kernels {

/// The function that turns a row of scores into the weights applied to the values (kernels/softmax.hpp).
enum class AttentionFn { Softmax, Softpick, Sigmoid };

inline const char* attention_fn_name(AttentionFn f) {
    return f == AttentionFn::Softpick ? "softpick" : f == AttentionFn::Sigmoid ? "sigmoid" : "softmax";
}

struct AttentionSpec {
    Index heads = 0;
    Index kv_heads = 0;
    Index head_dim = 0;
    float scale = 1.0f;                  // usually 1/sqrt(head_dim)
    float softcap = 0.0f;                // > 0: s = softcap * tanh(s / softcap) (Gemma 2 logit soft-capping)
    Index window = 0;                    // sliding window W (0 = full causal)
    Index chunk = 0;                     // chunked attention C (Llama 4): query i sees keys j <= i of its chunk, j >= C floor(i / C)
    bool causal = true;                  // false: every query sees every key (vision encoders; no window)
    const float* alibi = nullptr;        // [heads] ALiBi slopes: s += slope_h * (j - i) after soft-capping
    const float* sink_logits = nullptr;  // [heads] extra logit per head (gpt-oss sinks; zeros = softmax1)
    const float* k_bias = nullptr;       // [kv_heads, head_dim] explicit bias key (no RoPE)
    const float* v_bias = nullptr;       // [kv_heads, head_dim] its value
    bool clipped = false;                // clipped softmax (Bondarenko et al. 2023)
    float zeta = 0.0f, gamma = 1.0f;
    AttentionFn fn = AttentionFn::Softmax;  // Softpick / Sigmoid: no extra slots, no clipping
    float sigmoid_bias = 0.0f;              // Sigmoid: p = sigmoid(s + sigmoid_bias)

    Index group() const { return heads / kv_heads; }
    Index n_extra() const { return (sink_logits ? 1 : 0) + (k_bias ? 1 : 0); }
};

/// How keys and values are held: float32, or IEEE half / bfloat16 (a KV cache at half the memory).
enum class KVFormat { F32, F16, BF16 };

inline const char* kv_format_name(KVFormat f) { return f == KVFormat::F16 ? "f16" : f == KVFormat::BF16 ? "bf16" : "f32"; }

/// "f32", "f16" or "bf16"; `what` names the option or field in the error.
inline KVFormat kv_format_from_name(const std::string& name, const std::string& what) {
    for (KVFormat f : {KVFormat::F32, KVFormat::F16, KVFormat::BF16})
        if (name == kv_format_name(f)) return f;
    throw Error(what + ": \"" + name + "\" is not a KV cache precision (expected f32, f16 or bf16)");
}

/// One sequence: q [T, heads*hd], k and v [past + T, kv_heads*hd], output z [T, heads*hd]; row strides
/// given. Query row r is key row past + r (past > 0: keys from a KV cache come first).
struct AttentionInput {
    const float* q = nullptr;
    Index q_stride = 0;
    const float* k = nullptr;
    Index k_stride = 0;
    const float* v = nullptr;
    Index v_stride = 0;
    Index T = 0;     // queries
    Index past = 0;  // cached keys before the first query
    KVFormat kv_format = KVFormat::F32;  // F16 / BF16: the keys and values are k16 and v16 (k and v unused)
    const std::uint16_t* k16 = nullptr;
    const std::uint16_t* v16 = nullptr;

    Index keys() const { return past + T; }
};

/// Optional output of causal_attention(): the probabilities that every query gives to `n` chosen keys, written to
/// out [heads, T, n] for keys cols[0..n) (key indices of the input: cached keys first; an index < 0 or past the
/// keys a query sees gives 0).
struct ColumnProbs {
    const Index* cols = nullptr;
    Index n = 0;
    float* out = nullptr;
};

/// Throws when the spec combines what the kernels do not: extra slots or clipping with softpick or sigmoid weights.
inline void check_spec(const AttentionSpec& s) {
    if (s.fn != AttentionFn::Softmax && (s.n_extra() > 0 || s.clipped))
        throw Error(std::string("attention: ") + attention_fn_name(s.fn) +
                    " weights take no extra slots (sink logit, key/value bias) and no clipping; those are softmax variants");
}

namespace detail {

/// Keys widened from 16 bits at a time: 256 rows of one head (64 KB at head_dim 64) stay in the core's cache.
constexpr Index kv_chunk = 256;

/// Rows j0..j1 of key/value head g (values when `values`) as float: a view of float storage, else the 16-bit rows
/// widened into buf.
inline ConstStridedRowMap<float> kv_rows(const AttentionInput& in, bool values, Index g, Index hd, Index j0, Index j1,
                                         std::vector<float>& buf) {
    const Index stride = values ? in.v_stride : in.k_stride, n = j1 - j0;
    if (in.kv_format == KVFormat::F32)
        return {(values ? in.v : in.k) + j0 * stride + g * hd, n, hd, Eigen::OuterStride<>(stride)};
    const std::uint16_t* src = (values ? in.v16 : in.k16) + j0 * stride + g * hd;
    buf.resize(static_cast<std::size_t>(n * hd));
    for (Index j = 0; j < n; ++j) {
        const auto m = static_cast<std::size_t>(hd);
        if (in.kv_format == KVFormat::BF16) bf16_to_float(src + j * stride, buf.data() + j * hd, m);
        else f16_to_float(src + j * stride, buf.data() + j * hd, m);
    }
    return {buf.data(), n, hd, Eigen::OuterStride<>(hd)};
}

/// The keys (or values) k0..k1 of head g in chunks: whole when float, kv_chunk rows at a time when widened.
template <typename Fn>
inline void for_kv_chunks(const AttentionInput& in, bool values, Index g, Index hd, Index k0, Index k1, Fn fn) {
    const Index step = in.kv_format == KVFormat::F32 ? std::max<Index>(1, k1 - k0) : kv_chunk;
    std::vector<float> buf;
    for (Index j0 = k0; j0 < k1; j0 += step) {
        const Index j1 = std::min(k1, j0 + step);
        fn(j0, j1, kv_rows(in, values, g, hd, j0, j1, buf));
    }
}

/// St [rows, k1 - k0] = scale * Q K^T over keys k0..k1 of head g.
inline void dot_keys(const AttentionSpec& s, const AttentionInput& in, const ConstStridedRowMap<float>& Q, Index g, Index k0,
                     Index k1, StridedRowMap<float>& St) {
    for_kv_chunks(in, false, g, s.head_dim, k0, k1, [&](Index j0, Index j1, const ConstStridedRowMap<float>& K) {
        St.middleCols(j0 - k0, j1 - j0).noalias() = s.scale * (Q * K.transpose());
    });
}

/// Z [rows, hd] = P V over values k0..k1 of head g (P's columns are those values).
inline void apply_values(const AttentionInput& in, const ConstStridedRowMap<float>& P, Index g, Index hd, Index k0, Index k1,
                         StridedRowMap<float>& Z) {
    if (k1 <= k0) {
        Z.setZero();
        return;
    }
    for_kv_chunks(in, true, g, hd, k0, k1, [&](Index j0, Index j1, const ConstStridedRowMap<float>& V) {
        if (j0 == k0) Z.noalias() = P.middleCols(0, j1 - j0) * V;
        else Z.noalias() += P.middleCols(j0 - k0, j1 - j0) * V;
    });
}

/// The first key query index i sees (non-decreasing in i: a tile's first row sees the earliest key).
inline Index first_visible(const AttentionSpec& s, Index i) {
    if (s.chunk > 0) return i / s.chunk * s.chunk;
    return s.window > 0 ? std::max<Index>(0, i - s.window + 1) : 0;
}
/// One past the last key query index i sees (of `keys` keys).
inline Index end_visible(const AttentionSpec& s, Index i, Index keys) { return s.causal ? i + 1 : keys; }

/// Soft-capping, ALiBi and the mask on the scaled dot products St [rows, a1 - k0] at columns k0.. of S (row stride ld,
/// ncols columns): row r belongs to head head(r) and to the query of key index query(r); -inf where not visible.
template <typename HeadOf, typename QueryOf>
inline void finish_scores(const AttentionSpec& s, const AttentionInput& in, HeadOf head, QueryOf query, Index rows, Index k0, Index a1,
                          float* S, Index ld, Index ncols) {
    StridedRowMap<float> St(S + k0, rows, a1 - k0, Eigen::OuterStride<>(ld));
    if (s.softcap > 0.0f) St = (St.array() / s.softcap).tanh() * s.softcap;
    if (s.alibi)
        for (Index r = 0; r < rows; ++r)
            for (Index j = k0; j < a1; ++j) St(r, j - k0) += s.alibi[head(r)] * static_cast<float>(j - query(r));
    constexpr float ninf = -std::numeric_limits<float>::infinity();
    for (Index r = 0; r < rows; ++r) {
        const Index i = query(r);
        float* row = S + r * ld;
        std::fill(row, row + first_visible(s, i), ninf);
        std::fill(row + std::min(end_visible(s, i, in.keys()), ncols), row + ncols, ninf);
    }
}

/// S[r, j] for query rows i0 + r < i1 (key index past + i0 + r) and keys j < ncols (S has row stride ld):
/// scaled dot products where visible, -inf elsewhere.
inline void scores_tile(const AttentionSpec& s, const AttentionInput& in, Index h, Index i0, Index i1, float* S, Index ld,
                        Index ncols) {
    const Index g = h / s.group(), hd = s.head_dim, rows = i1 - i0, a0 = in.past + i0;
    const Index a1 = end_visible(s, in.past + i1 - 1, in.keys()), k0 = first_visible(s, a0);
    ConstStridedRowMap<float> Q(in.q + i0 * in.q_stride + h * hd, rows, hd, Eigen::OuterStride<>(in.q_stride));
    StridedRowMap<float> St(S + k0, rows, a1 - k0, Eigen::OuterStride<>(ld));
    dot_keys(s, in, Q, g, k0, a1, St);
    finish_scores(s, in, [h](Index) { return h; }, [a0](Index r) { return a0 + r; }, rows, k0, a1, S, ld, ncols);
}

/// Decoding (one query row i): S[r, j] for the heads h0 + r of one key/value group, r < group(), in one product, so
/// that the group's keys are read once for all of its heads rather than once per head.
inline void scores_group(const AttentionSpec& s, const AttentionInput& in, Index h0, Index i, float* S, Index ld, Index ncols) {
    const Index g = h0 / s.group(), hd = s.head_dim, rows = s.group(), a = in.past + i;
    const Index a1 = end_visible(s, a, in.keys()), k0 = first_visible(s, a);
    ConstStridedRowMap<float> Q(in.q + i * in.q_stride + h0 * hd, rows, hd, Eigen::OuterStride<>(hd));
    StridedRowMap<float> St(S + k0, rows, a1 - k0, Eigen::OuterStride<>(ld));
    dot_keys(s, in, Q, g, k0, a1, St);
    finish_scores(s, in, [h0](Index r) { return h0 + r; }, [a](Index) { return a; }, rows, k0, a1, S, ld, ncols);
}

/// Softmax (variant) of query rows i0..i1 of a scores tile, in place; masked entries become 0.
/// extra_out (optional, [rows]) receives the total probability of the extra slots,
/// kv_out (optional, [rows]) the probability of the key/value bias slot alone.
inline void probs_tile(const AttentionSpec& s, const AttentionInput& in, Index h, Index i0, Index i1, float* S, Index ld,
                       Index ncols, float* extra_out, float* kv_out) {
    const Index g = h / s.group(), hd = s.head_dim;
    for (Index i = i0; i < i1; ++i) {
        float* row = S + (i - i0) * ld;
        float extra[2];
        Index ne = 0, kv_slot = -1;
        if (s.sink_logits) extra[ne++] = s.sink_logits[h];
        if (s.k_bias) {
            const float* q = in.q + i * in.q_stride + h * hd;
            const float* kb = s.k_bias + g * hd;
            float dot = 0.0f;
            for (Index d = 0; d < hd; ++d) dot += q[d] * kb[d];
            kv_slot = ne;
            extra[ne++] = s.softcap > 0.0f ? s.softcap * std::tanh(dot * s.scale / s.softcap) : dot * s.scale;
        }
        const Index a = in.past + i, lo = first_visible(s, a), hi = end_visible(s, a, in.keys());
        std::fill(row, row + lo, 0.0f);
        float total = 0.0f;
        if (s.fn == AttentionFn::Softpick) softpick_row<float>(row + lo, hi - lo);
        else if (s.fn == AttentionFn::Sigmoid) sigmoid_row<float>(row + lo, hi - lo, s.sigmoid_bias);
        else total = softmax_row<float>(row + lo, hi - lo, extra, ne);
        std::fill(row + hi, row + ncols, 0.0f);
        if (s.clipped) {
            auto clip = [&](float p) { return std::min(1.0f, std::max(0.0f, (s.gamma - s.zeta) * p + s.zeta)); };
            for (Index j = lo; j < hi; ++j) row[j] = clip(row[j]);
            total = 0.0f;
            for (Index e = 0; e < ne; ++e) total += (extra[e] = clip(extra[e]));
        }
        if (extra_out) extra_out[i - i0] = total;
        if (kv_out) kv_out[i - i0] = kv_slot >= 0 ? extra[kv_slot] : 0.0f;
    }
}

/// z rows i0..i1 of head h = P[:, 0:ncols] V[0:ncols] + p_kv * v_bias.
inline void combine_tile(const AttentionSpec& s, const AttentionInput& in, Index h, Index i0, Index i1, const float* P,
                         Index ld, Index ncols, const float* kv_prob, float* z, Index z_stride) {
    const Index g = h / s.group(), hd = s.head_dim, rows = i1 - i0;
    const Index k0 = first_visible(s, in.past + i0);  // no row of the tile sees a key before its first row's window
    ConstStridedRowMap<float> Pt(P + k0, rows, ncols - k0, Eigen::OuterStride<>(ld));
    StridedRowMap<float> Z(z + i0 * z_stride + h * hd, rows, hd, Eigen::OuterStride<>(z_stride));
    apply_values(in, Pt, g, hd, k0, ncols, Z);
    if (s.v_bias && kv_prob) {
        const float* vb = s.v_bias + g * hd;
        for (Index r = 0; r < rows; ++r)
            for (Index d = 0; d < hd; ++d) Z(r, d) += kv_prob[r] * vb[d];
    }
}

}  // namespace detail

/// Streaming attention (causal unless the spec says otherwise) of one sequence into z [T, heads*hd] (row stride z_stride).
/// No [T, T] buffer: queries go in tiles of `tile` rows; each thread holds tile * (past + T) floats.
/// sink_prob (optional, [heads, T]) receives the extra slots' probability; `columns` (optional) the probabilities
/// of chosen keys.
inline void causal_attention(const AttentionSpec& s, const AttentionInput& in, float* z, Index z_stride,
                             float* sink_prob = nullptr, Index tile = 64, ColumnProbs columns = {}) {
    check_spec(s);
    const Index T = in.T, H = s.heads;
    auto write_columns = [&](Index h, Index i, const float* row, Index n) {  // row: query i's probabilities over n keys
        for (Index c = 0; c < columns.n; ++c) {
            const Index j = columns.cols[c];  // (entries at or past n are not visible: 0)
            columns.out[(h * T + i) * columns.n + c] = j >= 0 && j < n ? row[j] : 0.0f;
        }
    };
    // Threads over heads (key/value groups when decoding) once the work pays for a team: a decoding step over a cache
    // of 2048 keys (32 heads of 64) is 4M multiply-adds, worth both cores; a step over 100 keys is not.
    [[maybe_unused]] const bool team = H * T * in.keys() * s.head_dim > (1 << 20);
    if (T == 1) {  // decoding: the heads of a key/value group share one product with its keys and one with its values
        const Index G = s.group(), n = detail::end_visible(s, in.past, in.keys()), k0 = detail::first_visible(s, in.past);
#if defined(_OPENMP)
#pragma omp parallel if (team)
#endif
        {
            std::vector<float> S(static_cast<std::size_t>(G * n)), extra(static_cast<std::size_t>(G)), kv(static_cast<std::size_t>(G));
#if defined(_OPENMP)
#pragma omp for schedule(dynamic)
#endif
            for (Index g = 0; g < s.kv_heads; ++g) {
                const Index h0 = g * G;
                detail::scores_group(s, in, h0, 0, S.data(), n, n);
                for (Index r = 0; r < G; ++r) {
                    detail::probs_tile(s, in, h0 + r, 0, 1, S.data() + r * n, n, n, extra.data() + r, kv.data() + r);
                    if (columns.out) write_columns(h0 + r, 0, S.data() + r * n, n);
                    if (sink_prob) sink_prob[h0 + r] = extra[static_cast<std::size_t>(r)];
                }
                ConstStridedRowMap<float> P(S.data() + k0, G, n - k0, Eigen::OuterStride<>(n));
                StridedRowMap<float> Z(z + h0 * s.head_dim, G, s.head_dim, Eigen::OuterStride<>(s.head_dim));  // (the group's heads are adjacent in z's row)
                detail::apply_values(in, P, g, s.head_dim, k0, n, Z);
                if (s.v_bias)
                    for (Index r = 0; r < G; ++r) Z.row(r) += kv[static_cast<std::size_t>(r)] * ConstRowMap<float>(s.v_bias + g * s.head_dim, 1, s.head_dim);
            }
        }
        return;
    }
#if defined(_OPENMP)
#pragma omp parallel if (team)
#endif
    {
        std::vector<float> S(static_cast<std::size_t>(std::min(tile, T) * in.keys()));
        std::vector<float> extra(static_cast<std::size_t>(tile)), kv(static_cast<std::size_t>(tile));
#if defined(_OPENMP)
#pragma omp for schedule(dynamic)
#endif
        for (Index h = 0; h < H; ++h) {
            for (Index i0 = 0; i0 < T; i0 += tile) {
                const Index i1 = std::min(T, i0 + tile), n = detail::end_visible(s, in.past + i1 - 1, in.keys());
                detail::scores_tile(s, in, h, i0, i1, S.data(), n, n);
                detail::probs_tile(s, in, h, i0, i1, S.data(), n, n, extra.data(), kv.data());
                if (columns.out)
                    for (Index i = i0; i < i1; ++i) write_columns(h, i, S.data() + (i - i0) * n, n);
                detail::combine_tile(s, in, h, i0, i1, S.data(), n, n, kv.data(), z, z_stride);
                if (sink_prob) std::copy(extra.begin(), extra.begin() + (i1 - i0), sink_prob + h * T + i0);
            }
        }
    }
}

/// Stage 1 on a full buffer: scores [heads, T, K] with K = past + T keys (pre-softmax, masked entries -inf).
inline void attention_scores(const AttentionSpec& s, const AttentionInput& in, float* scores) {
    const Index T = in.T, K = in.keys();
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (s.heads * T * K > (1 << 16))
#endif
    for (Index h = 0; h < s.heads; ++h) detail::scores_tile(s, in, h, 0, T, scores + h * T * K, K, K);
}

/// Stage 2: scores -> probabilities in place ([heads, T, K]); sink_prob and kv_prob ([heads, T], optional)
/// receive the extra slots' total probability and the key/value bias slot's alone.
inline void attention_probs(const AttentionSpec& s, const AttentionInput& in, float* pattern, float* sink_prob,
                            float* kv_prob) {
    check_spec(s);
    const Index T = in.T, K = in.keys();
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (s.heads * T * K > (1 << 16))
#endif
    for (Index h = 0; h < s.heads; ++h)
        detail::probs_tile(s, in, h, 0, T, pattern + h * T * K, K, K, sink_prob ? sink_prob + h * T : nullptr,
                           kv_prob ? kv_prob + h * T : nullptr);
}

/// Stage 3: z [T, heads*hd] = pattern V (+ kv_prob * v_bias).
inline void attention_combine(const AttentionSpec& s, const AttentionInput& in, const float* pattern,
                              const float* kv_prob, float* z, Index z_stride) {
    const Index T = in.T, K = in.keys();
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (s.heads * T * K > (1 << 16))
#endif
    for (Index h = 0; h < s.heads; ++h)
        detail::combine_tile(s, in, h, 0, T, pattern + h * T * K, K, K, kv_prob ? kv_prob + h * T : nullptr, z,
                             z_stride);
}

}  // namespace massact::kernels

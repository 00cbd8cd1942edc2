// massact/kernels/softmax.hpp - softmax and the variants of the attention-sink literature.
//
//   standard:   p_j = exp(x_j - m) / sum_k exp(x_k - m)
//   with extra slots (logits s_1..s_e that join the normalisation and are
//   dropped after): p_j = exp(x_j) / (sum_k exp(x_k) + sum_i exp(s_i));
//     - softmax1 / "off-by-one" (Miller 2023): one extra slot of logit 0,
//     - learned sink logit per head (gpt-oss),
//     - explicit key/value bias (Sun et al. 2024 Sec. 6): s = q . k_bias / sqrt(d).
//   clipped (Bondarenko et al. 2023): p' = clip((gamma - zeta) p + zeta, 0, 1).
// and two functions that are not normalised to 1 (the sink-free attention of 2025):
//   softpick (Zuhri et al. 2025): p_j = relu(e^{x_j} - 1) / (sum_k |e^{x_k} - 1| + eps), eps = 1e-6,
//     computed with numerator and denominator (eps included) scaled by e^{-m}, m = max(0, max_k x_k), so that nothing
//     overflows and the value is the formula's (rows may sum to less than 1, a row of scores <= 0 to 0),
//   sigmoid (Ramapuram et al. 2025; Gu et al. 2025): p_j = sigmoid(x_j + b), each entry on its own.
// Entries equal to -inf (masked) get probability exactly 0 and take no part in any sum.
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/kernels/simd.hpp"

#include <cmath>
#include <limits>
#include <type_traits>

namespace massact::kernels {

/// Softmax of x[0..n) in place, normalised together with `n_extra` additional logits
/// `extra` (in: their logits; out: their probabilities).
/// Returns the total probability of the extra slots.
template <typename T>
T softmax_row(T* x, Index n, T* extra = nullptr, Index n_extra = 0) {
    T m = -std::numeric_limits<T>::infinity();
    if constexpr (std::is_same_v<T, float>) {
        m = simd::reduce_max(x, static_cast<std::size_t>(n));
    } else {
        for (Index i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
    }
    for (Index i = 0; i < n_extra; ++i) m = extra[i] > m ? extra[i] : m;
    if (m == -std::numeric_limits<T>::infinity()) {  // everything masked: no mass anywhere
        for (Index i = 0; i < n; ++i) x[i] = 0;
        for (Index i = 0; i < n_extra; ++i) extra[i] = 0;
        return 0;
    }
    T sum = 0;
    if constexpr (std::is_same_v<T, float>) {
        simd::map(x, x, static_cast<std::size_t>(n), [m](auto v) { return simd::exp(v - m); });
        sum = simd::reduce_sum(x, static_cast<std::size_t>(n), [](auto v) { return v; });
    } else {
        for (Index i = 0; i < n; ++i) {
            x[i] = std::exp(x[i] - m);
            sum += x[i];
        }
    }
    T extra_sum = 0;
    for (Index i = 0; i < n_extra; ++i) {
        extra[i] = std::exp(extra[i] - m);
        extra_sum += extra[i];
    }
    const T inv = T(1) / (sum + extra_sum);
    for (Index i = 0; i < n_extra; ++i) extra[i] *= inv;
    if constexpr (std::is_same_v<T, float>) {
        simd::map(x, x, static_cast<std::size_t>(n), [inv](auto v) { return v * inv; });
    } else {
        for (Index i = 0; i < n; ++i) x[i] *= inv;
    }
    return extra_sum * inv;
}

/// softmax1 ("off-by-one"): one extra slot of logit 0. Rows sum to < 1.
template <typename T>
T softmax1_row(T* x, Index n) {
    T zero = 0;
    return softmax_row<T>(x, n, &zero, 1);
}

/// Clipped softmax (Bondarenko et al. 2023) in place: stretch to [zeta, gamma], clip to [0, 1].
/// zeta < 0 lets small probabilities become exactly 0; gamma > 1 lets large ones reach exactly 1.
template <typename T>
void clipped_softmax_row(T* x, Index n, T zeta, T gamma) {
    softmax_row<T>(x, n);
    for (Index i = 0; i < n; ++i) {
        const T v = (gamma - zeta) * x[i] + zeta;
        x[i] = v < T(0) ? T(0) : (v > T(1) ? T(1) : v);
    }
}

/// Softpick (Zuhri et al. 2025) of x[0..n) in place. Returns the row's sum (at most 1).
template <typename T>
T softpick_row(T* x, Index n, T eps = T(1e-6)) {
    T m = 0;  // max(0, max x): e^{x - m} <= 1 and e^{-m} <= 1, nothing overflows
    for (Index i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
    // e^{x - m} - e^{-m} = e^{-m} (e^x - 1): expm1 keeps the scores near 0 exact where the difference would cancel;
    // past m = 80 e^{-m} is below float's resolution of e^{x - m} and the difference is taken directly.
    const bool small = m < T(80);
    const T shift = std::exp(-m);
    T den = eps * shift;
    for (Index i = 0; i < n; ++i) {
        if (x[i] == -std::numeric_limits<T>::infinity()) {  // masked: no part in the sum
            x[i] = 0;
            continue;
        }
        x[i] = small ? shift * std::expm1(x[i]) : std::exp(x[i] - m) - shift;
        den += std::abs(x[i]);
    }
    T sum = 0;
    const T inv = T(1) / den;
    for (Index i = 0; i < n; ++i) {
        x[i] = x[i] > T(0) ? x[i] * inv : T(0);
        sum += x[i];
    }
    return sum;
}

/// Sigmoid attention of x[0..n) in place: p = 1 / (1 + e^{-(x + bias)}); masked entries 0. Returns the row's sum.
template <typename T>
T sigmoid_row(T* x, Index n, T bias) {
    T sum = 0;
    for (Index i = 0; i < n; ++i) {
        x[i] = x[i] == -std::numeric_limits<T>::infinity() ? T(0) : T(1) / (T(1) + std::exp(-(x[i] + bias)));
        sum += x[i];
    }
    return sum;
}

/// Row-wise wrappers on Eigen matrices (rows in parallel for large inputs).
template <typename T>
void softmax_rows(Eigen::Ref<RowMatrix<T>> x) {
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (x.size() > (1 << 15))
#endif
    for (Index i = 0; i < x.rows(); ++i) softmax_row<T>(&x(i, 0), x.cols());
}
template <typename T>
void softmax1_rows(Eigen::Ref<RowMatrix<T>> x) {
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (x.size() > (1 << 15))
#endif
    for (Index i = 0; i < x.rows(); ++i) softmax1_row<T>(&x(i, 0), x.cols());
}
template <typename T>
void clipped_softmax_rows(Eigen::Ref<RowMatrix<T>> x, T zeta, T gamma) {
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (x.size() > (1 << 15))
#endif
    for (Index i = 0; i < x.rows(); ++i) clipped_softmax_row<T>(&x(i, 0), x.cols(), zeta, gamma);
}

}  // namespace massact::kernels

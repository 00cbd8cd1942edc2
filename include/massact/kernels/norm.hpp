// massact/kernels/norm.hpp - RMSNorm and LayerNorm over the rows of a matrix.
//
// Match Hugging Face (docs/formats.md):
//   RMSNorm:   y = x * rsqrt(mean(x^2) + eps) * w                 (LlamaRMSNorm)
//   LayerNorm: y = (x - mean) / sqrt(biased var + eps) * w + b    (nn.LayerNorm)
// Raw-buffer row kernels (float uses xsimd, other scalars plain loops) and
// Eigen wrappers taking any row-major matrix, map or block.
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/kernels/simd.hpp"

#include <cmath>
#include <type_traits>

namespace massact::kernels {

namespace detail {
template <typename T> struct identity { using type = T; };
template <typename T> using nd = typename identity<T>::type;  // blocks template deduction
}  // namespace detail

/// out[0..n) = x * rsqrt(mean(x^2) + eps) * w. out may alias x.
template <typename T>
void rms_norm_row(T* out, const T* x, const T* w, Index n, T eps) {
    if constexpr (std::is_same_v<T, float>) {
        const float ss = simd::reduce_sum(x, static_cast<std::size_t>(n), [](auto v) { return v * v; });
        const float r = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
        simd::map2(out, x, w, static_cast<std::size_t>(n), [r](auto a, auto b) { return a * r * b; });
    } else {
        T ss = 0;
        for (Index i = 0; i < n; ++i) ss += x[i] * x[i];
        const T r = T(1) / std::sqrt(ss / static_cast<T>(n) + eps);
        for (Index i = 0; i < n; ++i) out[i] = x[i] * r * w[i];
    }
}

/// out[0..n) = (x - mean) / sqrt(var + eps) * w + b (biased variance, two passes). out may alias x.
template <typename T>
void layer_norm_row(T* out, const T* x, const T* w, const T* b, Index n, T eps) {
    if constexpr (std::is_same_v<T, float>) {
        const auto un = static_cast<std::size_t>(n);
        const float mean = simd::reduce_sum(x, un, [](auto v) { return v; }) / static_cast<float>(n);
        const float var = simd::reduce_sum(x, un, [mean](auto v) { auto d = v - mean; return d * d; }) / static_cast<float>(n);
        const float r = 1.0f / std::sqrt(var + eps);
        simd::map2(out, x, w, un, [mean, r](auto a, auto ww) { return (a - mean) * r * ww; });
        simd::map2(out, out, b, un, [](auto a, auto bb) { return a + bb; });
    } else {
        T mean = 0, var = 0;
        for (Index i = 0; i < n; ++i) mean += x[i];
        mean /= static_cast<T>(n);
        for (Index i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
        var /= static_cast<T>(n);
        const T r = T(1) / std::sqrt(var + eps);
        for (Index i = 0; i < n; ++i) out[i] = (x[i] - mean) * r * w[i] + b[i];
    }
}

/// RMSNorm of every row of x ([rows, n]) into out (same shape; may be the same matrix). Rows in parallel (OpenMP).
template <typename T>
void rms_norm(Eigen::Ref<RowMatrix<detail::nd<T>>> out, const Eigen::Ref<const RowMatrix<detail::nd<T>>>& x,
              const Eigen::Ref<const Eigen::Matrix<detail::nd<T>, Eigen::Dynamic, 1>>& w, T eps) {
    eigen_assert(out.rows() == x.rows() && out.cols() == x.cols() && w.size() == x.cols());
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (x.size() > (1 << 15))
#endif
    for (Index i = 0; i < x.rows(); ++i) rms_norm_row<T>(&out(i, 0), x.data() + i * x.outerStride(), w.data(), x.cols(), eps);
}

/// LayerNorm of every row of x ([rows, n]) into out.
template <typename T>
void layer_norm(Eigen::Ref<RowMatrix<detail::nd<T>>> out, const Eigen::Ref<const RowMatrix<detail::nd<T>>>& x,
                const Eigen::Ref<const Eigen::Matrix<detail::nd<T>, Eigen::Dynamic, 1>>& w,
                const Eigen::Ref<const Eigen::Matrix<detail::nd<T>, Eigen::Dynamic, 1>>& b, T eps) {
    eigen_assert(out.rows() == x.rows() && out.cols() == x.cols() && w.size() == x.cols() && b.size() == x.cols());
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (x.size() > (1 << 15))
#endif
    for (Index i = 0; i < x.rows(); ++i) layer_norm_row<T>(&out(i, 0), x.data() + i * x.outerStride(), w.data(), b.data(), x.cols(), eps);
}

}  // namespace massact::kernels

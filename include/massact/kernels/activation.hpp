// massact/kernels/activation.hpp - SiLU, SwiGLU and GELU (tanh and erf forms), in place or out of place.
//
//   silu(x) = x / (1 + exp(-x))                                  (torch.nn.functional.silu)
//   gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (HF "gelu_new")
//   gelu_erf(x)  = 0.5 x (1 + erf(x / sqrt(2)))                  (HF "gelu")
//   quick_gelu(x) = x / (1 + exp(-1.702 x))                       (HF "quick_gelu", CLIP)
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/kernels/simd.hpp"

#include <cmath>
#include <type_traits>

namespace massact::kernels {

template <typename T>
void silu(T* out, const T* x, Index n) {
    if constexpr (std::is_same_v<T, float>) {
        simd::map(out, x, static_cast<std::size_t>(n), [](auto v) { return v / (1.0f + simd::exp(-v)); });
    } else {
        for (Index i = 0; i < n; ++i) out[i] = x[i] / (T(1) + std::exp(-x[i]));
    }
}

template <typename T>
void quick_gelu(T* out, const T* x, Index n) {
    if constexpr (std::is_same_v<T, float>) {
        simd::map(out, x, static_cast<std::size_t>(n), [](auto v) { return v / (1.0f + simd::exp(-1.702f * v)); });
    } else {
        for (Index i = 0; i < n; ++i) out[i] = x[i] / (T(1) + std::exp(T(-1.702) * x[i]));
    }
}

/// out = silu(gate) * up (the Llama MLP's input to down_proj). out may alias gate or up.
template <typename T>
void swiglu(T* out, const T* gate, const T* up, Index n) {
    if constexpr (std::is_same_v<T, float>) {
        simd::map2(out, gate, up, static_cast<std::size_t>(n),
                   [](auto g, auto u) { return g / (1.0f + simd::exp(-g)) * u; });
    } else {
        for (Index i = 0; i < n; ++i) out[i] = gate[i] / (T(1) + std::exp(-gate[i])) * up[i];
    }
}

template <typename T>
void gelu_tanh(T* out, const T* x, Index n) {
    constexpr double k = 0.7978845608028654;  // sqrt(2/pi)
    if constexpr (std::is_same_v<T, float>) {
        simd::map(out, x, static_cast<std::size_t>(n), [](auto v) {
            return 0.5f * v * (1.0f + simd::tanh(static_cast<float>(k) * simd::fma(0.044715f * v, v * v, v)));
        });
    } else {
        for (Index i = 0; i < n; ++i) {
            const T v = x[i];
            out[i] = T(0.5) * v * (T(1) + std::tanh(T(k) * (v + T(0.044715) * v * v * v)));
        }
    }
}

template <typename T>
void gelu_erf(T* out, const T* x, Index n) {
    constexpr double r = 0.7071067811865476;  // 1/sqrt(2)
    if constexpr (std::is_same_v<T, float>) {
        simd::map(out, x, static_cast<std::size_t>(n),
                  [](auto v) { return 0.5f * v * (1.0f + simd::erf(v * static_cast<float>(r))); });
    } else {
        for (Index i = 0; i < n; ++i) out[i] = T(0.5) * x[i] * (T(1) + std::erf(x[i] * T(r)));
    }
}

/// out = max(x, 0). out may alias x.
template <typename T>
void relu(T* out, const T* x, Index n) {
    for (Index i = 0; i < n; ++i) out[i] = x[i] > T(0) ? x[i] : T(0);
}

namespace detail {
/// f(out_row, in_row, n) over the rows of a matrix, in parallel for large inputs.
template <typename T, typename F>
void rowwise(Eigen::Ref<RowMatrix<T>> out, const Eigen::Ref<const RowMatrix<T>>& x, F f) {
    eigen_assert(out.rows() == x.rows() && out.cols() == x.cols());
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (x.size() > (1 << 15))
#endif
    for (Index i = 0; i < x.rows(); ++i) f(&out(i, 0), x.data() + i * x.outerStride(), x.cols());
}
}  // namespace detail

/// Eigen wrappers: out = f(x) elementwise (out may be x itself).
template <typename T>
void silu(Eigen::Ref<RowMatrix<T>> out, const Eigen::Ref<const RowMatrix<T>>& x) {
    detail::rowwise<T>(out, x, [](T* o, const T* i, Index n) { silu<T>(o, i, n); });
}
template <typename T>
void gelu_tanh(Eigen::Ref<RowMatrix<T>> out, const Eigen::Ref<const RowMatrix<T>>& x) {
    detail::rowwise<T>(out, x, [](T* o, const T* i, Index n) { gelu_tanh<T>(o, i, n); });
}
template <typename T>
void gelu_erf(Eigen::Ref<RowMatrix<T>> out, const Eigen::Ref<const RowMatrix<T>>& x) {
    detail::rowwise<T>(out, x, [](T* o, const T* i, Index n) { gelu_erf<T>(o, i, n); });
}

}  // namespace massact::kernels

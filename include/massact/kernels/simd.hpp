// massact/kernels/simd.hpp - the only place massact touches xsimd.
//
// A few vector primitives over float buffers (elementwise maps and
// reductions) written once with xsimd batches, plus a scalar fallback when
// xsimd is unavailable or MASSACT_NO_SIMD is defined. Lambdas passed to
// map()/reduce() are generic: they receive a batch or a float, and use the
// overloads below (simd::exp, simd::tanh, ...) that work for both.
// Version shim: the horizontal sum is xsimd::hadd in 8.x, reduce_add from 9.
#pragma once

#include "massact/core/third_party.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#if !defined(MASSACT_NO_SIMD) && __has_include(<xsimd/xsimd.hpp>)
MASSACT_THIRD_PARTY_BEGIN
#include <xsimd/xsimd.hpp>
MASSACT_THIRD_PARTY_END
#if !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
#define MASSACT_HAS_XSIMD 1
#endif
#endif

namespace massact::simd {

// ---- scalar overloads -------------------------------------------------------
inline float exp(float x) { return std::exp(x); }
inline float tanh(float x) { return std::tanh(x); }
inline float erf(float x) { return std::erf(x); }
inline float abs(float x) { return std::fabs(x); }
inline float max(float a, float b) { return a > b ? a : b; }
inline float min(float a, float b) { return a < b ? a : b; }
inline float fma(float a, float b, float c) { return std::fma(a, b, c); }
inline float hsum(float x) { return x; }
inline float hmax(float x) { return x; }

#if defined(MASSACT_HAS_XSIMD)
using batch = xsimd::batch<float>;
constexpr std::size_t width = batch::size;

inline batch exp(const batch& x) { return xsimd::exp(x); }
inline batch tanh(const batch& x) { return xsimd::tanh(x); }
inline batch erf(const batch& x) { return xsimd::erf(x); }
inline batch abs(const batch& x) { return xsimd::abs(x); }
inline batch max(const batch& a, const batch& b) { return xsimd::max(a, b); }
inline batch min(const batch& a, const batch& b) { return xsimd::min(a, b); }
inline batch fma(const batch& a, const batch& b, const batch& c) { return xsimd::fma(a, b, c); }
inline float hsum(const batch& x) {
#if XSIMD_VERSION_MAJOR >= 9
    return xsimd::reduce_add(x);
#else
    return xsimd::hadd(x);
#endif
}
inline float hmax(const batch& x) {
    alignas(64) float tmp[width];
    x.store_unaligned(tmp);
    float m = tmp[0];
    for (std::size_t i = 1; i < width; ++i) m = std::max(m, tmp[i]);
    return m;
}
inline batch load(const float* p) { return batch::load_unaligned(p); }
inline void store(float* p, const batch& b) { b.store_unaligned(p); }
inline batch splat(float v) { return batch(v); }
#else
constexpr std::size_t width = 1;
#endif

/// out[i] = op(a[i]) for i < n (out may alias a).
template <class Op>
inline void map(float* out, const float* a, std::size_t n, Op op) {
    std::size_t i = 0;
#if defined(MASSACT_HAS_XSIMD)
    for (; i + width <= n; i += width) store(out + i, op(load(a + i)));
#endif
    for (; i < n; ++i) out[i] = op(a[i]);
}

/// out[i] = op(a[i], b[i]) for i < n (out may alias a or b).
template <class Op>
inline void map2(float* out, const float* a, const float* b, std::size_t n, Op op) {
    std::size_t i = 0;
#if defined(MASSACT_HAS_XSIMD)
    for (; i + width <= n; i += width) store(out + i, op(load(a + i), load(b + i)));
#endif
    for (; i < n; ++i) out[i] = op(a[i], b[i]);
}

/// sum over i < n of op(a[i]), accumulated in float lanes (two accumulators).
template <class Op>
inline float reduce_sum(const float* a, std::size_t n, Op op) {
    std::size_t i = 0;
    float total = 0.0f;
#if defined(MASSACT_HAS_XSIMD)
    batch acc0(0.0f), acc1(0.0f);
    for (; i + 2 * width <= n; i += 2 * width) {
        acc0 += op(load(a + i));
        acc1 += op(load(a + i + width));
    }
    for (; i + width <= n; i += width) acc0 += op(load(a + i));
    total = hsum(acc0 + acc1);
#endif
    for (; i < n; ++i) total += op(a[i]);
    return total;
}

/// max over i < n of a[i] (-inf for n == 0).
inline float reduce_max(const float* a, std::size_t n) {
    std::size_t i = 0;
    float m = -std::numeric_limits<float>::infinity();
#if defined(MASSACT_HAS_XSIMD)
    if (n >= width) {
        batch acc = load(a);
        for (i = width; i + width <= n; i += width) acc = max(acc, load(a + i));
        m = hmax(acc);
    }
#endif
    for (; i < n; ++i) m = a[i] > m ? a[i] : m;
    return m;
}

/// max over i < n of |a[i]| (0 for n == 0).
inline float reduce_max_abs(const float* a, std::size_t n) {
    std::size_t i = 0;
    float m = 0.0f;
#if defined(MASSACT_HAS_XSIMD)
    if (n >= width) {
        batch acc(0.0f);
        for (; i + width <= n; i += width) acc = max(acc, abs(load(a + i)));
        m = hmax(acc);
    }
#endif
    for (; i < n; ++i) m = std::fabs(a[i]) > m ? std::fabs(a[i]) : m;
    return m;
}

}  // namespace massact::simd

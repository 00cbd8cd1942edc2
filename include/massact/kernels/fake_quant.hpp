// massact/kernels/fake_quant.hpp - asymmetric uniform ("min-max", zero-point) quantization, as a fake quantization:
// the values are replaced by what the integers decode to.
//
//   lo, hi = min, max of the group; L = 2^bits - 1; step = (hi - lo) / L;
//   x' = lo + step * clamp(round((x - lo) / step), 0, L)   (round half away from zero; (x - lo) / step >= 0)
//   a group whose values are all equal (step 0) is left as it is (lo itself is held exactly).
// KIVI and KVQuant quantize the KV cache this way (keys per channel, values per token); massact's int2 weights too.
#pragma once

#include "massact/core/eigen.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace massact::kernels {

/// The decoded value of x in a group [lo, lo + L step] of L + 1 levels (step > 0).
inline float asymmetric_level(float x, float lo, float step, int levels) {
    const float q = std::round((x - lo) / step);
    return lo + step * std::min(static_cast<float>(levels), std::max(0.0f, q));
}

/// Fake-quantize the n values x[0], x[stride], ..., x[(n-1) stride] in place to `bits` bits (1..16), asymmetric.
inline void quantize_asymmetric(float* x, Index n, Index stride, int bits) {
    if (n < 1) return;
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    for (Index i = 0; i < n; ++i) {
        lo = std::min(lo, x[i * stride]);
        hi = std::max(hi, x[i * stride]);
    }
    const int levels = (1 << bits) - 1;
    const float step = (hi - lo) / static_cast<float>(levels);
    if (!(step > 0.0f)) return;  // (all equal; or NaN, left for the caller's finiteness checks)
    for (Index i = 0; i < n; ++i) x[i * stride] = asymmetric_level(x[i * stride], lo, step, levels);
}

}  // namespace massact::kernels

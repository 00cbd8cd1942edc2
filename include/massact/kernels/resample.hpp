// massact/kernels/resample.hpp - separable 2-D resampling of planar float images [C, H, W].
//
// Two conventions, because the models' two producers of resized grids use different ones:
//   - resize_bicubic_torch: torch.nn.functional.interpolate(mode="bicubic", align_corners=False), no
//     antialiasing: source coordinate (o + 0.5) * in / out - 0.5, four taps of Keys' cubic with a = -0.75,
//     indices clamped to the edge. transformers resizes ViT position tables with it.
//   - resize_pil: PIL's Image.resize (BILINEAR: triangle filter, support 1; BICUBIC: Keys' cubic with
//     a = -0.5, support 2), which Hugging Face image processors call: when shrinking, the filter is
//     stretched by the scale (antialiasing); the taps of each output are normalised to sum 1 and, as PIL
//     does on 8-bit images, turned into 22-bit fixed point; each pass sums integers from 2^21 (rounding)
//     and clamps to 0..255, so the result equals PIL's byte for byte.
#pragma once

#include "massact/core/eigen.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace massact::kernels {

namespace detail {

inline double cubic(double x, double a) {
    x = std::fabs(x);
    if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    return 0;
}

/// Taps of a 1-D resampling from `in` to `out` samples: for output o, weights w[o][k] on inputs first[o] + k.
struct Taps {
    std::vector<Index> first;
    std::vector<std::vector<double>> w;
};

inline Taps torch_bicubic_taps(Index in, Index out) {
    Taps t;
    const double scale = static_cast<double>(in) / static_cast<double>(out);
    for (Index o = 0; o < out; ++o) {
        const double src = (static_cast<double>(o) + 0.5) * scale - 0.5;
        const double f = std::floor(src), frac = src - f;
        t.first.push_back(static_cast<Index>(f) - 1);
        t.w.push_back({cubic(frac + 1, -0.75), cubic(frac, -0.75), cubic(1 - frac, -0.75), cubic(2 - frac, -0.75)});
    }
    return t;
}

/// PIL's precompute_coeffs: filter support stretched by the scale when shrinking, normalised taps.
inline Taps pil_taps(Index in, Index out, bool bicubic) {
    Taps t;
    const double scale = static_cast<double>(in) / static_cast<double>(out), fscale = std::max(scale, 1.0);
    const double support = (bicubic ? 2.0 : 1.0) * fscale;
    for (Index o = 0; o < out; ++o) {
        const double center = (static_cast<double>(o) + 0.5) * scale;
        const auto lo = std::max<Index>(0, static_cast<Index>(center - support + 0.5));
        const auto hi = std::min<Index>(in, static_cast<Index>(center + support + 0.5));
        std::vector<double> w;
        double sum = 0;
        for (Index x = lo; x < hi; ++x) {
            const double u = (static_cast<double>(x) - center + 0.5) / fscale;
            const double v = bicubic ? cubic(u, -0.5) : std::max(0.0, 1.0 - std::fabs(u));
            w.push_back(v);
            sum += v;
        }
        if (sum != 0)
            for (double& v : w) v /= sum;
        t.first.push_back(lo);
        t.w.push_back(std::move(w));
    }
    return t;
}

/// One pass along an axis: dst[c][o] = sum_k w[o][k] src[c][clamp(first[o] + k)], lines of `n` samples
/// `stride` apart, `lines` lines per plane (the other axis).
inline void apply_taps(const Taps& t, const float* src, Index in, float* dst, Index out, Index lines, Index line_step,
                       Index sample_step, Index dst_line_step, Index dst_sample_step, bool clamp8) {
    for (Index l = 0; l < lines; ++l)
        for (Index o = 0; o < out; ++o) {
            double acc = 0;
            const auto& w = t.w[static_cast<std::size_t>(o)];
            for (std::size_t k = 0; k < w.size(); ++k) {
                const Index x = std::clamp<Index>(t.first[static_cast<std::size_t>(o)] + static_cast<Index>(k), 0, in - 1);
                acc += w[k] * src[l * line_step + x * sample_step];
            }
            if (clamp8) {  // PIL's 8-bit path: fixed-point taps (PRECISION_BITS 22), integer sums, clip8
                constexpr int bits = 22;
                std::int64_t ss = std::int64_t(1) << (bits - 1);
                for (std::size_t k = 0; k < w.size(); ++k) {
                    const auto kk = static_cast<std::int32_t>(w[k] * (1 << bits) + (w[k] < 0 ? -0.5 : 0.5));
                    const Index x = std::clamp<Index>(t.first[static_cast<std::size_t>(o)] + static_cast<Index>(k), 0, in - 1);
                    ss += static_cast<std::int64_t>(src[l * line_step + x * sample_step]) * kk;
                }
                acc = ss <= 0 ? 0.0 : ss >= (std::int64_t(255) << bits) ? 255.0 : static_cast<double>(ss >> bits);
            }
            dst[l * dst_line_step + o * dst_sample_step] = static_cast<float>(acc);
        }
}

inline std::vector<float> separable(const float* src, Index C, Index H, Index W, Index outH, Index outW, const Taps& th,
                                    const Taps& tw, bool clamp8) {
    std::vector<float> mid(static_cast<std::size_t>(C * H * outW)), out(static_cast<std::size_t>(C * outH * outW));
    for (Index c = 0; c < C; ++c) {
        apply_taps(tw, src + c * H * W, W, mid.data() + c * H * outW, outW, H, W, 1, outW, 1, clamp8);  // rows
        apply_taps(th, mid.data() + c * H * outW, H, out.data() + c * outH * outW, outH, outW, 1, outW, 1, outW, clamp8);
    }
    return out;
}

}  // namespace detail

/// [C, H, W] -> [C, outH, outW] as torch's bicubic interpolate (align_corners=False, no antialias).
inline std::vector<float> resize_bicubic_torch(const float* src, Index C, Index H, Index W, Index outH, Index outW) {
    return detail::separable(src, C, H, W, outH, outW, detail::torch_bicubic_taps(H, outH), detail::torch_bicubic_taps(W, outW),
                             false);
}

/// [C, H, W] 8-bit values (0..255 as floats) -> [C, outH, outW] as PIL's Image.resize with BILINEAR or BICUBIC.
inline std::vector<float> resize_pil(const float* src, Index C, Index H, Index W, Index outH, Index outW, bool bicubic) {
    return detail::separable(src, C, H, W, outH, outW, detail::pil_taps(H, outH, bicubic), detail::pil_taps(W, outW, bicubic), true);
}

}  // namespace massact::kernels

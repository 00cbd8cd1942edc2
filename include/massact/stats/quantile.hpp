// massact/stats/quantile.hpp - exact quantiles of |x| (order statistics, linear interpolation
// between neighbours as numpy's default), and per-row L2 norms.
#pragma once

#include "massact/core/eigen.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace massact::stats {

/// Quantiles q in [0, 1] of |x| over all entries of x; `scratch` is reused between calls.
inline std::vector<double> abs_quantiles(const Eigen::Ref<const RowMatrixF>& x, const std::vector<double>& qs,
                                         std::vector<float>& scratch) {
    const auto n = static_cast<std::size_t>(x.size());
    scratch.resize(n);
    std::size_t k = 0;
    for (Index r = 0; r < x.rows(); ++r) {
        const float* p = x.data() + r * x.outerStride();
        for (Index c = 0; c < x.cols(); ++c) scratch[k++] = std::fabs(p[c]);
    }
    std::vector<double> out;
    if (n == 0) return std::vector<double>(qs.size(), 0.0);
    // Select the needed order statistics from the lowest rank up, each within what is left.
    std::vector<std::size_t> order(qs.size());
    for (std::size_t i = 0; i < qs.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return qs[a] < qs[b]; });
    out.assign(qs.size(), 0.0);
    std::size_t lo = 0;
    for (std::size_t i : order) {
        const double pos = std::clamp(qs[i], 0.0, 1.0) * static_cast<double>(n - 1);
        const auto a = static_cast<std::size_t>(std::floor(pos));
        const std::size_t b = std::min(a + 1, n - 1);
        std::nth_element(scratch.begin() + static_cast<std::ptrdiff_t>(std::min(lo, a)),
                         scratch.begin() + static_cast<std::ptrdiff_t>(a), scratch.end());
        const double va = scratch[a];
        double vb = va;
        if (b != a) vb = *std::min_element(scratch.begin() + static_cast<std::ptrdiff_t>(b), scratch.end());
        out[i] = va + (pos - static_cast<double>(a)) * (vb - va);
        lo = a;
    }
    return out;
}

/// Median of |x| (the mean of the two middle values for an even count).
inline double abs_median(const Eigen::Ref<const RowMatrixF>& x, std::vector<float>& scratch) {
    return abs_quantiles(x, {0.5}, scratch)[0];
}

/// L2 norm of every row (e.g. every token's hidden state), squares accumulated in double.
inline Eigen::VectorXf row_norms(const Eigen::Ref<const RowMatrixF>& x) {
    Eigen::VectorXf out(x.rows());
    for (Index r = 0; r < x.rows(); ++r) {
        const float* __restrict p = x.data() + r * x.outerStride();
        double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // independent lanes: vectorisable, order fixed
        Index c = 0;
        for (; c + 8 <= x.cols(); c += 8)
            for (int k = 0; k < 8; ++k) s[k] += static_cast<double>(p[c + k]) * p[c + k];
        double t = 0;
        for (; c < x.cols(); ++c) t += static_cast<double>(p[c]) * p[c];
        for (double v : s) t += v;
        out(r) = static_cast<float>(std::sqrt(t));
    }
    return out;
}

}  // namespace massact::stats

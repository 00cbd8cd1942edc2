// massact/stats/moments.hpp - per-column (per hidden dimension) count, mean, variance,
// kurtosis and max |x| over any number of row blocks, in O(d) memory.
//
// Blocks are reduced in two passes (mean, then centred powers), then merged into the running
// state with the pairwise formulas of Chan et al. (1979) and Pebay (2008) for the third and
// fourth central moments, so merging two partial accumulators gives the one-pass result.
#pragma once

#include "massact/core/eigen.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace massact::stats {

class ColumnMoments {
public:
    explicit ColumnMoments(Index cols = 0) { reset(cols); }

    void reset(Index cols) {
        n_ = 0;
        const auto c = static_cast<std::size_t>(cols);
        mean_.assign(c, 0.0);
        m2_.assign(c, 0.0);
        m3_.assign(c, 0.0);
        m4_.assign(c, 0.0);
        max_abs_.assign(c, 0.0f);
    }
    Index cols() const { return static_cast<Index>(mean_.size()); }
    double count() const { return n_; }
    double mean(Index j) const { return mean_[static_cast<std::size_t>(j)]; }
    /// Population variance (divide by n).
    double variance(Index j) const { return n_ > 0 ? m2_[static_cast<std::size_t>(j)] / n_ : 0.0; }
    /// Excess kurtosis n M4 / M2^2 - 3 (0 for a normal distribution).
    double kurtosis(Index j) const {
        const double m2 = m2_[static_cast<std::size_t>(j)];
        return m2 > 0 ? n_ * m4_[static_cast<std::size_t>(j)] / (m2 * m2) - 3.0 : 0.0;
    }
    float max_abs(Index j) const { return max_abs_[static_cast<std::size_t>(j)]; }

    /// Add the rows of x ([rows, cols]).
    void add(const Eigen::Ref<const RowMatrixF>& x) {
        if (cols() == 0 && mean_.empty()) reset(x.cols());
        eigen_assert(x.cols() == cols());
        constexpr Index block = 256;
        const auto c = static_cast<std::size_t>(x.cols());
        std::vector<float> s1(c), s2(c), s3(c), s4(c), mx(c);
        for (Index r0 = 0; r0 < x.rows(); r0 += block) {
            const Index rows = std::min(block, x.rows() - r0);
            std::fill(s1.begin(), s1.end(), 0.0f);
            std::fill(mx.begin(), mx.end(), 0.0f);
            for (Index r = r0; r < r0 + rows; ++r) {
                const float* p = x.data() + r * x.outerStride();
                for (std::size_t j = 0; j < c; ++j) {
                    s1[j] += p[j];
                    mx[j] = std::max(mx[j], std::fabs(p[j]));
                }
            }
            const float inv = 1.0f / static_cast<float>(rows);
            for (std::size_t j = 0; j < c; ++j) s1[j] *= inv;  // block mean
            std::fill(s2.begin(), s2.end(), 0.0f);
            std::fill(s3.begin(), s3.end(), 0.0f);
            std::fill(s4.begin(), s4.end(), 0.0f);
            for (Index r = r0; r < r0 + rows; ++r) {
                const float* p = x.data() + r * x.outerStride();
                for (std::size_t j = 0; j < c; ++j) {
                    const float d = p[j] - s1[j], d2 = d * d;
                    s2[j] += d2;
                    s3[j] += d2 * d;
                    s4[j] += d2 * d2;
                }
            }
            for (std::size_t j = 0; j < c; ++j) {
                combine(j, static_cast<double>(rows), s1[j], s2[j], s3[j], s4[j]);
                max_abs_[j] = std::max(max_abs_[j], mx[j]);
            }
            n_ += static_cast<double>(rows);
        }
    }

    /// Merge another accumulator over the same columns.
    void merge(const ColumnMoments& o) {
        if (o.n_ == 0) return;
        if (mean_.empty()) reset(o.cols());
        eigen_assert(o.cols() == cols());
        for (std::size_t j = 0; j < mean_.size(); ++j) {
            combine(j, o.n_, o.mean_[j], o.m2_[j], o.m3_[j], o.m4_[j]);
            max_abs_[j] = std::max(max_abs_[j], o.max_abs_[j]);
        }
        n_ += o.n_;
    }

private:
    /// Fold a part (nb values with mean mb and central sums m2b..m4b) into column j (count n_, not yet updated).
    void combine(std::size_t j, double nb, double mb, double m2b, double m3b, double m4b) {
        const double na = n_, n = na + nb;
        const double d = mb - mean_[j], d2 = d * d;
        const double m2a = m2_[j], m3a = m3_[j];
        mean_[j] += d * nb / n;
        m4_[j] += m4b + d2 * d2 * na * nb * (na * na - na * nb + nb * nb) / (n * n * n) +
                  6.0 * d2 * (na * na * m2b + nb * nb * m2a) / (n * n) + 4.0 * d * (na * m3b - nb * m3a) / n;
        m3_[j] += m3b + d2 * d * na * nb * (na - nb) / (n * n) + 3.0 * d * (na * m2b - nb * m2a) / n;
        m2_[j] += m2b + d2 * na * nb / n;
    }

    double n_ = 0;
    std::vector<double> mean_, m2_, m3_, m4_;
    std::vector<float> max_abs_;
};

}  // namespace massact::stats

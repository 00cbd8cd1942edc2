// massact/stats/moments.hpp - per-column (per hidden dimension) count, mean, variance,
// kurtosis and max |x| over any number of row blocks, in O(d) memory.
//
// Blocks of rows are reduced in one pass (powers of x minus a shift), then merged into the running
// state with the pairwise formulas of Chan et al. (1979) and Pebay (2008) for the third and
// fourth central moments, so merging two partial accumulators gives the one-pass result.
#pragma once

#include "massact/core/bytes.hpp"
#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/kernels/simd.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace massact::stats {

/// Fold part b (count nb, mean mb, central sums m2b, m3b, m4b) into part a (count na, mean, M2, M3, M4):
/// the pairwise formulas of Chan et al. (1979) and Pebay (2008). The one place they are written.
/// Requires nb > 0 (no branch here, so that loops over columns vectorise).
inline void pebay_merge(double na, double& mean, double& M2, double& M3, double& M4, double nb, double mb, double m2b,
                        double m3b, double m4b) {
    const double n = na + nb;
    const double d = mb - mean, d2 = d * d, w = na * nb / n;
    const double m2a = M2, m3a = M3;
    mean += d * nb / n;
    M4 += m4b + d2 * d2 * w * (na * na - na * nb + nb * nb) / (n * n) + 6.0 * d2 * (na * na * m2b + nb * nb * m2a) / (n * n) +
          4.0 * d * (na * m3b - nb * m3a) / n;
    M3 += m3b + d2 * d * w * (na - nb) / n + 3.0 * d * (na * m2b - nb * m2a) / n;
    M2 += m2b + d2 * w;
}

/// Count, mean and central moments of a stream of scalars, numerically stable (one value is a part of
/// count 1), mergeable.
struct Moments {
    double n = 0, mean = 0, m2 = 0, m3 = 0, m4 = 0;
    void add(double x) {
        pebay_merge(n, mean, m2, m3, m4, 1.0, x, 0, 0, 0);
        n += 1;
    }
    void merge(const Moments& o) {
        if (o.n == 0) return;
        pebay_merge(n, mean, m2, m3, m4, o.n, o.mean, o.m2, o.m3, o.m4);
        n += o.n;
    }
    double variance() const { return n > 0 ? m2 / n : 0.0; }  // population
    double stddev() const { return std::sqrt(variance()); }
    void save(ByteWriter& w) const {
        for (double v : {n, mean, m2, m3, m4}) w.put(v);
    }
    void load(ByteReader& r) {
        for (double* v : {&n, &mean, &m2, &m3, &m4}) *v = r.get<double>();
    }
};

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
    void save(ByteWriter& w) const {
        w.put(n_);
        for (const auto* v : {&mean_, &m2_, &m3_, &m4_}) w.put_vector(*v);
        w.put_vector(max_abs_);
    }
    void load(ByteReader& r) {
        n_ = r.get<double>();
        for (auto* v : {&mean_, &m2_, &m3_, &m4_}) *v = r.get_vector<double>();
        max_abs_ = r.get_vector<float>();
        for (const auto* v : {&m2_, &m3_, &m4_})
            if (v->size() != mean_.size()) throw Error(r.what() + ": column moments of unequal widths");
        if (max_abs_.size() != mean_.size()) throw Error(r.what() + ": column moments of unequal widths");
    }
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

    /// Add the rows of x ([rows, cols]). Rows go in blocks of 256: one streaming pass sums the powers
    /// of x - K (K = the block's first row) in float, eight rows at a time with the running sums held in
    /// registers; the block's central moments are then formed in double and merged. Partial accumulators
    /// over whole blocks (a scan adds each sequence separately) merge to the one-pass result up to double
    /// rounding.
    void add(const Eigen::Ref<const RowMatrixF>& x) {
        if (cols() == 0 && mean_.empty()) reset(x.cols());
        eigen_assert(x.cols() == cols());
        constexpr Index block = 256, group = 8;
        const auto c = static_cast<std::size_t>(x.cols());
        // Six arrays, spaced so that no two share an address modulo 4 KiB with each other (or with
        // rows of x whose stride is a multiple of 4 KiB): avoids false store-to-load dependencies.
        const std::size_t pitch = c + 48 - c % 16;
        std::vector<float> buf(6 * pitch + 6 * 16);
        float* k = buf.data();
        float* s1 = k + pitch + 16;
        float* s2 = s1 + pitch + 16;
        float* s3 = s2 + pitch + 16;
        float* s4 = s3 + pitch + 16;
        float* mx = s4 + pitch + 16;
        const float* base = x.data();
        const Index stride = x.outerStride();
        for (Index r0 = 0; r0 < x.rows(); r0 += block) {
            const Index rows = std::min(block, x.rows() - r0);
            std::copy(base + r0 * stride, base + r0 * stride + c, k);
            for (float* a : {s1, s2, s3, s4, mx}) std::fill(a, a + c, 0.0f);
            for (Index g = r0; g < r0 + rows; g += group)
                accumulate_rows(base + g * stride, stride, std::min(group, r0 + rows - g), k, s1, s2, s3, s4, mx, c);
            const double nb = static_cast<double>(rows);
            fold_block(n_, nb, k, s1, s2, s3, s4, mx, mean_.data(), m2_.data(), m3_.data(), m4_.data(), max_abs_.data(), c);
            n_ += nb;
        }
    }

    /// Merge another accumulator over the same columns.
    void merge(const ColumnMoments& o) {
        if (o.n_ == 0) return;
        if (mean_.empty()) reset(o.cols());
        eigen_assert(o.cols() == cols());
        for (std::size_t j = 0; j < mean_.size(); ++j) {
            pebay_merge(n_, mean_[j], m2_[j], m3_[j], m4_[j], o.n_, o.mean_[j], o.m2_[j], o.m3_[j], o.m4_[j]);
            max_abs_[j] = std::max(max_abs_[j], o.max_abs_[j]);
        }
        n_ += o.n_;
    }

private:
    static float hi(float u, float v) { return u > v ? u : v; }  // vectorises to a max instruction

    /// Powers of (row - k) of `rows` consecutive rows (a few: they are read as parallel streams) added
    /// to the running sums. Each strip of columns sums the group in registers and adds that partial sum
    /// to the block's sums once per group: fewer loads and stores than once per row, and a two-level
    /// summation (group, then block) that keeps float rounding error low.
    static void accumulate_rows(const float* x, Index stride, Index rows, const float* __restrict k,
                                float* __restrict s1, float* __restrict s2, float* __restrict s3, float* __restrict s4,
                                float* __restrict mx, std::size_t c) {
        // One row's contribution, for a batch of columns or a single column.
        const auto step = [](const auto& v, const auto& kk, auto& t1, auto& t2, auto& t3, auto& t4, auto& m) {
            const auto a = v - kk, sq = a * a;
            t1 = t1 + a;
            t2 = t2 + sq;
            t3 = simd::fma(sq, a, t3);
            t4 = simd::fma(sq, sq, t4);
            m = simd::max(m, simd::abs(v));
        };
        std::size_t j = 0;
#if defined(MASSACT_HAS_XSIMD)
        for (; j + simd::width <= c; j += simd::width) {
            const simd::batch kk = simd::load(k + j);
            simd::batch t1 = simd::splat(0.0f), t2 = t1, t3 = t1, t4 = t1, m = t1;
            for (Index r = 0; r < rows; ++r) step(simd::load(x + r * stride + j), kk, t1, t2, t3, t4, m);
            simd::store(s1 + j, simd::load(s1 + j) + t1);
            simd::store(s2 + j, simd::load(s2 + j) + t2);
            simd::store(s3 + j, simd::load(s3 + j) + t3);
            simd::store(s4 + j, simd::load(s4 + j) + t4);
            simd::store(mx + j, simd::max(simd::load(mx + j), m));
        }
#endif
        for (; j < c; ++j) {
            float t1 = 0, t2 = 0, t3 = 0, t4 = 0, m = 0;
            for (Index r = 0; r < rows; ++r) step(x[r * stride + static_cast<Index>(j)], k[j], t1, t2, t3, t4, m);
            s1[j] += t1;
            s2[j] += t2;
            s3[j] += t3;
            s4[j] += t4;
            mx[j] = hi(mx[j], m);
        }
    }

    /// Raw sums of powers of (x - k) over nb rows -> the block's central moments, merged into the running
    /// state (count na) with the pairwise formulas. Columns are independent: the loop vectorises.
    static void fold_block(double na, double nb, const float* __restrict k, const float* __restrict s1,
                           const float* __restrict s2, const float* __restrict s3, const float* __restrict s4,
                           const float* __restrict mx, double* __restrict mean, double* __restrict M2,
                           double* __restrict M3, double* __restrict M4, float* __restrict max_abs, std::size_t c) {
        const double inv_nb = 1.0 / nb;
        for (std::size_t j = 0; j < c; ++j) {
            const double d = s1[j] * inv_nb, S2 = s2[j], S3 = s3[j], S4 = s4[j];
            const double m2b = std::max(0.0, S2 - nb * d * d);
            const double m3b = S3 - 3.0 * d * S2 + 2.0 * nb * d * d * d;
            const double m4b = std::max(0.0, S4 - 4.0 * d * S3 + 6.0 * d * d * S2 - 3.0 * nb * d * d * d * d);
            pebay_merge(na, mean[j], M2[j], M3[j], M4[j], nb, static_cast<double>(k[j]) + d, m2b, m3b, m4b);
            max_abs[j] = hi(max_abs[j], mx[j]);
        }
    }

    double n_ = 0;
    std::vector<double> mean_, m2_, m3_, m4_;
    std::vector<float> max_abs_;
};

}  // namespace massact::stats

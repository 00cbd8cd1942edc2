// massact/stats/topk.hpp - the k largest |x| of a stream of matrices, with their (row, col).
//
// Mergeable: TopK(a) merged with TopK(b) equals TopK of the concatenation, exactly
// (ties are broken by row, then column, so the result does not depend on the order).
#pragma once

#include "massact/core/bytes.hpp"
#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/kernels/simd.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace massact::stats {

struct TopEntry {
    float value = 0.0f;  // signed value; ordered by |value|
    Index row = 0;       // e.g. token (or sequence * T + token)
    Index col = 0;       // e.g. hidden dimension
    double aux = 0.0;    // the caller's payload, carried with the entry (e.g. the median of its hidden state)
};

class TopK {
public:
    explicit TopK(std::size_t k = 1) : k_(k) {
        if (k == 0) throw Error("TopK: k must be at least 1");
    }

    std::size_t k() const { return k_; }
    std::size_t size() const { return e_.size(); }
    const TopEntry& operator[](std::size_t i) const { return e_[i]; }
    /// Entries by decreasing |value|.
    const std::vector<TopEntry>& entries() const { return e_; }
    /// |value| an entry must beat to enter (0 until k entries are held).
    float threshold() const { return e_.size() < k_ ? 0.0f : std::fabs(e_.back().value); }

    void push(float v, Index row, Index col, double aux = 0.0) {
        const TopEntry t{v, row, col, aux};
        if (e_.size() == k_ && !before(t, e_.back())) return;
        auto it = std::upper_bound(e_.begin(), e_.end(), t, before);
        e_.insert(it, t);
        if (e_.size() > k_) e_.pop_back();
    }
    void merge(const TopK& o) {
        for (const auto& t : o.e_) push(t.value, t.row, t.col, t.aux);
    }
    void save(ByteWriter& w) const {
        w.put(static_cast<std::uint64_t>(k_));
        w.put_vector(e_);
    }
    void load(ByteReader& r) {
        k_ = static_cast<std::size_t>(r.get<std::uint64_t>());
        e_ = r.get_vector<TopEntry>();
        if (k_ == 0 || e_.size() > k_) throw Error(r.what() + ": a top-k list of " + std::to_string(e_.size()) + " entries for k = " + std::to_string(k_));
    }
    /// Scan a row-major matrix; its row r is reported as row0 + r, every entry carrying `aux`. Rows whose
    /// max |x| cannot enter are skipped after one vectorised pass.
    void add(const Eigen::Ref<const RowMatrixF>& x, Index row0 = 0, double aux = 0.0) {
        for (Index r = 0; r < x.rows(); ++r) {
            const float* p = x.data() + r * x.outerStride();
            if (e_.size() == k_ && simd::reduce_max_abs(p, static_cast<std::size_t>(x.cols())) < threshold()) continue;
            for (Index c = 0; c < x.cols(); ++c)
                if (e_.size() < k_ || std::fabs(p[c]) >= threshold()) push(p[c], row0 + r, c, aux);
        }
    }

private:
    static bool before(const TopEntry& a, const TopEntry& b) {  // a ranks above b
        const float fa = std::fabs(a.value), fb = std::fabs(b.value);
        if (fa != fb) return fa > fb;
        if (a.row != b.row) return a.row < b.row;
        return a.col < b.col;
    }
    std::size_t k_;
    std::vector<TopEntry> e_;
};

/// The k largest |x| of a matrix.
inline TopK top_k_abs(const Eigen::Ref<const RowMatrixF>& x, std::size_t k) {
    TopK t(k);
    t.add(x);
    return t;
}

}  // namespace massact::stats

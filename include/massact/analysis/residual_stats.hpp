// massact/analysis/residual_stats.hpp - per-layer outlier statistics of the residual stream.
//
// For each sequence's hidden state x [T, d] after a block: top-1/2/3 |x|, the median |x|, whether the
// largest |x| sits at position 0 and in which dim, per-dimension moments and max |x|, and the 8
// largest |x| overall (each with the median of the hidden state it came from). Averages are over
// sequences. Mergeable: merge(a, b) equals one pass over both.
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/stats/moments.hpp"
#include "massact/stats/quantile.hpp"
#include "massact/stats/topk.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

namespace massact::analysis {

/// The result for one layer (tests/data/tiny-*.stats.json keys).
struct LayerStats {
    int layer = 0;
    double top1_mean = 0, top2_mean = 0, top3_mean = 0, median_mean = 0, top1_pos0_fraction = 0;
    std::map<Index, Index> top1_dims;  // dim of each sequence's largest |x| -> count
    Index dominant_dim() const {
        Index best = -1, n = -1;
        for (const auto& kv : top1_dims)
            if (kv.second > n) { best = kv.first; n = kv.second; }
        return best;
    }
    double ratio() const { return median_mean > 0 ? top1_mean / median_mean : 0.0; }
};

/// Per-dimension summary of a layer: the dims with the largest max |x|.
struct DimSummary {
    int layer;
    Index dim;
    double max_abs, mean, std, kurtosis;
};

/// Running sums of one layer.
struct ResidualAccumulator {
    double top_sum[3] = {0, 0, 0};
    double median_sum = 0;
    double pos0 = 0;
    double sequences = 0;
    std::map<Index, Index> top1_dims;
    stats::ColumnMoments dims;  // per hidden dimension over all tokens of all sequences
    stats::TopK top{8};         // largest |x| overall; row = sequence * T + position, aux = median |x|

    /// One sequence's hidden state x [T, d] with its median |x|; `row0` = sequence index * T.
    void add(const Eigen::Ref<const RowMatrixF>& x, double median, Index row0) {
        const stats::TopK top3 = stats::top_k_abs(x, 3);
        for (std::size_t i = 0; i < 3 && i < top3.size(); ++i) top_sum[i] += std::fabs(top3[i].value);
        median_sum += median;
        pos0 += top3[0].row == 0 ? 1 : 0;
        top1_dims[top3[0].col] += 1;
        sequences += 1;
        dims.add(x);
        top.add(x, row0, median);
    }

    void save(ByteWriter& w) const {
        for (double v : top_sum) w.put(v);
        for (double v : {median_sum, pos0, sequences}) w.put(v);
        w.put(static_cast<std::uint64_t>(top1_dims.size()));
        for (const auto& kv : top1_dims) {
            w.put(kv.first);
            w.put(kv.second);
        }
        dims.save(w);
        top.save(w);
    }
    void load(ByteReader& r) {
        for (double& v : top_sum) v = r.get<double>();
        for (double* v : {&median_sum, &pos0, &sequences}) *v = r.get<double>();
        top1_dims.clear();
        for (auto n = r.get<std::uint64_t>(); n > 0; --n) {
            const auto k = r.get<Index>();
            top1_dims[k] = r.get<Index>();
        }
        dims.load(r);
        top.load(r);
    }

    void merge(const ResidualAccumulator& o) {
        for (int i = 0; i < 3; ++i) top_sum[i] += o.top_sum[i];
        median_sum += o.median_sum;
        pos0 += o.pos0;
        sequences += o.sequences;
        for (const auto& kv : o.top1_dims) top1_dims[kv.first] += kv.second;
        dims.merge(o.dims);
        top.merge(o.top);
    }

    LayerStats stats(int layer) const {
        const double n = std::max(1.0, sequences);
        LayerStats s;
        s.layer = layer;
        s.top1_mean = top_sum[0] / n;
        s.top2_mean = top_sum[1] / n;
        s.top3_mean = top_sum[2] / n;
        s.median_mean = median_sum / n;
        s.top1_pos0_fraction = pos0 / n;
        s.top1_dims = top1_dims;
        return s;
    }

    /// The `count` dims with the largest max |x|.
    std::vector<DimSummary> top_dims(int layer, std::size_t count = 8) const {
        std::vector<Index> order(static_cast<std::size_t>(dims.cols()));
        for (std::size_t j = 0; j < order.size(); ++j) order[j] = static_cast<Index>(j);
        std::sort(order.begin(), order.end(), [&](Index a, Index b) { return dims.max_abs(a) > dims.max_abs(b); });
        std::vector<DimSummary> out;
        for (std::size_t i = 0; i < std::min(count, order.size()); ++i) {
            const Index j = order[i];
            out.push_back({layer, j, dims.max_abs(j), dims.mean(j), std::sqrt(dims.variance(j)), dims.kurtosis(j)});
        }
        return out;
    }
};

}  // namespace massact::analysis

// massact/analysis/detector.hpp - the massive-activation detector.
//
// In each hidden state, a value is a hit when |x| > min_abs and |x| >= min_ratio * median |x| of that
// hidden state. Hits are grouped by (dim, carrier), the carrier being the first token, the first
// delimiter ('.' or newline) or else the token id; each sequence contributes its largest hit per
// group. A (dim, carrier) is massive at layer l when it hits in at least min_share of the sequences,
// and reported when that holds in at least min_layers consecutive layers.
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/kernels/simd.hpp"
#include "massact/stats/moments.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace massact::analysis {

struct DetectorCriteria {
    std::string name = "relative";
    double min_abs = 0.0;     // |x| must exceed this
    double min_ratio = 50.0;  // |x| / median |x| of its hidden state, at least
    double min_share = 0.5;   // of sequences, at a layer
    int min_layers = 2;       // consecutive layers

    /// Scale-aware default: 50x the median of the hidden state, in half the sequences, two layers
    /// running; no absolute threshold, so small models are judged by the same shape of outlier.
    static DetectorCriteria relative() { return {}; }
    /// Sun et al. (2024): |x| > 100 and about 1000x the median.
    static DetectorCriteria sun2024() { return {"sun2024", 100.0, 1000.0, 0.5, 2}; }
};

/// Who carries a hit: in text the first token, the first delimiter or else a token id; in a vision
/// transformer's sequence the CLS token, register k, or any patch (one carrier for all patches).
enum class Carrier { FirstToken, FirstDelimiter, Token, Cls, Register, Patch };

inline std::string carrier_name(Carrier c, std::int64_t token) {
    switch (c) {
        case Carrier::FirstToken: return "first_token";
        case Carrier::FirstDelimiter: return "first_delimiter";
        case Carrier::Token: return "token:" + std::to_string(token);
        case Carrier::Cls: return "cls";
        case Carrier::Register: return "register:" + std::to_string(token);
        case Carrier::Patch: return "patch";
    }
    return "?";
}

/// The carrier of position t: vision sequences (registers >= 0) by their token kinds (Transformer::vision_tokens: 0 =
/// CLS, 1..R registers, then patches; a model without CLS has no kind 0).
inline std::pair<Carrier, std::int64_t> carrier_of(Index t, const std::int64_t* tokens, Index delimiter, Index registers) {
    if (registers >= 0) {
        if (tokens[t] == 0) return {Carrier::Cls, -1};
        if (tokens[t] <= registers) return {Carrier::Register, tokens[t] - 1};
        return {Carrier::Patch, -1};
    }
    if (t == 0) return {Carrier::FirstToken, -1};
    if (t == delimiter) return {Carrier::FirstDelimiter, -1};
    return {Carrier::Token, tokens[t]};
}

/// Statistics of one (layer, dim, carrier) over the sequences where it hits (stable, mergeable).
struct HitStats {
    stats::Moments value;  // the hit's signed value
    double sum_ratio = 0, max_abs = 0;
    void add(double v, double ratio) {
        value.add(v);
        sum_ratio += ratio;
        max_abs = std::max(max_abs, std::abs(v));
    }
    void merge(const HitStats& o) {
        value.merge(o.value);
        sum_ratio += o.sum_ratio;
        max_abs = std::max(max_abs, o.max_abs);
    }
    double seqs() const { return value.n; }
    double mean() const { return value.mean; }
    double stddev() const { return value.stddev(); }
    double mean_ratio() const { return value.n > 0 ? sum_ratio / value.n : 0.0; }
    void save(ByteWriter& w) const {
        value.save(w);
        w.put(sum_ratio);
        w.put(max_abs);
    }
    void load(ByteReader& r) {
        value.load(r);
        sum_ratio = r.get<double>();
        max_abs = r.get<double>();
    }
};

using HitKey = std::tuple<Index, int, std::int64_t>;  // (dim, carrier, token id or -1)

/// Hits of one layer.
struct DetectorAccumulator {
    std::map<HitKey, HitStats> hits;

    /// One sequence's hidden state x [T, d] (its median |x| given), token ids [T], first delimiter position;
    /// registers >= 0: a vision sequence with that many register tokens (carriers CLS, register k, patch).
    void add(const Eigen::Ref<const RowMatrixF>& x, double median, const std::int64_t* tokens, Index delimiter,
             const DetectorCriteria& cr, Index registers = -1) {
        const Index T = x.rows(), d = x.cols();
        const double thr = std::max(cr.min_abs, cr.min_ratio * median);
        std::map<HitKey, double> best;
        for (Index t = 0; t < T; ++t) {
            const float* row = x.data() + t * x.outerStride();
            if (simd::reduce_max_abs(row, static_cast<std::size_t>(d)) <= thr) continue;
            const auto [car, tok] = carrier_of(t, tokens, delimiter, registers);
            for (Index j = 0; j < d; ++j) {
                if (std::fabs(row[j]) <= thr || (cr.min_abs > 0 && std::fabs(row[j]) <= cr.min_abs)) continue;
                const HitKey key{j, static_cast<int>(car), tok};
                auto it = best.find(key);
                if (it == best.end() || std::fabs(row[j]) > std::fabs(it->second)) best[key] = row[j];
            }
        }
        for (const auto& kv : best) hits[kv.first].add(kv.second, median > 0 ? std::fabs(kv.second) / median : 0.0);
    }

    void save(ByteWriter& w) const {
        w.put(static_cast<std::uint64_t>(hits.size()));
        for (const auto& kv : hits) {
            w.put(std::get<0>(kv.first));
            w.put(std::get<1>(kv.first));
            w.put(std::get<2>(kv.first));
            kv.second.save(w);
        }
    }
    void load(ByteReader& r) {
        hits.clear();
        for (auto n = r.get<std::uint64_t>(); n > 0; --n) {
            const auto dim = r.get<Index>();
            const auto car = r.get<int>();
            const auto tok = r.get<std::int64_t>();
            hits[HitKey{dim, car, tok}].load(r);
        }
    }

    void merge(const DetectorAccumulator& o) {
        for (const auto& kv : o.hits) hits[kv.first].merge(kv.second);
    }
};

struct CarrierStats {
    std::string name;  // first_token, first_delimiter, token:<id>
    int first_layer = 0;
    std::vector<int> layers;
    double share = 0, mean = 0, std = 0, ratio = 0, max_abs = 0;  // at first_layer
};

struct MassiveActivation {
    Index dim = 0;
    int first_layer = 0;
    std::vector<int> layers;
    std::vector<std::string> positions;  // carriers
    double mean = 0, std = 0, ratio = 0, max_abs = 0, share = 0;  // main carrier at first_layer
    std::vector<double> mean_per_layer;  // main carrier, every layer (0 where it does not hit)
    std::vector<CarrierStats> carriers;
    bool constant() const { return std::abs(mean) > 0 && std / std::abs(mean) < 0.1; }
};

namespace detail {

/// The carrier statistics of `key` if it passes min_share in min_layers consecutive layers.
inline bool carrier_passes(const std::vector<DetectorAccumulator>& layers, const HitKey& key, double n,
                           const DetectorCriteria& cr, CarrierStats& cs) {
    int run = 0, first = -1;
    for (int l = 0; l < static_cast<int>(layers.size()); ++l) {
        const auto& hits = layers[static_cast<std::size_t>(l)].hits;
        const auto it = hits.find(key);
        if (it != hits.end() && it->second.seqs() / n >= cr.min_share) {
            cs.layers.push_back(l);
            if (++run >= cr.min_layers && first < 0) first = l - run + 1;
        } else {
            run = 0;
        }
    }
    if (first < 0) return false;
    const HitStats& h = layers[static_cast<std::size_t>(first)].hits.at(key);
    cs.name = carrier_name(static_cast<Carrier>(std::get<1>(key)), std::get<2>(key));
    cs.first_layer = first;
    cs.share = h.seqs() / n;
    cs.mean = h.mean();
    cs.std = h.stddev();
    cs.ratio = h.mean_ratio();
    cs.max_abs = h.max_abs;
    return true;
}

/// Summarise a dim from its carriers: the main one is seen in most sequences, then the earliest.
inline void summarise(MassiveActivation& m, const std::vector<DetectorAccumulator>& layers) {
    std::sort(m.carriers.begin(), m.carriers.end(), [](const CarrierStats& a, const CarrierStats& b) {
        if (a.share != b.share) return a.share > b.share;
        return a.first_layer < b.first_layer;
    });
    const CarrierStats& main = m.carriers.front();
    m.first_layer = main.first_layer;
    std::set<int> all;
    for (const auto& cs : m.carriers) {
        m.positions.push_back(cs.name);
        all.insert(cs.layers.begin(), cs.layers.end());
        m.first_layer = std::min(m.first_layer, cs.first_layer);
    }
    m.layers.assign(all.begin(), all.end());
    m.mean = main.mean;
    m.std = main.std;
    m.ratio = main.ratio;
    m.max_abs = main.max_abs;
    m.share = main.share;
    for (const auto& la : layers) {  // the main carrier's mean at every layer
        double v = 0;
        for (const auto& hk : la.hits) {
            const auto& [dim, car, tok] = hk.first;
            if (dim == m.dim && carrier_name(static_cast<Carrier>(car), tok) == main.name) v = hk.second.mean();
        }
        m.mean_per_layer.push_back(v);
    }
}

}  // namespace detail

/// The massive activations of a scan of n sequences, largest mean first.
inline std::vector<MassiveActivation> detect(const std::vector<DetectorAccumulator>& layers, double n,
                                             const DetectorCriteria& cr) {
    std::set<HitKey> keys;
    for (const auto& la : layers)
        for (const auto& kv : la.hits) keys.insert(kv.first);
    std::map<Index, MassiveActivation> by_dim;
    for (const auto& key : keys) {
        CarrierStats cs;
        if (!detail::carrier_passes(layers, key, std::max(1.0, n), cr, cs)) continue;
        MassiveActivation& m = by_dim[std::get<0>(key)];
        m.dim = std::get<0>(key);
        m.carriers.push_back(cs);
    }
    std::vector<MassiveActivation> out;
    for (auto& kv : by_dim) {
        detail::summarise(kv.second, layers);
        out.push_back(kv.second);
    }
    std::sort(out.begin(), out.end(), [](const MassiveActivation& a, const MassiveActivation& b) { return std::abs(a.mean) > std::abs(b.mean); });
    return out;
}

}  // namespace massact::analysis

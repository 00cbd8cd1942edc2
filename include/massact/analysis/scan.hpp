// massact/analysis/scan.hpp - per-layer outlier statistics of the residual stream, the
// massive-activation detector, and attention-sink metrics, over any number of sequences.
//
// Definitions (those of tests/data/tiny-*.stats.json):
//   layers[l]: statistics of the output of block l (blocks.l.hook_resid_post, before the final
//     norm), each taken per sequence over all [T x d] values, then averaged over sequences:
//     top1/top2/top3 (largest |x|), median |x| (mean of the two middle values), the share of
//     sequences whose largest |x| sits at position 0, and the dim of the largest |x| -> count.
//   attention_on_first_token_per_layer_head[l][h]: mean over sequences and over queries 1..T-1 of
//     the attention probability on position 0.
//   Gu et al. (2024) sink metric: alpha[l][h] = mean over sequences of the mean over queries
//     t < T_sink of A[t, 0]; a sink head has alpha > epsilon (defaults T_sink = 64, epsilon = 0.3);
//     sink_rate = share of (layer, head) pairs that are sink heads.
//   Detector: in each hidden state, a value is a hit when |x| > min_abs and |x| >= min_ratio *
//     median |x| of that hidden state. Hits are grouped by (dim, carrier), the carrier being the
//     first token, the first delimiter ('.' or newline) or else the token id. A (dim, carrier) is
//     massive at layer l when it hits in at least min_share of the sequences; it is reported when
//     that holds in at least min_layers consecutive layers.
// Memory is O(layers x d) whatever the number of sequences; ScanAccumulator::merge combines two
// partial scans into the result of one pass over both.
#pragma once

#include "massact/analysis/perplexity.hpp"
#include "massact/model/transformer.hpp"
#include "massact/stats/moments.hpp"
#include "massact/stats/quantile.hpp"
#include "massact/stats/topk.hpp"
#include "massact/text/tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
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

struct ScanOptions {
    DetectorCriteria criteria;
    Index sink_T = 64;            // Gu et al.'s T
    double sink_epsilon = 0.3;    // Gu et al.'s threshold on alpha
    Index batch = 8;              // sequences per forward
    std::set<text::TokenId> delimiters;  // token ids counted as delimiters (analysis/data.hpp)
    Hooks hooks;                  // extra hooks run before the scan's own (e.g. an intervention)
    RunOptions run;               // e.g. a softmax variant
    std::function<void(Index, Index)> progress;
};

enum class Carrier { FirstToken, FirstDelimiter, Token };

inline std::string carrier_name(Carrier c, std::int64_t token) {
    switch (c) {
        case Carrier::FirstToken: return "first_token";
        case Carrier::FirstDelimiter: return "first_delimiter";
        case Carrier::Token: return "token:" + std::to_string(token);
    }
    return "?";
}

/// Running sums of one (layer, dim, carrier) over sequences.
struct HitStats {
    double seqs = 0, sum = 0, sum_sq = 0, sum_ratio = 0, max_abs = 0;
    void add(double v, double ratio) {
        seqs += 1;
        sum += v;
        sum_sq += v * v;
        sum_ratio += ratio;
        max_abs = std::max(max_abs, std::abs(v));
    }
    void merge(const HitStats& o) {
        seqs += o.seqs;
        sum += o.sum;
        sum_sq += o.sum_sq;
        sum_ratio += o.sum_ratio;
        max_abs = std::max(max_abs, o.max_abs);
    }
    double mean() const { return seqs > 0 ? sum / seqs : 0.0; }
    double stddev() const { return seqs > 0 ? std::sqrt(std::max(0.0, sum_sq / seqs - mean() * mean())) : 0.0; }
};

/// Everything a scan accumulates for one layer.
struct LayerAccumulator {
    double top_sum[3] = {0, 0, 0};
    double median_sum = 0;
    double pos0 = 0;
    std::map<Index, Index> top1_dims;
    stats::ColumnMoments dims;  // per hidden dimension over all tokens of all sequences
    stats::TopK top{8};         // largest |x| overall; row = sequence * T + position
    std::vector<double> top_median;  // median of the hidden state each entry of `top` came from
    std::vector<double> attn_first, gu_alpha, attn_delim, attn_slot;  // per head sums
    double delim_seqs = 0;
    std::map<std::tuple<Index, int, std::int64_t>, HitStats> hits;  // (dim, carrier, token) -> stats

    void merge(const LayerAccumulator& o) {
        for (int i = 0; i < 3; ++i) top_sum[i] += o.top_sum[i];
        median_sum += o.median_sum;
        pos0 += o.pos0;
        for (const auto& kv : o.top1_dims) top1_dims[kv.first] += kv.second;
        dims.merge(o.dims);
        // merge top entries keeping their medians
        std::map<std::pair<Index, Index>, double> med;
        for (std::size_t i = 0; i < top.size(); ++i) med[{top[i].row, top[i].col}] = top_median[i];
        for (std::size_t i = 0; i < o.top.size(); ++i) med[{o.top[i].row, o.top[i].col}] = o.top_median[i];
        top.merge(o.top);
        top_median.clear();
        for (std::size_t i = 0; i < top.size(); ++i) top_median.push_back(med[{top[i].row, top[i].col}]);
        auto add = [](std::vector<double>& a, const std::vector<double>& b) {
            if (a.empty()) a.assign(b.size(), 0.0);
            for (std::size_t i = 0; i < b.size(); ++i) a[i] += b[i];
        };
        add(attn_first, o.attn_first);
        add(gu_alpha, o.gu_alpha);
        add(attn_delim, o.attn_delim);
        add(attn_slot, o.attn_slot);
        delim_seqs += o.delim_seqs;
        for (const auto& kv : o.hits) hits[kv.first].merge(kv.second);
    }
};

/// Partial scan state; merge() two of them to get the scan of both sets of sequences.
struct ScanAccumulator {
    std::vector<LayerAccumulator> layers;
    double sequences = 0;
    Index seq_len = 0;
    double nll_sum = 0;
    double targets = 0;
    Index row_offset = 0;  // global sequence index of the next sequence (for `top` rows)

    void merge(const ScanAccumulator& o) {
        if (layers.empty()) {
            *this = o;
            return;
        }
        if (o.layers.empty()) return;
        for (std::size_t l = 0; l < layers.size(); ++l) layers[l].merge(o.layers[l]);
        sequences += o.sequences;
        nll_sum += o.nll_sum;
        targets += o.targets;
        row_offset += o.row_offset;
    }
};

/// Accumulate a scan of `ids` (rows = sequences) into `acc`. Sequence indices in `acc` continue
/// from acc.row_offset + first_row (so that partial scans of disjoint row ranges merge cleanly).
inline void scan_into(ScanAccumulator& acc, const Transformer& model, const TokenBatch& ids, const ScanOptions& opt,
                      Index first_row = 0) {
    const ModelConfig& c = model.config();
    const Index L = c.num_layers, H = c.num_heads, d = c.hidden_size, T = ids.cols();
    if (T < 2) throw Error("scan: sequences need at least 2 tokens, got " + std::to_string(T));
    if (acc.layers.empty()) {
        acc.layers.resize(static_cast<std::size_t>(L));
        for (auto& la : acc.layers) {
            la.dims.reset(d);
            la.attn_first.assign(static_cast<std::size_t>(H), 0.0);
            la.gu_alpha.assign(static_cast<std::size_t>(H), 0.0);
            la.attn_delim.assign(static_cast<std::size_t>(H), 0.0);
            la.attn_slot.assign(static_cast<std::size_t>(H), 0.0);
        }
        acc.seq_len = T;
    } else if (acc.seq_len != T) {
        throw Error("scan: sequence length " + std::to_string(T) + " differs from the accumulated " + std::to_string(acc.seq_len));
    }
    const Index Tg = std::min(opt.sink_T, T);
    const DetectorCriteria& cr = opt.criteria;
    std::vector<float> scratch;
    Workspace ws;
    for (Index b0 = 0; b0 < ids.rows(); b0 += opt.batch) {
        const Index nb = std::min(opt.batch, ids.rows() - b0);
        const TokenBatch chunk = ids.middleRows(b0, nb);
        // First delimiter position of each sequence (-1: none).
        std::vector<Index> delim(static_cast<std::size_t>(nb), -1);
        for (Index b = 0; b < nb; ++b)
            for (Index t = 1; t < T && !opt.delimiters.empty(); ++t)
                if (opt.delimiters.count(chunk(b, t))) {
                    delim[static_cast<std::size_t>(b)] = t;
                    break;
                }
        Hooks hooks;
        hooks.extend(opt.hooks);
        hooks.add("*hook_resid_post", [&](Activation& a) {
            LayerAccumulator& la = acc.layers[static_cast<std::size_t>(a.layer)];
            for (Index b = 0; b < nb; ++b) {
                const auto x = a.sequence(b);  // [T, d]
                const double med = stats::abs_median(x, scratch);
                const stats::TopK top = stats::top_k_abs(x, 3);
                for (std::size_t i = 0; i < 3 && i < top.size(); ++i) la.top_sum[i] += std::fabs(top[i].value);
                la.median_sum += med;
                la.pos0 += top[0].row == 0 ? 1 : 0;
                la.top1_dims[top[0].col] += 1;
                la.dims.add(x);
                const Index seq = acc.row_offset + first_row + b0 + b;
                stats::TopK mine(la.top.k());
                mine.add(x, seq * T);
                std::map<std::pair<Index, Index>, double> med_of;
                for (std::size_t i = 0; i < la.top.size(); ++i) med_of[{la.top[i].row, la.top[i].col}] = la.top_median[i];
                for (std::size_t i = 0; i < mine.size(); ++i) med_of[{mine[i].row, mine[i].col}] = med;
                la.top.merge(mine);
                la.top_median.clear();
                for (std::size_t i = 0; i < la.top.size(); ++i) la.top_median.push_back(med_of[{la.top[i].row, la.top[i].col}]);
                // Detector hits: one per (dim, carrier) and sequence, the largest |x|.
                const double thr = std::max(cr.min_abs, cr.min_ratio * med);
                std::map<std::tuple<Index, int, std::int64_t>, double> best;
                for (Index t = 0; t < T; ++t) {
                    const float* row = x.data() + t * d;
                    if (simd::reduce_max_abs(row, static_cast<std::size_t>(d)) <= thr) continue;
                    const Carrier car = t == 0 ? Carrier::FirstToken
                                        : t == delim[static_cast<std::size_t>(b)] ? Carrier::FirstDelimiter : Carrier::Token;
                    const std::int64_t tok = car == Carrier::Token ? chunk(b, t) : -1;
                    for (Index j = 0; j < d; ++j) {
                        if (std::fabs(row[j]) <= thr || (cr.min_abs > 0 && std::fabs(row[j]) <= cr.min_abs)) continue;
                        auto key = std::make_tuple(j, static_cast<int>(car), tok);
                        auto it = best.find(key);
                        if (it == best.end() || std::fabs(row[j]) > std::fabs(it->second)) best[key] = row[j];
                    }
                }
                for (const auto& kv : best) la.hits[kv.first].add(kv.second, med > 0 ? std::fabs(kv.second) / med : 0.0);
            }
        });
        auto attention = [&](Activation& a, bool slot) {
            LayerAccumulator& la = acc.layers[static_cast<std::size_t>(a.layer)];
            for (Index b = 0; b < nb; ++b)
                for (Index h = 0; h < H; ++h) {
                    if (slot) {  // [N, H, T]: probability of the sink slot(s), queries 1..T-1
                        const float* p = a.data + (b * H + h) * T;
                        double s = 0;
                        for (Index q = 1; q < T; ++q) s += p[q];
                        la.attn_slot[static_cast<std::size_t>(h)] += s / double(T - 1);
                        continue;
                    }
                    const float* P = a.data + (b * H + h) * T * T;  // [T, T]
                    double s = 0, g = 0;
                    for (Index q = 1; q < T; ++q) s += P[q * T];
                    for (Index q = 0; q < Tg; ++q) g += P[q * T];
                    la.attn_first[static_cast<std::size_t>(h)] += s / double(T - 1);
                    la.gu_alpha[static_cast<std::size_t>(h)] += g / double(Tg);
                    const Index k = delim[static_cast<std::size_t>(b)];
                    if (k > 0 && k + 1 < T) {
                        double sd = 0;
                        for (Index q = k + 1; q < T; ++q) sd += P[q * T + k];
                        la.attn_delim[static_cast<std::size_t>(h)] += sd / double(T - 1 - k);
                    }
                }
            if (!slot)
                for (Index b = 0; b < nb; ++b) la.delim_seqs += (delim[static_cast<std::size_t>(b)] > 0 && delim[static_cast<std::size_t>(b)] + 1 < T) ? 1.0 / double(1) : 0.0;
        };
        hooks.add("*attn.hook_pattern", [&](Activation& a) { attention(a, false); });
        hooks.add_if_present("*attn.hook_sink_pattern", [&](Activation& a) { attention(a, true); });
        RunOptions run = opt.run;
        run.logits = true;
        const RowMatrixF& logits = model.run(chunk, ws, hooks, run);
        const RowMatrixD lp = token_logprobs(logits, chunk);
        acc.nll_sum -= lp.sum();
        acc.targets += double(nb * (T - 1));
        acc.sequences += double(nb);
        if (opt.progress) opt.progress(b0 + nb, ids.rows());
    }
    acc.row_offset += ids.rows();
}

// ---- results --------------------------------------------------------------------------

struct LayerStats {
    int layer = 0;
    double top1_mean = 0, top2_mean = 0, top3_mean = 0, median_mean = 0, top1_pos0_fraction = 0;
    std::map<Index, Index> top1_dims;
    Index dominant_dim() const {
        Index best = -1, n = -1;
        for (const auto& kv : top1_dims)
            if (kv.second > n) { best = kv.first; n = kv.second; }
        return best;
    }
    double ratio() const { return median_mean > 0 ? top1_mean / median_mean : 0.0; }
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

struct SinkHead {
    int layer = 0, head = 0;
    double alpha = 0;
};

struct ScanResult {
    std::string model_type;
    Index sequences = 0, seq_len = 0;
    double val_nll = 0, val_ppl = 0;
    std::vector<LayerStats> layers;
    std::vector<std::vector<double>> attention_on_first_token;      // [L][H]
    std::vector<std::vector<double>> attention_on_first_delimiter;  // [L][H] (sequences that have one)
    std::vector<std::vector<double>> attention_on_bias_slot;        // [L][H] (models with a sink slot)
    std::vector<std::vector<double>> gu_alpha;                      // [L][H]
    std::vector<SinkHead> sink_heads;
    double sink_rate = 0;
    Index sink_T = 0;
    double sink_epsilon = 0;
    DetectorCriteria criteria;
    std::vector<MassiveActivation> massive;
    std::string detector_note;  // why nothing was found, or a summary
    struct DimSummary { int layer; Index dim; double max_abs, mean, std, kurtosis; };
    std::vector<DimSummary> top_dims;  // per layer, the dims with the largest max |x|

    /// JSON with the keys of tests/data/tiny-*.stats.json plus the detector and sink metrics.
    nlohmann::json to_json() const {
        nlohmann::json j;
        j["model"] = model_type;
        j["val_sequences"] = sequences;
        j["seq_len"] = seq_len;
        j["val_nll"] = val_nll;
        j["val_ppl"] = val_ppl;
        j["layers"] = nlohmann::json::array();
        for (const auto& l : layers) {
            nlohmann::json dims = nlohmann::json::object();
            for (const auto& kv : l.top1_dims) dims[std::to_string(kv.first)] = kv.second;
            j["layers"].push_back({{"layer", l.layer}, {"top1_mean", l.top1_mean}, {"top2_mean", l.top2_mean},
                                   {"top3_mean", l.top3_mean}, {"median_mean", l.median_mean},
                                   {"top1_pos0_fraction", l.top1_pos0_fraction}, {"top1_dims", dims},
                                   {"ratio", l.ratio()}});
        }
        j["attention_on_first_token_per_layer_head"] = attention_on_first_token;
        j["attention_on_first_delimiter_per_layer_head"] = attention_on_first_delimiter;
        if (!attention_on_bias_slot.empty()) j["attention_on_bias_slot_per_layer_head"] = attention_on_bias_slot;
        j["sink_alpha_per_layer_head"] = gu_alpha;
        j["sink_rate"] = sink_rate;
        j["sink_T"] = sink_T;
        j["sink_epsilon"] = sink_epsilon;
        j["sink_heads"] = nlohmann::json::array();
        for (const auto& s : sink_heads) j["sink_heads"].push_back({{"layer", s.layer}, {"head", s.head}, {"alpha", s.alpha}});
        j["detector"] = {{"name", criteria.name}, {"min_abs", criteria.min_abs}, {"min_ratio", criteria.min_ratio},
                         {"min_share", criteria.min_share}, {"min_layers", criteria.min_layers}, {"note", detector_note}};
        j["massive_activations"] = nlohmann::json::array();
        for (const auto& m : massive) {
            nlohmann::json car = nlohmann::json::array();
            for (const auto& cs : m.carriers)
                car.push_back({{"position", cs.name}, {"first_layer", cs.first_layer}, {"layers", cs.layers}, {"share", cs.share},
                               {"mean", cs.mean}, {"std", cs.std}, {"ratio", cs.ratio}, {"max_abs", cs.max_abs}});
            j["massive_activations"].push_back({{"dim", m.dim}, {"first_layer", m.first_layer}, {"layers", m.layers},
                                                {"positions", m.positions}, {"mean", m.mean}, {"std", m.std},
                                                {"ratio", m.ratio}, {"max_abs", m.max_abs}, {"share", m.share},
                                                {"constant", m.constant()}, {"mean_per_layer", m.mean_per_layer},
                                                {"carriers", car}});
        }
        j["top_dims"] = nlohmann::json::array();
        for (const auto& t : top_dims)
            j["top_dims"].push_back({{"layer", t.layer}, {"dim", t.dim}, {"max_abs", t.max_abs}, {"mean", t.mean},
                                     {"std", t.std}, {"kurtosis", t.kurtosis}});
        return j;
    }
};

inline ScanResult finalize(const ScanAccumulator& acc, const ModelConfig& c, const ScanOptions& opt) {
    ScanResult r;
    r.model_type = c.model_type;
    r.sequences = static_cast<Index>(acc.sequences);
    r.seq_len = acc.seq_len;
    r.val_nll = acc.targets > 0 ? acc.nll_sum / acc.targets : 0.0;
    r.val_ppl = std::exp(r.val_nll);
    r.criteria = opt.criteria;
    r.sink_T = std::min(opt.sink_T, acc.seq_len);
    r.sink_epsilon = opt.sink_epsilon;
    const double n = std::max(1.0, acc.sequences);
    const int L = static_cast<int>(acc.layers.size());
    const bool slot = c.sink != SinkKind::None || opt.run.attention.kind == AttentionOverride::Kind::Softmax1 ||
                      opt.run.attention.kind == AttentionOverride::Kind::SinkLogit;
    int sink_count = 0, pairs = 0;
    for (int l = 0; l < L; ++l) {
        const auto& la = acc.layers[static_cast<std::size_t>(l)];
        LayerStats s;
        s.layer = l;
        s.top1_mean = la.top_sum[0] / n;
        s.top2_mean = la.top_sum[1] / n;
        s.top3_mean = la.top_sum[2] / n;
        s.median_mean = la.median_sum / n;
        s.top1_pos0_fraction = la.pos0 / n;
        s.top1_dims = la.top1_dims;
        r.layers.push_back(s);
        std::vector<double> first, delim, gu, sl;
        for (std::size_t h = 0; h < la.attn_first.size(); ++h) {
            first.push_back(la.attn_first[h] / n);
            delim.push_back(la.delim_seqs > 0 ? la.attn_delim[h] / la.delim_seqs : 0.0);
            gu.push_back(la.gu_alpha[h] / n);
            sl.push_back(la.attn_slot[h] / n);
            ++pairs;
            if (gu.back() > opt.sink_epsilon) {
                ++sink_count;
                r.sink_heads.push_back({l, static_cast<int>(h), gu.back()});
            }
        }
        r.attention_on_first_token.push_back(first);
        r.attention_on_first_delimiter.push_back(delim);
        r.gu_alpha.push_back(gu);
        if (slot) r.attention_on_bias_slot.push_back(sl);
        // The dims with the largest max |x| in this layer.
        std::vector<Index> order(static_cast<std::size_t>(la.dims.cols()));
        for (std::size_t j = 0; j < order.size(); ++j) order[j] = static_cast<Index>(j);
        std::sort(order.begin(), order.end(), [&](Index a, Index b) { return la.dims.max_abs(a) > la.dims.max_abs(b); });
        for (std::size_t i = 0; i < std::min<std::size_t>(8, order.size()); ++i) {
            const Index j = order[i];
            r.top_dims.push_back({l, j, la.dims.max_abs(j), la.dims.mean(j), std::sqrt(la.dims.variance(j)), la.dims.kurtosis(j)});
        }
    }
    r.sink_rate = pairs > 0 ? double(sink_count) / pairs : 0.0;

    // Detector: (dim, carrier) keys that pass min_share in >= min_layers consecutive layers.
    const DetectorCriteria& cr = opt.criteria;
    std::set<std::tuple<Index, int, std::int64_t>> keys;
    for (const auto& la : acc.layers)
        for (const auto& kv : la.hits) keys.insert(kv.first);
    std::map<Index, MassiveActivation> by_dim;
    for (const auto& key : keys) {
        std::vector<int> pass;
        int run = 0, best_run = 0, first = -1;
        for (int l = 0; l < L; ++l) {
            const auto& hits = acc.layers[static_cast<std::size_t>(l)].hits;
            auto it = hits.find(key);
            const bool ok = it != hits.end() && it->second.seqs / n >= cr.min_share;
            if (ok) {
                pass.push_back(l);
                run += 1;
                if (run >= cr.min_layers && first < 0) first = l - run + 1;
                best_run = std::max(best_run, run);
            } else {
                run = 0;
            }
        }
        if (first < 0) continue;
        const auto& h = acc.layers[static_cast<std::size_t>(first)].hits.at(key);
        CarrierStats cs;
        cs.name = carrier_name(static_cast<Carrier>(std::get<1>(key)), std::get<2>(key));
        cs.first_layer = first;
        cs.layers = pass;
        cs.share = h.seqs / n;
        cs.mean = h.mean();
        cs.std = h.stddev();
        cs.ratio = h.sum_ratio / std::max(1.0, h.seqs);
        cs.max_abs = h.max_abs;
        MassiveActivation& m = by_dim[std::get<0>(key)];
        m.dim = std::get<0>(key);
        m.carriers.push_back(cs);
    }
    for (auto& kv : by_dim) {
        MassiveActivation& m = kv.second;
        // Main carrier: the one seen in most sequences at its first layer, then the earliest.
        std::sort(m.carriers.begin(), m.carriers.end(), [](const CarrierStats& a, const CarrierStats& b) {
            if (a.share != b.share) return a.share > b.share;
            return a.first_layer < b.first_layer;
        });
        const CarrierStats& main = m.carriers.front();
        m.first_layer = main.first_layer;
        std::set<int> layers;
        for (const auto& cs : m.carriers) {
            m.positions.push_back(cs.name);
            layers.insert(cs.layers.begin(), cs.layers.end());
            m.first_layer = std::min(m.first_layer, cs.first_layer);
        }
        m.layers.assign(layers.begin(), layers.end());
        m.mean = main.mean;
        m.std = main.std;
        m.ratio = main.ratio;
        m.max_abs = main.max_abs;
        m.share = main.share;
        // The main carrier's mean at every layer.
        for (int l = 0; l < L; ++l) {
            double v = 0;
            for (const auto& hk : acc.layers[static_cast<std::size_t>(l)].hits) {
                const auto& [dim, car, tok] = hk.first;
                if (dim == m.dim && carrier_name(static_cast<Carrier>(car), tok) == main.name) v = hk.second.mean();
            }
            m.mean_per_layer.push_back(v);
        }
        r.massive.push_back(m);
    }
    std::sort(r.massive.begin(), r.massive.end(),
              [](const MassiveActivation& a, const MassiveActivation& b) { return std::abs(a.mean) > std::abs(b.mean); });

    // Why nothing (or what) was found, from the largest value seen.
    double big = 0, big_ratio = 0;
    int big_layer = -1;
    Index big_dim = -1, big_pos = -1;
    for (int l = 0; l < L; ++l) {
        const auto& la = acc.layers[static_cast<std::size_t>(l)];
        if (la.top.size() && std::fabs(la.top[0].value) > big) {
            big = std::fabs(la.top[0].value);
            big_layer = l;
            big_dim = la.top[0].col;
            big_pos = acc.seq_len > 0 ? la.top[0].row % acc.seq_len : 0;
            big_ratio = la.top_median[0] > 0 ? big / la.top_median[0] : 0.0;
        }
    }
    char buf[400];
    if (r.massive.empty()) {
        const char* why = big <= cr.min_abs ? "no |x| exceeds the absolute threshold" : "no dimension passes every criterion";
        std::snprintf(buf, sizeof buf,
                      "no massive activation (%s: |x| > %g, >= %gx median, in %.0f%% of sequences, %d layers running): "
                      "%s; the largest |x| is %.1f (layer %d, dim %ld, position %ld), %.0fx the median of its hidden state",
                      cr.name.c_str(), cr.min_abs, cr.min_ratio, 100 * cr.min_share, cr.min_layers, why, big, big_layer,
                      static_cast<long>(big_dim), static_cast<long>(big_pos), big_ratio);
    } else {
        std::snprintf(buf, sizeof buf, "%zu massive dimension(s) (%s criteria); the largest |x| is %.1f (layer %d, dim %ld)",
                      r.massive.size(), cr.name.c_str(), big, big_layer, static_cast<long>(big_dim));
    }
    r.detector_note = buf;
    return r;
}

/// Scan `ids` in one call.
inline ScanResult scan(const Transformer& model, const TokenBatch& ids, const ScanOptions& opt = {}) {
    ScanAccumulator acc;
    scan_into(acc, model, ids, opt);
    return finalize(acc, model.config(), opt);
}

}  // namespace massact::analysis

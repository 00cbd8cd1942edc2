// massact/analysis/scan_state.hpp - the state of a scan, independent of who runs the model: what is measured
// (StatsOptions), the mergeable per-layer accumulators fed one sequence at a time (ScanAccumulator), and
// the result with its JSON (ScanResult, finalize). massact's own scan (analysis/scan.hpp) and the
// engine-agnostic probe (analysis/probe.hpp) both fill a ScanAccumulator through the same calls.
//
//   layers[l]: statistics of the output of block l (blocks.l.hook_resid_post, before the final norm),
//     each taken per sequence over all [T x d] values, then averaged over sequences.
//   attention_on_first_token_per_layer_head[l][h], Gu et al.'s alpha and sink rate: sink_metrics.hpp.
//   massive_activations: detector.hpp.
// Memory is O(layers x d) whatever the number of sequences; ScanAccumulator::merge combines two
// partial scans into the result of one pass over both (definitions: docs/formats.md, tests/data/README.md).
#pragma once

#include "massact/analysis/detector.hpp"
#include "massact/analysis/residual_stats.hpp"
#include "massact/analysis/sink_metrics.hpp"
#include "massact/core/bytes.hpp"
#include "massact/core/error.hpp"
#include "massact/stats/quantile.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

namespace massact::analysis {

/// What a scan measures, whoever runs the model.
struct StatsOptions {
    DetectorCriteria criteria;
    Index sink_T = 64;            // Gu et al.'s T
    double sink_epsilon = 0.3;    // Gu et al.'s threshold on alpha
    std::set<std::int64_t> delimiters;  // token ids counted as delimiters (analysis/data.hpp)
};

/// First position t >= 1 of `tokens` [T] that is a delimiter (-1: none).
inline Index first_delimiter(const std::int64_t* tokens, Index T, const std::set<std::int64_t>& delimiters) {
    for (Index t = 1; t < T && !delimiters.empty(); ++t)
        if (delimiters.count(tokens[t])) return t;
    return -1;
}

/// Partial scan state; merge() two of them to get the scan of both sets of sequences.
struct ScanAccumulator {
    std::vector<ResidualAccumulator> resid;   // [L]
    std::vector<SinkAccumulator> sinks;       // [L]
    std::vector<DetectorAccumulator> hits;    // [L]
    double sequences = 0;
    Index seq_len = 0;
    double nll_sum = 0;
    double targets = 0;
    Index row_offset = 0;  // global sequence index of the next sequence (for the top-k rows)
    Index registers = -1;  // vision: register tokens per image (-1: text)

    bool empty() const { return resid.empty(); }
    void reset(Index layers, Index heads, Index d, Index T) {
        resid.assign(static_cast<std::size_t>(layers), ResidualAccumulator());
        for (auto& r : resid) r.dims.reset(d);
        sinks.assign(static_cast<std::size_t>(layers), SinkAccumulator());
        for (auto& s : sinks) s.reset(heads);
        hits.assign(static_cast<std::size_t>(layers), DetectorAccumulator());
        seq_len = T;
    }
    /// The accumulator as bytes (partial scans of other processes: load them and merge).
    std::vector<unsigned char> save() const {
        ByteWriter w;
        w.put(std::uint32_t(0x5343414e));  // "SCAN"
        w.put(static_cast<std::uint64_t>(resid.size()));
        for (std::size_t l = 0; l < resid.size(); ++l) {
            resid[l].save(w);
            sinks[l].save(w);
            hits[l].save(w);
        }
        for (double v : {sequences, nll_sum, targets}) w.put(v);
        w.put(seq_len);
        w.put(row_offset);
        w.put(registers);
        return w.take();
    }
    static ScanAccumulator load(const unsigned char* data, std::size_t size, const std::string& what) {
        ByteReader r(data, size, what);
        if (r.get<std::uint32_t>() != 0x5343414e) throw Error(what + ": not a massact scan accumulator");
        ScanAccumulator a;
        const auto L = r.get<std::uint64_t>();
        if (L > 1u << 16) throw Error(what + ": " + std::to_string(L) + " layers");
        a.resid.resize(static_cast<std::size_t>(L));
        a.sinks.resize(static_cast<std::size_t>(L));
        a.hits.resize(static_cast<std::size_t>(L));
        for (std::size_t l = 0; l < L; ++l) {
            a.resid[l].load(r);
            a.sinks[l].load(r);
            a.hits[l].load(r);
        }
        for (double* v : {&a.sequences, &a.nll_sum, &a.targets}) *v = r.get<double>();
        a.seq_len = r.get<Index>();
        a.row_offset = r.get<Index>();
        a.registers = r.get<Index>();
        if (!r.done()) throw Error(what + ": trailing bytes after the scan accumulator");
        return a;
    }

    // ---- one sequence at a time (massact's scan and probe::Scan both add through these) ----
    // Row `seq` is the sequence's global index (top-k rows are seq * T + position).

    /// The hidden state after block `layer` of one sequence, x [T, d]; `tokens` [T] its token ids (vision: the
    /// token kinds), `delimiter` its first delimiter position (-1: none).
    void add_hidden(Index layer, const Eigen::Ref<const RowMatrixF>& x, const std::int64_t* tokens, Index delimiter, Index seq,
                    const DetectorCriteria& criteria, std::vector<float>& scratch) {
        const auto l = static_cast<std::size_t>(layer);
        const double med = stats::abs_median(x, scratch);
        resid[l].add(x, med, seq * x.rows());
        hits[l].add(x, med, tokens, delimiter, criteria, registers);
    }
    /// The attention probabilities of block `layer` for one sequence, [H, T, T] (query rows, key columns).
    void add_pattern(Index layer, const float* pattern, Index heads, Index T, Index delimiter, Index sink_T) {
        auto& s = sinks[static_cast<std::size_t>(layer)];
        s.add_pattern(pattern, heads, T, delimiter, sink_T);
        if (registers > 0) s.add_registers(pattern, heads, T, registers);
    }
    /// The same from the probabilities of the keys SinkAccumulator::sink_columns(delimiter, registers) lists, [H, T, C].
    void add_columns(Index layer, const float* probs, Index heads, Index T, Index C, Index delimiter, Index sink_T) {
        auto& s = sinks[static_cast<std::size_t>(layer)];
        s.add_columns(probs, heads, T, C, delimiter, sink_T);
        if (registers > 0) s.add_register_columns(probs, heads, T, C, registers);
    }
    /// The probabilities of the extra sink slot of block `layer` for one sequence, [H, T].
    void add_slot(Index layer, const float* probs, Index heads, Index T) {
        sinks[static_cast<std::size_t>(layer)].add_slot(probs, heads, T);
    }
    /// Count one sequence; `logprobs` [n]: log p of each of its scored next tokens (n = 0: no perplexity).
    void add_sequence(const double* logprobs, Index n) {
        for (Index t = 0; t < n; ++t) nll_sum -= logprobs[t];
        targets += double(n);
        sequences += 1;
    }
    /// The per-sequence additions need the state sized first: `layers` blocks of `heads` heads and width d,
    /// sequences of T tokens (the same T for every sequence).
    void start(Index layers, Index heads, Index d, Index T, const std::string& who) {
        if (T < 2) throw Error(who + ": sequences need at least 2 tokens, got " + std::to_string(T));
        if (empty())
            reset(layers, heads, d, T);
        else if (seq_len != T)
            throw Error(who + ": sequence length " + std::to_string(T) + " differs from the accumulated " + std::to_string(seq_len) +
                        " (every sequence of a scan has the same length)");
        else if (static_cast<Index>(resid.size()) != layers || resid[0].dims.cols() != d)
            throw Error(who + ": " + std::to_string(layers) + " layers of width " + std::to_string(d) + " differ from the accumulated " +
                        std::to_string(resid.size()) + " of width " + std::to_string(resid[0].dims.cols()));
    }

    void merge(const ScanAccumulator& o) {
        if (empty()) {
            *this = o;
            return;
        }
        if (o.empty()) return;
        for (std::size_t l = 0; l < resid.size(); ++l) {
            resid[l].merge(o.resid[l]);
            sinks[l].merge(o.sinks[l]);
            hits[l].merge(o.hits[l]);
        }
        sequences += o.sequences;
        nll_sum += o.nll_sum;
        targets += o.targets;
        row_offset += o.row_offset;
    }
};

// ---- results ------------------------------------------------------------------------------------------

struct SinkHead {
    int layer = 0, head = 0;
    double alpha = 0;
};

struct ScanResult {
    std::string model_type;
    Index sequences = 0, seq_len = 0;
    double val_nll = 0, val_ppl = 0;
    std::vector<LayerStats> layers;
    std::vector<std::vector<double>> attention_on_first_token;      // [L][H] ([] for a layer without attention)
    std::vector<std::vector<double>> attention_on_first_delimiter;  // [L][H] (sequences that have one)
    std::vector<std::vector<double>> attention_on_bias_slot;        // [L][H] (models with a sink slot)
    std::vector<std::vector<double>> attention_on_registers;        // [L][H] (vision models with registers)
    bool vision = false;                                             // images: no perplexity; first token = CLS
    std::string first_token = "cls";                                 // vision: what the first token is ("patch_0": SigLIP)
    bool perplexity = true;  // scored next tokens were seen (val_nll, val_ppl)
    bool attention = true;   // attention probabilities were seen (every attention and sink key)
    std::vector<std::vector<double>> gu_alpha;                      // [L][H]
    std::vector<SinkHead> sink_heads;
    double sink_rate = 0;  // over the heads of the layers with attention
    Index sink_T = 0;
    double sink_epsilon = 0;
    DetectorCriteria criteria;
    std::vector<MassiveActivation> massive;
    std::string detector_note;  // why nothing was found, or a summary
    std::vector<DimSummary> top_dims;  // per layer, the dims with the largest max |x|

    /// JSON with the keys of tests/data/tiny-*.stats.json plus the detector and sink metrics.
    nlohmann::json to_json() const {
        nlohmann::json j;
        j["model"] = model_type;
        j["val_sequences"] = sequences;
        j["seq_len"] = seq_len;
        if (perplexity) {
            j["val_nll"] = val_nll;
            j["val_ppl"] = val_ppl;
        }
        j["layers"] = nlohmann::json::array();
        for (const auto& l : layers) {
            nlohmann::json dims = nlohmann::json::object();
            for (const auto& kv : l.top1_dims) dims[std::to_string(kv.first)] = kv.second;
            j["layers"].push_back({{"layer", l.layer}, {"top1_mean", l.top1_mean}, {"top2_mean", l.top2_mean},
                                   {"top3_mean", l.top3_mean}, {"median_mean", l.median_mean},
                                   {"top1_pos0_fraction", l.top1_pos0_fraction}, {"top1_dims", dims},
                                   {"ratio", l.ratio()}});
        }
        if (attention) {
            j["attention_on_first_token_per_layer_head"] = attention_on_first_token;
            j["attention_on_first_delimiter_per_layer_head"] = attention_on_first_delimiter;
            if (!attention_on_bias_slot.empty()) j["attention_on_bias_slot_per_layer_head"] = attention_on_bias_slot;
            if (!attention_on_registers.empty()) j["attention_on_registers_per_layer_head"] = attention_on_registers;
        }
        if (vision) j["first_token"] = first_token;
        if (attention) {
            j["sink_alpha_per_layer_head"] = gu_alpha;
            j["sink_rate"] = sink_rate;
            j["sink_T"] = sink_T;
            j["sink_epsilon"] = sink_epsilon;
            j["sink_heads"] = nlohmann::json::array();
            for (const auto& s : sink_heads) j["sink_heads"].push_back({{"layer", s.layer}, {"head", s.head}, {"alpha", s.alpha}});
        }
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

namespace detail {

/// Why nothing (or what) was found, from the largest |x| of the scan.
inline std::string detector_note(const ScanAccumulator& acc, const DetectorCriteria& cr, std::size_t found) {
    double big = 0, big_ratio = 0;
    int big_layer = -1;
    Index big_dim = -1, big_pos = -1;
    for (std::size_t l = 0; l < acc.resid.size(); ++l) {
        const auto& top = acc.resid[l].top;
        if (top.size() && std::fabs(top[0].value) > big) {
            big = std::fabs(top[0].value);
            big_layer = static_cast<int>(l);
            big_dim = top[0].col;
            big_pos = acc.seq_len > 0 ? top[0].row % acc.seq_len : 0;
            big_ratio = top[0].aux > 0 ? big / top[0].aux : 0.0;
        }
    }
    char buf[400];
    if (found == 0) {
        const char* why = big <= cr.min_abs ? "no |x| exceeds the absolute threshold" : "no dimension passes every criterion";
        std::snprintf(buf, sizeof buf,
                      "no massive activation (%s: |x| > %g, >= %gx median, in %.0f%% of sequences, %d layers running): "
                      "%s; the largest |x| is %.1f (layer %d, dim %ld, position %ld), %.0fx the median of its hidden state",
                      cr.name.c_str(), cr.min_abs, cr.min_ratio, 100 * cr.min_share, cr.min_layers, why, big, big_layer,
                      static_cast<long>(big_dim), static_cast<long>(big_pos), big_ratio);
    } else {
        std::snprintf(buf, sizeof buf, "%zu massive dimension(s) (%s criteria); the largest |x| is %.1f (layer %d, dim %ld)",
                      found, cr.name.c_str(), big, big_layer, static_cast<long>(big_dim));
    }
    return buf;
}

}  // namespace detail

/// The result of a scan: `model_type` for the JSON, `vision` (no perplexity, first token = CLS), `slot` (the
/// run has an extra sink slot whose attention is reported).
inline ScanResult finalize(const ScanAccumulator& acc, const std::string& model_type, bool vision, bool slot, const StatsOptions& opt) {
    ScanResult r;
    r.model_type = model_type;
    r.vision = vision;
    r.perplexity = !vision && acc.targets > 0;
    r.attention = false;
    for (const auto& s : acc.sinks) r.attention = r.attention || s.sequences > 0;
    r.sequences = static_cast<Index>(acc.sequences);
    r.seq_len = acc.seq_len;
    r.val_nll = acc.targets > 0 ? acc.nll_sum / acc.targets : 0.0;
    r.val_ppl = std::exp(r.val_nll);
    r.criteria = opt.criteria;
    r.sink_T = std::min(opt.sink_T, acc.seq_len);
    r.sink_epsilon = opt.sink_epsilon;
    int pairs = 0;
    for (std::size_t l = 0; l < acc.resid.size(); ++l) {
        const int layer = static_cast<int>(l);
        r.layers.push_back(acc.resid[l].stats(layer));
        const auto dims = acc.resid[l].top_dims(layer);
        r.top_dims.insert(r.top_dims.end(), dims.begin(), dims.end());
        const SinkAccumulator& s = acc.sinks[l];
        if (!r.attention || s.sequences == 0) {  // a layer without attention (Gated DeltaNet, Mamba-2): empty lists, no heads
            for (auto* v : {&r.attention_on_first_token, &r.attention_on_first_delimiter, &r.gu_alpha}) v->emplace_back();
            if (slot) r.attention_on_bias_slot.emplace_back();
            if (acc.registers > 0) r.attention_on_registers.emplace_back();
            continue;
        }
        r.attention_on_first_token.push_back(s.mean_first());
        r.attention_on_first_delimiter.push_back(s.mean_delim());
        r.gu_alpha.push_back(s.mean_alpha());
        if (slot) r.attention_on_bias_slot.push_back(s.mean_slot());
        if (acc.registers > 0) r.attention_on_registers.push_back(s.mean_registers());
        for (std::size_t h = 0; h < r.gu_alpha.back().size(); ++h, ++pairs)
            if (r.gu_alpha.back()[h] > opt.sink_epsilon) r.sink_heads.push_back({layer, static_cast<int>(h), r.gu_alpha.back()[h]});
    }
    r.sink_rate = pairs > 0 ? double(r.sink_heads.size()) / pairs : 0.0;
    r.massive = detect(acc.hits, acc.sequences, opt.criteria);
    r.detector_note = detail::detector_note(acc, opt.criteria, r.massive.size());
    return r;
}

/// Where the first token's massive activations appear: the earliest layer at which a detected dim is
/// carried by the first token, and every such dim first seen at that layer (sorted). layer -1: none.
struct FirstTokenMassive {
    int layer = -1;
    std::vector<Index> dims;
};

inline FirstTokenMassive first_token_massive(const ScanResult& r) {
    auto carried = [](const MassiveActivation& m) {
        return std::find(m.positions.begin(), m.positions.end(), "first_token") != m.positions.end();
    };
    FirstTokenMassive out;
    for (const auto& m : r.massive)
        if (carried(m)) out.layer = out.layer < 0 ? m.first_layer : std::min(out.layer, m.first_layer);
    for (const auto& m : r.massive)
        if (carried(m) && m.first_layer == out.layer) out.dims.push_back(m.dim);
    std::sort(out.dims.begin(), out.dims.end());
    return out;
}

/// The layer with the largest top-1 / median ratio (where to look when nothing is detected).
inline int most_outlying_layer(const ScanResult& r) {
    int best = 0;
    double ratio = -1;
    for (const auto& l : r.layers)
        if (l.ratio() > ratio) ratio = l.ratio(), best = l.layer;
    return best;
}

}  // namespace massact::analysis

// massact/analysis/scan.hpp - one pass over any number of sequences: residual-stream statistics
// (analysis/residual_stats.hpp), attention-sink metrics (analysis/sink_metrics.hpp) and the
// massive-activation detector (analysis/detector.hpp), plus perplexity.
//
//   layers[l]: statistics of the output of block l (blocks.l.hook_resid_post, before the final norm),
//     each taken per sequence over all [T x d] values, then averaged over sequences.
//   attention_on_first_token_per_layer_head[l][h], Gu et al.'s alpha and sink rate: sink_metrics.hpp.
//   massive_activations: detector.hpp.
// Memory is O(layers x d) whatever the number of sequences; ScanAccumulator::merge combines two
// partial scans into the result of one pass over both (definitions: docs/formats.md, tests/data/README.md).
#pragma once

#include "massact/analysis/detector.hpp"
#include "massact/analysis/perplexity.hpp"
#include "massact/analysis/residual_stats.hpp"
#include "massact/analysis/sink_metrics.hpp"
#include "massact/model/transformer.hpp"
#include "massact/stats/quantile.hpp"
#include "massact/text/tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace massact::analysis {

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

namespace detail {

/// First delimiter position of each sequence of `ids` (-1: none).
inline std::vector<Index> first_delimiters(const TokenBatch& ids, const std::set<text::TokenId>& delimiters) {
    std::vector<Index> out(static_cast<std::size_t>(ids.rows()), -1);
    for (Index b = 0; b < ids.rows(); ++b)
        for (Index t = 1; t < ids.cols() && !delimiters.empty(); ++t)
            if (delimiters.count(ids(b, t))) {
                out[static_cast<std::size_t>(b)] = t;
                break;
            }
    return out;
}

}  // namespace detail

namespace detail {

/// The scan's hooks for one forward of the sequences `chunk` (token ids, or a vision model's token kinds;
/// registers >= 0 for vision) whose first has global index row0, after opt.hooks.
inline Hooks scan_hooks(ScanAccumulator& acc, const TokenBatch& chunk, const std::vector<Index>& delim, Index registers, Index row0,
                        const ScanOptions& opt, Index heads, std::vector<float>& scratch) {
    const Index nb = chunk.rows(), T = chunk.cols(), H = heads;
    Hooks hooks;
    hooks.extend(opt.hooks);
    hooks.add("*hook_resid_post", [&acc, &chunk, &delim, &opt, &scratch, nb, T, registers, row0](Activation& a) {
        const auto l = static_cast<std::size_t>(a.layer);
        for (Index b = 0; b < nb; ++b) {
            const auto x = a.sequence(b);  // [T, d]
            const double med = stats::abs_median(x, scratch);
            acc.resid[l].add(x, med, (row0 + b) * T);
            acc.hits[l].add(x, med, chunk.row(b).data(), delim[static_cast<std::size_t>(b)], opt.criteria, registers);
        }
    });
    hooks.add("*attn.hook_pattern", [&acc, &delim, &opt, nb, T, H, registers](Activation& a) {  // [N, H, T, T]
        for (Index b = 0; b < nb; ++b) {
            auto& s = acc.sinks[static_cast<std::size_t>(a.layer)];
            s.add_pattern(a.data + b * H * T * T, H, T, delim[static_cast<std::size_t>(b)], opt.sink_T);
            if (registers > 0) s.add_registers(a.data + b * H * T * T, H, T, registers);
        }
    });
    hooks.add_if_present("*attn.hook_sink_pattern", [&acc, nb, T, H](Activation& a) {  // [N, H, T]
        for (Index b = 0; b < nb; ++b) acc.sinks[static_cast<std::size_t>(a.layer)].add_slot(a.data + b * H * T, H, T);
    });
    return hooks;
}

inline void start(ScanAccumulator& acc, const ModelConfig& c, Index T, const ScanOptions& opt) {
    if (T < 2) throw Error("scan: sequences need at least 2 tokens, got " + std::to_string(T));
    if (opt.batch < 1) throw Error("scan: batch must be at least 1, got " + std::to_string(opt.batch));
    if (acc.empty())
        acc.reset(c.num_layers, c.num_heads, c.hidden_size, T);
    else if (acc.seq_len != T)
        throw Error("scan: sequence length " + std::to_string(T) + " differs from the accumulated " + std::to_string(acc.seq_len));
}

}  // namespace detail

/// Accumulate a scan of `ids` (rows = sequences) into `acc`. Sequence indices in `acc` continue
/// from acc.row_offset + first_row (so that partial scans of disjoint row ranges merge cleanly).
inline void scan_into(ScanAccumulator& acc, const Transformer& model, const TokenBatch& ids, const ScanOptions& opt,
                      Index first_row = 0) {
    const Index T = ids.cols();
    detail::start(acc, model.config(), T, opt);
    std::vector<float> scratch;
    Workspace ws;
    for (Index b0 = 0; b0 < ids.rows(); b0 += opt.batch) {
        const Index nb = std::min(opt.batch, ids.rows() - b0);
        const TokenBatch chunk = ids.middleRows(b0, nb);
        const std::vector<Index> delim = detail::first_delimiters(chunk, opt.delimiters);
        const Hooks hooks = detail::scan_hooks(acc, chunk, delim, -1, acc.row_offset + first_row + b0, opt, model.config().num_heads, scratch);
        RunOptions run = opt.run;
        run.logits = true;
        const RowMatrixF& logits = model.run(chunk, ws, hooks, run);
        acc.nll_sum -= token_logprobs(logits, chunk).sum();
        acc.targets += double(nb * (T - 1));
        acc.sequences += double(nb);
        if (opt.progress) opt.progress(b0 + nb, ids.rows());
    }
    acc.row_offset += ids.rows();
}

/// The same over images for a vision model: each image is a sequence [CLS, registers, patches]; carriers
/// are cls, register:k and patch; attention on the first token is attention on CLS; no perplexity.
inline void scan_pixels_into(ScanAccumulator& acc, const Transformer& model, const PixelBatch& px, const ScanOptions& opt,
                             Index first_row = 0) {
    const ModelConfig& c = model.config();
    model.validate(px);
    const Index T = c.vision.tokens(px.height, px.width), per = px.channels * px.height * px.width;
    detail::start(acc, c, T, opt);
    acc.registers = c.vision.registers;
    std::vector<float> scratch;
    Workspace ws;
    for (Index b0 = 0; b0 < px.n; b0 += opt.batch) {
        const Index nb = std::min(opt.batch, px.n - b0);
        PixelBatch chunk = px;
        chunk.n = nb;
        chunk.data.assign(px.data.begin() + b0 * per, px.data.begin() + (b0 + nb) * per);
        const TokenBatch kinds = model.vision_tokens(nb, px.height, px.width);
        const std::vector<Index> delim(static_cast<std::size_t>(nb), -1);
        const Hooks hooks = detail::scan_hooks(acc, kinds, delim, c.vision.registers, acc.row_offset + first_row + b0, opt, c.num_heads, scratch);
        model.run_pixels(chunk, ws, hooks, opt.run);
        acc.sequences += double(nb);
        if (opt.progress) opt.progress(b0 + nb, px.n);
    }
    acc.row_offset += px.n;
}

// ---- results --------------------------------------------------------------------------

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
    std::vector<std::vector<double>> attention_on_registers;        // [L][H] (vision models with registers)
    bool vision = false;                                             // images: no perplexity; first token = CLS
    std::vector<std::vector<double>> gu_alpha;                      // [L][H]
    std::vector<SinkHead> sink_heads;
    double sink_rate = 0;
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
        if (!vision) {
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
        j["attention_on_first_token_per_layer_head"] = attention_on_first_token;
        j["attention_on_first_delimiter_per_layer_head"] = attention_on_first_delimiter;
        if (!attention_on_bias_slot.empty()) j["attention_on_bias_slot_per_layer_head"] = attention_on_bias_slot;
        if (!attention_on_registers.empty()) j["attention_on_registers_per_layer_head"] = attention_on_registers;
        if (vision) j["first_token"] = "cls";
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

inline ScanResult finalize(const ScanAccumulator& acc, const ModelConfig& c, const ScanOptions& opt) {
    ScanResult r;
    r.model_type = c.model_type;
    r.vision = c.is_vision();
    r.sequences = static_cast<Index>(acc.sequences);
    r.seq_len = acc.seq_len;
    r.val_nll = acc.targets > 0 ? acc.nll_sum / acc.targets : 0.0;
    r.val_ppl = std::exp(r.val_nll);
    r.criteria = opt.criteria;
    r.sink_T = std::min(opt.sink_T, acc.seq_len);
    r.sink_epsilon = opt.sink_epsilon;
    const bool slot = has_sink_slot(c, opt.run.attention);
    int pairs = 0;
    for (std::size_t l = 0; l < acc.resid.size(); ++l) {
        const int layer = static_cast<int>(l);
        r.layers.push_back(acc.resid[l].stats(layer));
        const auto dims = acc.resid[l].top_dims(layer);
        r.top_dims.insert(r.top_dims.end(), dims.begin(), dims.end());
        const SinkAccumulator& s = acc.sinks[l];
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

/// Scan images in one call (vision models).
inline ScanResult scan_pixels(const Transformer& model, const PixelBatch& px, const ScanOptions& opt = {}) {
    ScanAccumulator acc;
    scan_pixels_into(acc, model, px, opt);
    return finalize(acc, model.config(), opt);
}

/// Scan `ids` in one call.
inline ScanResult scan(const Transformer& model, const TokenBatch& ids, const ScanOptions& opt = {}) {
    ScanAccumulator acc;
    scan_into(acc, model, ids, opt);
    return finalize(acc, model.config(), opt);
}

}  // namespace massact::analysis

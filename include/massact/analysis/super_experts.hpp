// massact/analysis/super_experts.hpp - super experts (Su et al. 2025): the few experts of a mixture-of-experts model
// whose down_proj writes the massive activations, and what routing around them does.
//
//   1. a scan finds the massive activations (dims, carriers: the first token, the first delimiter, a token id);
//   2. at every MoE layer l, for the carrier tokens of each massive dim D, every routed expert's contribution to the
//      residual stream at D is its routing weight times its output (mlp.hook_expert_weights, mlp.hook_expert_out):
//      mean over the carrier tokens of |w_e out_e[D]|, against the massive value |x[D]| after that layer;
//   3. an expert that writes at least `min_share` of that value is a candidate; it is a super expert when routing around
//      it (its router logit set to -inf in layer l, so the token's top-k come from the others, renormalised) leaves at
//      most `destroyed` of the massive value at the last layer the activation lives in;
//   4. all super experts routed around together: perplexity and the attention on the first token, before and after.
// Every expert's largest |output| at the carrier tokens (over all dims, where routed) is reported too.
#pragma once

#include "massact/analysis/intervention.hpp"
#include "massact/analysis/scan.hpp"
#include "massact/core/error.hpp"
#include "massact/model/transformer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace massact::analysis {

struct SuperExpertOptions {
    ScanOptions scan;           // finds the massive activations (its criteria, delimiters, batch)
    double min_share = 0.5;     // a candidate writes at least this share of the massive value at its layer's output
    double destroyed = 0.5;     // a super expert: routing around it leaves at most this share of the massive value
};

/// One expert of one layer at the carrier tokens of the massive activations.
struct ExpertAtCarriers {
    int layer = 0;
    Index expert = 0;
    Index routed = 0;        // carrier tokens (over sequences and massive dims) routed to it
    double max_output = 0;   // largest |out_e| over every dim at those tokens (before the routing weight)
    double contribution = 0; // largest over massive dims D of the mean |w_e out_e[D]| at the carriers of D
    Index dim = -1;          // that D
    double massive = 0;      // mean |x[D]| after the layer at the same tokens
};

struct SuperExpert {
    int layer = 0;
    Index expert = 0, dim = 0;
    double contribution = 0, massive = 0;     // as above
    int check_layer = 0;                      // the last layer the massive activation lives in
    double before = 0, after = 0;             // mean |x[D]| at the carriers after check_layer, as is and routed around
};

struct SuperExpertResult {
    std::vector<MassiveActivation> massive;
    std::vector<ExpertAtCarriers> experts;  // every (layer, expert) routed at a carrier, by contribution
    std::vector<SuperExpert> found;
    double ppl_original = 0, ppl_pruned = 0;
    double attention_first_original = 0, attention_first_pruned = 0;  // mean over layers and heads
    std::string note;
};

namespace detail {

/// Positions of sequence b that carry massive activation m (its carrier names: first_token, first_delimiter, token:<id>).
inline std::vector<Index> carrier_positions(const MassiveActivation& m, const TokenBatch& ids, Index b, const std::set<std::int64_t>& delims) {
    const Index T = ids.cols();
    std::vector<std::int64_t> row(static_cast<std::size_t>(T));
    for (Index t = 0; t < T; ++t) row[static_cast<std::size_t>(t)] = ids(b, t);
    const Index delim = first_delimiter(row.data(), T, delims);
    std::vector<Index> out;
    for (Index t = 0; t < T; ++t) {
        const auto [kind, token] = carrier_of(t, row.data(), delim, -1);
        if (std::find(m.positions.begin(), m.positions.end(), carrier_name(kind, token)) != m.positions.end()) out.push_back(t);
    }
    return out;
}

/// Hooks that route every token around the given experts of layer l (router logit -inf: top-k from the others).
inline Hooks route_around(const std::map<int, std::vector<Index>>& pruned) {
    Hooks h;
    for (const auto& [layer, experts] : pruned) {
        const auto list = experts;
        h.add(block_site_name(layer, BlockSite::MlpRouter), [list](Activation& a) {
            const Index E = a.shape.back(), rows = a.numel() / E;
            for (Index r = 0; r < rows; ++r)
                for (Index e : list) a.data[r * E + e] = -std::numeric_limits<float>::infinity();
        });
    }
    return h;
}

}  // namespace detail

/// positions[b]: the carrier tokens of sequence b (detail::carrier_positions), for every sequence of `ids`.
using CarrierPositions = std::vector<std::vector<Index>>;

/// Mean |x[D]| at the carrier tokens of massive dim `dim` (positions) after block `layer`, with `extra` hooks.
inline double massive_value(const Transformer& model, const TokenBatch& ids, Index dim, const CarrierPositions& positions, int layer,
                            const Hooks& extra, Index batch) {
    double sum = 0, n = 0;
    Hooks h = extra;
    Index b0 = 0;
    h.add(block_site_name(layer, BlockSite::ResidPost), [&](Activation& a) {
        const Index T = a.shape[1], d = a.shape[2];
        for (Index b = 0; b < a.shape[0]; ++b)
            for (Index t : positions[static_cast<std::size_t>(b0 + b)]) {
                sum += std::abs(double(a.data[(b * T + t) * d + dim]));
                n += 1;
            }
    });
    RunOptions o;
    o.logits = false;
    o.last_layer = layer;
    run_batches(model, ids, batch, h, o, &b0);
    return n > 0 ? sum / n : 0.0;
}

namespace detail {

/// Every (layer, expert) routed at a carrier token of a massive activation: its routed count, its largest output and
/// its largest mean contribution |w_e out_e[D]| to a massive dim D (step 2), by contribution.
inline std::vector<ExpertAtCarriers> experts_at_carriers(const Transformer& model, const TokenBatch& ids,
                                                         const std::vector<MassiveActivation>& massive,
                                                         const std::vector<CarrierPositions>& carriers, Index batch) {
    const ModelConfig& c = model.config();
    struct Acc {
        std::map<Index, double> contrib, massive, count;  // by dim
        double max_output = 0;
        Index routed = 0;
    };
    std::map<std::pair<int, Index>, Acc> acc;
    Hooks h;
    Index b0 = 0;
    std::vector<std::vector<float>> weights(static_cast<std::size_t>(c.num_layers)), outputs(weights.size());
    // At the carriers of massive activation i in the batch's rows, every routed expert's share of layer l's output.
    auto add = [&](int l, const Activation& a, std::size_t i) {
        const Index N = a.shape[0], T = a.shape[1], d = a.shape[2], E = c.num_experts, k = c.experts_per_token;
        const auto& W = weights[static_cast<std::size_t>(l)];
        const auto& O = outputs[static_cast<std::size_t>(l)];
        const Index dim = massive[i].dim;
        for (Index b = 0; b < N; ++b)
            for (Index t : carriers[i][static_cast<std::size_t>(b0 + b)]) {
                const Index row = b * T + t;
                Index slot = 0;
                for (Index e = 0; e < E; ++e) {
                    const float w = W[static_cast<std::size_t>(row * E + e)];
                    if (w == 0.0f) continue;
                    const float* out = O.data() + (row * k + slot++) * d;
                    Acc& x = acc[{l, e}];
                    x.routed += 1;
                    for (Index j = 0; j < d; ++j) x.max_output = std::max(x.max_output, std::abs(double(out[j])));
                    x.contrib[dim] += std::abs(double(w) * out[dim]);
                    x.massive[dim] += std::abs(double(a.data[row * d + dim]));
                    x.count[dim] += 1;
                }
            }
    };
    for (int l = 0; l < c.num_layers; ++l) {
        if (!c.layer_moe(l)) continue;  // (a dense layer of an MoE model: DeepSeek's first_k_dense_replace)
        const auto L = static_cast<std::size_t>(l);
        h.add(block_site_name(l, BlockSite::MlpExpertWeights), [&, L](Activation& a) { weights[L].assign(a.data, a.data + a.numel()); });
        h.add(block_site_name(l, BlockSite::MlpExpertOut), [&, L](Activation& a) { outputs[L].assign(a.data, a.data + a.numel()); });
        h.add(block_site_name(l, BlockSite::ResidPost), [&, l](Activation& a) {
            for (std::size_t i = 0; i < massive.size(); ++i) add(l, a, i);
        });
    }
    RunOptions o;
    o.logits = false;
    run_batches(model, ids, batch, h, o, &b0);
    std::vector<ExpertAtCarriers> out;
    for (const auto& [key, x] : acc) {
        ExpertAtCarriers e;
        e.layer = key.first;
        e.expert = key.second;
        e.routed = x.routed;
        e.max_output = x.max_output;
        for (const auto& [dim, sum] : x.contrib) {
            const double n = x.count.at(dim), mean = sum / n;
            if (mean > e.contribution) {
                e.contribution = mean;
                e.dim = dim;
                e.massive = x.massive.at(dim) / n;
            }
        }
        out.push_back(e);
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.contribution > b.contribution; });
    return out;
}

/// Mean over layers and heads of the attention on token 0 (a Comparison's attn_original / attn_intervened).
inline double mean_first_token_attention(const std::vector<std::vector<std::vector<double>>>& a) {
    double s = 0, n = 0;
    for (const auto& layer : a.at(0))
        for (double v : layer) {
            s += v;
            n += 1;
        }
    return n > 0 ? s / n : 0.0;
}

}  // namespace detail

inline SuperExpertResult find_super_experts(const Transformer& model, const TokenBatch& ids, const SuperExpertOptions& opt = {}) {
    const ModelConfig& c = model.config();
    if (!c.moe()) throw Error("super experts: " + c.model_type + " has no mixture-of-experts layers");
    const Index batch = std::max<Index>(1, opt.scan.batch);
    SuperExpertResult r;
    const ScanResult s = scan(model, ids, opt.scan);
    r.massive = s.massive;
    if (r.massive.empty()) {
        r.note = "no massive activation to trace: " + s.detector_note;
        return r;
    }
    // The carrier tokens of every massive activation in every sequence, found once.
    std::vector<CarrierPositions> carriers;
    for (const auto& m : r.massive) {
        carriers.emplace_back();
        for (Index b = 0; b < ids.rows(); ++b) carriers.back().push_back(detail::carrier_positions(m, ids, b, opt.scan.delimiters));
    }
    r.experts = detail::experts_at_carriers(model, ids, r.massive, carriers, batch);
    // Candidates, each verified by routing around it.
    std::map<int, std::vector<Index>> pruned;
    std::map<std::pair<std::size_t, int>, double> unchanged;
    for (const auto& e : r.experts) {
        if (e.dim < 0 || e.contribution < opt.min_share * e.massive) continue;
        const auto i = static_cast<std::size_t>(
            std::find_if(r.massive.begin(), r.massive.end(), [&](const MassiveActivation& x) { return x.dim == e.dim; }) - r.massive.begin());
        const MassiveActivation& m = r.massive[i];
        const int check = m.layers.empty() ? e.layer : std::max(e.layer, m.layers.back());
        SuperExpert se{e.layer, e.expert, e.dim, e.contribution, e.massive, check, 0, 0};
        const auto key = std::make_pair(i, check);  // (the unchanged value, once per massive dim and layer)
        if (!unchanged.count(key)) unchanged[key] = massive_value(model, ids, m.dim, carriers[i], check, {}, batch);
        se.before = unchanged[key];
        se.after = massive_value(model, ids, m.dim, carriers[i], check, detail::route_around({{e.layer, {e.expert}}}), batch);
        if (se.before > 0 && se.after <= opt.destroyed * se.before) {
            r.found.push_back(se);
            pruned[e.layer].push_back(e.expert);
        }
    }
    if (r.found.empty()) {
        r.note = "no expert writes the massive activation alone (none passes both the share and the removal test)";
        return r;
    }
    CompareOptions co;
    co.batch = batch;
    co.decomposition = false;
    co.tokens = {0};
    co.run = opt.scan.run;
    const Comparison cmp = compare(model, ids, detail::route_around(pruned), co);
    r.ppl_original = cmp.ppl_original;
    r.ppl_pruned = cmp.ppl_intervened;
    r.attention_first_original = detail::mean_first_token_attention(cmp.attn_original);
    r.attention_first_pruned = detail::mean_first_token_attention(cmp.attn_intervened);
    r.note = std::to_string(r.found.size()) + " super expert(s)";
    return r;
}

}  // namespace massact::analysis

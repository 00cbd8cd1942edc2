// massact/analysis/compare_models.hpp - models side by side on the same data: two (Sun et al. Sec. 6: with an
// explicit attention bias, the model no longer needs a massive activation for its sink) or more (the sink-free
// comparison: softmax, softpick, sigmoid and gated attention trained alike).
#pragma once

#include "massact/analysis/scan.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace massact::analysis {

struct ModelPair {
    std::string name_a, name_b;
    ScanResult a, b;

    static double head_mean(const std::vector<double>& v) {
        double s = 0;
        for (double x : v) s += x;
        return v.empty() ? 0.0 : s / double(v.size());
    }
    /// The mean over heads, null for a layer without attention.
    static nlohmann::json mean_or_null(const std::vector<double>& v) { return v.empty() ? nlohmann::json(nullptr) : nlohmann::json(head_mean(v)); }
    /// Per layer: top-1 |x| of both, their ratio, attention on the first token and on the bias slot (mean over heads).
    nlohmann::json to_json() const {
        nlohmann::json layers = nlohmann::json::array();
        for (std::size_t l = 0; l < a.layers.size() && l < b.layers.size(); ++l) {
            auto slot = [&](const ScanResult& r) { return l < r.attention_on_bias_slot.size() ? head_mean(r.attention_on_bias_slot[l]) : 0.0; };
            layers.push_back({{"layer", l},
                              {"top1_a", a.layers[l].top1_mean},
                              {"top1_b", b.layers[l].top1_mean},
                              // null when B's top-1 is 0 (a ratio JSON cannot hold)
                              {"top1_ratio_a_over_b", b.layers[l].top1_mean > 0 ? nlohmann::json(a.layers[l].top1_mean / b.layers[l].top1_mean)
                                                                                : nlohmann::json(nullptr)},
                              {"top1_pos0_fraction_a", a.layers[l].top1_pos0_fraction},
                              {"top1_pos0_fraction_b", b.layers[l].top1_pos0_fraction},
                              {"median_a", a.layers[l].median_mean},
                              {"median_b", b.layers[l].median_mean},
                              {"attention_on_first_token_a", mean_or_null(a.attention_on_first_token[l])},
                              {"attention_on_first_token_b", mean_or_null(b.attention_on_first_token[l])},
                              {"attention_on_bias_slot_a", slot(a)},
                              {"attention_on_bias_slot_b", slot(b)}});
        }
        return {{"model_a", name_a}, {"model_b", name_b}, {"val_ppl_a", a.val_ppl}, {"val_ppl_b", b.val_ppl},
                {"layers", layers}, {"scan_a", a.to_json()}, {"scan_b", b.to_json()}};
    }
};

/// Scan both models, each on its own token ids of the same data and with its own options (the
/// delimiter tokens are each model's own).
inline ModelPair compare_models(const Transformer& a, const TokenBatch& ids_a, const Transformer& b, const TokenBatch& ids_b,
                                const ScanOptions& opt_a, const ScanOptions& opt_b) {
    ModelPair p;
    p.name_a = a.dir();
    p.name_b = b.dir();
    p.a = scan(a, ids_a, opt_a);
    p.b = scan(b, ids_b, opt_b);
    return p;
}

/// The same with one set of options for both (models that share a tokenizer).
inline ModelPair compare_models(const Transformer& a, const TokenBatch& ids_a, const Transformer& b, const TokenBatch& ids_b,
                                const ScanOptions& opt = {}) {
    return compare_models(a, ids_a, b, ids_b, opt, opt);
}

/// Several models on the same data. Per model: perplexity, the massive activations (dims, carriers), Gu et al.'s
/// sink rate over the data and, where scanned, over random tokens; per model and layer: the largest |x|, its ratio to
/// the median, where it sits, attention on the first token (mean over heads) and the share of heads that are sinks.
struct ModelSet {
    std::vector<std::string> names;
    std::vector<ScanResult> scans;         // on the data
    std::vector<ScanResult> random_scans;  // on random tokens (Gu et al.'s protocol); empty when not run

    /// Layer l's share of heads whose alpha passes the scan's epsilon.
    static double layer_sink_rate(const ScanResult& r, std::size_t l) {
        if (l >= r.gu_alpha.size() || r.gu_alpha[l].empty()) return 0.0;
        double n = 0;
        for (double a : r.gu_alpha[l]) n += a > r.sink_epsilon;
        return n / double(r.gu_alpha[l].size());
    }

    nlohmann::json model_json(std::size_t i) const {
        const ScanResult& r = scans[i];
        nlohmann::json layers = nlohmann::json::array();
        for (std::size_t l = 0; l < r.layers.size(); ++l) {
            const auto& s = r.layers[l];
            nlohmann::json row = {{"layer", l}, {"top1", s.top1_mean}, {"median", s.median_mean}, {"ratio", s.ratio()},
                                  {"top1_dim", s.dominant_dim()}, {"top1_pos0_fraction", s.top1_pos0_fraction}};
            if (r.attention && !r.gu_alpha[l].empty()) {  // (none for a layer without attention)
                row["attention_on_first_token"] = ModelPair::head_mean(r.attention_on_first_token[l]);
                row["sink_rate"] = layer_sink_rate(r, l);
                if (l < r.attention_on_bias_slot.size()) row["attention_on_bias_slot"] = ModelPair::head_mean(r.attention_on_bias_slot[l]);
            }
            if (!random_scans.empty() && !random_scans[i].gu_alpha[l].empty())
                row["sink_rate_random_tokens"] = layer_sink_rate(random_scans[i], l);
            layers.push_back(row);
        }
        std::set<Index> dims;
        std::set<std::string> carriers;
        for (const auto& m : r.massive) {
            dims.insert(m.dim);
            carriers.insert(m.positions.begin(), m.positions.end());
        }
        double top = 0, ratio = 0;
        for (const auto& s : r.layers) {
            top = std::max(top, s.top1_mean);
            ratio = std::max(ratio, s.ratio());
        }
        nlohmann::json j = {{"name", names[i]}, {"model_type", r.model_type}, {"max_top1", top}, {"max_ratio", ratio},
                            {"massive_dims", dims}, {"carriers", carriers}, {"layers", layers}};
        if (r.perplexity) j["val_ppl"] = r.val_ppl;
        if (r.attention) {
            j["sink_rate"] = r.sink_rate;
            j["sink_epsilon"] = r.sink_epsilon;
            j["sink_T"] = r.sink_T;
        }
        if (!random_scans.empty()) j["sink_rate_random_tokens"] = random_scans[i].sink_rate;
        return j;
    }

    nlohmann::json to_json() const {
        nlohmann::json models = nlohmann::json::array();
        for (std::size_t i = 0; i < scans.size(); ++i) models.push_back(model_json(i));
        nlohmann::json j = {{"models", models}};
        if (scans.size() == 2) {  // the two-model keys (model_a, layers with _a / _b) as before
            j.update(ModelPair{names[0], names[1], scans[0], scans[1]}.to_json());
        }
        return j;
    }
};

/// Scan every model, each on its own token ids and with its own options; random (optional, one batch per model) adds
/// the same scan on random tokens. progress (optional) sees the sequences done of all the scans together.
inline ModelSet compare_many(const std::vector<const Transformer*>& models, const std::vector<TokenBatch>& ids,
                             const std::vector<ScanOptions>& opts, const std::vector<TokenBatch>& random = {},
                             const std::function<void(Index, Index)>& progress = {}) {
    if (models.size() < 2) throw Error("compare: " + std::to_string(models.size()) + " model given (expected at least 2)");
    if (ids.size() != models.size() || opts.size() != models.size() || (!random.empty() && random.size() != models.size()))
        throw Error("compare: one token batch and one set of options per model");
    Index done = 0, total = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) total += ids[i].rows() + (random.empty() ? 0 : random[i].rows());
    ModelSet set;
    auto run = [&](std::size_t i, const TokenBatch& b) {
        ScanOptions o = opts[i];
        if (progress) o.progress = [&](Index d, Index) { progress(done + d, total); };
        ScanResult r = scan(*models[i], b, o);
        done += b.rows();
        return r;
    };
    for (std::size_t i = 0; i < models.size(); ++i) {
        set.names.push_back(models[i]->dir());
        set.scans.push_back(run(i, ids[i]));
        if (!random.empty()) set.random_scans.push_back(run(i, random[i]));
    }
    return set;
}

}  // namespace massact::analysis

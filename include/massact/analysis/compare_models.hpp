// massact/analysis/compare_models.hpp - two models side by side on the same data (Sun et al. Sec. 6:
// with an explicit attention bias, the model no longer needs a massive activation for its sink).
#pragma once

#include "massact/analysis/scan.hpp"

#include <nlohmann/json.hpp>

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
                              {"attention_on_first_token_a", head_mean(a.attention_on_first_token[l])},
                              {"attention_on_first_token_b", head_mean(b.attention_on_first_token[l])},
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

}  // namespace massact::analysis

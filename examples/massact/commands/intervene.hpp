// massact ablate / inject / superweight - the causal experiments of Sun et al. (2024) and Yu et al. (2024).
//
//   massact ablate MODEL --layer L --dims D1,D2 --tokens first|delimiter|all|above=X|I,J --mode zero|mean|value=X|scale=S|add=X
//   massact inject MODEL --layer L --from 0 --to 30 [--dims D1,D2|all]
//   massact superweight MODEL [--threshold 50]
// all with the data flags of scan (--data, --ids-file, --prompt, ...), a table, and --json.
#pragma once

#include "common.hpp"

#include "../ablation_spec.hpp"
#include "../input.hpp"
#include "../progress.hpp"
#include "scan.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>

namespace massact_tool {

inline nlohmann::json comparison_json(const massact::analysis::Comparison& c) {
    using massact::analysis::Comparison;
    auto means = [](const std::vector<std::vector<std::vector<double>>>& a) {  // [token][layer], null: no attention
        nlohmann::json out = nlohmann::json::array();
        const auto m = Comparison::head_mean(a);
        for (std::size_t t = 0; t < a.size(); ++t) {
            nlohmann::json row = nlohmann::json::array();
            for (std::size_t l = 0; l < a[t].size(); ++l) row.push_back(a[t][l].empty() ? nlohmann::json(nullptr) : nlohmann::json(m[t][l]));
            out.push_back(row);
        }
        return out;
    };
    nlohmann::json j = {{"ppl_original", c.ppl_original}, {"ppl_intervened", c.ppl_intervened}, {"kl_mean", c.kl_mean},
                        {"kl_per_position", c.kl_per_position}, {"tokens", c.tokens},
                        {"attention_on_tokens_original", means(c.attn_original)},
                        {"attention_on_tokens_intervened", means(c.attn_intervened)},
                        {"attention_on_tokens_original_per_head", c.attn_original},
                        {"attention_on_tokens_intervened_per_head", c.attn_intervened}};
    auto dec = [](const std::vector<massact::analysis::DecompositionStats>& d) {
        nlohmann::json a = nlohmann::json::array();
        for (std::size_t l = 0; l < d.size(); ++l)
            a.push_back({{"layer", l}, {"sink_norm", d[l].sink_norm}, {"rest_norm", d[l].rest_norm}, {"sink_constancy", d[l].sink_constancy}});
        return a;
    };
    j["decomposition_original"] = dec(c.decomp_original);
    j["decomposition_intervened"] = dec(c.decomp_intervened);
    return j;
}

inline void print_comparison(const massact::analysis::Comparison& c) {
    using massact::analysis::Comparison;
    std::printf("perplexity  original %.4f  intervened %.4f  (x%.3f)\n", c.ppl_original, c.ppl_intervened,
                c.ppl_intervened / c.ppl_original);
    std::printf("next-token KL(original || intervened), mean over positions: %.5f nats\n\n", c.kl_mean);
    const auto o = Comparison::head_mean(c.attn_original), n = Comparison::head_mean(c.attn_intervened);
    std::printf("layer");
    for (Index t : c.tokens) std::printf("   attn on %-4ld before -> after", static_cast<long>(t));
    if (!c.decomp_original.empty()) std::printf("   |sink part|  |rest|  constancy (before -> after)");
    std::printf("\n");
    for (std::size_t l = 0; l < (o.empty() ? 0 : o[0].size()); ++l) {
        std::printf("%5zu", l);
        for (std::size_t t = 0; t < o.size(); ++t)
            if (c.attn_original[t][l].empty()) std::printf("   %22s    %s", "-", "-");  // (no attention in this layer)
            else std::printf("   %22.3f -> %.3f", o[t][l], n[t][l]);
        if (!c.decomp_original.empty() && c.attn_original[0][l].empty())
            std::printf("   -");
        else if (!c.decomp_original.empty())
            std::printf("   %.3f -> %.3f  %.3f -> %.3f  %.2f -> %.2f", c.decomp_original[l].sink_norm, c.decomp_intervened[l].sink_norm,
                        c.decomp_original[l].rest_norm, c.decomp_intervened[l].rest_norm, c.decomp_original[l].sink_constancy,
                        c.decomp_intervened[l].sink_constancy);
        std::printf("\n");
    }
}

/// A vision model: zero / mean on CLS or register tokens (every layer unless --layer), measured on the
/// pooled and CLS features (analysis/vision.hpp).
inline int run_ablate_pixels(AblateArgs& a, const massact::Transformer& m) {
    const massact::PixelBatch px = load_pixels_input(a.pixels, a.model, m);
    m.validate(px);
    const auto& c = m.config();
    massact::analysis::VisionAblation va;
    const std::string which = a.tokens == "first" ? (c.vision.registers > 0 ? "registers" : c.vision.cls ? "cls" : "patches") : a.tokens;
    va.tokens = massact::analysis::vision_token_positions(c, which, c.vision.tokens(px.height, px.width));
    if (!a.dims.empty() && a.dims != "all") va.dims = check_dims(a.dims, c.hidden_size, false);
    if (a.layer >= 0) va.layers = {check_layer(a.layer, m)};
    const std::vector<std::string> modes = a.mode == "zero" ? std::vector<std::string>{"zero", "mean"} : split_commas(a.mode);
    const auto rows = massact::analysis::vision_ablation(m, px, va, modes);
    std::printf("%ld images; %s, dims %s, %s: set to zero and to their mean over the images\n\n", static_cast<long>(px.n),
                which.c_str(), a.dims.empty() ? "all" : a.dims.c_str(), a.layer >= 0 ? ("layer " + std::to_string(a.layer)).c_str() : "every layer");
    std::printf("%-6s %14s %14s %14s %12s %12s\n", "mode", "pooled cos", "pooled |.|", "worst cos", "CLS cos", "CLS |.|");
    nlohmann::json j = {{"images", px.n}, {"tokens", which}, {"positions", va.tokens}, {"layer", a.layer}, {"rows", nlohmann::json::array()}};
    for (const auto& r : rows) {
        std::printf("%-6s %14.6f %14.4f %14.6f %12.6f %12.4f\n", r.mode.c_str(), r.pooled_cosine, r.pooled_norm_ratio, r.pooled_cosine_min,
                    r.cls_cosine, r.cls_norm_ratio);
        j["rows"].push_back({{"mode", r.mode}, {"pooled_cosine", r.pooled_cosine}, {"pooled_norm_ratio", r.pooled_norm_ratio},
                             {"pooled_cosine_min", r.pooled_cosine_min}, {"cls_cosine", r.cls_cosine}, {"cls_norm_ratio", r.cls_norm_ratio}});
    }
    if (!a.json.empty()) massact::io::write_text_file_atomic(a.json, j.dump(1) + "\n");
    return 0;
}

inline int run_ablate(AblateArgs& a) {
    const massact::Transformer m(a.model);
    if (m.config().is_vision() || a.pixels.given()) return run_ablate_pixels(a, m);
    if (a.layer < 0 || a.dims.empty()) throw Error("ablate: --layer and --dims are required for a language model");
    const TokenBatch ids = load_data(a.data, a.model);
    m.validate(ids);
    const Intervention iv = build_ablation(a, m, ids);
    massact::analysis::CompareOptions opt;
    opt.tokens = {0};
    if (iv.tokens.kind == TokenSelection::Kind::Indices)
        for (Index t : iv.tokens.indices)
            if (t != 0 && t + 1 < ids.cols()) opt.tokens.push_back(t);
    opt.batch = a.batch;
    opt.decomposition = !a.no_decomposition;
    Progress bar("ablate");
    opt.progress = [&](Index d, Index t) { bar(d, t); };
    const auto c = massact::analysis::compare(m, ids, massact::analysis::make_hooks({iv}), opt);
    bar.done();
    std::printf("%s, %s, dims %s: %s\n", iv.site.c_str(), iv.tokens.describe().c_str(), a.dims.c_str(), a.mode.c_str());
    if (iv.mode == Intervention::Mode::Mean) {
        std::printf("dataset means:");
        for (float v : iv.values) std::printf(" %.3f", v);
        std::printf("\n");
    }
    std::printf("%ld sequences x %ld tokens\n", static_cast<long>(ids.rows()), static_cast<long>(ids.cols()));
    print_comparison(c);
    if (!a.json.empty()) {
        nlohmann::json j = comparison_json(c);
        j["site"] = iv.site;
        j["layer"] = a.layer;
        j["dims"] = iv.dims;
        j["tokens_selected"] = iv.tokens.describe();
        j["mode"] = a.mode;
        if (!iv.values.empty()) j["mean_values"] = iv.values;
        j["sequences"] = ids.rows();
        j["seq_len"] = ids.cols();
        massact::io::write_text_file_atomic(a.json, j.dump(1) + "\n");
    }
    return 0;
}

struct InjectArgs {
    std::string model = default_model();
    DataInput data;
    int layer = -1;
    Index from = 0, to = -1;
    std::string dims = "all", json;
    Index batch = 8;
};

inline int run_inject(InjectArgs& a) {
    const massact::Transformer m(a.model);
    const TokenBatch ids = load_data(a.data, a.model);
    m.validate(ids);
    check_layer(a.layer, m);
    const auto dims = check_dims(a.dims, m.config().hidden_size, true);
    if (a.to < 0 || a.to + 1 >= ids.cols())
        throw Error("--to: position " + std::to_string(a.to) + " out of range [0, " + std::to_string(ids.cols() - 1) + ")");
    if (a.from < 0 || a.from >= ids.cols())
        throw Error("--from: position " + std::to_string(a.from) + " out of range [0, " + std::to_string(ids.cols()) + ")");
    const auto r = massact::analysis::inject(m, ids, a.layer, a.from, a.to, dims, a.batch);
    std::printf("copy position %ld's %s of block %d's output into position %ld (%ld sequences x %ld tokens)\n",
                static_cast<long>(a.from), dims.empty() ? "whole state" : ("dims " + a.dims).c_str(), a.layer,
                static_cast<long>(a.to), static_cast<long>(ids.rows()), static_cast<long>(ids.cols()));
    std::printf("layer   attention on %ld (mean over heads and later queries)   median factor over sequences\n", static_cast<long>(a.to));
    for (std::size_t l = 0; l < r.median_factor.size(); ++l)
        if (!r.attention[l]) std::printf("%5zu   - (no attention in this layer)\n", l);
        else std::printf("%5zu   %.4f -> %.4f %35.2f\n", l, r.mean_before[l], r.mean_after[l], r.median_factor[l]);
    if (!a.json.empty()) {
        auto per_layer = [&](const std::vector<double>& v) {  // null where the layer has no attention
            nlohmann::json out = nlohmann::json::array();
            for (std::size_t l = 0; l < v.size(); ++l) out.push_back(r.attention[l] ? nlohmann::json(v[l]) : nlohmann::json(nullptr));
            return out;
        };
        nlohmann::json j = {{"layer", a.layer}, {"from", a.from}, {"to", a.to}, {"dims", dims}, {"median_factor", per_layer(r.median_factor)},
                            {"attention_on_target_before", per_layer(r.mean_before)}, {"attention_on_target_after", per_layer(r.mean_after)},
                            {"per_sequence_before", r.before}, {"per_sequence_after", r.after}, {"sequences", ids.rows()},
                            {"seq_len", ids.cols()}};
        massact::io::write_text_file_atomic(a.json, j.dump(1) + "\n");
    }
    return 0;
}

struct SuperWeightArgs {
    std::string model = default_model();
    DataInput data;
    float threshold = 50.0f;
    std::string json;
    Index batch = 8;
};

inline int run_superweight(SuperWeightArgs& a) {
    const massact::Transformer m(a.model);
    const TokenBatch ids = load_data(a.data, a.model);
    m.validate(ids);
    const auto found = massact::analysis::find_super_weights(m, ids, a.threshold);
    nlohmann::json out = {{"threshold", a.threshold}, {"super_weights", nlohmann::json::array()}};
    if (found.empty())
        std::printf("no down_proj has both an input and an output spike above %.1f in the first sequence\n", a.threshold);
    const auto base = massact::analysis::perplexity(m, ids, {}, {}, a.batch);
    for (const auto& s : found) {
        const int last = m.config().num_layers - 1;
        auto value_at = [&](const massact::Hooks& extra) {  // dim `row` at the spike token, after s.layer and the last block
            float at_layer = 0, at_last = 0;
            massact::Hooks h;
            h.extend(extra);
            h.add(Intervention::resid_post(s.layer), [&](massact::Activation& act) { at_layer = act.sequence(0)(s.token, s.row); });
            h.add(Intervention::resid_post(last), [&](massact::Activation& act) { at_last = act.sequence(0)(s.token, s.row); });
            massact::RunOptions run;
            run.logits = false;
            m.forward(TokenBatch(ids.topRows(1)), h, run);
            return std::make_pair(at_layer, at_last);
        };
        const auto zero = massact::analysis::zero_weight_hooks(s);
        Intervention restore;
        restore.site = Intervention::resid_post(s.layer);
        restore.tokens = TokenSelection::at({s.token});
        restore.dims = {s.row};
        restore.mode = Intervention::Mode::Mean;
        restore.values = massact::analysis::dataset_mean(m, ids, restore, a.batch);
        massact::Hooks zero_restore = zero;
        zero_restore.extend(massact::analysis::make_hooks({restore}));
        const auto v0 = value_at({}), v1 = value_at(zero);
        const auto pz = massact::analysis::perplexity(m, ids, zero, {}, a.batch);
        const auto pr = massact::analysis::perplexity(m, ids, zero_restore, {}, a.batch);
        std::printf("super weight: layer %d mlp.down_proj[%ld, %ld] = %.4f\n", s.layer, static_cast<long>(s.row),
                    static_cast<long>(s.col), s.weight);
        std::printf("  position %ld: input channel %ld = %.2f, output dim %ld = %.2f, this weight contributes %.2f\n",
                    static_cast<long>(s.token), static_cast<long>(s.col), s.input, static_cast<long>(s.row), s.output, s.contribution);
        std::printf("  zeroing it: dim %ld at position %ld goes %.2f -> %.2f after layer %d, %.2f -> %.2f after layer %d\n",
                    static_cast<long>(s.row), static_cast<long>(s.token), v0.first, v1.first, s.layer, v0.second, v1.second, last);
        std::printf("  perplexity: original %.4f, weight zeroed %.4f, zeroed with the activation restored to its mean %.4f\n",
                    base.ppl, pz.ppl, pr.ppl);
        out["super_weights"].push_back({{"layer", s.layer}, {"row", s.row}, {"col", s.col}, {"token", s.token}, {"weight", s.weight},
                                        {"input", s.input}, {"output", s.output}, {"contribution", s.contribution},
                                        {"value_at_layer_original", v0.first}, {"value_at_layer_zeroed", v1.first},
                                        {"value_at_last_layer_original", v0.second}, {"value_at_last_layer_zeroed", v1.second},
                                        {"ppl_original", base.ppl}, {"ppl_zeroed", pz.ppl}, {"ppl_zeroed_restored", pr.ppl}});
    }
    if (!a.json.empty()) massact::io::write_text_file_atomic(a.json, out.dump(1) + "\n");
    return 0;
}

inline void add_intervention_commands(CLI::App& app, AblateArgs& ab, InjectArgs& in, SuperWeightArgs& sw,
                                      std::function<int()>& action) {
    auto* c = app.add_subcommand("ablate", "Zero, set to mean, scale or add activations; measure perplexity and attention shift");
    c->add_option("model", ab.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    add_data_options(c, ab.data);
    add_pixel_options(c, ab.pixels);
    c->add_option("--layer", ab.layer, "Block whose output (hook_resid_post) is edited (vision: default every block)");
    c->add_option("--dims", ab.dims, "Comma-separated hidden dims, or all (vision: default all)");
    c->add_option("--tokens", ab.tokens,
                  "first | delimiter | all | above=X | comma-separated positions; vision: cls | registers | register=K | patches")
        ->capture_default_str();
    c->add_option("--mode", ab.mode, "zero | mean | value=X | scale=S | add=X (vision: zero,mean by default)")->capture_default_str();
    c->add_option("--site", ab.site, "Another hook site shaped [N, T, ...] instead of blocks.L.hook_resid_post");
    c->add_option("--json", ab.json, "Write the measurements to this file");
    add_batch_option(c, ab.batch);
    c->add_flag("--no-decomposition", ab.no_decomposition, "Skip the attention-output decomposition (faster)");
    c->callback([&] { action = [&] { return run_ablate(ab); }; });

    auto* i = app.add_subcommand("inject", "Copy a token's massive activation into another token; measure attention it gains");
    i->add_option("model", in.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    add_data_options(i, in.data);
    i->add_option("--layer", in.layer, "Block whose output is edited")->required();
    i->add_option("--from", in.from, "Source position")->capture_default_str();
    i->add_option("--to", in.to, "Target position")->required();
    i->add_option("--dims", in.dims, "Comma-separated dims, or all (the whole state)")->capture_default_str();
    i->add_option("--json", in.json, "Write the measurements to this file");
    add_batch_option(i, in.batch);
    i->callback([&] { action = [&] { return run_inject(in); }; });

    auto* s = app.add_subcommand("superweight", "Find down_proj super weights (Yu et al. 2024) and the effect of zeroing them");
    s->add_option("model", sw.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    add_data_options(s, sw.data);
    s->add_option("--threshold", sw.threshold, "Spike threshold on the down_proj input and output")->capture_default_str();
    s->add_option("--json", sw.json, "Write the findings to this file");
    add_batch_option(s, sw.batch);
    s->callback([&] { action = [&] { return run_superweight(sw); }; });
}

}  // namespace massact_tool

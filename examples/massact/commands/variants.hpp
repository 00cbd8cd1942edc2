// Attention-sink variants: massact compare MODEL_A MODEL_B (two models side by side) and
// massact swap MODEL --softmax softmax1|softpick|sigmoid:B|... (an inference-time attention-function swap,
// measured like an intervention). --softmax also applies to eval and scan.
#pragma once

#include "common.hpp"

#include "../../plot/gnuplot.hpp"
#include "../ablation_spec.hpp"
#include "../input.hpp"
#include "../progress.hpp"
#include "intervene.hpp"
#include "scan.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <memory>

namespace massact_tool {

struct CompareArgs {
    std::vector<std::string> models;
    DataInput data;
    DetectorArgs detector;
    std::string json, figure, softmax;
    Index batch = 8;
    Index random_sequences = 0;  // --sink-random-tokens N: Gu et al.'s sink rate on N random sequences too
};

/// The table of a model set: per model perplexity, top-1, sink rate, massive dims and carriers; per layer the ratio,
/// attention on the first token and the sink rate; each scan's detector note.
inline void print_model_set(const massact::analysis::ModelSet& set, const std::vector<std::string>& names) {
    const auto j = set.to_json();
    const bool random = !set.random_scans.empty();
    std::size_t w = 12;
    for (const auto& n : names) w = std::max(w, n.size() + 1);
    const int W = static_cast<int>(w);
    std::printf("\n%-*s %10s %10s %9s %15s  %-18s %s\n", W, "model", "perplexity", "max top-1", "max ratio", "sink rate",
                "massive dims", "carriers");
    for (std::size_t i = 0; i < names.size(); ++i) {
        const auto& m = j["models"][i];
        auto list = [](const nlohmann::json& v) {
            std::string s;
            for (const auto& x : v) s += (s.empty() ? "" : ",") + (x.is_string() ? x.get<std::string>() : x.dump());
            return s.empty() ? std::string("none") : s;
        };
        std::string rate = m.contains("sink_rate") ? fmt(100 * m["sink_rate"].get<double>(), 1) + "%" : "-";
        if (m.contains("sink_rate_random_tokens")) rate += " / " + fmt(100 * m["sink_rate_random_tokens"].get<double>(), 1) + "%";
        std::printf("%-*s %10s %10.2f %9.1f %15s  %-18s %s\n", W, names[i].c_str(), m.contains("val_ppl") ? fmt(m["val_ppl"].get<double>(), 4).c_str() : "-",
                    m["max_top1"].get<double>(), m["max_ratio"].get<double>(), rate.c_str(), list(m["massive_dims"]).c_str(),
                    list(m["carriers"]).c_str());
    }
    if (random) std::printf("(sink rate: over the data / over random tokens)\n");
    auto per_layer = [&](const char* title, const char* key, int prec) {
        std::printf("\n%s\nlayer", title);
        for (const auto& n : names) std::printf(" %*s", W, n.c_str());
        std::printf("\n");
        for (std::size_t l = 0; l < j["models"][0]["layers"].size(); ++l) {
            std::printf("%5zu", l);
            for (const auto& m : j["models"]) {
                const auto& ls = m["layers"];
                std::printf(" %*s", W, l < ls.size() && ls[l].contains(key) ? fmt(ls[l][key].get<double>(), prec).c_str() : "-");
            }
            std::printf("\n");
        }
    };
    per_layer("largest |x| / median |x| per layer (mean over sequences)", "ratio", 1);
    per_layer("attention on the first token (mean over heads, queries 1..T-1)", "attention_on_first_token", 3);
    per_layer("sink rate per layer (share of heads with alpha > epsilon)", "sink_rate", 3);
    std::printf("\n");
    for (std::size_t i = 0; i < names.size(); ++i) std::printf("%s: %s\n", names[i].c_str(), set.scans[i].detector_note.c_str());
}

inline int run_compare(CompareArgs& a) {
    if (a.models.size() < 2) throw Error("compare: give at least two models");
    std::vector<std::unique_ptr<massact::Transformer>> owned;
    std::vector<const massact::Transformer*> models;
    std::vector<TokenBatch> ids, random;
    std::vector<massact::analysis::ScanOptions> opts;
    for (const auto& path : a.models) {
        owned.push_back(std::make_unique<massact::Transformer>(path));
        models.push_back(owned.back().get());
        DataInput d = a.data;
        ids.push_back(load_data(d, path));
        owned.back()->validate(ids.back());
        auto o = scan_options(a.detector, path);  // each model's own delimiters: tokenizers differ
        o.batch = a.batch;
        o.run.attention = parse_softmax(a.softmax);
        opts.push_back(o);
        if (a.random_sequences > 0) {
            DataInput r;
            r.random_tokens = a.random_sequences;
            r.random_seed = a.data.random_seed;
            r.seq_len = a.data.seq_len_given || a.data.random_tokens > 0 ? a.data.seq_len : ids.back().cols();
            random.push_back(load_data(r, path));
            owned.back()->validate(random.back());
        }
    }
    Progress bar("compare");
    const auto set = massact::analysis::compare_many(models, ids, opts, random, [&](Index d, Index t) { bar(d, t); });
    bar.done();
    const auto j = set.to_json();
    std::vector<std::string> names;
    for (const auto& m : a.models) {
        std::string s = m;
        while (s.size() > 1 && s.back() == '/') s.pop_back();
        names.push_back(s.substr(s.find_last_of('/') + 1));
    }
    std::printf("%zu models, %ld sequences x %ld tokens", a.models.size(), static_cast<long>(ids[0].rows()), static_cast<long>(ids[0].cols()));
    if (!random.empty()) std::printf(" (and %ld random-token sequences for the sink rate)", static_cast<long>(random[0].rows()));
    std::printf("\n");
    print_model_set(set, names);
    if (!a.figure.empty())
        massact_plot::write_figure(a.figure, [&](const massact_plot::Figure& f) { return massact_plot::model_set(f, set, names); });
    if (!a.json.empty()) massact::io::write_text_file_atomic(a.json, j.dump(1) + "\n");
    return 0;
}

struct SwapArgs {
    std::string model = default_model();
    DataInput data;
    std::string softmax, json;
    Index batch = 8;
};

inline int run_swap(SwapArgs& a) {
    const massact::Transformer m(a.model);
    const TokenBatch ids = load_data(a.data, a.model);
    m.validate(ids);
    massact::analysis::CompareOptions opt;
    opt.swap_run = true;
    opt.run_intervened.attention = parse_softmax(a.softmax);
    opt.batch = a.batch;
    opt.decomposition = false;
    Progress bar("swap");
    opt.progress = [&](Index d, Index t) { bar(d, t); };
    const auto c = massact::analysis::compare(m, ids, {}, opt);
    bar.done();
    // Attention rows under the swap, on the first sequence: with an extra slot (softmax1, sink logit) every
    // row gives the slot some mass, so the tokens get 1 - p_slot < 1.
    double max_row = 0, min_slot = 1, max_slot = 0;
    bool slot = false;
    massact::Hooks h;
    h.add_if_present("*attn.hook_pattern", [&](massact::Activation& p) {
        const Index T = p.shape[2];
        const auto rows = massact::RowMap<float>(p.data, p.numel() / T, T);
        max_row = std::max(max_row, rows.cast<double>().rowwise().sum().maxCoeff());
    });
    h.add_if_present("*attn.hook_sink_pattern", [&](massact::Activation& p) {  // (only a run with an extra slot has it)
        slot = true;
        const auto v = massact::RowMap<float>(p.data, 1, p.numel());
        min_slot = std::min(min_slot, double(v.minCoeff()));
        max_slot = std::max(max_slot, double(v.maxCoeff()));
    });
    m.forward(TokenBatch(ids.topRows(1)), h, opt.run_intervened);
    std::printf("softmax swap: %s (%ld sequences x %ld tokens)\n", a.softmax.c_str(), static_cast<long>(ids.rows()),
                static_cast<long>(ids.cols()));
    print_comparison(c);
    if (slot)
        std::printf("every attention row gives the extra slot p in [%.3g, %.3g]: the tokens get 1 - p < 1 (float sums reach %.8f)\n",
                    min_slot, max_slot, max_row);
    else
        std::printf("largest attention row sum with the swap: %.6f\n", max_row);
    if (!a.json.empty()) {
        nlohmann::json j = comparison_json(c);
        j["softmax"] = a.softmax;
        j["max_attention_row_sum"] = max_row;
        if (slot) j["min_slot_probability"] = min_slot;
        massact::io::write_text_file_atomic(a.json, j.dump(1) + "\n");
    }
    return 0;
}

inline void add_variant_commands(CLI::App& app, CompareArgs& c, SwapArgs& s, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("compare",
                                   "Two or more models side by side on the same data: perplexity, massive activations, attention "
                                   "on the first token and the sink rate per layer (the sink-free comparison)");
    cmd->add_option("models", c.models, "Model directories or .gguf files (at least two)")->required()->expected(2, 1 << 20);
    add_data_options(cmd, c.data);
    add_detector_options(cmd, c.detector);
    add_softmax_option(cmd, c.softmax);
    cmd->add_option("--sink-random-tokens", c.random_sequences,
                    "Also measure the sink rate on N sequences of uniformly random tokens (Gu et al.; seeded by --random-seed)")
        ->capture_default_str();
    cmd->add_option("--json", c.json, "Write the comparison to this file");
    cmd->add_option("--figure", c.figure, "Write the comparison figure (PNG, gnuplot)");
    add_batch_option(cmd, c.batch);
    cmd->callback([&] { action = [&] { return run_compare(c); }; });

    auto* sw = app.add_subcommand("swap", "Swap the attention softmax at inference time and measure the effect");
    sw->add_option("model", s.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    add_data_options(sw, s.data);
    sw->add_option("--softmax", s.softmax, "softmax | softmax1 | clipped[:zeta,gamma] | sink=X | softpick | sigmoid[:B]")->required();
    sw->add_option("--json", s.json, "Write the measurements to this file");
    add_batch_option(sw, s.batch);
    sw->callback([&] { action = [&] { return run_swap(s); }; });
}

}  // namespace massact_tool

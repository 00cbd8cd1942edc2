// Attention-sink variants: massact compare MODEL_A MODEL_B (two models side by side) and
// massact swap MODEL --softmax softmax1|clipped[:zeta,gamma]|sink=X (an inference-time softmax swap,
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

namespace massact_tool {

struct CompareArgs {
    std::string model_a, model_b;
    DataInput data;
    DetectorArgs detector;
    std::string json, figure;
    Index batch = 8;
};

inline int run_compare(CompareArgs& a) {
    const massact::Transformer ma(a.model_a), mb(a.model_b);
    DataInput da = a.data, db = a.data;
    const TokenBatch ia = load_data(da, a.model_a), ib = load_data(db, a.model_b);
    ma.validate(ia);
    mb.validate(ib);
    auto opt = scan_options(a.detector, a.model_a);
    opt.batch = a.batch;
    Progress bar("compare");
    opt.progress = [&](Index d, Index t) { bar(d, t); };
    auto opt_b = opt;
    opt_b.delimiters = model_delimiters(a.model_b);  // B's own tokenizer: its ids differ from A's
    const auto p = massact::analysis::compare_models(ma, ia, mb, ib, opt, opt_b);
    bar.done();
    const auto j = p.to_json();
    auto short_name = [](const std::string& s) { return s.substr(s.find_last_of('/') + 1); };
    const std::string na = short_name(a.model_a), nb = short_name(a.model_b);
    std::printf("A = %s (perplexity %.4f), B = %s (perplexity %.4f), %ld sequences x %ld tokens\n\n", na.c_str(), p.a.val_ppl,
                nb.c_str(), p.b.val_ppl, static_cast<long>(ia.rows()), static_cast<long>(ia.cols()));
    std::printf("layer   top1 A   top1 B    A / B   attn@0 A  attn@0 B   slot A   slot B\n");
    for (const auto& l : j["layers"])
        std::printf("%5d %8.2f %8.2f %8.2f %9.3f %9.3f %8.3f %8.3f\n", l["layer"].get<int>(), l["top1_a"].get<double>(),
                    l["top1_b"].get<double>(), (l["top1_ratio_a_over_b"].is_number() ? l["top1_ratio_a_over_b"].get<double>() : std::nan("")), l["attention_on_first_token_a"].get<double>(),
                    l["attention_on_first_token_b"].get<double>(), l["attention_on_bias_slot_a"].get<double>(),
                    l["attention_on_bias_slot_b"].get<double>());
    std::printf("\nA: %s\nB: %s\n", p.a.detector_note.c_str(), p.b.detector_note.c_str());
    if (!a.figure.empty()) {
        massact_plot::write_figure(a.figure, [&](const massact_plot::Figure& f) { return massact_plot::model_pair(f, p, na, nb); });
    }
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
    h.add("*attn.hook_pattern", [&](massact::Activation& p) {
        const Index T = p.shape[2];
        const auto rows = massact::RowMap<float>(p.data, p.numel() / T, T);
        max_row = std::max(max_row, rows.cast<double>().rowwise().sum().maxCoeff());
    });
    h.add("*attn.hook_sink_pattern", [&](massact::Activation& p) {
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
    auto* cmd = app.add_subcommand("compare", "Two models side by side: per-layer statistics and attention-sink metrics");
    cmd->add_option("model_a", c.model_a, "First model directory")->required();
    cmd->add_option("model_b", c.model_b, "Second model directory")->required();
    add_data_options(cmd, c.data);
    add_detector_options(cmd, c.detector);
    cmd->add_option("--json", c.json, "Write the comparison to this file");
    cmd->add_option("--figure", c.figure, "Write the comparison figure (PNG, gnuplot)");
    add_batch_option(cmd, c.batch);
    cmd->callback([&] { action = [&] { return run_compare(c); }; });

    auto* sw = app.add_subcommand("swap", "Swap the attention softmax at inference time and measure the effect");
    sw->add_option("model", s.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    add_data_options(sw, s.data);
    sw->add_option("--softmax", s.softmax, "softmax1 | clipped[:zeta,gamma] | sink=X")->required();
    sw->add_option("--json", s.json, "Write the measurements to this file");
    add_batch_option(sw, s.batch);
    sw->callback([&] { action = [&] { return run_swap(s); }; });
}

}  // namespace massact_tool

// massact quant MODEL (--data FILE | --ids-file ...) [--json OUT] [--figure OUT.png]: fake-quantization
// experiments on the float model, with and without the protections the outlier literature proposes.
#pragma once

#include "common.hpp"

#include "../../plot/gnuplot.hpp"
#include "../input.hpp"
#include "../progress.hpp"
#include "scan.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <optional>

namespace massact_tool {

struct QuantArgs {
    std::string model = default_model();
    DataInput data;
    DetectorArgs detector;
    Index batch = 8;
    double prefix_ratio = 64.0;
    std::string json, figure;
};

inline nlohmann::json quant_json(const massact::analysis::QuantStudy& s) {
    nlohmann::json j = {{"ppl_float", s.ppl_float}, {"massive_dims", s.context.massive_dims}, {"rows", nlohmann::json::array()}};
    j["prefix_tokens"] = s.context.prefix;
    j["prefix_outliers_per_sequence"] = s.context.prefix_outliers;
    j["super_weights"] = nlohmann::json::array();
    for (const auto& w : s.context.super_weights) j["super_weights"].push_back({{"layer", w.layer}, {"row", w.row}, {"col", w.col}});
    for (const auto& r : s.rows)
        j["rows"].push_back({{"weights", massact::analysis::format_name(r.experiment.weights.format)},
                             {"activations", massact::analysis::format_name(r.experiment.activations)},
                             {"granularity", r.experiment.granularity()},
                             {"protect", r.experiment.protect()},
                             {"static_scales", r.experiment.static_scales},
                             {"prefix_outliers", r.experiment.prefix_outliers},
                             {"kv_bits", r.experiment.kv_bits},
                             {"intact_kv", r.experiment.intact_kv},
                             {"ppl", r.ppl},
                             {"kl_mean", r.kl_mean},
                             {"max_abs_error_per_layer", r.max_abs_error_per_layer},
                             {"nll_increase_per_position", r.nll_increase_per_position},
                             {"kl_per_position", r.kl_per_position},
                             {"error_first_token_per_layer", r.error_first_token_per_layer},
                             {"error_other_tokens_per_layer", r.error_other_tokens_per_layer},
                             {"resid_max_abs", r.resid_max_abs}});
    return j;
}

inline bool quant_figure(const massact_plot::Figure& f, const massact::analysis::QuantStudy& s, const std::string& model) {
    ::mkdir((f.dir + "/data").c_str(), 0755);
    std::ofstream d(f.dat());
    std::vector<std::string> labels;  // (as y tics in the script, quoted: never in the data file, where gnuplot reads quotes itself)
    for (std::size_t i = 0; i < s.rows.size(); ++i) {
        const auto& e = s.rows[i].experiment;
        std::string label = std::string(massact::analysis::format_name(e.weights.format)) +
                            (e.activations != massact::analysis::QuantFormat::Float ? std::string("/") + massact::analysis::format_name(e.activations) : "") +
                            " " + e.granularity() +
                            (e.protect() == "none" ? "" : " + " + e.protect());
        d << i << ' ' << s.rows[i].ppl << '\n';
        labels.push_back(label);
    }
    d.close();
    return f.render("set title " + massact_plot::quote(model + ": perplexity after fake quantization (float: " + fmt(s.ppl_float, 3) + ")") +
                        "\nset style fill solid 0.8\nset boxwidth 0.7\nset grid x\nunset key\nset logscale x\nset xlabel 'perplexity'\n"
                        "set ytics nomirror " + massact_plot::token_tics(labels) + "\nset yrange [-1:" + std::to_string(s.rows.size()) + "]\nset xrange [" + fmt(s.ppl_float * 0.9, 3) + ":" +
                        fmt(1.15 * std::max_element(s.rows.begin(), s.rows.end(), [](const auto& x, const auto& y) { return x.ppl < y.ppl; })->ppl, 3) + "]\n"
                        "set arrow from " + fmt(s.ppl_float, 6) + ", graph 0 to " + fmt(s.ppl_float, 6) + ", graph 1 nohead lc rgb 'red' lw 2\n"
                        "plot " + massact_plot::quote(f.dat()) + " using 2:1:(" + fmt(s.ppl_float * 0.9, 3) +
                        "):2:($1-0.35):($1+0.35) with boxxyerrorbars lc rgb '#3182bd'\n",
                    1400, 900, 10);
}

inline int run_quant(QuantArgs& a) {
    const massact::Transformer m(a.model);
    massact::analysis::check_quant_model(m.config());
    if (a.data.max_seqs == 0) a.data.max_seqs = 16;
    const TokenBatch ids = load_data(a.data, a.model);
    m.validate(ids);
    massact::analysis::QuantContext ctx;
    ctx.prefix_ratio = a.prefix_ratio;
    {
        Progress bar("scan");
        auto opt = scan_options(a.detector, a.model);
        opt.batch = a.batch;
        opt.progress = [&](Index d, Index t) { bar(d, t); };
        const auto scan = massact::analysis::scan(m, ids, opt);
        for (const auto& x : scan.massive) ctx.massive_dims.push_back(x.dim);
        ctx.super_weights = massact::analysis::find_super_weights(m, ids.topRows(1));
    }
    Progress bar("quant");
    const auto s = massact::analysis::quant_study(m, ids, massact::analysis::default_experiments(), ctx, a.batch,
                                                  [&](Index d, Index t) { bar(d, t); });
    bar.done();
    std::printf("%lld sequences x %lld tokens; float perplexity %.4f; massive dims:", static_cast<long long>(ids.rows()),
                static_cast<long long>(ids.cols()), s.ppl_float);
    for (Index d : s.context.massive_dims) std::printf(" %lld", static_cast<long long>(d));
    int gw = 26, pw = 40;  // (the columns as wide as their longest entry)
    for (const auto& r : s.rows) {
        gw = std::max(gw, static_cast<int>(r.experiment.granularity().size()));
        pw = std::max(pw, static_cast<int>(r.experiment.protect().size()));
    }
    std::printf("; super weights: %zu\n\n%-7s %-6s %-*s %-*s %10s %10s %12s\n", s.context.super_weights.size(), "weights", "acts", gw,
                "granularity", pw, "protection", "ppl", "KL", "max err");
    for (const auto& r : s.rows)
        std::printf("%-7s %-6s %-*s %-*s %10.4f %10.5f %12.4f\n", massact::analysis::format_name(r.experiment.weights.format),
                    massact::analysis::format_name(r.experiment.activations), gw, r.experiment.granularity().c_str(), pw,
                    r.experiment.protect().c_str(), r.ppl, r.kl_mean, *std::max_element(r.max_abs_error_per_layer.begin(), r.max_abs_error_per_layer.end()));
    if (!s.context.prefix.empty()) {  // PrefixQuant's prefix, as ids and the tokenizer's labels
        std::optional<massact::text::Tokenizer> tok;
        if (massact::text::has_tokenizer(a.model)) tok.emplace(massact::text::load_tokenizer(a.model));
        std::printf("\nPrefixQuant: %lld outlier tokens per sequence; prefix:", static_cast<long long>(s.context.prefix_outliers));
        for (Index id : s.context.prefix)
            std::printf(" %lld%s", static_cast<long long>(id), tok ? (" (" + tok->label(id) + ")").c_str() : "");
        std::printf("\n");
    }
    for (const auto& r : s.rows)  // what a rotation did to the massive activation (the first row: the float model's)
        if (r.experiment.rotation != massact::analysis::RotationKind::None && r.experiment.weights.format != massact::analysis::QuantFormat::Float) {
            std::printf("\nrotated (%s): the largest |h| of a block output is %.2f (unrotated: %.2f)\n",
                        massact::analysis::rotation_name(r.experiment.rotation), r.resid_max_abs, s.rows.front().resid_max_abs);
            break;
        }
    if (!a.figure.empty()) {
        massact_plot::write_figure(a.figure, [&](const massact_plot::Figure& f) { return quant_figure(f, s, m.config().model_type); });
    }
    if (!a.json.empty()) massact::io::write_text_file_atomic(a.json, quant_json(s).dump(1) + "\n");
    return 0;
}

inline void add_quant(CLI::App& app, QuantArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("quant", "Fake quantization (RTN, GPTQ, rotations; W8A8, W4A4) with and without outlier protections");
    cmd->add_option("model", a.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    add_data_options(cmd, a.data);
    add_detector_options(cmd, a.detector);
    add_batch_option(cmd, a.batch);
    cmd->add_option("--prefix-ratio", a.prefix_ratio,
                    "PrefixQuant: a token is an outlier where its largest |x| at down_proj's input exceeds this times the median token's")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    cmd->add_option("--json", a.json, "Write {ppl_float, prefix_tokens, rows: [{weights, activations, granularity, protect, kv_bits, ppl, kl_mean, max_abs_error_per_layer, ...}]}");
    cmd->add_option("--figure", a.figure, "Write the perplexity of every experiment (PNG, gnuplot)");
    cmd->callback([&] { action = [&] { return run_quant(a); }; });
}

}  // namespace massact_tool

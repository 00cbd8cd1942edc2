// massact report [MODEL_DIR] [--data FILE] [--out DIR]: the paper's figures and tables in one command.
// Scan, detection, the zero/mean intervention, attention shift under ablation and injection, super
// weights; writes DIR/report.md, DIR/report.json and PNG figures (gnuplot).
#pragma once

#include "../../plot/gnuplot.hpp"
#include "../input.hpp"
#include "../progress.hpp"
#include "intervene.hpp"
#include "scan.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <fstream>

#include <cstdio>
#include <sstream>
#include <sys/stat.h>

namespace massact_tool {

struct ReportArgs {
    std::string model = MASSACT_DEFAULT_MODEL;
    DataInput data;
    std::string out = "massact-report";
    std::string prompt = "Summer is warm. Winter is cold.";
    DetectorArgs detector;
    Index batch = 8;
};

inline std::string fmt(double v, int prec = 3) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", prec, v);
    return b;
}

inline int run_report(ReportArgs& a) {
    const massact::Transformer m(a.model);
    const auto& c = m.config();
    const std::string name = a.model.substr(a.model.find_last_of('/') + 1);
    if (a.data.data.empty() && a.data.tokens.ids.empty() && a.data.tokens.ids_file.empty() && a.data.tokens.prompt.empty() &&
        a.data.tokens.text_file.empty())
        a.data.data = MASSACT_DEFAULT_DATA;
    if (a.data.max_seqs == 0) a.data.max_seqs = 96;
    const TokenBatch ids = load_data(a.data, a.model);
    m.validate(ids);
    ::mkdir(a.out.c_str(), 0755);
    struct stat st {};
    if (::stat(a.out.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throw Error("--out: cannot create folder " + a.out);

    // 1. Scan: per-layer statistics, detector, sinks.
    auto opt = scan_options(a.detector, a.model);
    opt.batch = a.batch;
    Progress bar("report");
    opt.progress = [&](Index d, Index t) { bar(d, t); };
    const auto scan = massact::analysis::scan(m, ids, opt);
    bar.done();

    // 2. The massive activation to intervene on: dims carried by the first token from the earliest layer.
    int layer = -1;
    std::vector<Index> dims;
    for (const auto& ma : scan.massive)
        if (std::find(ma.positions.begin(), ma.positions.end(), "first_token") != ma.positions.end())
            layer = layer < 0 ? ma.first_layer : std::min(layer, ma.first_layer);
    for (const auto& ma : scan.massive)
        if (ma.first_layer == layer && std::find(ma.positions.begin(), ma.positions.end(), "first_token") != ma.positions.end())
            dims.push_back(ma.dim);
    std::sort(dims.begin(), dims.end());
    // Layer shown in the 3D figure: the first massive layer, else the layer with the largest top-1 / median.
    int shown = layer;
    if (shown < 0) {
        double best = -1;
        for (const auto& l : scan.layers)
            if (l.ratio() > best) { best = l.ratio(); shown = l.layer; }
    }

    // 3. The prompt: hidden state of the shown layer and attention patterns (mean over heads).
    //    Without a tokenizer.json, the first 16 tokens of the first sequence, labelled by id.
    std::vector<std::int64_t> pids_v;
    std::vector<std::string> labels;
    if (std::ifstream(a.model + "/tokenizer.json").good()) {
        const auto tok = massact::text::Tokenizer::from_file(a.model + "/tokenizer.json");
        pids_v = tok.encode(a.prompt, true);
        for (auto id : pids_v) labels.push_back(tok.label(id));
    } else {
        for (Index t = 0; t < std::min<Index>(16, ids.cols()); ++t) {
            pids_v.push_back(ids(0, t));
            labels.push_back(std::to_string(ids(0, t)));
        }
    }
    TokenBatch pids(1, static_cast<Index>(pids_v.size()));
    for (std::size_t i = 0; i < pids_v.size(); ++i) pids(0, static_cast<Index>(i)) = pids_v[i];
    m.validate(pids);
    massact::RowMatrixF hidden;
    std::vector<massact::RowMatrixF> mean_pattern(static_cast<std::size_t>(c.num_layers));
    massact::Hooks h;
    h.add(massact::analysis::Intervention::resid_post(shown), [&](massact::Activation& act) { hidden = act.sequence(0); });
    h.add("*attn.hook_pattern", [&](massact::Activation& act) {
        const Index H = act.shape[1], T = act.shape[2];
        massact::RowMatrixF P = massact::RowMatrixF::Zero(T, T);
        for (Index hh = 0; hh < H; ++hh) P += massact::RowMap<float>(act.data + hh * T * T, T, T);
        mean_pattern[static_cast<std::size_t>(act.layer)] = P / static_cast<float>(H);
    });
    m.forward(pids, h);

    nlohmann::json J;
    J["model"] = a.model;
    J["data"] = a.data.data.empty() ? "token input" : a.data.data;
    J["prompt"] = a.prompt;
    J["prompt_tokens"] = labels;
    J["scan"] = scan.to_json();
    J["figure_layer"] = shown;

    // 4. Interventions (Sun et al. Table 3), attention shift (ablation on the prompt, injection on the data).
    massact::analysis::Comparison zero, mean, shift;
    massact::analysis::InjectionResult inj;
    std::vector<float> mean_values;
    const bool massive = layer >= 0;
    if (massive) {
        using massact::analysis::Intervention;
        Intervention iz;
        iz.site = Intervention::resid_post(layer);
        iz.tokens = massact::analysis::TokenSelection::first();
        iz.dims = dims;
        iz.mode = Intervention::Mode::Zero;
        Intervention im = iz;
        im.mode = Intervention::Mode::Mean;
        im.values = mean_values = massact::analysis::dataset_mean(m, ids, im, a.batch);
        massact::analysis::CompareOptions fast;
        fast.tokens = {};
        fast.decomposition = false;
        fast.batch = a.batch;
        zero = massact::analysis::compare(m, ids, massact::analysis::make_hooks({iz}), fast);
        mean = massact::analysis::compare(m, ids, massact::analysis::make_hooks({im}), fast);
        shift = massact::analysis::compare(m, pids, massact::analysis::make_hooks({iz}));
        const Index T = std::min<Index>(64, ids.cols());
        const TokenBatch small = ids.topRows(std::min<Index>(8, ids.rows())).leftCols(T);
        inj = massact::analysis::inject(m, small, layer, 0, T / 2 - 2, dims, a.batch);
        J["intervention"] = {{"layer", layer}, {"massive_dims", dims}, {"tokens", "first token"}, {"mean_values", mean_values},
                             {"ppl_original", zero.ppl_original}, {"ppl_zero", zero.ppl_intervened}, {"ppl_mean", mean.ppl_intervened},
                             {"kl_zero", zero.kl_mean}, {"kl_mean", mean.kl_mean}};
        J["ablation_on_prompt"] = comparison_json(shift);
        J["injection"] = {{"layer", layer}, {"from", 0}, {"to", inj.to}, {"dims", dims}, {"sequences", small.rows()}, {"seq_len", T},
                          {"median_factor", inj.median_factor}, {"attention_on_target_before", inj.mean_before},
                          {"attention_on_target_after", inj.mean_after}};
    }
    // Mixtures of experts have one down_proj per expert: find_super_weights does not search them.
    const auto sws = c.moe() ? std::vector<massact::analysis::SuperWeight>{} : massact::analysis::find_super_weights(m, pids);
    J["super_weights"] = nlohmann::json::array();
    for (const auto& s : sws)
        J["super_weights"].push_back({{"layer", s.layer}, {"row", s.row}, {"col", s.col}, {"token", s.token}, {"input", s.input},
                                      {"output", s.output}, {"weight", s.weight}, {"contribution", s.contribution}});

    // 5. Figures.
    const bool gp = massact_plot::gnuplot_available();
    std::vector<std::string> made, skipped;
    auto figure = [&](const std::string& fname, const std::function<bool(const massact_plot::Figure&)>& draw) {
        const massact_plot::Figure f{a.out, fname};
        if (gp && draw(f)) made.push_back(fname + ".png");
        else skipped.push_back(fname + ".png");
    };
    figure("fig1_magnitudes_3d", [&](const auto& f) { return massact_plot::magnitude_3d(f, hidden, labels, shown, name); });
    figure("fig2_layer_magnitudes", [&](const auto& f) { return massact_plot::layer_magnitudes(f, scan, name); });
    figure("fig3_attention", [&](const auto& f) { return massact_plot::attention_maps(f, mean_pattern, labels, name); });
    if (massive) {
        std::string what = "dims";
        for (Index d : dims) what += " " + std::to_string(d);
        what += " of the first token after block " + std::to_string(layer) + " are set to zero or their mean";
        figure("fig4_perplexity", [&](const auto& f) {
            return massact_plot::perplexity_bars(f, zero.ppl_original, zero.ppl_intervened, mean.ppl_intervened, what);
        });
        const auto before = massact::analysis::Comparison::head_mean(shift.attn_original)[0];
        const auto after = massact::analysis::Comparison::head_mean(shift.attn_intervened)[0];
        figure("fig5_attention_shift", [&](const auto& f) {
            return massact_plot::attention_shift(
                f,
                {{"on the first token (prompt)", before},
                 {"... after zeroing its massive dims at layer " + std::to_string(layer), after},
                 {"on token " + std::to_string(inj.to) + " (data)", inj.mean_before},
                 {"... after injecting the first token's massive dims into it", inj.mean_after}},
                name + ": attention mass on sink tokens, before and after ablation / injection");
        });
    } else {
        skipped.push_back("fig4_perplexity.png (no massive activation to intervene on)");
        skipped.push_back("fig5_attention_shift.png (no massive activation to intervene on)");
    }
    J["figures"] = made;
    J["skipped_figures"] = skipped;
    massact::io::write_text_file_atomic(a.out + "/report.json", J.dump(1) + "\n");

    // 6. report.md
    std::ostringstream md;
    md << "# massact report: " << name << "\n\n";
    md << "Model `" << a.model << "` (" << c.model_type << ", " << c.num_layers << " layers, d = " << c.hidden_size << ", "
       << c.num_heads << " heads). Data: " << J["data"].get<std::string>() << ", " << scan.sequences << " windows of "
       << scan.seq_len << " tokens. Perplexity " << fmt(scan.val_ppl, 4) << ".\n\n";
    md << "## Residual stream per layer\n\nMean over sequences of the largest and median |x| of each block's output.\n\n";
    md << "| layer | top 1 | top 2 | top 3 | median | top1 / median | top-1 dim (sequences) | top 1 at position 0 | attention on first token |\n";
    md << "|---:|---:|---:|---:|---:|---:|---|---:|---:|\n";
    for (std::size_t l = 0; l < scan.layers.size(); ++l) {
        const auto& s = scan.layers[l];
        double att = 0;
        for (double v : scan.attention_on_first_token[l]) att += v;
        att /= double(scan.attention_on_first_token[l].size());
        md << "| " << s.layer << " | " << fmt(s.top1_mean, 2) << " | " << fmt(s.top2_mean, 2) << " | " << fmt(s.top3_mean, 2) << " | "
           << fmt(s.median_mean) << " | " << fmt(s.ratio(), 0) << " | " << dims_string(s.top1_dims) << " | "
           << fmt(s.top1_pos0_fraction, 2) << " | " << fmt(att) << " |\n";
    }
    md << "\n## Massive activations\n\n" << scan.detector_note << "\n\n";
    if (!scan.massive.empty()) {
        md << "| dim | first layer | layers | carried by | mean | std | ratio to median | sequences |\n|---:|---:|---|---|---:|---:|---:|---:|\n";
        for (const auto& ma : scan.massive) {
            std::string ls, ps;
            for (int l : ma.layers) ls += (ls.empty() ? "" : ",") + std::to_string(l);
            for (const auto& p : ma.positions) ps += (ps.empty() ? "" : ", ") + p;
            md << "| " << ma.dim << " | " << ma.first_layer << " | " << ls << " | " << ps << " | " << fmt(ma.mean, 2) << " | "
               << fmt(ma.std, 2) << " | " << fmt(ma.ratio, 0) << " | " << fmt(100 * ma.share, 0) << "% |\n";
        }
    }
    md << "\n## Interventions (Sun et al., Table 3)\n\n";
    if (massive) {
        md << "Dims";
        for (Index d : dims) md << " " << d;
        md << " of the first token, at the output of block " << layer << ".\n\n| | perplexity | KL to original |\n|---|---:|---:|\n";
        md << "| original | " << fmt(zero.ppl_original, 4) << " | 0 |\n| set to zero | " << fmt(zero.ppl_intervened, 4) << " | "
           << fmt(zero.kl_mean, 4) << " |\n| set to mean | " << fmt(mean.ppl_intervened, 4) << " | " << fmt(mean.kl_mean, 6) << " |\n\n";
        const auto before = massact::analysis::Comparison::head_mean(shift.attn_original)[0];
        const auto after = massact::analysis::Comparison::head_mean(shift.attn_intervened)[0];
        md << "Attention on the first token of the prompt (mean over heads and later queries), and on token " << inj.to
           << " of the data windows when the first token's massive dims are injected into it (median factor over sequences):\n\n";
        md << "| layer | first token | after zeroing | token " << inj.to << " | after injection | factor |\n|---:|---:|---:|---:|---:|---:|\n";
        for (std::size_t l = 0; l < before.size(); ++l)
            md << "| " << l << " | " << fmt(before[l]) << " | " << fmt(after[l]) << " | " << fmt(inj.mean_before[l], 4) << " | "
               << fmt(inj.mean_after[l], 4) << " | " << fmt(inj.median_factor[l], 2) << " |\n";
    } else {
        md << "No massive activation was detected, so there is nothing to ablate.\n";
    }
    md << "\n## Attention sinks (Gu et al.)\n\n" << fmt(100 * scan.sink_rate, 1) << "% of heads have alpha > " << scan.sink_epsilon
       << " (T = " << scan.sink_T << "):";
    for (const auto& s : scan.sink_heads) md << " L" << s.layer << "H" << s.head << " (" << fmt(s.alpha, 2) << ")";
    md << "\n\n## Super weights (Yu et al.)\n\n";
    if (c.moe()) md << "Not searched: the MLPs are a mixture of experts (one down projection per expert).\n";
    else if (sws.empty()) md << "No down projection has both an input and an output spike above 50 on the prompt.\n";
    for (const auto& s : sws)
        md << "- layer " << s.layer << ", `mlp.down_proj[" << s.row << ", " << s.col << "]` = " << fmt(s.weight, 4) << ": input channel "
           << s.col << " is " << fmt(s.input, 1) << " at position " << s.token << ", output dim " << s.row << " is " << fmt(s.output, 1)
           << ", of which this weight contributes " << fmt(s.contribution, 1) << ".\n";
    md << "\n## Figures\n\n";
    for (const auto& f : made) md << "![" << f << "](" << f << ")\n\n";
    if (!skipped.empty()) {
        md << "Skipped:";
        for (const auto& f : skipped) md << " " << f;
        md << (gp ? "\n" : "\n\ngnuplot was not found: install it (`sudo apt-get install gnuplot-nox`) and run the report again.\n");
    }
    massact::io::write_text_file_atomic(a.out + "/report.md", md.str());

    print_scan(scan);
    if (massive)
        std::printf("\nperplexity original %.4f, massive dims set to zero %.4f, set to mean %.4f\n", zero.ppl_original,
                    zero.ppl_intervened, mean.ppl_intervened);
    std::printf("\nwrote %s/report.md, %s/report.json and %zu figures\n", a.out.c_str(), a.out.c_str(), made.size());
    if (!gp) std::printf("skipped %zu figures: gnuplot not found (sudo apt-get install gnuplot-nox)\n", skipped.size());
    else if (!skipped.empty()) std::printf("skipped: %zu figures (see report.md)\n", skipped.size());
    return 0;
}

inline void add_report(CLI::App& app, ReportArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("report", "Scan, interventions and figures of the bundled (or any) model in one command");
    cmd->add_option("model", a.model, "Hugging Face model directory")->capture_default_str();
    add_data_options(cmd, a.data);
    cmd->add_option("--out", a.out, "Output folder")->capture_default_str();
    cmd->add_option("--figure-prompt", a.prompt, "Short prompt for the 3D and attention figures")->capture_default_str();
    add_detector_options(cmd, a.detector);
    cmd->add_option("--batch", a.batch, "Sequences per forward pass")->capture_default_str();
    cmd->callback([&] { action = [&] { return run_report(a); }; });
}

}  // namespace massact_tool

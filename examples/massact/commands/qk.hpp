// massact qk MODEL: massive values in Q and K (Jin et al., ICML 2025): per layer and head the mean |q| and |k| of each
// dimension before and after RoPE with its rotary frequency, how much of it sits in the slower-rotating half, and
// what replacing the top-m dims of every head by their mean (or 0) does to perplexity and KL, against m random dims.
#pragma once

#include "common.hpp"

#include "../../plot/gnuplot.hpp"
#include "../input.hpp"
#include "../progress.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>

namespace massact_tool {

struct QKArgs {
    std::string model = default_model();
    DataInput data;
    Index m = 2, draws = 3;
    std::string mode = "mean", on = "qk", json, figure, softmax;
    std::uint64_t seed = 0;
    Index batch = 8;
};

inline int run_qk(QKArgs& a) {
    const massact::Transformer model(a.model);
    const TokenBatch ids = load_data(a.data, a.model);
    model.validate(ids);
    massact::analysis::QKIntervention spec;
    spec.m = a.m;
    if (a.mode != "mean" && a.mode != "zero") throw Error("--mode: \"" + a.mode + "\" (expected mean or zero)");
    spec.zero = a.mode == "zero";
    if (a.on != "q" && a.on != "k" && a.on != "qk") throw Error("--on: \"" + a.on + "\" (expected q, k or qk)");
    spec.on_q = a.on != "k";
    spec.on_k = a.on != "q";
    spec.seed = a.seed;
    massact::RunOptions run;
    run.attention = parse_softmax(a.softmax);
    const auto r = massact::analysis::qk_massive_values(model, ids, spec, a.draws, a.batch, run);
    const auto& c = model.config();
    std::printf("%ld sequences x %ld tokens; mean |q| and |k| per dim before RoPE\n\n", static_cast<long>(ids.rows()),
                static_cast<long>(ids.cols()));
    std::printf("layer  low-freq share q  low-freq share k   top q dims (head 0: dim/|q|/inv freq)\n");
    nlohmann::json layers = nlohmann::json::array();
    for (int l = 0; l < c.num_layers; ++l) {
        const auto& L = r.profile.layers[static_cast<std::size_t>(l)];
        std::string top;
        for (Index d : L.q.top_dims(0, 3))
            top += fmt(static_cast<double>(d), 0) + "/" + fmt(L.q.abs_at(0, d), 2) + "/" + fmt(L.frequency[static_cast<std::size_t>(d)], 4) + " ";
        std::printf("%5d  %16.3f  %16.3f   %s\n", l, L.low_share_q, L.low_share_k, top.c_str());
        auto site = [](const massact::analysis::QKSiteProfile& s) {
            nlohmann::json rows = nlohmann::json::array();
            for (Index h = 0; h < s.heads; ++h)
                rows.push_back(std::vector<double>(s.mean_abs.begin() + h * s.head_dim, s.mean_abs.begin() + (h + 1) * s.head_dim));
            return rows;
        };
        nlohmann::json row = {{"layer", l}, {"low_frequency_share_q", L.low_share_q}, {"low_frequency_share_k", L.low_share_k},
                              {"frequency", L.frequency}, {"q_mean_abs", site(L.q)}, {"k_mean_abs", site(L.k)}};
        if (!L.rot_q.mean_abs.empty()) {
            row["rot_q_mean_abs"] = site(L.rot_q);
            row["rot_k_mean_abs"] = site(L.rot_k);
        }
        layers.push_back(row);
    }
    std::printf("\n(low-frequency share: of the mean |x| of the rotary dims, the part in the half that rotates slowest; 0.5 "
                "when spread evenly)\n\nreplacing %ld dims per head of %s by their %s (every layer, before RoPE):\n",
                static_cast<long>(a.m), a.on.c_str(), spec.zero ? "zero" : "mean over the data");
    auto line = [](const std::string& label, double ppl, const std::string& kl) {
        std::printf("  %-22s perplexity %.4f%s\n", label.c_str(), ppl, kl.c_str());
    };
    line("original", r.ppl_original, "");
    line("top-" + std::to_string(a.m) + " by |x|", r.top.ppl, ", KL " + fmt(r.top.kl, 4));
    nlohmann::json random = nlohmann::json::array();
    for (const auto& t : r.random) {
        line("random (seed " + std::to_string(t.seed) + ")", t.ppl, ", KL " + fmt(t.kl, 4));
        random.push_back({{"seed", t.seed}, {"ppl", t.ppl}, {"kl", t.kl}});
    }
    if (!r.random.empty())
        line("random, mean of " + std::to_string(r.random.size()), r.random_ppl_mean(), ", KL " + fmt(r.random_kl_mean(), 4));
    if (!a.figure.empty())
        massact_plot::write_figure(a.figure, [&](const massact_plot::Figure& f) { return massact_plot::qk_profile(f, r.profile); });
    if (!a.json.empty()) {
        const nlohmann::json j = {{"m", a.m}, {"mode", a.mode}, {"on", a.on}, {"sequences", ids.rows()}, {"seq_len", ids.cols()},
                                  {"ppl_original", r.ppl_original}, {"top", {{"ppl", r.top.ppl}, {"kl", r.top.kl}}},
                                  {"random", random}, {"random_ppl_mean", r.random_ppl_mean()}, {"random_kl_mean", r.random_kl_mean()},
                                  {"layers", layers}};
        massact::io::write_text_file_atomic(a.json, j.dump(1) + "\n");
    }
    return 0;
}

inline void add_qk(CLI::App& app, QKArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("qk", "Massive values in Q and K (Jin et al. 2025): per-dim |q|, |k| with RoPE frequencies, and "
                                         "the top-m dims replaced against m random dims");
    cmd->add_option("model", a.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    add_data_options(cmd, a.data);
    cmd->add_option("-m,--top-m", a.m, "Dims per head to replace")->capture_default_str();
    cmd->add_option("--mode", a.mode, "mean (each dim's mean over the data) or zero")->capture_default_str();
    cmd->add_option("--on", a.on, "q, k or qk: which projections to edit")->capture_default_str();
    cmd->add_option("--draws", a.draws, "Random choices of m dims to compare with")->capture_default_str();
    cmd->add_option("--seed", a.seed, "Seed of the first random draw (draw i uses seed + i)")->capture_default_str();
    add_softmax_option(cmd, a.softmax);
    cmd->add_option("--json", a.json, "Write the profile and the measurements to this file");
    cmd->add_option("--figure", a.figure, "Write the profile figure (PNG, gnuplot): mean |q|, |k| per dim against frequency");
    add_batch_option(cmd, a.batch);
    cmd->callback([&] { action = [&] { return run_qk(a); }; });
}

}  // namespace massact_tool

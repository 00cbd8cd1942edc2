// massact superexpert MODEL: the experts of a mixture-of-experts model that write its massive activations (Su et al.
// 2025), verified by routing around them, and what pruning them does to perplexity and the attention sink.
#pragma once

#include "common.hpp"

#include "../input.hpp"
#include "scan.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>

namespace massact_tool {

struct SuperExpertArgs {
    std::string model = default_model();
    DataInput data;
    DetectorArgs detector;
    double min_share = 0.5, destroyed = 0.5;
    std::string json;
    Index batch = 8;
};

inline int run_superexpert(SuperExpertArgs& a) {
    const massact::Transformer m(a.model);
    const TokenBatch ids = load_data(a.data, a.model);
    m.validate(ids);
    massact::analysis::SuperExpertOptions opt;
    opt.scan = scan_options(a.detector, a.model);
    opt.scan.batch = a.batch;
    opt.min_share = a.min_share;
    opt.destroyed = a.destroyed;
    const auto r = massact::analysis::find_super_experts(m, ids, opt);
    std::printf("%ld sequences x %ld tokens; %zu massive activation(s)\n", static_cast<long>(ids.rows()), static_cast<long>(ids.cols()),
                r.massive.size());
    nlohmann::json experts = nlohmann::json::array(), found = nlohmann::json::array();
    if (!r.experts.empty()) std::printf("\nlayer expert  routed  max |out|  |w out[D]|  massive |x[D]|  dim D\n");
    for (std::size_t i = 0; i < r.experts.size(); ++i) {
        const auto& e = r.experts[i];
        if (i < 12)
            std::printf("%5d %6ld %7ld %10.2f %11.2f %15.2f %6ld\n", e.layer, static_cast<long>(e.expert), static_cast<long>(e.routed), e.max_output,
                        e.contribution, e.massive, static_cast<long>(e.dim));
        experts.push_back({{"layer", e.layer}, {"expert", e.expert}, {"routed", e.routed}, {"max_output", e.max_output},
                           {"contribution", e.contribution}, {"massive", e.massive}, {"dim", e.dim}});
    }
    for (const auto& s : r.found) {
        std::printf("\nsuper expert: layer %d expert %ld writes %.2f of dim %ld's %.2f; routed around, dim %ld after layer %d goes %.2f -> %.2f\n",
                    s.layer, static_cast<long>(s.expert), s.contribution, static_cast<long>(s.dim), s.massive, static_cast<long>(s.dim),
                    s.check_layer, s.before, s.after);
        found.push_back({{"layer", s.layer}, {"expert", s.expert}, {"dim", s.dim}, {"contribution", s.contribution}, {"massive", s.massive},
                         {"check_layer", s.check_layer}, {"before", s.before}, {"after", s.after}});
    }
    if (!r.found.empty())
        std::printf("all of them routed around: perplexity %.4f -> %.4f, attention on the first token %.4f -> %.4f\n", r.ppl_original,
                    r.ppl_pruned, r.attention_first_original, r.attention_first_pruned);
    std::printf("\n%s\n", r.note.c_str());
    if (!a.json.empty()) {
        nlohmann::json j = {{"experts", experts}, {"super_experts", found}, {"note", r.note}};
        if (!r.found.empty()) {
            j["ppl_original"] = r.ppl_original;
            j["ppl_pruned"] = r.ppl_pruned;
            j["attention_on_first_token_original"] = r.attention_first_original;
            j["attention_on_first_token_pruned"] = r.attention_first_pruned;
        }
        massact::io::write_text_file_atomic(a.json, j.dump(1) + "\n");
    }
    return 0;
}

inline void add_superexpert(CLI::App& app, SuperExpertArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("superexpert",
                                   "Find the MoE experts that write the massive activations (Su et al. 2025) and prune them");
    cmd->add_option("model", a.model, "Hugging Face model directory or .gguf file (a mixture of experts)")->capture_default_str();
    add_data_options(cmd, a.data);
    add_detector_options(cmd, a.detector);
    cmd->add_option("--expert-share", a.min_share, "A candidate writes at least this share of the massive value at its layer")
        ->capture_default_str();
    cmd->add_option("--destroyed", a.destroyed, "A super expert: routing around it leaves at most this share of the massive value")
        ->capture_default_str();
    cmd->add_option("--json", a.json, "Write the experts and the findings to this file");
    add_batch_option(cmd, a.batch);
    cmd->callback([&] { action = [&] { return run_superexpert(a); }; });
}

}  // namespace massact_tool

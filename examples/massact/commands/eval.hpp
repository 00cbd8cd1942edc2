// massact eval MODEL_DIR --ids-file FILE[:TENSOR] [--json OUT] - perplexity of each row and overall.
#pragma once

#include "common.hpp"

#include "../input.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>

namespace massact_tool {

struct EvalArgs {
    std::string model = default_model();
    TokenInput input;
    std::string json;
    Index batch = 8;
    std::string softmax;
    std::string precision = "f32";
    bool allow_nonfinite = false;
};


inline int run_eval(EvalArgs& a) {
    const massact::Transformer m(a.model);
    const TokenBatch ids = load_tokens(a.input, a.model);
    m.validate(ids);
    massact::RunOptions run;
    run.attention = parse_softmax(a.softmax);
    run.precision = massact::kernels::precision_from_name(a.precision, "--precision");
    const auto r = massact::analysis::perplexity(m, ids, nonfinite_hooks(a.allow_nonfinite, a.model), run, a.batch);
    std::printf("sequences %lld x %lld tokens, %lld targets scored\n", static_cast<long long>(ids.rows()),
                static_cast<long long>(ids.cols()), static_cast<long long>(r.tokens));
    std::printf("mean NLL  %.6f\nperplexity %.6f\n", r.nll, r.ppl);
    if (!a.json.empty()) {
        nlohmann::json j = {{"model", a.model},     {"ppl", r.ppl},         {"nll", r.nll},
                            {"seq_nll", r.seq_nll}, {"tokens", r.tokens},   {"sequences", ids.rows()},
                            {"seq_len", ids.cols()}};
        massact::io::write_text_file_atomic(a.json, j.dump(1) + "\n");
    }
    return 0;
}

inline void add_eval(CLI::App& app, EvalArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("eval", "Perplexity of each sequence (all T-1 shifted targets) and overall");
    cmd->add_option("model", a.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    add_token_options(cmd, a.input);
    cmd->add_option("--json", a.json, "Write {ppl, nll, seq_nll, tokens, ...} to this file");
    add_batch_option(cmd, a.batch);
    add_softmax_option(cmd, a.softmax);
    add_precision_option(cmd, a.precision);
    add_nonfinite_option(cmd, a.allow_nonfinite);
    cmd->callback([&] { action = [&] { return run_eval(a); }; });
}

}  // namespace massact_tool

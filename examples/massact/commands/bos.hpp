// massact bos MODEL: the attention sink with and without the first token (Barbero et al. 2025), on the same content.
#pragma once

#include "common.hpp"

#include "../../plot/gnuplot.hpp"
#include "../input.hpp"
#include "scan.hpp"
#include "variants.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>

namespace massact_tool {

struct BosArgs {
    std::string model = default_model();
    DataInput data;
    DetectorArgs detector;
    std::string json, figure, softmax;
    std::int64_t bos = -1;
    Index batch = 8;
};

/// The BOS token: --bos, else the tokenizer's one-token special prefix, else the model's bos_token_id (config.json
/// or the GGUF metadata).
inline std::int64_t find_bos(const BosArgs& a, const massact::Transformer& m) {
    const massact::ModelConfig& c = m.config();
    auto check = [&](std::int64_t id, const std::string& from) {
        if (id < 0 || id >= c.vocab_size)
            throw Error(from + ": BOS token id " + std::to_string(id) + " outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
        return id;
    };
    if (a.bos >= 0) return check(a.bos, "--bos");
    if (m.has_tokenizer() && m.tokenizer().special_prefix().size() == 1) return m.tokenizer().special_prefix()[0];
    if (massact::io::is_gguf_path(a.model)) {
        const massact::io::GgufFile f(a.model);
        if (f.has("tokenizer.ggml.bos_token_id")) return check(f.get_int("tokenizer.ggml.bos_token_id"), a.model + ": tokenizer.ggml.bos_token_id");
    } else {
        const std::string path = a.model + "/config.json";
        const auto j = massact::io::read_json_file(path);
        if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer())
            return check(j["bos_token_id"].get<std::int64_t>(), path + ": field \"bos_token_id\"");
    }
    throw Error(a.model + ": no BOS token (no one-token special prefix, no bos_token_id): give --bos ID");
}

inline int run_bos(BosArgs& a) {
    const massact::Transformer m(a.model);
    const TokenBatch ids = load_data(a.data, a.model);
    m.validate(ids);
    auto opt = scan_options(a.detector, a.model);
    opt.batch = a.batch;
    opt.run.attention = parse_softmax(a.softmax);
    const auto r = massact::analysis::bos_sink(m, ids, find_bos(a, m), opt);
    std::printf("%ld sequences of %ld content tokens; BOS = %lld (%s)\n", static_cast<long>(ids.rows()),
                static_cast<long>(r.set.scans[1].seq_len), static_cast<long long>(r.bos),
                r.data_had_bos ? "the data starts with it; removed for the second scan" : "not in the data; prepended for the first scan");
    print_model_set(r.set, r.set.names);
    std::printf("\nperplexity on the %ld targets both score (the content tokens after the first): with BOS %.4f, without %.4f\n",
                static_cast<long>(r.targets), r.ppl_with(), r.ppl_without());
    if (!a.figure.empty())
        massact_plot::write_figure(a.figure, [&](const massact_plot::Figure& f) { return massact_plot::model_set(f, r.set, r.set.names); });
    if (!a.json.empty()) massact::io::write_text_file_atomic(a.json, r.to_json().dump(1) + "\n");
    return 0;
}

inline void add_bos(CLI::App& app, BosArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("bos", "The attention sink with and without the BOS token on the same content (Barbero et al. 2025)");
    cmd->add_option("model", a.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    add_data_options(cmd, a.data);
    add_detector_options(cmd, a.detector);
    add_softmax_option(cmd, a.softmax);
    cmd->add_option("--bos", a.bos, "The BOS token id (default: the tokenizer's prefix, else the model's bos_token_id)");
    cmd->add_option("--json", a.json, "Write both scans and the shared-target perplexities to this file");
    cmd->add_option("--figure", a.figure, "Write the figure (PNG, gnuplot): one curve with BOS, one without");
    add_batch_option(cmd, a.batch);
    cmd->callback([&] { action = [&] { return run_bos(a); }; });
}

}  // namespace massact_tool

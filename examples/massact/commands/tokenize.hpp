// massact tokenize MODEL_DIR [--no-special] [--json] [--] TEXT - ids and token strings.
#pragma once

#include "common.hpp"

#include "../input.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>

namespace massact_tool {

struct TokenizeArgs {
    std::string model;
    std::string text;
    std::string text_file;
    bool has_text = false;  // an empty TEXT is a text: Hugging Face encodes it to the special tokens alone
    bool no_special = false;
    bool json = false;
};

inline int run_tokenize(const TokenizeArgs& a) {
    if (a.has_text == !a.text_file.empty()) throw Error("give the TEXT argument or --text-file (one of them)");
    const auto tok = massact::text::load_tokenizer(a.model);
    const std::string text = a.text_file.empty() ? a.text : read_text_file(a.text_file, "--text-file");
    const auto ids = tok.encode(text, !a.no_special);
    if (a.json) {
        nlohmann::json toks = nlohmann::json::array();
        for (auto id : ids) toks.push_back(tok.id_to_token(id));
        nlohmann::json j = {{"ids", ids}, {"tokens", toks}};
        std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        return 0;
    }
    for (std::size_t i = 0; i < ids.size(); ++i) std::printf("%s%lld", i ? " " : "", static_cast<long long>(ids[i]));
    std::printf("\n");
    for (std::size_t i = 0; i < ids.size(); ++i) std::printf("%s%s", i ? " | " : "", tok.label(ids[i]).c_str());
    std::printf("\n%zu tokens\n", ids.size());
    return 0;
}

inline void add_tokenize(CLI::App& app, TokenizeArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("tokenize", "Encode text with a model's tokenizer (tokenizer.json or the GGUF vocabulary): ids and tokens");
    cmd->add_option("model", a.model, "Hugging Face model directory or .gguf file")->required();
    auto* text = cmd->add_option("text", a.text, "Text to encode (may be empty; put it after -- if it starts with -)");
    cmd->add_option("--text-file", a.text_file, "Encode this file instead");
    cmd->add_flag("--no-special", a.no_special, "Do not add special tokens (e.g. BOS)");
    cmd->add_flag("--json", a.json, "Print {\"ids\": [...], \"tokens\": [...]}");
    cmd->callback([&a, &action, text] {
        a.has_text = text->count() > 0;
        action = [&] { return run_tokenize(a); };
    });
}

}  // namespace massact_tool

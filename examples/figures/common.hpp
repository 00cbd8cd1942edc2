// Shared by the figure examples: where the bundled model and data are, and reading arguments.
#pragma once

#include "../plot/gnuplot.hpp"

#include <massact/massact.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace example {

struct Args {
    std::string model = MASSACT_DEFAULT_MODEL;  // argv[1]
    std::string out = ".";                      // argv[2]: folder for the PNG
};

inline Args args(int argc, char** argv) {
    Args a;
    if (argc > 1) a.model = argv[1];
    if (argc > 2) a.out = argv[2];
    return a;
}

inline std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

/// The prompt of Sun et al.'s Figure 1, as a [1, T] batch, with readable token labels.
inline massact::TokenBatch prompt(const massact::text::Tokenizer& tok, std::vector<std::string>& labels,
                                  const std::string& text = "Summer is warm. Winter is cold.") {
    const auto ids = tok.encode(text);
    massact::TokenBatch b(1, static_cast<massact::Index>(ids.size()));
    for (std::size_t i = 0; i < ids.size(); ++i) {
        b(0, static_cast<massact::Index>(i)) = ids[i];
        labels.push_back(tok.label(ids[i]));
    }
    return b;
}

/// 32 windows of 256 tokens of the bundled val.txt (the --data protocol of the README).
inline massact::TokenBatch windows(const massact::text::Tokenizer& tok, massact::Index n = 32) {
    return massact::analysis::text_windows(tok, read_file(MASSACT_DEFAULT_DATA), 256, n);
}

/// The model's short name (the folder's last component) for titles.
inline std::string model_name(const std::string& dir) { return dir.substr(dir.find_last_of('/') + 1); }

/// Where the first token's massive activations are, from a scan of 16 windows of val.txt: the layer
/// where they appear and their dims. Without any, the layer with the largest top-1 / median ratio and
/// no dims.
inline massact::analysis::FirstTokenMassive massive_site(const massact::Transformer& model, const massact::text::Tokenizer& tok) {
    massact::analysis::ScanOptions opt;
    opt.delimiters = massact::analysis::delimiter_ids(tok);
    const auto r = massact::analysis::scan(model, windows(tok, 16), opt);
    auto site = massact::analysis::first_token_massive(r);
    if (site.layer < 0) site.layer = massact::analysis::most_outlying_layer(r);
    std::printf("scan: %s\n", r.detector_note.c_str());
    return site;
}

}  // namespace example

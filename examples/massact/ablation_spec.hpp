// Parsing the intervention flags shared by ablate and scan (--layer, --dims, --tokens, --mode).
#pragma once

#include "images.hpp"
#include "input.hpp"
#include "paths.hpp"

#include <massact/massact.hpp>

namespace massact_tool {

using massact::analysis::Intervention;
using massact::analysis::TokenSelection;
using massact::parse_number;  // a whole-string finite float, or an error naming the flag and its value

inline std::vector<Index> parse_index_list(const std::string& s, const std::string& flag) {
    std::vector<Index> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) {
        std::size_t pos = 0;
        long long v = -1;
        try {
            v = std::stoll(item, &pos);
        } catch (const std::exception&) {
            pos = 0;
        }
        if (item.empty() || pos != item.size()) throw Error(flag + ": \"" + item + "\" is not an integer");
        out.push_back(static_cast<Index>(v));
    }
    if (out.empty()) throw Error(flag + ": empty list");
    return out;
}

inline int check_layer(int layer, const massact::Transformer& m, const std::string& flag = "--layer") {
    if (layer < 0 || layer >= m.config().num_layers)
        throw Error(flag + ": layer " + std::to_string(layer) + " out of range [0, " + std::to_string(m.config().num_layers) + ")");
    return layer;
}

/// Features per token at a hook site (every axis after [N, T]): hidden_size for the residual stream,
/// intermediate_size for MLP sites, heads * head_dim for q/z, ...
inline Index site_width(const massact::Transformer& m, const std::string& site) {
    const auto shape = m.hook_shape(site, 1, 1);
    Index w = 1;
    for (std::size_t i = 2; i < shape.size(); ++i) w *= shape[i];
    return w;
}

inline std::vector<Index> check_dims(const std::string& spec, Index width, bool allow_all) {
    if (allow_all && spec == "all") return {};
    const auto dims = parse_index_list(spec, "--dims");
    for (Index d : dims)
        if (d < 0 || d >= width)
            throw Error("--dims: dim " + std::to_string(d) + " out of range [0, " + std::to_string(width) + ")");
    return dims;
}

inline TokenSelection parse_tokens(const std::string& spec, const std::string& model_dir, Index T) {
    TokenSelection s;
    if (spec.empty()) throw Error("--tokens: empty token selection");
    if (spec == "first") {
        s.kind = TokenSelection::Kind::First;
    } else if (spec == "all") {
        s.kind = TokenSelection::Kind::All;
    } else if (spec == "delimiter" || spec == "first-delimiter") {
        s.kind = TokenSelection::Kind::FirstDelimiter;
        s.delimiters = massact::analysis::delimiter_ids(massact::text::load_tokenizer(model_dir));
    } else if (spec.rfind("above=", 0) == 0) {
        s.kind = TokenSelection::Kind::Above;
        try {
            s.threshold = std::stof(spec.substr(6));
        } catch (const std::exception&) {
            throw Error("--tokens: \"" + spec + "\": above=X needs a number");
        }
    } else {
        s.kind = TokenSelection::Kind::Indices;
        s.indices = parse_index_list(spec, "--tokens");
        for (Index i : s.indices)
            if (i < 0 || i >= T)
                throw Error("--tokens: position " + std::to_string(i) + " out of range [0, " + std::to_string(T) + ")");
    }
    return s;
}

inline void parse_mode(const std::string& spec, Intervention& iv) {
    auto number = [&](const std::string& v) { return parse_number(v, "--mode", spec); };
    if (spec == "zero") iv.mode = Intervention::Mode::Zero;
    else if (spec == "mean") iv.mode = Intervention::Mode::Mean;
    else if (spec.rfind("value=", 0) == 0) { iv.mode = Intervention::Mode::Set; iv.value = number(spec.substr(6)); }
    else if (spec.rfind("scale=", 0) == 0) { iv.mode = Intervention::Mode::Scale; iv.value = number(spec.substr(6)); }
    else if (spec.rfind("add=", 0) == 0) { iv.mode = Intervention::Mode::Add; iv.value = number(spec.substr(4)); }
    else throw Error("--mode: unknown mode \"" + spec + "\" (zero, mean, value=X, scale=S, add=X)");
}

struct AblateArgs {
    std::string model = default_model();
    DataInput data;
    int layer = -1;
    std::string dims, tokens = "first", mode = "zero", site, json;
    PixelInput pixels;  // vision models: images instead of text
    Index batch = 8;
    bool no_decomposition = false;
};

/// Build the intervention of `ablate` (validated; mean values computed on `ids`).
inline Intervention build_ablation(const AblateArgs& a, const massact::Transformer& m, const TokenBatch& ids) {
    Intervention iv;
    check_layer(a.layer, m);
    iv.site = a.site.empty() ? Intervention::resid_post(a.layer) : a.site;
    {  // the site first: no forward pass (for mean values) before it is known to exist and be editable
        Intervention probe;
        probe.site = iv.site;
        probe.validate(m);
    }
    iv.dims = check_dims(a.dims, site_width(m, iv.site), true);
    iv.tokens = parse_tokens(a.tokens, a.model, ids.cols());
    parse_mode(a.mode, iv);
    if (iv.mode == Intervention::Mode::Mean) iv.values = massact::analysis::dataset_mean(m, ids, iv, a.batch);
    iv.validate(m);
    return iv;
}

}  // namespace massact_tool

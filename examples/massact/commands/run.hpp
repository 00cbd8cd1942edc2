// massact run MODEL_DIR (--ids | --ids-file | --prompt | --text-file | --pixels | --images) --dump OUT.safetensors
//             [--hooks GLOB,...]
// Writes input_ids (pixel_values for a vision model) and every hook site matching the globs, under the
// site names.
#pragma once

#include "common.hpp"

#include "../images.hpp"
#include "../input.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <map>

namespace massact_tool {

struct RunArgs {
    std::string model = default_model();
    TokenInput input;
    PixelInput pixels;
    std::string dump;
    std::string hooks = "*hook_resid_post,*hook_pattern,ln_final.hook_normalized,logits";
    bool allow_nonfinite = false;
};

/// A vision model: pixels in, the sites and pixel_values out ([N, ...] always: images come as a batch).
inline int run_run_pixels(RunArgs& a, const massact::Transformer& m, const std::vector<std::string>& globs) {
    const massact::PixelBatch px = load_pixels_input(a.pixels, a.model, m);
    m.validate(px);
    std::vector<std::string> kept;
    for (const auto& g : globs)
        if (g != "logits") kept.push_back(g);  // (the default list names logits; a vision model has none)
    if (kept.empty()) throw Error("--hooks: a vision model has no logits; name other sites");
    const massact::ActivationCache cache = massact::run_with_cache(m, px, kept, {}, nonfinite_hooks(a.allow_nonfinite, a.model));
    massact::io::SafetensorsWriter w;
    w.add_f32("pixel_values", {px.n, px.channels, px.height, px.width}, px.data.data());
    for (const auto& name : cache.order) {
        const auto& c = cache.at(name);
        w.add_f32(name, std::vector<std::int64_t>(c.shape.begin(), c.shape.end()), c.data.data());
    }
    w.set_metadata("model", a.model);
    w.write(a.dump);
    std::printf("wrote %s: pixel_values and %zu hook tensors\n", a.dump.c_str(), cache.order.size());
    return 0;
}

inline int run_run(RunArgs& a) {
    const massact::Transformer m(a.model);
    if (m.config().is_vision() || a.pixels.given()) {
        const auto globs = split_commas(a.hooks);
        if (globs.empty()) throw Error("--hooks: no pattern given");
        return run_run_pixels(a, m, globs);
    }
    const TokenBatch ids = load_tokens(a.input, a.model);
    m.validate(ids);
    const auto globs = split_commas(a.hooks);
    if (globs.empty()) throw Error("--hooks: no pattern given");
    massact::RunOptions opt;
    opt.logits = false;  // the logits site is a hook: computed only when asked for
    const massact::ActivationCache cache = massact::run_with_cache(m, ids, globs, opt, nonfinite_hooks(a.allow_nonfinite, a.model));

    massact::io::SafetensorsWriter w;
    std::vector<std::int64_t> id_shape = a.input.single ? std::vector<std::int64_t>{ids.cols()}
                                                        : std::vector<std::int64_t>{ids.rows(), ids.cols()};
    w.add_i64("input_ids", id_shape, ids.data());
    for (const auto& name : cache.order) {
        const auto& c = cache.at(name);
        std::vector<std::int64_t> shape(c.shape.begin() + (a.input.single ? 1 : 0), c.shape.end());
        w.add_f32(name, shape, c.data.data());
    }
    w.set_metadata("model", a.model);
    w.write(a.dump);
    std::printf("wrote %s: input_ids and %zu hook tensors\n", a.dump.c_str(), cache.order.size());
    return 0;
}

inline void add_run(CLI::App& app, RunArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("run", "Run a forward pass and dump hook-site tensors to safetensors");
    cmd->add_option("model", a.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    add_token_options(cmd, a.input);
    add_pixel_options(cmd, a.pixels);
    cmd->add_option("--dump", a.dump, "Output .safetensors file")->required();
    cmd->add_option("--hooks", a.hooks, "Comma-separated globs of hook sites to dump")->capture_default_str();
    add_nonfinite_option(cmd, a.allow_nonfinite);
    cmd->callback([&] { action = [&] { return run_run(a); }; });
}

}  // namespace massact_tool

// massact run MODEL_DIR (--ids | --ids-file) --dump OUT.safetensors [--hooks GLOB,...]
// Writes input_ids and every hook site matching the globs, under the site names.
#pragma once

#include "common.hpp"

#include "../input.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <map>

namespace massact_tool {

struct RunArgs {
    std::string model = MASSACT_DEFAULT_MODEL;
    TokenInput input;
    std::string dump;
    std::string hooks = "*hook_resid_post,*hook_pattern,ln_final.hook_normalized,logits";
    bool allow_nonfinite = false;
};

inline int run_run(RunArgs& a) {
    const massact::Transformer m(a.model);
    const TokenBatch ids = load_tokens(a.input, a.model);
    m.validate(ids);
    const auto globs = split_commas(a.hooks);
    if (globs.empty()) throw Error("--hooks: no pattern given");
    massact::RunOptions opt;
    opt.logits = false;  // the logits site is a hook: computed only when asked for
    const massact::ActivationCache cache = massact::run_with_cache(m, ids, globs, opt, nonfinite_hooks(a.allow_nonfinite));

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
    cmd->add_option("--dump", a.dump, "Output .safetensors file")->required();
    cmd->add_option("--hooks", a.hooks, "Comma-separated globs of hook sites to dump")->capture_default_str();
    add_nonfinite_option(cmd, a.allow_nonfinite);
    cmd->callback([&] { action = [&] { return run_run(a); }; });
}

}  // namespace massact_tool

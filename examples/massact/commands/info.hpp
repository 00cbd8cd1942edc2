// massact info MODEL_DIR - architecture, sizes, dtypes, parameter count.
#pragma once

#include "common.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <map>

namespace massact_tool {

struct InfoArgs {
    std::string model = default_model();
    bool paths = false;
};

/// Where this massact is and what it found (massact info --paths).
inline int print_paths() {
    const DataDir& d = data_dir();
    std::printf("%-20s%s\n", "version", massact::version());
    std::printf("%-20s%s\n", "executable", executable_dir().c_str());
    std::printf("%-20s%s\n", "data", d.path.empty() ? "(none)" : d.path.c_str());
    std::printf("%-20s%s\n", "found", d.how.c_str());
    std::printf("%-20s%s\n", "default model", default_model().c_str());
    std::printf("%-20s%s\n", "default data", default_data().c_str());
    return d.path.empty() ? 1 : 0;
}

inline int run_info(const InfoArgs& a) {
    if (a.paths) return print_paths();
    const massact::Transformer m(a.model);
    const auto& c = m.config();
    const auto& ck = m.checkpoint();
    std::map<std::string, std::int64_t> by_dtype;
    std::int64_t params = 0;
    for (const auto& name : ck.names()) {
        const auto& t = ck.tensor(name);
        by_dtype[massact::io::dtype_name(t.dtype)] += t.numel();
        params += t.numel();
    }
    std::printf("%-20s%s\n", "model", a.model.c_str());
    std::printf("%-20s%s\n", "model_type", c.model_type.c_str());
    std::printf("%-20s%d\n", "layers", c.num_layers);
    std::printf("%-20s%d\n", "hidden size", c.hidden_size);
    std::printf("%-20s%d\n", "vocabulary", c.vocab_size);
    for (const auto& kv : massact::describe_blocks(c)) std::printf("%-20s%s\n", kv.first.c_str(), kv.second.c_str());
    if (massact::io::is_gguf_path(a.model)) {
        const massact::io::GgufFile g(a.model);
        std::printf("files          GGUF version %u, architecture %s, %zu tensors, quantized tensors dequantized per use\n", g.version(),
                    g.get_string("general.architecture").c_str(), g.tensors().size());
    } else {
        std::printf("files          %zu safetensors shard(s)\n", ck.num_shards());
    }
    std::printf("dtypes        ");
    for (const auto& kv : by_dtype) std::printf(" %s: %lld", kv.first.c_str(), static_cast<long long>(kv.second));
    std::printf("\nparameters     %lld (%.2f M)\n", static_cast<long long>(params), params / 1e6);
    return 0;
}

inline void add_info(CLI::App& app, InfoArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("info", "Architecture, sizes, dtypes and parameter count of a model");
    cmd->add_option("model", a.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    cmd->add_flag("--paths", a.paths, "Print where massact found its bundled models and data, and exit (status 1 when nowhere)");
    cmd->callback([&] { action = [&] { return run_info(a); }; });
}

}  // namespace massact_tool

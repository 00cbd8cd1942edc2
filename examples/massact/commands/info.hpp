// massact info MODEL_DIR - architecture, sizes, dtypes, parameter count.
#pragma once

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <map>

namespace massact_tool {

struct InfoArgs {
    std::string model = MASSACT_DEFAULT_MODEL;
};

inline int run_info(const InfoArgs& a) {
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
    auto yes = [](bool b) { return b ? "yes" : "no"; };
    std::printf("model          %s\n", a.model.c_str());
    std::printf("model_type     %s (%s family)\n", c.model_type.c_str(), c.family == massact::Family::GPT2 ? "GPT-2" : "Llama");
    std::printf("layers         %d\n", c.num_layers);
    std::printf("hidden size    %d\n", c.hidden_size);
    std::printf("heads          %d query, %d key/value (head_dim %d)\n", c.num_heads, c.num_kv_heads, c.head_dim);
    std::printf("MLP width      %d (%s)\n", c.intermediate_size,
                c.act == massact::ActivationFn::SiLU ? "SwiGLU" : c.act == massact::ActivationFn::GeluTanh ? "GELU tanh" : "GELU erf");
    std::printf("vocabulary     %d\n", c.vocab_size);
    std::printf("norm           %s, eps %g\n", c.norm == massact::NormKind::RMSNorm ? "RMSNorm" : "LayerNorm", c.norm_eps);
    if (c.family == massact::Family::GPT2) {
        std::printf("positions      learned, %d\n", c.max_positions);
    } else {
        const char* sc = c.rope_scaling == massact::RopeScaling::None ? "none"
                         : c.rope_scaling == massact::RopeScaling::Linear ? "linear" : "llama3";
        std::printf("positions      RoPE theta %g, scaling %s (factor %g)\n", c.rope_theta, sc, c.rope_factor);
    }
    int windowed = 0;
    for (int w : c.sliding_window) windowed += w > 0;
    if (windowed) std::printf("sliding window %d (%d of %d layers)\n", c.sliding_window.back() ? c.sliding_window.back() : c.sliding_window.front(), windowed, c.num_layers);
    std::printf("biases         qkv %s, output %s, mlp %s\n", yes(c.qkv_bias), yes(c.o_bias), yes(c.mlp_bias));
    std::printf("tied embedding %s\n", yes(c.tie_embeddings));
    const char* sink = c.sink == massact::SinkKind::KVBias ? "explicit key/value bias" : c.sink == massact::SinkKind::Logit ? "learned sink logit" : "none";
    std::printf("attention sink %s\n", sink);
    std::printf("files          %zu safetensors shard(s)\n", ck.num_shards());
    std::printf("dtypes        ");
    for (const auto& kv : by_dtype) std::printf(" %s: %lld", kv.first.c_str(), static_cast<long long>(kv.second));
    std::printf("\nparameters     %lld (%.2f M)\n", static_cast<long long>(params), params / 1e6);
    return 0;
}

inline void add_info(CLI::App& app, InfoArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("info", "Architecture, sizes, dtypes and parameter count of a model");
    cmd->add_option("model", a.model, "Hugging Face model directory")->capture_default_str();
    cmd->callback([&] { action = [&] { return run_info(a); }; });
}

}  // namespace massact_tool

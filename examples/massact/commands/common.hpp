// Pieces every massact command shares: number formatting, the --batch and --softmax options, and the
// model's delimiter tokens (one place each).
#pragma once

#include "../ablation_spec.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace massact_tool {

/// v with `prec` decimals.
inline std::string fmt(double v, int prec = 3) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", prec, v);
    return b;
}

/// "a,b,,c" -> {"a", "b", "c"}.
inline std::vector<std::string> split_commas(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

/// --batch N: sequences per forward pass, a positive integer (checked by CLI11 before the command runs).
inline void add_batch_option(CLI::App* cmd, Index& batch) {
    cmd->add_option("--batch", batch, "Sequences per forward pass")->check(CLI::PositiveNumber)->capture_default_str();
}

/// --softmax: an attention override (massact::parse_attention_override spells the variants).
inline massact::AttentionOverride parse_softmax(const std::string& spec) { return massact::parse_attention_override(spec, "--softmax"); }

inline void add_softmax_option(CLI::App* cmd, std::string& spec) {
    cmd->add_option("--softmax", spec,
                    "Attention function: standard (the model's own), softmax, softmax1, clipped[:zeta,gamma], sink=X (an extra logit), "
                    "softpick (Zuhri et al. 2025) or sigmoid[:B] (sigmoid(s + B), unnormalised; B defaults to 0)");
}

/// --precision f32 | bf16 | q8 | auto: how activations meet weights (RunOptions::precision).
inline void add_precision_option(CLI::App* cmd, std::string& precision) {
    cmd->add_option("--precision", precision,
                    "f32: float32 products (the exact path, the reference); bf16: activations and weights rounded to bfloat16, "
                    "float32 sums; q8: a quantized file's weights times 8-bit activations in integers when decoding "
                    "(llama.cpp's path); auto: the fastest that keeps the weights' own precision (q8 for quantized GGUF, "
                    "bf16 for BF16 weights, else f32)")
        ->capture_default_str();
}

/// --kv-cache f32|f16|bf16: the precision of the keys and values a KV cache holds.
inline void add_kv_cache_option(CLI::App* cmd, std::string& storage) {
    cmd->add_option("--kv-cache", storage,
                    "Precision of the KV cache's keys and values: f32 (exact), f16 (llama.cpp's default) or bf16; 16 bits halve "
                    "its memory and the bytes attention reads per token")
        ->capture_default_str();
}

inline void add_kv_quant_option(CLI::App* cmd, std::string& spec) {
    cmd->add_option("--kv-quant", spec,
                    "Quantize the KV cache (asymmetric, decoded values attended): kv4 / k2,v4 (bits: 2, 3, 4, 8), k-per-channel "
                    "(default) or k-per-token, v-per-token (default) or v-per-channel, group-tokens=32 (per channel: tokens per "
                    "group, the newest stay float until it fills: KIVI), group-channels=N (per token; default a head), pre-rope "
                    "(keys before RoPE: KVQuant), keep-first=S (the first S tokens in float: IntactKV)");
}

/// --allow-nonfinite: keep going when activations hold NaN or Inf (by default the first one stops the
/// command with its site, layer, sequence and position).
inline void add_nonfinite_option(CLI::App* cmd, bool& allow) {
    cmd->add_flag("--allow-nonfinite", allow, "Continue when activations hold NaN or Inf (default: stop at the first)");
}
inline massact::Hooks nonfinite_hooks(bool allow, const std::string& model) {
    return allow ? massact::Hooks{} : massact::analysis::finite_check_hooks(model);
}

/// The delimiter token ids ('.' and newline) of a model's own tokenizer.json; empty without one.
inline std::set<massact::text::TokenId> model_delimiters(const std::string& model_dir) {
    if (!massact::text::has_tokenizer(model_dir)) return {};
    return massact::analysis::delimiter_ids(massact::text::load_tokenizer(model_dir));
}

}  // namespace massact_tool

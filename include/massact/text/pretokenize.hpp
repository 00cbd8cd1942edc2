// massact/text/pretokenize.hpp - the regex splits of byte-level BPE tokenizers, as
// hand-written scanners over code points (std::regex has neither \p{L} nor look-ahead).
//
// GPT-2 (ByteLevel use_regex, and Split with the same pattern):
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// Llama-3 (K = 3) and Qwen2 (K = 1) Split patterns:
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,K}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
#pragma once

#include "massact/text/unicode.hpp"

#include <string_view>
#include <vector>

namespace massact::text {

enum class SplitPattern { GPT2, Llama3, Qwen2 };

inline constexpr std::string_view kGPT2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

/// Split `s` into the matches of the pattern; returns byte lengths of consecutive pieces
/// (the patterns match every character, so the pieces tile `s`).
inline std::vector<std::size_t> split_pattern(std::string_view s, SplitPattern pat) {
    // Decode once: code points and their byte offsets.
    std::vector<std::uint32_t> cp;
    std::vector<std::size_t> off;
    cp.reserve(s.size());
    off.reserve(s.size() + 1);
    for (std::size_t i = 0; i < s.size();) {
        std::uint32_t c;
        off.push_back(i);
        i += decode_utf8(s, i, c);
        cp.push_back(c);
    }
    off.push_back(s.size());
    const std::size_t n = cp.size();
    auto L = [&](std::size_t k) { return k < n && is_letter(cp[k]); };
    auto N = [&](std::size_t k) { return k < n && is_number(cp[k]); };
    auto S = [&](std::size_t k) { return k < n && is_space(cp[k]); };
    auto other = [&](std::size_t k) { return k < n && !is_space(cp[k]) && !is_letter(cp[k]) && !is_number(cp[k]); };
    auto nl = [&](std::size_t k) { return k < n && (cp[k] == '\r' || cp[k] == '\n'); };
    auto lower = [&](std::size_t k) { return k < n && cp[k] < 128 ? (cp[k] | 0x20u) : 0u; };
    auto exact = [&](std::size_t k) { return k < n ? cp[k] : 0u; };

    const bool gpt2 = pat == SplitPattern::GPT2;
    const std::size_t max_digits = pat == SplitPattern::Llama3 ? 3 : (pat == SplitPattern::Qwen2 ? 1 : SIZE_MAX);
    std::vector<std::size_t> out;
    std::size_t i = 0;
    while (i < n) {
        std::size_t j = i;
        // Contractions ('s 't 're 've 'm 'll 'd; case-insensitive for Llama-3/Qwen2).
        if (cp[i] == '\'') {
            auto c = [&](std::size_t k) { return gpt2 ? exact(k) : lower(k); };
            const auto a = c(i + 1), b = c(i + 2);
            if (a == 's' || a == 't' || a == 'm' || a == 'd') j = i + 2;
            else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) j = i + 3;
        }
        if (j == i && gpt2) {
            const std::size_t k = (cp[i] == ' ' && i + 1 < n) ? i + 1 : i;  // optional leading space
            if (L(k)) { j = k; while (L(j)) ++j; }
            else if (N(k)) { j = k; while (N(j)) ++j; }
            else if (other(k)) { j = k; while (other(j)) ++j; }
        } else if (j == i) {
            if (L(i)) {
                j = i; while (L(j)) ++j;
            } else if (!nl(i) && !N(i) && L(i + 1)) {  // [^\r\n\p{L}\p{N}]?\p{L}+
                j = i + 1; while (L(j)) ++j;
            } else if (N(i)) {
                j = i; while (N(j) && j - i < max_digits) ++j;
            } else {
                const std::size_t k = (cp[i] == ' ' && other(i + 1)) ? i + 1 : i;
                if (other(k)) {
                    j = k; while (other(j)) ++j;
                    while (nl(j)) ++j;
                }
            }
        }
        if (j == i && S(i)) {
            std::size_t k = i;
            while (S(k)) ++k;  // whitespace run [i, k)
            if (!gpt2) {       // \s*[\r\n]+ : up to the last newline of the run
                std::size_t last = k;
                for (std::size_t m = i; m < k; ++m) if (nl(m)) last = m;
                if (last != k) j = last + 1;
            }
            if (j == i) j = (k == n || k - i == 1) ? k : k - 1;  // \s+(?!\S) | \s+
        }
        if (j == i) j = i + 1;  // unreachable for these patterns; never loop forever
        out.push_back(off[j] - off[i]);
        i = j;
    }
    return out;
}

}  // namespace massact::text

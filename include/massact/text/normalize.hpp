// massact/text/normalize.hpp - the normalizers of tokenizer.json as a list of steps applied in
// order: Unicode forms (utf8proc), Lowercase, Strip, Replace (string or regex), Prepend.
//
// Invalid UTF-8 (which Hugging Face cannot even receive: its input is a Rust &str) passes through
// unchanged: the valid runs around an invalid byte are normalised on their own.
#pragma once

#include "massact/core/error.hpp"
#include "massact/text/regex.hpp"
#include "massact/text/unicode.hpp"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace massact::text {

enum class UnicodeForm { NFC, NFD, NFKC, NFKD };

namespace detail {

/// Apply `f` to each maximal run of valid UTF-8 in `s`; invalid bytes are copied as they are.
template <typename F>
std::string map_valid_runs(std::string_view s, F&& f) {
    std::string out;
    out.reserve(s.size());
    std::size_t run = 0, i = 0;
    while (i < s.size()) {
        std::uint32_t cp;
        const std::size_t len = decode_utf8(s, i, cp);
        if (cp >= kInvalidByte) {
            out += f(s.substr(run, i - run));
            out.push_back(s[i]);
            run = i + 1;
        }
        i += len;
    }
    out += f(s.substr(run));
    return out;
}

inline std::string utf8proc_apply(std::string_view s, int options) {
    if (s.empty()) return {};
    utf8proc_uint8_t* dst = nullptr;
    const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                                &dst, static_cast<utf8proc_option_t>(options));
    if (n < 0) throw Error(std::string("Unicode normalisation: ") + utf8proc_errmsg(n));
    std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(dst, &std::free);
    return std::string(reinterpret_cast<const char*>(dst), static_cast<std::size_t>(n));
}

}  // namespace detail

/// `s` in Unicode normalisation form `form`.
inline std::string unicode_normalize(std::string_view s, UnicodeForm form) {
    int options = UTF8PROC_STABLE;
    switch (form) {
        case UnicodeForm::NFC: options |= UTF8PROC_COMPOSE; break;
        case UnicodeForm::NFD: options |= UTF8PROC_DECOMPOSE; break;
        case UnicodeForm::NFKC: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
        case UnicodeForm::NFKD: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
    }
    return detail::map_valid_runs(s, [&](std::string_view run) { return detail::utf8proc_apply(run, options); });
}

/// Simple (one code point to one code point) Unicode lowercase, as Rust's char::to_lowercase for
/// all but a handful of characters (U+0130 lowercases to i + U+0307 there).
inline std::string unicode_lowercase(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        std::uint32_t cp;
        const std::size_t len = decode_utf8(s, i, cp);
        if (cp >= kInvalidByte) out.push_back(s[i]);
        else if (cp == 0x130) out += "i\xCC\x87";
        else append_utf8(out, static_cast<std::uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
        i += len;
    }
    return out;
}

/// `s` without leading (left) and/or trailing (right) White_Space characters.
inline std::string_view strip_spaces(std::string_view s, bool left, bool right) {
    if (left) s.remove_prefix(leading_spaces(s));
    if (right) s.remove_suffix(trailing_spaces(s));
    return s;
}

/// One normalizer of tokenizer.json.
struct NormalizerStep {
    enum class Kind { Unicode, Lowercase, Strip, Replace, Prepend };
    Kind kind = Kind::Unicode;
    UnicodeForm form = UnicodeForm::NFC;  // Unicode
    bool left = true, right = true;      // Strip
    std::shared_ptr<const Regex> pattern;  // Replace
    std::string content;                   // Replace: the replacement; Prepend: the prefix

    std::string apply(std::string s) const {
        switch (kind) {
            case Kind::Unicode: return unicode_normalize(s, form);
            case Kind::Lowercase: return unicode_lowercase(s);
            case Kind::Strip: return std::string(strip_spaces(s, left, right));
            case Kind::Replace: return pattern->replace_all(s, content);
            case Kind::Prepend: return s.empty() ? s : content + s;
        }
        return s;
    }
};

/// A Sequence of normalizers (an empty one changes nothing).
inline std::string normalize(std::string s, const std::vector<NormalizerStep>& steps) {
    for (const auto& step : steps) s = step.apply(std::move(s));
    return s;
}

}  // namespace massact::text

// massact/text/unicode.hpp - UTF-8 decoding/encoding and the character classes the
// pre-tokenizers need (\p{L}, \p{N}, \s), without std::regex.
#pragma once

#include "massact/text/unicode_tables.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

namespace massact::text {

/// Bytes that are not valid UTF-8 decode one at a time to kInvalidByte + byte (outside Unicode),
/// so that a scanner never stops on bad input and byte-level encodings stay lossless.
inline constexpr std::uint32_t kInvalidByte = 0x110000;

/// Decode the code point at s[i]; returns its length in bytes (1..4).
inline std::size_t decode_utf8(std::string_view s, std::size_t i, std::uint32_t& cp) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    auto cont = [&](std::size_t k) {
        return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    };
    auto bad = [&] { cp = kInvalidByte + b0; return std::size_t{1}; };
    if (b0 < 0x80) { cp = b0; return 1; }
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        if (!cont(1)) return bad();
        cp = ((b0 & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
        return 2;
    }
    if (b0 >= 0xE0 && b0 <= 0xEF) {
        if (!cont(1) || !cont(2)) return bad();
        cp = ((b0 & 0x0Fu) << 12) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 6) |
             (static_cast<unsigned char>(s[i + 2]) & 0x3Fu);
        if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)) return bad();  // overlong or surrogate
        return 3;
    }
    if (b0 >= 0xF0 && b0 <= 0xF4) {
        if (!cont(1) || !cont(2) || !cont(3)) return bad();
        cp = ((b0 & 0x07u) << 18) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 12) |
             ((static_cast<unsigned char>(s[i + 2]) & 0x3Fu) << 6) | (static_cast<unsigned char>(s[i + 3]) & 0x3Fu);
        if (cp < 0x10000 || cp > 0x10FFFF) return bad();
        return 4;
    }
    return bad();
}

inline void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

namespace detail {
template <std::size_t N>
bool in_ranges(const tables::CodeRange (&r)[N], std::uint32_t cp) {
    const auto* it = std::upper_bound(r, r + N, cp, [](std::uint32_t v, const tables::CodeRange& x) { return v < x.first; });
    return it != r && cp <= (it - 1)->last;
}
}  // namespace detail

/// \p{L}
inline bool is_letter(std::uint32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return cp < kInvalidByte && detail::in_ranges(tables::kLetter, cp);
}
/// \p{N}
inline bool is_number(std::uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return cp < kInvalidByte && detail::in_ranges(tables::kNumber, cp);
}
/// \s: the Unicode White_Space property.
inline bool is_space(std::uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

}  // namespace massact::text

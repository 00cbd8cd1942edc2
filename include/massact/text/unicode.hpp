// massact/text/unicode.hpp - UTF-8 decoding/encoding (lossless on invalid bytes) and the
// character classes of the pre-tokenizers, from utf8proc's Unicode tables.
#pragma once

#include <utf8proc.h>

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

/// The general category of a code point (kInvalidByte + b for invalid bytes: unassigned).
inline utf8proc_category_t category(std::uint32_t cp) {
    return cp < kInvalidByte ? utf8proc_category(static_cast<utf8proc_int32_t>(cp)) : UTF8PROC_CATEGORY_CN;
}
/// \p{L}
inline bool is_letter(std::uint32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    const auto c = category(cp);
    return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
}
/// \p{N} (Rust's char::is_numeric)
inline bool is_number(std::uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    const auto c = category(cp);
    return c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO;
}
/// \p{P} or ASCII punctuation (Hugging Face's is_punc: Rust's is_ascii_punctuation || is_punctuation)
inline bool is_punctuation(std::uint32_t cp) {
    if (cp < 0x80) return (cp >= '!' && cp <= '/') || (cp >= ':' && cp <= '@') || (cp >= '[' && cp <= '`') || (cp >= '{' && cp <= '~');
    const auto c = category(cp);
    return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}
/// \s: the Unicode White_Space property (Rust's char::is_whitespace).
inline bool is_space(std::uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/// Bytes of White_Space at the start of `s`.
inline std::size_t leading_spaces(std::string_view s) {
    std::size_t i = 0;
    for (std::uint32_t cp; i < s.size();) {
        const std::size_t len = decode_utf8(s, i, cp);
        if (!is_space(cp)) break;
        i += len;
    }
    return i;
}

/// The code point that ends `s` (which must not be empty) and where it starts.
inline std::size_t last_code_point(std::string_view s, std::uint32_t& cp) {
    std::size_t k = s.size() - 1;
    while (k > 0 && s.size() - k < 4 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    if (decode_utf8(s, k, cp) != s.size() - k) {  // not a whole character: the last byte alone
        k = s.size() - 1;
        decode_utf8(s, k, cp);
        if ((static_cast<unsigned char>(s[k]) & 0x80) != 0) cp = kInvalidByte + static_cast<unsigned char>(s[k]);
    }
    return k;
}

/// Bytes of White_Space at the end of `s`.
inline std::size_t trailing_spaces(std::string_view s) {
    std::size_t e = s.size();
    for (std::uint32_t cp; e > 0;) {
        const std::size_t k = last_code_point(s.substr(0, e), cp);
        if (!is_space(cp)) break;
        e = k;
    }
    return s.size() - e;
}

}  // namespace massact::text

// massact/text/decode.hpp - GPT-2's byte <-> character map and the decoders of tokenizer.json,
// each a step from token strings to token strings (ByteLevel, Metaspace, Replace, ByteFallback,
// Fuse, Strip), as Hugging Face's decode_chain.
#pragma once

#include "massact/text/regex.hpp"
#include "massact/text/unicode.hpp"

#include <array>
#include <cctype>
#include <memory>
#include <string>
#include <vector>

namespace massact::text {

/// GPT-2's bytes_to_unicode: printable latin-1 bytes map to themselves, the other 68 to U+0100 + n.
constexpr std::array<std::uint32_t, 256> bytes_to_unicode() {
    std::array<std::uint32_t, 256> t{};
    std::uint32_t extra = 0;
    for (std::uint32_t b = 0; b < 256; ++b) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        t[b] = printable ? b : 0x100 + extra++;
    }
    return t;
}

/// The inverse map: characters below U+0200 to bytes, -1 elsewhere.
constexpr std::array<int, 0x200> unicode_to_bytes() {
    std::array<int, 0x200> u{};
    for (auto& x : u) x = -1;
    const auto m = bytes_to_unicode();
    for (int b = 0; b < 256; ++b) u[m[static_cast<std::size_t>(b)]] = b;
    return u;
}

/// Bytes as byte-level characters.
inline std::string byte_level_encode(std::string_view bytes) {
    static constexpr auto map = bytes_to_unicode();
    std::string s;
    s.reserve(bytes.size() * 2);
    for (unsigned char b : bytes) append_utf8(s, map[b]);
    return s;
}

struct DecoderStep {
    enum class Kind { ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip };
    Kind kind = Kind::Fuse;
    std::string replacement;               // Metaspace
    bool prepend = true;                   // Metaspace: drop the space added at the start
    std::shared_ptr<const Regex> pattern;  // Replace
    std::string content;                   // Replace: the replacement; Strip: what is stripped
    int start = 0, stop = 0;               // Strip: at most this many at each end

    std::vector<std::string> apply(std::vector<std::string> toks) const {
        switch (kind) {
            case Kind::ByteLevel: return {byte_level_decode(toks)};
            case Kind::Metaspace: {
                const Regex marker(replacement, Regex::Syntax::Literal);
                for (std::size_t i = 0; i < toks.size(); ++i) {
                    toks[i] = marker.replace_all(toks[i], " ");
                    if (i == 0 && prepend && !toks[i].empty() && toks[i][0] == ' ') toks[i].erase(0, 1);
                }
                return toks;
            }
            case Kind::Replace:
                for (auto& t : toks) t = pattern->replace_all(t, content);
                return toks;
            case Kind::ByteFallback: return byte_fallback(std::move(toks));
            case Kind::Fuse: {
                std::string all;
                for (const auto& t : toks) all += t;
                return {all};
            }
            case Kind::Strip:
                for (auto& t : toks) {
                    for (int k = 0; k < start && t.compare(0, content.size(), content) == 0; ++k) t.erase(0, content.size());
                    for (int k = 0; k < stop && t.size() >= content.size() &&
                                    t.compare(t.size() - content.size(), content.size(), content) == 0;
                         ++k)
                        t.erase(t.size() - content.size());
                }
                return toks;
        }
        return toks;
    }

private:
    /// Byte-level characters back to bytes; other characters are kept as they are.
    static std::string byte_level_decode(const std::vector<std::string>& toks) {
        static constexpr auto unmap = unicode_to_bytes();
        std::string bytes;
        for (const auto& t : toks)
            for (std::size_t i = 0; i < t.size();) {
                std::uint32_t cp;
                const std::size_t len = decode_utf8(t, i, cp);
                const int b = cp < 0x200 ? unmap[cp] : -1;
                if (b >= 0) bytes.push_back(static_cast<char>(b));
                else bytes.append(t, i, len);
                i += len;
            }
        return bytes;
    }
    /// Runs of <0xHH> tokens become their bytes when those are valid UTF-8, else one U+FFFD each.
    static std::vector<std::string> byte_fallback(std::vector<std::string> toks) {
        std::vector<std::string> out;
        std::string pending;
        std::size_t count = 0;
        auto flush = [&] {
            if (count == 0) return;
            bool valid = true;
            for (std::size_t i = 0; i < pending.size();) {
                std::uint32_t cp;
                i += decode_utf8(pending, i, cp);
                valid = valid && cp < kInvalidByte;
            }
            if (valid) out.push_back(pending);
            else
                for (std::size_t i = 0; i < count; ++i) out.push_back("\xEF\xBF\xBD");
            pending.clear();
            count = 0;
        };
        auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
        for (auto& t : toks) {
            if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && hex(t[3]) && hex(t[4])) {
                pending.push_back(static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16)));
                ++count;
            } else {
                flush();
                out.push_back(std::move(t));
            }
        }
        flush();
        return out;
    }
};

}  // namespace massact::text

// massact/text/pretokenize.hpp - the pre-tokenizers of tokenizer.json: each step cuts every
// piece of the previous step into smaller pieces, as Hugging Face's PreTokenizedString::split.
//
// A split finds matches (a regex, a literal string, or single characters of a class), marks the
// pieces between them as non-matches, and joins or drops pieces by its `behavior`:
//   Removed             matches dropped          "a-b" on "-" -> "a", "b"
//   Isolated            every piece on its own   -> "a", "-", "b"
//   MergedWithPrevious  a match joins the piece before it   -> "a-", "b"
//   MergedWithNext      a match joins the piece after it    -> "a", "-b"
//   Contiguous          consecutive pieces of the same kind join
// `invert` swaps matches and non-matches first. Empty pieces never reach the model.
#pragma once

#include "massact/text/regex.hpp"
#include "massact/text/unicode.hpp"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace massact::text {

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

/// GPT-2's pattern, used by the ByteLevel pre-tokenizer with use_regex.
inline constexpr std::string_view kGPT2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

/// A piece of a split: its byte range and whether it is a match.
struct Piece {
    Span span;
    bool match;
};

/// The pieces of `s` around `matches` (sorted, non-overlapping), as Hugging Face's find_matches.
inline std::vector<Piece> pieces_around(std::string_view s, const std::vector<Span>& matches) {
    std::vector<Piece> out;
    std::size_t prev = 0;
    for (const Span& m : matches) {
        if (m.begin > prev) out.push_back({{prev, m.begin}, false});
        out.push_back({m, true});
        prev = m.end;
    }
    if (prev < s.size()) out.push_back({{prev, s.size()}, false});
    return out;
}

/// Every single character of `s` for which pred(code point) holds, as matches.
template <typename Pred>
std::vector<Span> char_matches(std::string_view s, Pred&& pred) {
    std::vector<Span> out;
    for (std::size_t i = 0; i < s.size();) {
        std::uint32_t cp;
        const std::size_t len = decode_utf8(s, i, cp);
        if (pred(cp)) out.push_back({i, i + len});
        i += len;
    }
    return out;
}

/// The byte ranges `behavior` keeps of the pieces (non-empty, in order).
inline std::vector<Span> apply_behavior(std::vector<Piece> pieces, SplitBehavior behavior, bool invert) {
    if (invert)
        for (auto& p : pieces) p.match = !p.match;
    std::vector<Span> out;
    switch (behavior) {
        case SplitBehavior::Removed:
            for (const auto& p : pieces)
                if (!p.match) out.push_back(p.span);
            break;
        case SplitBehavior::Isolated:
            for (const auto& p : pieces) out.push_back(p.span);
            break;
        case SplitBehavior::MergedWithPrevious: {
            bool prev_match = false;
            for (const auto& p : pieces) {
                if (p.match && !prev_match && !out.empty()) out.back().end = p.span.end;
                else out.push_back(p.span);
                prev_match = p.match;
            }
            break;
        }
        case SplitBehavior::MergedWithNext: {
            bool next_match = false;  // walk from the end: a match joins the piece after it
            for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
                if (it->match && !next_match && !out.empty()) out.back().begin = it->span.begin;
                else out.push_back(it->span);
                next_match = it->match;
            }
            std::reverse(out.begin(), out.end());
            break;
        }
        case SplitBehavior::Contiguous: {
            std::optional<bool> prev;
            for (const auto& p : pieces) {
                if (prev == p.match) out.back().end = p.span.end;
                else out.push_back(p.span);
                prev = p.match;
            }
            break;
        }
    }
    std::vector<Span> kept;
    for (const Span& sp : out)
        if (sp.end > sp.begin) kept.push_back(sp);
    return kept;
}

/// One pre-tokenizer of tokenizer.json.
struct PreTokenizerStep {
    enum class Kind { Split, Digits, Punctuation, Whitespace, WhitespaceSplit, Bert, Metaspace, ByteLevel };
    enum class Prepend { Never, First, Always };
    Kind kind = Kind::Split;
    std::shared_ptr<const Regex> pattern;  // Split; ByteLevel with use_regex; Whitespace
    SplitBehavior behavior = SplitBehavior::Isolated;
    bool invert = false;
    bool individual_digits = false;        // Digits
    bool add_prefix_space = false;         // ByteLevel
    std::string replacement;               // Metaspace
    Prepend prepend = Prepend::Always;     // Metaspace
    bool split = true;                     // Metaspace

    /// The pieces of `w`. `at_start`: `w` begins at offset 0 of the original text (Metaspace "first").
    std::vector<std::string> apply(std::string w, bool at_start) const {
        switch (kind) {
            case Kind::Split: return cut(w, pattern->find_all(w), behavior, invert);
            case Kind::Digits:
                return cut(w, char_matches(w, is_number), individual_digits ? SplitBehavior::Isolated : SplitBehavior::Contiguous, false);
            case Kind::Punctuation: return cut(w, char_matches(w, is_punctuation), behavior, false);
            case Kind::Whitespace: return cut(w, pattern->find_all(w), SplitBehavior::Removed, true);
            case Kind::WhitespaceSplit: return cut(w, char_matches(w, is_space), SplitBehavior::Removed, false);
            case Kind::Bert: {
                std::vector<std::string> out;
                for (auto& word : cut(w, char_matches(w, is_space), SplitBehavior::Removed, false))
                    for (auto& p : cut(word, char_matches(word, is_punctuation), SplitBehavior::Isolated, false)) out.push_back(std::move(p));
                return out;
            }
            case Kind::Metaspace: return metaspace(w, at_start);
            case Kind::ByteLevel:
                if (add_prefix_space && (w.empty() || w[0] != ' ')) w.insert(w.begin(), ' ');
                if (!pattern) return {std::move(w)};
                return cut(w, pattern->find_all(w), SplitBehavior::Isolated, false);
        }
        return {std::move(w)};
    }

private:
    static std::vector<std::string> cut(std::string_view w, const std::vector<Span>& matches, SplitBehavior b, bool inv) {
        std::vector<std::string> out;
        for (const Span& sp : apply_behavior(pieces_around(w, matches), b, inv)) out.emplace_back(w.substr(sp.begin, sp.end - sp.begin));
        return out;
    }
    std::vector<std::string> metaspace(const std::string& w, bool at_start) const {
        const Regex marker(replacement, Regex::Syntax::Literal);
        std::string r = Regex(" ", Regex::Syntax::Literal).replace_all(w, replacement);
        const bool starts = r.compare(0, replacement.size(), replacement) == 0;
        if (!starts && (prepend == Prepend::Always || (prepend == Prepend::First && at_start))) r = replacement + r;
        if (!split) return {std::move(r)};
        return cut(r, marker.find_all(r), SplitBehavior::MergedWithNext, false);
    }
};

}  // namespace massact::text

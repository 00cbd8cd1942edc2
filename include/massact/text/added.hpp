// massact/text/added.hpp - added tokens (special tokens, chat markers, reserved tokens) found in
// a text before the model sees it, as Hugging Face's AddedVocabulary.
//
// Matching is leftmost-longest and non-overlapping over all tokens of a set (a byte trie, so
// thousands of added tokens cost one step per byte of text). `single_word` rejects a match inside
// a word; `lstrip`/`rstrip` widen an accepted match over the White_Space before/after it.
// Tokens with `normalized: false` are matched in the raw text, the others in the normalised text.
#pragma once

#include "massact/text/regex.hpp"
#include "massact/text/unicode.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace massact::text {

using TokenId = std::int64_t;

struct AddedToken {
    std::string content;
    TokenId id = 0;
    bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

/// A span of text, or (token >= 0) an added token found there (index into the set's tokens).
struct Segment {
    Span span;
    int token = -1;
};

class AddedTokenSet {
public:
    void add(AddedToken t) {
        int node = 0;
        for (unsigned char c : t.content) {
            int next = child(node, c);
            if (next < 0) {
                next = static_cast<int>(nodes_.size());
                nodes_[static_cast<std::size_t>(node)].edges.emplace_back(c, next);
                nodes_.emplace_back();
            }
            node = next;
        }
        first_byte_[static_cast<unsigned char>(t.content[0])] = true;
        nodes_[static_cast<std::size_t>(node)].token = static_cast<int>(tokens_.size());
        tokens_.push_back(std::move(t));
    }
    bool empty() const { return tokens_.empty(); }
    const AddedToken& token(int i) const { return tokens_[static_cast<std::size_t>(i)]; }
    const std::vector<AddedToken>& tokens() const { return tokens_; }

    /// `s` cut into text segments and added-token segments (in order, covering `s`; text
    /// segments may be empty only when `s` is).
    std::vector<Segment> split(std::string_view s) const {
        std::vector<Segment> hits;
        std::size_t covered = 0;  // end of the last accepted match
        for (std::size_t pos = 0; pos < s.size();) {
            std::size_t begin = 0, end = 0;
            const int t = find(s, pos, begin, end);
            if (t < 0) break;
            pos = end;
            const AddedToken& a = token(t);
            if (a.single_word && (ends_with_word(s.substr(0, begin)) || starts_with_word(s.substr(end)))) continue;
            if (a.lstrip) begin = std::max(covered, begin - trailing_spaces(s.substr(0, begin)));
            if (a.rstrip) end += leading_spaces(s.substr(end));
            hits.push_back({{begin, end}, t});
            covered = pos = end;
        }
        std::vector<Segment> out;
        std::size_t prev = 0;
        for (const auto& h : hits) {
            if (h.span.begin > prev) out.push_back({{prev, h.span.begin}, -1});
            out.push_back(h);
            prev = h.span.end;
        }
        if (prev < s.size() || out.empty()) out.push_back({{prev, s.size()}, -1});
        return out;
    }

private:
    struct Node {
        std::vector<std::pair<unsigned char, int>> edges;
        int token = -1;
    };
    int child(int node, unsigned char c) const {
        for (const auto& [b, next] : nodes_[static_cast<std::size_t>(node)].edges)
            if (b == c) return next;
        return -1;
    }
    /// The leftmost position >= pos where a token starts, and the longest token there.
    int find(std::string_view s, std::size_t pos, std::size_t& begin, std::size_t& end) const {
        for (std::size_t i = pos; i < s.size(); ++i) {
            if (!first_byte_[static_cast<unsigned char>(s[i])]) continue;
            int node = 0, best = -1;
            for (std::size_t k = i; k < s.size() && (node = child(node, static_cast<unsigned char>(s[k]))) >= 0; ++k) {
                if (nodes_[static_cast<std::size_t>(node)].token >= 0) {
                    best = nodes_[static_cast<std::size_t>(node)].token;
                    end = k + 1;
                }
            }
            if (best >= 0) {
                begin = i;
                return best;
            }
        }
        return -1;
    }
    static bool word(std::uint32_t cp) { return is_letter(cp) || is_number(cp); }
    static bool starts_with_word(std::string_view s) {
        std::uint32_t cp;
        return !s.empty() && (decode_utf8(s, 0, cp), word(cp));
    }
    static bool ends_with_word(std::string_view s) {
        std::uint32_t cp;
        return !s.empty() && (last_code_point(s, cp), word(cp));
    }

    std::vector<Node> nodes_{1};
    std::array<bool, 256> first_byte_{};
    std::vector<AddedToken> tokens_;
};

}  // namespace massact::text

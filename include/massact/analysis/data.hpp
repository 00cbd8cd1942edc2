// massact/analysis/data.hpp - turning text into the token windows a scan or an evaluation runs on.
//
// Protocol of --data (documented in the README):
//   1. the file is split into documents at lines that hold only the byte 0x1E;
//   2. each document is encoded without special tokens and the documents are concatenated;
//   3. the stream is cut into consecutive, non-overlapping windows of seq_len tokens, each made of
//      the tokenizer's special prefix (e.g. BOS "<s>" for tiny-llama, nothing for GPT-2) followed by
//      the next seq_len - |prefix| tokens; an incomplete last window is dropped;
//   4. at most max_seqs windows are kept (0 = all).
#pragma once

#include "massact/core/error.hpp"
#include "massact/model/transformer.hpp"
#include "massact/text/tokenizer.hpp"

#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace massact::analysis {

/// Documents of a text: split at lines holding only 0x1E.
inline std::vector<std::string> split_documents(const std::string& text) {
    std::vector<std::string> docs;
    std::string cur;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t nl = text.find('\n', pos);
        const bool last = nl == std::string::npos;
        const std::string line = text.substr(pos, last ? std::string::npos : nl - pos);
        if (line == "\x1E") {
            if (!cur.empty()) docs.push_back(cur);
            cur.clear();
        } else {
            cur += line;
            if (!last) cur += '\n';
        }
        if (last) break;
        pos = nl + 1;
    }
    if (!cur.empty()) docs.push_back(cur);
    return docs;
}

/// Windows of seq_len tokens from a text, by the protocol above, for any tokenizer: `encode(document)` gives
/// a document's ids without special tokens, `prefix` the special tokens that start every window.
template <typename Encode>
TokenBatch text_windows(const std::vector<text::TokenId>& prefix, Encode&& encode, const std::string& text, Index seq_len,
                        Index max_seqs = 0) {
    const Index body = seq_len - static_cast<Index>(prefix.size());
    if (body < 1) throw Error("--seq-len " + std::to_string(seq_len) + " leaves no room after the special prefix");
    std::vector<text::TokenId> stream;
    for (const auto& d : split_documents(text)) {
        const std::vector<text::TokenId> ids = encode(d);
        stream.insert(stream.end(), ids.begin(), ids.end());
    }
    Index n = static_cast<Index>(stream.size()) / body;
    if (max_seqs > 0) n = std::min(n, max_seqs);
    if (n == 0)
        throw Error("the text has " + std::to_string(stream.size()) + " tokens, fewer than one window of " +
                    std::to_string(body) + " (lower --seq-len)");
    TokenBatch b(n, seq_len);
    for (Index r = 0; r < n; ++r) {
        Index c = 0;
        for (auto id : prefix) b(r, c++) = id;
        for (Index i = 0; i < body; ++i) b(r, c++) = stream[static_cast<std::size_t>(r * body + i)];
    }
    return b;
}

/// The same with massact's tokenizer.
inline TokenBatch text_windows(const text::Tokenizer& tok, const std::string& text, Index seq_len, Index max_seqs = 0) {
    return text_windows(tok.special_prefix(), [&tok](const std::string& d) { return tok.encode(d, false); }, text, seq_len, max_seqs);
}

/// Gu et al.'s (2025) input for the sink rate: n sequences of seq_len token ids drawn uniformly from [0, vocab) less
/// `excluded` (special tokens), each starting with `prefix` (the BOS a tokenizer adds; empty for none). The same seed gives
/// the same ids everywhere: a 64-bit Mersenne twister, each draw by rejection (no modulo bias, no library-defined
/// distribution).
inline TokenBatch random_tokens(Index n, Index seq_len, Index vocab, std::uint64_t seed, const std::vector<text::TokenId>& prefix = {},
                                const std::set<text::TokenId>& excluded = {}) {
    if (n < 1) throw Error("--random-tokens: " + std::to_string(n) + " sequences (expected at least 1)");
    const auto np = static_cast<Index>(prefix.size());
    if (seq_len <= np) throw Error("--seq-len " + std::to_string(seq_len) + " leaves no room after the special prefix");
    std::vector<text::TokenId> pool;
    for (Index id = 0; id < vocab; ++id)
        if (!excluded.count(id)) pool.push_back(id);
    if (pool.empty()) throw Error("--random-tokens: a vocabulary of " + std::to_string(vocab) + " ids has no ordinary token to draw");
    constexpr Index max_tokens = Index(1) << 26;  // 64M ids (512 MB): far more than a scan runs, far less than a user asks by mistake
    if (n > max_tokens / seq_len)
        throw Error("--random-tokens: " + std::to_string(n) + " x " + std::to_string(seq_len) + " tokens is more than " +
                    std::to_string(max_tokens));
    std::mt19937_64 rng(seed);
    const std::uint64_t m = pool.size(), limit = std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % m;
    TokenBatch b(n, seq_len);
    for (Index r = 0; r < n; ++r) {
        for (Index c = 0; c < np; ++c) b(r, c) = prefix[static_cast<std::size_t>(c)];
        for (Index c = np; c < seq_len; ++c) {
            std::uint64_t x = rng();
            while (x >= limit) x = rng();
            b(r, c) = pool[static_cast<std::size_t>(x % m)];
        }
    }
    return b;
}

/// The same over a tokenizer's vocabulary: its special tokens left out, its special prefix (BOS) first.
inline TokenBatch random_tokens(const text::Tokenizer& tok, Index n, Index seq_len, std::uint64_t seed) {
    std::set<text::TokenId> specials;
    const auto V = static_cast<text::TokenId>(tok.vocab_size());
    for (text::TokenId id = 0; id < V; ++id)
        if (tok.is_special(id)) specials.insert(id);
    return random_tokens(n, seq_len, V, seed, tok.special_prefix(), specials);
}

/// Tokens counted as delimiters for "first delimiter" (Sun et al.: '.' and '\n'): those whose text,
/// spaces trimmed, is "." or only newlines. Any vocabulary: `special(id)` true for special tokens, `piece(id)`
/// the decoded text of one token (throwing massact::Error when it has none).
template <typename Special, typename Piece>
std::set<text::TokenId> delimiter_ids(std::size_t vocab_size, Special&& special, Piece&& piece) {
    std::set<text::TokenId> out;
    for (std::size_t i = 0; i < vocab_size; ++i) {
        const auto id = static_cast<text::TokenId>(i);
        if (special(id)) continue;
        std::string s;
        try {
            s = piece(id);
        } catch (const Error&) {
            continue;
        }
        const auto b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
        if (b == std::string::npos) continue;
        s = s.substr(b, e - b + 1);
        if (s == "." || s.find_first_not_of('\n') == std::string::npos) out.insert(id);
    }
    return out;
}

/// The same with massact's tokenizer.
inline std::set<text::TokenId> delimiter_ids(const text::Tokenizer& tok) {
    return delimiter_ids(
        tok.vocab_size(), [&tok](text::TokenId id) { return tok.is_special(id); }, [&tok](text::TokenId id) { return tok.decode({id}); });
}

}  // namespace massact::analysis

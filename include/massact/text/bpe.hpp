// massact/text/bpe.hpp - the BPE model of tokenizer.json: a pre-token is cut into characters (or
// byte-fallback tokens, or unk), then the adjacent pair of lowest merge rank is merged until no
// merge applies (leftmost on ties), as Hugging Face's Word::merge_all.
//
// Long pre-tokens (SentencePiece-style tokenizers without a pre-tokenizer hand the whole text to
// the model as one word) are first cut where no merge can ever join: between two characters u, c
// that are vocabulary tokens when no token of the vocabulary contains "uc". Every symbol is a
// vocabulary token covering consecutive characters, so none can span such a cut, and merges on
// either side never compete: the pieces' results, concatenated, are exactly the word's. Pieces
// are cached per call.
#pragma once

#include "massact/text/added.hpp"
#include "massact/text/unicode.hpp"

#include <algorithm>
#include <cstdint>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace massact::text {

class Bpe {
public:
    TokenId unk = -1;           // the unknown token, or -1: unknown characters are dropped
    bool byte_fallback = false;  // <0xHH> tokens for characters outside the vocabulary
    bool fuse_unk = false;       // consecutive unknowns become one
    bool ignore_merges = false;  // a pre-token that is in the vocabulary is one token

    using Cache = std::unordered_map<std::string, std::vector<TokenId>>;

    void add_token(const std::string& token, TokenId id) {
        vocab_[token] = id;
        std::uint32_t prev = kInvalidByte;  // the adjacent character pairs inside the token
        std::size_t chars = 0;
        for (std::size_t i = 0; i < token.size(); ++chars) {
            std::uint32_t cp;
            i += decode_utf8(token, i, cp);
            if (prev < kInvalidByte && cp < kInvalidByte) inner_pairs_.insert(pair_key(prev, cp));
            prev = cp;
        }
        if (chars == 1 && prev < kInvalidByte) char_ids_[prev] = id;
    }
    const TokenId* find(const std::string& token) const {
        auto it = vocab_.find(token);
        return it == vocab_.end() ? nullptr : &it->second;
    }
    void add_merge(TokenId a, TokenId b, TokenId merged) { merges_.insert(key(a, b), merged); }

    /// Append the ids of pre-token `w` to `out`; `cache` holds the pieces seen in this call.
    void tokenize(const std::string& w, Cache& cache, std::vector<TokenId>& out) const {
        if (ignore_merges)
            if (const TokenId* id = find(w)) return out.push_back(*id);
        std::size_t begin = 0;
        std::uint32_t prev = kInvalidByte;
        for (std::size_t i = w.size() < kCutFrom ? w.size() : 0; i < w.size();) {
            std::uint32_t cp;
            const std::size_t len = decode_utf8(w, i, cp);
            const bool known = char_ids_.count(cp) != 0;
            if (known && prev < kInvalidByte && !inner_pairs_.count(pair_key(prev, cp))) {
                append_piece(w.substr(begin, i - begin), cache, out);
                begin = i;
            }
            prev = known ? cp : kInvalidByte;
            i += len;
        }
        append_piece(w.substr(begin), cache, out);
    }

    /// The ids of one piece: characters merged by rank.
    std::vector<TokenId> merge(const std::string& w) const {
        std::vector<Sym> sym = symbols(w);
        const int n = static_cast<int>(sym.size());
        struct Cand {
            std::int32_t rank;
            int pos;
            TokenId left, right, merged;
        };
        auto worse = [](const Cand& a, const Cand& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
        std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
        auto at = [&](int i) -> Sym& { return sym[static_cast<std::size_t>(i)]; };
        auto push = [&](int pos) {
            if (pos < 0 || at(pos).next < 0) return;
            if (const MergeTable::Entry* m = merges_.find(key(at(pos).id, at(at(pos).next).id)))
                heap.push({m->rank, pos, at(pos).id, at(at(pos).next).id, m->merged});
        };
        for (int i = 0; i + 1 < n; ++i) push(i);
        while (!heap.empty()) {
            const Cand c = heap.top();
            heap.pop();
            Sym& a = at(c.pos);
            if (!a.alive || a.id != c.left || a.next < 0 || at(a.next).id != c.right) continue;  // stale
            Sym& b = at(a.next);
            a.id = c.merged;
            b.alive = false;
            a.next = b.next;
            if (b.next >= 0) at(b.next).prev = c.pos;
            push(a.prev);
            push(c.pos);
        }
        std::vector<TokenId> out;
        for (const auto& s : sym)
            if (s.alive) out.push_back(s.id);
        return out;
    }

private:
    static constexpr std::size_t kCutFrom = 32;  // shorter words are merged whole

    void append_piece(const std::string& piece, Cache& cache, std::vector<TokenId>& out) const {
        auto it = cache.find(piece);
        if (it == cache.end()) it = cache.emplace(piece, merge(piece)).first;
        out.insert(out.end(), it->second.begin(), it->second.end());
    }
    static std::uint64_t pair_key(std::uint32_t a, std::uint32_t b) { return (static_cast<std::uint64_t>(a) << 32) | b; }

    /// Merges by (left, right) id pair: an open-addressing table (one probe sequence in one array,
    /// where a node-based map costs a cache miss per lookup). Rank = order of insertion; a repeated
    /// pair keeps its first rank.
    class MergeTable {
    public:
        struct Entry {
            std::uint64_t key = kEmpty;
            std::int32_t rank = 0;
            TokenId merged = 0;
        };
        void insert(std::uint64_t k, TokenId merged) {
            if ((size_ + 1) * 2 > slots_.size()) grow();
            Entry& e = slot(k);
            if (e.key != kEmpty) return;
            e = {k, static_cast<std::int32_t>(size_++), merged};
        }
        const Entry* find(std::uint64_t k) const {
            if (slots_.empty()) return nullptr;
            const Entry& e = const_cast<MergeTable*>(this)->slot(k);
            return e.key == k ? &e : nullptr;
        }

    private:
        static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};
        Entry& slot(std::uint64_t k) {
            const std::size_t mask = slots_.size() - 1;
            for (std::size_t i = (k * 0x9E3779B97F4A7C15ull) >> 20 & mask;; i = (i + 1) & mask)
                if (slots_[i].key == k || slots_[i].key == kEmpty) return slots_[i];
        }
        void grow() {
            std::vector<Entry> old(std::max<std::size_t>(64, slots_.size() * 2));
            old.swap(slots_);
            for (const Entry& e : old)
                if (e.key != kEmpty) slot(e.key) = e;
        }
        std::vector<Entry> slots_;
        std::size_t size_ = 0;
    };
    struct Sym {
        TokenId id;
        int prev, next;
        bool alive;
    };
    static std::uint64_t key(TokenId a, TokenId b) { return (static_cast<std::uint64_t>(a) << 32) | static_cast<std::uint64_t>(b); }

    /// The initial symbols: one per character, linked as a list.
    std::vector<Sym> symbols(const std::string& w) const {
        std::vector<Sym> sym;
        sym.reserve(w.size());
        bool last_unk = false;
        for (std::size_t i = 0; i < w.size();) {
            std::uint32_t cp;
            const std::size_t len = decode_utf8(w, i, cp);
            const std::string_view ch = std::string_view(w).substr(i, len);
            i += len;
            if (auto id = char_ids_.find(cp); id != char_ids_.end()) {
                sym.push_back({id->second, 0, 0, true});
                last_unk = false;
            } else if (std::vector<TokenId> bytes = byte_tokens(ch); !bytes.empty()) {
                for (TokenId b : bytes) sym.push_back({b, 0, 0, true});
                last_unk = false;
            } else if (unk >= 0) {
                if (!(fuse_unk && last_unk)) sym.push_back({unk, 0, 0, true});
                last_unk = true;
            }  // no unk token: Hugging Face drops the character
        }
        const int n = static_cast<int>(sym.size());
        for (int i = 0; i < n; ++i) {
            sym[static_cast<std::size_t>(i)].prev = i - 1;
            sym[static_cast<std::size_t>(i)].next = i + 1 < n ? i + 1 : -1;
        }
        return sym;
    }
    /// The <0xHH> tokens of a character's bytes, or nothing (no byte fallback, or a byte missing).
    std::vector<TokenId> byte_tokens(std::string_view ch) const {
        std::vector<TokenId> bytes;
        if (!byte_fallback) return bytes;
        for (unsigned char b : ch) {
            static constexpr char hex[] = "0123456789ABCDEF";
            const TokenId* id = find(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
            if (!id) return {};
            bytes.push_back(*id);
        }
        return bytes;
    }

    std::unordered_map<std::string, TokenId> vocab_;
    MergeTable merges_;
    std::unordered_map<std::uint32_t, TokenId> char_ids_;  // the tokens that are one character
    std::unordered_set<std::uint64_t> inner_pairs_;        // code-point pairs adjacent inside some token
};

}  // namespace massact::text

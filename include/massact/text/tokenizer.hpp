// massact/text/tokenizer.hpp - Hugging Face tokenizer.json: BPE models, byte-level
// (GPT-2, Llama-3, Qwen2) and SentencePiece-style (Llama-2: Metaspace, byte fallback).
//
// encode(text): added/special tokens are matched in the raw text first; every other piece goes
// normalizer -> pre-tokenizer -> BPE; then the post-processor may add BOS. decode(ids) runs the
// decoder chain. Anything massact does not implement (WordPiece, Unigram, unknown normalizers,
// pre-tokenizers, decoders or split patterns) is refused with an error naming the JSON field,
// never encoded silently wrong.
//
// Invalid UTF-8 in the input does not crash: byte-level tokenizers encode the raw bytes (decode
// returns them unchanged); SentencePiece-style ones use <0xHH> byte-fallback tokens (or unk),
// and their decoder turns invalid byte sequences into U+FFFD.
#pragma once

#include "massact/core/error.hpp"
#include "massact/io/json_file.hpp"
#include "massact/text/pretokenize.hpp"
#include "massact/text/unicode.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace massact::text {

using TokenId = std::int64_t;

namespace detail {

/// GPT-2's bytes_to_unicode: printable latin-1 bytes map to themselves, the other 68 to U+0100 + n.
inline std::array<std::uint32_t, 256> bytes_to_unicode() {
    std::array<std::uint32_t, 256> t{};
    std::uint32_t extra = 0;
    for (std::uint32_t b = 0; b < 256; ++b) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        t[b] = printable ? b : 0x100 + extra++;
    }
    return t;
}

inline void replace_all(std::string& s, const std::string& from, const std::string& to) {
    if (from.empty()) return;
    std::string out;
    out.reserve(s.size());
    std::size_t pos = 0;
    for (std::size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size())
        out.append(s, pos, hit - pos).append(to);
    out.append(s, pos, std::string::npos);
    s.swap(out);
}

}  // namespace detail

class Tokenizer {
public:
    /// Load a tokenizer.json file (errors name the file and the JSON field path).
    static Tokenizer from_file(const std::string& path) { return Tokenizer(io::read_json_file(path), path); }

    Tokenizer(const nlohmann::json& j, std::string source = "tokenizer.json") : src_(std::move(source)) {
        if (!j.is_object()) fail("", "expected a JSON object");
        load_model(j);
        load_added(j);
        load_normalizer(j);
        load_pre_tokenizer(j);
        load_post_processor(j);
        load_decoder(j);
    }

    /// Token ids of `text`; with add_special_tokens the post-processor's tokens (e.g. BOS) are added.
    std::vector<TokenId> encode(std::string_view text, bool add_special_tokens = true) const {
        std::vector<TokenId> out;
        if (add_special_tokens)
            for (TokenId id : prefix_) out.push_back(id);
        std::unordered_map<std::string, std::vector<TokenId>> cache;  // per call: thread-safe
        std::size_t pos = 0;
        bool first = true;
        while (pos <= text.size()) {
            std::size_t mbeg = text.size(), mend = text.size();
            const Added* hit = find_added(text, pos, mbeg, mend);
            encode_piece(text.substr(pos, mbeg - pos), first, cache, out);
            if (!hit) break;
            out.push_back(hit->id);
            first = false;
            pos = mend;
        }
        if (add_special_tokens)
            for (TokenId id : suffix_) out.push_back(id);
        return out;
    }

    /// Text of `ids` through the decoder chain. skip_special drops special tokens.
    std::string decode(const std::vector<TokenId>& ids, bool skip_special = false) const {
        std::vector<std::string> toks;
        for (TokenId id : ids) {
            if (id < 0 || id >= static_cast<TokenId>(id_to_token_.size()))
                throw Error("decode: token id " + std::to_string(id) + " outside the vocabulary [0, " +
                            std::to_string(id_to_token_.size()) + ")");
            if (skip_special && special_[static_cast<std::size_t>(id)]) continue;
            toks.push_back(id_to_token_[static_cast<std::size_t>(id)]);
        }
        for (const auto& d : decoders_) toks = apply_decoder(d, std::move(toks));
        std::string out;
        for (const auto& t : toks) out += t;
        return out;
    }

    /// The vocabulary string of a token (added tokens: their content).
    const std::string& id_to_token(TokenId id) const {
        if (id < 0 || id >= static_cast<TokenId>(id_to_token_.size()))
            throw Error("token id " + std::to_string(id) + " outside the vocabulary");
        return id_to_token_[static_cast<std::size_t>(id)];
    }
    std::optional<TokenId> token_to_id(const std::string& tok) const {
        auto it = vocab_.find(tok);
        if (it != vocab_.end()) return it->second;
        for (const auto& a : added_)
            if (a.content == tok) return a.id;
        return std::nullopt;
    }
    /// A readable label for plots: byte-level tokens mapped back to text, control characters escaped.
    std::string label(TokenId id) const {
        std::string s = decode({id});
        std::string out;
        for (unsigned char c : s) {
            if (c == '\n') out += "\\n";
            else if (c == '\t') out += "\\t";
            else if (c < 0x20) out += "<" + std::to_string(c) + ">";
            else out.push_back(static_cast<char>(c));
        }
        return out;
    }
    std::size_t vocab_size() const { return id_to_token_.size(); }
    bool is_special(TokenId id) const { return id >= 0 && id < static_cast<TokenId>(special_.size()) && special_[static_cast<std::size_t>(id)]; }
    /// Ids the post-processor adds before the text with add_special_tokens (e.g. BOS).
    const std::vector<TokenId>& special_prefix() const { return prefix_; }

private:
    struct Added {
        std::string content;
        TokenId id;
        bool special, lstrip, rstrip, single_word;
    };
    enum class NormKind { Prepend, Replace };
    struct NormStep { NormKind kind; std::string a, b; };
    enum class PreKind { ByteLevel, Metaspace, Split };
    struct PreStep {
        PreKind kind;
        bool add_prefix_space = false, use_regex = true;  // ByteLevel
        std::string replacement;                          // Metaspace
        int prepend = 0;                                  // Metaspace: 0 never, 1 first, 2 always
        bool split = true;                                // Metaspace
        SplitPattern pattern = SplitPattern::GPT2;        // Split / ByteLevel regex
    };
    enum class DecKind { ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip };
    struct DecStep {
        DecKind kind;
        std::string a, b;  // Metaspace replacement; Replace pattern/content; Strip content
        int start = 0, stop = 0;
        bool prepend = true;  // Metaspace: strip the space added at the start
    };

    [[noreturn]] void fail(const std::string& path, const std::string& msg) const {
        throw Error(src_ + ": " + (path.empty() ? "" : path + ": ") + msg);
    }
    const nlohmann::json& field(const nlohmann::json& o, const std::string& key, const std::string& path) const {
        if (!o.is_object() || !o.contains(key)) fail(path.empty() ? key : path + "." + key, "missing field");
        return o[key];
    }
    std::string str(const nlohmann::json& o, const std::string& key, const std::string& path) const {
        const auto& v = field(o, key, path);
        if (!v.is_string()) fail(path + "." + key, "expected a string, found " + v.dump());
        return v.get<std::string>();
    }
    template <typename T>
    T opt(const nlohmann::json& o, const std::string& key, T dflt) const {
        if (!o.contains(key) || o[key].is_null()) return dflt;
        try {
            return o[key].get<T>();
        } catch (const nlohmann::json::exception&) {
            fail(key, "unexpected value " + o[key].dump());
        }
    }

    // ---- loading --------------------------------------------------------------------
    void load_model(const nlohmann::json& j) {
        const auto& m = field(j, "model", "");
        if (!m.is_object()) fail("model", "expected an object");
        const std::string type = m.contains("type") ? str(m, "type", "model") : "BPE";
        if (type != "BPE") fail("model.type", "unsupported model type \"" + type + "\" (massact implements BPE)");
        const auto& vocab = field(m, "vocab", "model");
        if (!vocab.is_object()) fail("model.vocab", "expected an object of token -> id");
        for (auto it = vocab.begin(); it != vocab.end(); ++it) {
            if (!it.value().is_number_integer() || it.value().get<long long>() < 0)
                fail("model.vocab[\"" + it.key() + "\"]", "expected a non-negative integer id");
            const auto id = it.value().get<TokenId>();
            vocab_[it.key()] = id;
            set_token(id, it.key(), false);
        }
        byte_fallback_ = opt<bool>(m, "byte_fallback", false);
        ignore_merges_ = opt<bool>(m, "ignore_merges", false);
        fuse_unk_ = opt<bool>(m, "fuse_unk", false);
        const double dropout = m.contains("dropout") && m["dropout"].is_number() ? m["dropout"].get<double>() : 0.0;
        if (dropout != 0.0) fail("model.dropout", "BPE dropout " + std::to_string(dropout) + " is not supported for inference");
        for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
            if (m.contains(k) && !m[k].is_null() && !(m[k].is_string() && m[k].get<std::string>().empty()))
                fail(std::string("model.") + k, "unsupported value " + m[k].dump());
        if (m.contains("unk_token") && !m["unk_token"].is_null()) {
            const std::string unk = str(m, "unk_token", "model");
            auto it = vocab_.find(unk);
            if (it == vocab_.end()) fail("model.unk_token", "\"" + unk + "\" is not in model.vocab");
            unk_ = it->second;
        }
        const auto& merges = field(m, "merges", "model");
        if (!merges.is_array()) fail("model.merges", "expected an array");
        for (std::size_t r = 0; r < merges.size(); ++r) {
            const auto& e = merges[r];
            const std::string path = "model.merges[" + std::to_string(r) + "]";
            std::string a, b;
            if (e.is_string()) {
                const std::string s = e.get<std::string>();
                const auto sp = s.find(' ');
                if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
                    fail(path, "expected \"a b\" (two tokens separated by one space), found " + e.dump());
                a = s.substr(0, sp);
                b = s.substr(sp + 1);
            } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
                a = e[0].get<std::string>();
                b = e[1].get<std::string>();
            } else {
                fail(path, "expected \"a b\" or [\"a\", \"b\"], found " + e.dump());
            }
            const auto ia = vocab_.find(a), ib = vocab_.find(b), iab = vocab_.find(a + b);
            if (ia == vocab_.end()) fail(path, "merge of unknown token \"" + a + "\"");
            if (ib == vocab_.end()) fail(path, "merge of unknown token \"" + b + "\"");
            if (iab == vocab_.end()) fail(path, "merge result \"" + a + b + "\" is not in model.vocab");
            merges_.emplace(pair_key(ia->second, ib->second), Merge{static_cast<std::int32_t>(r), iab->second});
        }
    }

    void load_added(const nlohmann::json& j) {
        if (!j.contains("added_tokens") || j["added_tokens"].is_null()) return;
        const auto& arr = j["added_tokens"];
        if (!arr.is_array()) fail("added_tokens", "expected an array");
        for (std::size_t i = 0; i < arr.size(); ++i) {
            const std::string path = "added_tokens[" + std::to_string(i) + "]";
            const auto& e = arr[i];
            if (!e.contains("id") || !e["id"].is_number_integer()) fail(path + ".id", "missing or not an integer");
            Added a{str(e, "content", path), e["id"].get<TokenId>(), opt<bool>(e, "special", false),
                    opt<bool>(e, "lstrip", false), opt<bool>(e, "rstrip", false), opt<bool>(e, "single_word", false)};
            if (a.content.empty()) fail(path + ".content", "empty");
            set_token(a.id, a.content, a.special);
            added_.push_back(a);
        }
    }

    void load_normalizer(const nlohmann::json& j) {
        if (!j.contains("normalizer") || j["normalizer"].is_null()) return;
        add_normalizer(j["normalizer"], "normalizer");
    }
    void add_normalizer(const nlohmann::json& n, const std::string& path) {
        const std::string type = str(n, "type", path);
        if (type == "Sequence") {
            const auto& list = field(n, "normalizers", path);
            for (std::size_t i = 0; i < list.size(); ++i) add_normalizer(list[i], path + ".normalizers[" + std::to_string(i) + "]");
        } else if (type == "Prepend") {
            norm_.push_back({NormKind::Prepend, str(n, "prepend", path), ""});
        } else if (type == "Replace") {
            const auto& p = field(n, "pattern", path);
            if (!p.contains("String")) fail(path + ".pattern", "only String patterns are supported, found " + p.dump());
            norm_.push_back({NormKind::Replace, str(p, "String", path + ".pattern"), str(n, "content", path)});
        } else {
            fail(path + ".type", "unsupported normalizer \"" + type + "\" (massact implements Sequence, Prepend, Replace)");
        }
    }

    void load_pre_tokenizer(const nlohmann::json& j) {
        if (!j.contains("pre_tokenizer") || j["pre_tokenizer"].is_null()) return;
        add_pre(j["pre_tokenizer"], "pre_tokenizer");
    }
    void add_pre(const nlohmann::json& p, const std::string& path) {
        const std::string type = str(p, "type", path);
        PreStep s;
        if (type == "Sequence") {
            const auto& list = field(p, "pretokenizers", path);
            for (std::size_t i = 0; i < list.size(); ++i) add_pre(list[i], path + ".pretokenizers[" + std::to_string(i) + "]");
            return;
        } else if (type == "ByteLevel") {
            s.kind = PreKind::ByteLevel;
            s.add_prefix_space = opt<bool>(p, "add_prefix_space", false);
            s.use_regex = opt<bool>(p, "use_regex", true);
            byte_level_ = true;
        } else if (type == "Metaspace") {
            s.kind = PreKind::Metaspace;
            s.replacement = p.contains("replacement") ? str(p, "replacement", path) : "\xE2\x96\x81";
            s.split = opt<bool>(p, "split", true);
            std::string scheme = p.contains("prepend_scheme") ? str(p, "prepend_scheme", path)
                                 : (opt<bool>(p, "add_prefix_space", true) ? "always" : "never");
            if (scheme == "always") s.prepend = 2;
            else if (scheme == "first") s.prepend = 1;
            else if (scheme == "never") s.prepend = 0;
            else fail(path + ".prepend_scheme", "unsupported value \"" + scheme + "\" (expected first, always, never)");
        } else if (type == "Split") {
            s.kind = PreKind::Split;
            const auto& pat = field(p, "pattern", path);
            const std::string re = pat.contains("Regex") ? str(pat, "Regex", path + ".pattern") : pat.dump();
            if (re == kGPT2Pattern) s.pattern = SplitPattern::GPT2;
            else if (re == kLlama3Pattern) s.pattern = SplitPattern::Llama3;
            else if (re == kQwen2Pattern) s.pattern = SplitPattern::Qwen2;
            else fail(path + ".pattern", "unsupported split pattern " + pat.dump() + " (massact knows the GPT-2, Llama-3 and Qwen2 patterns)");
            const std::string behavior = p.contains("behavior") ? str(p, "behavior", path) : "Isolated";
            if (behavior != "Isolated") fail(path + ".behavior", "unsupported value \"" + behavior + "\" (expected Isolated)");
            if (opt<bool>(p, "invert", false)) fail(path + ".invert", "unsupported value true");
        } else {
            fail(path + ".type", "unsupported pre-tokenizer \"" + type + "\" (massact implements ByteLevel, Metaspace, Split, Sequence)");
        }
        pre_.push_back(s);
    }

    void load_post_processor(const nlohmann::json& j) {
        if (!j.contains("post_processor") || j["post_processor"].is_null()) return;
        add_post(j["post_processor"], "post_processor");
    }
    void add_post(const nlohmann::json& p, const std::string& path) {
        const std::string type = str(p, "type", path);
        if (type == "ByteLevel") return;  // adds nothing
        if (type == "Sequence") {
            const auto& list = field(p, "processors", path);
            for (std::size_t i = 0; i < list.size(); ++i) add_post(list[i], path + ".processors[" + std::to_string(i) + "]");
            return;
        }
        if (type != "TemplateProcessing")
            fail(path + ".type", "unsupported post-processor \"" + type + "\" (massact implements TemplateProcessing, ByteLevel)");
        const auto& single = field(p, "single", path);
        if (!single.is_array()) fail(path + ".single", "expected an array");
        bool seen_seq = false;
        for (std::size_t i = 0; i < single.size(); ++i) {
            const auto& e = single[i];
            const std::string ep = path + ".single[" + std::to_string(i) + "]";
            if (e.contains("Sequence")) {
                seen_seq = true;
            } else if (e.contains("SpecialToken")) {
                const std::string name = str(e["SpecialToken"], "id", ep + ".SpecialToken");
                TokenId id = -1;
                if (p.contains("special_tokens") && p["special_tokens"].contains(name)) {
                    const auto& ids = field(p["special_tokens"][name], "ids", path + ".special_tokens." + name);
                    if (!ids.is_array() || ids.size() != 1) fail(path + ".special_tokens." + name + ".ids", "expected one id");
                    id = ids[0].get<TokenId>();
                } else if (auto t = token_to_id(name)) {
                    id = *t;
                } else {
                    fail(ep, "special token \"" + name + "\" is not defined");
                }
                (seen_seq ? suffix_ : prefix_).push_back(id);
            } else {
                fail(ep, "expected SpecialToken or Sequence, found " + e.dump());
            }
        }
    }

    void load_decoder(const nlohmann::json& j) {
        if (!j.contains("decoder") || j["decoder"].is_null()) return;
        add_decoder(j["decoder"], "decoder");
    }
    void add_decoder(const nlohmann::json& d, const std::string& path) {
        const std::string type = str(d, "type", path);
        DecStep s;
        if (type == "Sequence") {
            const auto& list = field(d, "decoders", path);
            for (std::size_t i = 0; i < list.size(); ++i) add_decoder(list[i], path + ".decoders[" + std::to_string(i) + "]");
            return;
        } else if (type == "ByteLevel") {
            s.kind = DecKind::ByteLevel;
        } else if (type == "Metaspace") {
            s.kind = DecKind::Metaspace;
            s.a = d.contains("replacement") ? str(d, "replacement", path) : "\xE2\x96\x81";
            const std::string scheme = d.contains("prepend_scheme") ? str(d, "prepend_scheme", path)
                                       : (opt<bool>(d, "add_prefix_space", true) ? "always" : "never");
            s.prepend = scheme != "never";
        } else if (type == "Replace") {
            s.kind = DecKind::Replace;
            const auto& p = field(d, "pattern", path);
            if (!p.contains("String")) fail(path + ".pattern", "only String patterns are supported, found " + p.dump());
            s.a = str(p, "String", path + ".pattern");
            s.b = str(d, "content", path);
        } else if (type == "ByteFallback") {
            s.kind = DecKind::ByteFallback;
        } else if (type == "Fuse") {
            s.kind = DecKind::Fuse;
        } else if (type == "Strip") {
            s.kind = DecKind::Strip;
            s.a = str(d, "content", path);
            s.start = opt<int>(d, "start", 0);
            s.stop = opt<int>(d, "stop", 0);
        } else {
            fail(path + ".type", "unsupported decoder \"" + type +
                                     "\" (massact implements ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip)");
        }
        decoders_.push_back(s);
    }

    void set_token(TokenId id, const std::string& tok, bool special) {
        if (id > (1 << 26)) fail("", "token id " + std::to_string(id) + " is implausibly large");
        if (static_cast<std::size_t>(id) >= id_to_token_.size()) {
            id_to_token_.resize(static_cast<std::size_t>(id) + 1);
            special_.resize(static_cast<std::size_t>(id) + 1, false);
        }
        id_to_token_[static_cast<std::size_t>(id)] = tok;
        special_[static_cast<std::size_t>(id)] = special_[static_cast<std::size_t>(id)] || special;
    }

    // ---- encoding -------------------------------------------------------------------
    static bool word_char(std::uint32_t c) { return is_letter(c) || is_number(c) || c == '_'; }

    /// Leftmost (then longest) added token at or after pos; [mbeg, mend) is the span it consumes
    /// (with lstrip/rstrip whitespace).
    const Added* find_added(std::string_view text, std::size_t pos, std::size_t& mbeg, std::size_t& mend) const {
        const Added* best = nullptr;
        std::size_t best_at = std::string_view::npos;
        for (const auto& a : added_) {
            for (std::size_t at = text.find(a.content, pos); at != std::string_view::npos; at = text.find(a.content, at + 1)) {
                if (at > best_at) break;
                if (a.single_word) {
                    std::uint32_t c = 0;
                    const bool left_ok = at == 0 || (decode_utf8(text, at - 1, c), !word_char(c));
                    const std::size_t e = at + a.content.size();
                    const bool right_ok = e >= text.size() || (decode_utf8(text, e, c), !word_char(c));
                    if (!left_ok || !right_ok) continue;
                }
                if (at < best_at || (at == best_at && a.content.size() > best->content.size())) {
                    best = &a;
                    best_at = at;
                }
                break;
            }
        }
        if (!best) return nullptr;
        mbeg = best_at;
        mend = best_at + best->content.size();
        if (best->lstrip)
            while (mbeg > pos && std::isspace(static_cast<unsigned char>(text[mbeg - 1]))) --mbeg;
        if (best->rstrip)
            while (mend < text.size() && std::isspace(static_cast<unsigned char>(text[mend]))) ++mend;
        return best;
    }

    void encode_piece(std::string_view piece, bool first, std::unordered_map<std::string, std::vector<TokenId>>& cache,
                      std::vector<TokenId>& out) const {
        if (piece.empty()) return;
        std::string s(piece);
        for (const auto& n : norm_) {
            if (n.kind == NormKind::Prepend) {
                if (!s.empty()) s = n.a + s;
            } else {
                detail::replace_all(s, n.a, n.b);
            }
        }
        std::vector<std::string> words{std::move(s)};
        for (const auto& p : pre_) words = pre_tokenize(p, std::move(words), first);
        for (const auto& w : words) {
            if (w.empty()) continue;
            auto it = cache.find(w);
            if (it == cache.end()) it = cache.emplace(w, bpe(w)).first;
            out.insert(out.end(), it->second.begin(), it->second.end());
        }
    }

    std::vector<std::string> pre_tokenize(const PreStep& p, std::vector<std::string> in, bool first) const {
        std::vector<std::string> out;
        for (std::size_t wi = 0; wi < in.size(); ++wi) {
            std::string& w = in[wi];
            switch (p.kind) {
                case PreKind::ByteLevel: {
                    if (p.add_prefix_space && !w.empty() && w[0] != ' ') w.insert(w.begin(), ' ');
                    std::vector<std::size_t> lens = p.use_regex ? split_pattern(w, SplitPattern::GPT2)
                                                                : std::vector<std::size_t>{w.size()};
                    std::size_t pos = 0;
                    for (std::size_t len : lens) {
                        out.push_back(byte_level(std::string_view(w).substr(pos, len)));
                        pos += len;
                    }
                    break;
                }
                case PreKind::Split: {
                    std::size_t pos = 0;
                    for (std::size_t len : split_pattern(w, p.pattern)) {
                        out.push_back(w.substr(pos, len));
                        pos += len;
                    }
                    break;
                }
                case PreKind::Metaspace: {
                    detail::replace_all(w, " ", p.replacement);
                    const bool prepend = p.prepend == 2 || (p.prepend == 1 && first && wi == 0);
                    if (prepend && w.compare(0, p.replacement.size(), p.replacement) != 0) w = p.replacement + w;
                    if (!p.split) {
                        out.push_back(w);
                        break;
                    }
                    std::size_t start = 0;  // split before each replacement (merged with the next word)
                    for (std::size_t at = w.find(p.replacement, 1); at != std::string::npos; at = w.find(p.replacement, at + 1)) {
                        out.push_back(w.substr(start, at - start));
                        start = at;
                    }
                    out.push_back(w.substr(start));
                    break;
                }
            }
        }
        return out;
    }

    std::string byte_level(std::string_view bytes) const {
        std::string s;
        s.reserve(bytes.size() * 2);
        for (unsigned char b : bytes) append_utf8(s, byte_map_[b]);
        return s;
    }

    static std::uint64_t pair_key(TokenId a, TokenId b) {
        return (static_cast<std::uint64_t>(a) << 32) | static_cast<std::uint64_t>(b);
    }

    /// BPE of one pre-token: characters, then repeatedly the adjacent pair of lowest merge rank
    /// (leftmost on ties), as Hugging Face's word.merge_all.
    std::vector<TokenId> bpe(const std::string& w) const {
        if (ignore_merges_) {
            auto it = vocab_.find(w);
            if (it != vocab_.end()) return {it->second};
        }
        struct Sym { TokenId id; int prev, next; bool alive; };
        std::vector<Sym> sym;
        sym.reserve(w.size());
        bool last_unk = false;
        for (std::size_t i = 0; i < w.size();) {
            std::uint32_t cp;
            const std::size_t len = decode_utf8(w, i, cp);
            const std::string ch = w.substr(i, len);
            i += len;
            auto it = vocab_.find(ch);
            if (it != vocab_.end()) {
                sym.push_back({it->second, 0, 0, true});
                last_unk = false;
                continue;
            }
            if (byte_fallback_) {
                std::vector<TokenId> bytes;
                for (unsigned char b : ch) {
                    static const char* hex = "0123456789ABCDEF";
                    const std::string name = std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
                    auto bt = vocab_.find(name);
                    if (bt == vocab_.end()) { bytes.clear(); break; }
                    bytes.push_back(bt->second);
                }
                if (!bytes.empty()) {
                    for (TokenId b : bytes) sym.push_back({b, 0, 0, true});
                    last_unk = false;
                    continue;
                }
            }
            if (unk_ >= 0) {
                if (!(fuse_unk_ && last_unk)) sym.push_back({unk_, 0, 0, true});
                last_unk = true;
            }
            // no unk token: Hugging Face drops the character
        }
        const int n = static_cast<int>(sym.size());
        for (int i = 0; i < n; ++i) {
            sym[static_cast<std::size_t>(i)].prev = i - 1;
            sym[static_cast<std::size_t>(i)].next = i + 1 < n ? i + 1 : -1;
        }
        struct Cand { std::int32_t rank; int pos; TokenId left, right, merged; };
        auto worse = [](const Cand& a, const Cand& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
        std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
        auto push = [&](int pos) {
            if (pos < 0) return;
            const int nx = sym[static_cast<std::size_t>(pos)].next;
            if (nx < 0) return;
            auto m = merges_.find(pair_key(sym[static_cast<std::size_t>(pos)].id, sym[static_cast<std::size_t>(nx)].id));
            if (m != merges_.end())
                heap.push({m->second.rank, pos, sym[static_cast<std::size_t>(pos)].id, sym[static_cast<std::size_t>(nx)].id, m->second.id});
        };
        for (int i = 0; i + 1 < n; ++i) push(i);
        while (!heap.empty()) {
            const Cand c = heap.top();
            heap.pop();
            Sym& a = sym[static_cast<std::size_t>(c.pos)];
            if (!a.alive || a.id != c.left || a.next < 0) continue;
            Sym& b = sym[static_cast<std::size_t>(a.next)];
            if (b.id != c.right) continue;
            a.id = c.merged;
            b.alive = false;
            a.next = b.next;
            if (b.next >= 0) sym[static_cast<std::size_t>(b.next)].prev = c.pos;
            push(a.prev);
            push(c.pos);
        }
        std::vector<TokenId> out;
        for (const auto& s : sym)
            if (s.alive) out.push_back(s.id);
        return out;
    }

    // ---- decoding -------------------------------------------------------------------
    std::vector<std::string> apply_decoder(const DecStep& d, std::vector<std::string> toks) const {
        switch (d.kind) {
            case DecKind::ByteLevel: {
                std::string bytes;
                for (const auto& t : toks)
                    for (std::size_t i = 0; i < t.size();) {
                        std::uint32_t cp;
                        const std::size_t len = decode_utf8(t, i, cp);
                        auto it = cp < 0x200 ? byte_unmap_[cp] : -1;
                        if (it >= 0) bytes.push_back(static_cast<char>(it));
                        else bytes.append(t, i, len);  // not a byte-level character: keep as is
                        i += len;
                    }
                return {bytes};
            }
            case DecKind::Metaspace:
                for (std::size_t i = 0; i < toks.size(); ++i) {
                    detail::replace_all(toks[i], d.a, " ");
                    if (i == 0 && d.prepend && !toks[i].empty() && toks[i][0] == ' ') toks[i].erase(0, 1);
                }
                return toks;
            case DecKind::Replace:
                for (auto& t : toks) detail::replace_all(t, d.a, d.b);
                return toks;
            case DecKind::ByteFallback: {
                std::vector<std::string> out;
                std::string pending;  // bytes of consecutive <0xHH> tokens
                std::size_t pending_count = 0;
                auto flush = [&] {
                    if (pending_count == 0) return;
                    bool valid = true;
                    for (std::size_t i = 0; i < pending.size();) {
                        std::uint32_t cp;
                        i += decode_utf8(pending, i, cp);
                        valid = valid && cp < kInvalidByte;
                    }
                    if (valid) out.push_back(pending);
                    else
                        for (std::size_t i = 0; i < pending_count; ++i) out.push_back("\xEF\xBF\xBD");
                    pending.clear();
                    pending_count = 0;
                };
                for (auto& t : toks) {
                    if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
                        std::isxdigit(static_cast<unsigned char>(t[4]))) {
                        pending.push_back(static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16)));
                        ++pending_count;
                    } else {
                        flush();
                        out.push_back(std::move(t));
                    }
                }
                flush();
                return out;
            }
            case DecKind::Fuse: {
                std::string all;
                for (const auto& t : toks) all += t;
                return {all};
            }
            case DecKind::Strip:
                for (auto& t : toks) {
                    for (int k = 0; k < d.start && t.compare(0, d.a.size(), d.a) == 0; ++k) t.erase(0, d.a.size());
                    for (int k = 0; k < d.stop && t.size() >= d.a.size() && t.compare(t.size() - d.a.size(), d.a.size(), d.a) == 0; ++k)
                        t.erase(t.size() - d.a.size());
                }
                return toks;
        }
        return toks;
    }

    struct Merge { std::int32_t rank; TokenId id; };

    std::string src_;
    std::unordered_map<std::string, TokenId> vocab_;
    std::unordered_map<std::uint64_t, Merge> merges_;
    std::vector<std::string> id_to_token_;
    std::vector<bool> special_;
    std::vector<Added> added_;
    std::vector<NormStep> norm_;
    std::vector<PreStep> pre_;
    std::vector<DecStep> decoders_;
    std::vector<TokenId> prefix_, suffix_;
    TokenId unk_ = -1;
    bool byte_fallback_ = false, ignore_merges_ = false, fuse_unk_ = false, byte_level_ = false;
    std::array<std::uint32_t, 256> byte_map_ = detail::bytes_to_unicode();
    std::array<int, 0x200> byte_unmap_ = [] {
        std::array<int, 0x200> u{};
        u.fill(-1);
        const auto m = detail::bytes_to_unicode();
        for (int b = 0; b < 256; ++b) u[m[static_cast<std::size_t>(b)]] = b;
        return u;
    }();
};

}  // namespace massact::text

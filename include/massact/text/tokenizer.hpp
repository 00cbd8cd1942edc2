// massact/text/tokenizer.hpp - Hugging Face tokenizer.json: the BPE model with every normalizer,
// pre-tokenizer, post-processor and decoder the families' tokenizers use.
//
// encode(text), as Hugging Face `tokenizers`:
//   1. added tokens with normalized=false are found in the raw text (added.hpp);
//   2. each remaining piece is normalised (normalize.hpp), and added tokens with normalized=true
//      are found in the normalised text;
//   3. each remaining piece goes through the pre-tokenizers (pretokenize.hpp) and the model (bpe.hpp);
//   4. with add_special_tokens, the post-processor's tokens (BOS, ...) go around the ids.
// decode(ids) runs the decoder chain (decode.hpp). Anything massact does not implement (WordPiece,
// Unigram, a Precompiled normalizer, ...) is refused with an error naming the JSON field, never
// encoded silently wrong.
//
// Invalid UTF-8 in the input does not crash: byte-level tokenizers encode the raw bytes (decode
// returns them unchanged); SentencePiece-style ones use <0xHH> byte-fallback tokens (or unk),
// and their decoder turns invalid byte sequences into U+FFFD.
#pragma once

#include "massact/core/error.hpp"
#include "massact/io/json_file.hpp"
#include "massact/text/added.hpp"
#include "massact/text/bpe.hpp"
#include "massact/text/decode.hpp"
#include "massact/text/normalize.hpp"
#include "massact/text/pretokenize.hpp"
#include "massact/text/regex.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace massact::text {

class Tokenizer {
public:
    /// Load a tokenizer.json file (errors name the file and the JSON field path).
    static Tokenizer from_file(const std::string& path) { return Tokenizer(io::read_json_file(path), path); }

    Tokenizer(const nlohmann::json& j, std::string source = "tokenizer.json") : src_(std::move(source)) {
        if (!j.is_object()) fail("", "expected a JSON object");
        id_limit_ = id_limit(j);
        load_model(j);
        load_added(j);
        if (j.contains("normalizer") && !j["normalizer"].is_null()) add_normalizer(j["normalizer"], "normalizer");
        if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) add_pre(j["pre_tokenizer"], "pre_tokenizer");
        if (j.contains("post_processor") && !j["post_processor"].is_null()) add_post(j["post_processor"], "post_processor");
        if (j.contains("decoder") && !j["decoder"].is_null()) add_decoder(j["decoder"], "decoder");
    }

    /// Token ids of `text`; with add_special_tokens the post-processor's tokens (e.g. BOS) are added.
    std::vector<TokenId> encode(std::string_view text, bool add_special_tokens = true) const {
        std::vector<TokenId> out;
        if (add_special_tokens) out = prefix_;
        Cache cache;  // per call: thread-safe
        for (const Segment& raw : raw_added_.split(text)) {
            if (raw.token >= 0) {
                out.push_back(raw_added_.token(raw.token).id);
                continue;
            }
            const std::string norm = normalize(std::string(text.substr(raw.span.begin, raw.span.end - raw.span.begin)), norm_);
            for (const Segment& seg : norm_added_.split(norm)) {
                if (seg.token >= 0) out.push_back(norm_added_.token(seg.token).id);
                else encode_words(norm.substr(seg.span.begin, seg.span.end - seg.span.begin), raw.span.begin == 0 && seg.span.begin == 0, cache, out);
            }
        }
        if (add_special_tokens) out.insert(out.end(), suffix_.begin(), suffix_.end());
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
        for (const auto& d : decoders_) toks = d.apply(std::move(toks));
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
        if (const TokenId* id = bpe_.find(tok)) return *id;
        for (const auto* set : {&raw_added_, &norm_added_})
            for (const auto& a : set->tokens())
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
    using Cache = Bpe::Cache;

    [[noreturn]] void fail(const std::string& path, const std::string& msg) const {
        throw Error(src_ + ": " + (path.empty() ? "" : path + ": ") + msg);
    }
    const nlohmann::json& field(const nlohmann::json& o, const std::string& key, const std::string& path) const {
        if (!o.is_object() || !o.contains(key)) fail(path.empty() ? key : path + "." + key, "missing field");
        return o[key];
    }
    std::string str(const nlohmann::json& o, const std::string& key, const std::string& path) const {
        const auto& v = field(o, key, path);
        if (!v.is_string()) fail(path + "." + key, "expected a string, found " + io::json_brief(v));
        return v.get<std::string>();
    }
    template <typename T>
    T opt(const nlohmann::json& o, const std::string& key, T dflt) const {
        if (!o.contains(key) || o[key].is_null()) return dflt;
        try {
            return o[key].get<T>();
        } catch (const nlohmann::json::exception&) {
            fail(key, "unexpected value " + io::json_brief(o[key]));
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
            bpe_.add_token(it.key(), id);
            set_token(id, it.key(), false, "model.vocab[\"" + it.key() + "\"]");
        }
        bpe_.byte_fallback = opt<bool>(m, "byte_fallback", false);
        bpe_.ignore_merges = opt<bool>(m, "ignore_merges", false);
        bpe_.fuse_unk = opt<bool>(m, "fuse_unk", false);
        const double dropout = m.contains("dropout") && m["dropout"].is_number() ? m["dropout"].get<double>() : 0.0;
        if (dropout != 0.0) fail("model.dropout", "BPE dropout " + std::to_string(dropout) + " is not supported for inference");
        for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
            if (m.contains(k) && !m[k].is_null() && !(m[k].is_string() && m[k].get<std::string>().empty()))
                fail(std::string("model.") + k, "unsupported value " + io::json_brief(m[k]));
        if (m.contains("unk_token") && !m["unk_token"].is_null()) {
            const std::string unk = str(m, "unk_token", "model");
            const TokenId* id = bpe_.find(unk);
            if (!id) fail("model.unk_token", "\"" + unk + "\" is not in model.vocab");
            bpe_.unk = *id;
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
                    fail(path, "expected \"a b\" (two tokens separated by one space), found " + io::json_brief(e));
                a = s.substr(0, sp);
                b = s.substr(sp + 1);
            } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
                a = e[0].get<std::string>();
                b = e[1].get<std::string>();
            } else {
                fail(path, "expected \"a b\" or [\"a\", \"b\"], found " + io::json_brief(e));
            }
            const TokenId *ia = bpe_.find(a), *ib = bpe_.find(b), *iab = bpe_.find(a + b);
            if (!ia) fail(path, "merge of unknown token \"" + a + "\"");
            if (!ib) fail(path, "merge of unknown token \"" + b + "\"");
            if (!iab) fail(path, "merge result \"" + a + b + "\" is not in model.vocab");
            bpe_.add_merge(*ia, *ib, *iab);
        }
    }

    void load_added(const nlohmann::json& j) {
        if (!j.contains("added_tokens") || j["added_tokens"].is_null()) return;
        const auto& arr = j["added_tokens"];
        if (!arr.is_array()) fail("added_tokens", "expected an array");
        for (std::size_t i = 0; i < arr.size(); ++i) {
            const std::string path = "added_tokens[" + std::to_string(i) + "]";
            const auto& e = arr[i];
            if (!e.contains("id") || !e["id"].is_number_integer() || e["id"].get<long long>() < 0)
                fail(path + ".id", "missing or not a non-negative integer");
            AddedToken a;
            a.content = str(e, "content", path);
            a.id = e["id"].get<TokenId>();
            a.special = opt<bool>(e, "special", false);
            a.lstrip = opt<bool>(e, "lstrip", false);
            a.rstrip = opt<bool>(e, "rstrip", false);
            a.single_word = opt<bool>(e, "single_word", false);
            a.normalized = opt<bool>(e, "normalized", !a.special);
            if (a.content.empty()) fail(path + ".content", "empty");
            set_token(a.id, a.content, a.special, path + ".id");
            (a.normalized ? norm_added_ : raw_added_).add(std::move(a));
        }
    }

    /// A Sequence's items, refused 8 levels deep (real tokenizers nest one or two; the recursion and the paths in its
    /// messages would otherwise grow with the input: 50000 levels took gigabytes).
    const nlohmann::json& sequence(const nlohmann::json& n, const char* key, const std::string& path) const {
        if (std::count(path.begin(), path.end(), '[') >= 8) fail(path + ".type", "a Sequence nested more than 8 levels deep");
        return array(n, key, path);
    }

    void add_normalizer(const nlohmann::json& n, const std::string& path) {
        const std::string type = str(n, "type", path);
        using K = NormalizerStep::Kind;
        auto step = [](K kind) {
            NormalizerStep s;
            s.kind = kind;
            return s;
        };
        const std::map<std::string, UnicodeForm> forms{
            {"NFC", UnicodeForm::NFC}, {"NFD", UnicodeForm::NFD}, {"NFKC", UnicodeForm::NFKC}, {"NFKD", UnicodeForm::NFKD}};
        if (type == "Sequence") {
            const auto& list = sequence(n, "normalizers", path);
            for (std::size_t i = 0; i < list.size(); ++i) add_normalizer(list[i], path + ".normalizers[" + std::to_string(i) + "]");
        } else if (auto f = forms.find(type); f != forms.end()) {
            NormalizerStep s = step(K::Unicode);
            s.form = f->second;
            norm_.push_back(s);
        } else if (type == "Lowercase") {
            norm_.push_back(step(K::Lowercase));
        } else if (type == "Strip") {
            NormalizerStep s = step(K::Strip);
            s.left = opt<bool>(n, "strip_left", true);
            s.right = opt<bool>(n, "strip_right", true);
            norm_.push_back(s);
        } else if (type == "Replace") {
            NormalizerStep s = step(K::Replace);
            s.pattern = pattern(n, path);
            s.content = str(n, "content", path);
            norm_.push_back(s);
        } else if (type == "Prepend") {
            NormalizerStep s = step(K::Prepend);
            s.content = str(n, "prepend", path);
            norm_.push_back(s);
        } else {
            fail(path + ".type", "unsupported normalizer \"" + type +
                                     "\" (massact implements NFC, NFD, NFKC, NFKD, Lowercase, Strip, Replace, Prepend, Sequence)");
        }
    }

    void add_pre(const nlohmann::json& p, const std::string& path) {
        const std::string type = str(p, "type", path);
        using K = PreTokenizerStep::Kind;
        PreTokenizerStep s;
        if (type == "Sequence") {
            const auto& list = sequence(p, "pretokenizers", path);
            for (std::size_t i = 0; i < list.size(); ++i) add_pre(list[i], path + ".pretokenizers[" + std::to_string(i) + "]");
            return;
        } else if (type == "ByteLevel") {
            s.kind = K::ByteLevel;
            s.add_prefix_space = opt<bool>(p, "add_prefix_space", false);
            if (opt<bool>(p, "use_regex", true)) s.pattern = std::make_shared<const Regex>(kGPT2Pattern);
        } else if (type == "Metaspace") {
            s.kind = K::Metaspace;
            s.replacement = p.contains("replacement") ? str(p, "replacement", path) : "\xE2\x96\x81";
            s.split = opt<bool>(p, "split", true);
            const std::string scheme = p.contains("prepend_scheme") ? str(p, "prepend_scheme", path)
                                       : (opt<bool>(p, "add_prefix_space", true) ? "always" : "never");
            if (scheme == "always") s.prepend = PreTokenizerStep::Prepend::Always;
            else if (scheme == "first") s.prepend = PreTokenizerStep::Prepend::First;
            else if (scheme == "never") s.prepend = PreTokenizerStep::Prepend::Never;
            else fail(path + ".prepend_scheme", "unsupported value \"" + scheme + "\" (expected first, always, never)");
        } else if (type == "Split") {
            s.kind = K::Split;
            s.pattern = pattern(p, path);
            s.behavior = behavior(p, path);
            s.invert = opt<bool>(p, "invert", false);
        } else if (type == "Digits") {
            s.kind = K::Digits;
            s.individual_digits = opt<bool>(p, "individual_digits", false);
        } else if (type == "Punctuation") {
            s.kind = K::Punctuation;
            s.behavior = behavior(p, path);
        } else if (type == "Whitespace") {
            s.kind = K::Whitespace;
            s.pattern = std::make_shared<const Regex>(R"(\w+|[^\w\s]+)");
        } else if (type == "WhitespaceSplit") {
            s.kind = K::WhitespaceSplit;
        } else if (type == "BertPreTokenizer") {
            s.kind = K::Bert;
        } else {
            fail(path + ".type", "unsupported pre-tokenizer \"" + type +
                                     "\" (massact implements Split, Digits, Punctuation, Whitespace, WhitespaceSplit, "
                                     "BertPreTokenizer, Metaspace, ByteLevel, Sequence)");
        }
        pre_.push_back(s);
    }

    /// A {"String": s} or {"Regex": r} pattern.
    std::shared_ptr<const Regex> pattern(const nlohmann::json& o, const std::string& path) const {
        const auto& p = field(o, "pattern", path);
        if (p.contains("String")) {
            const std::string s = str(p, "String", path + ".pattern");
            if (s.empty()) fail(path + ".pattern.String", "empty");
            return std::make_shared<const Regex>(s, Regex::Syntax::Literal);
        }
        if (p.contains("Regex")) {
            const std::string re = str(p, "Regex", path + ".pattern");
            try {
                return std::make_shared<const Regex>(re);
            } catch (const Error& e) {
                fail(path + ".pattern", e.what());
            }
        }
        fail(path + ".pattern", "expected {\"String\": ...} or {\"Regex\": ...}, found " + io::json_brief(p));
    }
    SplitBehavior behavior(const nlohmann::json& o, const std::string& path) const {
        const std::map<std::string, SplitBehavior> names{{"Removed", SplitBehavior::Removed},
                                                                {"Isolated", SplitBehavior::Isolated},
                                                                {"MergedWithPrevious", SplitBehavior::MergedWithPrevious},
                                                                {"MergedWithNext", SplitBehavior::MergedWithNext},
                                                                {"Contiguous", SplitBehavior::Contiguous}};
        const std::string b = o.contains("behavior") ? str(o, "behavior", path) : "Isolated";
        auto it = names.find(b);
        if (it == names.end())
            fail(path + ".behavior", "unsupported value \"" + b + "\" (expected Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)");
        return it->second;
    }
    const nlohmann::json& array(const nlohmann::json& o, const std::string& key, const std::string& path) const {
        const auto& v = field(o, key, path);
        if (!v.is_array()) fail(path + "." + key, "expected an array, found " + io::json_brief(v));
        return v;
    }

    void load_post_processor(const nlohmann::json& j) {
        if (!j.contains("post_processor") || j["post_processor"].is_null()) return;
        add_post(j["post_processor"], "post_processor");
    }
    void add_post(const nlohmann::json& p, const std::string& path) {
        const std::string type = str(p, "type", path);
        if (type == "ByteLevel") return;  // adds nothing
        if (type == "Sequence") {
            const auto& list = sequence(p, "processors", path);
            for (std::size_t i = 0; i < list.size(); ++i) add_post(list[i], path + ".processors[" + std::to_string(i) + "]");
            return;
        }
        if (type == "RobertaProcessing" || type == "BertProcessing") {  // cls, the text, sep
            prefix_.push_back(pair_id(field(p, "cls", path), path + ".cls"));
            suffix_.push_back(pair_id(field(p, "sep", path), path + ".sep"));
            return;
        }
        if (type != "TemplateProcessing")
            fail(path + ".type", "unsupported post-processor \"" + type +
                                     "\" (massact implements TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence)");
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
                    if (!ids.is_array() || ids.size() != 1 || !ids[0].is_number_integer())
                        fail(path + ".special_tokens." + name + ".ids", "expected one integer id, found " + io::json_brief(ids));
                    id = ids[0].get<TokenId>();
                } else if (auto t = token_to_id(name)) {
                    id = *t;
                } else {
                    fail(ep, "special token \"" + name + "\" is not defined");
                }
                (seen_seq ? suffix_ : prefix_).push_back(id);
            } else {
                fail(ep, "expected SpecialToken or Sequence, found " + io::json_brief(e));
            }
        }
    }

    TokenId pair_id(const nlohmann::json& e, const std::string& path) const {  // ["<s>", 0]
        if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_number_integer())
            fail(path, "expected [token, id], found " + io::json_brief(e));
        return e[1].get<TokenId>();
    }

    void add_decoder(const nlohmann::json& d, const std::string& path) {
        const std::string type = str(d, "type", path);
        using K = DecoderStep::Kind;
        DecoderStep s;
        if (type == "Sequence") {
            const auto& list = sequence(d, "decoders", path);
            for (std::size_t i = 0; i < list.size(); ++i) add_decoder(list[i], path + ".decoders[" + std::to_string(i) + "]");
            return;
        } else if (type == "ByteLevel") {
            s.kind = K::ByteLevel;
        } else if (type == "Metaspace") {
            s.kind = K::Metaspace;
            s.replacement = d.contains("replacement") ? str(d, "replacement", path) : "\xE2\x96\x81";
            const std::string scheme = d.contains("prepend_scheme") ? str(d, "prepend_scheme", path)
                                       : (opt<bool>(d, "add_prefix_space", true) ? "always" : "never");
            s.prepend = scheme != "never";
        } else if (type == "Replace") {
            s.kind = K::Replace;
            s.pattern = pattern(d, path);
            s.content = str(d, "content", path);
        } else if (type == "ByteFallback") {
            s.kind = K::ByteFallback;
        } else if (type == "Fuse") {
            s.kind = K::Fuse;
        } else if (type == "Strip") {
            s.kind = K::Strip;
            s.content = str(d, "content", path);
            std::uint32_t cp = 0;  // (Hugging Face's Strip strips one character)
            if (s.content.empty() || decode_utf8(s.content, 0, cp) != s.content.size())
                fail(path + ".content", "expected one character, found \"" + s.content + "\"");
            s.start = opt<int>(d, "start", 0);
            s.stop = opt<int>(d, "stop", 0);
            if (s.start < 0) fail(path + ".start", "expected a non-negative count, found " + std::to_string(s.start));
            if (s.stop < 0) fail(path + ".stop", "expected a non-negative count, found " + std::to_string(s.stop));
        } else {
            fail(path + ".type", "unsupported decoder \"" + type +
                                     "\" (massact implements ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence)");
        }
        decoders_.push_back(s);
    }

    /// The largest token id a file may use: ids index a table, so an id may not exceed twice the number of tokens
    /// the file declares (plus 1024 for reserved gaps): a small file cannot make the table large.
    static std::size_t id_limit(const nlohmann::json& j) {
        std::size_t n = 0;
        if (j.contains("model") && j["model"].is_object() && j["model"].contains("vocab") && j["model"]["vocab"].is_object())
            n += j["model"]["vocab"].size();
        if (j.contains("added_tokens") && j["added_tokens"].is_array()) n += j["added_tokens"].size();
        return 2 * n + 1024;
    }

    void set_token(TokenId id, const std::string& tok, bool special, const std::string& path) {
        if (static_cast<std::size_t>(id) >= id_limit_)
            fail(path, "token id " + std::to_string(id) + " is out of range: the file declares " + std::to_string((id_limit_ - 1024) / 2) +
                           " tokens, so ids must be below " + std::to_string(id_limit_));
        if (static_cast<std::size_t>(id) >= id_to_token_.size()) {
            id_to_token_.resize(static_cast<std::size_t>(id) + 1);
            special_.resize(static_cast<std::size_t>(id) + 1, false);
        }
        id_to_token_[static_cast<std::size_t>(id)] = tok;
        special_[static_cast<std::size_t>(id)] = special_[static_cast<std::size_t>(id)] || special;
    }

    // ---- encoding -------------------------------------------------------------------
    /// Pre-tokenize a normalised piece and append the model's ids of each word.
    void encode_words(std::string piece, bool at_start, Cache& cache, std::vector<TokenId>& out) const {
        if (piece.empty()) return;
        std::vector<std::string> words{std::move(piece)};
        for (const auto& p : pre_) {
            std::vector<std::string> next;
            for (std::size_t i = 0; i < words.size(); ++i)
                for (auto& w : p.apply(std::move(words[i]), at_start && i == 0))
                    next.push_back(p.kind == PreTokenizerStep::Kind::ByteLevel ? byte_level_encode(w) : std::move(w));
            words.swap(next);
        }
        for (const auto& w : words)
            if (!w.empty()) bpe_.tokenize(w, cache, out);
    }

    std::string src_;
    std::size_t id_limit_ = 0;  // ids at or above it are refused (id_limit)
    Bpe bpe_;
    std::vector<std::string> id_to_token_;
    std::vector<bool> special_;
    AddedTokenSet raw_added_, norm_added_;
    std::vector<NormalizerStep> norm_;
    std::vector<PreTokenizerStep> pre_;
    std::vector<DecoderStep> decoders_;
    std::vector<TokenId> prefix_, suffix_;
};

}  // namespace massact::text

// massact/text/gguf_vocab.hpp - the tokenizer a GGUF file carries (tokenizer.ggml.*), as the
// tokenizer.json Hugging Face would write for it, so one loader (text/tokenizer.hpp) runs both.
//
//   gpt2   byte-level BPE: tokens, merges ("a b"); tokenizer.ggml.pre names the pre-tokenizer regex.
//   llama  SentencePiece BPE: tokens, scores, token types; merges derived as transformers'
//          SentencePieceExtractor does (every split of a token into two tokens, ordered by the merged
//          token's score), byte fallback, "▁" for spaces (prepended when add_space_prefix).
// Token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. Control and unknown
// tokens become special added tokens, user-defined ones plain added tokens.
#pragma once

#include "massact/core/error.hpp"
#include "massact/io/checkpoint.hpp"
#include "massact/io/gguf.hpp"
#include "massact/text/tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <unordered_map>
#include <vector>

namespace massact::text {

namespace detail {

/// The pre-tokenizer regex of llama.cpp's pre-tokenizer names (the ones massact maps).
inline const char* gguf_pre_regex(const std::string& pre) {
    if (pre == "llama-bpe" || pre == "llama3" || pre == "dbrx" || pre == "smaug-bpe")
        return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    if (pre == "qwen2" || pre == "deepseek-r1-qwen")
        return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    return nullptr;
}

inline nlohmann::json special_template(const std::vector<std::pair<std::string, std::int64_t>>& before,
                                       const std::vector<std::pair<std::string, std::int64_t>>& after) {
    nlohmann::json single = nlohmann::json::array(), special = nlohmann::json::object();
    auto add = [&](const std::pair<std::string, std::int64_t>& t) {
        single.push_back({{"SpecialToken", {{"id", t.first}, {"type_id", 0}}}});
        special[t.first] = {{"id", t.first}, {"ids", {t.second}}, {"tokens", {t.first}}};
    };
    for (const auto& t : before) add(t);
    single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    for (const auto& t : after) add(t);
    return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", single}, {"special_tokens", special}};
}

/// A GGUF file's vocabulary (tokenizer.ggml.*) read into the parts of a tokenizer.json.
class GgufVocab {
public:
    explicit GgufVocab(const io::GgufFile& f) : f_(f), tokens_(f.get_array("tokenizer.ggml.tokens")), n_(tokens_.size()) {
        for (std::size_t i = 0; i < n_; ++i)
            if (!tokens_[i].is_string()) throw Error(f.path() + ": metadata \"tokenizer.ggml.tokens\"[" + std::to_string(i) + "] is not a string");
    }

    /// The token id under `key`, -1 when absent.
    std::int64_t token_id(const char* key) const {
        if (!f_.has(key)) return -1;
        const std::int64_t id = f_.get_int(key);
        if (id < 0 || static_cast<std::size_t>(id) >= n_) throw Error(f_.path() + ": metadata \"" + key + "\": " + std::to_string(id) + " is not a token id");
        return id;
    }
    bool flag(const char* key, bool dflt) const {
        if (!f_.has(key)) return dflt;
        if (!f_.at(key).is_boolean()) throw Error(f_.path() + ": metadata \"" + key + "\": expected true or false");
        return f_.at(key).get<bool>();
    }
    const std::string& token(std::int64_t id) const { return tokens_[static_cast<std::size_t>(id)].get_ref<const std::string&>(); }

    /// token -> id (the first id of a repeated token), and the added tokens (control, user-defined, unused).
    void vocab(nlohmann::json& vocab, nlohmann::json& added) const {
        std::vector<int> types(n_, 1);
        if (f_.has("tokenizer.ggml.token_type")) {
            const auto& t = f_.get_array("tokenizer.ggml.token_type");
            if (t.size() != n_)
                throw Error(f_.path() + ": metadata \"tokenizer.ggml.token_type\" has " + std::to_string(t.size()) + " entries for " +
                            std::to_string(n_) + " tokens");
            for (std::size_t i = 0; i < n_; ++i) types[i] = t[i].is_number_integer() ? t[i].get<int>() : 1;
        }
        vocab = nlohmann::json::object(), added = nlohmann::json::array();
        for (std::size_t i = 0; i < n_; ++i) {
            const std::string& s = token(static_cast<std::int64_t>(i));
            if (!vocab.contains(s)) vocab[s] = i;
            if (types[i] == 2 || types[i] == 3 || types[i] == 4)
                added.push_back({{"id", i}, {"content", s}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                                 {"normalized", false}, {"special", types[i] != 4}});
        }
    }

    /// GPT-2's byte-level BPE: the stored merges, the pre-tokenizer named by tokenizer.ggml.pre.
    void byte_level(nlohmann::json& j, nlohmann::json& bpe) const {
        nlohmann::json merges = nlohmann::json::array();
        if (f_.has("tokenizer.ggml.merges"))
            for (const auto& m : f_.get_array("tokenizer.ggml.merges")) merges.push_back(m);
        bpe["merges"] = std::move(merges);
        const std::string pre = f_.has("tokenizer.ggml.pre") ? f_.get_string("tokenizer.ggml.pre") : "default";
        const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
        if (pre == "default" || pre == "gpt-2" || pre == "gpt2") {
            j["pre_tokenizer"] = byte_level;
        } else if (const char* rx = gguf_pre_regex(pre)) {
            nlohmann::json bl = byte_level;
            bl["use_regex"] = false;
            j["pre_tokenizer"] = {{"type", "Sequence"},
                                  {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", rx}}}, {"behavior", "Isolated"}, {"invert", false}}, bl}}};
            if (pre == "llama-bpe" || pre == "llama3") bpe["ignore_merges"] = true;
        } else {
            throw Error(f_.path() + ": metadata \"tokenizer.ggml.pre\": pre-tokenizer \"" + pre +
                        "\" is not one massact maps (default, gpt-2, llama-bpe, llama3, dbrx, smaug-bpe, qwen2, deepseek-r1-qwen)");
        }
        j["decoder"] = byte_level;
    }

    /// SentencePiece's merges from the scores, as transformers' SentencePieceExtractor makes them: for each token (in id
    /// order) its splits into two tokens, ordered by the ids of the parts; then all stably by the merged token's score,
    /// highest first.
    nlohmann::json sentencepiece_merges() const {
        const auto& scores = f_.get_array("tokenizer.ggml.scores");
        if (scores.size() != n_)
            throw Error(f_.path() + ": metadata \"tokenizer.ggml.scores\" has " + std::to_string(scores.size()) + " entries for " +
                        std::to_string(n_) + " tokens");
        for (std::size_t i = 0; i < n_; ++i)
            if (!scores[i].is_number()) throw Error(f_.path() + ": metadata \"tokenizer.ggml.scores\"[" + std::to_string(i) + "] is not a number");
        std::unordered_map<std::string, std::size_t> id;
        for (std::size_t i = 0; i < n_; ++i) id.emplace(token(static_cast<std::int64_t>(i)), i);
        struct Merge {
            double score;
            std::size_t l, r;
        };
        std::vector<Merge> merges;
        for (std::size_t i = 0; i < n_; ++i) {
            const std::string& s = token(static_cast<std::int64_t>(i));
            std::vector<Merge> local;
            for (std::size_t k = 1; k < s.size(); ++k) {
                const auto a = id.find(s.substr(0, k)), b = id.find(s.substr(k));
                if (a != id.end() && b != id.end()) local.push_back({scores[i].get<double>(), a->second, b->second});
            }
            std::sort(local.begin(), local.end(), [](const Merge& x, const Merge& y) { return x.l != y.l ? x.l < y.l : x.r < y.r; });
            merges.insert(merges.end(), local.begin(), local.end());
        }
        std::stable_sort(merges.begin(), merges.end(), [](const Merge& x, const Merge& y) { return x.score > y.score; });
        nlohmann::json m = nlohmann::json::array();
        for (const auto& x : merges) m.push_back({tokens_[x.l], tokens_[x.r]});
        return m;
    }

    /// SentencePiece (llama): merges from the scores, byte fallback, the "\u2581" space normaliser and decoder.
    void sentencepiece(nlohmann::json& j, nlohmann::json& bpe) const {
        bpe["merges"] = sentencepiece_merges();
        bpe["byte_fallback"] = true;
        bpe["fuse_unk"] = true;
        const std::int64_t unk = token_id("tokenizer.ggml.unknown_token_id");
        if (unk >= 0) bpe["unk_token"] = token(unk);
        nlohmann::json norm = nlohmann::json::array();
        if (flag("tokenizer.ggml.add_space_prefix", true)) norm.push_back({{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}});
        norm.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}});
        j["normalizer"] = {{"type", "Sequence"}, {"normalizers", norm}};
        j["decoder"] = {{"type", "Sequence"},
                        {"decoders",
                         {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
                          {{"type", "ByteFallback"}},
                          {{"type", "Fuse"}},
                          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
    }

private:
    const io::GgufFile& f_;
    const nlohmann::json& tokens_;
    std::size_t n_;
};

}  // namespace detail

/// tokenizer.json (as JSON) for the vocabulary in a GGUF file's metadata.
inline nlohmann::json tokenizer_json(const io::GgufFile& f) {
    const std::string model = f.get_string("tokenizer.ggml.model");
    const detail::GgufVocab v(f);
    nlohmann::json vocab, added;
    v.vocab(vocab, added);
    const std::int64_t bos = v.token_id("tokenizer.ggml.bos_token_id"), eos = v.token_id("tokenizer.ggml.eos_token_id");
    std::vector<std::pair<std::string, std::int64_t>> before, after;
    if (v.flag("tokenizer.ggml.add_bos_token", model == "llama") && bos >= 0) before.emplace_back(v.token(bos), bos);
    if (v.flag("tokenizer.ggml.add_eos_token", false) && eos >= 0) after.emplace_back(v.token(eos), eos);

    nlohmann::json j = {{"version", "1.0"}, {"added_tokens", added}, {"normalizer", nullptr}, {"pre_tokenizer", nullptr}};
    j["post_processor"] = detail::special_template(before, after);
    nlohmann::json bpe = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                          {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
                          {"vocab", std::move(vocab)}};
    if (model == "gpt2")
        v.byte_level(j, bpe);
    else if (model == "llama")
        v.sentencepiece(j, bpe);
    else
        throw Error(f.path() + ": metadata \"tokenizer.ggml.model\": \"" + model + "\" is not one massact reads (gpt2, llama)");
    j["model"] = std::move(bpe);
    return j;
}

/// Whether a model path (a directory with tokenizer.json, or a GGUF file with a vocabulary) has a tokenizer.
inline bool has_tokenizer(const std::string& path) {
    if (!io::is_gguf_path(path)) return io::file_exists(path + "/tokenizer.json");
    return io::GgufFile(path).has("tokenizer.ggml.model");
}

/// The tokenizer of a model path: DIR/tokenizer.json, or the vocabulary of a GGUF file.
inline Tokenizer load_tokenizer(const std::string& path) {
    if (!io::is_gguf_path(path)) return Tokenizer::from_file(path + "/tokenizer.json");
    const io::GgufFile f(path);
    return Tokenizer(tokenizer_json(f), path + " (tokenizer.ggml)");
}

}  // namespace massact::text

// Six real tokenizer.json files (Llama 2, Llama 3.1, Qwen3, Gemma 3, gpt-oss, DeepSeek-V3) against
// the ids of Hugging Face `tokenizers` 0.23 (tests/data/realtok/cases.json, from ../shared/realtok).
// The files themselves are fetched by tools/fetch_tokenizers.sh into the build tree (the CTest
// fixture `realtok` runs it first); a missing file fails the test.
#include "common.hpp"

#include <fstream>
#include <sstream>

using namespace massact;
using text::TokenId;
using Ids = std::vector<TokenId>;

namespace {

const char* const kNames[] = {"llama2", "llama3_1", "qwen3", "gemma3", "gptoss", "deepseek_v3"};

std::string tokenizer_path(const std::string& name) { return std::string(MASSACT_REALTOK_DIR) + "/" + name + "/tokenizer.json"; }

const text::Tokenizer& tokenizer(const std::string& name) {
    static std::map<std::string, text::Tokenizer> cache;  // test-local: each file is parsed once
    auto it = cache.find(name);
    if (it == cache.end()) it = cache.emplace(name, text::Tokenizer::from_file(tokenizer_path(name))).first;
    return it->second;
}

std::string val_text() {
    std::ifstream f(std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt", std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

}  // namespace

TEST_CASE("six real tokenizers give Hugging Face's ids, with and without special tokens, and decode back") {
    const auto cases = io::read_json_file(test::data("realtok/cases.json"));
    for (const char* name : kNames) {
        CAPTURE(name);
        REQUIRE(cases.contains(name));
        const auto& tok = tokenizer(name);
        std::size_t n = 0;
        for (const auto& c : cases[name]) {
            const std::string text = c["text"].get<std::string>();
            CAPTURE(text);
            CHECK(tok.encode(text, true) == c["ids"].get<Ids>());
            CHECK(tok.encode(text, false) == c["ids_no_special"].get<Ids>());
            CHECK(tok.decode(c["ids"].get<Ids>(), true) == c["decoded"].get<std::string>());
            ++n;
        }
        CHECK(n >= 30);
    }
}

TEST_CASE("an empty text is the post-processor's tokens alone, as in Hugging Face") {
    CHECK(tokenizer("llama2").encode("") == Ids{1});
    CHECK(tokenizer("llama3_1").encode("") == Ids{128000});
    CHECK(tokenizer("gemma3").encode("") == Ids{2});
    CHECK(tokenizer("qwen3").encode("").empty());
    for (const char* name : kNames) CHECK(tokenizer(name).encode("", false).empty());
}

TEST_CASE("decode(encode(val.txt)) is val.txt for every real tokenizer") {
    const std::string val = val_text();
    REQUIRE(val.size() > 100000);
    for (const char* name : kNames) {
        CAPTURE(name);
        const auto& tok = tokenizer(name);
        const Ids ids = tok.encode(val, false);
        CHECK(ids.size() < val.size() / 2);  // real merges happen: far fewer tokens than bytes
        CHECK(tok.decode(ids) == val);
    }
}

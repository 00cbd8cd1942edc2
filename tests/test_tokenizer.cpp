// tokenizer.json: the reference cases of the bundled models, round trips, a hand-made
// Llama-2-style tokenizer whose expected ids are derived by hand below, and malformed files.
#include "common.hpp"

#include <fstream>
#include <sstream>

using namespace massact;
using text::TokenId;
using Ids = std::vector<TokenId>;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

nlohmann::json sp_json() { return io::read_json_file(test::data("sp_tokenizer.json")); }

}  // namespace

TEST_CASE("bundled tokenizers reproduce every reference case (no special tokens)") {
    const auto cases = io::read_json_file(test::data("tokenizer_cases.json"));
    REQUIRE(cases.size() >= 10);
    for (const char* m : {"tiny-llama", "tiny-gpt2"}) {
        const auto tok = text::Tokenizer::from_file(test::model(m) + "/tokenizer.json");
        for (const auto& c : cases) {
            const std::string s = c["text"].get<std::string>();
            CAPTURE(s);
            CHECK(tok.encode(s, false) == c["ids"].get<Ids>());
        }
    }
}

TEST_CASE("tiny-llama adds <s> with special tokens on; tiny-gpt2 adds nothing") {
    const auto llama = text::Tokenizer::from_file(test::model("tiny-llama") + "/tokenizer.json");
    const auto gpt2 = text::Tokenizer::from_file(test::model("tiny-gpt2") + "/tokenizer.json");
    const Ids plain = llama.encode("Summer is warm. Winter is cold.", false);
    Ids with = llama.encode("Summer is warm. Winter is cold.", true);
    REQUIRE(with.size() == plain.size() + 1);
    CHECK(with[0] == 1);
    CHECK(llama.id_to_token(1) == "<s>");
    CHECK(Ids(with.begin() + 1, with.end()) == plain);
    CHECK(gpt2.encode("Summer is warm.", true) == gpt2.encode("Summer is warm.", false));
    // Special tokens in the text are matched whole, never split.
    const Ids s = llama.encode("a</s>b", false);
    CHECK(std::count(s.begin(), s.end(), 2) == 1);
    CHECK(llama.decode(s) == "a</s>b");
    CHECK(llama.decode(llama.encode("hi there", true), true) == "hi there");
}

TEST_CASE("decode(encode(x)) == x: val.txt and hard strings, for both bundled tokenizers") {
    const std::string val = read_file(std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt");
    REQUIRE(val.size() > 100000);
    const std::vector<std::string> hard = {
        "emoji 😀👍🏽 and 🇫🇷 flags",           "CJK 漢字かなカナ한국어 mixed",  "combining e\xCC\x81 a\xCC\x8A\xCC\x81",
        "tabs\t\tand\tmore\t",                   "runs   of     spaces   ",        "new\n\nlines\r\n\n  \n",
        "  leading and trailing  ",               "don't we'll they've I'M 'S",     "numbers 123456 ٣٤٥ Ⅻ ½",
        "invalid \xff\xfe bytes \xc3( and \xe2\x82", "",                               " ",
        "   \n\t ",                               "x",                               "\xF0\x9F\x98"};
    for (const char* m : {"tiny-llama", "tiny-gpt2"}) {
        const auto tok = text::Tokenizer::from_file(test::model(m) + "/tokenizer.json");
        CHECK(tok.decode(tok.encode(val, false)) == val);
        for (const auto& s : hard) {
            CAPTURE(s);
            CHECK(tok.decode(tok.encode(s, false)) == s);
        }
    }
}

TEST_CASE("PCRE2 splits: the GPT-2, Llama-3 and Qwen2 patterns cut text like their regexes") {
    const std::string llama3 =
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    auto split = [](const std::string& s, const std::string& pattern) {
        std::vector<std::string> out;
        const text::Regex re(pattern);
        for (const auto& sp : text::apply_behavior(text::pieces_around(s, re.find_all(s)), text::SplitBehavior::Isolated, false))
            out.push_back(s.substr(sp.begin, sp.end - sp.begin));
        return out;
    };
    const std::string gpt2(text::kGPT2Pattern);
    using V = std::vector<std::string>;
    CHECK(split("Hello world", gpt2) == V{"Hello", " world"});
    CHECK(split("I'm here  now!!", gpt2) == V{"I", "'m", " here", " ", " now", "!!"});
    CHECK(split("a   \n", gpt2) == V{"a", "   \n"});
    CHECK(split("x2024 years", gpt2) == V{"x", "2024", " years"});
    CHECK(split("\tfoo", gpt2) == V{"\t", "foo"});
    CHECK(split("caf\xC3\xA9 \xE2\x85\xAB", gpt2) == V{"caf\xC3\xA9", " \xE2\x85\xAB"});  // \p{L} and \p{N} beyond ASCII
    // Llama-3: digits in groups of three, case-insensitive contractions, punctuation eats newlines.
    CHECK(split("12345 I'LL go.\n\nok", llama3) == V{"123", "45", " I", "'LL", " go", ".\n\n", "ok"});
    CHECK(split("\n  foo", llama3) == V{"\n", " ", " foo"});
    // Invalid UTF-8 never matches: it stays a piece of its own and nothing is lost.
    CHECK(split("ab\xFF" "cd", gpt2) == V{"ab", "\xFF", "cd"});
    CHECK_THROWS_WITH(text::Regex("(unclosed"), doctest::Contains("offset"));
}

TEST_CASE("split behaviors and invert, as Hugging Face's NormalizedString::split") {
    using text::SplitBehavior;
    auto split = [](const std::string& s, SplitBehavior b, bool invert = false) {
        std::vector<std::string> out;
        const text::Regex re("-", text::Regex::Syntax::Literal);
        for (const auto& sp : text::apply_behavior(text::pieces_around(s, re.find_all(s)), b, invert))
            out.push_back(s.substr(sp.begin, sp.end - sp.begin));
        return out;
    };
    using V = std::vector<std::string>;
    const std::string s = "a-b--c-";
    CHECK(split(s, SplitBehavior::Removed) == V{"a", "b", "c"});
    CHECK(split(s, SplitBehavior::Isolated) == V{"a", "-", "b", "-", "-", "c", "-"});
    CHECK(split(s, SplitBehavior::MergedWithPrevious) == V{"a-", "b-", "-", "c-"});
    CHECK(split(s, SplitBehavior::MergedWithNext) == V{"a", "-b", "-", "-c", "-"});
    CHECK(split(s, SplitBehavior::Contiguous) == V{"a", "-", "b", "--", "c", "-"});
    CHECK(split(s, SplitBehavior::Removed, true) == V{"-", "-", "-", "-"});  // each match its own piece
    CHECK(split("-x", SplitBehavior::MergedWithPrevious) == V{"-", "x"});
}

TEST_CASE("normalizers: Unicode forms, lowercase, strip") {
    const std::string e_acute = "e\xCC\x81", e_precomposed = "\xC3\xA9";
    CHECK(text::unicode_normalize(e_acute, text::UnicodeForm::NFC) == e_precomposed);
    CHECK(text::unicode_normalize(e_precomposed, text::UnicodeForm::NFD) == e_acute);
    CHECK(text::unicode_normalize("\xEF\xAC\x81", text::UnicodeForm::NFKC) == "fi");  // the ligature fi
    CHECK(text::unicode_normalize("\xEF\xAC\x81", text::UnicodeForm::NFC) == "\xEF\xAC\x81");
    CHECK(text::unicode_normalize("x\xFF" + e_acute, text::UnicodeForm::NFC) == "x\xFF" + e_precomposed);  // invalid byte kept
    CHECK(text::unicode_lowercase("\xC3\x89" "COLE \xCE\xA3") == "\xC3\xA9" "cole \xCF\x83");
    CHECK(text::strip_spaces(" \t a b \xE3\x80\x80", true, true) == "a b");
}

// The hand-made Llama-2-style tokenizer (tests/data/sp_tokenizer.json):
//   normalizer: Prepend "▁", Replace " " -> "▁"; no pre-tokenizer; BPE with byte_fallback and
//   unk "<unk>" (fuse_unk); post-processor adds <s> (1).
//   vocab: <unk>0 <s>1 </s>2 <0x0A>3 <0xC3>4 <0xA9>5 <0xE2>6 <0x82>7 <0xAC>8 ▁9 a10 b11 c12 h13 t14 e15
//          ▁t16 he17 ▁the18 ab19 ▁c20 ▁cab21
//   merges by rank: 0 "▁ t", 1 "h e", 2 "▁t he", 3 "a b", 4 "▁ c", 5 "▁c ab"
TEST_CASE("hand-made Llama-2-style tokenizer: ids derived by hand") {
    const text::Tokenizer tok(sp_json(), "sp_tokenizer.json");
    // "the" -> "▁the" -> ▁ t h e; rank 0 gives ▁t h e; rank 1 gives ▁t he; rank 2 gives ▁the = 18.
    CHECK(tok.encode("the", false) == Ids{18});
    CHECK(tok.encode("the", true) == Ids{1, 18});
    // "the cab" -> "▁the▁cab": ▁the as above; ▁ c a b: rank 3 (a b) before rank 4 (▁ c): ▁ c ab,
    // then ▁c ab, then rank 5: ▁cab = 21.
    CHECK(tok.encode("the cab", false) == Ids{18, 21});
    // "é" = C3 A9 is not in the vocab: byte fallback <0xC3> <0xA9> after ▁.
    CHECK(tok.encode("é", false) == Ids{9, 4, 5});
    // "€" = E2 82 AC likewise.
    CHECK(tok.encode("€", false) == Ids{9, 6, 7, 8});
    // "a\n": ▁ a and the newline byte <0x0A>; no merge applies (no "▁ a").
    CHECK(tok.encode("a\n", false) == Ids{9, 10, 3});
    // "xy": neither char nor its byte token exists: <unk>, and fuse_unk makes one of the two.
    CHECK(tok.encode("xy", false) == Ids{9, 0});
    // Invalid UTF-8 (0xFF): no <0xFF> token, so <unk>.
    CHECK(tok.encode("\xff", false) == Ids{9, 0});
    // "<s>the": the special token is matched first; "the" is normalised on its own.
    CHECK(tok.encode("<s>the", false) == Ids{1, 18});
    // Decoding: ▁ -> space, byte tokens -> UTF-8, fuse, strip the prepended space.
    CHECK(tok.decode({18, 21}) == "the cab");
    CHECK(tok.decode({9, 4, 5}) == "é");
    CHECK(tok.decode({9, 6, 7, 8}) == "€");
    CHECK(tok.decode({9, 4}) == "\xEF\xBF\xBD");  // an incomplete byte sequence decodes to U+FFFD
    CHECK(tok.decode({1, 18}, true) == "the");
    // Merges written as pairs give the same encoding.
    auto j = sp_json();
    nlohmann::json pairs = nlohmann::json::array();
    for (const auto& m : j["model"]["merges"]) {
        const std::string s = m.get<std::string>();
        pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
    }
    j["model"]["merges"] = pairs;
    CHECK(text::Tokenizer(j).encode("the cab", false) == Ids{18, 21});
    // ignore_merges: a pre-token already in the vocab is emitted whole.
    j["model"]["ignore_merges"] = true;
    CHECK(text::Tokenizer(j).encode("the", false) == Ids{18});
}

TEST_CASE("Metaspace pre-tokenizer: prepend_scheme first / always / never, and its decoder") {
    auto j = sp_json();
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", true}};
    j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", true}};
    const text::Tokenizer first(j);
    CHECK(first.encode("the cab", false) == Ids{18, 21});
    // After a special token the piece is not the first: no ▁ prepended; "the" -> t h e -> t he.
    CHECK(first.encode("<s>the", false) == Ids{1, 14, 17});
    CHECK(first.decode({18, 21}) == "the cab");
    j["pre_tokenizer"]["prepend_scheme"] = "always";
    CHECK(text::Tokenizer(j).encode("<s>the", false) == Ids{1, 18});
    j["pre_tokenizer"]["prepend_scheme"] = "never";
    // "the cab" -> "the▁cab" -> split before ▁: "the", "▁cab".
    CHECK(text::Tokenizer(j).encode("the cab", false) == Ids{14, 17, 21});
}

TEST_CASE("malformed or unsupported tokenizer.json: clear errors with the field path") {
    const std::string dir = test::temp_dir("tok");
    std::ofstream(dir + "/bad.json") << "{\"model\": {";
    test::expect_error([&] { text::Tokenizer::from_file(dir + "/bad.json"); }, {"bad.json", "invalid JSON"});
    auto j = sp_json();
    j.erase("model");
    test::expect_error([&] { text::Tokenizer(j, "t.json"); }, {"t.json", "model", "missing field"});
    j = sp_json();
    j["model"]["merges"].push_back("q z");
    test::expect_error([&] { text::Tokenizer(j, "t.json"); }, {"model.merges[6]", "merge of unknown token \"q\""});
    j = sp_json();
    j["model"]["merges"].push_back("a c");
    test::expect_error([&] { text::Tokenizer(j, "t.json"); }, {"model.merges[6]", "\"ac\" is not in model.vocab"});
    j = sp_json();
    j["model"]["type"] = "WordPiece";
    test::expect_error([&] { text::Tokenizer(j, "t.json"); }, {"model.type", "WordPiece"});
    j = sp_json();
    j["model"]["type"] = "Unigram";
    test::expect_error([&] { text::Tokenizer(j, "t.json"); }, {"model.type", "Unigram"});
    j = sp_json();
    j["pre_tokenizer"] = {{"type", "CharDelimiterSplit"}};
    test::expect_error([&] { text::Tokenizer(j, "t.json"); }, {"pre_tokenizer.type", "CharDelimiterSplit"});
    j = sp_json();
    j["normalizer"]["normalizers"][1] = {{"type", "Precompiled"}};
    test::expect_error([&] { text::Tokenizer(j, "t.json"); }, {"normalizer.normalizers[1].type", "Precompiled"});
    j = sp_json();
    j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(\\w+"}}}, {"behavior", "Isolated"}};
    test::expect_error([&] { text::Tokenizer(j, "t.json"); }, {"pre_tokenizer.pattern", "(\\w+", "missing closing parenthesis"});
    j = sp_json();
    j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "x"}}}, {"behavior", "Sideways"}};
    test::expect_error([&] { text::Tokenizer(j, "t.json"); }, {"pre_tokenizer.behavior", "Sideways"});
    j = sp_json();
    j["decoder"]["decoders"][0] = {{"type", "WordPiece"}};
    test::expect_error([&] { text::Tokenizer(j, "t.json"); }, {"decoder.decoders[0].type", "WordPiece"});
    j = sp_json();
    j["post_processor"] = {{"type", "BertProcessing"}};
    test::expect_error([&] { text::Tokenizer(j, "t.json"); }, {"post_processor", "cls", "missing field"});
    j = sp_json();
    j["post_processor"] = {{"type", "ByteLevelProcessing"}};
    test::expect_error([&] { text::Tokenizer(j, "t.json"); }, {"post_processor.type", "ByteLevelProcessing"});
    j = sp_json();
    j["model"]["merges"][0] = 5;
    test::expect_error([&] { text::Tokenizer(j, "t.json"); }, {"model.merges[0]", "expected"});
}

TEST_CASE("BPE: cutting long words where no token spans the cut gives exactly the whole word's merges") {
    // Random vocabularies over a 4-letter alphabet (with "_" standing in for SentencePiece's ▁), random
    // merge orders, random long words: tokenize (with cuts and the cache) must equal merge (no cuts).
    std::mt19937 g(7);
    const std::string alphabet = "ab_c";
    for (int trial = 0; trial < 40; ++trial) {
        text::Bpe bpe;
        std::vector<std::string> tokens;
        for (char c : alphabet) tokens.emplace_back(1, c);
        for (std::size_t i = 0; i < tokens.size(); ++i) bpe.add_token(tokens[i], static_cast<TokenId>(i));
        for (int m = 0; m < 30; ++m) {  // merge two existing tokens into a new one (if new)
            const std::string& a = tokens[g() % tokens.size()];
            const std::string& b = tokens[g() % tokens.size()];
            const std::string ab = a + b;
            if (ab.size() > 6 || bpe.find(ab)) continue;
            const TokenId ia = *bpe.find(a), ib = *bpe.find(b), id = static_cast<TokenId>(tokens.size());
            tokens.push_back(ab);
            bpe.add_token(ab, id);
            bpe.add_merge(ia, ib, id);
        }
        for (int w = 0; w < 20; ++w) {
            std::string word;
            for (std::size_t k = 0, n = 32 + g() % 200; k < n; ++k) word.push_back(alphabet[g() % alphabet.size()]);
            CAPTURE(word);
            text::Bpe::Cache cache;
            Ids cut;
            bpe.tokenize(word, cache, cut);
            CHECK(cut == bpe.merge(word));
        }
    }
}

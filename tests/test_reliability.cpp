// Defects a review and the fuzzers found, each with the check that failed before its fix.
#include "common.hpp"

#include <fstream>
#include <thread>

using namespace massact;
using namespace massact::analysis;

namespace {

TokenBatch first_ids(Index T) {
    TokenBatch ids(1, T);
    for (Index t = 0; t < T; ++t) ids(0, t) = 1 + 37 * t % 4000;
    return ids;
}

}  // namespace

TEST_CASE("interventions made without validate() cannot write out of bounds") {
    const Transformer m(test::model("tiny-llama"));
    const TokenBatch ids = first_ids(8);
    Intervention set;
    set.site = Intervention::resid_post(1);
    set.tokens = TokenSelection::first();
    set.dims = {1, 2, 3};
    set.mode = Intervention::Mode::Set;
    set.values = {5.0f};  // fewer values than dims: used to read past the vector
    test::expect_error([&] { m.forward(ids, make_hooks({set})); }, {"mode set has 1 values for 3 dims"});
    Intervention far = set;
    far.mode = Intervention::Mode::Zero;
    far.dims = {256};  // hidden_size is 256: used to write past the row
    test::expect_error([&] { m.forward(ids, make_hooks({far})); }, {"dim 256 out of range [0, 256)"});
    Intervention copy = far;
    copy.dims = {3};
    copy.mode = Intervention::Mode::Copy;
    copy.source = -2;  // used to read before the sequence
    test::expect_error([&] { m.forward(ids, make_hooks({copy})); }, {"negative source position -2"});
    // make_hooks(model, ...) refuses before any forward; a valid intervention still works.
    test::expect_error([&] { make_hooks(m, {far}); }, {"dim 256 out of range"});
    set.values = {5.0f, 6.0f, 7.0f};
    float seen = 0;
    Hooks h = make_hooks(m, {set});
    h.add("blocks.1.hook_resid_post", [&](Activation& a) { seen = a.data[2]; });
    m.forward(ids, h);
    CHECK(seen == 6.0f);
}

TEST_CASE("hooks may keep Activation::name; the same zero-weight hooks serve concurrent forwards") {
    const Transformer m(test::model("tiny-llama"));
    std::vector<std::string> names;
    Hooks keep;
    keep.add("*hook_resid_post", [&](Activation& a) { names.push_back(a.name); });
    m.forward(first_ids(4), keep);
    REQUIRE(names.size() == 8);
    CHECK(names.front() == "blocks.0.hook_resid_post");
    CHECK(names.back() == "blocks.7.hook_resid_post");
    // One Hooks object, two threads with different lengths: each thread's saved column is its own.
    SuperWeight s;
    s.layer = 2;
    s.row = 215;
    s.col = 46;
    s.weight = m.weights().layers[2].down.at(215, 46);
    const Hooks shared = zero_weight_hooks(s);
    const TokenBatch a = first_ids(48), b = first_ids(9);
    const RowMatrixF want_a = m.forward(a, zero_weight_hooks(s)), want_b = m.forward(b, zero_weight_hooks(s));
    for (int round = 0; round < 3; ++round) {
        RowMatrixF got_a, got_b;
        std::thread ta([&] { got_a = m.forward(a, shared); });
        std::thread tb([&] { got_b = m.forward(b, shared); });
        ta.join();
        tb.join();
        CHECK(test::max_abs_diff(got_a, want_a) == 0.0);
        CHECK(test::max_abs_diff(got_b, want_b) == 0.0);
    }
}

TEST_CASE("a tied half-precision embedding is held once in float32") {
    const Transformer m(test::model("tiny-gpt2"));  // F16, tied
    REQUIRE(m.config().tie_embeddings);
    REQUIRE(m.weights().embed.resident());
    std::vector<float> s1, s2;
    CHECK(m.weights().lm_head.data(s1) == m.weights().embed.data(s2));  // one buffer, two views
    CHECK(s1.empty());
    CHECK(s2.empty());
}

TEST_CASE("compare_models: each model scanned with its own options; B's zero top-1 gives a null ratio") {
    const Transformer a(test::model("tiny-llama")), b(test::model("tiny-gpt2"));
    const auto tok_a = text::Tokenizer::from_file(test::model("tiny-llama") + "/tokenizer.json");
    const auto tok_b = text::Tokenizer::from_file(test::model("tiny-gpt2") + "/tokenizer.json");
    const std::string text = "Summer is warm. Winter is cold. The night is long.";
    auto batch = [](const std::vector<text::TokenId>& v) {
        TokenBatch t(1, static_cast<Index>(v.size()));
        for (std::size_t i = 0; i < v.size(); ++i) t(0, static_cast<Index>(i)) = v[i];
        return t;
    };
    const TokenBatch ia = batch(tok_a.encode(text)), ib = batch(tok_b.encode(text));
    ScanOptions oa, ob;
    oa.delimiters = {ia(0, 3)};  // A's "delimiter" is another token: B must not use it
    ob.delimiters = delimiter_ids(tok_b);
    REQUIRE(oa.delimiters != ob.delimiters);
    const auto pair = compare_models(a, ia, b, ib, oa, ob);
    const auto alone = scan(b, ib, ob);
    CHECK(pair.b.attention_on_first_delimiter == alone.attention_on_first_delimiter);
    CHECK(scan(b, ib, oa).attention_on_first_delimiter != alone.attention_on_first_delimiter);  // the choice matters
    // B with its residual stream zeroed after every block: top-1 0, ratio null instead of inf.
    ob.hooks.add("*hook_resid_post", [](Activation& x) { x.matrix().setZero(); });
    const auto j = compare_models(a, ia, b, ib, oa, ob).to_json();
    CHECK(j["layers"][0]["top1_ratio_a_over_b"].is_null());
    CHECK_NOTHROW((void)j.dump());
}

TEST_CASE("config sizes far beyond any model are refused before anything is allocated") {
    nlohmann::json j = {{"model_type", "llama"}, {"hidden_size", 64}, {"intermediate_size", 96}, {"num_hidden_layers", 1 << 29},
                        {"num_attention_heads", 4}, {"vocab_size", 100}};
    test::expect_error([&] { parse_config(j); }, {"num_hidden_layers", "implausibly large"});
    j["num_hidden_layers"] = 2;
    j["partial_rotary_factor"] = 1e12;  // int(head_dim * factor) would overflow
    test::expect_error([&] { parse_config(j); }, {"partial_rotary_factor", "(0, 1]"});
}

TEST_CASE("safetensors bytes in memory get the file's checks") {
    std::vector<unsigned char> bytes = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    const io::SafetensorsFile ok(io::MappedFile::from_bytes("mem.safetensors", bytes));
    CHECK(ok.names().empty());
    bytes.push_back(0);  // a trailing byte no tensor covers
    test::expect_error([&] { io::SafetensorsFile(io::MappedFile::from_bytes("mem.safetensors", bytes)); },
                       {"mem.safetensors", "trailing bytes"});
}

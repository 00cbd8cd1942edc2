// Interventions against the float64 reference findings (tests/data/README.md):
// ablation perplexities, the attention shift on p0, injection factors, and the super weight.
#include "common.hpp"

using namespace massact;
using namespace massact::analysis;

namespace {

TokenBatch tensor_ids(const io::SafetensorsFile& f, const std::string& name) {
    const auto& t = f.tensor(name);
    const auto v = t.to_int64();
    TokenBatch b(t.shape.size() == 1 ? 1 : t.shape[0], t.shape.back());
    for (Index i = 0; i < b.size(); ++i) b.data()[i] = v[static_cast<std::size_t>(i)];
    return b;
}

/// The reference findings (tests/data/tiny-llama.findings.json).
const nlohmann::json& findings() {
    static const nlohmann::json j = io::read_json_file(test::data("tiny-llama.findings.json"));
    return j;
}

std::vector<double> numbers(const nlohmann::json& j) { return j.get<std::vector<double>>(); }

std::vector<Index> massive_dims() { return findings()["massive"]["dims"].get<std::vector<Index>>(); }

Intervention five_dims(Intervention::Mode mode) {
    Intervention iv;
    iv.site = Intervention::resid_post(findings()["massive"]["layer"].get<int>());
    iv.tokens = TokenSelection::at({0});
    iv.dims = massive_dims();
    iv.mode = mode;
    return iv;
}

struct Fixture {
    Transformer model{test::model("tiny-llama")};
    io::SafetensorsFile ref{test::data("tiny-llama.ref.safetensors")};
};

}  // namespace

TEST_CASE("zeroing the massive activation raises perplexity to 16.058; setting it to its mean leaves 11.982") {
    Fixture f;
    const TokenBatch ids = tensor_ids(f.ref, "ppl.input_ids");
    const auto stats = io::read_json_file(test::data("tiny-llama.stats.json"))["intervention"];
    CompareOptions fast;
    fast.tokens = {};
    fast.decomposition = false;
    Intervention zero = five_dims(Intervention::Mode::Zero);
    zero.validate(f.model);
    const auto z = compare(f.model, ids, make_hooks({zero}), fast);
    CHECK(std::abs(z.ppl_intervened / stats["ppl_zero"].get<double>() - 1) < 1e-3);
    CHECK(std::abs(z.ppl_original / stats["ppl_original"].get<double>() - 1) < 5e-4);
    CHECK(z.kl_mean > 0.1);
    Intervention mean = five_dims(Intervention::Mode::Mean);
    mean.values = dataset_mean(f.model, ids, mean);
    const auto expect = stats["mean_values"].get<std::vector<double>>();
    for (std::size_t i = 0; i < 5; ++i) CHECK(mean.values[i] == doctest::Approx(expect[i]).epsilon(1e-3));
    const auto m = compare(f.model, ids, make_hooks({mean}), fast);
    CHECK(std::abs(m.ppl_intervened / stats["ppl_mean"].get<double>() - 1) < 1e-3);
    CHECK(m.kl_mean < 1e-6);
}

TEST_CASE("attention shift on p0: the sink survives the ablation and grows in layers 3-6") {
    Fixture f;
    const TokenBatch p0 = tensor_ids(f.ref, "p0.input_ids");
    const auto c = compare(f.model, p0, make_hooks({five_dims(Intervention::Mode::Zero)}));
    const auto before = Comparison::head_mean(c.attn_original)[0], after = Comparison::head_mean(c.attn_intervened)[0];
    const auto ref_before = numbers(findings()["attention_shift_p0"]["before"]);
    const auto ref_after = numbers(findings()["attention_shift_p0"]["after"]);
    for (std::size_t l = 0; l < 8; ++l) {
        CAPTURE(l);
        CHECK(std::abs(before[l] - ref_before[l]) < 1e-3);
        CHECK(std::abs(after[l] - ref_after[l]) < 1e-3);
    }
    // Layers before the intervention are untouched; the decomposition is measured.
    CHECK(c.decomp_original[1].sink_norm == doctest::Approx(c.decomp_intervened[1].sink_norm));
    CHECK(c.decomp_intervened[3].sink_norm > c.decomp_original[3].sink_norm);
    CHECK(c.decomp_original[4].sink_constancy > 0.99);  // v of <s> is one vector: the sink part is a constant direction
}

TEST_CASE("injection: position 0's massive activation copied into position 30 draws attention to it") {
    Fixture f;
    const TokenBatch ids = tensor_ids(f.ref, "ppl.input_ids").topRows(8).leftCols(64);
    const auto& inj = findings()["injection"];
    const int layer = inj["layer"].get<int>(), from = inj["from"].get<int>(), to = inj["to"].get<int>();
    const auto five = inject(f.model, ids, layer, from, to, massive_dims());
    const auto whole = inject(f.model, ids, layer, from, to, {});
    const auto ref5 = numbers(inj["factor_five_dims"]), refall = numbers(inj["factor_whole_state"]);
    for (int l = 3; l < 8; ++l) {
        CAPTURE(l);
        CHECK(std::abs(five.median_factor[static_cast<std::size_t>(l)] / ref5[static_cast<std::size_t>(l - 3)] - 1) < 0.02);
        CHECK(std::abs(whole.median_factor[static_cast<std::size_t>(l)] / refall[static_cast<std::size_t>(l - 3)] - 1) < 0.02);
    }
    for (int l = 0; l <= 2; ++l) CHECK(five.median_factor[static_cast<std::size_t>(l)] == doctest::Approx(1.0));
}

TEST_CASE("super weight: layer 2, down_proj[215, 46]; zeroing it shrinks the massive activation") {
    Fixture f;
    const TokenBatch p0 = tensor_ids(f.ref, "p0.input_ids");
    const auto found = find_super_weights(f.model, p0);
    const auto& ref = findings()["super_weight"];
    REQUIRE(found.size() == 1);
    const auto& s = found[0];
    CHECK(s.layer == ref["layer"].get<int>());
    CHECK(s.row == ref["row"].get<Index>());
    CHECK(s.col == ref["col"].get<Index>());
    CHECK(s.token == ref["token"].get<Index>());
    CHECK(s.input == doctest::Approx(ref["input"].get<double>()).epsilon(0.01));
    CHECK(s.output == doctest::Approx(ref["output"].get<double>()).epsilon(0.01));
    CHECK(s.contribution == doctest::Approx(ref["contribution"].get<double>()).epsilon(0.01));
    float v2 = 0, v7 = 0;
    Hooks h = zero_weight_hooks(s);
    h.add("blocks.2.hook_resid_post", [&](Activation& a) { v2 = a.data[215]; });
    h.add("blocks.7.hook_resid_post", [&](Activation& a) { v7 = a.data[215]; });
    f.model.forward(p0, h);
    CHECK(v2 == doctest::Approx(ref["dim215_after_zeroing_block2"].get<double>()).epsilon(0.01));
    CHECK(v7 == doctest::Approx(ref["dim215_after_zeroing_block7"].get<double>()).epsilon(0.01));
}

TEST_CASE("interventions compose with scan: an ablated model has no massive activation at dim 215 in layer 2") {
    Fixture f;
    const TokenBatch ids = tensor_ids(f.ref, "ppl.input_ids").topRows(8);
    ScanOptions opt;
    Intervention all = five_dims(Intervention::Mode::Zero);
    all.site = Intervention::resid_post(7);  // after the last block: nothing downstream can rebuild it
    opt.hooks = make_hooks({five_dims(Intervention::Mode::Zero), all});
    const auto r = scan(f.model, ids, opt);
    CHECK(r.layers[2].dominant_dim() != 215);
    CHECK(r.layers[7].dominant_dim() != 215);
    const auto plain = scan(f.model, ids);
    CHECK(plain.layers[2].dominant_dim() == 215);
    CHECK(r.layers[2].top1_mean < 0.5 * plain.layers[2].top1_mean);
}

TEST_CASE("bad intervention specifications are refused") {
    Fixture f;
    Intervention iv = five_dims(Intervention::Mode::Zero);
    iv.dims = {256};
    test::expect_error([&] { iv.validate(f.model); }, {"dim 256 out of range [0, 256)"});
    iv = five_dims(Intervention::Mode::Zero);
    iv.site = "blocks.9.hook_resid_post";
    test::expect_error([&] { iv.validate(f.model); }, {"unknown hook site"});
    iv = five_dims(Intervention::Mode::Mean);
    test::expect_error([&] { iv.validate(f.model); }, {"mean value per dim"});
    iv = five_dims(Intervention::Mode::Zero);
    iv.tokens = TokenSelection::at({});
    test::expect_error([&] { iv.validate(f.model); }, {"empty token selection"});
    test::expect_error([&] { inject(f.model, tensor_ids(f.ref, "p0.input_ids"), 8, 0, 3, {}); }, {"layer 8 out of range"});
}

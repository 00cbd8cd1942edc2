// Attention-sink variants: the kv-bias pair compared (Sun et al. Sec. 6) and inference-time softmax swaps.
#include "common.hpp"

using namespace massact;

namespace {
TokenBatch variant_ppl_ids(const std::string& name, Index rows) {
    const io::SafetensorsFile ref(test::data(name + ".ref.safetensors"));
    const auto& t = ref.tensor("ppl.input_ids");
    const auto v = t.to_int64();
    TokenBatch ids(t.shape[0], t.shape[1]);
    for (Index i = 0; i < ids.size(); ++i) ids.data()[i] = v[static_cast<std::size_t>(i)];
    return ids.topRows(rows);
}
}  // namespace

TEST_CASE("the explicit attention bias replaces the massive activation (compare JSON)") {
    const Transformer a(test::model("tiny-llama-baseline")), b(test::model("tiny-llama-kvbias"));
    const TokenBatch ids = variant_ppl_ids("tiny-llama-kvbias", 96);
    const auto j = analysis::compare_models(a, ids, b, ids).to_json();
    const auto& l1 = j["layers"][1];
    CHECK(l1["top1_pos0_fraction_a"].get<double>() == 1.0);  // the top-1 is the first token's activation
    CHECK(l1["top1_pos0_fraction_b"].get<double>() == 1.0);
    // Reference values: each model's own statistics (tests/data/tiny-llama-{baseline,kvbias}.stats.json).
    const auto ref_a = io::read_json_file(test::data("tiny-llama-baseline.stats.json"));
    const auto ref_b = io::read_json_file(test::data("tiny-llama-kvbias.stats.json"));
    auto head_mean = [](const nlohmann::json& per_head) {
        double s = 0;
        for (const auto& v : per_head) s += v.get<double>();
        return s / double(per_head.size());
    };
    CHECK(l1["top1_a"].get<double>() == doctest::Approx(ref_a["layers"][1]["top1_mean"].get<double>()).epsilon(5e-3));
    CHECK(l1["top1_b"].get<double>() == doctest::Approx(ref_b["layers"][1]["top1_mean"].get<double>()).epsilon(5e-3));
    CHECK(l1["top1_ratio_a_over_b"].get<double>() > 5.0);
    for (const auto& l : j["layers"]) {
        CAPTURE(l["layer"].get<int>());
        CHECK(l["attention_on_bias_slot_b"].get<double>() >= 0.05);
        CHECK(l["attention_on_bias_slot_a"].get<double>() == 0.0);
    }
    CHECK(j["layers"][4]["attention_on_first_token_a"].get<double>() ==
          doctest::Approx(head_mean(ref_a["attention_on_first_token_per_layer_head"][4])).epsilon(5e-3));
    CHECK(j["layers"][4]["attention_on_first_token_b"].get<double>() ==
          doctest::Approx(head_mean(ref_b["attention_on_first_token_per_layer_head"][4])).epsilon(5e-3));
}

TEST_CASE("softmax1 swap: every attention row gives the extra slot mass, so no row of tokens sums to 1") {
    const Transformer m(test::model("tiny-llama"));
    const TokenBatch ids = variant_ppl_ids("tiny-llama", 2).leftCols(64);
    RunOptions opt;
    opt.attention.kind = AttentionOverride::Kind::Softmax1;
    std::vector<float> slot;
    std::vector<double> row_sums;
    Hooks h;
    h.add("*attn.hook_sink_pattern", [&](Activation& a) { slot.insert(slot.end(), a.data, a.data + a.numel()); });
    h.add("*attn.hook_pattern", [&](Activation& a) {
        const Index T = a.shape[2];
        const auto rows = RowMap<float>(a.data, a.numel() / T, T);
        for (Index r = 0; r < rows.rows(); ++r) row_sums.push_back(rows.row(r).cast<double>().sum());
    });
    m.forward(ids, h, opt);
    REQUIRE(slot.size() == row_sums.size());
    REQUIRE(!slot.empty());
    int below_one = 0;
    for (std::size_t i = 0; i < slot.size(); ++i) {
        CHECK(slot[i] > 0.0f);                                               // the slot always takes some mass
        CHECK(row_sums[i] + slot[i] == doctest::Approx(1.0).epsilon(1e-5));  // tokens get 1 - p_slot
        below_one += row_sums[i] < 1.0;
    }
    // float32 cannot show a deficit below ~1e-7 in a sum of probabilities: the rows whose slot mass is
    // that small may round to 1; every other row is visibly below 1.
    int resolvable = 0;
    for (float s : slot) resolvable += s > 1e-6f;
    CHECK(below_one >= resolvable);
    CHECK(resolvable > static_cast<int>(slot.size() / 2));
    // The standard softmax has no slot and rows summing to 1; softmax1 changes perplexity only a little here.
    const auto p0 = analysis::perplexity(m, ids);
    const auto p1 = analysis::perplexity(m, ids, {}, opt);
    CHECK(p1.ppl != p0.ppl);
    CHECK(p1.ppl < 2 * p0.ppl);
    // Clipped softmax gives exact zeros; a sink logit of -inf-like value changes nothing.
    RunOptions clip;
    clip.attention.kind = AttentionOverride::Kind::Clipped;
    // Zeros among the visible (causal) keys only: the masked upper triangle is zero under any softmax.
    auto visible_zeros = [&](const RunOptions& o) {
        Index zeros = -1;
        Hooks hz;
        hz.add("blocks.3.attn.hook_pattern", [&](Activation& a) {
            const Index T = a.shape[2];
            zeros = 0;
            for (Index r = 0; r < a.numel() / T; ++r)
                for (Index j = 0; j <= r % T; ++j) zeros += a.data[r * T + j] == 0.0f;
        });
        m.forward(ids, hz, o);
        return zeros;
    };
    CHECK(visible_zeros(RunOptions{}) == 0);  // the standard softmax never gives an exact zero here
    CHECK(visible_zeros(clip) > 64);          // clipping does
    RunOptions none;
    none.attention.kind = AttentionOverride::Kind::SinkLogit;
    none.attention.sink_logit = -1e4f;
    CHECK(analysis::perplexity(m, ids, {}, none).ppl == doctest::Approx(p0.ppl).epsilon(1e-6));
}

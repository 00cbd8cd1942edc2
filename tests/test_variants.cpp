// Attention-sink variants: the kv-bias pair compared (Sun et al. Sec. 6) and inference-time softmax swaps.
#include "common.hpp"

#include <algorithm>
#include <memory>

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

TEST_CASE("the sink-free comparison of the five trained models equals statistics computed from the transformers references") {
    // Per model and layer: top-1 and median |x| of the residual stream, attention on the first token, the sink rate
    // (alpha > 0.3 over queries 0..T-1) and perplexity, each computed here by plain loops from the reference's hidden
    // states, attention weights and logits of prompt p0 (transformers, float32), then compared with compare_many's JSON.
    const std::vector<std::string> names = {"tiny-llama-softmax", "tiny-llama-softpick", "tiny-llama-sigmoid", "tiny-qwen3next-gated",
                                            "tiny-qwen3next-gateoff"};
    std::vector<std::unique_ptr<Transformer>> owned;
    std::vector<const Transformer*> models;
    std::vector<TokenBatch> ids;
    std::vector<io::SafetensorsFile> refs;
    for (const auto& n : names) {
        owned.push_back(std::make_unique<Transformer>(test::model(n)));
        models.push_back(owned.back().get());
        refs.emplace_back(test::data(n + ".ref.safetensors"));
        const auto v = refs.back().tensor("p0.input_ids").to_int64();
        TokenBatch b(1, static_cast<Index>(v.size()));
        std::copy(v.begin(), v.end(), b.data());
        ids.push_back(b);
    }
    analysis::ScanOptions opt;
    opt.sink_T = 64;  // more than the 11 tokens: alpha is the mean over every query
    Index calls = 0, last = 0, total = 0;
    const auto set = analysis::compare_many(models, ids, std::vector<analysis::ScanOptions>(names.size(), opt), {},
                                            [&](Index d, Index t) { ++calls; last = d; total = t; });
    CHECK(calls >= 5);
    CHECK((last == 5 && total == 5));
    const auto j = set.to_json();
    REQUIRE(j["models"].size() == names.size());
    CHECK(!j.contains("model_a"));  // the pair keys only for two models
    std::vector<double> rates;
    for (std::size_t i = 0; i < names.size(); ++i) {
        CAPTURE(names[i]);
        const auto& m = j["models"][i];
        const auto& ref = refs[i];
        const auto hs = ref.tensor("p0.hidden_states").to_float(), att = ref.tensor("p0.attentions").to_float();
        const Index T = ids[i].cols(), d = 256, L = 8, H = 8;
        double sinks = 0;
        for (Index l = 0; l + 1 < L; ++l) {  // (the reference's last entry is after the final norm)
            std::vector<double> mag;
            for (Index k = 0; k < T * d; ++k) mag.push_back(std::abs(double(hs[static_cast<std::size_t>((l + 1) * T * d + k)])));
            std::sort(mag.begin(), mag.end());
            const double top1 = mag.back(), median = 0.5 * (mag[mag.size() / 2 - 1] + mag[mag.size() / 2]);
            const auto& row = m["layers"][static_cast<std::size_t>(l)];
            CHECK(row["top1"].get<double>() == doctest::Approx(top1).epsilon(1e-3));
            CHECK(row["median"].get<double>() == doctest::Approx(median).epsilon(2e-3));
        }
        for (Index l = 0; l < L; ++l) {
            double first = 0, rate = 0;
            for (Index h = 0; h < H; ++h) {
                double s = 0, alpha = 0;
                for (Index q = 0; q < T; ++q) {
                    const double a = att[static_cast<std::size_t>(((l * H + h) * T + q) * T)];
                    alpha += a / double(T);
                    if (q > 0) s += a / double(T - 1);
                }
                first += s / double(H);
                rate += (alpha > 0.3) / double(H);
            }
            sinks += rate / double(L);
            const auto& row = m["layers"][static_cast<std::size_t>(l)];
            CHECK(row["attention_on_first_token"].get<double>() == doctest::Approx(first).epsilon(1e-4));
            CHECK(row["sink_rate"].get<double>() == doctest::Approx(rate));
        }
        CHECK(m["sink_rate"].get<double>() == doctest::Approx(sinks));
        rates.push_back(sinks);
        // perplexity of p0 from the reference logits
        const auto lg = ref.tensor("p0.logits").to_float();
        const Index V = 4096;
        double nll = 0;
        for (Index t = 0; t + 1 < T; ++t) {
            double mx = -1e300, z = 0;
            for (Index v = 0; v < V; ++v) mx = std::max(mx, double(lg[static_cast<std::size_t>(t * V + v)]));
            for (Index v = 0; v < V; ++v) z += std::exp(double(lg[static_cast<std::size_t>(t * V + v)]) - mx);
            nll += (mx + std::log(z) - lg[static_cast<std::size_t>(t * V + ids[i](0, t + 1))]) / double(T - 1);
        }
        CHECK(m["val_ppl"].get<double>() == doctest::Approx(std::exp(nll)).epsilon(1e-4));
    }
    MESSAGE("sink rates on p0: softmax " << rates[0] << ", softpick " << rates[1] << ", sigmoid " << rates[2] << ", gated "
                                         << rates[3] << ", gate off " << rates[4]);
    // Fewer than two models, or mismatched inputs, are refused.
    test::expect_error([&] { analysis::compare_many({models[0]}, {ids[0]}, {opt}); }, {"expected at least 2"});
    test::expect_error([&] { analysis::compare_many(models, {ids[0]}, {opt}); }, {"one token batch and one set of options per model"});
}

TEST_CASE("random tokens (Gu et al.'s protocol): seeded, uniform over the ordinary vocabulary, BOS first") {
    const auto tok = text::load_tokenizer(test::model("tiny-llama"));
    const TokenBatch a = analysis::random_tokens(tok, 64, 129, 7), b = analysis::random_tokens(tok, 64, 129, 7);
    const TokenBatch c = analysis::random_tokens(tok, 64, 129, 8);
    CHECK(a == b);
    CHECK(a != c);
    REQUIRE(tok.special_prefix() == std::vector<text::TokenId>{1});
    std::vector<int> counts(tok.vocab_size(), 0);
    for (Index r = 0; r < a.rows(); ++r) {
        CHECK(a(r, 0) == 1);
        for (Index t = 1; t < a.cols(); ++t) {
            REQUIRE((a(r, t) >= 0 && a(r, t) < static_cast<Index>(tok.vocab_size())));
            CHECK(!tok.is_special(static_cast<text::TokenId>(a(r, t))));
            ++counts[static_cast<std::size_t>(a(r, t))];
        }
    }
    // 8192 draws over ~4090 ids: a uniform draw touches about 1 - e^-2 = 86% of them
    const double touched = double(std::count_if(counts.begin(), counts.end(), [](int n) { return n > 0; })) / double(counts.size());
    CHECK((touched > 0.8 && touched < 0.9));
    // A vocabulary with only excluded ids, or no room after the prefix, is refused.
    test::expect_error([] { analysis::random_tokens(2, 4, 3, 0, {}, {0, 1, 2}); }, {"no ordinary token"});
    test::expect_error([] { analysis::random_tokens(2, 1, 10, 0, {1}); }, {"leaves no room"});
    CHECK(analysis::random_tokens(1, 5, 2, 0, {}, {0}) == TokenBatch::Constant(1, 5, 1));
}

TEST_CASE("the sink with and without BOS (Barbero et al.): both scans on the same content, perplexity on the shared targets") {
    // tiny-llama-softmax, trained with "<s>" first in every window: with BOS it has massive activations and sink heads on
    // it; without, the first content token takes neither (the sink is BOS's, not the first position's). The statistics are
    // recomputed here from plain forwards: attention on position 0 from the patterns, the shared-target NLL from the logits.
    const Transformer m(test::model("tiny-llama-softmax"));
    const TokenBatch ids = variant_ppl_ids("tiny-llama-softmax", 4);
    REQUIRE((ids.col(0).array() == 1).all());
    analysis::ScanOptions opt;  // Gu et al.'s alpha over the first sink_T = 64 queries
    const auto r = analysis::bos_sink(m, ids, 1, opt);
    CHECK(r.data_had_bos);
    const Index n = ids.cols() - 1, N = ids.rows(), V = 4096, H = 8, L = 8;
    CHECK(r.targets == N * (n - 1));
    const TokenBatch content = ids.rightCols(n);
    for (int with = 0; with < 2; ++with) {
        const TokenBatch x = with ? ids : content;
        const Index T = x.cols();
        std::vector<double> first(static_cast<std::size_t>(L), 0.0), rate(static_cast<std::size_t>(L), 0.0);
        Hooks h;
        h.add("*attn.hook_pattern", [&](Activation& a) {
            for (Index hh = 0; hh < H; ++hh) {
                double alpha = 0;
                for (Index b = 0; b < N; ++b)
                    for (Index q = 0; q < T; ++q) {
                        const double p = a.data[((b * H + hh) * T + q) * T];
                        if (q < 64) alpha += p / double(N * 64);
                        if (q > 0) first[static_cast<std::size_t>(a.layer)] += p / double(N * (T - 1) * H);
                    }
                rate[static_cast<std::size_t>(a.layer)] += (alpha > 0.3) / double(H);
            }
        });
        const RowMatrixF logits = m.forward(x, h);
        double nll = 0;
        for (Index b = 0; b < N; ++b)
            for (Index t = T - n; t + 1 < T; ++t) {  // the predictions of c_2..c_n
                const float* row = logits.row(b * T + t).data();
                double mx = -1e300, z = 0;
                for (Index v = 0; v < V; ++v) mx = std::max(mx, double(row[v]));
                for (Index v = 0; v < V; ++v) z += std::exp(double(row[v]) - mx);
                nll += mx + std::log(z) - row[x(b, t + 1)];
            }
        CHECK((with ? r.nll_with : r.nll_without) == doctest::Approx(nll / double(r.targets)).epsilon(1e-6));
        const auto& s = r.set.scans[static_cast<std::size_t>(1 - with)];
        CHECK(s.seq_len == T);
        for (Index l = 0; l < L; ++l) {
            double got = 0;
            for (double v : s.attention_on_first_token[static_cast<std::size_t>(l)]) got += v / double(H);
            CHECK(got == doctest::Approx(first[static_cast<std::size_t>(l)]).epsilon(1e-5));
            CHECK(analysis::ModelSet::layer_sink_rate(s, static_cast<std::size_t>(l)) == doctest::Approx(rate[static_cast<std::size_t>(l)]));
        }
    }
    const auto& with = r.set.scans[0];
    const auto& without = r.set.scans[1];
    MESSAGE("tiny-llama-softmax: sink rate with BOS " << with.sink_rate << ", without " << without.sink_rate << "; massive dims "
                                                      << with.massive.size() << " vs " << without.massive.size() << "; shared perplexity "
                                                      << r.ppl_with() << " vs " << r.ppl_without());
    CHECK(!with.massive.empty());
    CHECK(without.massive.empty());
    CHECK(with.sink_rate > without.sink_rate + 0.2);
    const auto j = r.to_json();
    CHECK(j["models"][0]["name"] == "with BOS");
    CHECK(j["ppl_shared_without_bos"].get<double>() == doctest::Approx(r.ppl_without()));
    // Windows without BOS get it prepended: the same two scans.
    const auto p = analysis::bos_sink(m, content, 1, opt);
    CHECK(!p.data_had_bos);
    CHECK(p.nll_with == doctest::Approx(r.nll_with).epsilon(1e-9));
    CHECK(p.nll_without == doctest::Approx(r.nll_without).epsilon(1e-9));
    CHECK(p.set.scans[0].sink_rate == r.set.scans[0].sink_rate);
    // Mixed windows, a BOS outside the vocabulary, too few tokens, a vision model: refused with what was expected.
    TokenBatch mixed = ids;
    mixed(1, 0) = 5;
    test::expect_error([&] { analysis::bos_sink(m, mixed, 1, opt); }, {"some windows start with BOS"});
    test::expect_error([&] { analysis::bos_sink(m, ids, 4096, opt); }, {"4096", "outside the vocabulary"});
    test::expect_error([&] { analysis::bos_sink(m, TokenBatch(ids.leftCols(2)), 1, opt); }, {"at least 2"});
    test::expect_error([&] { analysis::bos_sink(Transformer(test::data("families/vit")), ids, 1, opt); }, {"vision model"});
    // The tool: BOS from the tokenizer's prefix, the same numbers in its JSON.
    const std::string out = test::temp_dir("bos-tool") + "/bos.json";
    const std::string cmd = std::string(MASSACT_TOOL) + " bos " + test::model("tiny-llama-softmax") + " --ids-file " +
                            test::data("tiny-llama-softmax.ref.safetensors") + ":ppl.input_ids --max-seqs 4 --json " + out +
                            " > /dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
    const auto tj = io::read_json_file(out);
    CHECK(tj["bos_token_id"] == 1);
    CHECK(tj["ppl_shared_with_bos"].get<double>() == doctest::Approx(r.ppl_with()).epsilon(1e-9));
    CHECK(tj["models"][1]["sink_rate"].get<double>() == doctest::Approx(without.sink_rate));
}

// massact scan on the bundled models against tests/data/tiny-*.stats.json, the detector's
// findings, and split-and-merge against one pass.
#include "common.hpp"

#include <fstream>

using namespace massact;

namespace {

TokenBatch ppl_ids(const std::string& name) {
    const io::SafetensorsFile ref(test::data(name + ".ref.safetensors"));
    const auto& t = ref.tensor("ppl.input_ids");
    const auto v = t.to_int64();
    TokenBatch ids(t.shape[0], t.shape[1]);
    for (Index i = 0; i < ids.size(); ++i) ids.data()[i] = v[static_cast<std::size_t>(i)];
    return ids;
}

analysis::ScanOptions options(const std::string& name) {
    analysis::ScanOptions o;
    o.delimiters = analysis::delimiter_ids(text::Tokenizer::from_file(test::model(name) + "/tokenizer.json"));
    return o;
}

Index dominant(const nlohmann::json& dims) {
    Index best = -1, n = -1;
    for (auto it = dims.begin(); it != dims.end(); ++it)
        if (it.value().get<Index>() > n) {
            n = it.value().get<Index>();
            best = std::stol(it.key());
        }
    return best;
}

void check_against_reference(const std::string& name, const analysis::ScanResult& r) {
    const auto ref = io::read_json_file(test::data(name + ".stats.json"));
    const auto j = r.to_json();
    CAPTURE(name);
    CHECK(std::abs(j["val_ppl"].get<double>() / ref["val_ppl"].get<double>() - 1) < 5e-4);
    REQUIRE(j["layers"].size() == ref["layers"].size());
    for (std::size_t l = 0; l < ref["layers"].size(); ++l) {
        const auto &a = j["layers"][l], &b = ref["layers"][l];
        CAPTURE(l);
        for (const char* k : {"top1_mean", "top2_mean", "top3_mean", "median_mean"})
            CHECK(std::abs(a[k].get<double>() / b[k].get<double>() - 1) < 5e-3);
        CHECK(a["top1_pos0_fraction"].get<double>() == b["top1_pos0_fraction"].get<double>());
        CHECK(dominant(a["top1_dims"]) == dominant(b["top1_dims"]));
    }
    double worst = 0;
    const auto &aa = j["attention_on_first_token_per_layer_head"], &ab = ref["attention_on_first_token_per_layer_head"];
    for (std::size_t l = 0; l < ab.size(); ++l)
        for (std::size_t h = 0; h < ab[l].size(); ++h) worst = std::max(worst, std::abs(aa[l][h].get<double>() - ab[l][h].get<double>()));
    CHECK(worst < 1e-4);
}

}  // namespace

TEST_CASE("tiny-llama: scan reproduces the reference statistics and finds the massive activation") {
    const Transformer m(test::model("tiny-llama"));
    const auto ids = ppl_ids("tiny-llama");
    const auto r = analysis::scan(m, ids, options("tiny-llama"));
    check_against_reference("tiny-llama", r);
    REQUIRE(!r.massive.empty());
    const auto& top = r.massive.front();
    CHECK(top.dim == 215);
    CHECK(top.first_layer == 2);
    CHECK(top.layers == std::vector<int>{2, 3, 4, 5, 6, 7});
    CHECK(top.positions.front() == "first_token");
    CHECK(top.constant());
    CHECK(top.share == 1.0);
    // At layer 2 every sequence's largest |x| is dim 215 of <s> (reference: dominant dim 215 at position 0),
    // so the detector's mean there is the reference top1_mean of layer 2 (tests/data/tiny-llama.stats.json).
    const auto ref = io::read_json_file(test::data("tiny-llama.stats.json"));
    CHECK(std::abs(top.mean) == doctest::Approx(ref["layers"][2]["top1_mean"].get<double>()).epsilon(2e-3));
    CHECK(top.ratio > 50);
    // The dims of the paper-style intervention are exactly what the detector reports.
    std::vector<Index> dims;
    for (const auto& a : r.massive) dims.push_back(a.dim);
    std::sort(dims.begin(), dims.end());
    CHECK(dims == std::vector<Index>{86, 170, 177, 215, 243});
    // Sink metrics: Gu et al.'s rate is the share of (layer, head) with alpha > 0.3.
    int count = 0;
    for (const auto& row : r.gu_alpha)
        for (double a : row) count += a > 0.3;
    CHECK(r.sink_rate == doctest::Approx(count / 64.0));
    CHECK(r.sink_heads.size() == static_cast<std::size_t>(count));
    CHECK(count > 0);
    // Sun et al.'s preset: nothing (|x| < 100), and it says why.
    auto sun = options("tiny-llama");
    sun.criteria = analysis::DetectorCriteria::sun2024();
    const auto rs = analysis::scan(m, TokenBatch(ids.topRows(16)), sun);
    CHECK(rs.massive.empty());
    CHECK(rs.detector_note.find("no |x| exceeds the absolute threshold") != std::string::npos);
    CHECK(rs.detector_note.find("dim 215") != std::string::npos);
}

TEST_CASE("the scan's sink metrics from the streamed softmax equal those of materialised patterns") {
    // scan() reads attn.hook_pattern_columns (first token, first delimiter) and never materialises [H, T, T]; the
    // same windows through attn.hook_pattern into SinkAccumulator::add_pattern (the probe's path) must agree.
    for (const char* name : {"tiny-llama", "tiny-gpt2", "tiny-llama-sinklogit"}) {
        CAPTURE(name);
        const Transformer m(test::model(name));
        const TokenBatch ids = ppl_ids(std::string(name) == "tiny-llama-sinklogit" ? "tiny-llama" : name).topRows(6);
        auto opt = options(name == std::string("tiny-gpt2") ? name : "tiny-llama");
        opt.batch = 4;  // (two forwards of 4 and 2)
        opt.max_rows = 4 * ids.cols();
        const auto streamed = analysis::scan(m, ids, opt);
        const Index L = m.config().num_layers, H = m.config().num_heads, T = ids.cols();
        std::vector<analysis::SinkAccumulator> full(static_cast<std::size_t>(L));
        for (auto& a : full) a.reset(H);
        Index materialised = 0;
        Hooks h;
        h.add("*attn.hook_pattern", [&](Activation& a) {
            REQUIRE(a.shape == std::vector<Index>{a.shape[0], H, T, T});
            materialised += 1;
            for (Index b = 0; b < a.shape[0]; ++b) {
                const Index row = b;  // (one forward of all six)
                const Index d = analysis::first_delimiter(ids.row(row).data(), T, opt.delimiters);
                full[static_cast<std::size_t>(a.layer)].add_pattern(a.data + b * H * T * T, H, T, d, opt.sink_T);
            }
        });
        Workspace ws;
        m.run(ids, ws, h);
        REQUIRE(materialised == L);
        double worst = 0;
        Index delimited = 0;
        for (Index l = 0; l < L; ++l)
            for (Index hh = 0; hh < H; ++hh) {
                const auto& f = full[static_cast<std::size_t>(l)];
                const std::size_t i = static_cast<std::size_t>(hh), li = static_cast<std::size_t>(l);
                worst = std::max({worst, std::abs(streamed.attention_on_first_token[li][i] - f.mean_first()[i]),
                                  std::abs(streamed.gu_alpha[li][i] - f.mean_alpha()[i]),
                                  std::abs(streamed.attention_on_first_delimiter[li][i] - f.mean_delim()[i])});
                delimited += f.delim_sequences > 0;
            }
        CHECK(worst < 1e-5);
        CHECK(delimited > 0);  // (the delimiter metric was compared, not two zeros)
        // and the scan's own check mode (massact scan --patterns full) agrees too
        opt.full_patterns = true;
        const auto full_scan = analysis::scan(m, ids, opt);
        double worst_full = 0;
        for (std::size_t l = 0; l < full_scan.gu_alpha.size(); ++l)
            for (std::size_t hh = 0; hh < full_scan.gu_alpha[l].size(); ++hh)
                worst_full = std::max({worst_full, std::abs(full_scan.gu_alpha[l][hh] - streamed.gu_alpha[l][hh]),
                                       std::abs(full_scan.attention_on_first_token[l][hh] - streamed.attention_on_first_token[l][hh]),
                                       std::abs(full_scan.attention_on_first_delimiter[l][hh] - streamed.attention_on_first_delimiter[l][hh])});
        CHECK(worst_full < 1e-5);
        CHECK(full_scan.val_ppl == doctest::Approx(streamed.val_ppl).epsilon(1e-6));
    }
}

TEST_CASE("tiny-gpt2: scan reproduces the reference statistics and finds no massive activation") {
    const Transformer m(test::model("tiny-gpt2"));
    const auto ids = ppl_ids("tiny-gpt2");
    const auto r = analysis::scan(m, ids, options("tiny-gpt2"));
    check_against_reference("tiny-gpt2", r);
    CHECK(r.massive.empty());
    CHECK(r.detector_note.find("no massive activation") != std::string::npos);
    auto sun = options("tiny-gpt2");
    sun.criteria = analysis::DetectorCriteria::sun2024();
    CHECK(analysis::scan(m, TokenBatch(ids.topRows(16)), sun).massive.empty());
}

TEST_CASE("two partial scans merged equal one pass") {
    const Transformer m(test::model("tiny-llama"));
    const TokenBatch ids = ppl_ids("tiny-llama").topRows(20).leftCols(96);
    const auto opt = options("tiny-llama");
    analysis::ScanAccumulator one, a, b;
    analysis::scan_into(one, m, ids, opt);
    analysis::scan_into(a, m, ids.topRows(7), opt);
    analysis::scan_into(b, m, ids.bottomRows(13), opt, 7);
    a.merge(b);
    const auto r1 = analysis::finalize(one, m.config(), opt), r2 = analysis::finalize(a, m.config(), opt);
    CHECK(r2.sequences == 20);
    for (std::size_t l = 0; l < r1.layers.size(); ++l) {
        CHECK(r2.layers[l].top1_mean == doctest::Approx(r1.layers[l].top1_mean).epsilon(1e-12));
        CHECK(r2.layers[l].median_mean == doctest::Approx(r1.layers[l].median_mean).epsilon(1e-12));
        CHECK(r2.layers[l].top1_dims == r1.layers[l].top1_dims);
        CHECK(r2.layers[l].top1_pos0_fraction == r1.layers[l].top1_pos0_fraction);
        for (std::size_t h = 0; h < r1.gu_alpha[l].size(); ++h)
            CHECK(r2.gu_alpha[l][h] == doctest::Approx(r1.gu_alpha[l][h]).epsilon(1e-12));
    }
    CHECK(r2.val_ppl == doctest::Approx(r1.val_ppl).epsilon(1e-12));
    REQUIRE(r2.massive.size() == r1.massive.size());
    for (std::size_t i = 0; i < r1.massive.size(); ++i) {
        CHECK(r2.massive[i].dim == r1.massive[i].dim);
        CHECK(r2.massive[i].layers == r1.massive[i].layers);
        CHECK(r2.massive[i].mean == doctest::Approx(r1.massive[i].mean).epsilon(1e-12));
    }
    CHECK(r2.top_dims.size() == r1.top_dims.size());
    for (std::size_t i = 0; i < r1.top_dims.size(); ++i) {
        CHECK(r2.top_dims[i].dim == r1.top_dims[i].dim);
        CHECK(r2.top_dims[i].kurtosis == doctest::Approx(r1.top_dims[i].kurtosis).epsilon(1e-6));
    }
}

TEST_CASE("--data windows follow the documented protocol") {
    const auto tok = text::Tokenizer::from_file(test::model("tiny-llama") + "/tokenizer.json");
    const std::string text = "first document.\n\x1E\nsecond one\nwith two lines\n\x1E\nthird";
    const auto docs = analysis::split_documents(text);
    REQUIRE(docs.size() == 3);
    CHECK(docs[0] == "first document.\n");
    CHECK(docs[1] == "second one\nwith two lines\n");
    CHECK(docs[2] == "third");
    std::vector<text::TokenId> stream;
    for (const auto& d : docs) {
        const auto ids = tok.encode(d, false);
        stream.insert(stream.end(), ids.begin(), ids.end());
    }
    const TokenBatch w = analysis::text_windows(tok, text, 5);
    CHECK(w.rows() == static_cast<Index>(stream.size() / 4));
    for (Index r = 0; r < w.rows(); ++r) {
        CHECK(w(r, 0) == 1);  // <s>
        for (Index c = 1; c < 5; ++c) CHECK(w(r, c) == stream[static_cast<std::size_t>(r * 4 + c - 1)]);
    }
    CHECK(analysis::text_windows(tok, text, 5, 2).rows() == 2);
    test::expect_error([&] { analysis::text_windows(tok, "hi", 64); }, {"fewer than one window"});
    // Delimiters: '.' and newline tokens.
    const auto delims = analysis::delimiter_ids(tok);
    const auto dot = tok.encode(".", false);
    REQUIRE(dot.size() == 1);
    CHECK(delims.count(dot[0]) == 1);
    CHECK(delims.count(tok.encode("the", false)[0]) == 0);
}

TEST_CASE("the variant pair and sink-logit model: scan reproduces their statistics, including the bias slot") {
    for (const char* name : {"tiny-llama-baseline", "tiny-llama-kvbias", "tiny-llama-sinklogit"}) {
        const Transformer m(test::model(name));
        const auto ids = ppl_ids(name);
        const auto r = analysis::scan(m, ids, options(name));
        check_against_reference(name, r);
        const auto ref = io::read_json_file(test::data(std::string(name) + ".stats.json"));
        if (std::string(name) == "tiny-llama-baseline") {
            CHECK(r.attention_on_bias_slot.empty());  // no slot: the reference holds zeros
            continue;
        }
        REQUIRE(r.attention_on_bias_slot.size() == 8);
        double worst = 0;
        for (std::size_t l = 0; l < 8; ++l)
            for (std::size_t h = 0; h < 8; ++h)
                worst = std::max(worst, std::abs(r.attention_on_bias_slot[l][h] -
                                                 ref["attention_on_bias_slot_per_layer_head"][l][h].get<double>()));
        CAPTURE(name);
        CHECK(worst < 1e-4);
    }
}

TEST_CASE("a scan accumulator survives bytes, and two partial scans merge into the whole") {
    const Transformer m(test::model("tiny-llama"));
    TokenBatch ids(4, 24);
    for (Index i = 0; i < ids.size(); ++i) ids.data()[i] = 1 + (i * 7919) % 4000;
    analysis::ScanOptions opt;
    opt.batch = 2;
    analysis::ScanAccumulator whole, a, b;
    analysis::scan_into(whole, m, ids, opt);
    analysis::scan_into(a, m, ids.topRows(2), opt, 0);
    analysis::scan_into(b, m, ids.bottomRows(2), opt, 2);
    const auto ba = a.save(), bb = b.save();
    analysis::ScanAccumulator merged = analysis::ScanAccumulator::load(ba.data(), ba.size(), "a");
    merged.merge(analysis::ScanAccumulator::load(bb.data(), bb.size(), "b"));
    const auto j1 = analysis::finalize(whole, m.config(), opt).to_json(), j2 = analysis::finalize(merged, m.config(), opt).to_json();
    CHECK(j1["val_sequences"] == j2["val_sequences"]);
    CHECK(j1["massive_activations"].size() == j2["massive_activations"].size());
    CHECK(j1["val_nll"].get<double>() == doctest::Approx(j2["val_nll"].get<double>()).epsilon(1e-12));
    for (std::size_t l = 0; l < j1["layers"].size(); ++l) {
        CHECK(j1["layers"][l]["top1_mean"].get<double>() == doctest::Approx(j2["layers"][l]["top1_mean"].get<double>()).epsilon(1e-12));
        CHECK(j1["layers"][l]["top1_dims"] == j2["layers"][l]["top1_dims"]);
    }
    // a loaded accumulator saves to the same bytes; truncated or foreign bytes are refused
    const auto again = analysis::ScanAccumulator::load(ba.data(), ba.size(), "a").save();
    CHECK(again == ba);
    test::expect_error([&] { analysis::ScanAccumulator::load(ba.data(), ba.size() - 5, "part"); }, {"part", "truncated"});
    std::vector<unsigned char> junk(ba.size(), 7);
    test::expect_error([&] { analysis::ScanAccumulator::load(junk.data(), junk.size(), "junk"); }, {"junk", "not a massact scan"});
}

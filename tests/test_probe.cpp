// massact::probe::Scan, the engine-agnostic scan: fed with the buffers of massact's own forward it gives the
// JSON of massact's scan bit for bit, in whole sequences or in chunks, with strided rows, padded key columns
// and 32-bit token ids; half-precision buffers are widened exactly; partial probes merge; bad calls are refused.
#include "common.hpp"

#include <fstream>

using namespace massact;

namespace {

/// Everything an engine would show of one forward of `ids`: hidden states [N, T, d] per layer, attention
/// [N, H, T, T] per layer, logits [N*T, V].
struct Buffers {
    std::vector<RowMatrixF> resid, pattern;
    RowMatrixF logits;
};

Buffers forward(const Transformer& m, const TokenBatch& ids) {
    const ModelConfig& c = m.config();
    Buffers b;
    b.resid.resize(static_cast<std::size_t>(c.num_layers));
    b.pattern.resize(static_cast<std::size_t>(c.num_layers));
    Hooks hooks;
    hooks.add("*hook_resid_post", [&](Activation& a) { b.resid[static_cast<std::size_t>(a.layer)] = a.matrix(); });
    hooks.add("*attn.hook_pattern", [&](Activation& a) { b.pattern[static_cast<std::size_t>(a.layer)] = a.matrix(); });
    RunOptions run;
    run.logits = true;
    Workspace ws;
    b.logits = m.run(ids, ws, hooks, run);
    return b;
}

analysis::StatsOptions stats_options(const std::string& name) {
    analysis::StatsOptions o;
    o.delimiters = analysis::delimiter_ids(text::Tokenizer::from_file(test::model(name) + "/tokenizer.json"));
    return o;
}

TokenBatch val_windows(const std::string& name, Index T, Index n) {
    std::ifstream in(std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt");
    std::stringstream ss;
    ss << in.rdbuf();
    return analysis::text_windows(text::load_tokenizer(test::model(name)), ss.str(), T, n);
}

/// Feed sequence s of `b` to the probe as an engine with micro-batches of `chunk` tokens would: rows with a
/// stride larger than the width, attention with `pad` extra key columns holding garbage, int32 token ids.
void feed(probe::Scan& p, const Buffers& b, const TokenBatch& ids, Index s, Index chunk, Index pad, bool attention = true,
          bool logits = true) {
    const Index L = static_cast<Index>(b.resid.size()), T = ids.cols(), d = b.resid[0].cols();
    const Index H = b.pattern[0].rows() / (ids.rows() * T), V = b.logits.cols();
    std::vector<std::int32_t> tok(ids.row(s).data(), ids.row(s).data() + T);
    for (Index t0 = 0; t0 < T; t0 += chunk) {
        const Index q = std::min(chunk, T - t0);
        for (Index l = 0; l < L; ++l) {
            const auto& x = b.resid[static_cast<std::size_t>(l)];
            RowMatrixF strided = RowMatrixF::Constant(q, d + 3, 1e30f);  // stride d + 3: the tail must not be read
            strided.leftCols(d) = x.middleRows(s * T + t0, q);
            p.observe(static_cast<int>(l), l % 2 ? "blocks." + std::to_string(l) + ".hook_resid_post" : "hook_resid_post", strided.data(),
                      q, d, d + 3, probe::DType::F32, tok.data() + t0);
            if (!attention) continue;
            // llama.cpp's layout: [H, q, keys] with keys >= the tokens so far (a padded cache), garbage past them
            const Index keys = t0 + q + pad;
            RowMatrixF att = RowMatrixF::Constant(H * q, keys, 7.0f);
            const auto& P = b.pattern[static_cast<std::size_t>(l)];  // [N*H*T, T]
            for (Index h = 0; h < H; ++h)
                for (Index i = 0; i < q; ++i)
                    att.row(h * q + i).head(t0 + q) = P.row((s * H + h) * T + t0 + i).head(t0 + q);
            p.observe(static_cast<int>(l), "attn.hook_pattern", att.data(), H * q, keys, keys, probe::DType::F32);
        }
        if (logits) p.observe(-1, "logits", b.logits.row(s * T + t0).data(), q, V, V, probe::DType::F32);
    }
    p.end_sequence();
}

}  // namespace

TEST_CASE("probe::Scan fed with massact's own buffers writes the JSON of massact's scan, bit for bit") {
    for (const std::string name : {"tiny-llama", "tiny-gpt2"}) {
        CAPTURE(name);
        const Transformer m(test::model(name));
        const ModelConfig& c = m.config();
        const TokenBatch ids = val_windows(name, 48, 5);
        analysis::ScanOptions opt;
        static_cast<analysis::StatsOptions&>(opt) = stats_options(name);
        opt.batch = ids.rows();  // one forward, as the buffers below
        const std::string expected = analysis::scan(m, ids, opt).to_json().dump(1);
        REQUIRE(expected.find("\"val_ppl\"") != std::string::npos);
        REQUIRE(expected.find("\"sink_rate\"") != std::string::npos);
        const Buffers b = forward(m, ids);
        for (Index chunk : {Index(48), Index(13), Index(1)}) {
            CAPTURE(chunk);
            probe::Scan p(c.num_layers, c.num_heads, c.hidden_size, stats_options(name), c.model_type);
            for (Index s = 0; s < ids.rows(); ++s) feed(p, b, ids, s, chunk, chunk == 13 ? 5 : 0);
            CHECK(p.sequences() == ids.rows());
            CHECK(p.to_json().dump(1) == expected);
        }
        if (name == "tiny-llama") {  // the fixture's massive activation is seen through the probe
            probe::Scan p(c.num_layers, c.num_heads, c.hidden_size, stats_options(name), c.model_type);
            for (Index s = 0; s < ids.rows(); ++s) feed(p, b, ids, s, 16, 0);
            const auto r = p.result();
            REQUIRE(!r.massive.empty());
            const auto first = analysis::first_token_massive(r);
            CHECK(std::find(first.dims.begin(), first.dims.end(), Index(215)) != first.dims.end());
            // the file is what massact scan --json writes
            const std::string dir = test::temp_dir("probe");
            p.write_json(dir + "/scan.json");
            CHECK(io::read_json_file(dir + "/scan.json").dump(1) == expected);
        }
    }
}

TEST_CASE("probe::Scan: partial probes merge into the scan of all sequences; F16 and BF16 rows are widened exactly") {
    const Transformer m(test::model("tiny-llama"));
    const ModelConfig& c = m.config();
    const TokenBatch ids = val_windows("tiny-llama", 40, 4);
    const Buffers b = forward(m, ids);
    const auto opt = stats_options("tiny-llama");

    probe::Scan whole(c.num_layers, c.num_heads, c.hidden_size, opt, c.model_type), a = whole, bb = whole;
    for (Index s = 0; s < 4; ++s) feed(whole, b, ids, s, 40, 0);
    for (Index s = 0; s < 2; ++s) feed(a, b, ids, s, 40, 0);
    for (Index s = 2; s < 4; ++s) feed(bb, b, ids, s, 40, 0);
    // what massact's MPI scan does: the partial scans through bytes, merged in order
    analysis::ScanAccumulator sa, sb;
    {
        const auto bytes = a.accumulator().save();
        sa = analysis::ScanAccumulator::load(bytes.data(), bytes.size(), "a");
    }
    {
        const auto bytes = bb.accumulator().save();
        sb = analysis::ScanAccumulator::load(bytes.data(), bytes.size(), "b");
    }
    probe::Scan merged(c.num_layers, c.num_heads, c.hidden_size, opt, c.model_type);
    merged.merge(sa);
    merged.merge(sb);
    const auto j1 = whole.to_json(), j2 = merged.to_json();
    CHECK(j2["val_sequences"] == 4);
    CHECK(j1["massive_activations"].size() == j2["massive_activations"].size());
    CHECK(j2["val_nll"].get<double>() == doctest::Approx(j1["val_nll"].get<double>()).epsilon(1e-12));
    for (std::size_t l = 0; l < j1["layers"].size(); ++l) {
        CHECK(j2["layers"][l]["top1_mean"].get<double>() == doctest::Approx(j1["layers"][l]["top1_mean"].get<double>()).epsilon(1e-12));
        CHECK(j2["layers"][l]["top1_dims"] == j1["layers"][l]["top1_dims"]);
    }

    // half precision: a probe fed F16 (or BF16) rows equals one fed the same rounded values as F32
    for (const probe::DType dt : {probe::DType::F16, probe::DType::BF16}) {
        CAPTURE(probe::dtype_name(dt));
        probe::Scan half(c.num_layers, c.num_heads, c.hidden_size, opt), rounded = half;
        const Index T = ids.cols(), d = c.hidden_size;
        for (Index s = 0; s < ids.rows(); ++s) {
            const std::vector<std::int64_t> tok(ids.row(s).data(), ids.row(s).data() + T);
            for (Index l = 0; l < c.num_layers; ++l) {
                const auto x = b.resid[static_cast<std::size_t>(l)].middleRows(s * T, T);
                std::vector<std::uint16_t> h(static_cast<std::size_t>(T * d));
                RowMatrixF back(T, d);
                for (Index i = 0; i < T * d; ++i) {
                    const float v = x(i / d, i % d);
                    h[static_cast<std::size_t>(i)] = dt == probe::DType::F16 ? float_to_f16(v) : float_to_bf16(v);
                    back.data()[i] = dt == probe::DType::F16 ? f16_to_float(h[static_cast<std::size_t>(i)]) : bf16_to_float(h[static_cast<std::size_t>(i)]);
                }
                half.observe(static_cast<int>(l), "hook_resid_post", h.data(), T, d, d, dt, tok.data());
                rounded.observe(static_cast<int>(l), "hook_resid_post", back.data(), T, d, d, probe::DType::F32, tok.data());
                CHECK(test::max_abs_diff(back, x) > 0);  // the rounding did change the values
            }
            half.end_sequence();
            rounded.end_sequence();
        }
        const auto jh = half.to_json();
        CHECK(jh.dump() == rounded.to_json().dump());
        // without attention and logits: no sink metrics and no perplexity in the JSON, the layers as before
        CHECK(!jh.contains("val_ppl"));
        CHECK(!jh.contains("sink_rate"));
        CHECK(!jh.contains("attention_on_first_token_per_layer_head"));
        REQUIRE(jh["layers"].size() == j1["layers"].size());
        CHECK(jh["layers"][3]["top1_dims"] == j1["layers"][3]["top1_dims"]);
        CHECK(jh["layers"][3]["top1_mean"].get<double>() == doctest::Approx(j1["layers"][3]["top1_mean"].get<double>()).epsilon(1e-2));
    }
}

TEST_CASE("probe::Scan refuses calls that do not describe the model or the sequence") {
    const Index L = 2, H = 2, d = 8, T = 4;
    std::vector<float> x(static_cast<std::size_t>(T * d), 1.0f);
    std::vector<std::int64_t> tok = {1, 5, 6, 7};
    auto fresh = [&] { return probe::Scan(L, H, d); };
    test::expect_error([&] { probe::Scan(0, H, d); }, {"layers, heads and hidden size must be positive"});
    test::expect_error([&] { fresh().observe(0, "hook_mlp_out", x.data(), T, d, d, probe::DType::F32, tok.data()); },
                       {"layer 0 hook_mlp_out", "unknown site", "hook_resid_post, attn.hook_pattern and logits"});
    test::expect_error([&] { fresh().observe(2, "hook_resid_post", x.data(), T, d, d, probe::DType::F32, tok.data()); },
                       {"layer 2", "outside 0..1", "2 blocks"});
    test::expect_error([&] { fresh().observe(1, "blocks.0.hook_resid_post", x.data(), T, d, d, probe::DType::F32, tok.data()); },
                       {"block number does not match layer 1"});
    test::expect_error([&] { fresh().observe(0, "hook_resid_post", x.data(), T, d - 1, d - 1, probe::DType::F32, tok.data()); },
                       {"7 columns, expected the hidden size 8"});
    test::expect_error([&] { fresh().observe(0, "hook_resid_post", x.data(), T, d, d - 1, probe::DType::F32, tok.data()); },
                       {"row stride 7", "stride >= cols"});
    test::expect_error([&] { fresh().observe(0, "attn.hook_pattern", x.data(), 3, T, T, probe::DType::F32, tok.data()); },
                       {"3 rows are not heads x queries for 2 heads"});
    test::expect_error([&] { fresh().observe(0, "logits", x.data(), T, d, d, probe::DType::F32, tok.data()); }, {"logits are observed with layer -1"});
    test::expect_error([&] { fresh().end_sequence(); }, {"without any hook_resid_post rows"});
    test::expect_error([&] { fresh().result(); }, {"no complete sequence"});
    test::expect_error(
        [&] {
            auto p = fresh();
            p.observe(0, "hook_resid_post", x.data(), T, d, d, probe::DType::F32, tok.data());
            p.observe(1, "hook_resid_post", x.data(), T - 1, d, d, probe::DType::F32, tok.data());
            p.end_sequence();
        },
        {"end of sequence 0", "layer 1 has 3 rows, layer 0 has 4"});
    test::expect_error(
        [&] {
            auto p = fresh();
            p.observe(0, "hook_resid_post", x.data(), T, d, d, probe::DType::F32, tok.data());
            std::vector<std::int64_t> other = {1, 5, 9, 7};
            p.observe(1, "hook_resid_post", x.data(), T, d, d, probe::DType::F32, other.data());
        },
        {"token id 9 at position 2 differs from the 6 given before"});
    test::expect_error(
        [&] {
            auto p = fresh();
            for (int l = 0; l < 2; ++l) p.observe(l, "hook_resid_post", x.data(), T, d, d, probe::DType::F32);
            p.end_sequence();
        },
        {"no token id for position 0"});
    test::expect_error(
        [&] {
            auto p = fresh();
            for (int l = 0; l < 2; ++l) p.observe(l, "hook_resid_post", x.data(), T, d, d, probe::DType::F32, tok.data());
            std::vector<float> att(static_cast<std::size_t>(H * T * T), 0.25f);
            p.observe(0, "attn.hook_pattern", att.data(), H * T, T, T, probe::DType::F32);
            p.end_sequence();
        },
        {"attn.hook_pattern of layer 1 covers 0 queries, expected 4"});
    test::expect_error(
        [&] {
            auto p = fresh();
            for (int l = 0; l < 2; ++l) p.observe(l, "hook_resid_post", x.data(), T, d, d, probe::DType::F32, tok.data());
            p.end_sequence();
            for (int l = 0; l < 2; ++l) p.observe(l, "hook_resid_post", x.data(), T - 1, d, d, probe::DType::F32, tok.data());
            p.end_sequence();
        },
        {"sequence length 3 differs from the accumulated 4"});
    test::expect_error(
        [&] {
            auto p = fresh();
            for (int l = 0; l < 2; ++l) p.observe(l, "hook_resid_post", x.data(), T, d, d, probe::DType::F32, tok.data());
            std::vector<float> logits(static_cast<std::size_t>(T * 7), 0.0f);
            p.observe(-1, "logits", logits.data(), T, 7, 7, probe::DType::F32);
        },
        {"token id 7 at position 3 is outside the vocabulary of 7"});
}

// Fake quantization: the formulas against naive loops, a row of the study recomputed from a checkpoint
// quantized in double precision, and the protections doing what they say.
#include "common.hpp"

#include <set>

#include <filesystem>
#include <fstream>

using namespace massact;
using namespace massact::analysis;

namespace {

TokenBatch quant_windows(Index n, Index T) {
    const auto tok = text::load_tokenizer(test::model("tiny-llama"));
    std::ifstream f(std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt");
    const std::string val((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    return text_windows(tok, val, T, n);
}

double naive_round(double x) { return x < 0 ? -std::floor(-x + 0.5) : std::floor(x + 0.5); }

}  // namespace

TEST_CASE("fake_quantize: RTN int4 per block and NF4 equal naive double loops; kept rows and columns stay and leave the scale") {
    std::mt19937 g(3);
    const RowMatrixF w0 = test::random_matrix(6, 96, g);
    RowMatrixF w = w0;
    fake_quantize(w, {QuantFormat::Int4, Granularity::Block, 32});
    for (Index r = 0; r < 6; ++r)
        for (Index b = 0; b < 96; b += 32) {
            double mx = 0;
            for (Index c = b; c < b + 32; ++c) mx = std::max(mx, std::abs(double(w0(r, c))));
            for (Index c = b; c < b + 32; ++c) {
                const double want = mx / 7 * std::clamp(naive_round(w0(r, c) * 7 / mx), -7.0, 7.0);
                CHECK(w(r, c) == doctest::Approx(want).epsilon(1e-5));
            }
        }
    w = w0;
    fake_quantize(w, {QuantFormat::NF4, Granularity::PerChannel, 0});
    const auto& lv = nf4_levels();
    for (Index r = 0; r < 6; ++r) {
        const double s = w0.row(r).cwiseAbs().maxCoeff();
        for (Index c = 0; c < 96; ++c) {
            double best = 1e9, want = 0;
            for (float l : lv)
                if (std::abs(w0(r, c) / s - l) < best) best = std::abs(w0(r, c) / s - l), want = s * l;
            CHECK(w(r, c) == doctest::Approx(want).epsilon(1e-5));
        }
    }
    // int2 (asymmetric, four levels from the group's min to its max) per block of 32, and ternary (BitNet b1.58's
    // absmean) per tensor, from their definitions in double precision
    w = w0;
    fake_quantize(w, {QuantFormat::Int2, Granularity::Block, 32});
    for (Index r = 0; r < 6; ++r)
        for (Index b = 0; b < 96; b += 32) {
            double lo = 1e30, hi = -1e30;
            for (Index c = b; c < b + 32; ++c) lo = std::min(lo, double(w0(r, c))), hi = std::max(hi, double(w0(r, c)));
            std::set<double> levels;
            for (Index c = b; c < b + 32; ++c) {
                const double step = (hi - lo) / 3, want = lo + step * std::clamp(naive_round((w0(r, c) - lo) / step), 0.0, 3.0);
                CHECK(w(r, c) == doctest::Approx(want).epsilon(1e-5));
                levels.insert(std::round(w(r, c) * 1e5));
            }
            CHECK(levels.size() <= 4);
        }
    std::vector<bool> keep_col(96, false);
    keep_col[7] = true;
    RowMatrixF big = w0;
    big(3, 7) = 500.0f;  // kept: neither quantized nor in the mean
    w = big;
    fake_quantize(w, {QuantFormat::Ternary, Granularity::PerTensor, 0}, {}, keep_col);
    double mean = 0;
    for (Index r = 0; r < 6; ++r)
        for (Index c = 0; c < 96; ++c)
            if (c != 7) mean += std::abs(double(big(r, c))) / (6.0 * 95.0);
    for (Index r = 0; r < 6; ++r)
        for (Index c = 0; c < 96; ++c) {
            const double want = c == 7 ? big(r, c) : mean * std::clamp(naive_round(big(r, c) / (mean + 1e-5)), -1.0, 1.0);
            CHECK(w(r, c) == doctest::Approx(want).epsilon(1e-5));
        }
    // Per tensor with column 5 kept: column 5 unchanged, and a huge value there does not set the scale.
    w = w0;
    w(2, 5) = 1000.0f;
    std::vector<bool> keep(96, false);
    keep[5] = true;
    RowMatrixF kept = w;
    fake_quantize(kept, {QuantFormat::Int8, Granularity::PerTensor, 0}, {}, keep);
    CHECK(kept(2, 5) == 1000.0f);
    CHECK(kept.col(5) == w.col(5));
    double mx = 0;
    for (Index r = 0; r < 6; ++r)
        for (Index c = 0; c < 96; ++c)
            if (c != 5) mx = std::max(mx, std::abs(double(w(r, c))));
    CHECK(std::abs(kept(0, 0) - w(0, 0)) <= mx / 127 / 2 * 1.0001);
}

TEST_CASE("the int8 per-channel row of the study equals a checkpoint quantized by a naive double-precision loop") {
    const Transformer m(test::model("tiny-llama"));
    const TokenBatch ids = quant_windows(4, 128);
    QuantExperiment e;
    e.weights = {QuantFormat::Int8, Granularity::PerChannel, 0};
    const auto study = quant_study(m, ids, {e}, {}, 4);
    REQUIRE(study.rows.size() == 1);
    // The same model written out: every block linear rounded per output row in double, stored as F32.
    const std::string dir = test::temp_dir("int8");
    const io::Checkpoint& ck = m.checkpoint();
    io::SafetensorsWriter out;
    std::vector<std::vector<float>> keep_alive;
    for (const auto& name : ck.names()) {
        const auto& t = ck.tensor(name);
        std::vector<double> v = t.to_double();
        const bool linear = t.shape.size() == 2 && name.find("model.layers.") == 0;
        if (linear) {
            const Index rows = t.shape[0], cols = t.shape[1];
            for (Index r = 0; r < rows; ++r) {
                double mx = 0;
                for (Index c = 0; c < cols; ++c) mx = std::max(mx, std::abs(v[static_cast<std::size_t>(r * cols + c)]));
                for (Index c = 0; c < cols; ++c) {
                    double& x = v[static_cast<std::size_t>(r * cols + c)];
                    x = mx == 0 ? 0 : mx / 127 * std::clamp(naive_round(x * 127 / mx), -127.0, 127.0);
                }
            }
        }
        keep_alive.emplace_back(v.begin(), v.end());
        out.add_f32(name, t.shape, keep_alive.back().data());
    }
    out.write(dir + "/model.safetensors");
    std::filesystem::copy_file(test::model("tiny-llama") + "/config.json", dir + "/config.json");
    const Transformer q(dir);
    const auto r = perplexity(q, ids, {}, {}, 4);
    CHECK(study.rows[0].ppl == doctest::Approx(r.ppl).epsilon(2e-5));
    CHECK(study.rows[0].ppl != doctest::Approx(study.ppl_float).epsilon(1e-7));  // it did quantize
    CHECK(study.ppl_float == doctest::Approx(perplexity(m, ids, {}, {}, 4).ppl).epsilon(1e-9));
    CHECK(study.rows[0].kl_mean > 0);
    // Attribution, recomputed from both models' forwards: the NLL increase per predicting position (mean over the
    // sequences) and the mean |h_q - h_f| per block output on the first token and on the others.
    const Index N = ids.rows(), T = ids.cols(), d = 256;
    std::vector<std::vector<float>> hf(8), hq(8);
    Hooks cf, cq;
    cf.add("blocks.*.hook_resid_post", [&](Activation& a) { hf[static_cast<std::size_t>(a.layer)].assign(a.data, a.data + a.numel()); });
    cq.add("blocks.*.hook_resid_post", [&](Activation& a) { hq[static_cast<std::size_t>(a.layer)].assign(a.data, a.data + a.numel()); });
    const RowMatrixF lf = m.forward(ids, cf), lq = q.forward(ids, cq);
    const RowMatrixD pf = token_logprobs(lf, ids), pq = token_logprobs(lq, ids);
    const auto& row = study.rows[0];
    REQUIRE(row.nll_increase_per_position.size() == static_cast<std::size_t>(T - 1));
    REQUIRE(row.kl_per_position.size() == static_cast<std::size_t>(T - 1));
    double kl_sum = 0;
    for (Index t = 0; t + 1 < T; ++t) {
        double inc = 0;
        for (Index b = 0; b < N; ++b) inc += (pf(b, t) - pq(b, t)) / double(N);
        // (the study rounds in float, the checkpoint above in double: NLLs of ~2.7 agree to ~1e-5, the increases are ~1e-3)
        CHECK(std::abs(row.nll_increase_per_position[static_cast<std::size_t>(t)] - inc) < 2e-5);
        kl_sum += row.kl_per_position[static_cast<std::size_t>(t)];
    }
    CHECK(kl_sum / double(T - 1) == doctest::Approx(row.kl_mean).epsilon(1e-9));
    for (std::size_t l = 0; l < 8; ++l) {
        double first = 0, other = 0;
        for (Index b = 0; b < N; ++b)
            for (Index t = 0; t < T; ++t)
                for (Index j = 0; j < d; ++j) {
                    const std::size_t i = static_cast<std::size_t>((b * T + t) * d + j);
                    (t == 0 ? first : other) += std::abs(double(hq[l][i]) - hf[l][i]) / double(t == 0 ? N * d : N * (T - 1) * d);
                }
        CHECK(row.error_first_token_per_layer[l] == doctest::Approx(first).epsilon(1e-3));
        CHECK(row.error_other_tokens_per_layer[l] == doctest::Approx(other).epsilon(1e-3));
    }
}

TEST_CASE("protections: massive dims and the super weight stay float; first-token and per-token activation rules") {
    const Transformer m(test::model("tiny-llama"));
    QuantContext ctx;
    ctx.massive_dims = {215};
    ctx.super_weights = find_super_weights(m, quant_windows(1, 64));
    REQUIRE(!ctx.super_weights.empty());
    const SuperWeight sw = ctx.super_weights[0];
    QuantExperiment e;
    e.weights = {QuantFormat::Int4, Granularity::PerTensor, 0};
    e.keep_massive_dims = true;
    e.restore_super_weight = true;
    const Transformer q = quantized_model(m, e, ctx);
    const LayerWeights &a = m.weights().layers[2], &b = q.weights().layers[2];
    for (Index r = 0; r < a.q.out(); r += 17) CHECK(b.q.at(r, 215) == a.q.at(r, 215));    // reads dim 215
    for (Index c = 0; c < a.down.in(); c += 13) CHECK(b.down.at(215, c) == a.down.at(215, c));  // writes dim 215
    CHECK(b.q.at(3, 7) != a.q.at(3, 7));
    CHECK(b.down.at(sw.row, sw.col) == a.down.at(sw.row, sw.col));
    // W8A8 per token with the first token kept: on a fixed activation, what the hook leaves.
    QuantExperiment act;
    act.weights.format = QuantFormat::Float;
    act.activations = QuantFormat::Int8;
    act.act_granularity = Granularity::PerToken;
    act.keep_first_token = true;
    const Hooks h = activation_hooks(m.config(), act, ctx);
    std::vector<float> x(2 * 3 * 256);
    std::mt19937 g(5);
    std::normal_distribution<float> n(0, 1);
    for (auto& v : x) v = n(g);
    x[1 * 256 + 9] = 80.0f;  // an outlier in token 1 of sequence 0
    std::vector<float> y = x;
    TokenBatch ids(2, 3);
    ids.setZero();
    Activation act0{"blocks.0.ln1.hook_normalized", 0, y.data(), {2, 3, 256}, &ids};
    for (const HookFn* fn : h.matching("blocks.0.ln1.hook_normalized")) (*fn)(act0);
    for (Index row = 0; row < 6; ++row) {
        double mx = 0;
        for (Index c = 0; c < 256; ++c) mx = std::max(mx, std::abs(double(x[static_cast<std::size_t>(row * 256 + c)])));
        for (Index c = 0; c < 256; ++c) {
            const auto i = static_cast<std::size_t>(row * 256 + c);
            const double want = row % 3 == 0 ? x[i] : mx / 127 * naive_round(x[i] * 127 / mx);
            CHECK(y[i] == doctest::Approx(want).epsilon(1e-5).scale(1e-6));
        }
    }
}

TEST_CASE("quant study on tiny-llama: the outlier protections recover what per-tensor quantization loses") {
    const Transformer m(test::model("tiny-llama"));
    const TokenBatch ids = quant_windows(4, 256);
    QuantContext ctx;
    ctx.massive_dims = {215, 243, 177, 86, 170};
    // The default table's round-to-nearest rows (the rotation, GPTQ, AWQ, static-scale and KV rows have their own cases below).
    std::vector<QuantExperiment> exps;
    for (const auto& e : default_experiments())
        if (e.rotation == RotationKind::None && !e.gptq && !e.awq && !e.static_scales && e.kv_bits == 0) exps.push_back(e);
    REQUIRE(exps.size() >= 8);
    const auto s = quant_study(m, ids, exps, ctx, 4);
    auto ppl = [&](auto pred) {
        for (const auto& r : s.rows)
            if (pred(r.experiment)) return r.ppl;
        FAIL("no such row");
        return 0.0;
    };
    const double int4_tensor = ppl([](const QuantExperiment& e) { return e.weights.format == QuantFormat::Int4 && e.weights.granularity == Granularity::PerTensor && !e.keep_massive_dims; });
    const double int4_kept = ppl([](const QuantExperiment& e) { return e.weights.format == QuantFormat::Int4 && e.weights.granularity == Granularity::PerTensor && e.keep_massive_dims; });
    const double a8 = ppl([](const QuantExperiment& e) { return e.activations == QuantFormat::Int8 && e.act_granularity == Granularity::PerTensor && e.protect() == "none"; });
    const double a8_int8 = ppl([](const QuantExperiment& e) { return e.activations == QuantFormat::Int8 && e.outlier_threshold; });
    const double a8_first = ppl([](const QuantExperiment& e) { return e.activations == QuantFormat::Int8 && e.keep_first_token; });
    const double a8_smooth = ppl([](const QuantExperiment& e) { return e.activations == QuantFormat::Int8 && e.smooth_quant; });
    CHECK(int4_kept < int4_tensor);
    CHECK(a8_int8 < a8);
    CHECK(a8_first < a8);
    CHECK(a8_smooth < a8);
    for (const auto& r : s.rows) {
        CHECK(r.ppl >= s.ppl_float * 0.98);
        CHECK(r.max_abs_error_per_layer.size() == 8);
    }
    test::expect_error([&] { quant_study(Transformer(test::data("families/gpt_neox")), TokenBatch::Zero(1, 4), exps, {}); }, {"quant:", "sequential pre-norm"});
}

namespace {
/// Lower Cholesky factor of a symmetric positive definite A (A = L L^T), written out.
Eigen::MatrixXd naive_cholesky(const Eigen::MatrixXd& A) {
    const Index n = A.rows();
    Eigen::MatrixXd L = Eigen::MatrixXd::Zero(n, n);
    for (Index j = 0; j < n; ++j) {
        double s = A(j, j);
        for (Index k = 0; k < j; ++k) s -= L(j, k) * L(j, k);
        L(j, j) = std::sqrt(s);
        for (Index i = j + 1; i < n; ++i) {
            double t = A(i, j);
            for (Index k = 0; k < j; ++k) t -= L(i, k) * L(j, k);
            L(i, j) = t / L(j, j);
        }
    }
    return L;
}

/// GPTQ column by column (no lazy batches), every update applied to the whole rest of the matrix at once.
Eigen::MatrixXd naive_gptq(Eigen::MatrixXd W, Eigen::MatrixXd H, int Q, Index group) {
    const Index out = W.rows(), in = W.cols();
    std::vector<double> scale(static_cast<std::size_t>(out));
    auto scales = [&](Index c0, Index c1) {
        for (Index r = 0; r < out; ++r) {
            double m = 0;
            for (Index c = c0; c < c1; ++c) m = std::max(m, std::abs(W(r, c)));
            scale[static_cast<std::size_t>(r)] = m;
        }
    };
    if (group == 0) scales(0, in);
    for (Index i = 0; i < in; ++i)
        if (H(i, i) == 0) H(i, i) = 1, W.col(i).setZero();
    const double damp = 0.01 * H.diagonal().mean();
    for (Index i = 0; i < in; ++i) H(i, i) += damp;
    const Eigen::MatrixXd L = naive_cholesky(H);
    Eigen::MatrixXd Linv = Eigen::MatrixXd::Zero(in, in);  // L^-1 by forward substitution; H^-1 = Linv^T Linv
    for (Index c = 0; c < in; ++c)
        for (Index i = c; i < in; ++i) {
            double t = i == c ? 1.0 : 0.0;
            for (Index k = c; k < i; ++k) t -= L(i, k) * Linv(k, c);
            Linv(i, c) = t / L(i, i);
        }
    const Eigen::MatrixXd U = naive_cholesky(Linv.transpose() * Linv).transpose();  // upper: H^-1 = U^T U
    for (Index i = 0; i < in; ++i) {
        if (group > 0 && i % group == 0) scales(i, std::min(in, i + group));
        for (Index r = 0; r < out; ++r) {
            const double m = scale[static_cast<std::size_t>(r)];
            const double q = m == 0 ? 0.0 : m / Q * std::clamp(naive_round(W(r, i) * Q / m), double(-Q), double(Q));
            const double e = (W(r, i) - q) / U(i, i);
            W(r, i) = q;
            for (Index j = i + 1; j < in; ++j) W(r, j) -= e * U(i, j);
        }
    }
    return W;
}
}  // namespace

TEST_CASE("GPTQ equals column-by-column GPTQ written out in double, and its layer error beats round-to-nearest on the calibration inputs") {
    std::mt19937 g(29);
    const Index out = 24, in = 40, rows = 300;
    // inputs with correlated columns, two outlier columns and one that never fires
    RowMatrixF X = test::random_matrix(rows, in, g);
    for (Index r = 0; r < rows; ++r) {
        X(r, 5) = 0.8f * X(r, 4) + 0.2f * X(r, 5);
        X(r, 11) *= 20.0f;
        X(r, 30) *= 8.0f;
        X(r, 17) = 0.0f;
    }
    const Eigen::MatrixXd H = X.cast<double>().transpose() * X.cast<double>();
    const RowMatrixF W0 = test::random_matrix(out, in, g);
    for (const auto& [q, Qmax, group, batch] : {std::tuple{WeightQuant{QuantFormat::Int4, Granularity::PerChannel}, 7, Index(0), Index(16)},
                                                 std::tuple{WeightQuant{QuantFormat::Int4, Granularity::PerChannel}, 7, Index(0), Index(128)},
                                                 std::tuple{WeightQuant{QuantFormat::Int4, Granularity::Block, 8}, 7, Index(8), Index(0)},
                                                 std::tuple{WeightQuant{QuantFormat::Int8, Granularity::Block, 16}, 127, Index(16), Index(0)}}) {
        CAPTURE(Qmax);
        CAPTURE(group);
        CAPTURE(batch);
        RowMatrixF W = W0;
        gptq_quantize(W, H, q, 0.01, batch > 0 ? batch : 128);
        const Eigen::MatrixXd want = naive_gptq(W0.cast<double>(), H, Qmax, group);
        // the same grid points: each weight within a float rounding of the reference's value
        Index same = 0;
        for (Index r = 0; r < out; ++r)
            for (Index c = 0; c < in; ++c) same += std::abs(W(r, c) - want(r, c)) <= 1e-5 * (std::abs(want(r, c)) + 1e-3);
        CHECK(same == out * in);
        for (Index r = 0; r < out; ++r) CHECK(W(r, 17) == 0.0f);  // (a dead input's column is zeroed)
        // the layer's output error on the calibration inputs equals the reference's, and beats RTN's
        auto err = [&](const Eigen::MatrixXd& Wq) { return ((W0.cast<double>() - Wq) * X.cast<double>().transpose()).squaredNorm(); };
        RowMatrixF R = W0;
        fake_quantize(R, q);
        CHECK(err(W.cast<double>()) == doctest::Approx(err(want)).epsilon(1e-6));
        CHECK(err(W.cast<double>()) < err(R.cast<double>()));
    }
    RowMatrixF W = W0;
    test::expect_error([&] { gptq_quantize(W, H, {QuantFormat::NF4, Granularity::Block, 8}); }, {"GPTQ", "nf4"});
    test::expect_error([&] { gptq_quantize(W, H.topLeftCorner(5, 5), {QuantFormat::Int4, Granularity::PerChannel}); }, {"GPTQ", "5 x 5", "40 inputs"});
}

TEST_CASE("rotations (QuaRot, SpinQuant): orthogonal matrices; a rotated model computes the same logits; the massive activation spreads") {
    for (const Index n : {1, 2, 8, 12, 256, 576}) {
        CAPTURE(n);
        const Eigen::MatrixXd h = hadamard_rotation(n, 5).cast<double>();
        CHECK((h.transpose() * h - Eigen::MatrixXd::Identity(n, n)).cwiseAbs().maxCoeff() < 1e-5);
        if ((n & (n - 1)) == 0)  // a power of two: a signed Sylvester matrix, every entry +-1/sqrt(n)
            CHECK((h.cwiseAbs().array() - 1.0 / std::sqrt(double(n))).abs().maxCoeff() < 1e-6);
    }
    const Eigen::MatrixXd o = random_orthogonal(48, 1).cast<double>();
    CHECK((o.transpose() * o - Eigen::MatrixXd::Identity(48, 48)).cwiseAbs().maxCoeff() < 1e-5);
    CHECK((random_orthogonal(48, 2).cast<double>() - o).cwiseAbs().maxCoeff() > 0.1);  // seeded: another seed, another matrix
    // the models: logits within 1e-5 of max |logit|; the last block's output is the float one rotated by Q
    struct Case {
        std::string dir;
        bool online;  // a dense MLP: the down_proj inputs rotated online too
    };
    const std::vector<Case> cases = {{test::model("tiny-llama"), true},        {test::data("families/qwen3"), true},
                                     {test::data("families/gemma"), true},     {test::data("families/granite"), true},
                                     {test::data("families/bitnet"), false},    {test::data("families/mixtral"), false},
                                     {test::data("families/deepseek_v3"), false}, {test::data("families/qwen3_next"), false},
                                     {test::data("families/mamba2"), false}};
    for (const auto& cs : cases) {
        CAPTURE(cs.dir);
        const Transformer m(cs.dir);
        std::mt19937 g(4);
        TokenBatch ids(2, 12);
        for (Index i = 0; i < ids.size(); ++i) ids.data()[i] = static_cast<std::int64_t>(g() % static_cast<unsigned>(m.config().vocab_size));
        const std::string last = "blocks." + std::to_string(m.config().num_layers - 1) + ".hook_resid_post";
        const auto plain = run_with_cache(m, ids, {last});
        const RowMatrixF full = m.forward(ids);
        const double scale = full.cwiseAbs().maxCoeff();
        for (RotationKind k : {RotationKind::Hadamard, RotationKind::Orthogonal}) {
            CAPTURE(rotation_name(k));
            const RotatedModel r = rotate_model(m, k, cs.online, 3);
            CHECK((r.down != nullptr) == cs.online);
            const RowMatrixF got = r.model.forward(ids, r.online());
            CHECK(test::max_abs_diff(got, full) / scale < 1e-5);
            const auto rotated = run_with_cache(r.model, ids, {last}, {}, r.online());
            const Index d = m.config().hidden_size, rows = ids.size();
            const RowMatrixF want = ConstRowMap<float>(plain.at(last).data.data(), rows, d) * r.residual;
            const ConstRowMap<float> have(rotated.at(last).data.data(), rows, d);
            CHECK(test::max_abs_diff(have, want) / want.cwiseAbs().maxCoeff() < 1e-5);
        }
    }
    // tiny-llama's massive activation (dim 215 of <s>, about 60 from block 2 on) is spread over the 256 dims
    const Transformer m(test::model("tiny-llama"));
    const TokenBatch ids = quant_windows(2, 64);
    auto peak = [&](const Transformer& t, const Hooks& first) {  // the largest share of a token's h^2 that one dim holds
        double share = 0;
        Hooks h = first;
        h.add("blocks.*.hook_resid_post", [&](Activation& a) {
            const Index d = a.shape[2];
            for (Index r = 0; r < a.numel() / d; ++r) {
                const Eigen::Map<const Eigen::VectorXf> x(a.data + r * d, d);
                share = std::max(share, double(x.cwiseAbs2().maxCoeff() / x.squaredNorm()));
            }
        });
        t.forward(ids, h);
        return share;
    };
    const RotatedModel r = rotate_model(m, RotationKind::Hadamard);
    const double before = peak(m, {}), after = peak(r.model, r.online());
    MESSAGE("tiny-llama: the largest share of a token's squared norm in one dim " << before << ", after a Hadamard rotation " << after);
    CHECK(before > 0.25);
    CHECK(after < before / 4);
    // what a rotation cannot do, refused with the reason
    test::expect_error([] { rotate_model(Transformer(test::model("tiny-gpt2")), RotationKind::Hadamard); }, {"rotate:", "gpt2", "LayerNorm"});
    test::expect_error([] { rotate_model(Transformer(test::data("families/olmo2")), RotationKind::Hadamard); }, {"rotate:", "post norms"});
    test::expect_error([] { rotate_model(Transformer(test::data("families/vit")), RotationKind::Hadamard); }, {"rotate:", "vision"});
    test::expect_error([] { rotate_model(Transformer(test::data("families/mixtral")), RotationKind::Hadamard, true); }, {"down_proj", "dense MLP"});
    test::expect_error([&] { m.with_rotated_residual(RowMatrixF::Identity(8, 8)); }, {"8 x 8", "256 dims"});
    test::expect_error([&] { m.with_rotated_residual(RowMatrixF::Constant(256, 256, 1.0f)); }, {"not orthogonal"});
}

TEST_CASE("quant study with rotations: the rotated float model keeps the perplexity; W4A4 rotated; refusals") {
    const Transformer m(test::model("tiny-llama"));
    const TokenBatch ids = quant_windows(2, 128);
    std::vector<QuantExperiment> exps(4);
    exps[0].weights.format = QuantFormat::Float;
    exps[0].rotation = RotationKind::Hadamard;
    exps[1].weights = {QuantFormat::Int4, Granularity::PerChannel, 64};
    exps[1].activations = QuantFormat::Int4;
    exps[1].act_granularity = Granularity::PerToken;
    exps[2] = exps[1];
    exps[2].rotation = RotationKind::Hadamard;
    exps[3] = exps[2];
    exps[3].gptq = true;
    const auto s = quant_study(m, ids, exps, {}, 2);
    MESSAGE("float " << s.ppl_float << "; rotated float " << s.rows[0].ppl << "; W4A4 " << s.rows[1].ppl << ", rotated " << s.rows[2].ppl
                     << ", rotated + GPTQ " << s.rows[3].ppl);
    CHECK(std::abs(s.rows[0].ppl / s.ppl_float - 1) < 1e-4);
    CHECK(s.rows[0].kl_mean < 1e-8);
    for (double e : s.rows[0].max_abs_error_per_layer) CHECK(e < 1e-3);  // (compared in the float model's basis)
    CHECK(s.rows[0].resid_max_abs < s.rows[1].resid_max_abs);
    CHECK(s.rows[0].experiment.protect() == "rotation (hadamard)");
    CHECK(s.rows[3].experiment.protect() == "rotation (hadamard), GPTQ");
    for (const auto& r : s.rows) CHECK(std::isfinite(r.ppl));
    QuantExperiment bad = exps[2];
    bad.keep_massive_dims = true;
    test::expect_error([&] { quant_study(m, ids, {bad}, {}, 2); }, {"rotation spreads", "massive dims in float"});
    bad = exps[1];
    bad.activations = QuantFormat::NF4;
    test::expect_error([&] { quant_study(m, ids, {bad}, {}, 2); }, {"activations in nf4"});
}

TEST_CASE("AWQ's search equals the search written out in double, and beats round-to-nearest where a few input channels are salient") {
    std::mt19937 g(9);
    std::normal_distribution<double> nd;
    const Index in = 32, n = 400;
    const std::vector<RowMatrixF> ws = {test::random_matrix(20, in, g), test::random_matrix(12, in, g)};
    Eigen::MatrixXd X(n, in);
    for (Index i = 0; i < X.size(); ++i) X.data()[i] = nd(g);
    X.col(3) *= 20.0;  // salient input channels (AWQ's premise: the channels with large activations matter most)
    X.col(17) *= 8.0;
    const Eigen::MatrixXd H = X.transpose() * X;
    std::vector<float> mean_abs(static_cast<std::size_t>(in));
    for (Index j = 0; j < in; ++j) mean_abs[static_cast<std::size_t>(j)] = static_cast<float>(X.col(j).cwiseAbs().mean());
    const WeightQuant q{QuantFormat::Int4, Granularity::PerChannel, 64};
    const AwqSearch got = awq_search(ws, H, mean_abs, q, 20);
    // the search in double: scales, per-row symmetric int4 of W diag(s), the error on the calibration inputs themselves
    auto loss_at = [&](double alpha, std::vector<double>& s) {
        s.assign(static_cast<std::size_t>(in), 0.0);
        double lo = 1e300, hi = 0;
        for (Index j = 0; j < in; ++j) {
            s[static_cast<std::size_t>(j)] = std::pow(std::max(double(mean_abs[static_cast<std::size_t>(j)]), 1e-8), alpha);
            lo = std::min(lo, s[static_cast<std::size_t>(j)]), hi = std::max(hi, s[static_cast<std::size_t>(j)]);
        }
        for (double& x : s) x /= std::sqrt(lo * hi);
        double loss = 0;
        for (const RowMatrixF& w : ws) {
            Eigen::MatrixXd dw(w.rows(), in);
            for (Index r = 0; r < w.rows(); ++r) {
                double m = 0;
                for (Index j = 0; j < in; ++j) m = std::max(m, std::abs(w(r, j) * s[static_cast<std::size_t>(j)]));
                for (Index j = 0; j < in; ++j) {
                    const double x = w(r, j) * s[static_cast<std::size_t>(j)];
                    const double qx = m == 0 ? 0.0 : m / 7 * std::clamp(naive_round(x * 7 / m), -7.0, 7.0);
                    dw(r, j) = qx / s[static_cast<std::size_t>(j)] - w(r, j);
                }
            }
            loss += (X * dw.transpose()).squaredNorm();
        }
        return loss;
    };
    std::vector<double> losses, s;
    for (int k = 0; k < 20; ++k) losses.push_back(loss_at(k / 20.0, s));
    const auto best = std::min_element(losses.begin(), losses.end()) - losses.begin();
    MESSAGE("AWQ: alpha " << got.alpha << " (double: " << best / 20.0 << "), loss " << got.loss << " against round-to-nearest's " << got.loss_rtn);
    CHECK(got.alpha == doctest::Approx(best / 20.0));
    CHECK(got.loss == doctest::Approx(losses[static_cast<std::size_t>(best)]).epsilon(1e-4));
    CHECK(got.loss_rtn == doctest::Approx(losses[0]).epsilon(1e-4));
    loss_at(got.alpha, s);
    for (Index j = 0; j < in; ++j) CHECK(got.scales[static_cast<std::size_t>(j)] == doctest::Approx(s[static_cast<std::size_t>(j)]).epsilon(1e-6));
    CHECK(got.loss < 0.8 * got.loss_rtn);
    CHECK(got.scales[3] > got.scales[0]);  // the salient channel is scaled up: its weights keep more precision
    // in the study: a weight-only row whose activations are divided by s; refused with activations or other methods
    const Transformer m(test::model("tiny-llama"));
    const TokenBatch ids = quant_windows(2, 128);
    std::vector<QuantExperiment> exps(2);
    exps[0].weights = {QuantFormat::Int4, Granularity::PerChannel, 64};
    exps[1] = exps[0];
    exps[1].awq = true;
    const auto st = quant_study(m, ids, exps, {}, 2);
    MESSAGE("tiny-llama int4 per channel: RTN " << st.rows[0].ppl << ", AWQ " << st.rows[1].ppl << " (float " << st.ppl_float << ")");
    CHECK(st.rows[1].experiment.protect() == "AWQ");
    CHECK(st.context.awq.size() == 4 * 8);
    CHECK(std::isfinite(st.rows[1].ppl));
    QuantExperiment bad = exps[1];
    bad.activations = QuantFormat::Int8;
    test::expect_error([&] { quant_study(m, ids, {bad}, {}, 2); }, {"AWQ is a weight-only method"});
}

TEST_CASE("PrefixQuant's prefix, static activation scales and the KV cache's quantization equal their definitions written out in double") {
    const Transformer m(test::model("tiny-llama"));
    const ModelConfig& c = m.config();
    const TokenBatch ids = quant_windows(4, 64);
    const Index N = ids.rows(), T = ids.cols(), L = c.num_layers, bos = ids(0, 0);
    REQUIRE((ids.col(0).array() == bos).all());

    // The prefix, recounted from down_proj's inputs (captured in double) for two criteria.
    std::vector<std::vector<std::vector<double>>> peak(static_cast<std::size_t>(L));  // [layer][sequence][position]
    Hooks cap;
    cap.add("blocks.*.mlp.hook_post", [&](Activation& a) {
        const Index w = a.numel() / (a.shape[0] * a.shape[1]);
        for (Index s = 0; s < a.shape[0]; ++s) {
            std::vector<double> p;
            for (Index t = 0; t < a.shape[1]; ++t) {
                double mx = 0;
                for (Index j = 0; j < w; ++j) mx = std::max(mx, std::abs(double(a.data[(s * a.shape[1] + t) * w + j])));
                p.push_back(mx);
            }
            peak[static_cast<std::size_t>(a.layer)].push_back(p);
        }
    });
    m.forward(ids, cap);
    for (const double ratio : {64.0, 8.0, 3.0}) {
        std::map<Index, Index> count;
        std::map<Index, std::set<Index>> where;
        double most = 0;
        for (Index l = 0; l < L; ++l) {
            double per_layer = 0;
            for (Index s = 0; s < N; ++s) {
                std::vector<double> p = peak[static_cast<std::size_t>(l)][static_cast<std::size_t>(s)], q = p;
                std::sort(q.begin(), q.end());
                const double median = (q[static_cast<std::size_t>(T / 2 - 1)] + q[static_cast<std::size_t>(T / 2)]) / 2;  // (T even)
                for (Index t = 0; t < T; ++t)
                    if (p[static_cast<std::size_t>(t)] > ratio * median) {
                        ++per_layer;
                        ++count[ids(s, t)];
                        where[ids(s, t)].insert(s);
                    }
            }
            most = std::max(most, per_layer / double(N));
        }
        const auto o = static_cast<Index>(std::ceil(most - 1e-9));
        std::vector<std::pair<Index, Index>> ranked;
        for (const auto& [id, k] : count)
            if (10 * Index(where[id].size()) >= N) ranked.push_back({-k, id});
        std::sort(ranked.begin(), ranked.end());
        std::vector<Index> want;
        for (Index i = 0; i < std::min<Index>(o, Index(ranked.size())); ++i)
            if (ranked[static_cast<std::size_t>(i)].second != bos) want.push_back(ranked[static_cast<std::size_t>(i)].second);
        want.push_back(bos);
        const auto [prefix, outliers] = prefix_outlier_tokens(m, ids, 2, bos, ratio);
        INFO("ratio " << ratio);
        CHECK(outliers == o);
        CHECK(prefix == want);
        if (ratio == 64.0) CHECK(prefix == std::vector<Index>{bos});  // tiny-llama: at most 60x the median (the BOS, layer 2)
        if (ratio == 3.0) CHECK(prefix.size() > 1);                    // and delimiters beyond a lower bar
    }

    // The prefixed batch: with the BOS last, the sequences' own BOS is the prefix's.
    const PrefixedBatch pb = with_prefix(ids, {13, 29889, bos});
    CHECK(pb.offset == 2);
    REQUIRE(pb.ids.cols() == T + 2);
    CHECK(pb.ids(1, 0) == 13);
    CHECK(pb.ids(1, 2) == bos);
    CHECK(pb.ids.row(3).tail(T) == ids.row(3));
    CHECK(with_prefix(ids, {13}).offset == 1);
    // A row of the study with a prefix and nothing quantized: the float model on the prefixed sequences, scored at the
    // sequences' own tokens (written out here with log-softmax in double).
    QuantContext pctx;
    pctx.prefix = {13, bos};
    QuantExperiment none;
    none.weights.format = QuantFormat::Float;
    none.prefix_outliers = true;
    const auto study = quant_study(m, ids, {none}, pctx, 4);
    const RowMatrixF lg = m.forward(with_prefix(ids, pctx.prefix).ids);
    double nll = 0;
    const Index Tp = T + 1;
    for (Index s = 0; s < N; ++s)
        for (Index t = 0; t + 1 < T; ++t) {
            const auto row = lg.row(s * Tp + 1 + t).cast<double>();
            const double mx = row.maxCoeff();
            nll += mx + std::log((row.array() - mx).exp().sum()) - row(ids(s, t + 1));
        }
    CHECK(study.rows[0].ppl == doctest::Approx(std::exp(nll / double(N * (T - 1)))).epsilon(1e-5));
    CHECK(study.rows[0].ppl != doctest::Approx(study.ppl_float).epsilon(1e-6));  // (the prefix changes the float model's run)

    // Static scales: the calibration keeps max |x| over the positions after the float ones; a forward quantizes with it,
    // clipping beyond.
    QuantExperiment st;
    st.weights.format = QuantFormat::Float;
    st.activations = QuantFormat::Int8;
    st.static_scales = true;
    st.keep_first_token = true;
    auto statics = std::make_shared<StaticScales>();
    m.forward(ids, activation_hooks(c, st, {}, statics, true));
    std::map<std::string, double> want_scale;
    Hooks cap2;
    for (const auto& [site, roles] : linear_inputs())
        cap2.add("blocks.*." + site, [&](Activation& a) {
            const Index w = a.numel() / (a.shape[0] * a.shape[1]);
            double& mx = want_scale[a.name];
            for (Index i = 0; i < a.numel(); ++i)
                if ((i / w) % a.shape[1] != 0) mx = std::max(mx, std::abs(double(a.data[i])));
        });
    m.forward(ids, cap2);
    REQUIRE(statics->size() == std::size_t(4 * L));
    for (const auto& [name, s] : *statics) CHECK(s == doctest::Approx(want_scale.at(name)).epsilon(1e-7));
    const std::string site = "blocks.1.mlp.hook_post";
    const double scale = statics->at(site);
    const Index I = c.layer_intermediate(1);
    std::vector<float> x(static_cast<std::size_t>(2 * I)), y;
    std::mt19937 g(7);
    std::normal_distribution<float> dist(0, float(scale) / 4);
    for (auto& v : x) v = dist(g);
    x[static_cast<std::size_t>(I + 5)] = float(3 * scale);  // beyond the calibrated range: clips
    y = x;
    TokenBatch two(1, 2);
    two << bos, 13;
    Activation act{site, 1, y.data(), {1, 2, I}, &two};
    const Hooks quantize = activation_hooks(c, st, {}, statics);
    for (const HookFn* fn : quantize.matching(site)) (*fn)(act);
    for (Index i = 0; i < 2 * I; ++i) {
        const double want = i < I ? x[static_cast<std::size_t>(i)] : scale / 127 * std::clamp(naive_round(x[static_cast<std::size_t>(i)] * 127 / scale), -127.0, 127.0);
        CHECK(y[static_cast<std::size_t>(i)] == doctest::Approx(want).epsilon(1e-5).scale(1e-6));
    }
    CHECK(y[static_cast<std::size_t>(I + 5)] == doctest::Approx(scale).epsilon(1e-6));

    // The KV cache to 4 and 3 bits, plain and in a Hadamard basis of the head, with IntactKV: every key after RoPE and
    // every value against min-max asymmetric quantization per token and head, in double, of what the model computed.
    for (const bool rotated : {false, true}) {
        QuantExperiment kv;
        kv.weights.format = QuantFormat::Float;
        kv.kv_bits = rotated ? 3 : 4;
        kv.intact_kv = rotated;
        if (rotated) kv.rotation = RotationKind::Hadamard;
        const Index hd = c.head_dim;
        const Eigen::MatrixXd R = rotated ? Eigen::MatrixXd(hadamard_rotation(hd, 0x4b56ull).cast<double>()) : Eigen::MatrixXd::Identity(hd, hd);
        std::map<std::string, std::vector<float>> before, after;
        Hooks h;
        for (const char* s : {"blocks.*.attn.hook_rot_k", "blocks.*.attn.hook_v"})
            h.add(s, [&](Activation& a) { before[a.name].assign(a.data, a.data + a.numel()); });
        h.extend(kv_hooks(c, kv, {}));
        for (const char* s : {"blocks.*.attn.hook_rot_k", "blocks.*.attn.hook_v"})
            h.add(s, [&](Activation& a) { after[a.name].assign(a.data, a.data + a.numel()); });
        m.forward(ids.topRows(2), h);
        REQUIRE(after.size() == std::size_t(2 * L));
        double worst = 0;
        Index exact_first = 0, ties = 0, checked = 0;
        for (const auto& [name, xs] : before) {
            const auto& ys = after.at(name);
            for (std::size_t v = 0; v < xs.size() / std::size_t(hd); ++v) {
                const bool first = (v / std::size_t(c.num_kv_heads)) % std::size_t(T) == 0;
                Eigen::VectorXd z(hd);
                for (Index j = 0; j < hd; ++j) z(j) = xs[v * std::size_t(hd) + std::size_t(j)];
                bool tie = false;  // (a level computed in float may round the other way within 1e-4 of a tie: left out)
                if (!(first && rotated)) {
                    z = R * z;
                    const double lo = z.minCoeff(), hi = z.maxCoeff(), step = (hi - lo) / ((1 << kv.kv_bits) - 1);
                    for (Index j = 0; j < hd; ++j) {
                        const double u = (z(j) - lo) / step;
                        tie = tie || std::abs(u - std::floor(u) - 0.5) < 1e-4;
                        z(j) = lo + step * std::clamp(naive_round(u), 0.0, double((1 << kv.kv_bits) - 1));
                    }
                    z = R.transpose() * z;
                }
                ties += tie;
                if (tie) continue;
                ++checked;
                for (Index j = 0; j < hd; ++j) {
                    const double got = ys[v * std::size_t(hd) + std::size_t(j)];
                    worst = std::max(worst, std::abs(got - z(j)) / (1 + std::abs(z(j))));
                    if (first && rotated) exact_first += got == xs[v * std::size_t(hd) + std::size_t(j)];
                }
            }
        }
        INFO("rotated " << rotated << ": " << ties << " head vectors near a tie of " << checked + ties);
        CHECK(worst < 1e-4);
        CHECK(ties * 100 < checked);
        if (rotated) CHECK(exact_first == 2 * L * 2 * c.num_kv_heads * hd);
    }
    // On tiny-llama static per-tensor W8A8 suffers from the sink token's outliers, and its prefix (the BOS) removes them
    // from the quantized positions.
    QuantExperiment s8;
    s8.activations = QuantFormat::Int8;
    s8.static_scales = true;
    QuantExperiment s8p = s8;
    s8p.prefix_outliers = true;
    const auto sq = quant_study(m, ids, {s8, s8p}, {}, 4);
    CHECK(sq.context.prefix == std::vector<Index>{bos});
    MESSAGE("W8A8 static per tensor: " << sq.rows[0].ppl << ", prefixed " << sq.rows[1].ppl << " (float " << sq.ppl_float << ")");
    CHECK(sq.rows[1].ppl < sq.rows[0].ppl);
    // Refusals: static scales of per-token or float activations; KV bits outside 2..8.
    QuantExperiment bad = st;
    bad.act_granularity = Granularity::PerToken;
    test::expect_error([&] { quant_study(m, ids, {bad}, {}, 4); }, {"static activation scales are per tensor"});
    QuantExperiment bits;
    bits.kv_bits = 1;
    test::expect_error([&] { quant_study(m, ids, {bits}, {}, 4); }, {"2..8 bits"});
}

TEST_CASE("AWQ's clipping search equals the search written out in double over the calibration inputs") {
    std::mt19937 g(11);
    const RowMatrixF w0 = test::random_matrix(7, 80, g);
    const RowMatrixF X = test::random_matrix(60, 80, g);
    const Eigen::MatrixXd H = X.cast<double>().transpose() * X.cast<double>();
    for (const WeightQuant q : {WeightQuant{QuantFormat::Int4, Granularity::Block, 32}, WeightQuant{QuantFormat::Int4, Granularity::PerChannel, 0},
                                WeightQuant{QuantFormat::Int8, Granularity::Block, 16}}) {
        RowMatrixF w = w0;
        const double ratio = awq_clip_quantize(w, H, q);
        const int Q = q.format == QuantFormat::Int8 ? 127 : 7;
        const Index G = q.granularity == Granularity::Block ? q.block : 80;
        double ratios = 0, n = 0, loss_rtn = 0, loss_clip = 0;
        for (Index r = 0; r < 7; ++r)
            for (Index c0 = 0; c0 < 80; c0 += G) {
                const Index gl = std::min<Index>(G, 80 - c0);
                double m = 0;
                for (Index j = 0; j < gl; ++j) m = std::max(m, std::abs(double(w0(r, c0 + j))));
                auto quantized = [&](double c) {
                    std::vector<double> v;
                    for (Index j = 0; j < gl; ++j) {
                        const double x = std::clamp(double(w0(r, c0 + j)), -c, c);
                        v.push_back(c / Q * std::clamp(naive_round(x * Q / c), -double(Q), double(Q)));
                    }
                    return v;
                };
                auto error = [&](const std::vector<double>& v) {  // sum over the calibration tokens of (x . dw)^2
                    double e = 0;
                    for (Index t = 0; t < 60; ++t) {
                        double y = 0;
                        for (Index j = 0; j < gl; ++j) y += double(X(t, c0 + j)) * (v[static_cast<std::size_t>(j)] - w0(r, c0 + j));
                        e += y * y;
                    }
                    return e;
                };
                double best = std::numeric_limits<double>::infinity(), best_c = m;
                for (int i = 0; i < 10; ++i) {
                    const double e = error(quantized(m * (1 - i / 20.0)));
                    if (i == 0) loss_rtn += e;
                    if (e < best) best = e, best_c = m * (1 - i / 20.0);
                }
                loss_clip += best;
                ratios += best_c / m, ++n;
                const auto want = quantized(best_c);
                for (Index j = 0; j < gl; ++j) CHECK(w(r, c0 + j) == doctest::Approx(want[static_cast<std::size_t>(j)]).epsilon(1e-5).scale(1e-6));
            }
        CHECK(ratio == doctest::Approx(ratios / n).epsilon(1e-5));
        CHECK(loss_clip <= loss_rtn);
        MESSAGE("AWQ clipping, block " << G << ": mean clip " << ratio << " of max |w|; output error " << loss_clip << " (round-to-nearest " << loss_rtn << ")");
    }
    RowMatrixF w = w0;
    test::expect_error([&] { awq_clip_quantize(w, H, {QuantFormat::NF4, Granularity::Block, 32}); }, {"int8 or int4"});
}

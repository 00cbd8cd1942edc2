// Kernels against naive double-precision loops on random inputs of odd sizes.
#include "common.hpp"

#include <cmath>
#include <limits>

using namespace massact;
using kernels::AttentionSpec;

namespace {

std::mt19937 rng(1234);

RowMatrixD to_d(const RowMatrixF& m) { return m.cast<double>(); }

// ---- naive references ----------------------------------------------------------
double ref_silu(double x) { return x / (1 + std::exp(-x)); }
double ref_gelu_tanh(double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }
double ref_gelu_erf(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }

/// Naive attention of one sequence: returns z [T, H*hd] and fills pattern [H][T][T] and extra probs.
struct RefAttention {
    RowMatrixD z;
    std::vector<double> pattern, extra;
};
RefAttention ref_attention(const RowMatrixF& q, const RowMatrixF& k, const RowMatrixF& v, const AttentionSpec& s) {
    const Index T = q.rows(), H = s.heads, hd = s.head_dim, grp = s.heads / s.kv_heads;
    RefAttention r;
    r.z = RowMatrixD::Zero(T, H * hd);
    r.pattern.assign(static_cast<std::size_t>(H * T * T), 0.0);
    r.extra.assign(static_cast<std::size_t>(H * T), 0.0);
    for (Index h = 0; h < H; ++h) {
        const Index g = h / grp;
        for (Index i = 0; i < T; ++i) {
            std::vector<double> logit;
            std::vector<Index> key;
            for (Index j = 0; j <= i; ++j) {
                if (s.window > 0 && j <= i - s.window) continue;
                if (s.chunk > 0 && j < i / s.chunk * s.chunk) continue;  // (chunked: only the query's own chunk)
                double dot = 0;
                for (Index e = 0; e < hd; ++e) dot += double(q(i, h * hd + e)) * k(j, g * hd + e);
                logit.push_back(dot * s.scale);
                key.push_back(j);
            }
            std::vector<double> extra;
            if (s.sink_logits) extra.push_back(s.sink_logits[h]);
            double kvlogit = 0;
            if (s.k_bias) {
                for (Index e = 0; e < hd; ++e) kvlogit += double(q(i, h * hd + e)) * s.k_bias[g * hd + e];
                kvlogit *= s.scale;
                extra.push_back(kvlogit);
            }
            if (s.fn != kernels::AttentionFn::Softmax) {  // softpick / sigmoid straight from their definitions
                double den = 1e-6;
                for (double x : logit) den += std::abs(std::exp(x) - 1.0);
                for (std::size_t a = 0; a < key.size(); ++a) {
                    const double x = logit[a];
                    const double p = s.fn == kernels::AttentionFn::Sigmoid ? 1.0 / (1.0 + std::exp(-(x + s.sigmoid_bias)))
                                                                           : std::max(0.0, std::exp(x) - 1.0) / den;
                    r.pattern[static_cast<std::size_t>((h * T + i) * T + key[a])] = p;
                    for (Index e = 0; e < hd; ++e) r.z(i, h * hd + e) += p * v(key[a], g * hd + e);
                }
                continue;
            }
            double m = -1e300;
            for (double x : logit) m = std::max(m, x);
            for (double x : extra) m = std::max(m, x);
            double den = 0;
            for (double x : logit) den += std::exp(x - m);
            for (double x : extra) den += std::exp(x - m);
            auto clip = [&](double p) {
                return s.clipped ? std::min(1.0, std::max(0.0, (double(s.gamma) - s.zeta) * p + s.zeta)) : p;
            };
            double total_extra = 0, pkv = 0;
            for (std::size_t e = 0; e < extra.size(); ++e) {
                const double p = clip(std::exp(extra[e] - m) / den);
                total_extra += p;
                if (s.k_bias && e + 1 == extra.size()) pkv = p;
            }
            r.extra[static_cast<std::size_t>(h * T + i)] = total_extra;
            for (std::size_t a = 0; a < key.size(); ++a) {
                const double p = clip(std::exp(logit[a] - m) / den);
                r.pattern[static_cast<std::size_t>((h * T + i) * T + key[a])] = p;
                for (Index e = 0; e < hd; ++e) r.z(i, h * hd + e) += p * v(key[a], g * hd + e);
            }
            if (s.v_bias)
                for (Index e = 0; e < hd; ++e) r.z(i, h * hd + e) += pkv * s.v_bias[g * hd + e];
        }
    }
    return r;
}

}  // namespace

TEST_CASE("rms_norm and layer_norm match double loops (odd sizes, raw buffers and Eigen views)") {
    for (Index n : {1, 7, 33, 257, 1001}) {
        const RowMatrixF x = test::random_matrix(5, n, rng, 3.0f);
        const RowMatrixF w = test::random_matrix(1, n, rng), b = test::random_matrix(1, n, rng);
        RowMatrixF y(5, n), y2(5, n);
        const Eigen::VectorXf wv = w.transpose(), bv = b.transpose();
        kernels::rms_norm(y, x, wv, 1e-5f);
        kernels::layer_norm(y2, x, wv, bv, 1e-5f);
        double e1 = 0, e2 = 0;
        for (Index i = 0; i < 5; ++i) {
            double ss = 0, mean = 0, var = 0;
            for (Index j = 0; j < n; ++j) { ss += double(x(i, j)) * x(i, j); mean += x(i, j); }
            mean /= n;
            for (Index j = 0; j < n; ++j) var += (x(i, j) - mean) * (x(i, j) - mean);
            var /= n;
            for (Index j = 0; j < n; ++j) {
                e1 = std::max(e1, std::abs(x(i, j) / std::sqrt(ss / n + 1e-5) * w(0, j) - y(i, j)));
                e2 = std::max(e2, std::abs((x(i, j) - mean) / std::sqrt(var + 1e-5) * w(0, j) + b(0, j) - y2(i, j)));
            }
        }
        CAPTURE(n);
        CHECK(e1 < 2e-5);
        CHECK(e2 < 2e-5);
        // The same kernel on a block of a larger matrix (row stride != cols) and in double.
        RowMatrixF big = RowMatrixF::Zero(7, n + 3);
        big.block(1, 2, 5, n) = x;
        kernels::rms_norm(big.block(1, 2, 5, n), big.block(1, 2, 5, n), wv, 1e-5f);
        CHECK(test::max_abs_diff(big.block(1, 2, 5, n), y) < 1e-6);
        CHECK(big.col(0).cwiseAbs().maxCoeff() == 0.0f);
        RowMatrixD yd(5, n);
        kernels::rms_norm(yd, to_d(x), Eigen::VectorXd(wv.cast<double>()), 1e-5);
        CHECK(test::max_abs_diff(yd, y) < 2e-5);
    }
}

TEST_CASE("silu, swiglu, gelu_tanh and gelu_erf match double loops") {
    const Index n = 1003;
    RowMatrixF x = test::random_matrix(1, n, rng, 4.0f);
    x(0, 0) = -100.0f;  // saturation
    x(0, 1) = 100.0f;
    const RowMatrixF u = test::random_matrix(1, n, rng);
    RowMatrixF s(1, n), sw(1, n), gt(1, n), ge(1, n);
    kernels::silu(s.data(), x.data(), n);
    kernels::swiglu(sw.data(), x.data(), u.data(), n);
    kernels::gelu_tanh(gt.data(), x.data(), n);
    kernels::gelu_erf(ge.data(), x.data(), n);
    double e[4] = {0, 0, 0, 0};
    for (Index i = 0; i < n; ++i) {
        const double xi = x(0, i);
        const double scale = std::max(1.0, std::abs(xi));
        e[0] = std::max(e[0], std::abs(ref_silu(xi) - s(0, i)) / scale);
        e[1] = std::max(e[1], std::abs(ref_silu(xi) * u(0, i) - sw(0, i)) / scale);
        e[2] = std::max(e[2], std::abs(ref_gelu_tanh(xi) - gt(0, i)) / scale);
        e[3] = std::max(e[3], std::abs(ref_gelu_erf(xi) - ge(0, i)) / scale);
    }
    for (double v : e) CHECK(v < 1e-5);
    CHECK(s(0, 0) == doctest::Approx(0.0).epsilon(1e-6));
    CHECK(gt(0, 1) == doctest::Approx(100.0));
}

TEST_CASE("Gated DeltaNet: the causal convolution and the gated delta rule match double loops, whole and split in two steps") {
    const Index T = 11, C = 37, taps = 4;
    const RowMatrixF x = test::random_matrix(T, C, rng, 2.0f), w = test::random_matrix(C, taps, rng);
    // conv: y[t, c] = silu(sum_j w[c, j] x[t - 3 + j, c]), zeros before the first row
    RowMatrixD want(T, C);
    for (Index t = 0; t < T; ++t)
        for (Index c = 0; c < C; ++c) {
            double sum = 0;
            for (Index j = 0; j < taps; ++j)
                if (t - (taps - 1) + j >= 0) sum += double(w(c, j)) * x(t - (taps - 1) + j, c);
            want(t, c) = ref_silu(sum);
        }
    RowMatrixF y(T, C), y2(T, C);
    std::vector<float> hist((taps - 1) * C), hist2((taps - 1) * C);
    kernels::causal_conv1d_silu(x.data(), C, T, C, w.data(), taps, nullptr, hist.data(), y.data(), C);
    CHECK((to_d(y) - want).cwiseAbs().maxCoeff() < 1e-5);
    for (Index j = 0; j < taps - 1; ++j)  // the history: the last taps - 1 inputs
        for (Index c = 0; c < C; ++c) CHECK(hist[static_cast<std::size_t>(j * C + c)] == x(T - (taps - 1) + j, c));
    // split 2 + 9 (a first step shorter than the history) gives the same rows bit for bit
    kernels::causal_conv1d_silu(x.data(), C, 2, C, w.data(), taps, nullptr, hist2.data(), y2.data(), C);
    kernels::causal_conv1d_silu(x.row(2).data(), C, T - 2, C, w.data(), taps, hist2.data(), hist2.data(), y2.row(2).data(), C);
    CHECK(y2 == y);
    CHECK(hist2 == hist);

    // the rule: 3 key heads of 5, 6 value heads of 7 (value head h reads key head h / 2)
    const kernels::DeltaRuleShape s{3, 6, 5, 7};
    RowMatrixF q = test::random_matrix(T, 15, rng), k = test::random_matrix(T, 15, rng), v = test::random_matrix(T, 42, rng);
    kernels::l2_normalize_rows(q.data(), T * 3, 5, 5);
    kernels::l2_normalize_rows(k.data(), T * 3, 5, 5);
    RowMatrixF beta = test::random_matrix(T, 6, rng).array().abs().min(1.0f), decay = test::random_matrix(T, 6, rng).array().abs().min(1.0f);
    decay(3, 1) = 0.0f;  // a full reset
    for (Index r = 0; r < T * 3; ++r) {  // unit rows
        double n = 0;
        for (Index i = 0; i < 5; ++i) n += double(q.data()[r * 5 + i]) * q.data()[r * 5 + i];
        CHECK(std::abs(n - 1) < 1e-5);
    }
    RowMatrixD o_want(T, 42);
    for (Index h = 0; h < 6; ++h) {
        RowMatrixD S = RowMatrixD::Zero(5, 7);
        for (Index t = 0; t < T; ++t) {
            Eigen::VectorXd kt(5), qt(5), vt(7);
            for (Index i = 0; i < 5; ++i) kt(i) = k(t, (h / 2) * 5 + i), qt(i) = q(t, (h / 2) * 5 + i);
            for (Index j = 0; j < 7; ++j) vt(j) = v(t, h * 7 + j);
            S *= double(decay(t, h));
            const Eigen::VectorXd delta = (vt - S.transpose() * kt) * double(beta(t, h));
            S += kt * delta.transpose();
            o_want.row(t).segment(h * 7, 7) = (S.transpose() * qt / std::sqrt(5.0)).transpose();
        }
    }
    RowMatrixF o(T, 42), o2(T, 42);
    std::vector<float> state(static_cast<std::size_t>(s.state_size())), state2(state.size());
    kernels::gated_delta_rule(s, q.data(), 15, k.data(), 15, v.data(), 42, beta.data(), 6, decay.data(), 6, nullptr, state.data(), o.data(), 42, T);
    CHECK((to_d(o) - o_want).cwiseAbs().maxCoeff() < 1e-5);
    kernels::gated_delta_rule(s, q.data(), 15, k.data(), 15, v.data(), 42, beta.data(), 6, decay.data(), 6, nullptr, state2.data(), o2.data(), 42, 5);
    std::vector<float> state3(state.size());  // (state in and out apart: the old one stays)
    kernels::gated_delta_rule(s, q.row(5).data(), 15, k.row(5).data(), 15, v.row(5).data(), 42, beta.row(5).data(), 6, decay.row(5).data(), 6,
                              state2.data(), state3.data(), o2.row(5).data(), 42, T - 5);
    CHECK(o2 == o);
    CHECK(state3 == state);
}

TEST_CASE("Mamba-2: the scan matches a double loop (groups shared by heads), whole and split; the convolution's bias") {
    const Index T = 13, taps = 4;
    const kernels::SsdShape s{6, 5, 2, 7};  // heads 0-2 read group 0, heads 3-5 group 1
    const RowMatrixF x = test::random_matrix(T, 30, rng), B = test::random_matrix(T, 14, rng), C = test::random_matrix(T, 14, rng);
    const RowMatrixF dt = test::random_matrix(T, 6, rng).array().abs() + 0.01f;
    const RowMatrixF A = -test::random_matrix(1, 6, rng).array().abs(), D = test::random_matrix(1, 6, rng);
    RowMatrixD want(T, 30);
    for (Index h = 0; h < 6; ++h) {
        RowMatrixD S = RowMatrixD::Zero(5, 7);
        const Index g = h / 3;
        for (Index t = 0; t < T; ++t) {
            Eigen::VectorXd xt(5), Bt(7), Ct(7);
            for (Index p = 0; p < 5; ++p) xt(p) = x(t, h * 5 + p);
            for (Index n = 0; n < 7; ++n) Bt(n) = B(t, g * 7 + n), Ct(n) = C(t, g * 7 + n);
            S = std::exp(double(dt(t, h)) * A(0, h)) * S + double(dt(t, h)) * xt * Bt.transpose();
            want.row(t).segment(h * 5, 5) = (S * Ct + double(D(0, h)) * xt).transpose();
        }
    }
    RowMatrixF y(T, 30), y2(T, 30);
    std::vector<float> st(static_cast<std::size_t>(s.state_size())), st2(st.size()), st3(st.size());
    kernels::ssd_scan(s, x.data(), 30, B.data(), 14, C.data(), 14, dt.data(), 6, A.data(), D.data(), nullptr, st.data(), y.data(), 30, T);
    CHECK((to_d(y) - want).cwiseAbs().maxCoeff() < 1e-5);
    kernels::ssd_scan(s, x.data(), 30, B.data(), 14, C.data(), 14, dt.data(), 6, A.data(), D.data(), nullptr, st2.data(), y2.data(), 30, 6);
    kernels::ssd_scan(s, x.row(6).data(), 30, B.row(6).data(), 14, C.row(6).data(), 14, dt.row(6).data(), 6, A.data(), D.data(), st2.data(),
                      st3.data(), y2.row(6).data(), 30, T - 6);
    CHECK(y2 == y);
    CHECK(st3 == st);
    // the convolution with a bias: silu(sum + b)
    const RowMatrixF in = test::random_matrix(T, 9, rng), w = test::random_matrix(9, taps, rng), b = test::random_matrix(1, 9, rng);
    RowMatrixF out(T, 9);
    kernels::causal_conv1d_silu(in.data(), 9, T, 9, w.data(), taps, nullptr, nullptr, out.data(), 9, b.data());
    double worst = 0;
    for (Index t = 0; t < T; ++t)
        for (Index c = 0; c < 9; ++c) {
            double sum = b(0, c);
            for (Index j = 0; j < taps; ++j)
                if (t - (taps - 1) + j >= 0) sum += double(w(c, j)) * in(t - (taps - 1) + j, c);
            worst = std::max(worst, std::abs(ref_silu(sum) - out(t, c)));
        }
    CHECK(worst < 1e-5);
}

TEST_CASE("RoPE rotate-half and interleaved match the formula") {
    const Index T = 9, heads = 3, half = 5, hd = 2 * half;
    std::vector<float> inv(half);
    for (Index j = 0; j < half; ++j) inv[static_cast<std::size_t>(j)] = static_cast<float>(std::pow(10000.0, -2.0 * j / hd));
    const auto table = kernels::make_rope_table(inv, 0, T);
    const RowMatrixF x = test::random_matrix(T, heads * hd, rng);
    for (auto layout : {kernels::RopeLayout::RotateHalf, kernels::RopeLayout::Interleaved}) {
        RowMatrixF y = x;
        kernels::rope<float>(y, heads, table, layout);
        double err = 0;
        for (Index t = 0; t < T; ++t)
            for (Index h = 0; h < heads; ++h)
                for (Index j = 0; j < half; ++j) {
                    const double a = t * double(inv[static_cast<std::size_t>(j)]);
                    const Index i0 = h * hd + (layout == kernels::RopeLayout::RotateHalf ? j : 2 * j);
                    const Index i1 = h * hd + (layout == kernels::RopeLayout::RotateHalf ? j + half : 2 * j + 1);
                    err = std::max(err, std::abs(x(t, i0) * std::cos(a) - x(t, i1) * std::sin(a) - y(t, i0)));
                    err = std::max(err, std::abs(x(t, i1) * std::cos(a) + x(t, i0) * std::sin(a) - y(t, i1)));
                }
        CHECK(err < 1e-5);
        // Rotations preserve each pair's norm, so the row norm is unchanged.
        CHECK((y.rowwise().norm() - x.rowwise().norm()).cwiseAbs().maxCoeff() < 1e-4);
    }
}

TEST_CASE("softmax variants: standard, softmax1, extra slots, clipped") {
    const Index n = 37;
    const RowMatrixF x = test::random_matrix(4, n, rng, 3.0f);
    RowMatrixF p = x, p1 = x, pc = x;
    kernels::softmax_rows<float>(p);
    kernels::softmax1_rows<float>(p1);
    kernels::clipped_softmax_rows<float>(pc, -0.1f, 1.0f);
    for (Index i = 0; i < 4; ++i) {
        double m = -1e9, den = 0;
        for (Index j = 0; j < n; ++j) m = std::max(m, double(x(i, j)));
        for (Index j = 0; j < n; ++j) den += std::exp(x(i, j) - m);
        const double den1 = den + std::exp(-m);
        for (Index j = 0; j < n; ++j) {
            CHECK(p(i, j) == doctest::Approx(std::exp(x(i, j) - m) / den).epsilon(1e-5));
            CHECK(p1(i, j) == doctest::Approx(std::exp(x(i, j) - m) / den1).epsilon(1e-5));
            const double c = std::min(1.0, std::max(0.0, 1.1 * std::exp(x(i, j) - m) / den - 0.1));
            CHECK(pc(i, j) == doctest::Approx(c).epsilon(1e-5));
        }
        CHECK(p.row(i).sum() == doctest::Approx(1.0).epsilon(1e-6));
        CHECK(p1.row(i).sum() < 1.0f);  // softmax1 rows sum to < 1
    }
    // Clipped softmax produces exact zeros for small probabilities.
    int zeros = 0;
    for (Index i = 0; i < pc.size(); ++i) zeros += pc.data()[i] == 0.0f;
    CHECK(zeros > 0);
    // All entries masked: no mass anywhere, no NaN.
    float masked[3] = {-INFINITY, -INFINITY, -INFINITY};
    CHECK(kernels::softmax_row(masked, 3) == 0.0f);
    CHECK(masked[0] == 0.0f);
    // Extra slots report their probabilities.
    float row[2] = {1.0f, 2.0f};
    float extra[1] = {3.0f};
    const float pe = kernels::softmax_row(row, 2, extra, 1);
    const double den = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
    CHECK(pe == doctest::Approx(std::exp(3.0) / den));
    CHECK(extra[0] == doctest::Approx(std::exp(3.0) / den));
    CHECK(row[1] == doctest::Approx(std::exp(2.0) / den));
}

TEST_CASE("causal attention (GQA, windows, chunks, sink slots, clipped, softpick, sigmoid) matches a naive double loop, streaming and materialised") {
    const Index H = 6, KV = 2, hd = 9;
    std::vector<float> sinks = {0.5f, -1.0f, 2.0f, 0.0f, 1.5f, -0.5f};
    RowMatrixF kb = test::random_matrix(KV, hd, rng), vb = test::random_matrix(KV, hd, rng);
    using kernels::AttentionFn;
    struct Case { Index T, window; bool sink, kv, clip; AttentionFn fn = AttentionFn::Softmax; Index chunk = 0; };
    for (Case cs : {Case{13, 0, false, false, false}, Case{70, 0, false, false, false}, Case{131, 5, false, false, false},
                    Case{67, 0, true, false, false}, Case{67, 0, false, true, false}, Case{45, 0, true, true, false},
                    Case{41, 7, false, false, true}, Case{1, 0, true, false, false},
                    Case{70, 0, false, false, false, AttentionFn::Softpick}, Case{37, 6, false, false, false, AttentionFn::Softpick},
                    Case{1, 0, false, false, false, AttentionFn::Softpick}, Case{70, 0, false, false, false, AttentionFn::Sigmoid},
                    Case{29, 4, false, false, false, AttentionFn::Sigmoid},
                    // chunked attention (Llama 4): chunks on the 16-query tiles' edges, across them, with a sink slot
                    Case{70, 0, false, false, false, AttentionFn::Softmax, 16}, Case{131, 0, false, false, false, AttentionFn::Softmax, 9},
                    Case{37, 0, true, false, false, AttentionFn::Softmax, 5}, Case{3, 0, false, false, false, AttentionFn::Softmax, 1}}) {
        CAPTURE(cs.T);
        CAPTURE(cs.window);
        CAPTURE(cs.chunk);
        CAPTURE(kernels::attention_fn_name(cs.fn));
        AttentionSpec s;
        s.heads = H;
        s.kv_heads = KV;
        s.head_dim = hd;
        s.scale = 1.0f / std::sqrt(float(hd));
        s.window = cs.window;
        s.chunk = cs.chunk;
        if (cs.sink) s.sink_logits = sinks.data();
        if (cs.kv) { s.k_bias = kb.data(); s.v_bias = vb.data(); }
        if (cs.clip) { s.clipped = true; s.zeta = -0.05f; s.gamma = 1.05f; }
        s.fn = cs.fn;
        s.sigmoid_bias = -std::log(float(cs.T));
        const RowMatrixF q = test::random_matrix(cs.T, H * hd, rng, 2.0f);
        const RowMatrixF k = test::random_matrix(cs.T, KV * hd, rng, 2.0f);
        const RowMatrixF v = test::random_matrix(cs.T, KV * hd, rng);
        kernels::AttentionInput in{q.data(), q.cols(), k.data(), k.cols(), v.data(), v.cols(), cs.T};
        const RefAttention ref = ref_attention(q, k, v, s);

        RowMatrixF z(cs.T, H * hd);
        std::vector<float> sinkp(static_cast<std::size_t>(H * cs.T));
        // the probabilities of chosen keys from the streamed softmax: key 0, one inside, the last, none, past the end
        const std::vector<Index> cols = {0, cs.T / 2, cs.T - 1, -1, cs.T};
        std::vector<float> colp(static_cast<std::size_t>(H * cs.T) * cols.size(), -1.0f);
        kernels::causal_attention(s, in, z.data(), z.cols(), sinkp.data(), 16,
                                  {cols.data(), static_cast<Index>(cols.size()), colp.data()});  // several tiles
        CHECK(test::max_abs_diff(z, ref.z) < 2e-5);
        double ce = 0;
        for (Index r = 0; r < H * cs.T; ++r)
            for (std::size_t c = 0; c < cols.size(); ++c) {
                const Index j = cols[c];
                const double want = j >= 0 && j < cs.T ? ref.pattern[static_cast<std::size_t>(r * cs.T + j)] : 0.0;
                ce = std::max(ce, std::abs(colp[static_cast<std::size_t>(r) * cols.size() + c] - want));
            }
        CHECK(ce < 1e-6);
        double e = 0;
        for (std::size_t i = 0; i < sinkp.size(); ++i) e = std::max(e, std::abs(sinkp[i] - ref.extra[i]));
        CHECK(e < 1e-6);

        std::vector<float> pat(static_cast<std::size_t>(H * cs.T * cs.T)), sp(sinkp.size()), kvp(sinkp.size());
        kernels::attention_scores(s, in, pat.data());
        kernels::attention_probs(s, in, pat.data(), sp.data(), kvp.data());
        RowMatrixF z2(cs.T, H * hd);
        kernels::attention_combine(s, in, pat.data(), kvp.data(), z2.data(), z2.cols());
        double pe = 0;
        for (std::size_t i = 0; i < pat.size(); ++i) pe = std::max(pe, std::abs(pat[i] - ref.pattern[i]));
        CHECK(pe < 1e-6);
        CHECK(test::max_abs_diff(z2, ref.z) < 2e-5);
        if (cs.sink || cs.kv) {  // pattern rows sum to 1 - p_sink
            for (Index h = 0; h < H; ++h)
                for (Index i = 0; i < cs.T; ++i) {
                    double row = 0;
                    for (Index j = 0; j < cs.T; ++j) row += pat[static_cast<std::size_t>((h * cs.T + i) * cs.T + j)];
                    CHECK(row + sp[static_cast<std::size_t>(h * cs.T + i)] == doctest::Approx(1.0).epsilon(1e-5));
                }
        }
        if (cs.fn == AttentionFn::Softpick) {  // rows sum to at most 1
            double most = 0;
            for (Index r = 0; r < H * cs.T; ++r) {
                double row = 0;
                for (Index j = 0; j < cs.T; ++j) row += pat[static_cast<std::size_t>(r * cs.T + j)];
                most = std::max(most, row);
            }
            CHECK(most <= 1.0 + 1e-6);
        }
    }
    // What the kernels do not combine is refused, not computed as something else.
    AttentionSpec bad;
    bad.heads = bad.kv_heads = 1;
    bad.head_dim = 2;
    bad.fn = AttentionFn::Softpick;
    bad.sink_logits = sinks.data();
    CHECK_THROWS_WITH_AS(kernels::check_spec(bad), doctest::Contains("softpick weights take no extra slots"), Error);
}

TEST_CASE("softpick is exact where scores are large and where every score is at most 0") {
    // Scores of 100 would overflow e^x in float: the shift by m = max(0, max x) keeps the result exact.
    std::vector<float> x = {100.0f, 99.0f, -3.0f, -std::numeric_limits<float>::infinity(), 0.0f};
    kernels::softpick_row<float>(x.data(), static_cast<Index>(x.size()));
    const double den = 1.0 + std::exp(-1.0) + 1e-6;  // |e^{x - 100} - e^{-100}| summed (masked: no part), + eps
    CHECK(x[0] == doctest::Approx(1.0 / den).epsilon(1e-6));
    CHECK(x[1] == doctest::Approx(std::exp(-1.0) / den).epsilon(1e-6));
    CHECK(x[2] == 0.0f);
    CHECK(x[3] == 0.0f);
    CHECK(x[4] == 0.0f);
    std::vector<float> neg = {-1.0f, -0.5f, 0.0f};
    CHECK(kernels::softpick_row<float>(neg.data(), 3) == 0.0f);  // no score above 0: no attention at all
    std::vector<float> sig = {0.0f, 2.0f, -std::numeric_limits<float>::infinity()};
    CHECK(kernels::sigmoid_row<float>(sig.data(), 3, -2.0f) == doctest::Approx(1.0 / (1.0 + std::exp(2.0)) + 0.5));
    CHECK(sig[2] == 0.0f);
}

TEST_CASE("attention over keys and values held in f16 / bf16 equals the double loop on the rounded values") {
    // A KV cache in 16 bits: past cached keys then T new ones, over the 256-key chunks the keys are widened in.
    const Index H = 4, KV = 2, hd = 16;
    struct Case { Index past, T, window; kernels::KVFormat f; Index chunk = 0; };
    for (Case cs : {Case{300, 1, 0, kernels::KVFormat::F16}, Case{511, 1, 0, kernels::KVFormat::BF16},
                    Case{250, 20, 0, kernels::KVFormat::BF16}, Case{600, 3, 100, kernels::KVFormat::F16},
                    Case{0, 40, 0, kernels::KVFormat::F16}, Case{300, 1, 0, kernels::KVFormat::F16, 64},
                    Case{250, 20, 0, kernels::KVFormat::BF16, 16}}) {  // (chunked: decoding inside a chunk, prefill over its edge)
        CAPTURE(cs.past);
        CAPTURE(cs.T);
        const Index n = cs.past + cs.T;
        AttentionSpec s;
        s.heads = H;
        s.kv_heads = KV;
        s.head_dim = hd;
        s.scale = 1.0f / std::sqrt(float(hd));
        s.window = cs.window;
        s.chunk = cs.chunk;
        const RowMatrixF q = test::random_matrix(n, H * hd, rng, 2.0f);
        RowMatrixF k = test::random_matrix(n, KV * hd, rng, 2.0f), v = test::random_matrix(n, KV * hd, rng);
        std::vector<std::uint16_t> k16(static_cast<std::size_t>(k.size())), v16(k16.size());
        const bool bf = cs.f == kernels::KVFormat::BF16;
        for (Index i = 0; i < k.size(); ++i) {  // the 16-bit values, and the floats they stand for
            k16[static_cast<std::size_t>(i)] = bf ? float_to_bf16(k.data()[i]) : float_to_f16(k.data()[i]);
            v16[static_cast<std::size_t>(i)] = bf ? float_to_bf16(v.data()[i]) : float_to_f16(v.data()[i]);
            k.data()[i] = bf ? bf16_to_float(k16[static_cast<std::size_t>(i)]) : f16_to_float(k16[static_cast<std::size_t>(i)]);
            v.data()[i] = bf ? bf16_to_float(v16[static_cast<std::size_t>(i)]) : f16_to_float(v16[static_cast<std::size_t>(i)]);
        }
        const RefAttention ref = ref_attention(q, k, v, s);  // all n queries; the last T are the new ones
        kernels::AttentionInput in;
        in.q = q.data() + cs.past * q.cols();
        in.q_stride = q.cols();
        in.k_stride = in.v_stride = k.cols();
        in.T = cs.T;
        in.past = cs.past;
        in.kv_format = cs.f;
        in.k16 = k16.data();
        in.v16 = v16.data();
        RowMatrixF z(cs.T, H * hd);
        kernels::causal_attention(s, in, z.data(), z.cols(), nullptr, 8);
        CHECK(test::max_abs_diff(z, ref.z.bottomRows(cs.T)) < 2e-5);
        std::vector<float> pat(static_cast<std::size_t>(H * cs.T * n));
        kernels::attention_scores(s, in, pat.data());
        kernels::attention_probs(s, in, pat.data(), nullptr, nullptr);
        double pe = 0;
        for (Index h = 0; h < H; ++h)
            for (Index i = 0; i < cs.T; ++i)
                for (Index j = 0; j < n; ++j)
                    pe = std::max(pe, std::abs(pat[static_cast<std::size_t>((h * cs.T + i) * n + j)] -
                                               ref.pattern[static_cast<std::size_t>((h * n + cs.past + i) * n + j)]));
        CHECK(pe < 2e-6);  // (float scores of 32-term dot products: a probability near 1 moves by ~1e-6 of it)
        RowMatrixF z2(cs.T, H * hd);
        kernels::attention_combine(s, in, pat.data(), nullptr, z2.data(), z2.cols());
        CHECK(test::max_abs_diff(z2, ref.z.bottomRows(cs.T)) < 2e-5);
    }
    CHECK(kernels::kv_format_from_name("bf16", "--kv-cache") == kernels::KVFormat::BF16);
    test::expect_error([] { kernels::kv_format_from_name("q8", "--kv-cache"); }, {"--kv-cache", "\"q8\"", "f32, f16 or bf16"});
}

TEST_CASE("half and bfloat16 conversions are exact and round to nearest even") {
    for (std::uint32_t h = 0; h < 65536; ++h) {
        const auto u = static_cast<std::uint16_t>(h);
        const float f = f16_to_float(u);
        if (!std::isnan(f)) REQUIRE(float_to_f16(f) == u);
        const float b = bf16_to_float(u);
        if (!std::isnan(b)) REQUIRE(float_to_bf16(b) == u);
    }
    CHECK(f16_to_float(0x3c00) == 1.0f);
    CHECK(f16_to_float(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
    CHECK(bf16_to_float(0x3f80) == 1.0f);
    CHECK(float_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);  // tie to even
    // Bulk conversion (F16C path) agrees with the scalar one.
    std::vector<std::uint16_t> src(1001);
    for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<std::uint16_t>(i * 61 + 7);
    std::vector<float> dst(src.size());
    f16_to_float(src.data(), dst.data(), src.size());
    for (std::size_t i = 0; i < src.size(); ++i)
        if (!std::isnan(dst[i])) CHECK(dst[i] == f16_to_float(src[i]));
}

TEST_CASE("rank-3 TensorMap entry points give the same attention as the matrix form") {
    const Index T = 29, H = 4, KV = 2, hd = 8;
    AttentionSpec s;
    s.heads = H;
    s.kv_heads = KV;
    s.head_dim = hd;
    s.scale = 0.3f;
    const RowMatrixF q = test::random_matrix(T, H * hd, rng), k = test::random_matrix(T, KV * hd, rng),
                     v = test::random_matrix(T, KV * hd, rng);
    RowMatrixF z1(T, H * hd), z2(T, H * hd);
    std::vector<float> pattern(static_cast<std::size_t>(H * T * T));
    kernels::causal_attention(s, kernels::ConstTensorView<float, 3>(q.data(), T, H, hd),
                              kernels::ConstTensorView<float, 3>(k.data(), T, KV, hd),
                              kernels::ConstTensorView<float, 3>(v.data(), T, KV, hd),
                              kernels::TensorView<float, 3>(z1.data(), T, H, hd));
    kernels::attention_with_pattern(s, kernels::ConstTensorView<float, 3>(q.data(), T, H, hd),
                                    kernels::ConstTensorView<float, 3>(k.data(), T, KV, hd),
                                    kernels::ConstTensorView<float, 3>(v.data(), T, KV, hd),
                                    kernels::TensorView<float, 3>(z2.data(), T, H, hd),
                                    kernels::TensorView<float, 3>(pattern.data(), H, T, T));
    const RefAttention ref = ref_attention(q, k, v, s);
    CHECK(test::max_abs_diff(z1, ref.z) < 2e-5);
    CHECK(test::max_abs_diff(z2, ref.z) < 2e-5);
    double pe = 0;
    for (std::size_t i = 0; i < pattern.size(); ++i) pe = std::max(pe, std::abs(pattern[i] - ref.pattern[i]));
    CHECK(pe < 1e-6);
}

#if defined(MASSACT_HAS_XSIMD)
TEST_CASE("gemm_bt: register-blocked C = A B^T matches a double loop, f32 and bf16, every edge") {
    const std::string path = kernels::native_bf16_dot() ? "AVX512-BF16 dot products" : "rounded operands, float32 FMA";
    MESSAGE("bf16 products: " << path);
    // Shapes cross every blocking edge: M around the register tiles (12 and 8 rows) and the few-row path, N
    // around the 32-column tile and the 128-column thread block, K around the 256 slice and odd.
    const std::vector<std::array<Index, 3>> shapes = {{1, 5, 3},     {3, 70, 300},   {7, 33, 17},   {8, 32, 256},
                                                      {9, 129, 257}, {37, 300, 131}, {64, 256, 512}, {13, 1, 1}};
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (const auto& s : shapes) {
        const Index M = s[0], N = s[1], K = s[2];
        CAPTURE(M);
        CAPTURE(N);
        CAPTURE(K);
        // A inside a wider buffer (row stride lda > K), C likewise: strided operands as in the forward.
        const Index lda = K + 3, ldc = N + 5;
        std::vector<float> A(static_cast<std::size_t>(M * lda)), B(static_cast<std::size_t>(N * K));
        for (auto& a : A) a = u(rng);
        for (auto& b : B) b = u(rng);
        auto fill = [&](Index n0, Index rows, Index k0, Index cols, float* dst) {
            for (Index i = 0; i < rows; ++i)
                for (Index j = 0; j < cols; ++j) dst[i * cols + j] = B[static_cast<std::size_t>((n0 + i) * K + k0 + j)];
        };
        kernels::GemmScratch scratch;
        for (const auto precision : {kernels::Precision::F32, kernels::Precision::BF16}) {
            const bool bf = precision == kernels::Precision::BF16;
            auto op = [&](float x) { return bf ? static_cast<double>(bf16_to_float(float_to_bf16(x))) : static_cast<double>(x); };
            std::vector<float> C(static_cast<std::size_t>(M * ldc), 42.0f);
            kernels::gemm_bt(A.data(), lda, M, N, K, fill, C.data(), ldc, precision, scratch);
            double worst = 0, worst_unrounded = 0;
            for (Index i = 0; i < M; ++i)
                for (Index j = 0; j < N; ++j) {
                    double ref = 0, mag = 0, exact = 0;
                    for (Index k = 0; k < K; ++k) {
                        const float a = A[static_cast<std::size_t>(i * lda + k)], b = B[static_cast<std::size_t>(j * K + k)];
                        ref += op(a) * op(b);
                        exact += double(a) * double(b);
                        mag += std::fabs(double(a) * double(b));
                    }
                    const double c = C[static_cast<std::size_t>(i * ldc + j)];
                    worst = std::max(worst, std::fabs(c - ref) / mag);
                    worst_unrounded = std::max(worst_unrounded, std::fabs(c - exact) / mag);
                }
            // float32 sums of (possibly bf16-rounded) operands; bf16 rounding itself is 2^-8 relative per operand
            CHECK(worst < 2e-6);
            CHECK(worst_unrounded < (bf ? 1.0 / 128 : 2e-6));
            // the padding of C (columns N..ldc) is untouched
            for (Index i = 0; i < M; ++i)
                for (Index j = N; j < ldc; ++j) REQUIRE(C[static_cast<std::size_t>(i * ldc + j)] == 42.0f);
        }
    }
}
#endif

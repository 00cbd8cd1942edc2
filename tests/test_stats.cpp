// stats/: top-k, per-dimension moments, quantiles and norms against naive double loops;
// merged partial accumulators against one pass.
#include "common.hpp"

#include <algorithm>

using namespace massact;

namespace {
std::mt19937 stats_rng(99);
}

TEST_CASE("top-k |x| with positions matches a full sort, ties broken by position, and merges exactly") {
    RowMatrixF x = test::random_matrix(37, 53, stats_rng, 2.0f);
    x(5, 7) = 9.0f;
    x(20, 3) = -9.0f;  // tie in |x| with (5, 7): the earlier row wins
    x(30, 50) = 8.5f;
    const auto top = stats::top_k_abs(x, 5);
    std::vector<std::tuple<float, Index, Index>> all;
    for (Index r = 0; r < x.rows(); ++r)
        for (Index c = 0; c < x.cols(); ++c) all.emplace_back(std::fabs(x(r, c)), r, c);
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
        if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) > std::get<0>(b);
        if (std::get<1>(a) != std::get<1>(b)) return std::get<1>(a) < std::get<1>(b);
        return std::get<2>(a) < std::get<2>(b);
    });
    REQUIRE(top.size() == 5);
    for (std::size_t i = 0; i < 5; ++i) {
        CHECK(std::fabs(top[i].value) == std::get<0>(all[i]));
        CHECK(top[i].row == std::get<1>(all[i]));
        CHECK(top[i].col == std::get<2>(all[i]));
    }
    CHECK(top[0].value == 9.0f);
    CHECK(top[1].value == -9.0f);
    // Two halves merged, in either order, equal the single pass.
    stats::TopK a(5), b(5);
    a.add(x.topRows(17));
    b.add(x.bottomRows(20), 17);
    stats::TopK ab = a, ba = b;
    ab.merge(b);
    ba.merge(a);
    for (std::size_t i = 0; i < 5; ++i) {
        CHECK(ab[i].value == top[i].value);
        CHECK(ab[i].row == top[i].row);
        CHECK(ba[i].col == top[i].col);
    }
}

TEST_CASE("per-dimension mean, variance, kurtosis and max |x| match double loops; merging equals one pass") {
    for (Index rows : {1, 7, 300, 1000}) {
        CAPTURE(rows);
        RowMatrixF x = test::random_matrix(rows, 19, stats_rng);
        for (Index r = 0; r < rows; ++r) x(r, 3) = 100.0f + 0.01f * x(r, 3);  // large offset: centring matters
        if (rows > 10) x(rows / 2, 5) = 40.0f;                                  // heavy tail in dim 5
        stats::ColumnMoments m(19);
        m.add(x);
        for (Index j = 0; j < 19; ++j) {
            double mean = 0, m2 = 0, m4 = 0, mx = 0;
            for (Index r = 0; r < rows; ++r) mean += x(r, j);
            mean /= rows;
            for (Index r = 0; r < rows; ++r) {
                const double d = x(r, j) - mean;
                m2 += d * d;
                m4 += d * d * d * d;
                mx = std::max(mx, double(std::fabs(x(r, j))));
            }
            CHECK(m.mean(j) == doctest::Approx(mean).epsilon(1e-6));
            CHECK(m.variance(j) == doctest::Approx(m2 / rows).epsilon(1e-4));
            if (m2 > 0) CHECK(m.kurtosis(j) == doctest::Approx(rows * m4 / (m2 * m2) - 3).epsilon(1e-3));
            CHECK(m.max_abs(j) == float(mx));
        }
        if (rows > 10) CHECK(m.kurtosis(5) > 10.0);
        // Split anywhere, merge: the one-pass result up to float rounding of the block sums.
        const Index cut = rows / 3;
        stats::ColumnMoments a(19), b(19);
        a.add(x.topRows(cut));
        b.add(x.bottomRows(rows - cut));
        a.merge(b);
        for (Index j = 0; j < 19; ++j) {
            CHECK(a.count() == m.count());
            CHECK(a.mean(j) == doctest::Approx(m.mean(j)).epsilon(1e-6));
            CHECK(a.variance(j) == doctest::Approx(m.variance(j)).epsilon(1e-5));
            CHECK(a.kurtosis(j) == doctest::Approx(m.kurtosis(j)).epsilon(1e-4));
            CHECK(a.max_abs(j) == m.max_abs(j));
        }
    }
}

TEST_CASE("ColumnMoments: partials over whole blocks (as a scan adds each sequence) merge to one pass, to double rounding") {
    const RowMatrixF x = test::random_matrix(7 * 256, 23, stats_rng, 3.0f);
    stats::ColumnMoments one(23), a(23), b(23), c(23);
    for (Index s = 0; s < 7; ++s) one.add(x.middleRows(s * 256, 256));
    for (Index s = 0; s < 3; ++s) a.add(x.middleRows(s * 256, 256));
    for (Index s = 3; s < 5; ++s) b.add(x.middleRows(s * 256, 256));
    for (Index s = 5; s < 7; ++s) c.add(x.middleRows(s * 256, 256));
    b.merge(c);
    a.merge(b);
    for (Index j = 0; j < 23; ++j) {
        CHECK(a.mean(j) == doctest::Approx(one.mean(j)).epsilon(1e-12));
        CHECK(a.variance(j) == doctest::Approx(one.variance(j)).epsilon(1e-12));
        CHECK(a.kurtosis(j) == doctest::Approx(one.kurtosis(j)).epsilon(1e-10));
        CHECK(a.max_abs(j) == one.max_abs(j));
    }
}

TEST_CASE("exact quantiles and median of |x| (linear interpolation), and row norms") {
    std::vector<float> scratch;
    for (Index n : {1, 2, 9, 10, 1001}) {
        const RowMatrixF x = test::random_matrix(1, n, stats_rng);
        std::vector<double> v;
        for (Index i = 0; i < n; ++i) v.push_back(std::fabs(x(0, i)));
        std::sort(v.begin(), v.end());
        const std::vector<double> qs = {0.0, 0.1, 0.5, 0.99, 1.0};
        const auto got = stats::abs_quantiles(x, qs, scratch);
        for (std::size_t i = 0; i < qs.size(); ++i) {
            const double pos = qs[i] * (n - 1);
            const auto a = static_cast<std::size_t>(std::floor(pos));
            const double expect = v[a] + (pos - a) * (v[std::min<std::size_t>(a + 1, v.size() - 1)] - v[a]);
            CHECK(got[i] == doctest::Approx(expect).epsilon(1e-12));
        }
        const double median = n % 2 ? v[static_cast<std::size_t>(n / 2)] : 0.5 * (v[static_cast<std::size_t>(n / 2 - 1)] + v[static_cast<std::size_t>(n / 2)]);
        CHECK(stats::abs_median(x, scratch) == doctest::Approx(median).epsilon(1e-12));
    }
    const RowMatrixF y = test::random_matrix(6, 33, stats_rng);
    const auto norms = stats::row_norms(y);
    for (Index r = 0; r < 6; ++r) {
        double s = 0;
        for (Index c = 0; c < 33; ++c) s += double(y(r, c)) * y(r, c);
        CHECK(norms(r) == doctest::Approx(std::sqrt(s)).epsilon(1e-6));
    }
}

TEST_CASE("Moments: stable near a large offset, merge equals one pass; TopK(0) is refused") {
    std::mt19937 g(3);
    std::normal_distribution<double> n(0.0, 1e-3);
    std::vector<double> v(1000);
    for (auto& x : v) x = 1e8 + n(g);
    stats::Moments all, a, b;
    for (std::size_t i = 0; i < v.size(); ++i) {
        all.add(v[i]);
        (i < 300 ? a : b).add(v[i]);
    }
    double mean = 0, m2 = 0;
    for (double x : v) mean += x;
    mean /= double(v.size());
    for (double x : v) m2 += (x - mean) * (x - mean);
    CHECK(all.mean == doctest::Approx(mean).epsilon(1e-15));
    CHECK(all.variance() == doctest::Approx(m2 / double(v.size())).epsilon(1e-6));  // sum-of-squares would lose it all
    a.merge(b);
    CHECK(a.n == all.n);
    CHECK(a.variance() == doctest::Approx(all.variance()).epsilon(1e-9));
    CHECK_THROWS_AS(stats::TopK(0), massact::Error);
}

// Helpers shared by the tests: paths, random matrices, comparisons.
#pragma once

#include <massact/massact.hpp>

#include <doctest/doctest.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace test {

inline std::string data(const std::string& name) { return std::string(MASSACT_TEST_DATA) + "/" + name; }
inline std::string model(const std::string& name) { return std::string(MASSACT_SOURCE_DIR) + "/examples/models/" + name; }

/// A fresh empty temporary folder.
inline std::string temp_dir(const std::string& tag) {
    std::string tmpl = "/tmp/massact-test-" + tag + "-XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    REQUIRE(p != nullptr);
    return tmpl;
}

inline massact::RowMatrixF random_matrix(massact::Index r, massact::Index c, std::mt19937& g, float scale = 1.0f) {
    std::normal_distribution<float> n(0.0f, scale);
    massact::RowMatrixF m(r, c);
    for (massact::Index i = 0; i < m.size(); ++i) m.data()[i] = n(g);
    return m;
}

/// max |a - b| over all entries.
template <typename A, typename B>
double max_abs_diff(const A& a, const B& b) {
    REQUIRE(a.rows() == b.rows());
    REQUIRE(a.cols() == b.cols());
    double m = 0;
    for (massact::Index i = 0; i < a.rows(); ++i)
        for (massact::Index j = 0; j < a.cols(); ++j)
            m = std::max(m, std::abs(static_cast<double>(a(i, j)) - static_cast<double>(b(i, j))));
    return m;
}

/// Expect `f` to throw massact::Error whose message contains every one of `parts`.
template <typename F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
    std::string msg;
    try {
        f();
    } catch (const massact::Error& e) {
        msg = e.what();
    }
    INFO("message: " << msg);
    REQUIRE(!msg.empty());
    for (const auto& p : parts) CHECK(msg.find(p) != std::string::npos);
}

}  // namespace test

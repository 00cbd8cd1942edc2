// Shared by the forward benchmarks: the matrix products of one forward pass, and a baseline
// that runs exactly those products with Eigen's GEMM on float32 weights.
#pragma once

#include <massact/massact.hpp>

#include <chrono>
#include <vector>

namespace bench {

struct Gemm {
    massact::Index m, k, n;  // [m, k] x [k, n]
};

/// The projections of a forward over T tokens (attention products are counted separately).
inline std::vector<Gemm> forward_gemms(const massact::ModelConfig& c, massact::Index T) {
    std::vector<Gemm> g;
    const massact::Index d = c.hidden_size;
    for (int l = 0; l < c.num_layers; ++l) {
        g.push_back({T, d, c.q_dim()});
        g.push_back({T, d, c.kv_dim()});
        g.push_back({T, d, c.kv_dim()});
        g.push_back({T, c.q_dim(), d});
        if (c.family == massact::Family::Llama) g.push_back({T, d, c.intermediate_size});
        g.push_back({T, d, c.intermediate_size});
        g.push_back({T, c.intermediate_size, d});
    }
    g.push_back({T, d, c.vocab_size});
    return g;
}

inline double gemm_flops(const std::vector<Gemm>& g) {
    double f = 0;
    for (const auto& x : g) f += 2.0 * double(x.m) * double(x.k) * double(x.n);
    return f;
}

/// Causal attention: QK^T and PV over the lower triangle.
inline double attention_flops(const massact::ModelConfig& c, massact::Index T) {
    return c.num_layers * 2.0 * 2.0 * double(c.num_heads) * c.head_dim * (double(T) * (T + 1) / 2);
}

/// Seconds per pass of all `g` products with Eigen (float32 weights already in memory), best of `reps`.
inline double eigen_gemm_seconds(const std::vector<Gemm>& g, int reps) {
    std::vector<massact::RowMatrixF> a, w, y;
    for (const auto& x : g) {
        a.push_back(massact::RowMatrixF::Random(x.m, x.k));
        w.push_back(massact::RowMatrixF::Random(x.n, x.k));  // nn.Linear layout [out, in]
        y.push_back(massact::RowMatrixF(x.m, x.n));
    }
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < g.size(); ++i) y[i].noalias() = a[i] * w[i].transpose();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::min(best, s);
    }
    return best;
}

}  // namespace bench

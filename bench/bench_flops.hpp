// Shared by the forward benchmarks: the matrix products of one forward pass, and a baseline
// that runs exactly those products with Eigen's GEMM on float32 weights.
#pragma once

#include <massact/massact.hpp>

#include <chrono>
#include <map>
#include <tuple>
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
        if (c.mlp == massact::MlpKind::Gated) g.push_back({T, d, c.intermediate_size});
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

/// Seconds for the sequence of products `g` with Eigen, each with its own float32 weight matrix
/// already in memory (like a forward pass whose weights were expanded to float32 beforehand):
/// best of `reps` passes. This is the GEMM work of a forward without anything else.
inline double eigen_gemm_seconds(const std::vector<Gemm>& g, int reps) {
    std::vector<massact::RowMatrixF> w;
    massact::Index max_m = 0, max_k = 0, max_n = 0;
    for (const auto& x : g) {
        w.push_back(massact::RowMatrixF::Constant(x.n, x.k, 0.01f));  // nn.Linear layout [out, in]
        max_m = std::max(max_m, x.m);
        max_k = std::max(max_k, x.k);
        max_n = std::max(max_n, x.n);
    }
    const massact::RowMatrixF a = massact::RowMatrixF::Constant(max_m, max_k, 0.5f);
    massact::RowMatrixF y(max_m, max_n);
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < g.size(); ++i)
            y.topLeftCorner(g[i].m, g[i].n).noalias() = a.topLeftCorner(g[i].m, g[i].k) * w[i].transpose();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
}

}  // namespace bench

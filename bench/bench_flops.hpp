// Shared by the forward benchmarks: the floating-point work of one forward pass (its matrix products
// with weights, and causal attention).
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

}  // namespace bench

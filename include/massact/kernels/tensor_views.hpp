// massact/kernels/tensor_views.hpp - rank-3 entry points for engines whose activations are
// Eigen::TensorMap views of their own buffers (no copies): q [T, heads, head_dim],
// k and v [T, kv_heads, head_dim], z [T, heads, head_dim], all row-major.
#pragma once

#include "massact/core/third_party.hpp"

#include "massact/core/eigen.hpp"
#include "massact/kernels/attention.hpp"

MASSACT_THIRD_PARTY_BEGIN
#include <unsupported/Eigen/CXX11/Tensor>
MASSACT_THIRD_PARTY_END

namespace massact::kernels {

template <typename T, int Rank>
using ConstTensorView = Eigen::TensorMap<const Eigen::Tensor<T, Rank, Eigen::RowMajor>>;
template <typename T, int Rank>
using TensorView = Eigen::TensorMap<Eigen::Tensor<T, Rank, Eigen::RowMajor>>;

/// Streaming causal attention on rank-3 views; spec.heads/kv_heads/head_dim must match the views.
inline void causal_attention(const AttentionSpec& s, ConstTensorView<float, 3> q, ConstTensorView<float, 3> k,
                             ConstTensorView<float, 3> v, TensorView<float, 3> z, float* sink_prob = nullptr) {
    eigen_assert(q.dimension(1) == s.heads && q.dimension(2) == s.head_dim);
    eigen_assert(k.dimension(1) == s.kv_heads && v.dimension(1) == s.kv_heads);
    eigen_assert(z.dimension(0) == q.dimension(0) && z.dimension(1) == s.heads);
    const AttentionInput in{q.data(), s.heads * s.head_dim, k.data(), s.kv_heads * s.head_dim,
                            v.data(), s.kv_heads * s.head_dim, q.dimension(0)};
    causal_attention(s, in, z.data(), s.heads * s.head_dim, sink_prob);
}

/// Materialised attention on rank-3 views, also writing the pattern [heads, T, T].
inline void attention_with_pattern(const AttentionSpec& s, ConstTensorView<float, 3> q, ConstTensorView<float, 3> k,
                                   ConstTensorView<float, 3> v, TensorView<float, 3> z, TensorView<float, 3> pattern) {
    const Index T = q.dimension(0);
    eigen_assert(pattern.dimension(0) == s.heads && pattern.dimension(1) == T && pattern.dimension(2) == T);
    const AttentionInput in{q.data(), s.heads * s.head_dim, k.data(), s.kv_heads * s.head_dim,
                            v.data(), s.kv_heads * s.head_dim, T};
    std::vector<float> kv(static_cast<std::size_t>(s.heads * T));
    attention_scores(s, in, pattern.data());
    attention_probs(s, in, pattern.data(), nullptr, kv.data());
    attention_combine(s, in, pattern.data(), kv.data(), z.data(), s.heads * s.head_dim);
}

}  // namespace massact::kernels

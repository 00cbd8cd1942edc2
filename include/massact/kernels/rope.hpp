// massact/kernels/rope.hpp - rotary position embeddings.
//
// Two layouts of the head_dim = 2*half features of a head:
//   RotateHalf (Hugging Face): pairs (j, j + half)
//     out[j]      = x[j] cos - x[j+half] sin
//     out[j+half] = x[j+half] cos + x[j] sin
//   Interleaved (GGUF, Meta .pth): pairs (2j, 2j+1), same rotation.
// angle(pos, j) = pos * inv_freq[j].
#pragma once

#include "massact/core/eigen.hpp"

#include <cmath>
#include <vector>

namespace massact::kernels {

enum class RopeLayout { RotateHalf, Interleaved };

/// cos/sin of pos * inv_freq[j] for positions [first, first + count); each [count, half].
struct RopeTable {
    RowMatrixF cos;
    RowMatrixF sin;
    Index half() const { return cos.cols(); }
};

/// Build the table in float32 the way Hugging Face does (angle = float(pos) * inv_freq in float32,
/// then cos/sin of that float), so positions far from 0 round like the reference.
inline RopeTable make_rope_table(const std::vector<float>& inv_freq, Index first, Index count) {
    RopeTable t;
    const auto half = static_cast<Index>(inv_freq.size());
    t.cos.resize(count, half);
    t.sin.resize(count, half);
    for (Index p = 0; p < count; ++p)
        for (Index j = 0; j < half; ++j) {
            const float angle = static_cast<float>(first + p) * inv_freq[static_cast<std::size_t>(j)];
            t.cos(p, j) = static_cast<float>(std::cos(static_cast<double>(angle)));
            t.sin(p, j) = static_cast<float>(std::sin(static_cast<double>(angle)));
        }
    return t;
}

/// Rotate one head vector x[0..2*half) in place at table row p.
template <typename T>
void rope_apply_head(T* x, const float* cos, const float* sin, Index half, RopeLayout layout) {
    if (layout == RopeLayout::RotateHalf) {
        for (Index j = 0; j < half; ++j) {
            const T a = x[j], b = x[j + half];
            x[j] = a * T(cos[j]) - b * T(sin[j]);
            x[j + half] = b * T(cos[j]) + a * T(sin[j]);
        }
    } else {
        for (Index j = 0; j < half; ++j) {
            const T a = x[2 * j], b = x[2 * j + 1];
            x[2 * j] = a * T(cos[j]) - b * T(sin[j]);
            x[2 * j + 1] = b * T(cos[j]) + a * T(sin[j]);
        }
    }
}

/// Apply RoPE in place to x: [T, heads * head_dim] row-major (row t at table row t). Partial rotary:
/// with head_dim > 2 * table.half(), only the first 2 * half features of each head rotate.
template <typename T>
void rope(Eigen::Ref<RowMatrix<T>> x, Index heads, const RopeTable& table, RopeLayout layout = RopeLayout::RotateHalf,
          Index head_dim = 0) {
    const Index half = table.half();
    if (head_dim == 0) head_dim = 2 * half;
    eigen_assert(x.cols() == heads * head_dim && 2 * half <= head_dim && x.rows() <= table.cos.rows());
    for (Index t = 0; t < x.rows(); ++t)
        for (Index h = 0; h < heads; ++h)
            rope_apply_head<T>(&x(t, h * head_dim), table.cos.row(t).data(), table.sin.row(t).data(), half, layout);
}

}  // namespace massact::kernels

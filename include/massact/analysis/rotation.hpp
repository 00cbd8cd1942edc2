// massact/analysis/rotation.hpp - rotations of the residual stream and of the MLP's hidden layer (QuaRot, SpinQuant):
// the same function in a basis where no dimension carries an outlier, so that quantization sees no massive activation.
//
//   randomized Hadamard of size n = 2^k m:  R = diag(s) (O_m (x) H_{2^k}) where H_{2^k} is Sylvester's Hadamard matrix
//       scaled to be orthogonal, s random signs, O_m a random orthogonal m x m block (m = 1 for powers of two: QuaRot's
//       construction, with a random block where QuaRot uses a stored Hadamard matrix of order m);
//   random orthogonal:  Q of the QR decomposition of a standard Gaussian matrix, columns signed by diag(R) (Haar).
// rotate_model folds the residual rotation into the weights (Transformer::with_rotated_residual: norm scales folded
// first) and, with `online_down`, rotates the input of every down_proj by an n x n Hadamard H online: h -> h H at
// mlp.hook_post (the hooks online() returns, first in any chain), with down_proj's W -> W H folded.
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/model/hooks.hpp"
#include "massact/model/transformer.hpp"

#include <Eigen/QR>

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>

namespace massact::analysis {

enum class RotationKind { None, Hadamard, Orthogonal };

inline const char* rotation_name(RotationKind k) {
    return k == RotationKind::Hadamard ? "hadamard" : k == RotationKind::Orthogonal ? "orthogonal" : "none";
}

inline RotationKind parse_rotation(const std::string& s, const std::string& what) {
    if (s == "none") return RotationKind::None;
    if (s == "hadamard") return RotationKind::Hadamard;
    if (s == "orthogonal") return RotationKind::Orthogonal;
    throw Error(what + ": \"" + s + "\": expected none, hadamard or orthogonal");
}

/// A Haar-random orthogonal n x n matrix (seeded).
inline RowMatrixF random_orthogonal(Index n, std::uint64_t seed) {
    require_at_least(n, 1, "random_orthogonal: size");
    std::mt19937_64 g(seed);
    std::normal_distribution<double> nd;
    Eigen::MatrixXd a(n, n);
    for (Index i = 0; i < a.size(); ++i) a.data()[i] = nd(g);
    const Eigen::HouseholderQR<Eigen::MatrixXd> qr(a);
    Eigen::MatrixXd q = qr.householderQ();
    const Eigen::MatrixXd r = qr.matrixQR().triangularView<Eigen::Upper>();
    for (Index j = 0; j < n; ++j)
        if (r(j, j) < 0) q.col(j) *= -1.0;
    return q.cast<float>();
}

/// A randomized Hadamard rotation of size n (see the top of this file), orthogonal, seeded.
inline RowMatrixF hadamard_rotation(Index n, std::uint64_t seed) {
    require_at_least(n, 1, "hadamard_rotation: size");
    Index p = 1;
    while (n % (2 * p) == 0) p *= 2;  // n = p m, p the largest power of two dividing n
    const Index m = n / p;
    Eigen::MatrixXd h = Eigen::MatrixXd::Ones(1, 1);
    while (h.rows() < p) {  // Sylvester: [[H, H], [H, -H]] / sqrt(2)
        const Index k = h.rows();
        Eigen::MatrixXd b(2 * k, 2 * k);
        b << h, h, h, -h;
        h = b / std::sqrt(2.0);
    }
    const Eigen::MatrixXd o = m == 1 ? Eigen::MatrixXd(Eigen::MatrixXd::Ones(1, 1)) : Eigen::MatrixXd(random_orthogonal(m, seed ^ 0x9e3779b97f4a7c15ull).cast<double>());
    std::mt19937_64 g(seed);
    Eigen::MatrixXd r(n, n);
    for (Index i = 0; i < m; ++i)
        for (Index j = 0; j < m; ++j) r.block(i * p, j * p, p, p) = o(i, j) * h;  // O_m (x) H_p
    for (Index i = 0; i < n; ++i)
        if (g() & 1) r.row(i) *= -1.0;
    return r.cast<float>();
}

/// A model in a rotated basis, and the online rotation its down_proj inputs need.
struct RotatedModel {
    Transformer model;
    RowMatrixF residual;  // Q [d, d]
    std::shared_ptr<const RowMatrixF> down;  // H [I, I] applied online before down_proj; null when not
    /// The online rotation h -> h H at every mlp.hook_post (none without online_down). Put them first in a chain.
    Hooks online() const {
        Hooks h;
        if (!down) return h;
        h.add("blocks.*.mlp.hook_post", [H = down](Activation& a) {
            const Index I = H->rows(), rows = a.numel() / I;
            RowMap<float> x(a.data, rows, I);
            x = (x * *H).eval();
        });
        return h;
    }
};

/// The model rotated as `kind` says (seeded): the residual stream by Q, and with `online_down` the down_proj inputs by an
/// I x I Hadamard rotation online. Without quantization it computes the same function (up to rounding).
inline RotatedModel rotate_model(const Transformer& m, RotationKind kind, bool online_down = true, std::uint64_t seed = 0) {
    if (kind == RotationKind::None) throw Error("rotate: no rotation asked for");
    const ModelConfig& c = m.config();
    const Index d = c.hidden_size;
    RowMatrixF Q = kind == RotationKind::Hadamard ? hadamard_rotation(d, seed) : random_orthogonal(d, seed);
    RotatedModel r{m.with_rotated_residual(Q), std::move(Q), nullptr};
    if (!online_down) return r;
    if (c.moe() || !c.has_mlp) throw Error("rotate: the online rotation before down_proj needs a dense MLP (this " + c.model_type + " model has none)");
    if (c.mlp_sub_norm)
        throw Error("rotate: the online rotation before down_proj would precede this " + c.model_type +
                    " model's norm of the MLP's hidden layer (BitNet's sub-norm), which does not commute with it");
    for (int l = 1; l < c.num_layers; ++l)
        if (c.layer_intermediate(l) != c.layer_intermediate(0))
            throw Error("rotate: the online rotation before down_proj needs one MLP width (layer " + std::to_string(l) + " differs)");
    auto H = std::make_shared<const RowMatrixF>(hadamard_rotation(c.layer_intermediate(0), seed + 1));
    r.model = r.model.with_weights([&](const Transformer::LinearRef& ref, RowMatrixF& w) {
        if (ref.role != "down") return false;
        w = (w * *H).eval();  // h W^T = (h H)(W H)^T
        return true;
    });
    r.down = std::move(H);
    return r;
}

}  // namespace massact::analysis

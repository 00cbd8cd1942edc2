// massact/core/eigen.hpp - Eigen includes with its warnings silenced, and the
// matrix types used throughout massact (row-major, like PyTorch tensors).
#pragma once

#include "massact/core/third_party.hpp"

MASSACT_THIRD_PARTY_BEGIN
#include <Eigen/Core>
MASSACT_THIRD_PARTY_END

#include <cstdint>

namespace massact {

using Index = Eigen::Index;

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatrixF = RowMatrix<float>;
using RowMatrixD = RowMatrix<double>;
using VectorF = Eigen::VectorXf;

/// A row-major view of a raw buffer (rows x cols, unit column stride).
template <typename T>
using RowMap = Eigen::Map<RowMatrix<T>, Eigen::Unaligned>;
template <typename T>
using ConstRowMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned>;

/// A row-major view with a row stride (a head's columns inside [T, H*hd]).
template <typename T>
using StridedRowMap = Eigen::Map<RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using ConstStridedRowMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

}  // namespace massact

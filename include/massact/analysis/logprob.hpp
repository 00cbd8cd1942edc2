// massact/analysis/logprob.hpp - log-probabilities of a logits row, in double precision.
#pragma once

#include "massact/core/eigen.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace massact::analysis {

/// log-sum-exp of a logits row, in double.
inline double logsumexp(const float* logits, Index V) {
    float m = logits[0];
    for (Index j = 1; j < V; ++j) m = std::max(m, logits[j]);
    double s = 0.0;
    for (Index j = 0; j < V; ++j) s += std::exp(static_cast<double>(logits[j]) - m);
    return m + std::log(s);
}

/// log p(target | logits row), computed in double: logit - logsumexp.
inline double log_prob(const float* logits, Index V, std::int64_t target) {
    return static_cast<double>(logits[target]) - logsumexp(logits, V);
}

/// The whole log-softmax of a logits row, in double.
inline void log_softmax(const float* logits, Index V, std::vector<double>& out) {
    const double lse = logsumexp(logits, V);
    out.resize(static_cast<std::size_t>(V));
    for (Index j = 0; j < V; ++j) out[static_cast<std::size_t>(j)] = static_cast<double>(logits[j]) - lse;
}

}  // namespace massact::analysis

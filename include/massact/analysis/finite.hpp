// massact/analysis/finite.hpp - stop at the first NaN or Inf a forward pass produces.
//
// A model with an overflowing weight, a corrupt checkpoint or an intervention gone wrong yields NaN/Inf
// activations that silently turn every statistic into NaN. finite_check_hooks() checks the residual
// stream (hook_embed, every hook_resid_post) and the logits with one vectorised pass each (x * 0 sums to
// 0 only when every x is finite) and throws an Error naming the first site, layer, sequence, position
// and dim.
#pragma once

#include "massact/core/error.hpp"
#include "massact/kernels/simd.hpp"
#include "massact/model/hooks.hpp"

#include <cmath>
#include <string>

namespace massact::analysis {

namespace detail {

inline void require_finite(const Activation& a, const std::string& model) {
    const auto n = static_cast<std::size_t>(a.numel());
    const float probe = simd::reduce_sum(a.data, n, [](auto v) { return v * 0.0f; });
    if (probe == 0.0f) return;  // every value finite
    for (std::size_t i = 0; i < n; ++i) {
        if (std::isfinite(a.data[i])) continue;
        const Index cols = a.shape.back(), T = a.shape.size() > 1 ? a.shape[1] : 1;
        const Index row = static_cast<Index>(i) / cols;
        throw Error("non-finite value (" + std::string(std::isnan(a.data[i]) ? "NaN" : "Inf") + ") at " + a.name +
                    ": sequence " + std::to_string(row / T) + ", position " + std::to_string(row % T) + ", dim " +
                    std::to_string(static_cast<Index>(i) % cols) + " (the first one the forward produced" +
                    (model.empty() ? std::string(")") : " by " + model + ": a corrupt or overflowing checkpoint?)"));
    }
}

}  // namespace detail

/// Hooks that throw at the first non-finite value of the residual stream or the logits; `model` (its path,
/// optional) is named in the message.
inline Hooks finite_check_hooks(const std::string& model = {}) {
    Hooks h;
    const auto check = [model](Activation& a) { detail::require_finite(a, model); };
    for (const char* site : {"hook_embed", "*hook_resid_post"}) h.add(site, check);
    h.add_if_present("logits", check);  // (vision models have none)
    return h;
}

}  // namespace massact::analysis

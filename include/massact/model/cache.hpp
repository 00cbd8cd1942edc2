// massact/model/cache.hpp - run_with_cache: one forward, copies of the hook sites matching globs
// (TransformerLens's run_with_cache).
#pragma once

#include "massact/model/hooks.hpp"
#include "massact/model/transformer.hpp"

#include <map>
#include <string>
#include <vector>

namespace massact {

/// One captured activation: its shape ([N, T, ...] or [N, H, T, T]) and a copy of its data.
struct CachedActivation {
    std::vector<Index> shape;
    std::vector<float> data;
};

/// Captured sites by name, and the order the forward reached them.
struct ActivationCache {
    std::map<std::string, CachedActivation> sites;
    std::vector<std::string> order;
    RowMatrixF logits;  // [N*T, V] (empty when options.logits is false)

    bool has(const std::string& name) const { return sites.count(name) != 0; }
    const CachedActivation& at(const std::string& name) const {
        const auto it = sites.find(name);
        if (it == sites.end()) throw Error("activation cache: no site \"" + name + "\" was captured");
        return it->second;
    }
};

/// Run `model` on `ids` and copy every site matching one of `globs` (each glob must match a site of the
/// model). The copy is taken when the forward reaches the site, before any later hook in `extra` edits it.
namespace detail {
/// Hooks that copy every site matching the globs into `cache` (the first pattern to match wins), plus `extra`.
inline Hooks caching_hooks(ActivationCache& cache, const std::vector<std::string>& globs, const Hooks& extra) {
    if (globs.empty()) throw Error("run_with_cache: no hook pattern given");
    Hooks hooks;
    for (const auto& g : globs)
        hooks.observe(g, [&cache](Activation& a) {
            const std::string name(a.name);
            if (cache.sites.count(name)) return;  // several patterns may match one site
            cache.order.push_back(name);
            cache.sites[name] = {a.shape, std::vector<float>(a.data, a.data + a.numel())};
        });
    hooks.extend(extra);
    return hooks;
}
}  // namespace detail

inline ActivationCache run_with_cache(const Transformer& model, const TokenBatch& ids, const std::vector<std::string>& globs,
                                      const RunOptions& options = {}, const Hooks& extra = {}) {
    ActivationCache cache;
    const Hooks hooks = detail::caching_hooks(cache, globs, extra);
    cache.logits = model.forward(ids, hooks, options);
    return cache;
}

/// The same for a vision model over images; `logits` stays empty (the sites hold the features).
inline ActivationCache run_with_cache(const Transformer& model, const PixelBatch& pixels, const std::vector<std::string>& globs,
                                      const RunOptions& options = {}, const Hooks& extra = {}) {
    ActivationCache cache;
    const Hooks hooks = detail::caching_hooks(cache, globs, extra);
    Workspace w;
    model.run_pixels(pixels, w, hooks, options);
    return cache;
}

}  // namespace massact

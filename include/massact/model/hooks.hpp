// massact/model/hooks.hpp - named hook sites, TransformerLens style.
//
// A hook is a function called with an activation the forward pass just
// computed; it may read it or overwrite it in place (that is how ablation and
// injection work). Sites are named as in TransformerLens:
//   hook_embed, hook_pos_embed, blocks.{l}.hook_resid_pre, blocks.{l}.attn.hook_q, ...,
//   ln_final.hook_normalized, logits; the table of sites per model is model/sites.hpp.
// Hooks are registered by exact name or by a glob ('*' and '?').
// A site without hooks costs one pointer test: no copy, no allocation.
// Memory: attention is streamed in tiles (O(T) per head) unless a hook is set on attn.hook_attn_scores,
// attn.hook_pattern or attn.hook_sink_pattern; then the forward materialises them, N*H*T*K floats per layer
// (K keys: T, or the cached tokens and the new ones). A glob such as "*" includes those sites.
#pragma once

#include "massact/core/eigen.hpp"

#include <algorithm>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace massact {

/// The activation a hook sees: a row-major tensor of `shape` (first dim = batch N) at `data`.
struct Activation {
    std::string name;       // the site, e.g. "blocks.2.hook_resid_post" (a copy: safe to keep)
    int layer = -1;         // block index, -1 outside blocks
    float* data = nullptr;
    std::vector<Index> shape;  // e.g. [N, T, d], [N, T, H, hd], [N, H, T, T]
    const RowMatrix<std::int64_t>* tokens = nullptr;  // the batch's token ids [N, T]

    Index numel() const {
        Index n = 1;
        for (Index s : shape) n *= s;
        return n;
    }
    /// The tensor as a matrix: all leading dims as rows, the last dim as columns.
    RowMap<float> matrix() const {
        const Index cols = shape.empty() ? 1 : shape.back();
        return RowMap<float>(data, cols ? numel() / cols : 0, cols);
    }
    /// Sequence b as a matrix [rows, last dim] (e.g. [T, d] of resid, [H*T, T] of pattern).
    RowMap<float> sequence(Index b) const {
        const Index per = numel() / shape[0];
        const Index cols = shape.back();
        return RowMap<float>(data + b * per, per / cols, cols);
    }
};

using HookFn = std::function<void(Activation&)>;

/// True when `name` matches `pattern` ('*' = any run of characters, '?' = one character).
inline bool glob_match(std::string_view pattern, std::string_view name) {
    std::size_t p = 0, n = 0, star = std::string_view::npos, mark = 0;
    while (n < name.size()) {
        if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
            ++p;
            ++n;
        } else if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            mark = n;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            n = ++mark;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

/// A set of hooks: (pattern, function) pairs, run in registration order.
class Hooks {
public:
    /// A hook on every site matching `pattern`; a pattern that matches no site of the model is an error.
    Hooks& add(std::string pattern, HookFn fn) {
        entries_.push_back({std::move(pattern), std::move(fn), true, false, {}, false});
        return *this;
    }
    /// A hook that only reads the sites matching `pattern` (a cache, a statistic): the forward may skip what an edit
    /// would need (a latent KV cache allows readers of the heads' keys and values, not editors). Required as add().
    Hooks& observe(std::string pattern, HookFn fn) {
        entries_.push_back({std::move(pattern), std::move(fn), true, false, {}, true});
        return *this;
    }
    /// The same for sites that only some models have (e.g. attn.hook_sink_pattern): no error when absent.
    Hooks& add_if_present(std::string pattern, HookFn fn) {
        entries_.push_back({std::move(pattern), std::move(fn), false, false, {}, false});
        return *this;
    }
    /// One hook on each of the named sites (exact names, no globs), as one entry: a hook on every site then
    /// costs a lookup per site, not a match per site and name. A name that is no site of the model is an error.
    Hooks& add_sites(std::vector<std::string> names, HookFn fn, bool reads_only = false) {
        std::sort(names.begin(), names.end());
        names.erase(std::unique(names.begin(), names.end()), names.end());
        entries_.push_back({{}, std::move(fn), true, true, std::move(names), reads_only});
        return *this;
    }
    /// add_sites for a hook that only reads (observe).
    Hooks& observe_sites(std::vector<std::string> names, HookFn fn) { return add_sites(std::move(names), std::move(fn), true); }
    /// The required patterns that match none of `sites`.
    std::vector<std::string> unmatched(const std::vector<std::string>& sites) const {
        std::vector<std::string> out, sorted;  // (the sites sorted once: add_sites names are looked up, not scanned)
        for (const auto& e : entries_) {
            if (!e.required) continue;
            if (e.by_name) {
                if (sorted.empty()) sorted.assign(sites.begin(), sites.end()), std::sort(sorted.begin(), sorted.end());
                for (const auto& n : e.names)
                    if (!std::binary_search(sorted.begin(), sorted.end(), n)) out.push_back(n);
                continue;
            }
            bool any = false;
            for (const auto& s : sites) any = any || glob_match(e.pattern, s);
            if (!any) out.push_back(e.pattern);
        }
        return out;
    }
    bool empty() const { return entries_.empty(); }
    /// Append all hooks of another set (after this set's own).
    Hooks& extend(const Hooks& other) {
        entries_.insert(entries_.end(), other.entries_.begin(), other.entries_.end());
        return *this;
    }
    /// The functions to call at site `name`, in order.
    std::vector<const HookFn*> matching(std::string_view name) const {
        std::vector<const HookFn*> out;
        for (const auto& e : entries_)
            if (matches(e, name)) out.push_back(&e.fn);
        return out;
    }
    /// Whether a hook at site `name` may edit it (added by add, add_if_present or add_sites, not observe).
    bool edits(std::string_view name) const {
        for (const auto& e : entries_)
            if (!e.reads_only && matches(e, name)) return true;
        return false;
    }

private:
    struct Entry {
        std::string pattern;
        HookFn fn;
        bool required = true;
        bool by_name = false;            // add_sites: `names` (sorted), not `pattern`
        std::vector<std::string> names;
        bool reads_only = false;         // observe: the hook does not write the activation
    };
    static bool matches(const Entry& e, std::string_view name) {
        return e.by_name ? std::binary_search(e.names.begin(), e.names.end(), name, std::less<>()) : glob_match(e.pattern, name);
    }
    std::vector<Entry> entries_;
};

}  // namespace massact

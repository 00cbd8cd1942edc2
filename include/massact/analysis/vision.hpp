// massact/analysis/vision.hpp - interventions on a vision transformer's CLS and register tokens, measured
// on its features instead of a perplexity (Sun et al. 2024 Sec. 4.3: "Fix-Reg-Mean" sets the register
// features to their mean values and leaves the model's output unchanged; zeroing them does not).
//
// vision_ablation: a baseline forward over the images, then, for each mode, a forward in which the chosen
// tokens' rows of blocks.l.hook_resid_post (the chosen dims, every chosen layer) are replaced by zero or
// by their mean over the images at that layer (computed from the baseline). Measured per image and averaged:
// the cosine similarity and the norm ratio of the pooled feature (pooler_output) and of the CLS row of
// last_hidden_state against the baseline.
#pragma once

#include "massact/core/error.hpp"
#include "massact/model/transformer.hpp"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace massact::analysis {

struct VisionAblation {
    std::vector<Index> tokens;  // positions in [CLS, registers, patches] (0: CLS, 1..R: registers)
    std::vector<Index> dims;    // empty: every dim
    std::vector<int> layers;    // empty: every layer
    std::string mode = "mean";  // zero | mean
};

struct FeatureChange {
    std::string mode;
    double pooled_cosine = 1, pooled_norm_ratio = 1;  // means over images
    double cls_cosine = 1, cls_norm_ratio = 1;
    double pooled_cosine_min = 1;                     // the worst image
};

namespace detail {

inline double cosine(const float* a, const float* b, Index n, double& norm_ratio) {
    double ab = 0, aa = 0, bb = 0;
    for (Index i = 0; i < n; ++i) {
        ab += double(a[i]) * b[i];
        aa += double(a[i]) * a[i];
        bb += double(b[i]) * b[i];
    }
    norm_ratio = aa > 0 ? std::sqrt(bb / aa) : 0.0;
    return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0.0;
}

}  // namespace detail

/// The tokens of `which` for a vision model: "cls", "registers", "register=K" (0-based), or "patches".
inline std::vector<Index> vision_token_positions(const ModelConfig& c, const std::string& which, Index T) {
    const Index R = c.vision.registers, first = c.vision.first_patch();
    if (which == "cls") {
        if (!c.vision.cls) throw Error("--tokens cls: this " + c.model_type + " model has no CLS token (its sequence is the patches)");
        return {0};
    }
    std::vector<Index> out;
    if (which == "registers") {
        if (R == 0) throw Error("--tokens registers: this " + c.model_type + " model has no register tokens");
        for (Index k = 1; k <= R; ++k) out.push_back(k);
        return out;
    }
    if (which.rfind("register=", 0) == 0) {
        char* end = nullptr;
        const long k = std::strtol(which.c_str() + 9, &end, 10);
        if (*end || which.size() == 9 || k < 0 || k >= R)
            throw Error("--tokens " + which + ": expected register=K with 0 <= K < " + std::to_string(R));
        return {1 + k};
    }
    if (which == "patches") {
        for (Index t = first; t < T; ++t) out.push_back(t);
        return out;
    }
    throw Error("--tokens " + which + ": expected cls, registers, register=K or patches for a vision model");
}

/// Baseline and one row per mode in `modes` (zero, mean) of the ablation `a` (its mode field ignored).
inline std::vector<FeatureChange> vision_ablation(const Transformer& m, const PixelBatch& px, VisionAblation a,
                                                  const std::vector<std::string>& modes) {
    const ModelConfig& c = m.config();
    m.validate(px);
    const Index d = c.hidden_size, N = px.n, T = c.vision.tokens(px.height, px.width);
    if (a.tokens.empty()) throw Error("vision ablation: no tokens chosen");
    for (Index t : a.tokens)
        if (t < 0 || t >= T) throw Error("vision ablation: token " + std::to_string(t) + " outside the " + std::to_string(T) + " tokens");
    if (a.dims.empty())
        for (Index j = 0; j < d; ++j) a.dims.push_back(j);
    for (Index j : a.dims)
        if (j < 0 || j >= d) throw Error("vision ablation: dim " + std::to_string(j) + " outside [0, " + std::to_string(d) + ")");
    if (a.layers.empty())
        for (int l = 0; l < c.num_layers; ++l) a.layers.push_back(l);
    std::vector<char> edited(static_cast<std::size_t>(c.num_layers), 0);
    for (int l : a.layers) {
        if (l < 0 || l >= c.num_layers) throw Error("vision ablation: layer " + std::to_string(l) + " outside [0, " + std::to_string(c.num_layers) + ")");
        edited[static_cast<std::size_t>(l)] = 1;
    }
    // baseline, and the mean over images of every chosen (layer, token) row
    std::vector<std::vector<float>> mean(static_cast<std::size_t>(c.num_layers));
    Hooks collect;
    collect.add("*hook_resid_post", [&](Activation& x) {
        if (!edited[static_cast<std::size_t>(x.layer)]) return;
        auto& mu = mean[static_cast<std::size_t>(x.layer)];
        mu.assign(static_cast<std::size_t>(T * d), 0.0f);
        for (Index b = 0; b < N; ++b)
            for (Index t : a.tokens)
                for (Index j = 0; j < d; ++j) mu[static_cast<std::size_t>(t * d + j)] += x.data[(b * T + t) * d + j] / float(N);
    });
    Workspace w0;
    m.run_pixels(px, w0, collect);
    std::vector<FeatureChange> out;
    out.push_back({"none"});
    for (const std::string& mode : modes) {
        if (mode != "zero" && mode != "mean") throw Error("vision ablation: mode \"" + mode + "\" (expected zero or mean)");
        Hooks edit;
        edit.add("*hook_resid_post", [&](Activation& x) {
            if (!edited[static_cast<std::size_t>(x.layer)]) return;
            const auto& mu = mean[static_cast<std::size_t>(x.layer)];
            for (Index b = 0; b < N; ++b)
                for (Index t : a.tokens)
                    for (Index j : a.dims) x.data[(b * T + t) * d + j] = mode == "zero" ? 0.0f : mu[static_cast<std::size_t>(t * d + j)];
        });
        Workspace w1;
        m.run_pixels(px, w1, edit);
        FeatureChange f;
        f.mode = mode;
        f.pooled_cosine = f.pooled_norm_ratio = f.cls_cosine = f.cls_norm_ratio = 0;
        for (Index b = 0; b < N; ++b) {
            double r = 0;
            const double cp = detail::cosine(w0.pooled.row(b).data(), w1.pooled.row(b).data(), d, r);
            f.pooled_cosine += cp / double(N);
            f.pooled_norm_ratio += r / double(N);
            f.pooled_cosine_min = std::min(f.pooled_cosine_min, cp);
            f.cls_cosine += detail::cosine(w0.hidden.row(b * T).data(), w1.hidden.row(b * T).data(), d, r) / double(N);
            f.cls_norm_ratio += r / double(N);
        }
        if (!m.config().vision.cls) f.cls_cosine = f.cls_norm_ratio = std::numeric_limits<double>::quiet_NaN();  // (no CLS row)
        out.push_back(f);
    }
    return out;
}

}  // namespace massact::analysis

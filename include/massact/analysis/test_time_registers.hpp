// massact/analysis/test_time_registers.hpp - test-time registers (Jiang et al. 2025, "Vision Transformers Don't Need
// Trained Registers") for a vision model trained without register tokens.
//
//   1. high-norm patches: the norm of every patch token's residual stream after each block (blocks.l.hook_resid_post);
//      a patch is an outlier at block l when its norm is at least outlier_ratio times the median patch norm of its
//      image. The detection layer (default) is the first block where the largest patch norm over the median, averaged
//      over the images, reaches outlier_ratio: the outliers appear there, so the neurons that make them sit at or before it;
//   2. register neurons: for every MLP neuron (mlp.hook_post) of the blocks up to the detection layer, its mean
//      activation on the outlier patches minus its mean activation on the other patches, over all images; the top_k
//      by that concentration;
//   3. the test-time register: `registers` extra tokens appended after the patches, zero vectors before the first
//      block (RunOptions::extra_tokens); in each register neuron's block its activation on every extra token is set to
//      its largest activation over the image's own tokens, and its activation on the image's tokens to zero;
//   4. measured: the patch-norm maps at the detection layer and after the last block, before and after, the extra
//      tokens' norm, the outliers left, and the change of the pooled and CLS features (cosine against the original).
#pragma once

#include "massact/analysis/vision.hpp"
#include "massact/core/error.hpp"
#include "massact/model/transformer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace massact::analysis {

struct TestTimeRegisterOptions {
    int layer = -1;              // the detection layer; -1: the first block whose patch-norm ratio reaches outlier_ratio
    double outlier_ratio = 4.0;  // an outlier patch: norm >= this times its image's median patch norm
    Index top_k = 10;            // register neurons moved
    Index registers = 1;         // test-time registers appended
    Index batch = 8;             // images per forward
};

struct RegisterNeuron {
    int layer = 0;
    Index neuron = 0;
    double at_outliers = 0, elsewhere = 0;  // mean activation (mlp.hook_post) on the outlier patches / the other patches
    double concentration() const { return at_outliers - elsewhere; }
};

/// Token norms of one run at one block: per image the patch norms over the patch grid, CLS's and the extra tokens'.
struct TokenNorms {
    int layer = 0;
    Index grid_h = 0, grid_w = 0;
    RowMatrixD patches;        // [N, gh * gw]
    std::vector<double> cls;   // [N]
    std::vector<double> extra; // [N] mean norm of the test-time registers (empty without them)

    double median(Index image) const {
        std::vector<double> v(patches.row(image).data(), patches.row(image).data() + patches.cols());
        std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
        return v[v.size() / 2];
    }
    /// Mean over images of the largest patch norm over the median.
    double max_ratio() const {
        double s = 0;
        for (Index i = 0; i < patches.rows(); ++i) s += patches.row(i).maxCoeff() / std::max(median(i), 1e-30) / double(patches.rows());
        return s;
    }
    /// Patches with norm >= ratio times their image's median, over all images.
    Index outliers(double ratio) const {
        Index n = 0;
        for (Index i = 0; i < patches.rows(); ++i) {
            const double m = median(i);
            for (Index p = 0; p < patches.cols(); ++p) n += patches(i, p) >= ratio * m;
        }
        return n;
    }
    nlohmann::json to_json() const {
        nlohmann::json maps = nlohmann::json::array();
        for (Index i = 0; i < patches.rows(); ++i) {
            nlohmann::json grid = nlohmann::json::array();
            for (Index r = 0; r < grid_h; ++r) grid.push_back(std::vector<double>(patches.row(i).data() + r * grid_w, patches.row(i).data() + (r + 1) * grid_w));
            nlohmann::json m = {{"cls", cls[static_cast<std::size_t>(i)]}, {"patch_median", median(i)}, {"patch_max", patches.row(i).maxCoeff()},
                                {"patches", grid}};
            if (!extra.empty()) m["test_time_registers"] = extra[static_cast<std::size_t>(i)];
            maps.push_back(m);
        }
        return {{"layer", layer}, {"max_over_median", max_ratio()}, {"images", maps}};
    }
};

struct TestTimeRegisters {
    int layer = -1;                       // detection layer (-1: no high-norm patches found)
    double outlier_ratio = 0;
    Index outliers = 0, patches = 0;      // outlier patches at the detection layer, patches in all
    std::vector<RegisterNeuron> ranked;   // the candidates by concentration (at most 4 top_k, at least 20)
    std::vector<RegisterNeuron> neurons;  // the top_k moved
    Index registers = 0;
    TokenNorms before, after;             // at the detection layer
    TokenNorms before_last, after_last;   // after the last block
    Index outliers_after = 0;
    double pooled_cosine = 1, cls_cosine = 1;  // means over images, against the original run
    std::vector<double> max_ratio_per_layer;   // the original's patch-norm ratio per block
    std::string note;

    nlohmann::json to_json() const {
        auto list = [](const std::vector<RegisterNeuron>& v) {
            nlohmann::json a = nlohmann::json::array();
            for (const auto& n : v)
                a.push_back({{"layer", n.layer}, {"neuron", n.neuron}, {"at_outliers", n.at_outliers}, {"elsewhere", n.elsewhere},
                             {"concentration", n.concentration()}});
            return a;
        };
        nlohmann::json j = {{"layer", layer}, {"outlier_ratio", outlier_ratio}, {"outliers", outliers}, {"patches", patches},
                            {"max_over_median_per_layer", max_ratio_per_layer}, {"candidates", list(ranked)},
                            {"register_neurons", list(neurons)}, {"note", note}};
        if (layer < 0) return j;
        j["test_time_registers"] = registers;
        j["outliers_after"] = outliers_after;
        j["pooled_cosine"] = pooled_cosine;
        j["cls_cosine"] = cls_cosine;
        j["before"] = before.to_json();
        j["after"] = after.to_json();
        j["before_last_block"] = before_last.to_json();
        j["after_last_block"] = after_last.to_json();
        return j;
    }
};

/// The intervention of step 3 for images of `image_tokens` tokens followed by `extra` test-time registers: in each
/// neuron's block, its activation on the extra tokens becomes its largest over the image's tokens, and zero there.
inline Hooks test_time_register_hooks(const std::vector<RegisterNeuron>& neurons, Index image_tokens, Index extra) {
    if (extra < 1) throw Error("test-time registers: at least one extra token is needed to move the neurons into");
    std::map<int, std::vector<Index>> by_layer;
    for (const auto& n : neurons) by_layer[n.layer].push_back(n.neuron);
    Hooks h;
    for (const auto& kv : by_layer) {
        h.add("blocks." + std::to_string(kv.first) + ".mlp.hook_post", [units = kv.second, image_tokens, extra](Activation& a) {
            const Index N = a.shape[0], T = a.shape[1], I = a.shape[2];
            if (T != image_tokens + extra)
                throw Error("test-time registers: the forward has " + std::to_string(T) + " tokens, expected " +
                            std::to_string(image_tokens) + " + " + std::to_string(extra) + " (RunOptions::extra_tokens)");
            for (Index b = 0; b < N; ++b)
                for (Index j : units) {
                    if (j < 0 || j >= I) throw Error("test-time registers: neuron " + std::to_string(j) + " outside the MLP's " + std::to_string(I));
                    float* col = a.data + b * T * I + j;
                    float mx = col[0];
                    for (Index t = 0; t < image_tokens; ++t) mx = std::max(mx, col[t * I]);
                    for (Index t = 0; t < image_tokens; ++t) col[t * I] = 0.0f;
                    for (Index t = image_tokens; t < T; ++t) col[t * I] = mx;
                }
        });
    }
    return h;
}

namespace detail {

/// Runs `px` `batch` images at a time with `hooks_for(first image)` and `options`; `done(w, first, count)` after each.
template <typename MakeHooks, typename Done>
void run_image_batches(const Transformer& m, const PixelBatch& px, Index batch, const RunOptions& options, MakeHooks&& hooks_for,
                       Done&& done) {
    Workspace w;
    for (Index b0 = 0; b0 < px.n; b0 += batch) {
        const PixelBatch chunk = px.slice(b0, std::min(batch, px.n - b0));
        const Hooks h = hooks_for(b0);
        m.run_pixels(chunk, w, h, options);
        done(w, b0, chunk.n);
    }
}

/// Hooks filling per-layer token norms (layers[l], sized N x patches) of the images from b0 on.
inline Hooks norm_hooks(std::vector<TokenNorms>& layers, Index b0, Index first_patch, Index patches) {
    Hooks h;
    h.add("*hook_resid_post", [&layers, b0, first_patch, patches](Activation& a) {
        TokenNorms& t = layers[static_cast<std::size_t>(a.layer)];
        const Index N = a.shape[0], T = a.shape[1], d = a.shape[2];
        auto norm = [&](Index b, Index tok) {
            double s = 0;
            for (Index j = 0; j < d; ++j) s += double(a.data[(b * T + tok) * d + j]) * a.data[(b * T + tok) * d + j];
            return std::sqrt(s);
        };
        for (Index b = 0; b < N; ++b) {
            for (Index p = 0; p < patches; ++p) t.patches(b0 + b, p) = norm(b, first_patch + p);
            t.cls[static_cast<std::size_t>(b0 + b)] = norm(b, 0);
            if (!t.extra.empty()) {
                double e = 0;
                for (Index tok = first_patch + patches; tok < T; ++tok) e += norm(b, tok) / double(T - first_patch - patches);
                t.extra[static_cast<std::size_t>(b0 + b)] = e;
            }
        }
    });
    return h;
}

inline std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
}

/// The options' and the model's refusals.
inline void check_register_study(const ModelConfig& c, const TestTimeRegisterOptions& opt) {
    if (!c.is_vision()) throw Error("test-time registers: " + c.model_type + " is not a vision model");
    require_at_least(opt.batch, 1, "test-time registers: batch");
    require_at_least(opt.top_k, 1, "test-time registers: top_k");
    require_at_least(opt.registers, 1, "test-time registers: registers");
    if (opt.registers > kMaxExtraTokens)
        throw Error("test-time registers: " + std::to_string(opt.registers) + " registers (at most " + std::to_string(kMaxExtraTokens) + ")");
    if (!(opt.outlier_ratio > 1.0) || !std::isfinite(opt.outlier_ratio))
        throw Error("test-time registers: outlier ratio " + num(opt.outlier_ratio) + " (expected a number > 1)");
    if (opt.layer < -1 || opt.layer >= c.num_layers)
        throw Error("test-time registers: layer " + std::to_string(opt.layer) + " outside [0, " + std::to_string(c.num_layers) + ")");
    if (c.moe()) throw Error("test-time registers: " + c.model_type + " has experts, not one MLP whose neurons could be moved");
    if (!c.vision.cls)
        throw Error("test-time registers: this " + c.model_type + " model has no CLS token, whose norm and feature the study reports");
}

/// The images' layout: N images of a grid of gh x gw patches after `first` tokens (CLS, registers), T0 tokens each.
struct RegisterStudy {
    const Transformer& m;
    const PixelBatch& px;
    const TestTimeRegisterOptions& opt;
    Index N, gh, gw, np, first, T0, d, I;

    RegisterStudy(const Transformer& model, const PixelBatch& pixels, const TestTimeRegisterOptions& o) : m(model), px(pixels), opt(o) {
        const ModelConfig& c = m.config();
        const Index P = c.vision.patch_size;
        N = px.n, gh = px.height / P, gw = px.width / P, np = gh * gw, first = 1 + c.vision.registers;
        T0 = c.vision.tokens(px.height, px.width), d = c.hidden_size, I = c.intermediate_size;
    }

    /// Empty per-layer norms (with the extra tokens' mean when `extra`).
    std::vector<TokenNorms> fresh(bool extra) const {
        std::vector<TokenNorms> out;
        for (int l = 0; l < m.config().num_layers; ++l) {
            TokenNorms t;
            t.layer = l;
            t.grid_h = gh;
            t.grid_w = gw;
            t.patches = RowMatrixD::Zero(N, np);
            t.cls.assign(static_cast<std::size_t>(N), 0.0);
            if (extra) t.extra.assign(static_cast<std::size_t>(N), 0.0);
            out.push_back(std::move(t));
        }
        return out;
    }

    /// Step 1: token norms after every block, the pooled and CLS features of the unmodified run.
    std::vector<TokenNorms> original(RowMatrixF& pooled, RowMatrixF& cls) const {
        std::vector<TokenNorms> norms = fresh(false);
        pooled.resize(N, d), cls.resize(N, d);
        run_image_batches(
            m, px, opt.batch, {}, [&](Index b0) { return norm_hooks(norms, b0, first, np); },
            [&](const Workspace& w, Index b0, Index n) {
                for (Index b = 0; b < n; ++b) {
                    pooled.row(b0 + b) = w.pooled.row(b);
                    cls.row(b0 + b) = w.hidden.row(b * T0);
                }
            });
        return norms;
    }

    /// Step 2: every neuron of blocks 0..layer ranked by its mean activation on the outlier patches against the others.
    std::vector<RegisterNeuron> rank_neurons(int layer, const std::vector<char>& outlier, Index outliers) const {
        const std::size_t cells = static_cast<std::size_t>((layer + 1) * I);
        std::vector<double> on(cells, 0.0), off(cells, 0.0);
        RunOptions upto;  // (the blocks after the detection layer cannot make its outliers: not run)
        upto.last_layer = layer;
        upto.logits = false;
        run_image_batches(
            m, px, opt.batch, upto,
            [&](Index b0) {
                Hooks h;
                h.add("*mlp.hook_post", [&, b0](Activation& a) {
                    const Index n = a.shape[0], T = a.shape[1];
                    for (Index b = 0; b < n; ++b)
                        for (Index p = 0; p < np; ++p) {
                            auto& acc = outlier[static_cast<std::size_t>((b0 + b) * np + p)] ? on : off;
                            const float* row = a.data + (b * T + first + p) * I;
                            double* dst = acc.data() + static_cast<std::size_t>(a.layer) * static_cast<std::size_t>(I);
                            for (Index j = 0; j < I; ++j) dst[j] += row[j];
                        }
                });
                return h;
            },
            [](const Workspace&, Index, Index) {});
        const double n_on = double(outliers), n_off = double(N * np - outliers);
        std::vector<RegisterNeuron> all;
        for (int l = 0; l <= layer; ++l)
            for (Index j = 0; j < I; ++j) {
                const std::size_t k = static_cast<std::size_t>(l) * static_cast<std::size_t>(I) + static_cast<std::size_t>(j);
                all.push_back({l, j, on[k] / n_on, off[k] / n_off});
            }
        std::stable_sort(all.begin(), all.end(),
                         [](const RegisterNeuron& a, const RegisterNeuron& b) { return a.concentration() > b.concentration(); });
        return all;
    }

    /// Steps 3-4: the run with the chosen neurons moved into test-time registers; its norms, and r's cosines to the original.
    std::vector<TokenNorms> with_registers(TestTimeRegisters& r, const RowMatrixF& pooled0, const RowMatrixF& cls0) const {
        RunOptions with;
        with.extra_tokens = opt.registers;
        std::vector<TokenNorms> moved = fresh(true);
        const Hooks shift = test_time_register_hooks(r.neurons, T0, opt.registers);
        r.pooled_cosine = r.cls_cosine = 0;
        run_image_batches(
            m, px, opt.batch, with,
            [&](Index b0) {
                Hooks h = shift;
                h.extend(norm_hooks(moved, b0, first, np));
                return h;
            },
            [&](const Workspace& w, Index b0, Index n) {
                const Index T = T0 + opt.registers;
                double ratio = 0;
                for (Index b = 0; b < n; ++b) {
                    r.pooled_cosine += cosine(pooled0.row(b0 + b).data(), w.pooled.row(b).data(), d, ratio) / double(N);
                    r.cls_cosine += cosine(cls0.row(b0 + b).data(), w.hidden.row(b * T).data(), d, ratio) / double(N);
                }
            });
        return moved;
    }
};

}  // namespace detail

/// Steps 1-4 over the images `px` (at least one).
inline TestTimeRegisters test_time_registers(const Transformer& m, const PixelBatch& px, const TestTimeRegisterOptions& opt = {}) {
    detail::check_register_study(m.config(), opt);
    m.validate(px);
    const detail::RegisterStudy study(m, px, opt);
    const Index N = study.N, np = study.np;
    TestTimeRegisters r;
    r.outlier_ratio = opt.outlier_ratio;
    r.registers = opt.registers;
    r.patches = N * np;
    RowMatrixF pooled0, cls0;
    const std::vector<TokenNorms> orig = study.original(pooled0, cls0);
    for (const auto& t : orig) r.max_ratio_per_layer.push_back(t.max_ratio());
    r.layer = opt.layer;
    for (int l = 0; l < m.config().num_layers && r.layer < 0; ++l)
        if (r.max_ratio_per_layer[static_cast<std::size_t>(l)] >= opt.outlier_ratio) r.layer = l;
    if (r.layer < 0) {
        r.note = "no high-norm patches: no block's largest patch norm reaches " + detail::num(opt.outlier_ratio) +
                 "x its image's median (the largest ratio is " +
                 detail::num(*std::max_element(r.max_ratio_per_layer.begin(), r.max_ratio_per_layer.end())) + "); nothing to move";
        return r;
    }
    const TokenNorms& at = orig[static_cast<std::size_t>(r.layer)];
    std::vector<char> outlier(static_cast<std::size_t>(N * np), 0);
    for (Index i = 0; i < N; ++i) {
        const double med = at.median(i);
        for (Index p = 0; p < np; ++p) outlier[static_cast<std::size_t>(i * np + p)] = at.patches(i, p) >= opt.outlier_ratio * med;
    }
    r.outliers = static_cast<Index>(std::count(outlier.begin(), outlier.end(), char(1)));
    r.before = at;
    r.before_last = orig.back();
    if (r.outliers == 0 || r.outliers == N * np) {
        r.note = "layer " + std::to_string(r.layer) + ": " + (r.outliers ? "every patch" : "no patch") + " passes " +
                 detail::num(opt.outlier_ratio) + "x the median norm; nothing to contrast";
        r.layer = -1;
        return r;
    }
    const std::vector<RegisterNeuron> all = study.rank_neurons(r.layer, outlier, r.outliers);
    const Index total = static_cast<Index>(all.size()), k = std::min(opt.top_k, total);
    r.ranked.assign(all.begin(), all.begin() + std::min(total, std::max<Index>(20, 4 * k)));
    r.neurons.assign(all.begin(), all.begin() + k);
    const std::vector<TokenNorms> moved = study.with_registers(r, pooled0, cls0);
    r.after = moved[static_cast<std::size_t>(r.layer)];
    r.after_last = moved.back();
    r.outliers_after = r.after.outliers(opt.outlier_ratio);
    r.note = std::to_string(r.outliers) + " of " + std::to_string(r.patches) + " patches are high-norm at block " + std::to_string(r.layer) +
             " (>= " + detail::num(opt.outlier_ratio) + "x the median); " + std::to_string(r.neurons.size()) +
             " register neurons moved into " + std::to_string(opt.registers) + " test-time register(s): " + std::to_string(r.outliers_after) +
             " high-norm patches left";
    return r;
}

}  // namespace massact::analysis

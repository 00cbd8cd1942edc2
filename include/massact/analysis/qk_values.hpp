// massact/analysis/qk_values.hpp - massive values in Q and K (Jin et al., ICML 2025): per layer and head, the mean |q|
// and |k| of every dimension of a head, before and after RoPE, beside the dimension's rotary frequency; how much of it
// sits in the low-frequency dims; and what replacing the largest dims by their mean (or zero) does, against the same
// for as many random dims.
//
//   profile: for each site (attn.hook_q, hook_k, hook_rot_q, hook_rot_k) and layer, [heads, head_dim] sums of |x| and x
//     over every token of the data, divided by the token count;
//   frequency of dim d (RoPE pairs (j, j + r/2), or (2j, 2j + 1) when interleaved): inv_freq[j] of the layer's RoPE;
//     dims past the rotary width, and NoPE layers, have none (they take no part in the share below);
//   low-frequency share of a layer: sum over heads of the mean |x| of the rotary dims whose frequency is in the lower half
//     (the half that rotates slowest), over the same sum for every rotary dim: 0.5 when |x| is spread evenly, towards 1
//     when the large values sit where RoPE rotates slowly (Jin et al.'s observation);
//   intervention: in every layer and head, the top-m dims of the head's mean |q| (and, separately, |k|) before RoPE are
//     set to their mean over the data (or 0), against m dims drawn at random per head (seeded, several draws).
#pragma once

#include "massact/analysis/intervention.hpp"
#include "massact/core/error.hpp"
#include "massact/model/transformer.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace massact::analysis {

/// Per-dimension means of one site of one layer: [heads, head_dim] row-major.
struct QKSiteProfile {
    Index heads = 0, head_dim = 0;
    std::vector<double> mean_abs, mean;

    double abs_at(Index h, Index d) const { return mean_abs[static_cast<std::size_t>(h * head_dim + d)]; }
    /// The m dims of head h with the largest mean |x|, largest first.
    std::vector<Index> top_dims(Index h, Index m) const {
        std::vector<Index> d(static_cast<std::size_t>(head_dim));
        std::iota(d.begin(), d.end(), Index(0));
        m = std::min(m, head_dim);
        std::partial_sort(d.begin(), d.begin() + m, d.end(), [&](Index a, Index b) { return abs_at(h, a) > abs_at(h, b); });
        d.resize(static_cast<std::size_t>(m));
        return d;
    }
};

struct QKLayerProfile {
    QKSiteProfile q, k, rot_q, rot_k;  // rot_*: after RoPE (empty without RoPE)
    std::vector<double> frequency;     // [head_dim] inverse frequency of each dim; 0 where the dim does not rotate
    double low_share_q = 0, low_share_k = 0;  // of the mean |x| before RoPE, in the lower half of the frequencies
};

struct QKProfile {
    std::vector<QKLayerProfile> layers;
    Index tokens = 0;
};

namespace detail {

/// Inverse frequency of each dim of a head in layer l (0: not rotated).
inline std::vector<double> dim_frequencies(const ModelConfig& c, int l, Index T) {
    std::vector<double> f(static_cast<std::size_t>(c.head_dim), 0.0);
    if (!c.has_rope() || c.layers[static_cast<std::size_t>(l)].nope) return f;
    const RopeSpec& r = c.layer_rope(l);
    const auto inv = r.inv_freq(static_cast<double>(T));
    const Index half = r.rotary_dim / 2;
    for (Index d = 0; d < std::min<Index>(r.rotary_dim, c.head_dim); ++d) {
        const Index j = c.rope_pairs == RopePairs::Half ? d % half : d / 2;
        f[static_cast<std::size_t>(d)] = inv[static_cast<std::size_t>(j)];
    }
    return f;
}

/// Share of sum_h mean|x| over the rotary dims that falls in the dims of the lower half of frequencies.
inline double low_frequency_share(const QKSiteProfile& s, const std::vector<double>& freq) {
    std::vector<double> rotary;
    for (double f : freq)
        if (f > 0) rotary.push_back(f);
    if (rotary.empty() || s.mean_abs.empty()) return 0.0;
    std::sort(rotary.begin(), rotary.end());
    const double cut = rotary[(rotary.size() - 1) / 2];  // the half of the rotary dims that rotate slowest (pairs tie)
    double low = 0, all = 0;
    for (Index h = 0; h < s.heads; ++h)
        for (Index d = 0; d < s.head_dim; ++d) {
            const double f = freq[static_cast<std::size_t>(d)];
            if (f <= 0) continue;
            all += s.abs_at(h, d);
            if (f <= cut) low += s.abs_at(h, d);
        }
    return all > 0 ? low / all : 0.0;
}

}  // namespace detail

/// The profile of q and k (before and after RoPE) of every layer over `ids`.
inline QKProfile qk_profile(const Transformer& model, const TokenBatch& ids, Index batch = 8, const RunOptions& run = {}) {
    const ModelConfig& c = model.config();
    require_at_least(batch, 1, "qk_profile: batch");
    if (c.is_vision()) throw Error("qk_profile: " + c.model_type + " is a vision model; the Q/K profile reads token sequences");
    QKProfile p;
    p.layers.resize(static_cast<std::size_t>(c.num_layers));
    const bool rope = c.has_rope();
    auto site_of = [&](QKLayerProfile& L, const std::string& name) -> QKSiteProfile& {
        if (name.find("hook_rot_q") != std::string::npos) return L.rot_q;
        if (name.find("hook_rot_k") != std::string::npos) return L.rot_k;
        return name.find("hook_q") != std::string::npos ? L.q : L.k;
    };
    Hooks h;
    auto add = [&](Activation& a) {
        QKSiteProfile& s = site_of(p.layers[static_cast<std::size_t>(a.layer)], a.name);
        const Index heads = a.shape[2], hd = a.shape[3], rows = a.shape[0] * a.shape[1];
        if (s.mean_abs.empty()) {
            s.heads = heads;
            s.head_dim = hd;
            s.mean_abs.assign(static_cast<std::size_t>(heads * hd), 0.0);
            s.mean.assign(s.mean_abs.size(), 0.0);
        }
        for (Index r = 0; r < rows; ++r)
            for (Index i = 0; i < heads * hd; ++i) {
                const double x = a.data[r * heads * hd + i];
                s.mean_abs[static_cast<std::size_t>(i)] += std::abs(x);
                s.mean[static_cast<std::size_t>(i)] += x;
            }
    };
    for (const char* site : {"blocks.*.attn.hook_q", "blocks.*.attn.hook_k"}) h.add(site, add);
    if (rope)
        for (const char* site : {"blocks.*.attn.hook_rot_q", "blocks.*.attn.hook_rot_k"}) h.add(site, add);
    RunOptions o = run;
    o.logits = false;
    run_batches(model, ids, batch, h, o);
    p.tokens = ids.rows() * ids.cols();
    for (int l = 0; l < c.num_layers; ++l) {
        QKLayerProfile& L = p.layers[static_cast<std::size_t>(l)];
        for (QKSiteProfile* s : {&L.q, &L.k, &L.rot_q, &L.rot_k})
            for (std::size_t i = 0; i < s->mean_abs.size(); ++i) {
                s->mean_abs[i] /= double(p.tokens);
                s->mean[i] /= double(p.tokens);
            }
        L.frequency = detail::dim_frequencies(c, l, ids.cols());
        L.low_share_q = detail::low_frequency_share(L.q, L.frequency);
        L.low_share_k = detail::low_frequency_share(L.k, L.frequency);
    }
    return p;
}

/// Which dims of q and k an intervention replaces, and with what.
struct QKIntervention {
    enum class Pick { Top, Random };
    Pick pick = Pick::Top;
    Index m = 2;                      // dims per head
    bool zero = false;                // false: each dim's mean over the data; true: 0
    bool on_q = true, on_k = true;
    std::uint64_t seed = 0;           // Random: the draw
};

/// The interventions (one per layer and site, at hook_q / hook_k: before RoPE) that `spec` describes for `profile`.
inline std::vector<Intervention> qk_interventions(const ModelConfig& c, const QKProfile& profile, const QKIntervention& spec) {
    if (spec.m < 1 || spec.m > c.head_dim)
        throw Error("qk: m " + std::to_string(spec.m) + " dims per head (expected 1.." + std::to_string(c.head_dim) + ")");
    std::mt19937_64 rng(spec.seed);
    std::vector<Intervention> out;
    for (int l = 0; l < c.num_layers; ++l) {
        const QKLayerProfile& L = profile.layers[static_cast<std::size_t>(l)];
        for (bool q : {true, false}) {
            if ((q && !spec.on_q) || (!q && !spec.on_k)) continue;
            const QKSiteProfile& s = q ? L.q : L.k;
            Intervention iv;
            iv.site = "blocks." + std::to_string(l) + (q ? ".attn.hook_q" : ".attn.hook_k");
            iv.tokens.kind = TokenSelection::Kind::All;
            iv.mode = spec.zero ? Intervention::Mode::Zero : Intervention::Mode::Mean;
            for (Index h = 0; h < s.heads; ++h) {
                std::vector<Index> dims;
                if (spec.pick == QKIntervention::Pick::Top) {
                    dims = s.top_dims(h, spec.m);
                } else {
                    std::vector<Index> all(static_cast<std::size_t>(s.head_dim));
                    std::iota(all.begin(), all.end(), Index(0));
                    for (Index i = 0; i < spec.m; ++i) {  // a partial Fisher-Yates shuffle: m distinct dims
                        const auto j = static_cast<std::size_t>(i) + static_cast<std::size_t>(rng() % static_cast<std::uint64_t>(s.head_dim - i));
                        std::swap(all[static_cast<std::size_t>(i)], all[j]);
                    }
                    dims.assign(all.begin(), all.begin() + spec.m);
                }
                std::sort(dims.begin(), dims.end());
                for (Index d : dims) {
                    iv.dims.push_back(h * s.head_dim + d);
                    if (!spec.zero) iv.values.push_back(static_cast<float>(s.mean[static_cast<std::size_t>(h * s.head_dim + d)]));
                }
            }
            out.push_back(std::move(iv));
        }
    }
    return out;
}

/// The measured effect of one choice of dims: perplexity and mean next-token KL against the unchanged model.
struct QKTrial {
    std::string pick;  // "top" or "random"
    std::uint64_t seed = 0;
    double ppl = 0, kl = 0;
};

struct QKResult {
    QKProfile profile;
    QKIntervention spec;
    double ppl_original = 0;
    QKTrial top;
    std::vector<QKTrial> random;  // one per draw
    double random_ppl_mean() const {
        double s = 0;
        for (const auto& t : random) s += t.ppl / double(random.size());
        return s;
    }
    double random_kl_mean() const {
        double s = 0;
        for (const auto& t : random) s += t.kl / double(random.size());
        return s;
    }
};

/// Profile q and k over `ids`, then replace the top-m dims of every head (before RoPE) by their mean or 0, and the same
/// for `draws` random choices of m dims; each run against the unchanged model.
inline QKResult qk_massive_values(const Transformer& model, const TokenBatch& ids, const QKIntervention& spec, Index draws = 3,
                                  Index batch = 8, const RunOptions& run = {}) {
    require_at_least(draws, 0, "qk: random draws");
    QKResult r;
    r.spec = spec;
    r.profile = qk_profile(model, ids, batch, run);
    CompareOptions opt;
    opt.batch = batch;
    opt.decomposition = false;
    opt.tokens.clear();
    opt.run = run;
    auto trial = [&](QKIntervention s, const char* pick) {
        const Comparison cmp = compare(model, ids, make_hooks(model, qk_interventions(model.config(), r.profile, s)), opt);
        r.ppl_original = cmp.ppl_original;
        return QKTrial{pick, s.seed, cmp.ppl_intervened, cmp.kl_mean};
    };
    QKIntervention top = spec;
    top.pick = QKIntervention::Pick::Top;
    r.top = trial(top, "top");
    for (Index i = 0; i < draws; ++i) {
        QKIntervention rnd = spec;
        rnd.pick = QKIntervention::Pick::Random;
        rnd.seed = spec.seed + static_cast<std::uint64_t>(i);
        r.random.push_back(trial(rnd, "random"));
    }
    return r;
}

}  // namespace massact::analysis

// massact/analysis/intervention.hpp - ablate, set to the dataset mean, scale, add or inject
// activations at a hook site, and measure what changes: perplexity, next-token KL, attention mass
// on sink tokens, and Sun et al.'s decomposition of attention outputs into a sink part and the rest.
//
// An Intervention is an ordinary hook (it edits the activation in place), so it composes with every
// forward: perplexity, scan, run. It applies to sites shaped [N, T, ...] (residual stream, q/k/v, z,
// MLP activations), on the selected positions of each sequence and the selected features of the
// last axes flattened (for the residual stream: hidden dims).
#pragma once

#include "massact/analysis/perplexity.hpp"
#include "massact/core/error.hpp"
#include "massact/model/transformer.hpp"
#include "massact/text/tokenizer.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <map>
#include <thread>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace massact::analysis {

/// Which positions of each sequence an intervention touches.
struct TokenSelection {
    enum class Kind { Indices, First, FirstDelimiter, All, Above };
    Kind kind = Kind::First;
    std::vector<Index> indices;           // Indices
    float threshold = 0.0f;               // Above: every element with |x| > threshold (in the selected dims)
    std::set<text::TokenId> delimiters;   // FirstDelimiter: token ids counted as delimiters

    static TokenSelection first() { return {}; }
    static TokenSelection at(std::vector<Index> idx) { return {Kind::Indices, std::move(idx), 0.0f, {}}; }

    /// Positions of sequence `b` (for Above: all positions; the threshold is applied per element).
    std::vector<Index> positions(const TokenBatch& ids, Index b) const {
        const Index T = ids.cols();
        std::vector<Index> out;
        switch (kind) {
            case Kind::First: out.push_back(0); break;
            case Kind::Indices:
                for (Index i : indices)
                    if (i >= 0 && i < T) out.push_back(i);
                break;
            case Kind::FirstDelimiter:
                for (Index t = 1; t < T; ++t)
                    if (delimiters.count(ids(b, t))) {
                        out.push_back(t);
                        break;
                    }
                break;
            case Kind::All:
            case Kind::Above:
                for (Index t = 0; t < T; ++t) out.push_back(t);
                break;
        }
        return out;
    }
    std::string describe() const {
        switch (kind) {
            case Kind::First: return "first token";
            case Kind::FirstDelimiter: return "first delimiter";
            case Kind::All: return "all tokens";
            case Kind::Above: return "|x| > " + std::to_string(threshold);
            case Kind::Indices: {
                std::string s = "positions";
                for (Index i : indices) s += " " + std::to_string(i);
                return s;
            }
        }
        return "?";
    }
};

struct Intervention {
    enum class Mode { Zero, Set, Mean, Scale, Add, Copy };
    std::string site;            // e.g. "blocks.2.hook_resid_post"
    TokenSelection tokens;
    std::vector<Index> dims;     // features of the last axes; empty = all
    Mode mode = Mode::Zero;
    float value = 0.0f;          // Set, Scale, Add
    std::vector<float> values;   // Mean (and Set, if given): one value per entry of dims
    Index source = 0;            // Copy: take the values of this position of the same sequence

    static std::string resid_post(int layer) { return "blocks." + std::to_string(layer) + ".hook_resid_post"; }

    /// Refuse what cannot apply to `model` (site, dims, values); messages name the field.
    void validate(const Transformer& model) const {
        const auto sites = model.hook_sites();
        if (std::find(sites.begin(), sites.end(), site) == sites.end())
            throw Error("intervention: unknown hook site \"" + site + "\"");
        if (site.find("pattern") != std::string::npos || site.find("attn_scores") != std::string::npos || site == "logits")
            throw Error("intervention: site \"" + site + "\" is not shaped [N, T, ...]; use it through a hook");
        if (site.find("hook_expert_out") != std::string::npos)
            throw Error("intervention: site \"" + site + "\" is read-only (edit mlp.hook_expert_weights or mlp.hook_router to reroute)");
        const auto shape = model.hook_shape(site, 1, 1);
        Index width = 1;  // features per token: every axis after [N, T]
        for (std::size_t i = 2; i < shape.size(); ++i) width *= shape[i];
        check_width(width);
        if (tokens.kind == TokenSelection::Kind::Indices && tokens.indices.empty())
            throw Error("intervention: empty token selection");
        for (Index i : tokens.indices)
            if (i < 0) throw Error("intervention: negative token position " + std::to_string(i));
        if (tokens.kind == TokenSelection::Kind::FirstDelimiter && tokens.delimiters.empty())
            throw Error("intervention: first-delimiter selection needs the tokenizer's delimiter ids");
    }

    /// The checks that need only the width W of a token's features: dims in [0, W), one value per dim
    /// for Mean (and Set when values are given), a non-negative source position.
    void check_width(Index W) const {
        for (Index d : dims)
            if (d < 0 || d >= W)
                throw Error("intervention: dim " + std::to_string(d) + " out of range [0, " + std::to_string(W) + ") at " + site);
        const std::size_t n = dims.empty() ? static_cast<std::size_t>(W) : dims.size();
        if (mode == Mode::Mean && values.size() != n)
            throw Error("intervention: mode mean needs one mean value per dim (compute them with dataset_mean)");
        if (mode == Mode::Set && !values.empty() && values.size() != n)
            throw Error("intervention: mode set has " + std::to_string(values.size()) + " values for " + std::to_string(n) +
                        " dims (give one per dim, or a single value)");
        if (mode == Mode::Copy && source < 0) throw Error("intervention: negative source position " + std::to_string(source));
    }

    /// Edit the activation in place (called as a hook). Checks dims and values against the site's width
    /// first, so hooks made without validate() cannot write out of bounds.
    void apply(Activation& a) const {
        if (!a.tokens || a.shape.size() < 2) return;
        const Index N = a.shape[0], T = a.shape[1], W = a.numel() / (N * T);
        check_width(W);
        for (Index b = 0; b < N; ++b) {
            float* seq = a.data + b * T * W;
            for (Index t : tokens.positions(*a.tokens, b)) {
                if (t >= T) continue;
                float* x = seq + t * W;
                const float* src = seq + std::min(source, T - 1) * W;
                const Index n = dims.empty() ? W : static_cast<Index>(dims.size());
                for (Index k = 0; k < n; ++k) {
                    const Index j = dims.empty() ? k : dims[static_cast<std::size_t>(k)];
                    if (tokens.kind == TokenSelection::Kind::Above && std::fabs(x[j]) <= tokens.threshold) continue;
                    switch (mode) {
                        case Mode::Zero: x[j] = 0.0f; break;
                        case Mode::Set: x[j] = values.empty() ? value : values[static_cast<std::size_t>(k)]; break;
                        case Mode::Mean: x[j] = values[static_cast<std::size_t>(k)]; break;
                        case Mode::Scale: x[j] *= value; break;
                        case Mode::Add: x[j] += value; break;
                        case Mode::Copy: x[j] = src[j]; break;
                    }
                }
            }
        }
    }
};

/// Hooks applying the interventions in order (each at its own site). Each intervention checks its dims
/// and values when it first runs; make_hooks(model, list) also validates the sites up front.
inline Hooks make_hooks(const std::vector<Intervention>& list) {
    Hooks h;
    for (const auto& iv : list) {
        auto p = std::make_shared<Intervention>(iv);
        h.add(iv.site, [p](Activation& a) { p->apply(a); });
    }
    return h;
}

inline Hooks make_hooks(const Transformer& model, const std::vector<Intervention>& list) {
    for (const auto& iv : list) iv.validate(model);
    return make_hooks(list);
}

/// Mean over sequences (and selected positions) of the selected dims at the intervention's site:
/// the values for Mode::Mean (Sun et al.'s "set to mean").
inline std::vector<float> dataset_mean(const Transformer& model, const TokenBatch& ids, const Intervention& iv,
                                       Index batch = 8) {
    require_at_least(batch, 1, "dataset_mean: batch");
    std::vector<double> sum;
    double count = 0;
    Hooks h;
    h.add(iv.site, [&](Activation& a) {
        const Index N = a.shape[0], T = a.shape[1], W = a.numel() / (N * T);
        const Index n = iv.dims.empty() ? W : static_cast<Index>(iv.dims.size());
        if (sum.empty()) sum.assign(static_cast<std::size_t>(n), 0.0);
        for (const Index j : iv.dims)
            if (j < 0 || j >= W)
                throw Error("dataset_mean: dim " + std::to_string(j) + " out of range [0, " + std::to_string(W) + ") at " + iv.site);
        for (Index b = 0; b < N; ++b)
            for (Index t : iv.tokens.positions(*a.tokens, b)) {
                const float* x = a.data + (b * T + t) * W;
                for (Index k = 0; k < n; ++k) sum[static_cast<std::size_t>(k)] += x[iv.dims.empty() ? k : iv.dims[static_cast<std::size_t>(k)]];
                count += 1;
            }
    });
    RunOptions opt;
    opt.logits = false;
    const auto dot = iv.site.find('.', 7);
    if (iv.site.rfind("blocks.", 0) == 0 && dot != std::string::npos) opt.last_layer = std::stoi(iv.site.substr(7, dot - 7));
    run_batches(model, ids, batch, h, opt);
    if (count == 0) throw Error("dataset_mean: the token selection (" + iv.tokens.describe() + ") matched no position");
    std::vector<float> out(sum.size());
    for (std::size_t k = 0; k < sum.size(); ++k) out[k] = static_cast<float>(sum[k] / count);
    return out;
}

// ---- measurements ----------------------------------------------------------------------

struct DecompositionStats {
    double sink_norm = 0;    // mean |sum over sink tokens of p v| per query
    double rest_norm = 0;    // mean |sum over the other tokens of p v|
    double sink_constancy = 0;  // |mean of the unit sink-part vectors|: 1 when the sink part always points the
                                // same way (a constant bias scaled by the attention it gets), ~0 when random
};

struct Comparison {
    double ppl_original = 0, ppl_intervened = 0, kl_mean = 0;
    std::vector<double> kl_per_position;  // [T-1], mean over sequences of KL(original || intervened)
    std::vector<Index> tokens;            // tracked sink positions
    // [token][layer][head]: mean over sequences and queries after the token of the attention on it ([] for a layer without
    // attention, or where no query follows the token)
    std::vector<std::vector<std::vector<double>>> attn_original, attn_intervened;
    // [layer]: decomposition of attention outputs (sink = tokens[0]), averaged over heads
    std::vector<DecompositionStats> decomp_original, decomp_intervened;

    /// Mean over heads: [token][layer].
    static std::vector<std::vector<double>> head_mean(const std::vector<std::vector<std::vector<double>>>& a) {
        std::vector<std::vector<double>> out;
        for (const auto& tok : a) {
            std::vector<double> row;
            for (const auto& layer : tok) {
                double s = 0;
                for (double v : layer) s += v;
                row.push_back(layer.empty() ? 0.0 : s / double(layer.size()));
            }
            out.push_back(row);
        }
        return out;
    }
};

namespace detail {

/// The attention that queries after token k pay to it in one head's [T, T] pattern P (their sum).
inline double attention_from_later(const float* P, Index T, Index k) {
    double s = 0;
    for (Index q = k + 1; q < T; ++q) s += P[q * T + k];
    return s;
}

/// Attention-on-token and decomposition accumulators for one run of a batch.
struct AttentionProbe {
    std::vector<Index> tokens;
    bool decompose = true;  // also the decomposition of attention outputs (reads every layer's hook_v)
    Index L = 0, H = 0, KV = 0, hd = 0;
    std::vector<std::vector<std::vector<double>>> attn;  // [token][layer][head] sums over sequences
    std::vector<std::vector<double>> seqs;  // [token][layer]: sequences whose pattern was added (0: the layer has no attention)
    // decomposition sums per (layer, head)
    std::vector<std::vector<double>> sink_sum_vec;       // [l*H+h][hd]
    std::vector<double> sink_norm, rest_norm, count;
    std::vector<float> v;                                 // current layer's v [N, T, KV, hd]

    void init(const ModelConfig& c, std::vector<Index> toks, bool with_decomposition) {
        tokens = std::move(toks);
        decompose = with_decomposition;
        L = c.num_layers;
        H = c.num_heads;
        KV = c.num_kv_heads;
        hd = c.head_dim;
        attn.assign(tokens.size(), std::vector<std::vector<double>>(static_cast<std::size_t>(L), std::vector<double>(static_cast<std::size_t>(H), 0.0)));
        seqs.assign(tokens.size(), std::vector<double>(static_cast<std::size_t>(L), 0.0));
        sink_sum_vec.assign(static_cast<std::size_t>(L * H), std::vector<double>(static_cast<std::size_t>(hd), 0.0));
        sink_norm.assign(static_cast<std::size_t>(L * H), 0.0);
        rest_norm = count = sink_norm;
    }
    void add_hooks(Hooks& h) {
        if (decompose) h.add_if_present("*attn.hook_v", [this](Activation& a) { v.assign(a.data, a.data + a.numel()); });
        h.add_if_present("*attn.hook_pattern", [this](Activation& a) { on_pattern(a); });
    }
    void on_pattern(const Activation& a) {
        const Index N = a.shape[0], T = a.shape[2], l = a.layer;
        for (std::size_t i = 0; i < tokens.size(); ++i) {
            const Index k = tokens[i];
            if (k + 1 >= T) continue;
            for (Index b = 0; b < N; ++b)
                for (Index h = 0; h < H; ++h) {
                    const double s = attention_from_later(a.data + (b * H + h) * T * T, T, k);
                    attn[i][static_cast<std::size_t>(l)][static_cast<std::size_t>(h)] += s / double(T - 1 - k);
                }
            seqs[i][static_cast<std::size_t>(l)] += double(N);
        }
        if (v.empty() || tokens.empty()) return;
        const Index sink = tokens[0], group = H / KV;
        std::vector<double> part(static_cast<std::size_t>(hd)), rest(static_cast<std::size_t>(hd));
        for (Index b = 0; b < N; ++b)
            for (Index h = 0; h < H; ++h) {
                const Index g = h / group, lh = l * H + h;
                const float* P = a.data + (b * H + h) * T * T;
                for (Index q = sink + 1; q < T; ++q) {
                    std::fill(part.begin(), part.end(), 0.0);
                    std::fill(rest.begin(), rest.end(), 0.0);
                    for (Index k = 0; k <= q; ++k) {
                        const float p = P[q * T + k];
                        const float* vk = v.data() + ((b * T + k) * KV + g) * hd;
                        auto& dst = k == sink ? part : rest;
                        for (Index e = 0; e < hd; ++e) dst[static_cast<std::size_t>(e)] += p * vk[e];
                    }
                    double pn = 0, rn = 0;
                    for (Index e = 0; e < hd; ++e) {
                        pn += part[static_cast<std::size_t>(e)] * part[static_cast<std::size_t>(e)];
                        rn += rest[static_cast<std::size_t>(e)] * rest[static_cast<std::size_t>(e)];
                    }
                    pn = std::sqrt(pn);
                    if (pn > 0)
                        for (Index e = 0; e < hd; ++e)
                            sink_sum_vec[static_cast<std::size_t>(lh)][static_cast<std::size_t>(e)] += part[static_cast<std::size_t>(e)] / pn;
                    sink_norm[static_cast<std::size_t>(lh)] += pn;
                    rest_norm[static_cast<std::size_t>(lh)] += std::sqrt(rn);
                    count[static_cast<std::size_t>(lh)] += 1;
                }
            }
    }
    std::vector<std::vector<std::vector<double>>> attention() const {
        auto out = attn;  // (a layer without attention: no heads)
        for (std::size_t i = 0; i < out.size(); ++i)
            for (std::size_t l = 0; l < out[i].size(); ++l) {
                if (seqs[i][l] == 0) out[i][l].clear();
                for (auto& x : out[i][l]) x /= seqs[i][l];
            }
        return out;
    }
    std::vector<DecompositionStats> decomposition() const {
        std::vector<DecompositionStats> out(static_cast<std::size_t>(L));
        for (Index l = 0; l < L; ++l) {
            for (Index h = 0; h < H; ++h) {
                const auto lh = static_cast<std::size_t>(l * H + h);
                const double n = std::max(1.0, count[lh]);
                double resultant = 0;
                for (double s : sink_sum_vec[lh]) resultant += (s / n) * (s / n);
                auto& d = out[static_cast<std::size_t>(l)];
                d.sink_norm += sink_norm[lh] / n / double(H);
                d.rest_norm += rest_norm[lh] / n / double(H);
                d.sink_constancy += std::sqrt(resultant) / double(H);
            }
        }
        return out;
    }
};

}  // namespace detail

struct CompareOptions {
    std::vector<Index> tokens = {0};  // sink positions to track (the first is used for the decomposition)
    Index batch = 8;
    bool decomposition = true;
    RunOptions run;              // options of both runs...
    bool swap_run = false;       // ...unless set: then the intervened run uses run_intervened
    RunOptions run_intervened;   // e.g. a softmax variant (softmax1, clipped, sink logit)
    std::function<void(Index, Index)> progress;
};

/// Run `ids` with and without `intervention` (hooks, and/or the run_intervened options) and measure the difference.
inline Comparison compare(const Transformer& model, const TokenBatch& ids, const Hooks& intervention,
                          const CompareOptions& opt = {}) {
    const ModelConfig& c = model.config();
    const Index T = ids.cols();
    if (T < 2) throw Error("compare: sequences need at least 2 tokens");
    require_at_least(opt.batch, 1, "compare: batch");
    Comparison r;
    r.tokens = opt.tokens;
    detail::AttentionProbe po, pi;
    po.init(c, opt.tokens, opt.decomposition);
    pi.init(c, opt.tokens, opt.decomposition);
    PairLoss loss;
    Workspace wo, wi;
    for (Index b0 = 0; b0 < ids.rows(); b0 += opt.batch) {
        const Index nb = std::min(opt.batch, ids.rows() - b0);
        const TokenBatch chunk = ids.middleRows(b0, nb);
        Hooks ho, hi;
        if (opt.decomposition || !opt.tokens.empty()) {
            po.add_hooks(ho);
            hi.extend(intervention);
            pi.add_hooks(hi);
        } else {
            hi.extend(intervention);
        }
        RunOptions run = opt.run, run_i = opt.swap_run ? opt.run_intervened : opt.run;
        run.logits = run_i.logits = true;
        const RowMatrixF& a = model.run(chunk, wo, ho, run);
        const RowMatrixF& b = model.run(chunk, wi, hi, run_i);
        loss.add(a, b, chunk);
        if (opt.progress) opt.progress(b0 + nb, ids.rows());
    }
    const double targets = double(ids.rows() * (T - 1));
    r.ppl_original = std::exp(loss.nll_a / targets);
    r.ppl_intervened = std::exp(loss.nll_b / targets);
    r.kl_mean = loss.kl / targets;
    r.kl_per_position = loss.kl_per_position;
    for (auto& k : r.kl_per_position) k /= double(ids.rows());
    r.attn_original = po.attention();
    r.attn_intervened = pi.attention();
    if (opt.decomposition) {
        r.decomp_original = po.decomposition();
        r.decomp_intervened = pi.decomposition();
    }
    return r;
}

// ---- injection --------------------------------------------------------------------------

struct InjectionResult {
    int layer = 0;
    Index from = 0, to = 0;
    std::vector<Index> dims;                       // empty: the whole state
    std::vector<std::vector<double>> before, after;  // [sequence][layer]: attention on `to` (mean over heads, later queries)
    std::vector<double> median_factor;             // [layer]: median over sequences of after / before
    std::vector<double> mean_before, mean_after;   // [layer]
    std::vector<bool> attention;                   // [layer]: the layer has attention (the others' values are 0, not measured)
};

inline double median(std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// Write position `from`'s values of `dims` (all dims if empty) at the output of block `layer` into
/// position `to`, and measure the attention `to` receives in every layer, before and after.
inline InjectionResult inject(const Transformer& model, const TokenBatch& ids, int layer, Index from, Index to,
                              std::vector<Index> dims, Index batch = 8) {
    const ModelConfig& c = model.config();
    const Index T = ids.cols(), L = c.num_layers;
    require_at_least(batch, 1, "inject: batch");
    if (layer < 0 || layer >= L) throw Error("inject: layer " + std::to_string(layer) + " out of range [0, " + std::to_string(L) + ")");
    if (from < 0 || from >= T || to < 0 || to + 1 >= T)
        throw Error("inject: positions must satisfy 0 <= from < T and 0 <= to < T - 1 (T = " + std::to_string(T) + ")");
    Intervention iv;
    iv.site = Intervention::resid_post(layer);
    iv.tokens = TokenSelection::at({to});
    iv.dims = dims;
    iv.mode = Intervention::Mode::Copy;
    iv.source = from;
    iv.validate(model);
    InjectionResult r;
    r.layer = layer;
    r.from = from;
    r.to = to;
    r.dims = dims;
    for (int l = 0; l < L; ++l) r.attention.push_back(c.layer_attention(l));
    auto per_sequence = [&](const Hooks& extra) {
        std::vector<std::vector<double>> out;
        Workspace ws;
        for (Index b0 = 0; b0 < ids.rows(); b0 += batch) {
            const Index nb = std::min(batch, ids.rows() - b0);
            std::vector<std::vector<double>> att(static_cast<std::size_t>(nb), std::vector<double>(static_cast<std::size_t>(L), 0.0));
            Hooks h;
            h.extend(extra);
            h.add_if_present("*attn.hook_pattern", [&](Activation& a) {
                const Index H = a.shape[1];
                for (Index s = 0; s < nb; ++s) {
                    double sum = 0;
                    for (Index hh = 0; hh < H; ++hh) sum += detail::attention_from_later(a.data + (s * H + hh) * T * T, T, to);
                    att[static_cast<std::size_t>(s)][static_cast<std::size_t>(a.layer)] = sum / double(H * (T - 1 - to));
                }
            });
            RunOptions run;
            run.logits = false;
            model.run(ids.middleRows(b0, nb), ws, h, run);
            out.insert(out.end(), att.begin(), att.end());
        }
        return out;
    };
    r.before = per_sequence({});
    r.after = per_sequence(make_hooks({iv}));
    for (Index l = 0; l < L; ++l) {
        std::vector<double> f;
        double mb = 0, ma = 0;
        for (std::size_t s = 0; s < r.before.size(); ++s) {
            const double b = r.before[s][static_cast<std::size_t>(l)], a = r.after[s][static_cast<std::size_t>(l)];
            f.push_back(b > 0 ? a / b : 0.0);
            mb += b;
            ma += a;
        }
        r.median_factor.push_back(median(f));
        r.mean_before.push_back(mb / double(r.before.size()));
        r.mean_after.push_back(ma / double(r.before.size()));
    }
    return r;
}

// ---- super weights (Yu et al. 2024) -----------------------------------------------------------

struct SuperWeight {
    int layer = 0;
    Index row = 0, col = 0;     // down_proj weight [row = output dim, col = input channel]
    Index token = 0;            // position of the spike
    float input = 0, output = 0;  // down_proj input at (token, col), output at (token, row)
    float weight = 0;           // W[row, col]
    float contribution = 0;     // weight * input
    std::string output_site;    // where down_proj's output is hooked: hook_mlp_out, or mlp.hook_down before a post-norm
};

/// Layers whose down projection has both an input spike (channel col) and an output spike (dim row)
/// above `threshold` in sequence 0 of `ids`.
inline std::vector<SuperWeight> find_super_weights(const Transformer& model, const TokenBatch& ids, float threshold = 50.0f) {
    const ModelConfig& c = model.config();
    if (!c.has_mlp)
        throw Error("super weights: this " + c.model_type + " model has no MLP (its blocks are norm + mixer), so no down_proj to search");
    bool dense = false;  // (an MoE model's dense layers are searched: DeepSeek's first_k_dense_replace)
    for (int l = 0; l < c.num_layers; ++l) dense = dense || !c.layer_moe(l);
    if (!dense)
        throw Error("super weights: this " + c.model_type + " model has a mixture of experts in every layer (one down_proj per "
                    "expert), which find_super_weights does not search");
    const std::string out_site = c.post_mlp_norm ? "mlp.hook_down" : "hook_mlp_out";
    std::vector<SuperWeight> found(static_cast<std::size_t>(c.num_layers));
    Hooks h;
    h.add("*mlp.hook_post", [&](Activation& a) {  // [N, T, I]: input of the down projection
        auto& s = found[static_cast<std::size_t>(a.layer)];
        const auto x = a.sequence(0);
        Index t, j;
        x.cwiseAbs().maxCoeff(&t, &j);
        s.layer = a.layer;
        s.token = t;
        s.col = j;
        s.input = x(t, j);
    });
    h.add("*" + out_site, [&](Activation& a) {  // [N, T, d]: its output
        auto& s = found[static_cast<std::size_t>(a.layer)];
        const auto x = a.sequence(0);
        Index t, j;
        x.cwiseAbs().maxCoeff(&t, &j);
        s.row = j;
        s.output = x(t, j);
        if (t != s.token) s.output = x(s.token, j);
    });
    RunOptions run;
    run.logits = false;
    model.forward(TokenBatch(ids.topRows(1)), h, run);
    std::vector<SuperWeight> out;
    for (auto& s : found) {
        if (std::fabs(s.input) <= threshold || std::fabs(s.output) <= threshold) continue;
        s.weight = model.weights().layers[static_cast<std::size_t>(s.layer)].down.at(s.row, s.col);
        s.contribution = s.weight * s.input;
        s.output_site = out_site;
        out.push_back(s);
    }
    return out;
}

/// Hooks that act as if W[row, col] of the layer's down projection were zero: they subtract
/// W[row, col] * input[:, col] from output[:, row].
inline Hooks zero_weight_hooks(const SuperWeight& w) {
    // The down projection's input column, saved between the two hooks of one forward. Each thread has its
    // own buffer, so the same Hooks may serve forwards running concurrently in several threads.
    struct Saved {
        std::mutex m;
        std::map<std::thread::id, std::vector<float>> by_thread;
        std::vector<float>& mine() {
            std::lock_guard<std::mutex> lock(m);
            return by_thread[std::this_thread::get_id()];
        }
    };
    auto saved = std::make_shared<Saved>();
    Hooks h;
    const std::string pre = "blocks." + std::to_string(w.layer) + ".";
    h.add(pre + "mlp.hook_post", [saved, w](Activation& a) {
        const Index rows = a.numel() / a.shape.back(), I = a.shape.back();
        std::vector<float>& col = saved->mine();
        col.resize(static_cast<std::size_t>(rows));
        for (Index r = 0; r < rows; ++r) col[static_cast<std::size_t>(r)] = a.data[r * I + w.col];
    });
    h.add(pre + (w.output_site.empty() ? "hook_mlp_out" : w.output_site), [saved, w](Activation& a) {
        const Index rows = a.numel() / a.shape.back(), d = a.shape.back();
        const std::vector<float>& col = saved->mine();
        for (Index r = 0; r < rows && r < static_cast<Index>(col.size()); ++r)
            a.data[r * d + w.row] -= w.weight * col[static_cast<std::size_t>(r)];
    });
    return h;
}

}  // namespace massact::analysis

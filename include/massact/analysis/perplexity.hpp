// massact/analysis/perplexity.hpp - token log-probabilities and perplexity.
//
// Protocol (docs/formats.md): each row of the batch is one window of T
// tokens; its T-1 shifted targets are scored; perplexity = exp(mean NLL over
// all targets of all rows). Log-softmax is taken in double precision.
#pragma once

#include "massact/analysis/batches.hpp"
#include "massact/analysis/logprob.hpp"
#include "massact/core/eigen.hpp"
#include "massact/model/transformer.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

namespace massact::analysis {

/// Log-probabilities [N, T-1] of each next token: out(b, t) = log p(ids(b, t+1) | ids(b, <= t)).
inline RowMatrixD token_logprobs(const RowMatrixF& logits, const TokenBatch& ids) {
    const Index N = ids.rows(), T = ids.cols(), V = logits.cols();
    RowMatrixD out(N, std::max<Index>(T - 1, 0));
    for (Index b = 0; b < N; ++b)
        for (Index t = 0; t + 1 < T; ++t) out(b, t) = log_prob(logits.row(b * T + t).data(), V, ids(b, t + 1));
    return out;
}

/// The losses of two runs on the same batch, summed over tokens: each run's NLL of the next token and
/// KL(a || b) of their next-token distributions (clamped at 0 against rounding), also per position.
struct PairLoss {
    double nll_a = 0.0, nll_b = 0.0, kl = 0.0;
    std::vector<double> kl_per_position;                       // [T-1], summed over sequences
    std::vector<double> nll_a_per_position, nll_b_per_position;  // [T-1], summed over sequences

    /// Add the T-1 targets of every row of `ids` [n, T], given both runs' logits [n*T, V].
    void add(const RowMatrixF& a, const RowMatrixF& b, const TokenBatch& ids) {
        const Index T = ids.cols(), V = a.cols();
        for (auto* v : {&kl_per_position, &nll_a_per_position, &nll_b_per_position}) v->resize(static_cast<std::size_t>(std::max<Index>(T - 1, 0)), 0.0);
        for (Index s = 0; s < ids.rows(); ++s)
            for (Index t = 0; t + 1 < T; ++t) {
                const Index row = s * T + t;
                log_softmax(a.row(row).data(), V, la_);
                log_softmax(b.row(row).data(), V, lb_);
                const auto target = static_cast<std::size_t>(ids(s, t + 1));
                nll_a -= la_[target];
                nll_b -= lb_[target];
                nll_a_per_position[static_cast<std::size_t>(t)] -= la_[target];
                nll_b_per_position[static_cast<std::size_t>(t)] -= lb_[target];
                double d = 0.0;
                for (std::size_t j = 0; j < la_.size(); ++j) d += std::exp(la_[j]) * (la_[j] - lb_[j]);
                d = std::max(0.0, d);
                kl_per_position[static_cast<std::size_t>(t)] += d;
                kl += d;
            }
    }

private:
    std::vector<double> la_, lb_;
};

struct PerplexityResult {
    double ppl = 0.0;                // exp(mean NLL over all targets)
    double nll = 0.0;                // mean NLL over all targets
    std::vector<double> seq_nll;     // mean NLL of each row (T-1 targets each)
    Index tokens = 0;                // targets scored
};

/// Perplexity of the rows of `ids`, run `batch` rows at a time (hooks and options apply to every forward).
/// `progress(done, total)` is called after each batch when given.
inline PerplexityResult perplexity(const Transformer& model, const TokenBatch& ids, const Hooks& hooks = {},
                                   const RunOptions& options = {}, Index batch = 8,
                                   const std::function<void(Index, Index)>& progress = {}) {
    PerplexityResult r;
    const Index N = ids.rows(), T = ids.cols();
    if (T < 2) throw Error("perplexity: sequences need at least 2 tokens, got " + std::to_string(T));
    require_at_least(batch, 1, "perplexity: batch");
    double total = 0.0;
    RunOptions opt = options;
    opt.logits = true;
    run_batches(model, ids, batch, hooks, opt, nullptr, [&](const RowMatrixF& logits, const TokenBatch& chunk, Index b0) {
        const RowMatrixD lp = token_logprobs(logits, chunk);
        for (Index b = 0; b < chunk.rows(); ++b) {
            const double s = -lp.row(b).sum();
            r.seq_nll.push_back(s / static_cast<double>(T - 1));
            total += s;
        }
        if (progress) progress(b0 + chunk.rows(), N);
    });
    r.tokens = N * (T - 1);
    r.nll = total / static_cast<double>(r.tokens);
    r.ppl = std::exp(r.nll);
    return r;
}

}  // namespace massact::analysis

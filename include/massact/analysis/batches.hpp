// massact/analysis/batches.hpp - a dataset's sequences through the model a batch at a time: the loop every analysis
// that reads hooks over many sequences shares.
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/model/transformer.hpp"

#include <algorithm>

namespace massact::analysis {

/// Runs the sequences of `ids` through `m`, `batch` at a time, in one workspace, with `hooks` and `options`. While a
/// batch runs, `*first` (when given) is the index of its first sequence, so hooks can tell which sequences their rows
/// are; after each run, done(output, chunk, b0) sees its output (the logits when `options` ask for them), the batch's
/// sequences and the index of the first.
template <typename Done>
void run_batches(const Transformer& m, const TokenBatch& ids, Index batch, const Hooks& hooks, const RunOptions& options, Index* first,
                 Done&& done) {
    require_at_least(batch, 1, "batch");
    Workspace ws;
    for (Index b0 = 0; b0 < ids.rows(); b0 += batch) {
        const Index n = std::min(batch, ids.rows() - b0);
        if (first) *first = b0;
        const TokenBatch chunk = ids.middleRows(b0, n);
        done(m.run(chunk, ws, hooks, options), chunk, b0);
    }
}

/// The same, for hooks that collect everything themselves.
inline void run_batches(const Transformer& m, const TokenBatch& ids, Index batch, const Hooks& hooks, const RunOptions& options,
                        Index* first = nullptr) {
    run_batches(m, ids, batch, hooks, options, first, [](const RowMatrixF&, const TokenBatch&, Index) {});
}

}  // namespace massact::analysis

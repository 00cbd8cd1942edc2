// massact/analysis/scan.hpp - one pass of massact's own forward over any number of sequences: residual-stream
// statistics (analysis/residual_stats.hpp), attention-sink metrics (analysis/sink_metrics.hpp) and the
// massive-activation detector (analysis/detector.hpp), plus perplexity. What is measured and how it is
// merged and reported lives in analysis/scan_state.hpp, shared with the engine-agnostic probe
// (analysis/probe.hpp): the hooks below feed a ScanAccumulator one sequence at a time, as an engine does.
#pragma once

#include "massact/analysis/perplexity.hpp"
#include "massact/analysis/scan_state.hpp"
#include "massact/model/transformer.hpp"

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

namespace massact::analysis {

struct ScanOptions : StatsOptions {
    Index batch = 8;              // sequences per forward,
    Index max_rows = 16384;       // but at most this many tokens (at least one sequence): a forward's buffers are
                                  // O(rows x width), so long windows go one at a time
    Hooks hooks;                  // extra hooks run before the scan's own (e.g. an intervention)
    RunOptions run;               // e.g. a softmax variant
    bool full_patterns = false;   // read the sink metrics from materialised [N, H, T, T] patterns (attn.hook_pattern),
                                  // as an engine's probe does, instead of the streamed columns: a check, O(T^2) memory
    std::function<void(Index, Index)> progress;
};

namespace detail {

/// The scan's hooks for one forward of the sequences `chunk` (token ids, or a vision model's token kinds)
/// whose first has global index row0, after opt.hooks.
inline Hooks scan_hooks(ScanAccumulator& acc, const TokenBatch& chunk, const std::vector<Index>& delim, Index row0,
                        const ScanOptions& opt, Index heads, std::vector<float>& scratch) {
    const Index nb = chunk.rows(), T = chunk.cols(), H = heads;
    Hooks hooks;
    hooks.extend(opt.hooks);
    hooks.add("*hook_resid_post", [&acc, &chunk, &delim, &opt, &scratch, nb, row0](Activation& a) {  // [N, T, d]
        for (Index b = 0; b < nb; ++b)
            acc.add_hidden(a.layer, a.sequence(b), chunk.row(b).data(), delim[static_cast<std::size_t>(b)], row0 + b, opt.criteria, scratch);
    });
    // The sink metrics read the probabilities of the first token, the first delimiter and any registers only
    // (attn.hook_pattern_columns, keys of sink_columns()), so attention stays streamed: O(T) memory per head.
    if (opt.full_patterns)
        hooks.add_if_present("*attn.hook_pattern", [&acc, &delim, &opt, nb, T, H](Activation& a) {  // [N, H, T, T]
            for (Index b = 0; b < nb; ++b)
                acc.add_pattern(a.layer, a.data + b * H * T * T, H, T, delim[static_cast<std::size_t>(b)], opt.sink_T);
        });
    else
        hooks.add_if_present("*attn.hook_pattern_columns", [&acc, &delim, &opt, nb, T, H](Activation& a) {  // [N, H, T, C]
            const Index C = a.shape[3];
            for (Index b = 0; b < nb; ++b)
                acc.add_columns(a.layer, a.data + b * H * T * C, H, T, C, delim[static_cast<std::size_t>(b)], opt.sink_T);
        });
    hooks.add_if_present("*attn.hook_sink_pattern", [&acc, nb, T, H](Activation& a) {  // [N, H, T]
        for (Index b = 0; b < nb; ++b) acc.add_slot(a.layer, a.data + b * H * T, H, T);
    });
    return hooks;
}

/// opt.run with the keys the sink metrics read (SinkAccumulator::sink_columns) for sequences with these delimiters.
inline RunOptions with_sink_columns(const RunOptions& run, const std::vector<Index>& delim, Index registers) {
    RunOptions out = run;
    const Index C = 2 + std::max<Index>(registers, 0);
    out.pattern_columns.resize(static_cast<Index>(delim.size()), C);
    for (std::size_t b = 0; b < delim.size(); ++b) {
        const auto cols = SinkAccumulator::sink_columns(delim[b], std::max<Index>(registers, 0));
        for (Index c = 0; c < C; ++c) out.pattern_columns(static_cast<Index>(b), c) = cols[static_cast<std::size_t>(c)];
    }
    return out;
}

inline void start(ScanAccumulator& acc, const ModelConfig& c, Index T, const ScanOptions& opt) {
    if (opt.batch < 1) throw Error("scan: batch must be at least 1, got " + std::to_string(opt.batch));
    acc.start(c.num_layers, c.num_heads, c.hidden_size, T, "scan");
}

}  // namespace detail

/// Accumulate a scan of `ids` (rows = sequences) into `acc`. Sequence indices in `acc` continue
/// from acc.row_offset + first_row (so that partial scans of disjoint row ranges merge cleanly).
inline void scan_into(ScanAccumulator& acc, const Transformer& model, const TokenBatch& ids, const ScanOptions& opt,
                      Index first_row = 0) {
    const Index T = ids.cols();
    detail::start(acc, model.config(), T, opt);
    std::vector<float> scratch;
    Workspace ws;
    const Index batch = std::max<Index>(1, std::min(opt.batch, opt.max_rows / T));
    for (Index b0 = 0; b0 < ids.rows(); b0 += batch) {
        const Index nb = std::min(batch, ids.rows() - b0);
        const TokenBatch chunk = ids.middleRows(b0, nb);
        std::vector<Index> delim;
        for (Index b = 0; b < nb; ++b) delim.push_back(first_delimiter(chunk.row(b).data(), T, opt.delimiters));
        const Hooks hooks = detail::scan_hooks(acc, chunk, delim, acc.row_offset + first_row + b0, opt, model.config().num_heads, scratch);
        RunOptions run = detail::with_sink_columns(opt.run, delim, 0);
        run.logits = true;
        const RowMatrixD lp = token_logprobs(model.run(chunk, ws, hooks, run), chunk);  // [nb, T-1]
        for (Index b = 0; b < nb; ++b) acc.add_sequence(lp.row(b).data(), T - 1);
        if (opt.progress) opt.progress(b0 + nb, ids.rows());
    }
    acc.row_offset += ids.rows();
}

/// The same over images for a vision model: each image is a sequence [CLS, registers, patches]; carriers
/// are cls, register:k and patch; attention on the first token is attention on CLS; no perplexity.
inline void scan_pixels_into(ScanAccumulator& acc, const Transformer& model, const PixelBatch& px, const ScanOptions& opt,
                             Index first_row = 0) {
    const ModelConfig& c = model.config();
    model.validate(px);
    if (opt.run.extra_tokens != 0)
        throw Error("scan: test-time registers (extra_tokens) are not scanned; run analysis::test_time_registers");
    const Index T = c.vision.tokens(px.height, px.width);
    detail::start(acc, c, T, opt);
    acc.registers = c.vision.registers;
    std::vector<float> scratch;
    Workspace ws;
    for (Index b0 = 0; b0 < px.n; b0 += opt.batch) {
        const Index nb = std::min(opt.batch, px.n - b0);
        const PixelBatch chunk = px.slice(b0, nb);
        const TokenBatch kinds = model.vision_tokens(nb, px.height, px.width);
        const std::vector<Index> delim(static_cast<std::size_t>(nb), -1);
        const Hooks hooks = detail::scan_hooks(acc, kinds, delim, acc.row_offset + first_row + b0, opt, c.num_heads, scratch);
        model.run_pixels(chunk, ws, hooks, detail::with_sink_columns(opt.run, delim, c.vision.registers));
        for (Index b = 0; b < nb; ++b) acc.add_sequence(nullptr, 0);
        if (opt.progress) opt.progress(b0 + nb, px.n);
    }
    acc.row_offset += px.n;
}

/// The result of a scan of `model` run with `opt`.
inline ScanResult finalize(const ScanAccumulator& acc, const ModelConfig& c, const ScanOptions& opt) {
    ScanResult r = finalize(acc, c.model_type, c.is_vision(), has_sink_slot(c, opt.run.attention), opt);
    if (c.is_vision() && !c.vision.cls) r.first_token = "patch_0";  // (SigLIP: the sequence starts with a patch)
    return r;
}

/// Scan images in one call (vision models).
inline ScanResult scan_pixels(const Transformer& model, const PixelBatch& px, const ScanOptions& opt = {}) {
    ScanAccumulator acc;
    scan_pixels_into(acc, model, px, opt);
    return finalize(acc, model.config(), opt);
}

/// Scan `ids` in one call.
inline ScanResult scan(const Transformer& model, const TokenBatch& ids, const ScanOptions& opt = {}) {
    ScanAccumulator acc;
    scan_into(acc, model, ids, opt);
    return finalize(acc, model.config(), opt);
}

}  // namespace massact::analysis

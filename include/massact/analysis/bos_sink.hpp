// massact/analysis/bos_sink.hpp - the attention sink with and without the first token (Barbero et al. 2025, "Why do
// LLMs attend to the first token?"): the same windows scanned once starting with BOS and once without it.
//
// The windows are given either starting with `bos` in every row (the tokenizer's prefix: Llama's "<s>") or without it
// (GPT-2 adds none); the other variant is made from them by removing or prepending that column, so both read the same
// content tokens c_1..c_n. Per variant and layer: top-1 |x| and its ratio to the median, whether it sits on position 0,
// attention on position 0 (BOS, or c_1 without it) and Gu et al.'s sink rate there. Perplexity is compared on the
// targets both variants score: c_2..c_n (with BOS the prediction of c_1 from BOS alone is left out).
#pragma once

#include "massact/analysis/compare_models.hpp"
#include "massact/analysis/logprob.hpp"
#include "massact/core/error.hpp"
#include "massact/model/transformer.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace massact::analysis {

struct BosSink {
    std::int64_t bos = -1;
    bool data_had_bos = false;  // the windows given started with bos (it was removed), or not (it was prepended)
    ModelSet set;               // names {"with BOS", "without BOS"}, one scan each
    double nll_with = 0, nll_without = 0;  // mean NLL over the shared targets c_2..c_n
    Index targets = 0;

    double ppl_with() const { return std::exp(nll_with); }
    double ppl_without() const { return std::exp(nll_without); }

    nlohmann::json to_json() const {
        nlohmann::json j = set.to_json();
        j["bos_token_id"] = bos;
        j["data_had_bos"] = data_had_bos;
        j["shared_targets"] = targets;
        j["ppl_shared_with_bos"] = ppl_with();
        j["ppl_shared_without_bos"] = ppl_without();
        return j;
    }
};

/// Scan `ids` with and without `bos` as its first token (see above); opt (its hooks and run options too) applies
/// to both scans and to the forward of BOS alone.
inline BosSink bos_sink(const Transformer& m, const TokenBatch& ids, std::int64_t bos, const ScanOptions& opt = {}) {
    const ModelConfig& c = m.config();
    if (c.is_vision()) throw Error("bos: " + c.model_type + " is a vision model (its first token is CLS, not BOS)");
    if (bos < 0 || bos >= c.vocab_size)
        throw Error("bos: BOS token id " + std::to_string(bos) + " outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
    if (ids.rows() == 0) throw Error("bos: no sequences");
    m.validate(ids);
    BosSink r;
    r.bos = bos;
    r.data_had_bos = (ids.col(0).array() == bos).all();
    const bool any_bos = (ids.col(0).array() == bos).any();
    if (any_bos && !r.data_had_bos)
        throw Error("bos: some windows start with BOS (" + std::to_string(bos) + ") and some do not: give them all with it or all without it");
    TokenBatch with, without;
    if (r.data_had_bos) {
        with = ids;
        without = ids.rightCols(ids.cols() - 1);
    } else {
        with.resize(ids.rows(), ids.cols() + 1);
        with.col(0).setConstant(bos);
        with.rightCols(ids.cols()) = ids;
        without = ids;
    }
    if (without.cols() < 2)
        throw Error("bos: windows of " + std::to_string(without.cols()) + " content token leave no shared target (at least 2 needed)");
    m.validate(with);
    r.set.names = {"with BOS", "without BOS"};
    r.set.scans.push_back(scan(m, with, opt));
    r.set.scans.push_back(scan(m, without, opt));
    // The scan without BOS scored exactly the shared targets; the one with BOS also scored c_1 after BOS alone, which
    // one forward of the token BOS gives for every window (position 0 sees only itself).
    r.targets = without.rows() * (without.cols() - 1);
    r.nll_without = r.set.scans[1].val_nll;
    RunOptions run = opt.run;
    run.logits = true;
    const RowMatrixF first = m.forward(TokenBatch::Constant(1, 1, bos), opt.hooks, run);
    double c1 = 0;
    for (Index b = 0; b < with.rows(); ++b) c1 -= log_prob(first.row(0).data(), first.cols(), with(b, 1));
    r.nll_with = (r.set.scans[0].val_nll * double(with.rows() * (with.cols() - 1)) - c1) / double(r.targets);
    return r;
}

}  // namespace massact::analysis

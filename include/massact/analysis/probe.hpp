// massact/analysis/probe.hpp - massact's scan for any inference engine.
//
// An engine that can show its activations (llama.cpp's cb_eval, a PyTorch hook, a custom runtime) calls
// massact::probe::Scan::observe() with raw buffers as it computes them, and end_sequence() after each
// sequence. The probe accumulates exactly what `massact scan` accumulates (top-k |x|, medians, per-dim
// moments, detector hits per carrier, attention on the first token and the first delimiter, Gu et al.'s
// sink rate, perplexity), through the same ScanAccumulator calls as massact's own scan, and writes the
// same JSON. Probes merge (several processes, several threads each with its own probe).
//
// Sites (the layer is the block index, as in TransformerLens' blocks.{l}.<site>; "blocks.{l}." may prefix):
//   hook_resid_post   the output of block l, rows = tokens, cols = hidden size (before the final norm);
//   attn.hook_pattern the attention probabilities of block l: rows = heads x queries, head-major (every
//                     query row of head 0, then head 1, ...), cols = keys (key k = position k; columns past
//                     the sequence, e.g. a padded KV cache, are ignored; keys past cols count as 0);
//   logits            layer -1: rows = tokens, cols = vocabulary; row t scores the token at t + 1.
// Rows of one site arrive in position order, whole sequences or any number of chunks (e.g. micro-batches).
// Each call gives the token ids of its rows (or nullptr when an earlier call of the sequence gave them).
// Every sequence must bring hook_resid_post for every layer and the same length as the first; attention
// and logits are optional (without them the JSON has no sink metrics, or no perplexity).
#pragma once

#include "massact/analysis/logprob.hpp"
#include "massact/analysis/scan_state.hpp"
#include "massact/core/error.hpp"
#include "massact/core/half.hpp"
#include "massact/io/json_file.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace massact::probe {

/// The element type of an observed buffer.
enum class DType { F32, F16, BF16 };

inline const char* dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "F32";
        case DType::F16: return "F16";
        case DType::BF16: return "BF16";
    }
    return "?";
}

/// Row r of a buffer as float32: `n` values of type `t` starting at `row` (F16 and BF16 are widened exactly).
inline void to_float(const void* row, DType t, float* out, std::size_t n) {
    switch (t) {
        case DType::F32: std::memcpy(out, row, n * sizeof(float)); return;
        case DType::F16: f16_to_float(row, out, n); return;
        case DType::BF16: bf16_to_float(row, out, n); return;
    }
}

/// The scan of one model's activations, fed by an engine.
class Scan {
public:
    /// A model of `layers` blocks of `heads` attention heads and hidden size `hidden`; `model_type` names it in
    /// the JSON ("llama", "gpt2", ...).
    Scan(Index layers, Index heads, Index hidden, analysis::StatsOptions options = {}, std::string model_type = "")
        : layers_(layers), heads_(heads), hidden_(hidden), opt_(std::move(options)), model_type_(std::move(model_type)),
          seq_(static_cast<std::size_t>(std::max<Index>(layers, 0))) {
        if (layers < 1 || heads < 1 || hidden < 1)
            throw Error("probe::Scan: layers, heads and hidden size must be positive, got " + std::to_string(layers) + ", " +
                        std::to_string(heads) + ", " + std::to_string(hidden));
    }

    /// Rows [rows, cols] of one site of the current sequence; row r starts at data + r * row_stride elements
    /// (row_stride >= cols). `tokens` [rows]: the token ids of these rows (nullptr: given by another call).
    void observe(int layer, std::string_view site, const void* data, Index rows, Index cols, Index row_stride, DType dtype,
                 const std::int64_t* tokens = nullptr) {
        const Site s = parse_site(layer, site);
        if (rows < 0 || cols < 1 || row_stride < cols || (rows > 0 && data == nullptr))
            throw Error(where(layer, site) + ": rows " + std::to_string(rows) + ", cols " + std::to_string(cols) + ", row stride " +
                        std::to_string(row_stride) + (data ? "" : ", no data") + " (expected rows >= 0, cols >= 1, stride >= cols)");
        if (s == Site::Resid) return observe_resid(layer, site, data, rows, cols, row_stride, dtype, tokens);
        if (s == Site::Pattern) return observe_pattern(layer, site, data, rows, cols, row_stride, dtype, tokens);
        return observe_logits(data, rows, cols, row_stride, dtype, tokens);
    }
    /// The same with 32-bit token ids (llama.cpp's llama_token).
    void observe(int layer, std::string_view site, const void* data, Index rows, Index cols, Index row_stride, DType dtype,
                 const std::int32_t* tokens) {
        std::vector<std::int64_t> wide;
        if (tokens) wide.assign(tokens, tokens + std::max<Index>(rows, 0));
        observe(layer, site, data, rows, cols, row_stride, dtype, tokens ? wide.data() : nullptr);
    }

    /// Rows of `site` seen so far in the current sequence (`layer` -1 for logits): where the next chunk starts.
    Index rows_seen(int layer, std::string_view site = "hook_resid_post") const {
        const Site s = parse_site(layer, site);
        if (s == Site::Logits) return logit_rows_;
        const auto& b = seq_[static_cast<std::size_t>(layer)];
        return s == Site::Resid ? b.rows : b.queries;
    }

    /// The current sequence is complete: its statistics go into the scan and the buffers are cleared.
    void end_sequence() {
        const Index T = seq_[0].rows;
        if (T == 0) throw Error("probe: end_sequence() without any hook_resid_post rows of layer 0");
        for (Index l = 0; l < layers_; ++l)
            if (seq_[static_cast<std::size_t>(l)].rows != T)
                throw Error("probe: end of sequence " + std::to_string(sequence_index()) + ": hook_resid_post of layer " + std::to_string(l) +
                            " has " + std::to_string(seq_[static_cast<std::size_t>(l)].rows) + " rows, layer 0 has " + std::to_string(T) +
                            " (every layer needs every token)");
        const bool attention = seq_[0].queries > 0;
        for (Index l = 0; l < layers_; ++l) {
            const Index q = seq_[static_cast<std::size_t>(l)].queries;
            if ((attention && q != T) || (!attention && q != 0))
                throw Error("probe: end of sequence " + std::to_string(sequence_index()) + ": attn.hook_pattern of layer " +
                            std::to_string(l) + " covers " + std::to_string(q) + " queries, expected " + std::to_string(attention ? T : 0) +
                            " (as layer 0: attention for every query of every layer, or for none)");
        }
        if (logit_rows_ > 0 && (logit_rows_ < T - 1 || logit_rows_ > T))
            throw Error("probe: end of sequence " + std::to_string(sequence_index()) + ": logits for " + std::to_string(logit_rows_) +
                        " tokens, expected " + std::to_string(T - 1) + " or " + std::to_string(T) +
                        " (every token but the last scores the next)");
        for (Index t = 0; t < T; ++t)
            if (!known_[static_cast<std::size_t>(t)])
                throw Error("probe: end of sequence " + std::to_string(sequence_index()) + ": no token id for position " + std::to_string(t));
        acc_.start(layers_, heads_, hidden_, T, "probe");
        const Index delim = analysis::first_delimiter(tokens_.data(), T, opt_.delimiters);
        const Index seq = acc_.row_offset;
        for (Index l = 0; l < layers_; ++l) {
            Buffer& b = seq_[static_cast<std::size_t>(l)];
            const ConstRowMap<float> x(b.hidden.data(), T, hidden_);
            acc_.add_hidden(l, x, tokens_.data(), delim, seq, opt_.criteria, scratch_);
            if (!attention) continue;
            assemble(b, T);
            acc_.add_pattern(l, b.pattern.data(), heads_, T, delim, opt_.sink_T);
        }
        resolve_logits();
        if (logit_rows_ > 0) acc_.add_sequence(logprobs_.data(), T - 1);
        else acc_.add_sequence(nullptr, 0);
        acc_.row_offset += 1;
        clear_sequence();
    }

    /// Sequences scanned so far.
    Index sequences() const { return static_cast<Index>(acc_.sequences); }
    const analysis::ScanAccumulator& accumulator() const { return acc_; }
    /// Adopt partial scans (another probe's accumulator, or one loaded from bytes): the scan of both.
    void merge(const analysis::ScanAccumulator& other) { acc_.merge(other); }
    void merge(const Scan& other) { merge(other.accumulator()); }

    /// The scan so far (what `massact scan` prints and writes).
    analysis::ScanResult result() const {
        if (acc_.empty()) throw Error("probe: no complete sequence was observed (call end_sequence() after each)");
        return analysis::finalize(acc_, model_type_, false, false, opt_);
    }
    nlohmann::json to_json() const { return result().to_json(); }
    /// The JSON of `massact scan --json`, written to a temporary file and renamed into place.
    void write_json(const std::string& path) const { io::write_text_file_atomic(path, to_json().dump(1) + "\n"); }

private:
    enum class Site { Resid, Pattern, Logits };
    struct Chunk {  // attention rows of `queries` queries from position q0, [H, queries, keys]
        Index q0, queries, keys;
        std::vector<float> data;
    };
    struct Buffer {
        std::vector<float> hidden;   // [rows, d]
        Index rows = 0;
        std::vector<float> pattern;  // [H, T, T] at the end of the sequence
        std::vector<Chunk> chunks;
        Index queries = 0;
    };

    static std::string where(int layer, std::string_view site) {
        return "probe: " + (layer >= 0 ? "layer " + std::to_string(layer) + " " : std::string()) + std::string(site);
    }

    Site parse_site(int layer, std::string_view site) const {
        std::string_view s = site;
        if (s.substr(0, 7) == "blocks.") {  // blocks.{l}.<site>: the number must be `layer`
            const auto dot = s.find('.', 7);
            const std::string num(s.substr(7, dot == std::string_view::npos ? 0 : dot - 7));
            if (dot == std::string_view::npos || num != std::to_string(layer))
                throw Error(where(layer, site) + ": the site's block number does not match layer " + std::to_string(layer));
            s = s.substr(dot + 1);
        }
        if (s == "logits") {
            if (layer != -1) throw Error(where(layer, site) + ": logits are observed with layer -1");
            return Site::Logits;
        }
        if (layer < 0 || layer >= layers_)
            throw Error(where(layer, site) + ": layer outside 0.." + std::to_string(layers_ - 1) + " (the model has " +
                        std::to_string(layers_) + " blocks)");
        if (s == "hook_resid_post") return Site::Resid;
        if (s == "attn.hook_pattern") return Site::Pattern;
        throw Error(where(layer, site) + ": unknown site (the probe takes hook_resid_post, attn.hook_pattern and logits)");
    }

    Index sequence_index() const { return static_cast<Index>(acc_.sequences); }

    void set_tokens(Index p0, Index rows, const std::int64_t* tokens, int layer, std::string_view site) {
        if (static_cast<Index>(tokens_.size()) < p0 + rows) {
            tokens_.resize(static_cast<std::size_t>(p0 + rows), 0);
            known_.resize(static_cast<std::size_t>(p0 + rows), 0);
        }
        if (!tokens) return;
        for (Index i = 0; i < rows; ++i) {
            const auto p = static_cast<std::size_t>(p0 + i);
            if (known_[p] && tokens_[p] != tokens[i])
                throw Error(where(layer, site) + ": token id " + std::to_string(tokens[i]) + " at position " + std::to_string(p0 + i) +
                            " differs from the " + std::to_string(tokens_[p]) + " given before");
            tokens_[p] = tokens[i];
            known_[p] = 1;
        }
    }

    void observe_resid(int layer, std::string_view site, const void* data, Index rows, Index cols, Index stride, DType dtype,
                       const std::int64_t* tokens) {
        if (cols != hidden_)
            throw Error(where(layer, site) + ": " + std::to_string(cols) + " columns, expected the hidden size " + std::to_string(hidden_));
        Buffer& b = seq_[static_cast<std::size_t>(layer)];
        set_tokens(b.rows, rows, tokens, layer, site);
        b.hidden.resize(static_cast<std::size_t>((b.rows + rows) * hidden_));
        for (Index r = 0; r < rows; ++r)
            to_float(element(data, dtype, r * stride), dtype, b.hidden.data() + (b.rows + r) * hidden_, static_cast<std::size_t>(cols));
        b.rows += rows;
    }

    void observe_pattern(int layer, std::string_view site, const void* data, Index rows, Index cols, Index stride, DType dtype,
                         const std::int64_t* tokens) {
        if (rows % heads_ != 0)
            throw Error(where(layer, site) + ": " + std::to_string(rows) + " rows are not heads x queries for " + std::to_string(heads_) + " heads");
        Buffer& b = seq_[static_cast<std::size_t>(layer)];
        const Index q = rows / heads_;
        set_tokens(b.queries, q, tokens, layer, site);
        Chunk c{b.queries, q, cols, std::vector<float>(static_cast<std::size_t>(rows * cols))};
        for (Index r = 0; r < rows; ++r) to_float(element(data, dtype, r * stride), dtype, c.data.data() + r * cols, static_cast<std::size_t>(cols));
        b.queries += q;
        b.chunks.push_back(std::move(c));
    }

    // The pattern [H, T, T] from the chunks, when the sequence ends (T is known then).
    void assemble(Buffer& b, Index T) const {
        b.pattern.assign(static_cast<std::size_t>(heads_ * T * T), 0.0f);
        for (const Chunk& c : b.chunks)
            for (Index h = 0; h < heads_; ++h)
                for (Index i = 0; i < c.queries; ++i) {
                    const float* src = c.data.data() + (h * c.queries + i) * c.keys;
                    std::copy(src, src + std::min(c.keys, T), b.pattern.data() + (h * T + c.q0 + i) * T);
                }
    }

    void observe_logits(const void* data, Index rows, Index cols, Index stride, DType dtype, const std::int64_t* tokens) {
        if (vocab_ == 0) vocab_ = cols;
        if (cols != vocab_)
            throw Error("probe: logits: " + std::to_string(cols) + " columns, the earlier rows had " + std::to_string(vocab_));
        set_tokens(logit_rows_, rows, tokens, -1, "logits");
        row_.resize(static_cast<std::size_t>(cols));
        for (Index r = 0; r < rows; ++r) {
            to_float(element(data, dtype, r * stride), dtype, row_.data(), static_cast<std::size_t>(cols));
            pending_.emplace_back(logit_rows_ + r, row_);  // scored once the next token's id is known
        }
        logit_rows_ += rows;
        resolve_logits();
    }

    // Score the pending logits rows whose next token is known.
    void resolve_logits() {
        std::size_t keep = 0;
        for (std::size_t i = 0; i < pending_.size(); ++i) {
            const auto t = static_cast<std::size_t>(pending_[i].first);
            if (t + 1 < known_.size() && known_[t + 1]) {
                const std::int64_t target = tokens_[t + 1];
                if (target < 0 || target >= vocab_)
                    throw Error("probe: logits: token id " + std::to_string(target) + " at position " + std::to_string(t + 1) +
                                " is outside the vocabulary of " + std::to_string(vocab_));
                if (logprobs_.size() <= t) logprobs_.resize(t + 1, 0.0);
                logprobs_[t] = analysis::log_prob(pending_[i].second.data(), vocab_, target);
            } else {
                if (keep != i) pending_[keep] = std::move(pending_[i]);
                ++keep;
            }
        }
        pending_.resize(keep);
    }

    static const void* element(const void* data, DType t, Index offset) {
        const std::size_t size = t == DType::F32 ? 4 : 2;
        return static_cast<const unsigned char*>(data) + static_cast<std::size_t>(offset) * size;
    }

    void clear_sequence() {
        for (auto& b : seq_) b = Buffer();
        tokens_.clear();
        known_.clear();
        logprobs_.clear();
        pending_.clear();
        logit_rows_ = 0;
    }

    Index layers_, heads_, hidden_;
    analysis::StatsOptions opt_;
    std::string model_type_;
    analysis::ScanAccumulator acc_;
    // the current sequence
    std::vector<Buffer> seq_;                  // [L]
    std::vector<std::int64_t> tokens_;         // [T]
    std::vector<unsigned char> known_;         // [T]: token id given
    std::vector<double> logprobs_;             // [T-1]
    std::vector<std::pair<Index, std::vector<float>>> pending_;  // logits rows waiting for their target
    Index logit_rows_ = 0, vocab_ = 0;
    std::vector<float> row_, scratch_;
};

}  // namespace massact::probe

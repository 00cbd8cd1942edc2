// massact scan MODEL_DIR (--data FILE | --ids-file F[:T] | --prompt TEXT | --pixels F[:T] | --images DIR)
//              [--seq-len 256] [--max-seqs N] [--patterns columns|full] [--json OUT]
// Per-layer outlier statistics, the massive-activation detector and attention-sink metrics.
#pragma once

#include "common.hpp"

#include "../ablation_spec.hpp"
#include "../images.hpp"
#include "../input.hpp"
#include "../mpi.hpp"
#include "../progress.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>

namespace massact_tool {

struct DetectorArgs {
    std::string preset = "relative";
    double min_abs = -1, min_ratio = -1, min_share = -1;
    int min_layers = -1;
    Index sink_T = 64;
    double sink_eps = 0.3;

    massact::analysis::DetectorCriteria criteria() const {
        massact::analysis::DetectorCriteria c;
        if (preset == "relative") c = massact::analysis::DetectorCriteria::relative();
        else if (preset == "sun2024") c = massact::analysis::DetectorCriteria::sun2024();
        else throw Error("--preset: unknown value \"" + preset + "\" (relative or sun2024)");
        if (min_abs >= 0) c.min_abs = min_abs;
        if (min_ratio >= 0) c.min_ratio = min_ratio;
        if (min_share >= 0) {
            if (min_share > 1) throw Error("--min-share: must be in [0, 1]");
            c.min_share = min_share;
        }
        if (min_layers >= 0) {
            if (min_layers < 1) throw Error("--min-layers: must be at least 1");
            c.min_layers = min_layers;
        }
        if (min_abs >= 0 || min_ratio >= 0 || min_share >= 0 || min_layers >= 0) c.name += "+custom";
        return c;
    }
};

inline void add_detector_options(CLI::App* cmd, DetectorArgs& a) {
    cmd->add_option("--preset", a.preset, "Detector criteria: relative (scale-aware default) or sun2024 (|x|>100, 1000x median)")
        ->capture_default_str();
    cmd->add_option("--min-abs", a.min_abs, "Override: |x| must exceed this");
    cmd->add_option("--min-ratio", a.min_ratio, "Override: |x| / median |x| of the hidden state, at least");
    cmd->add_option("--min-share", a.min_share, "Override: share of sequences (0..1)");
    cmd->add_option("--min-layers", a.min_layers, "Override: consecutive layers");
    cmd->add_option("--sink-T", a.sink_T, "Gu et al.'s T for the sink rate")->capture_default_str();
    cmd->add_option("--sink-eps", a.sink_eps, "Gu et al.'s threshold on alpha")->capture_default_str();
}

inline massact::analysis::ScanOptions scan_options(const DetectorArgs& d, const std::string& model_dir) {
    massact::analysis::ScanOptions o;
    o.criteria = d.criteria();
    if (d.sink_T < 1) throw Error("--sink-T: must be at least 1");
    o.sink_T = d.sink_T;
    o.sink_epsilon = d.sink_eps;
    o.delimiters = model_delimiters(model_dir);
    return o;
}

inline std::string dims_string(const std::map<Index, Index>& dims, std::size_t most = 3) {
    std::vector<std::pair<Index, Index>> v(dims.begin(), dims.end());
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    std::string s;
    for (std::size_t i = 0; i < v.size() && i < most; ++i)
        s += (i ? " " : "") + std::to_string(v[i].first) + ":" + std::to_string(v[i].second);
    return s;
}

inline void print_scan(const massact::analysis::ScanResult& r) {
    if (r.vision)
        std::printf("%ld images x %ld tokens (CLS, registers, patches); attn@0 is attention on CLS\n\n", static_cast<long>(r.sequences),
                    static_cast<long>(r.seq_len));
    else
        std::printf("%ld sequences x %ld tokens, perplexity %.4f\n\n", static_cast<long>(r.sequences), static_cast<long>(r.seq_len), r.val_ppl);
    std::printf("layer     top1     top2     top3   median   ratio  top-1 dims (dim:seqs)   pos0  attn@0\n");
    for (std::size_t l = 0; l < r.layers.size(); ++l) {
        const auto& s = r.layers[l];
        double att = 0;
        for (double a : r.attention_on_first_token[l]) att += a;
        att /= std::max<std::size_t>(1, r.attention_on_first_token[l].size());
        const std::string att_s = r.attention_on_first_token[l].empty() ? "-" : fmt(att, 3);  // ("-": no attention in the layer)
        std::printf("%5d %8.2f %8.2f %8.2f %8.3f %7.0f  %-22s %5.2f  %6s\n", s.layer, s.top1_mean, s.top2_mean, s.top3_mean,
                    s.median_mean, s.ratio(), dims_string(s.top1_dims).c_str(), s.top1_pos0_fraction, att_s.c_str());
    }
    std::printf("\nMassive activations: %s\n", r.detector_note.c_str());
    for (const auto& m : r.massive) {
        std::string pos;
        for (const auto& p : m.positions) pos += (pos.empty() ? "" : ", ") + p;
        std::printf("  dim %-5ld from layer %d (%zu layers)  on %s  mean %+.2f, std %.2f%s, %.0fx median, in %.0f%% of sequences\n",
                    static_cast<long>(m.dim), m.first_layer, m.layers.size(), pos.c_str(), m.mean, m.std,
                    m.constant() ? " (constant)" : "", m.ratio, 100 * m.share);
    }
    std::size_t n_heads = 0, without = 0;
    for (const auto& a : r.gu_alpha) n_heads += a.size(), without += a.empty();
    if (n_heads == 0) std::printf("\nAttention sinks: none measured (no layer has attention)\n");
    else std::printf("\nAttention sinks (Gu et al., T=%ld, alpha > %.2f): %.1f%% of heads (%zu of %zu)%s\n", static_cast<long>(r.sink_T),
                r.sink_epsilon, 100 * r.sink_rate, r.sink_heads.size(), n_heads,
                without ? (" (" + std::to_string(without) + " layers without attention: -)").c_str() : "");
    for (std::size_t l = 0; l < r.attention_on_registers.size(); ++l) {
        double att = 0;
        for (double x : r.attention_on_registers[l]) att += x;
        std::printf("%s%.3f%s", l == 0 ? "  attention on the registers per layer (mean over heads): " : " ",
                    att / double(std::max<std::size_t>(1, r.attention_on_registers[l].size())),
                    l + 1 == r.attention_on_registers.size() ? "\n" : "");
    }
    std::string heads;
    for (const auto& h : r.sink_heads) {
        char b[64];
        std::snprintf(b, sizeof b, "%sL%dH%d %.2f", heads.empty() ? "" : ", ", h.layer, h.head, h.alpha);
        heads += b;
    }
    if (!heads.empty()) std::printf("  %s\n", heads.c_str());
}


struct ScanArgs {
    std::string model = default_model();
    DataInput data;
    PixelInput pixels;
    DetectorArgs detector;
    AblateArgs ablate;  // --ablate-*: scan an ablated model
    std::string softmax;
    std::string json;
    Index batch = 8;
    std::string patterns = "columns";  // --patterns columns | full
    std::string precision = "f32";
    bool allow_nonfinite = false;
    Ranks ranks;  // under mpirun: each rank scans its share of the windows, rank 0 merges and writes
};

/// A vision model: the scan over images (carriers cls, register:k, patch).
inline int run_scan_pixels(ScanArgs& a, const massact::Transformer& m) {
    if (a.ablate.layer >= 0 || !a.ablate.dims.empty()) throw Error("--ablate-*: not available for vision models (use massact ablate)");
    massact::PixelBatch px = load_pixels_input(a.pixels, a.model, m);
    if (a.data.max_seqs > 0 && a.data.max_seqs < px.n) {
        px.n = a.data.max_seqs;
        px.data.resize(static_cast<std::size_t>(px.n * px.channels * px.height * px.width));
    }
    auto opt = scan_options(a.detector, a.model);
    opt.batch = a.batch;
    opt.full_patterns = a.patterns == "full";
    opt.hooks.extend(nonfinite_hooks(a.allow_nonfinite, a.model));
    opt.run.attention = parse_softmax(a.softmax);
    Progress bar("scan");
    opt.progress = [&](Index done, Index total) { bar(done, total); };
    const auto r = massact::analysis::scan_pixels(m, px, opt);
    bar.done();
    print_scan(r);
    if (!a.json.empty()) massact::io::write_text_file_atomic(a.json, r.to_json().dump(1) + "\n");
    return 0;
}

inline int run_scan(ScanArgs& a) {
    const massact::Transformer m(a.model);
    if (m.config().is_vision() || a.pixels.given()) return run_scan_pixels(a, m);
    const TokenBatch ids = load_data(a.data, a.model);
    if (a.ranks.size == 1) m.validate(ids);  // (under MPI each rank's forward checks its own share)
    auto opt = scan_options(a.detector, a.model);
    opt.batch = a.batch;
    opt.full_patterns = a.patterns == "full";
    opt.run.precision = massact::kernels::precision_from_name(a.precision, "--precision");
    opt.hooks.extend(nonfinite_hooks(a.allow_nonfinite, a.model));
    Progress bar("scan");
    if (a.ranks.root()) opt.progress = [&](Index done, Index total) { bar(done, total); };
    if (a.ablate.layer >= 0 || !a.ablate.dims.empty()) {
        a.ablate.model = a.model;
        a.ablate.batch = a.batch;
        const Intervention iv = build_ablation(a.ablate, m, ids);
        opt.hooks.extend(massact::analysis::make_hooks({iv}));
        std::printf("scanning with %s, %s, dims %s set by %s\n", iv.site.c_str(), iv.tokens.describe().c_str(),
                    a.ablate.dims.c_str(), a.ablate.mode.c_str());
    }
    opt.run.attention = parse_softmax(a.softmax);  // (opt.run.precision is set above)
    // this rank's contiguous share of the windows; rank 0 merges the partial scans in rank order
    massact::analysis::ScanAccumulator mine;
    const auto [first, last] = a.ranks.share(ids.rows());
    if (last > first) massact::analysis::scan_into(mine, m, ids.middleRows(first, last - first), opt, first);
    const auto parts = gather_bytes(a.ranks, mine.save());
    if (!a.ranks.root()) return 0;
    massact::analysis::ScanAccumulator all;
    for (std::size_t i = 0; i < parts.size(); ++i)
        all.merge(massact::analysis::ScanAccumulator::load(parts[i].data(), parts[i].size(), "partial scan of rank " + std::to_string(i)));
    const auto r = massact::analysis::finalize(all, m.config(), opt);
    bar.done();
    if (a.ranks.size > 1)
        std::printf("%d processes, %ld windows each (about)\n", a.ranks.size, static_cast<long>(ids.rows() / a.ranks.size));
    print_scan(r);
    if (!a.json.empty()) massact::io::write_text_file_atomic(a.json, r.to_json().dump(1) + "\n");
    return 0;
}

inline void add_scan(CLI::App& app, ScanArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("scan", "Outlier statistics per layer, massive activations and attention sinks");
    cmd->add_option("model", a.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    add_data_options(cmd, a.data);
    add_pixel_options(cmd, a.pixels);
    add_detector_options(cmd, a.detector);
    cmd->add_option("--json", a.json, "Write the statistics (keys of tiny-*.stats.json and more) to this file");
    add_batch_option(cmd, a.batch);
    cmd->add_option("--patterns", a.patterns,
                    "columns: sink metrics from the streamed softmax at the keys they read (O(T) memory, any --seq-len); "
                    "full: from materialised [H, T, T] patterns (O(T^2), a check of the former)")
        ->check(CLI::IsMember({"columns", "full"}))
        ->capture_default_str();
    add_precision_option(cmd, a.precision);
    add_softmax_option(cmd, a.softmax);
    add_nonfinite_option(cmd, a.allow_nonfinite);
    cmd->add_option("--ablate-layer", a.ablate.layer, "Scan with an ablation at this block's output (see ablate)");
    cmd->add_option("--ablate-dims", a.ablate.dims, "Dims of the ablation");
    cmd->add_option("--ablate-tokens", a.ablate.tokens, "Tokens of the ablation")->capture_default_str();
    cmd->add_option("--ablate-mode", a.ablate.mode, "Mode of the ablation")->capture_default_str();
    cmd->callback([&] { action = [&] { return run_scan(a); }; });
}

}  // namespace massact_tool

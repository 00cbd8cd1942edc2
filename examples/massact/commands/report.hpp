// massact report [MODEL_DIR] [--data FILE] [--out DIR]: the paper's figures and tables in one command.
// Scan, detection, the zero/mean intervention, attention shift under ablation and injection, super
// weights; writes DIR/report.md, DIR/report.json and PNG figures (gnuplot).
#pragma once

#include "common.hpp"

#include "../../plot/gnuplot.hpp"
#include "../images.hpp"
#include "../input.hpp"
#include "../progress.hpp"
#include "intervene.hpp"
#include "scan.hpp"
#include "stream.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <fstream>

#include <cstdio>
#include <sstream>
#include <sys/stat.h>

namespace massact_tool {

struct ReportArgs {
    std::string model = default_model();
    DataInput data;
    PixelInput pixels;  // vision models
    std::string out = "massact-report";
    std::string prompt = "Summer is warm. Winter is cold.";
    DetectorArgs detector;
    Index batch = 8;
};

namespace report {

constexpr Index kDefaultWindows = 96;        // windows of --data scanned when --max-seqs is not given
constexpr Index kPromptFallbackTokens = 16;  // prompt = the first tokens of the first sequence without a tokenizer
constexpr Index kInjectSequences = 8;        // injection experiment: this many windows...
constexpr Index kInjectLength = 64;          // ... of at most this many tokens, target at the middle
constexpr Index kStreamTokens = 1024;        // streaming section: the first tokens of the data as one stream...
constexpr Index kStreamCache = 64;           // ... through a KV cache of this many tokens

/// Everything the report shows, computed once; JSON, Markdown and figures only read it.
struct Data {
    std::string name;                        // the model folder's last component
    massact::analysis::ScanResult scan;
    massact::analysis::FirstTokenMassive site;  // the massive dims to intervene on (layer -1: none)
    int shown = 0;                           // layer of the 3D figure
    TokenBatch prompt;                       // [1, T] figure prompt
    std::vector<std::string> labels;         // its tokens
    massact::RowMatrixF hidden;              // [T, d] hidden state of the prompt after block `shown`
    std::vector<massact::RowMatrixF> mean_pattern;  // [L] of [T, T], mean over heads
    massact::analysis::Comparison zero, mean, shift;
    massact::analysis::InjectionResult inj;
    std::vector<float> mean_values;
    Index inj_sequences = 0, inj_length = 0;
    std::vector<massact::analysis::SuperWeight> super_weights;
    std::vector<massact::analysis::StreamResult> stream;  // dense, window 0+C, sinks 4+(C-4)
    std::string no_super_weights;  // why super weights were not searched (empty: they were)
    bool massive() const { return site.layer >= 0; }
};

/// The figure prompt: the model's tokenizer on `text`, or the first tokens of the data without one.
inline void figure_prompt(const ReportArgs& a, const TokenBatch& ids, Data& D) {
    std::vector<std::int64_t> v;
    if (massact::text::has_tokenizer(a.model)) {
        const auto tok = massact::text::load_tokenizer(a.model);
        v = tok.encode(a.prompt, true);
        for (auto id : v) D.labels.push_back(tok.label(id));
    } else {
        for (Index t = 0; t < std::min(kPromptFallbackTokens, ids.cols()); ++t) {
            v.push_back(ids(0, t));
            D.labels.push_back(std::to_string(ids(0, t)));
        }
    }
    D.prompt.resize(1, static_cast<Index>(v.size()));
    for (std::size_t i = 0; i < v.size(); ++i) D.prompt(0, static_cast<Index>(i)) = v[i];
}

/// Hidden state of the shown layer and attention patterns (mean over heads) of the prompt.
inline void prompt_activations(const massact::Transformer& m, Data& D) {
    m.validate(D.prompt);
    D.mean_pattern.assign(static_cast<std::size_t>(m.config().num_layers), {});
    massact::Hooks h;
    h.add(massact::analysis::Intervention::resid_post(D.shown), [&](massact::Activation& act) { D.hidden = act.sequence(0); });
    h.add_if_present("*attn.hook_pattern", [&](massact::Activation& act) {
        const Index H = act.shape[1], T = act.shape[2];
        massact::RowMatrixF P = massact::RowMatrixF::Zero(T, T);
        for (Index hh = 0; hh < H; ++hh) P += massact::RowMap<float>(act.data + hh * T * T, T, T);
        D.mean_pattern[static_cast<std::size_t>(act.layer)] = P / static_cast<float>(H);
    });
    m.forward(D.prompt, h);
}

/// Sun et al. Table 3 (zero / mean), the attention shift on the prompt, and injection into a later token.
inline void interventions(const massact::Transformer& m, const TokenBatch& ids, Index batch, Data& D) {
    using massact::analysis::Intervention;
    Intervention iz;
    iz.site = Intervention::resid_post(D.site.layer);
    iz.tokens = massact::analysis::TokenSelection::first();
    iz.dims = D.site.dims;
    iz.mode = Intervention::Mode::Zero;
    Intervention im = iz;
    im.mode = Intervention::Mode::Mean;
    im.values = D.mean_values = massact::analysis::dataset_mean(m, ids, im, batch);
    massact::analysis::CompareOptions fast;
    fast.tokens = {};
    fast.decomposition = false;
    fast.batch = batch;
    D.zero = massact::analysis::compare(m, ids, massact::analysis::make_hooks({iz}), fast);
    D.mean = massact::analysis::compare(m, ids, massact::analysis::make_hooks({im}), fast);
    D.shift = massact::analysis::compare(m, D.prompt, massact::analysis::make_hooks({iz}));
    D.inj_length = std::min(kInjectLength, ids.cols());
    D.inj_sequences = std::min(kInjectSequences, ids.rows());
    const TokenBatch small = ids.topRows(D.inj_sequences).leftCols(D.inj_length);
    D.inj = massact::analysis::inject(m, small, D.site.layer, 0, D.inj_length / 2 - 2, D.site.dims, batch);
}

/// StreamingLLM at small scale: the data as one stream (BOS + the text, or the windows one after another),
/// dense and through a cache of kStreamCache tokens without and with 4 sink tokens.
inline void streaming(const ReportArgs& a, const massact::Transformer& m, const TokenBatch& ids, Data& D) {
    std::vector<std::int64_t> stream;
    if (!a.data.data.empty() && massact::text::has_tokenizer(a.model))
        stream = massact::text::load_tokenizer(a.model).encode(read_text_file(a.data.data, "--data"), true);
    else
        stream.assign(ids.data(), ids.data() + ids.size());
    Index n = std::min<Index>(kStreamTokens, static_cast<Index>(stream.size()));
    if (m.config().positions == massact::PositionKind::Learned) n = std::min<Index>(n, m.config().max_positions);
    stream.resize(static_cast<std::size_t>(n));
    if (n < 2) return;
    auto runs = compare_runs(std::min(kStreamCache, n));
    runs.pop_back();  // recompute: W forwards per token, left to `massact stream --compare`
    runs.erase(runs.begin() + 2);  // 1 sink
    Progress bar("streaming");
    for (auto& o : runs) {
        o.progress = [&bar](Index d, Index t) { bar(d, t); };
        D.stream.push_back(massact::analysis::stream_nll(m, stream, o));
    }
}

inline Data compute(ReportArgs& a, const massact::Transformer& m) {
    Data D;
    D.name = a.model.substr(a.model.find_last_of('/') + 1);
    if (a.data.data.empty() && a.data.tokens.ids.empty() && a.data.tokens.ids_file.empty() && a.data.tokens.prompt.empty() &&
        a.data.tokens.text_file.empty())
        a.data.data = default_data();
    if (a.data.max_seqs == 0) a.data.max_seqs = kDefaultWindows;
    const TokenBatch ids = load_data(a.data, a.model);
    m.validate(ids);
    auto opt = scan_options(a.detector, a.model);
    opt.batch = a.batch;
    Progress bar("report");
    opt.progress = [&](Index d, Index t) { bar(d, t); };
    D.scan = massact::analysis::scan(m, ids, opt);
    bar.done();
    D.site = massact::analysis::first_token_massive(D.scan);
    D.shown = D.massive() ? D.site.layer : massact::analysis::most_outlying_layer(D.scan);
    figure_prompt(a, ids, D);
    prompt_activations(m, D);
    if (D.massive()) interventions(m, ids, a.batch, D);
    // Mixtures of experts have one down_proj per expert: find_super_weights does not search them.
    if (m.config().moe()) D.no_super_weights = "the MLPs are a mixture of experts (one down projection per expert)";
    else if (!m.config().has_mlp) D.no_super_weights = "the blocks have no MLP (no down projection)";
    else D.super_weights = massact::analysis::find_super_weights(m, D.prompt);
    streaming(a, m, ids, D);
    return D;
}

inline nlohmann::json to_json(const ReportArgs& a, const Data& D) {
    nlohmann::json J;
    J["model"] = a.model;
    J["data"] = a.data.data.empty() ? "token input" : a.data.data;
    J["prompt"] = a.prompt;
    J["prompt_tokens"] = D.labels;
    J["scan"] = D.scan.to_json();
    J["figure_layer"] = D.shown;
    if (D.massive()) {
        J["intervention"] = {{"layer", D.site.layer}, {"massive_dims", D.site.dims}, {"tokens", "first token"},
                             {"mean_values", D.mean_values}, {"ppl_original", D.zero.ppl_original},
                             {"ppl_zero", D.zero.ppl_intervened}, {"ppl_mean", D.mean.ppl_intervened},
                             {"kl_zero", D.zero.kl_mean}, {"kl_mean", D.mean.kl_mean}};
        J["ablation_on_prompt"] = comparison_json(D.shift);
        J["injection"] = {{"layer", D.site.layer}, {"from", 0}, {"to", D.inj.to}, {"dims", D.site.dims},
                          {"sequences", D.inj_sequences}, {"seq_len", D.inj_length}, {"median_factor", D.inj.median_factor},
                          {"attention_on_target_before", D.inj.mean_before}, {"attention_on_target_after", D.inj.mean_after}};
    }
    J["streaming"] = nlohmann::json::array();
    for (const auto& r : D.stream) {
        nlohmann::json s = stream_json(r);
        s.erase("nll");
        s.erase("sink_attention");
        s["label"] = run_label(r.options);
        J["streaming"].push_back(s);
    }
    J["super_weights"] = nlohmann::json::array();
    for (const auto& s : D.super_weights)
        J["super_weights"].push_back({{"layer", s.layer}, {"row", s.row}, {"col", s.col}, {"token", s.token}, {"input", s.input},
                                      {"output", s.output}, {"weight", s.weight}, {"contribution", s.contribution}});
    return J;
}

struct Figures {
    bool gnuplot = false;
    std::vector<std::string> made, skipped;
};

inline Figures draw(const std::string& out, const Data& D) {
    Figures F;
    F.gnuplot = massact_plot::gnuplot_available();
    auto figure = [&](const std::string& fname, const std::function<bool(const massact_plot::Figure&)>& draw_one) {
        const massact_plot::Figure f{out, fname};
        if (F.gnuplot && draw_one(f)) F.made.push_back(fname + ".png");
        else F.skipped.push_back(fname + ".png");
    };
    figure("fig1_magnitudes_3d", [&](const auto& f) {
        return massact_plot::magnitude_3d(f, D.hidden, D.labels, D.shown, D.name, D.site.layer == D.shown ? D.site.dims : std::vector<Index>{});
    });
    figure("fig2_layer_magnitudes", [&](const auto& f) { return massact_plot::layer_magnitudes(f, D.scan, D.name); });
    figure("fig3_attention", [&](const auto& f) { return massact_plot::attention_maps(f, D.mean_pattern, D.labels, D.name); });
    if (!D.stream.empty())
        figure("fig7_streaming", [&](const auto& f) {
            std::vector<massact_plot::StreamCurve> curves;
            for (const auto& r : D.stream) curves.push_back({run_label(r.options), r.nll, r.sink_attention});
            return massact_plot::stream_curves(f, curves, std::max<Index>(8, static_cast<Index>(D.stream[0].nll.size()) / 32),
                                               D.name + ": one stream through a KV cache");
        });
    if (!D.massive()) {
        F.skipped.push_back("fig4_perplexity.png (no massive activation to intervene on)");
        F.skipped.push_back("fig5_attention_shift.png (no massive activation to intervene on)");
        return F;
    }
    std::string what = "dims";
    for (Index d : D.site.dims) what += " " + std::to_string(d);
    what += " of the first token after block " + std::to_string(D.site.layer) + " are set to zero or their mean";
    figure("fig4_perplexity", [&](const auto& f) {
        return massact_plot::perplexity_bars(f, D.zero.ppl_original, D.zero.ppl_intervened, D.mean.ppl_intervened, what);
    });
    const auto before = massact::analysis::Comparison::head_mean(D.shift.attn_original)[0];
    const auto after = massact::analysis::Comparison::head_mean(D.shift.attn_intervened)[0];
    figure("fig5_attention_shift", [&](const auto& f) {
        return massact_plot::attention_shift(
            f,
            {{"on the first token (prompt)", before},
             {"... after zeroing its massive dims at layer " + std::to_string(D.site.layer), after},
             {"on token " + std::to_string(D.inj.to) + " (data)", D.inj.mean_before},
             {"... after injecting the first token's massive dims into it", D.inj.mean_after}},
            D.name + ": attention mass on sink tokens, before and after ablation / injection");
    });
    return F;
}

inline void markdown_layers(std::ostream& md, const Data& D) {
    const auto& scan = D.scan;
    md << "## Residual stream per layer\n\nMean over sequences of the largest and median |x| of each block's output.\n\n";
    md << "| layer | top 1 | top 2 | top 3 | median | top1 / median | top-1 dim (sequences) | top 1 at position 0 | attention on first token |\n";
    md << "|---:|---:|---:|---:|---:|---:|---|---:|---:|\n";
    for (std::size_t l = 0; l < scan.layers.size(); ++l) {
        const auto& s = scan.layers[l];
        double att = 0;
        for (double v : scan.attention_on_first_token[l]) att += v;
        att /= double(std::max<std::size_t>(1, scan.attention_on_first_token[l].size()));
        md << "| " << s.layer << " | " << fmt(s.top1_mean, 2) << " | " << fmt(s.top2_mean, 2) << " | " << fmt(s.top3_mean, 2) << " | "
           << fmt(s.median_mean) << " | " << fmt(s.ratio(), 0) << " | " << dims_string(s.top1_dims) << " | "
           << fmt(s.top1_pos0_fraction, 2) << " | " << (scan.attention_on_first_token[l].empty() ? "- (no attention)" : fmt(att)) << " |\n";
    }
    md << "\n## Massive activations\n\n" << scan.detector_note << "\n\n";
    if (scan.massive.empty()) return;
    md << "| dim | first layer | layers | carried by | mean | std | ratio to median | sequences |\n|---:|---:|---|---|---:|---:|---:|---:|\n";
    for (const auto& ma : scan.massive) {
        std::string ls, ps;
        for (int l : ma.layers) ls += (ls.empty() ? "" : ",") + std::to_string(l);
        for (const auto& p : ma.positions) ps += (ps.empty() ? "" : ", ") + p;
        md << "| " << ma.dim << " | " << ma.first_layer << " | " << ls << " | " << ps << " | " << fmt(ma.mean, 2) << " | "
           << fmt(ma.std, 2) << " | " << fmt(ma.ratio, 0) << " | " << fmt(100 * ma.share, 0) << "% |\n";
    }
}

inline void markdown_interventions(std::ostream& md, const Data& D) {
    md << "\n## Interventions (Sun et al., Table 3)\n\n";
    if (!D.massive()) {
        md << "No massive activation was detected, so there is nothing to ablate.\n";
        return;
    }
    md << "Dims";
    for (Index d : D.site.dims) md << " " << d;
    md << " of the first token, at the output of block " << D.site.layer << ".\n\n| | perplexity | KL to original |\n|---|---:|---:|\n";
    md << "| original | " << fmt(D.zero.ppl_original, 4) << " | 0 |\n| set to zero | " << fmt(D.zero.ppl_intervened, 4) << " | "
       << fmt(D.zero.kl_mean, 4) << " |\n| set to mean | " << fmt(D.mean.ppl_intervened, 4) << " | " << fmt(D.mean.kl_mean, 6) << " |\n\n";
    const auto before = massact::analysis::Comparison::head_mean(D.shift.attn_original)[0];
    const auto after = massact::analysis::Comparison::head_mean(D.shift.attn_intervened)[0];
    md << "Attention on the first token of the prompt (mean over heads and later queries), and on token " << D.inj.to
       << " of the data windows when the first token's massive dims are injected into it (median factor over sequences):\n\n";
    md << "| layer | first token | after zeroing | token " << D.inj.to << " | after injection | factor |\n|---:|---:|---:|---:|---:|---:|\n";
    for (std::size_t l = 0; l < before.size(); ++l)
        if (!D.inj.attention[l])
            md << "| " << l << " | - | - | - | - | - (no attention in this layer) |\n";
        else
            md << "| " << l << " | " << fmt(before[l]) << " | " << fmt(after[l]) << " | " << fmt(D.inj.mean_before[l], 4) << " | "
               << fmt(D.inj.mean_after[l], 4) << " | " << fmt(D.inj.median_factor[l], 2) << " |\n";
}

inline void markdown_streaming(std::ostream& md, const Data& D) {
    if (D.stream.empty()) return;
    const std::size_t n = D.stream[0].nll.size();
    md << "\n\n## Streaming with a KV cache (Xiao et al.)\n\nThe data as one stream of " << n + 1
       << " tokens; each token predicted from what the policy keeps (`massact stream --compare` adds recompute and 1 sink).\n\n";
    md << "| policy | perplexity | log ppl, first quarter | log ppl, second half | attention on the cache's first tokens |\n"
          "|---|---:|---:|---:|---:|\n";
    for (const auto& r : D.stream)
        md << "| " << run_label(r.options) << " | " << fmt(r.ppl, 3) << " | " << fmt(mean_of(r.nll, 0, n / 4)) << " | "
           << fmt(mean_of(r.nll, n / 2, n)) << " | " << fmt(mean_of(r.sink_attention, n / 2, n)) << " |\n";
}

inline void markdown_sinks_and_weights(std::ostream& md, const Data& D) {
    md << "\n## Attention sinks (Gu et al.)\n\n" << fmt(100 * D.scan.sink_rate, 1) << "% of heads have alpha > "
       << D.scan.sink_epsilon << " (T = " << D.scan.sink_T << "):";
    for (const auto& s : D.scan.sink_heads) md << " L" << s.layer << "H" << s.head << " (" << fmt(s.alpha, 2) << ")";
    markdown_streaming(md, D);
    md << "\n## Super weights (Yu et al.)\n\n";
    if (!D.no_super_weights.empty()) md << "Not searched: " << D.no_super_weights << ".\n";
    else if (D.super_weights.empty()) md << "No down projection has both an input and an output spike above 50 on the prompt.\n";
    for (const auto& s : D.super_weights)
        md << "- layer " << s.layer << ", `mlp.down_proj[" << s.row << ", " << s.col << "]` = " << fmt(s.weight, 4) << ": input channel "
           << s.col << " is " << fmt(s.input, 1) << " at position " << s.token << ", output dim " << s.row << " is " << fmt(s.output, 1)
           << ", of which this weight contributes " << fmt(s.contribution, 1) << ".\n";
}

inline std::string markdown(const ReportArgs& a, const massact::ModelConfig& c, const Data& D, const std::string& data,
                            const Figures& F) {
    std::ostringstream md;
    md << "# massact report: " << D.name << "\n\n";
    md << "Model `" << a.model << "` (" << c.model_type << ", " << c.num_layers << " layers, d = " << c.hidden_size << ", "
       << c.num_heads << " heads). Data: " << data << ", " << D.scan.sequences << " windows of " << D.scan.seq_len
       << " tokens. Perplexity " << fmt(D.scan.val_ppl, 4) << ".\n\n";
    markdown_layers(md, D);
    markdown_interventions(md, D);
    markdown_sinks_and_weights(md, D);
    md << "\n## Figures\n\n";
    for (const auto& f : F.made) md << "![" << f << "](" << f << ")\n\n";
    if (!F.skipped.empty()) {
        md << "Skipped:";
        for (const auto& f : F.skipped) md << " " << f;
        md << (F.gnuplot ? "\n" : "\n\ngnuplot was not found: install it (`sudo apt-get install gnuplot-nox`) and run the report again.\n");
    }
    return md.str();
}

}  // namespace report

/// A vision model's report: the scan over the images (carriers cls, register:k, patch), zero and mean
/// ablations of its registers (or CLS), and the per-token norm maps of the last block (figure 8).
inline int run_report_vision(ReportArgs& a, const massact::Transformer& m) {
    const massact::PixelBatch px = load_pixels_input(a.pixels, a.model, m);
    const auto& c = m.config();
    auto opt = scan_options(a.detector, a.model);
    opt.batch = a.batch;
    const auto scan = massact::analysis::scan_pixels(m, px, opt);
    const Index T = c.vision.tokens(px.height, px.width), R = c.vision.registers, P = c.vision.patch_size;
    const Index gh = px.height / P, gw = px.width / P, d = c.hidden_size;
    massact::analysis::VisionAblation va;
    const std::string which = R > 0 ? "registers" : c.vision.cls ? "cls" : "patches";  // (SigLIP: no CLS)
    const Index first = c.vision.first_patch(), reg0 = c.vision.cls ? 1 : 0;
    va.tokens = massact::analysis::vision_token_positions(c, which, T);
    const auto abl = massact::analysis::vision_ablation(m, px, va, {"zero", "mean"});
    // per-token norms of the last block's output
    std::vector<float> last;
    massact::Hooks h;
    h.add("blocks." + std::to_string(c.num_layers - 1) + ".hook_resid_post", [&](massact::Activation& x) { last.assign(x.data, x.data + x.numel()); });
    massact::Workspace w;
    m.run_pixels(px, w, h);
    auto norm = [&](Index b, Index t) { return Eigen::Map<const Eigen::VectorXf>(last.data() + (b * T + t) * d, d).norm(); };
    std::vector<massact::RowMatrixF> maps;
    std::vector<std::string> titles;
    nlohmann::json norms = nlohmann::json::array();
    for (Index b = 0; b < std::min<Index>(px.n, 8); ++b) {
        massact::RowMatrixF M(gh, gw);
        double patch_mean = 0;
        for (Index i = 0; i < gh * gw; ++i) patch_mean += (M(i / gw, i % gw) = norm(b, first + i)) / double(gh * gw);
        std::string t = "image " + std::to_string(b) + (c.vision.cls ? ": CLS " + std::to_string(static_cast<int>(std::lround(norm(b, 0)))) : ":");
        std::vector<double> regs;
        for (Index k = 0; k < R; ++k) regs.push_back(norm(b, reg0 + k));
        if (R > 0) t += ", registers up to " + std::to_string(static_cast<int>(std::lround(*std::max_element(regs.begin(), regs.end()))));
        t += ", patches " + std::to_string(static_cast<int>(std::lround(patch_mean)));
        maps.push_back(M);
        titles.push_back(t);
        norms.push_back({{"image", b}, {"cls", c.vision.cls ? nlohmann::json(norm(b, 0)) : nlohmann::json(nullptr)}, {"registers", regs},
                         {"patch_mean", patch_mean}});
    }
    ::mkdir(a.out.c_str(), 0755);
    struct stat st {};
    if (::stat(a.out.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throw Error("--out: cannot create folder " + a.out);
    const massact_plot::Figure fig{a.out, "fig8_token_norms"};
    const bool drawn = massact_plot::gnuplot_available() &&
                       massact_plot::token_norm_maps(fig, maps, titles, a.model + ": |x| per patch token, last block (Darcet et al.)");
    nlohmann::json J = {{"model", a.model}, {"model_type", c.model_type}, {"images", px.n}, {"scan", scan.to_json()},
                        {"token_norms_last_block", norms}, {"figures", drawn ? nlohmann::json::array({fig.png()}) : nlohmann::json::array()}};
    std::ostringstream md;
    md << "# massact report: " << a.model << " (" << c.model_type << ")\n\n" << px.n << " images of " << px.height << "x" << px.width
       << " pixels, " << T << " tokens each (" << (c.vision.cls ? "CLS, " : "no CLS, ") << R << " registers, " << gh * gw << " patches).\n\n## Massive activations\n\n"
       << scan.detector_note << "\n\n";
    for (const auto& mv : scan.massive) {
        md << "- dim " << mv.dim << " from layer " << mv.first_layer << " on";
        for (const auto& p : mv.positions) md << " " << p;
        md << ", mean " << mv.mean << "\n";
    }
    md << "\n## Ablating the " << which << " (every layer; Sun et al.'s Fix-Reg-Mean)\n\n| mode | pooled cosine | pooled norm ratio | CLS cosine |\n|---|---:|---:|---:|\n";
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& r : abl) {
        md << "| " << r.mode << " | " << r.pooled_cosine << " | " << r.pooled_norm_ratio << " | " << r.cls_cosine << " |\n";
        rows.push_back({{"mode", r.mode}, {"pooled_cosine", r.pooled_cosine}, {"pooled_norm_ratio", r.pooled_norm_ratio}, {"cls_cosine", r.cls_cosine}});
    }
    J["ablation"] = rows;
    md << "\n## Token norms (last block)\n\n" << (drawn ? "![token norms](fig8_token_norms.png)\n" : "(figure skipped: gnuplot not found)\n");
    massact::io::write_text_file_atomic(a.out + "/report.json", J.dump(1) + "\n");
    massact::io::write_text_file_atomic(a.out + "/report.md", md.str());
    print_scan(scan);
    std::printf("\nwrote %s/report.md, %s/report.json%s\n", a.out.c_str(), a.out.c_str(), drawn ? " and fig8_token_norms.png" : "");
    return 0;
}

inline int run_report(ReportArgs& a) {
    const massact::Transformer m(a.model);
    if (m.config().is_vision() || a.pixels.given()) return run_report_vision(a, m);
    ::mkdir(a.out.c_str(), 0755);
    struct stat st {};
    if (::stat(a.out.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throw Error("--out: cannot create folder " + a.out);
    const report::Data D = report::compute(a, m);
    const report::Figures F = report::draw(a.out, D);
    nlohmann::json J = report::to_json(a, D);
    J["figures"] = F.made;
    J["skipped_figures"] = F.skipped;
    massact::io::write_text_file_atomic(a.out + "/report.json", J.dump(1) + "\n");
    massact::io::write_text_file_atomic(a.out + "/report.md", report::markdown(a, m.config(), D, J["data"].get<std::string>(), F));

    print_scan(D.scan);
    if (D.massive())
        std::printf("\nperplexity original %.4f, massive dims set to zero %.4f, set to mean %.4f\n", D.zero.ppl_original,
                    D.zero.ppl_intervened, D.mean.ppl_intervened);
    std::printf("\nwrote %s/report.md, %s/report.json and %zu figures\n", a.out.c_str(), a.out.c_str(), F.made.size());
    if (!F.gnuplot) std::printf("skipped %zu figures: gnuplot not found (sudo apt-get install gnuplot-nox)\n", F.skipped.size());
    else if (!F.skipped.empty()) std::printf("skipped: %zu figures (see report.md)\n", F.skipped.size());
    return 0;
}

inline void add_report(CLI::App& app, ReportArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("report", "Scan, interventions and figures of the bundled (or any) model in one command");
    cmd->add_option("model", a.model, "Hugging Face model directory or .gguf file")->capture_default_str();
    add_data_options(cmd, a.data);
    add_pixel_options(cmd, a.pixels);
    cmd->add_option("--out", a.out, "Output folder")->capture_default_str();
    cmd->add_option("--figure-prompt", a.prompt, "Short prompt for the 3D and attention figures")->capture_default_str();
    add_detector_options(cmd, a.detector);
    add_batch_option(cmd, a.batch);
    cmd->callback([&] { action = [&] { return run_report(a); }; });
}

}  // namespace massact_tool

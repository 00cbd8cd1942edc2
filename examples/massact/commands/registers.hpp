// massact registers MODEL --images ...: test-time registers (Jiang et al. 2025) for a vision model trained without
// register tokens: the MLP neurons that make its high-norm patches, moved into an appended token; patch-norm maps
// before and after.
#pragma once

#include "common.hpp"

#include "../../plot/gnuplot.hpp"
#include "../images.hpp"

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>

namespace massact_tool {

struct RegistersArgs {
    std::string model;
    PixelInput pixels;
    massact::analysis::TestTimeRegisterOptions opt;
    std::string json, figure;
};

inline int run_registers(RegistersArgs& a) {
    const massact::Transformer m(a.model);
    const massact::PixelBatch px = load_pixels_input(a.pixels, a.model, m);
    const auto r = massact::analysis::test_time_registers(m, px, a.opt);
    std::printf("%ld images, %ld patches each\n\nlargest patch norm / median patch norm per block (mean over images):", static_cast<long>(px.n),
                static_cast<long>(r.patches / px.n));
    for (double v : r.max_ratio_per_layer) std::printf(" %.2f", v);
    std::printf("\n");
    if (r.layer >= 0) {
        std::printf("\nregister neurons (mean activation on the high-norm patches vs the other patches):\n");
        for (std::size_t i = 0; i < r.ranked.size() && i < 2 * r.neurons.size(); ++i) {
            const auto& n = r.ranked[i];
            std::printf("  %s block %d unit %ld: %.3f vs %.3f\n", i < r.neurons.size() ? "moved" : "     ", n.layer, static_cast<long>(n.neuron),
                        n.at_outliers, n.elsewhere);
        }
        auto row = [](const char* what, const massact::analysis::TokenNorms& b, const massact::analysis::TokenNorms& t) {
            double reg = 0;
            for (double e : t.extra) reg += e / double(t.extra.size());
            std::printf("%-24s %10.2f -> %-8.2f  register norm %.2f\n", what, b.max_ratio(), t.max_ratio(), reg);
        };
        std::printf("\npatch max / median      before -> after\n");
        row(("block " + std::to_string(r.layer) + " (detection)").c_str(), r.before, r.after);
        row("last block", r.before_last, r.after_last);
        std::printf("pooled feature cosine to the original %.4f, CLS %.4f\n", r.pooled_cosine, r.cls_cosine);
    }
    std::printf("\n%s\n", r.note.c_str());
    if (!a.figure.empty() && r.layer >= 0) {
        std::vector<massact::RowMatrixF> maps;
        std::vector<std::string> titles;
        for (Index i = 0; i < std::min<Index>(px.n, 2); ++i)
            for (int after = 0; after < 2; ++after) {
                const auto& t = after ? r.after_last : r.before_last;
                maps.push_back(massact::ConstRowMap<double>(t.patches.row(i).data(), t.grid_h, t.grid_w).cast<float>());
                std::string title = "image " + std::to_string(i) + (after ? " with test-time register" : " original") + ": CLS " +
                                    fmt(t.cls[static_cast<std::size_t>(i)], 1);
                if (after) title += ", register " + fmt(t.extra[static_cast<std::size_t>(i)], 1);
                titles.push_back(title);
            }
        massact_plot::write_figure(a.figure, [&](const massact_plot::Figure& f) {
            return massact_plot::token_norm_maps(f, maps, titles, a.model + ": |x| per patch after the last block (Jiang et al.)");
        });
    }
    if (!a.json.empty()) massact::io::write_text_file_atomic(a.json, r.to_json().dump(1) + "\n");
    return 0;
}

inline void add_registers(CLI::App& app, RegistersArgs& a, std::function<int()>& action) {
    auto* cmd = app.add_subcommand("registers", "Test-time registers (Jiang et al. 2025): move the neurons behind a vision model's "
                                                "high-norm patches into an appended token");
    cmd->add_option("model", a.model, "Hugging Face vision model directory")->required();
    add_pixel_options(cmd, a.pixels);
    cmd->add_option("--layer", a.opt.layer, "Block where the high-norm patches are found (default: the first where they appear)");
    cmd->add_option("--outlier-ratio", a.opt.outlier_ratio, "A high-norm patch: norm at least this times its image's median")
        ->capture_default_str();
    cmd->add_option("--neurons", a.opt.top_k, "Register neurons moved")->capture_default_str();
    cmd->add_option("--registers", a.opt.registers, "Test-time registers appended")->capture_default_str();
    cmd->add_option("--json", a.json, "Write the neurons and the patch-norm maps to this file");
    cmd->add_option("--figure", a.figure, "Write the patch-norm maps before and after (PNG, gnuplot)");
    cmd->add_option("--batch", a.opt.batch, "Images per forward")->capture_default_str();
    cmd->callback([&] { action = [&] { return run_registers(a); }; });
}

}  // namespace massact_tool

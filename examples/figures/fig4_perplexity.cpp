// Figure 4 (Sun et al., Table 3): perplexity when the massive activations of the first token are set
// to zero or to their mean over the data, at the layer where they appear.
#include "common.hpp"

int main(int argc, char** argv) {
    const auto a = example::args(argc, argv);
    const massact::Transformer model(a.model);
    const auto tok = massact::text::load_tokenizer(a.model);
    const massact::TokenBatch ids = example::windows(tok);
    const auto site = example::massive_site(model, tok);
    if (site.dims.empty()) {
        std::printf("no massive activation on the first token: nothing to set to zero or to its mean\n");
        return 1;
    }

    using massact::analysis::Intervention;
    Intervention zero;
    zero.site = Intervention::resid_post(site.layer);               // output of the block where they appear
    zero.tokens = massact::analysis::TokenSelection::first();       // the first token
    zero.dims = site.dims;                                          // what the scan detects
    zero.mode = Intervention::Mode::Zero;
    Intervention mean = zero;
    mean.mode = Intervention::Mode::Mean;
    mean.values = massact::analysis::dataset_mean(model, ids, mean);

    const double original = massact::analysis::perplexity(model, ids).ppl;
    const double zeroed = massact::analysis::perplexity(model, ids, massact::analysis::make_hooks({zero})).ppl;
    const double meaned = massact::analysis::perplexity(model, ids, massact::analysis::make_hooks({mean})).ppl;
    std::printf("perplexity: original %.3f, zero %.3f, mean %.3f\n", original, zeroed, meaned);
    return massact_plot::perplexity_bars({a.out, "fig4_perplexity"}, original, zeroed, meaned,
                                         "the first token's massive dims after block " + std::to_string(site.layer) +
                                             " are set to zero or their mean")
               ? 0
               : 1;
}

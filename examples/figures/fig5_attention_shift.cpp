// Figure 5: attention mass on sink tokens per layer, before and after (a) zeroing the first token's
// massive dims where they appear (found by a scan) and (b) injecting them into token 30 of 8 windows of 64 tokens.
#include "common.hpp"

int main(int argc, char** argv) {
    const auto a = example::args(argc, argv);
    const massact::Transformer model(a.model);
    const auto tok = massact::text::load_tokenizer(a.model);
    std::vector<std::string> labels;
    const massact::TokenBatch prompt = example::prompt(tok, labels);
    const auto site = example::massive_site(model, tok);
    if (site.dims.empty()) {
        std::printf("no massive activation on the first token: nothing to ablate or inject\n");
        return 1;
    }
    const std::vector<massact::Index>& dims = site.dims;

    using massact::analysis::Intervention;
    Intervention zero;
    zero.site = Intervention::resid_post(site.layer);
    zero.dims = dims;
    const auto c = massact::analysis::compare(model, prompt, massact::analysis::make_hooks({zero}));  // tracks token 0
    const auto before = massact::analysis::Comparison::head_mean(c.attn_original)[0];
    const auto after = massact::analysis::Comparison::head_mean(c.attn_intervened)[0];

    const massact::TokenBatch data = example::windows(tok, 8).leftCols(64);
    const auto inj = massact::analysis::inject(model, data, site.layer, 0, 30, dims);
    for (std::size_t l = 0; l < before.size(); ++l)
        std::printf("layer %zu: on <s> %.3f -> %.3f | on token 30 %.4f -> %.4f (x%.2f)\n", l, before[l], after[l],
                    inj.mean_before[l], inj.mean_after[l], inj.median_factor[l]);
    return massact_plot::attention_shift({a.out, "fig5_attention_shift"},
                                         {{"on <s>", before}, {"on <s> after zeroing its massive dims", after},
                                          {"on token 30", inj.mean_before}, {"on token 30 after injection", inj.mean_after}},
                                         "attention on sink tokens, before and after ablation / injection")
               ? 0
               : 1;
}

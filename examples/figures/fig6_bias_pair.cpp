// Figure 6 (Sun et al., Sec. 6): a model trained with an explicit attention bias (tiny-llama-kvbias)
// no longer needs a large massive activation for its sink; the bias slot takes the attention instead.
// Usage: fig6_bias_pair [BASELINE_DIR KVBIAS_DIR [OUT_DIR]]
#include "common.hpp"

int main(int argc, char** argv) {
    const std::string models = std::string(MASSACT_DEFAULT_MODEL) + "/..";
    const std::string dir_a = argc > 2 ? argv[1] : models + "/tiny-llama-baseline";
    const std::string dir_b = argc > 2 ? argv[2] : models + "/tiny-llama-kvbias";
    const std::string out = argc > 3 ? argv[3] : ".";
    const massact::Transformer a(dir_a), b(dir_b);
    const auto tok = massact::text::load_tokenizer(dir_a);  // the pair shares it
    const massact::TokenBatch ids = example::windows(tok);

    const auto pair = massact::analysis::compare_models(a, ids, b, ids);
    for (std::size_t l = 0; l < pair.a.layers.size(); ++l)
        std::printf("layer %zu: top-1 %.1f vs %.1f, attention on the bias slot %.3f\n", l, pair.a.layers[l].top1_mean,
                    pair.b.layers[l].top1_mean, massact::analysis::ModelPair::head_mean(pair.b.attention_on_bias_slot[l]));
    return massact_plot::model_pair({out, "fig6_bias_pair"}, pair, "baseline", "kv-bias") ? 0 : 1;
}

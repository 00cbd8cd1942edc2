// Figure 2: top-1/2/3 and median |x| of the residual stream per layer, mean over 32 windows of val.txt.
// The jump at layer 2 is where the massive activation appears.
#include "common.hpp"

int main(int argc, char** argv) {
    const auto a = example::args(argc, argv);
    const massact::Transformer model(a.model);
    const auto tok = massact::text::load_tokenizer(a.model);
    const massact::TokenBatch ids = example::windows(tok);

    const auto result = massact::analysis::scan(model, ids);  // streaming: O(layers x d) memory
    for (const auto& l : result.layers)
        std::printf("layer %d: top1 %.2f median %.3f (%.0fx)\n", l.layer, l.top1_mean, l.median_mean, l.ratio());
    return massact_plot::layer_magnitudes({a.out, "fig2_layer_magnitudes"}, result, example::model_name(a.model)) ? 0 : 1;
}

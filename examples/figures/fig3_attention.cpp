// Figure 3: attention patterns (mean over heads) of every layer for a short prompt. Hooking
// attn.hook_pattern makes the model materialise [N, H, T, T]; the first column is the sink.
#include "common.hpp"

int main(int argc, char** argv) {
    const auto a = example::args(argc, argv);
    const massact::Transformer model(a.model);
    const auto tok = massact::text::load_tokenizer(a.model);
    std::vector<std::string> labels;
    const massact::TokenBatch ids = example::prompt(tok, labels);

    std::vector<massact::RowMatrixF> mean(static_cast<std::size_t>(model.config().num_layers));
    massact::Hooks hooks;
    hooks.add("*attn.hook_pattern", [&](massact::Activation& p) {  // [1, H, T, T]
        const massact::Index H = p.shape[1], T = p.shape[2];
        massact::RowMatrixF sum = massact::RowMatrixF::Zero(T, T);
        for (massact::Index h = 0; h < H; ++h) sum += massact::RowMap<float>(p.data + h * T * T, T, T);
        mean[static_cast<std::size_t>(p.layer)] = sum / static_cast<float>(H);
    });
    model.forward(ids, hooks);
    for (std::size_t l = 0; l < mean.size(); ++l)
        std::printf("layer %zu: attention on <s> (mean over queries) %.3f\n", l, mean[l].col(0).mean());
    return massact_plot::attention_maps({a.out, "fig3_attention"}, mean, labels, example::model_name(a.model)) ? 0 : 1;
}

// Figure 1 of Sun et al.: the magnitudes of one layer's hidden state for a short prompt.
// A scan finds the layer where the first token's massive activations appear and their dims; a hook on
// that layer's hook_resid_post copies the prompt's state [T, d]; the massive dims are drawn in red.
#include "common.hpp"

int main(int argc, char** argv) {
    const auto a = example::args(argc, argv);
    const massact::Transformer model(a.model);
    const auto tok = massact::text::load_tokenizer(a.model);
    std::vector<std::string> labels;
    const massact::TokenBatch ids = example::prompt(tok, labels);
    const auto site = example::massive_site(model, tok);

    massact::RowMatrixF state;  // [T, d]
    massact::Hooks hooks;
    hooks.add(massact::analysis::Intervention::resid_post(site.layer), [&](massact::Activation& x) { state = x.sequence(0); });
    model.forward(ids, hooks);

    massact::Index t, d;
    state.cwiseAbs().maxCoeff(&t, &d);
    std::printf("largest |x| after block %d: %.1f at token %ld (%s), dim %ld\n", site.layer, state(t, d), static_cast<long>(t),
                labels[static_cast<std::size_t>(t)].c_str(), static_cast<long>(d));
    return massact_plot::magnitude_3d({a.out, "fig1_magnitudes_3d"}, state, labels, site.layer, example::model_name(a.model), site.dims)
               ? 0
               : 1;
}

// A user translation unit: includes the whole library, runs the bundled model with a hook.
#include <massact/massact.hpp>

#include <cstdio>

int main(int argc, char** argv) {
    if (argc < 2) return 2;
    const massact::Transformer model(argv[1]);
    massact::TokenBatch ids(1, 5);
    ids << 1, 100, 200, 300, 400;
    float first_token_max = 0;
    massact::Hooks hooks;
    hooks.add("blocks.3.hook_resid_post", [&](massact::Activation& a) {
        first_token_max = a.sequence(0).row(0).cwiseAbs().maxCoeff();
    });
    const auto logits = model.forward(ids, hooks);
    std::printf("logits %ld x %ld, max |x| of token 0 after block 3: %.2f\n", static_cast<long>(logits.rows()),
                static_cast<long>(logits.cols()), first_token_max);
    return logits.rows() == 5 && first_token_max > 10 ? 0 : 1;
}

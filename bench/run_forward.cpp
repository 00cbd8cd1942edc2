// run_forward MODEL_DIR [T]: one forward pass of T random tokens (default 64); prints tokens/s.
// Used with /usr/bin/time -v to measure the peak resident memory of a 7B-shaped checkpoint.
#include <massact/massact.hpp>

#include <chrono>
#include <cstdio>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: run_forward MODEL_DIR [T]\n");
        return 2;
    }
    try {
        const auto t0 = std::chrono::steady_clock::now();
        const massact::Transformer model(argv[1]);
        const massact::Index T = argc > 2 ? std::atol(argv[2]) : 64;
        massact::TokenBatch ids(1, T);
        for (massact::Index t = 0; t < T; ++t) ids(0, t) = (t * 7919 + 1) % model.config().vocab_size;
        const auto t1 = std::chrono::steady_clock::now();
        const auto logits = model.forward(ids);
        const auto t2 = std::chrono::steady_clock::now();
        const double s = std::chrono::duration<double>(t2 - t1).count();
        std::printf("load %.2f s, forward of %ld tokens %.2f s: %.2f tokens/s (logit[0,0] = %g)\n",
                    std::chrono::duration<double>(t1 - t0).count(), static_cast<long>(T), s, T / s, logits(0, 0));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "run_forward: %s\n", e.what());
        return 1;
    }
    return 0;
}

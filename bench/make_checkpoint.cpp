// make_checkpoint OUT_DIR [tinyllama-1.1b|llama2-7b]: write a random BF16 Llama-shaped checkpoint
// (config.json + model.safetensors) for the speed and memory benchmarks. Nothing is committed.
#include "random_checkpoint.hpp"

#include <cstdio>
#include <sys/stat.h>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: make_checkpoint OUT_DIR [tinyllama-1.1b|llama2-7b]\n");
        return 2;
    }
    const std::string dir = argv[1], shape = argc > 2 ? argv[2] : "llama2-7b";
    const bench::LlamaShape* s = shape == bench::kTinyLlama1B.name ? &bench::kTinyLlama1B
                                 : shape == bench::kLlama2_7B.name ? &bench::kLlama2_7B : nullptr;
    if (!s) {
        std::fprintf(stderr, "make_checkpoint: unknown shape \"%s\" (tinyllama-1.1b or llama2-7b)\n", shape.c_str());
        return 2;
    }
    ::mkdir(dir.c_str(), 0755);
    try {
        const auto n = bench::write_random_llama(dir, *s);
        std::printf("wrote %s: %s shape, %.2f B parameters (BF16)\n", dir.c_str(), s->name, n / 1e9);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_checkpoint: %s\n", e.what());
        return 1;
    }
    return 0;
}

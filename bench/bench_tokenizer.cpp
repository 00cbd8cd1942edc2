// Tokenizer throughput on val.txt (one thread) beside a plain byte-copy loop in the same run.
//   MB/s    encode throughput of the bundled byte-level tokenizer (target: at least 5)
//   ratio   encode MB/s / byte-copy MB/s
#include <massact/massact.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <fstream>
#include <sstream>

namespace {

std::string val_text() {
    std::ifstream f(std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt", std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

/// MB/s of a loop that copies the text byte by byte (best of several passes).
double copy_mbps(const std::string& s) {
    std::string dst(s.size(), '\0');
    double best = 1e30;
    for (int r = 0; r < 50; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        const char* src = s.data();
        char* d = dst.data();
        for (std::size_t i = 0; i < s.size(); ++i) d[i] = src[i];
        benchmark::DoNotOptimize(dst.data());
        benchmark::ClobberMemory();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return double(s.size()) / best / 1e6;
}

void BM_EncodeValTxt(benchmark::State& state, const char* model) {
    const std::string text = val_text();
    const auto tok = massact::text::Tokenizer::from_file(std::string(MASSACT_SOURCE_DIR) + "/examples/models/" + model + "/tokenizer.json");
    const double copy = copy_mbps(text);
    double seconds = 0;
    std::size_t tokens = 0;
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto ids = tok.encode(text, false);
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        tokens = ids.size();
        benchmark::DoNotOptimize(ids.data());
    }
    const double mbps = double(text.size()) * double(state.iterations()) / seconds / 1e6;
    state.counters["MB/s"] = mbps;
    state.counters["copy_MB/s"] = copy;
    state.counters["ratio"] = mbps / copy;
    state.counters["tokens"] = double(tokens);
}
BENCHMARK_CAPTURE(BM_EncodeValTxt, tiny_llama, "tiny-llama")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_EncodeValTxt, tiny_gpt2, "tiny-gpt2")->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

// Tokenizer throughput on val.txt (one thread) beside a plain byte-copy loop in the same run.
//   MB/s    encode throughput (target: at least 10 for every tokenizer)
//   ratio   encode MB/s / byte-copy MB/s
// The bundled tokenizers always run; the six real ones (tools/fetch_tokenizers.sh DIR) when
// MASSACT_REALTOK_DIR names that directory (the test build fetches them into <build>/realtok).
#include <massact/massact.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
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

void BM_EncodeValTxt(benchmark::State& state, const std::string& path) {
    const std::string text = val_text();
    const auto tok = massact::text::Tokenizer::from_file(path);
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
}  // namespace

int main(int argc, char** argv) {
    std::vector<std::pair<std::string, std::string>> runs;
    for (const char* m : {"tiny-llama", "tiny-gpt2"})
        runs.emplace_back(m, std::string(MASSACT_SOURCE_DIR) + "/examples/models/" + m + "/tokenizer.json");
    if (const char* dir = std::getenv("MASSACT_REALTOK_DIR"))
        for (const char* m : {"llama2", "llama3_1", "qwen3", "gemma3", "gptoss", "deepseek_v3"})
            runs.emplace_back(m, std::string(dir) + "/" + m + "/tokenizer.json");
    else
        std::fprintf(stderr, "bench_tokenizer: set MASSACT_REALTOK_DIR to include the six real tokenizers\n");
    for (const auto& [name, path] : runs)
        benchmark::RegisterBenchmark(("encode_val_txt/" + name).c_str(), [path = path](benchmark::State& s) { BM_EncodeValTxt(s, path); })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}


// Attention memory: the streaming kernel (no pattern hook) against the materialised path
// (scores and pattern as [H, T, T]) at T = 1024, 2048, 4096, one sequence, 8 heads, 4 KV heads,
// head_dim 64. Peak resident memory added by the call is measured by the kernel: /proc/self/clear_refs
// resets the high-water mark (VmHWM), which is read after the call.
//   extra_MiB         peak resident memory above the inputs/outputs during the call
//   pattern_MiB       what a [H, T, T] float pattern alone takes
//   extra_B_per_head_token = extra bytes / (H * T): constant in T for the streaming kernel (O(T) per head)
#include <massact/massact.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <fstream>
#include <string>

namespace {

using massact::Index;
using massact::RowMatrixF;

long status_kib(const char* key) {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind(key, 0) == 0) return std::stol(line.substr(std::string(key).size()));
    return -1;
}

void reset_peak() { std::ofstream("/proc/self/clear_refs") << "5"; }

void BM_Attention(benchmark::State& state) {
    const Index T = state.range(0), H = 8, KV = 4, hd = 64;
    const bool materialise = state.range(1) != 0;
    const RowMatrixF q = RowMatrixF::Random(T, H * hd), k = RowMatrixF::Random(T, KV * hd), v = RowMatrixF::Random(T, KV * hd);
    RowMatrixF z = RowMatrixF::Zero(T, H * hd);
    massact::kernels::AttentionSpec spec;
    spec.heads = H;
    spec.kv_heads = KV;
    spec.head_dim = hd;
    spec.scale = 1.0f / 8.0f;
    const massact::kernels::AttentionInput in{q.data(), q.cols(), k.data(), k.cols(), v.data(), v.cols(), T};
    double extra_kib = 0, seconds = 0;
    for (auto _ : state) {
        reset_peak();
        const long before = status_kib("VmRSS:");
        const auto t0 = std::chrono::steady_clock::now();
        if (materialise) {
            std::vector<float> pattern(static_cast<std::size_t>(H * T * T));
            massact::kernels::attention_scores(spec, in, pattern.data());
            massact::kernels::attention_probs(spec, in, pattern.data(), nullptr, nullptr);
            massact::kernels::attention_combine(spec, in, pattern.data(), nullptr, z.data(), z.cols());
        } else {
            massact::kernels::causal_attention(spec, in, z.data(), z.cols());
        }
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        extra_kib = std::max(extra_kib, double(status_kib("VmHWM:") - before));
        benchmark::DoNotOptimize(z.data());
    }
    const double extra = std::max(0.0, extra_kib) * 1024.0;
    state.counters["extra_MiB"] = extra / (1 << 20);
    state.counters["pattern_MiB"] = 4.0 * double(H) * double(T) * double(T) / (1 << 20);
    state.counters["extra_B_per_head_token"] = extra / double(H * T);
    state.counters["GFLOP/s"] = 2.0 * 2.0 * double(H) * hd * (double(T) * (T + 1) / 2) * double(state.iterations()) / seconds / 1e9;
}
BENCHMARK(BM_Attention)
    ->ArgNames({"T", "materialise"})
    ->ArgsProduct({{1024, 2048, 4096}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);

}  // namespace

BENCHMARK_MAIN();

// Forward-pass speed of the bundled tiny-llama at T = 256 beside Eigen's GEMM on the same shapes.
//   tokens/s        forward throughput
//   GFLOP/s         achieved (projections + causal attention) / time
//   gemm_GFLOP/s    Eigen GEMM on exactly the forward's projection shapes, same run
//   ratio           GFLOP/s / gemm_GFLOP/s
#include "bench_flops.hpp"

#include <benchmark/benchmark.h>

namespace {

void BM_ForwardTinyLlama(benchmark::State& state) {
    const massact::Transformer model(std::string(MASSACT_SOURCE_DIR) + "/examples/models/tiny-llama");
    const massact::Index T = state.range(0);
    massact::TokenBatch ids(1, T);
    for (massact::Index t = 0; t < T; ++t) ids(0, t) = (t * 131 + 1) % model.config().vocab_size;
    const auto gemms = bench::forward_gemms(model.config(), T);
    const double flops = bench::gemm_flops(gemms) + bench::attention_flops(model.config(), T);
    const double gemm_gflops = bench::gemm_flops(gemms) / bench::eigen_gemm_seconds(gemms, 20) / 1e9;
    double seconds = 0;
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        benchmark::DoNotOptimize(model.forward(ids));
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    const double iters = double(state.iterations());
    const double gflops = flops * iters / seconds / 1e9;
    state.counters["tokens/s"] = double(T) * iters / seconds;
    state.counters["GFLOP/s"] = gflops;
    state.counters["gemm_GFLOP/s"] = gemm_gflops;
    state.counters["ratio"] = gflops / gemm_gflops;
}
BENCHMARK(BM_ForwardTinyLlama)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

// Forward-pass speed beside Eigen's GEMM on the same shapes, in the same run:
//   BM_ForwardTinyLlama      the bundled tiny-llama (weights resident in float32), T = 256
//   BM_ForwardTinyLlama1B    a TinyLlama-1.1B-shaped config with random BF16 weights written by the
//                            benchmark (converted per layer from the mapped file), T = 256
//   tokens/s        forward throughput
//   GFLOP/s         achieved (projections + causal attention) / time
//   gemm_GFLOP/s    Eigen GEMM on exactly the forward's projection shapes, same run
//   ratio           GFLOP/s / gemm_GFLOP/s
#include "bench_flops.hpp"
#include "random_checkpoint.hpp"

#include <sys/stat.h>

#include <benchmark/benchmark.h>

namespace {

void run_forward(benchmark::State& state, const massact::Transformer& model) {
    const massact::Index T = state.range(0);
    massact::TokenBatch ids(1, T);
    for (massact::Index t = 0; t < T; ++t) ids(0, t) = (t * 131 + 1) % model.config().vocab_size;
    const auto gemms = bench::forward_gemms(model.config(), T);
    const double flops = bench::gemm_flops(gemms) + bench::attention_flops(model.config(), T);
    const double gemm_gflops = bench::gemm_flops(gemms) / bench::eigen_gemm_seconds(gemms, 3) / 1e9;
    massact::Workspace ws;  // buffers reused across iterations, as an engine would
    double seconds = 0;
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        benchmark::DoNotOptimize(model.run(ids, ws).data());
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    const double iters = double(state.iterations());
    const double gflops = flops * iters / seconds / 1e9;
    state.counters["tokens/s"] = double(T) * iters / seconds;
    state.counters["GFLOP/s"] = gflops;
    state.counters["gemm_GFLOP/s"] = gemm_gflops;
    state.counters["ratio"] = gflops / gemm_gflops;
}

void BM_ForwardTinyLlama(benchmark::State& state) {
    const massact::Transformer model(std::string(MASSACT_SOURCE_DIR) + "/examples/models/tiny-llama");
    run_forward(state, model);
}
BENCHMARK(BM_ForwardTinyLlama)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ForwardTinyLlama1B(benchmark::State& state) {
    // Written once to /tmp (2.2 GB), reused by later runs.
    const std::string dir = "/tmp/massact-bench-tinyllama-1.1b";
    struct stat st {};
    if (::stat((dir + "/model.safetensors").c_str(), &st) != 0) {
        ::mkdir(dir.c_str(), 0755);
        bench::write_random_llama(dir, bench::kTinyLlama1B);
    }
    massact::LoadOptions opt;
    opt.resident_f32_budget = 0;  // BF16 stays in the mapped file; each matrix is converted per use
    const massact::Transformer model(dir, opt);
    run_forward(state, model);
}
BENCHMARK(BM_ForwardTinyLlama1B)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

}  // namespace

BENCHMARK_MAIN();

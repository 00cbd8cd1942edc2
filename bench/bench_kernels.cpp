// Memory-bound kernels on a buffer larger than the last-level cache, beside copy and triad
// loops over the same buffers in the same run (same OpenMP threads, same rows).
//   GB/s        bytes read + written by the kernel per second
//   copy_GB/s   out[i] = x[i];   triad_GB/s   out[i] = x[i] + 0.5 * y[i]
//   ratio       kernel GB/s / max(copy, triad) GB/s   (target: at least 0.6)
#include <massact/massact.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <unistd.h>

namespace {

using massact::Index;
using massact::RowMatrixF;

constexpr Index kCols = 4096;  // a hidden size / attention row length

/// Rows so that one buffer is at least 1.5x the last-level cache (and at least 256 MiB).
Index rows_for_llc() {
    long llc = ::sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (llc <= 0) llc = 32L << 20;
    const double bytes = std::max(1.5 * double(llc), double(256L << 20));
    return static_cast<Index>(bytes / (4.0 * kCols)) + 1;
}

struct Buffers {
    RowMatrixF x, y, out;
    Buffers() {
        const Index rows = rows_for_llc();
        x = RowMatrixF::Random(rows, kCols);
        y = RowMatrixF::Random(rows, kCols);
        out = RowMatrixF::Zero(rows, kCols);
    }
};

Buffers& buffers() {
    static Buffers b;  // allocated once for all benchmarks of this program
    return b;
}

template <typename F>
double best_seconds(F f, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
}

/// Best of copy and triad bandwidth over the same buffers (bytes read + written).
double baseline_gbps(Buffers& b) {
    const Index n = b.x.size();
    float* out = b.out.data();
    const float* x = b.x.data();
    const float* y = b.y.data();
    const double copy = best_seconds([&] {
#pragma omp parallel for schedule(static)
        for (Index i = 0; i < n; ++i) out[i] = x[i];
        benchmark::ClobberMemory();
    }, 5);
    const double triad = best_seconds([&] {
#pragma omp parallel for schedule(static)
        for (Index i = 0; i < n; ++i) out[i] = x[i] + 0.5f * y[i];
        benchmark::ClobberMemory();
    }, 5);
    return std::max(2.0 * 4 * n / copy, 3.0 * 4 * n / triad) / 1e9;
}

template <typename Kernel>
void run(benchmark::State& state, Kernel kernel) {
    Buffers& b = buffers();
    const double base = baseline_gbps(b);
    const double bytes = 2.0 * 4 * double(b.x.size());  // read x, write out
    double seconds = 0;
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        kernel(b);
        benchmark::ClobberMemory();
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    const double gbps = bytes * double(state.iterations()) / seconds / 1e9;
    state.counters["GB/s"] = gbps;
    state.counters["baseline_GB/s"] = base;
    state.counters["ratio"] = gbps / base;
    state.counters["MiB"] = 4.0 * double(b.x.size()) / (1 << 20);
}

void BM_RMSNorm(benchmark::State& state) {
    const Eigen::VectorXf w = Eigen::VectorXf::Random(kCols);
    run(state, [&](Buffers& b) { massact::kernels::rms_norm(b.out, b.x, w, 1e-5f); });
}
void BM_LayerNorm(benchmark::State& state) {
    const Eigen::VectorXf w = Eigen::VectorXf::Random(kCols), bias = Eigen::VectorXf::Random(kCols);
    run(state, [&](Buffers& b) { massact::kernels::layer_norm(b.out, b.x, w, bias, 1e-5f); });
}
void BM_SoftmaxInPlace(benchmark::State& state) {
    run(state, [&](Buffers& b) { massact::kernels::softmax_rows<float>(b.out); });
}
void BM_GeluTanh(benchmark::State& state) {
    run(state, [&](Buffers& b) { massact::kernels::gelu_tanh<float>(b.out, b.x); });
}
void BM_GeluErf(benchmark::State& state) {
    run(state, [&](Buffers& b) { massact::kernels::gelu_erf<float>(b.out, b.x); });
}
void BM_SiLU(benchmark::State& state) {
    run(state, [&](Buffers& b) { massact::kernels::silu<float>(b.out, b.x); });
}

BENCHMARK(BM_RMSNorm)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);
BENCHMARK(BM_LayerNorm)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);
BENCHMARK(BM_SoftmaxInPlace)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);
BENCHMARK(BM_GeluTanh)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);
BENCHMARK(BM_GeluErf)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);
BENCHMARK(BM_SiLU)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);

}  // namespace

BENCHMARK_MAIN();

// Statistics throughput over a [4096 x 4096] float buffer (64 MiB), one thread, beside a copy loop
// over the same buffer in the same run.
//   GB/s        bytes of input read per second by the accumulator
//   copy_GB/s   bytes read + written per second by out[i] = x[i]
//   ratio       GB/s / copy_GB/s   (target for the single-pass accumulators: at least 0.5)
// The exact median (selection on a copy) is reported too, without a target.
#include <massact/massact.hpp>

#include <benchmark/benchmark.h>

#include <chrono>

namespace {

using massact::RowMatrixF;

const RowMatrixF& buffer() {
    static const RowMatrixF x = [] {
        RowMatrixF m = RowMatrixF::Random(4096, 4096);
        m(0, 215) = 80.0f;  // one massive activation, as in a real hidden state
        return m;
    }();
    return x;
}

double copy_gbps() {
    const RowMatrixF& x = buffer();
    RowMatrixF out(x.rows(), x.cols());
    const float* src = x.data();
    float* dst = out.data();
    const auto n = static_cast<std::size_t>(x.size());
    double best = 1e30;
    for (int r = 0; r < 10; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < n; ++i) dst[i] = src[i];
        benchmark::ClobberMemory();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return 2.0 * 4 * double(n) / best / 1e9;
}

template <typename F>
void run_stat(benchmark::State& state, F f) {
    const RowMatrixF& x = buffer();
    const double copy = copy_gbps();
    double seconds = 0;
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        f(x);
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    const double gbps = 4.0 * double(x.size()) * double(state.iterations()) / seconds / 1e9;
    state.counters["GB/s"] = gbps;
    state.counters["copy_GB/s"] = copy;
    state.counters["ratio"] = gbps / copy;
}

void BM_TopK(benchmark::State& state) {
    run_stat(state, [](const RowMatrixF& x) { benchmark::DoNotOptimize(massact::stats::top_k_abs(x, 8)); });
}
void BM_ColumnMoments(benchmark::State& state) {
    run_stat(state, [](const RowMatrixF& x) {
        massact::stats::ColumnMoments m(x.cols());
        m.add(x);
        benchmark::DoNotOptimize(m.mean(0));
    });
}
void BM_RowNorms(benchmark::State& state) {
    run_stat(state, [](const RowMatrixF& x) { benchmark::DoNotOptimize(massact::stats::row_norms(x)); });
}
void BM_MaxAbs(benchmark::State& state) {
    run_stat(state, [](const RowMatrixF& x) {
        benchmark::DoNotOptimize(massact::simd::reduce_max_abs(x.data(), static_cast<std::size_t>(x.size())));
    });
}
void BM_MedianExact(benchmark::State& state) {
    std::vector<float> scratch;
    run_stat(state, [&](const RowMatrixF& x) { benchmark::DoNotOptimize(massact::stats::abs_median(x, scratch)); });
}

BENCHMARK(BM_TopK)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ColumnMoments)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_RowNorms)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MaxAbs)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MedianExact)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

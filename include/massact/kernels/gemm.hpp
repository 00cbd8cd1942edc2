// massact/kernels/gemm.hpp - C [M, N] = A [M, K] B^T for float32 activations A and a weight matrix B
// [N, K] that is read block by block in whatever form it is stored (BF16, F16, F32, quantized): no
// float32 copy of B ever exists, only a packed block of NC x KC values per thread.
//
// The structure is the usual one for register-blocked GEMM (Goto and van de Geijn 2008):
//   - A is packed once into micro-panels of MR rows, k-major ([K][MR] per group of MR rows);
//   - threads take blocks of NC columns of B; for each KC slice a block is converted by the caller's
//     `fill` into float32 and packed into micro-panels of NR columns ([KC][NR]);
//   - a micro-kernel keeps an MR x NR tile of C in registers across the KC slice.
// Two precisions:
//   - Precision::F32, the exact path: float32 products and sums;
//   - Precision::BF16, the fast path: A and B rounded to bfloat16, products summed in float32 (as
//     llama.cpp's and PyTorch's bf16 matmuls do). With AVX512-BF16 the micro-kernel uses vdpbf16ps on
//     pairs along K; elsewhere it rounds the operands and runs the float32 micro-kernel.
// Without xsimd (MASSACT_NO_SIMD) gemm_available() is false and callers keep their Eigen product.
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/core/half.hpp"
#include "massact/kernels/simd.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#define MASSACT_HAS_AVX512BF16 1
#endif

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace massact::kernels {

/// How activations and weights are multiplied: F32, the exact path; BF16, both rounded to bfloat16, float32 sums;
/// Q8, quantized weights (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) times activations quantized to 8 bits per block in
/// integers, llama.cpp's CPU path (kernels/gemv_q8.hpp; for a few rows: decoding), everything else as F32.
/// Auto: the fastest of these that keeps the weights' own precision, chosen by the model (Transformer::precision_for:
/// Q8 for quantized GGUF files, BF16 for BF16 weights, F32 otherwise); kernels never see it.
enum class Precision { F32, BF16, Q8, Auto };

/// The precision a name selects ("f32", "bf16", "q8", "auto"), or an error naming `what` (the option or argument).
inline Precision precision_from_name(const std::string& name, const std::string& what) {
    if (name == "f32") return Precision::F32;
    if (name == "bf16") return Precision::BF16;
    if (name == "q8") return Precision::Q8;
    if (name == "auto") return Precision::Auto;
    throw Error(what + ": \"" + name + "\" (expected f32, bf16, q8 or auto)");
}
inline const char* precision_name(Precision p) {
    return p == Precision::BF16 ? "bf16" : p == Precision::Q8 ? "q8" : p == Precision::Auto ? "auto" : "f32";
}

/// Whether gemm_bt() is compiled in (it needs xsimd's vector types).
constexpr bool gemm_available() {
#if defined(MASSACT_HAS_XSIMD)
    return true;
#else
    return false;
#endif
}

/// Whether the bf16 path runs on native BF16 dot products (AVX512-BF16) rather than rounding emulation.
constexpr bool native_bf16_dot() {
#if defined(MASSACT_HAS_AVX512BF16)
    return true;
#else
    return false;
#endif
}

namespace gemm_detail {

/// The team a parallel region started here gets at most: omp_get_max_threads() where one more level of
/// parallelism may become active (inside another region only when nesting is enabled), else 1. Regions below
/// pass it as num_threads, so the per-thread scratch (sized by it) covers every thread id of the team.
inline int team_size() {
#if defined(_OPENMP)
    return omp_get_active_level() < omp_get_max_active_levels() ? std::max(1, omp_get_max_threads()) : 1;
#else
    return 1;
#endif
}
/// This thread's index in the innermost region (0 outside any).
inline int thread_id() {
#if defined(_OPENMP)
    return omp_get_thread_num();
#else
    return 0;
#endif
}

}  // namespace gemm_detail

#if defined(MASSACT_HAS_XSIMD)

namespace gemm_detail {

using batch = xsimd::batch<float>;
constexpr Index W = static_cast<Index>(batch::size);
constexpr Index NR = 2 * W;               // columns of the register tile (two vectors)
constexpr Index MR = W >= 16 ? 12 : 6;    // rows of the register tile (2 MR accumulators fit the registers)
constexpr Index KC = 256;                 // K slice: an MR x KC panel of A stays in L1
constexpr Index NC = 128;                 // columns per thread block: NC x KC floats of B in L2
constexpr Index MRB = 8;                  // rows of the BF16 register tile (measured best of 6..14 on Zen 5)

inline float round_bf16(float x) { return bf16_to_float(float_to_bf16(x)); }

/// Packs rows [0, M) of A, zero-padded to a multiple of MR, as [group][K][MR] (optionally rounded to bf16).
inline void pack_a(const float* A, Index lda, Index M, Index K, float* out, bool round) {
    const Index groups = (M + MR - 1) / MR;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (M * K > (1 << 16))
#endif
    for (Index g = 0; g < groups; ++g) {
        float* dst = out + g * K * MR;
        const Index rows = std::min(MR, M - g * MR);
        for (Index k = 0; k < K; ++k)
            for (Index i = 0; i < MR; ++i) {
                const float v = i < rows ? A[(g * MR + i) * lda + k] : 0.0f;
                dst[k * MR + i] = round ? round_bf16(v) : v;
            }
    }
}

/// c[MR x NR] (+)= a-panel [kc][MR] x b-panel [kc][NR]; writes `rows` x `cols` of the tile to C.
inline void kernel_f32(Index kc, const float* a, const float* b, float* C, Index ldc, Index rows, Index cols, bool accumulate) {
    batch acc0[MR], acc1[MR];
    for (Index i = 0; i < MR; ++i) acc0[i] = acc1[i] = batch(0.0f);
    for (Index k = 0; k < kc; ++k) {
        const batch b0 = batch::load_aligned(b + k * NR), b1 = batch::load_aligned(b + k * NR + W);
        for (Index i = 0; i < MR; ++i) {
            const batch ai(a[k * MR + i]);
            acc0[i] = xsimd::fma(ai, b0, acc0[i]);
            acc1[i] = xsimd::fma(ai, b1, acc1[i]);
        }
    }
    if (rows == MR && cols == NR) {
        for (Index i = 0; i < MR; ++i) {
            float* c = C + i * ldc;
            if (accumulate) {
                (acc0[i] + batch::load_unaligned(c)).store_unaligned(c);
                (acc1[i] + batch::load_unaligned(c + W)).store_unaligned(c + W);
            } else {
                acc0[i].store_unaligned(c);
                acc1[i].store_unaligned(c + W);
            }
        }
        return;
    }
    alignas(64) float tile[NR];
    for (Index i = 0; i < rows; ++i) {
        acc0[i].store_aligned(tile);
        acc1[i].store_aligned(tile + W);
        float* c = C + i * ldc;
        for (Index j = 0; j < cols; ++j) c[j] = accumulate ? c[j] + tile[j] : tile[j];
    }
}

#if defined(MASSACT_HAS_AVX512BF16)
static_assert(W == 16 && NR == 32, "the BF16 micro-kernel assumes 512-bit vectors");

/// Packs A's group panels as bf16 pairs along K: [group][K/2][MRB] 32-bit words (K padded to even).
inline void pack_a_bf16(const float* A, Index lda, Index M, Index K, std::uint32_t* out) {
    const Index groups = (M + MRB - 1) / MRB, K2 = (K + 1) / 2;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (M * K > (1 << 16))
#endif
    for (Index g = 0; g < groups; ++g) {
        std::uint32_t* dst = out + g * K2 * MRB;
        const Index rows = std::min(MRB, M - g * MRB);
        for (Index k2 = 0; k2 < K2; ++k2)
            for (Index i = 0; i < MRB; ++i) {
                std::uint32_t lo = 0, hi = 0;
                if (i < rows) {
                    const float* r = A + (g * MRB + i) * lda;
                    lo = float_to_bf16(r[2 * k2]);
                    if (2 * k2 + 1 < K) hi = float_to_bf16(r[2 * k2 + 1]);
                }
                dst[k2 * MRB + i] = lo | (hi << 16);
            }
    }
}

/// One column of a B block (kc floats) as kc2 bf16 pairs, written with stride NR words into a panel.
inline void pack_column_bf16(const float* src, Index kc, std::uint32_t* dst) {
    Index k = 0;
    for (; k + 32 <= kc; k += 32) {  // 32 floats -> 16 words (pairs k, k+1), round to nearest even
        const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + k + 16), _mm512_loadu_ps(src + k));
        alignas(64) std::uint32_t w[16];
        _mm512_store_si512(w, (__m512i)h);
        for (Index i = 0; i < 16; ++i) dst[(k / 2 + i) * NR] = w[i];
    }
    for (; k < kc; k += 2) {
        const std::uint32_t lo = float_to_bf16(src[k]), hi = k + 1 < kc ? float_to_bf16(src[k + 1]) : 0;
        dst[(k / 2) * NR] = lo | (hi << 16);
    }
}

/// The bf16 tile: per pair of k, 2 vectors of 32 bf16 (16 columns x 2 k each) and MR broadcast pairs.
inline void kernel_bf16(Index kc2, const std::uint32_t* a, const std::uint32_t* b, float* C, Index ldc, Index rows, Index cols,
                        bool accumulate) {
    __m512 acc0[MRB], acc1[MRB];
    for (Index i = 0; i < MRB; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
    for (Index k = 0; k < kc2; ++k) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512(b + k * NR);
        const __m512bh b1 = (__m512bh)_mm512_load_si512(b + k * NR + W);
        for (Index i = 0; i < MRB; ++i) {
            const __m512bh ai = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[k * MRB + i]));
            acc0[i] = _mm512_dpbf16_ps(acc0[i], ai, b0);
            acc1[i] = _mm512_dpbf16_ps(acc1[i], ai, b1);
        }
    }
    alignas(64) float tile[NR];
    for (Index i = 0; i < rows; ++i) {
        float* c = C + i * ldc;
        if (cols == NR) {
            if (accumulate) {
                acc0[i] = _mm512_add_ps(acc0[i], _mm512_loadu_ps(c));
                acc1[i] = _mm512_add_ps(acc1[i], _mm512_loadu_ps(c + W));
            }
            _mm512_storeu_ps(c, acc0[i]);
            _mm512_storeu_ps(c + W, acc1[i]);
        } else {
            _mm512_store_ps(tile, acc0[i]);
            _mm512_store_ps(tile + W, acc1[i]);
            for (Index j = 0; j < cols; ++j) c[j] = accumulate ? c[j] + tile[j] : tile[j];
        }
    }
}
#endif

/// A float buffer aligned for the vector loads of the micro-kernels.
template <typename T>
struct AlignedBuffer {
    std::vector<T> storage;
    T* ptr = nullptr;
    T* get(std::size_t n) {
        const std::size_t pad = 64 / sizeof(T);
        if (storage.size() < n + pad) storage.resize(n + pad);
        auto addr = reinterpret_cast<std::uintptr_t>(storage.data());
        ptr = reinterpret_cast<T*>((addr + 63) & ~std::uintptr_t(63));
        return ptr;
    }
};

}  // namespace gemm_detail

/// Buffers of gemm_bt, reusable across calls (one caller at a time): packed A, and per thread a block
/// of B as filled and as packed.
struct GemmScratch {
    struct Thread {
        std::vector<float> block;
        gemm_detail::AlignedBuffer<float> packed;
        gemm_detail::AlignedBuffer<std::uint32_t> packed16;
    };
    gemm_detail::AlignedBuffer<float> a;
    gemm_detail::AlignedBuffer<std::uint32_t> a_bf16;
    std::vector<Thread> threads;
};

namespace gemm_detail {

/// sum_k a[k] b[k] in float32 lanes (two accumulators), the tail in scalar.
inline float dot(const float* a, const float* b, Index n) {
    batch acc0(0.0f), acc1(0.0f);
    Index k = 0;
    for (; k + 2 * W <= n; k += 2 * W) {
        acc0 = xsimd::fma(batch::load_unaligned(a + k), batch::load_unaligned(b + k), acc0);
        acc1 = xsimd::fma(batch::load_unaligned(a + k + W), batch::load_unaligned(b + k + W), acc1);
    }
    for (; k + W <= n; k += W) acc0 = xsimd::fma(batch::load_unaligned(a + k), batch::load_unaligned(b + k), acc0);
    float s = simd::hsum(acc0 + acc1);
    for (; k < n; ++k) s += a[k] * b[k];
    return s;
}

/// Few rows (decoding): C = A B^T as dot products over whole rows of B, filled a few rows at a time, so
/// B is neither packed nor transposed. Parallel over blocks of B's rows.
template <typename Fill>
void gemm_bt_rows(const float* A, Index lda, Index M, Index N, Index K, Fill& fill, float* C, Index ldc, bool round,
                  GemmScratch& scratch) {
    const Index rows_per_block = std::max<Index>(1, std::min<Index>(64, (Index(1) << 15) / K));
    const Index blocks = (N + rows_per_block - 1) / rows_per_block;
    const int team = team_size();
    scratch.threads.resize(static_cast<std::size_t>(team));
    const float* a = A;
    std::vector<float> rounded;
    if (round) {
        rounded.resize(static_cast<std::size_t>(M * K));
        for (Index i = 0; i < M; ++i)
            for (Index k = 0; k < K; ++k) rounded[static_cast<std::size_t>(i * K + k)] = round_bf16(A[i * lda + k]);
        a = rounded.data();
        lda = K;
    }
#if defined(_OPENMP)
#pragma omp parallel for num_threads(team) schedule(dynamic) if (blocks > 1 && N * K > (1 << 16))
#endif
    for (Index blk = 0; blk < blocks; ++blk) {
        auto& block = scratch.threads[static_cast<std::size_t>(thread_id())].block;
        const Index n0 = blk * rows_per_block, nr = std::min(rows_per_block, N - n0);
        if (block.size() < static_cast<std::size_t>(nr * K)) block.resize(static_cast<std::size_t>(nr * K));
        fill(n0, nr, Index(0), K, block.data());
        if (round)
            for (Index x = 0; x < nr * K; ++x) block[static_cast<std::size_t>(x)] = round_bf16(block[static_cast<std::size_t>(x)]);
        for (Index j = 0; j < nr; ++j) {
            const float* b = block.data() + j * K;
            for (Index i = 0; i < M; ++i) {
                const float* r = a + i * lda;
                C[i * ldc + n0 + j] = dot(r, b, K);
            }
        }
    }
}

}  // namespace gemm_detail

/// C [M, N] (row stride ldc) = A [M, K] (row stride lda) B^T, B [N, K] given by
///   fill(n0, rows, k0, cols, dst): dst[i * cols + j] = B[n0 + i, k0 + j] as float32, for i < rows, j < cols.
/// `fill` is called from several threads at once with disjoint blocks. With Precision::BF16 both operands
/// are rounded to bfloat16 (round to nearest even) and the products are summed in float32.
template <typename Fill>
void gemm_bt(const float* A, Index lda, Index M, Index N, Index K, Fill&& fill, float* C, Index ldc, Precision precision,
             GemmScratch& scratch) {
    using namespace gemm_detail;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (Index i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, 0.0f);
        return;
    }
    if (M < MR) return gemm_bt_rows(A, lda, M, N, K, fill, C, ldc, precision == Precision::BF16, scratch);
    const int team = team_size();
    scratch.threads.resize(static_cast<std::size_t>(team));
#if defined(MASSACT_HAS_AVX512BF16)
    const bool native = precision == Precision::BF16;
#else
    const bool native = false;
#endif
    const Index rows_per_group = native ? MRB : MR;
    const Index groups = (M + rows_per_group - 1) / rows_per_group, blocks = (N + NC - 1) / NC;
    const bool round = precision == Precision::BF16;
    const float* apack = nullptr;
    const std::uint32_t* apack2 = nullptr;
    const Index K2 = (K + 1) / 2;
    (void)apack2;  // (used only by the AVX512-BF16 kernel)
    (void)K2;
    if (native) {
#if defined(MASSACT_HAS_AVX512BF16)
        std::uint32_t* p = scratch.a_bf16.get(static_cast<std::size_t>(groups * MRB * K2));
        pack_a_bf16(A, lda, M, K, p);
        apack2 = p;
#endif
    } else {
        float* p = scratch.a.get(static_cast<std::size_t>(groups * MR * K));
        pack_a(A, lda, M, K, p, round);
        apack = p;
    }
#if defined(_OPENMP)
#pragma omp parallel num_threads(team) if (blocks > 1 && M * N * K > (1 << 18))
#endif
    {
        auto& buffers = scratch.threads[static_cast<std::size_t>(thread_id())];
        auto& block = buffers.block;
        if (block.size() < static_cast<std::size_t>(NC * KC)) block.resize(static_cast<std::size_t>(NC * KC));
        float* bp = buffers.packed.get(static_cast<std::size_t>(NC * KC));
        std::uint32_t* bp16 = native ? buffers.packed16.get(static_cast<std::size_t>(NC * (KC + 1) / 2 + NR)) : nullptr;
        (void)bp16;
#if defined(_OPENMP)
#pragma omp for schedule(dynamic)
#endif
        for (Index blk = 0; blk < blocks; ++blk) {
            const Index n0 = blk * NC, nc = std::min(NC, N - n0), panels = (nc + NR - 1) / NR;
            for (Index k0 = 0; k0 < K; k0 += KC) {
                const Index kc = std::min(KC, K - k0);
                fill(n0, nc, k0, kc, block.data());
                if (!native) {
                    // [panel][kc][NR], zero columns past nc
                    for (Index p = 0; p < panels; ++p) {
                        float* dst = bp + p * kc * NR;
                        for (Index j = 0; j < NR; ++j) {
                            const Index col = p * NR + j;
                            if (col < nc) {
                                const float* src = block.data() + col * kc;
                                if (round)
                                    for (Index k = 0; k < kc; ++k) dst[k * NR + j] = round_bf16(src[k]);
                                else
                                    for (Index k = 0; k < kc; ++k) dst[k * NR + j] = src[k];
                            } else {
                                for (Index k = 0; k < kc; ++k) dst[k * NR + j] = 0.0f;
                            }
                        }
                    }
                    for (Index g = 0; g < groups; ++g) {
                        const float* a = apack + (g * K + k0) * MR;
                        const Index rows = std::min(MR, M - g * MR);
                        for (Index p = 0; p < panels; ++p)
                            kernel_f32(kc, a, bp + p * kc * NR, C + g * MR * ldc + n0 + p * NR, ldc, rows,
                                       std::min(NR, nc - p * NR), k0 > 0);
                    }
                }
#if defined(MASSACT_HAS_AVX512BF16)
                else {
                    // [panel][kc/2][NR] words: column j's pair (k, k+1) in word j of row k/2
                    const Index kc2 = (kc + 1) / 2;
                    for (Index p = 0; p < panels; ++p) {
                        std::uint32_t* dst = bp16 + p * kc2 * NR;
                        for (Index j = 0; j < NR; ++j) {
                            const Index col = p * NR + j;
                            if (col < nc)
                                pack_column_bf16(block.data() + col * kc, kc, dst + j);
                            else
                                for (Index k2 = 0; k2 < kc2; ++k2) dst[k2 * NR + j] = 0;
                        }
                    }
                    for (Index g = 0; g < groups; ++g) {
                        const std::uint32_t* a = apack2 + (g * K2 + k0 / 2) * MRB;
                        const Index rows = std::min(MRB, M - g * MRB);
                        for (Index p = 0; p < panels; ++p)
                            kernel_bf16(kc2, a, bp16 + p * kc2 * NR, C + g * MRB * ldc + n0 + p * NR, ldc, rows,
                                        std::min(NR, nc - p * NR), k0 > 0);
                    }
                }
#endif
            }
        }
    }
}

#else
struct GemmScratch {};  // (no blocked product without xsimd: callers use Eigen)
#endif  // MASSACT_HAS_XSIMD

}  // namespace massact::kernels

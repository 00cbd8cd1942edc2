// massact/kernels/gemv.hpp - Y [M, N] = X [M, K] W^T for a few rows X (decoding: M = 1) and a weight matrix
// W [N, K] read straight from its stored form: F32, F16, BF16, or one of ggml's block types (Q8_0, Q4_0,
// Q4_1, Q5_0, Q5_1, Q2_K .. Q6_K).
//
// Decoding is memory-bound: every weight is read once per token, so the product must read the stored bytes
// and nothing else. Each row of W is walked block by block (32 or 256 values); a block is decoded by the
// format's own dequantizer (io/ggml_blocks.hpp, the reference of the format) into a buffer of at most 256
// floats on the stack, which stays in L1, and multiplied with up to four rows of X held in vector
// accumulators. No float32 copy of W exists, not even of one row. The rows of W are split into contiguous
// ranges over the threads, so that every core streams its own part of the matrix.
//
// Exact: the decoded values are the format's (the same as dequantize-then-multiply); only the order of the
// float32 sums differs from a row-by-row dot product. With `round_bf16` both operands are rounded to bfloat16
// before the float32 products (Precision::BF16, as gemm_bt does).
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/core/half.hpp"
#include "massact/io/ggml_blocks.hpp"
#include "massact/kernels/gemm.hpp"
#include "massact/kernels/simd.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace massact::kernels {

/// A weight matrix [rows, cols] as stored: element type (F32, F16, BF16 or a block type), bytes, and the
/// stored row that holds logical row n (`stored_row`: identity, or the inverse of a permutation the file
/// applied, e.g. llama.cpp's RoPE row order).
struct StoredMatrix {
    io::ggml::Type type = io::ggml::Type::F32;
    const unsigned char* data = nullptr;
    Index rows = 0, cols = 0;
    std::size_t row_bytes = 0;
};

/// Whether gemv_stored() reads `type` (the float types and every block type with a dequantizer).
inline bool gemv_reads(io::ggml::Type type) {
    using T = io::ggml::Type;
    if (type == T::F32 || type == T::F16 || type == T::BF16) return true;
    const io::ggml::TypeInfo info = io::ggml::type_info(static_cast<std::uint32_t>(type));
    return info.block > 1 && info.readable;
}

/// f(n0, n1) on contiguous ranges of the w.rows rows (multiples of 8), taken by the threads of a team as they come
/// free: four ranges per thread, each still a long stream of memory, so that a core that falls behind (another
/// process, a virtual CPU descheduled) leaves its last ranges to the other instead of holding the team at the
/// barrier (fixed halves left a thread waiting 10-20% of a decode step on a 2-vCPU virtual machine). A matrix under
/// 64 KiB is not worth a team and runs on this thread.
template <typename F>
void split_rows(const StoredMatrix& w, F&& f) {
    const Index N = w.rows;
#if defined(_OPENMP)
    const std::size_t bytes = static_cast<std::size_t>(N) * w.row_bytes;
    const int threads = bytes < (std::size_t(1) << 16) ? 1 : gemm_detail::team_size();
    const Index per = ((N + 4 * threads - 1) / (4 * threads) + 7) / 8 * 8, ranges = (N + per - 1) / per;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
    for (Index r = 0; r < ranges; ++r) f(r * per, std::min(N, (r + 1) * per));
#else
    f(Index(0), N);
#endif
}

#if defined(MASSACT_HAS_XSIMD)

namespace gemv_detail {

using batch = xsimd::batch<float>;
constexpr Index W = static_cast<Index>(batch::size);
constexpr Index FLOAT_BLOCK = 256;  // values per step for the float types (a row's tail is a shorter step)

inline float round_bf16(float x) { return bf16_to_float(float_to_bf16(x)); }

#if defined(__AVX512F__)
/// The decoders of the types most files hold (Q8_0, Q4_0; Q4_K, Q5_K and Q6_K, the bulk of the K mixes; F16), vector by vector:
/// the values of io/ggml_blocks.hpp's readers (Q4_K's d * sc * q - dmin * m in one rounding), written 16 at a time
/// into `y` (256 floats at most), so that no scalar store is read back by a vector load.
inline float half_at(const unsigned char* p) {
    std::uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);  // (F16C, part of every AVX-512 CPU: one instruction, exact)
}
inline void decode_q8_0(const unsigned char* b, float* y) {
    const __m512 d = _mm512_set1_ps(half_at(b));
    for (int h = 0; h < 2; ++h) {
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 + 16 * h));
        _mm512_storeu_ps(y + 16 * h, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q))));
    }
}
inline void decode_q4_0(const unsigned char* b, float* y) {
    const __m512 d = _mm512_set1_ps(half_at(b));
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2)), low4 = _mm_set1_epi8(0x0F);
    const __m512i eight = _mm512_set1_epi32(8);
    const __m128i q[2] = {_mm_and_si128(v, low4), _mm_and_si128(_mm_srli_epi16(v, 4), low4)};
    for (int h = 0; h < 2; ++h)
        _mm512_storeu_ps(y + 16 * h, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(q[h]), eight))));
}
/// The values of a Q4_K / Q5_K block (Q5_K: the fifth bit of element l of sub-block k is bit k of qh[l]), 16 at a time:
/// f(offset in the block, the 16 values, part 0 or 1 of its sub-block), each d * sc * q - dmin * m in one rounding.
template <typename F>
inline void for_each_q45_k(const unsigned char* b, bool five, F&& f) {
    const float d = half_at(b), dmin = half_at(b + 2);
    const unsigned char* qs = b + (five ? 48 : 16);
    const __m128i low4 = _mm_set1_epi8(0x0F), one = _mm_set1_epi8(1);
    for (int g = 0; g < 4; ++g)
        for (int h = 0; h < 2; ++h) {  // sub-block 2g + h: the low nibbles of group g's 32 bytes, then the high ones
            const int k = 2 * g + h;
            float sc, m;
            io::ggml::detail::scale_min_k4(k, b + 4, sc, m);
            const __m512 dl = _mm512_set1_ps(d * sc), ml = _mm512_set1_ps(dmin * m);
            for (int part = 0; part < 2; ++part) {
                const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + 32 * g + 16 * part));
                __m128i q = h ? _mm_and_si128(_mm_srli_epi16(v, 4), low4) : _mm_and_si128(v, low4);
                if (five) {
                    const __m128i hb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16 + 16 * part));
                    q = _mm_or_si128(q, _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(hb, _mm_cvtsi32_si128(k)), one), 4));
                }
                f(64 * g + 32 * h + 16 * part, _mm512_fmsub_ps(dl, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q)), ml), part);
            }
        }
}
/// The values of a Q6_K block, 16 at a time (as for_each_q45_k): d * sc * (q - 32) per sub-block of 16.
template <typename F>
inline void for_each_q6_k(const unsigned char* b, F&& f) {
    const float d = half_at(b + 208);
    const auto* scales = reinterpret_cast<const std::int8_t*>(b + 192);
    const __m128i low4 = _mm_set1_epi8(0x0F), two = _mm_set1_epi8(3);
    const __m512i offset = _mm512_set1_epi32(32);
    for (int half = 0; half < 2; ++half)
        for (int s = 0; s < 4; ++s)
            for (int part = 0; part < 2; ++part) {  // elements 128 half + 32 s + 16 part .. + 15
                const unsigned char* ql = b + 64 * half + 32 * (s & 1) + 16 * part;
                const unsigned char* qh = b + 128 + 32 * half + 16 * part;
                const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ql));
                const __m128i nib = s < 2 ? _mm_and_si128(lo, low4) : _mm_and_si128(_mm_srli_epi16(lo, 4), low4);
                const __m128i top = _mm_and_si128(_mm_srl_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qh)), _mm_cvtsi32_si128(2 * s)), two);
                const __m128i q = _mm_or_si128(nib, _mm_slli_epi16(top, 4));
                const __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(q), offset));
                const float scale = d * static_cast<float>(scales[8 * half + 2 * s + part]);
                f(128 * half + 32 * s + 16 * part, _mm512_mul_ps(_mm512_set1_ps(scale), v), part);
            }
}
inline void decode_q45_k(const unsigned char* b, float* y, bool five) {
    for_each_q45_k(b, five, [y](int at, __m512 v, int) { _mm512_storeu_ps(y + at, v); });
}
inline void decode_q6_k(const unsigned char* b, float* y) {
    for_each_q6_k(b, [y](int at, __m512 v, int) { _mm512_storeu_ps(y + at, v); });
}
#endif

/// The n values of a float-typed row `w` from column k0 as float32 at the returned pointer: the mapping itself for
/// aligned F32, otherwise `tmp`.
inline const float* decode_floats(io::ggml::Type type, const unsigned char* w, Index k0, Index n, float* tmp) {
    using T = io::ggml::Type;
    if (type == T::F32) {
        const unsigned char* p = w + 4 * k0;
        if (reinterpret_cast<std::uintptr_t>(p) % alignof(float) == 0) return reinterpret_cast<const float*>(p);
        std::memcpy(tmp, p, static_cast<std::size_t>(4 * n));
        return tmp;
    }
    if (type == T::BF16) {
        bf16_to_float(w + 2 * k0, tmp, static_cast<std::size_t>(n));
        return tmp;
    }
    Index k = 0;  // F16
#if defined(__AVX512F__)
    for (; k + 16 <= n; k += 16)
        _mm512_storeu_ps(tmp + k, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2 * (k0 + k)))));
#endif
    f16_to_float(w + 2 * (k0 + k), tmp + k, static_cast<std::size_t>(n - k));
    return tmp;
}

/// One block of a block type at `b` into y[0 .. block).
inline void decode_block(io::ggml::Type type, const unsigned char* b, float* y) {
    switch (type) {
#if defined(__AVX512F__)
        case io::ggml::Type::Q8_0: return decode_q8_0(b, y);
        case io::ggml::Type::Q4_0: return decode_q4_0(b, y);
        case io::ggml::Type::Q4_K: return decode_q45_k(b, y, false);
        case io::ggml::Type::Q5_K: return decode_q45_k(b, y, true);
        case io::ggml::Type::Q6_K: return decode_q6_k(b, y);
#endif
        default: return io::ggml::dequantize_block(type, b, y);
    }
}

/// acc[i] += x_i[0 .. n) * b[0 .. n) lane-wise for the MB rows x_i = X + i * ldx (n a multiple of W, or a
/// tail summed into `tail[i]`).
template <int MB>
inline void accumulate(const float* X, Index ldx, const float* b, Index n, batch (&acc)[MB][2], float (&tail)[MB]) {
    Index k = 0;
    for (; k + 2 * W <= n; k += 2 * W) {
        const batch b0 = batch::load_unaligned(b + k), b1 = batch::load_unaligned(b + k + W);
        for (int i = 0; i < MB; ++i) {
            acc[i][0] = xsimd::fma(batch::load_unaligned(X + i * ldx + k), b0, acc[i][0]);
            acc[i][1] = xsimd::fma(batch::load_unaligned(X + i * ldx + k + W), b1, acc[i][1]);
        }
    }
    for (; k + W <= n; k += W) {
        const batch b0 = batch::load_unaligned(b + k);
        for (int i = 0; i < MB; ++i) acc[i][0] = xsimd::fma(batch::load_unaligned(X + i * ldx + k), b0, acc[i][0]);
    }
    for (; k < n; ++k)
        for (int i = 0; i < MB; ++i) tail[i] += X[i * ldx + k] * b[k];
}

#if defined(__AVX512F__)
/// 32 F32 / BF16 / F16 values at p (64-byte aligned) as two float32 vectors, in registers (BF16: the 16 bits are a
/// float's upper half; F16: vcvtph2ps).
inline void load32_aligned(const unsigned char* p, io::ggml::Type type, __m512& lo, __m512& hi) {
    if (type == io::ggml::Type::F32) {
        lo = _mm512_load_ps(reinterpret_cast<const float*>(p));
        hi = _mm512_load_ps(reinterpret_cast<const float*>(p) + 16);
        return;
    }
    const __m512i v = _mm512_load_si512(p);
    const __m256i a = _mm512_castsi512_si256(v), b = _mm512_extracti64x4_epi64(v, 1);
    if (type == io::ggml::Type::BF16) {
        lo = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(a), 16));
        hi = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
    } else {
        lo = _mm512_cvtph_ps(a);
        hi = _mm512_cvtph_ps(b);
    }
}

/// The values [k0, k1) of a float-typed row that start it before its first 64-byte boundary, or end it: the first
/// `peel` values (so that every load of the main loop is aligned: a file's tensors often are not, and a 64-byte
/// load across two cache lines costs two) and the tail.
inline Index peel_to_line(const unsigned char* row, std::size_t bytes_per_value, Index K) {
    const std::size_t mis = reinterpret_cast<std::uintptr_t>(row) % 64;
    if (mis % bytes_per_value != 0) return K;  // (not even value-aligned: every value the scalar way)
    return std::min<Index>(K, static_cast<Index>((64 - mis) % 64 / bytes_per_value));
}

/// Rows [n0, n1) of an F32, BF16 or F16 W against MB rows of X, converted in registers (no buffer: a decoded value is
/// never stored and loaded back, which left BF16 decoding at half the read bandwidth), the weight loads aligned.
template <int MB, typename StoredRow>
void rows_float(const StoredMatrix& w, StoredRow&& stored_row, Index n0, Index n1, const float* X, Index ldx, float* Y, Index ldy) {
    const Index K = w.cols;
    const std::size_t es = w.type == io::ggml::Type::F32 ? 4 : 2;
    for (Index n = n0; n < n1; ++n) {
        const unsigned char* row = w.data + static_cast<std::size_t>(stored_row(n)) * w.row_bytes;
        __m512 acc[MB][2];
        for (int i = 0; i < MB; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        float tail[MB] = {};
        auto scalar = [&](Index k0, Index k1) {  // values [k0, k1) one by one
            float t[64];
            for (Index k = k0; k < k1; k += 64) {
                const Index len = std::min<Index>(64, k1 - k);
                const float* v = decode_floats(w.type, row, k, len, t);
                for (int i = 0; i < MB; ++i)
                    for (Index j = 0; j < len; ++j) tail[i] += X[i * ldx + k + j] * v[j];
            }
        };
        const Index peel = peel_to_line(row, es, K);
        scalar(0, peel);
        Index k = peel;
        for (; k + 32 <= K; k += 32) {
            __m512 b0, b1;
            load32_aligned(row + es * static_cast<std::size_t>(k), w.type, b0, b1);
            for (int i = 0; i < MB; ++i) {
                acc[i][0] = _mm512_fmadd_ps(_mm512_loadu_ps(X + i * ldx + k), b0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(_mm512_loadu_ps(X + i * ldx + k + 16), b1, acc[i][1]);
            }
        }
        scalar(k, K);
        for (int i = 0; i < MB; ++i) Y[i * ldy + n] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1])) + tail[i];
    }
}
#endif

#if defined(MASSACT_HAS_AVX512BF16)
/// Precision::BF16 on BF16 weights where the CPU has BF16 dot products: Xb [MB rows of K, row stride ldx] holds the
/// activations already rounded to bfloat16; vdpbf16ps multiplies pairs and sums them into float32 lanes (the weight
/// loads aligned as in rows_float).
template <int MB, typename StoredRow>
void rows_bf16_dot(const StoredMatrix& w, StoredRow&& stored_row, Index n0, Index n1, const std::uint16_t* Xb, Index ldx, float* Y,
                   Index ldy) {
    const Index K = w.cols;
    for (Index n = n0; n < n1; ++n) {
        const unsigned char* row = w.data + static_cast<std::size_t>(stored_row(n)) * w.row_bytes;
        __m512 acc[MB][2];
        for (int i = 0; i < MB; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        float tail[MB] = {};
        auto scalar = [&](Index k0, Index k1) {
            for (Index k = k0; k < k1; ++k) {
                std::uint16_t h;
                std::memcpy(&h, row + 2 * k, 2);
                for (int i = 0; i < MB; ++i) tail[i] += bf16_to_float(Xb[i * ldx + k]) * bf16_to_float(h);
            }
        };
        const Index peel = peel_to_line(row, 2, K);
        scalar(0, peel);
        Index k = peel;
        for (; k + 64 <= K; k += 64) {
            const __m512bh b0 = (__m512bh)_mm512_load_si512(row + 2 * k), b1 = (__m512bh)_mm512_load_si512(row + 2 * (k + 32));
            for (int i = 0; i < MB; ++i) {
                acc[i][0] = _mm512_dpbf16_ps(acc[i][0], (__m512bh)_mm512_loadu_si512(Xb + i * ldx + k), b0);
                acc[i][1] = _mm512_dpbf16_ps(acc[i][1], (__m512bh)_mm512_loadu_si512(Xb + i * ldx + k + 32), b1);
            }
        }
        scalar(k, K);
        for (int i = 0; i < MB; ++i) Y[i * ldy + n] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1])) + tail[i];
    }
}
#endif

#if defined(__AVX512F__)
/// Rows [n0, n1) of a Q4_K, Q5_K or Q6_K W (the bulk of the K mixes) against MB rows of X, each 16 values decoded in
/// registers (the values decode_block gives) and multiplied straight away: no buffer, two accumulator chains a row
/// (Q4_K_M decoding 16-18 -> 24 tokens/s on the 1.1B shape here).
template <int MB, typename StoredRow>
void rows_k(const StoredMatrix& w, StoredRow&& stored_row, Index n0, Index n1, const float* X, Index ldx, float* Y, Index ldy) {
    const io::ggml::Type t = w.type;
    const std::size_t bytes = io::ggml::type_info(static_cast<std::uint32_t>(t)).bytes;
    const Index nb = w.cols / 256;
    for (Index n = n0; n < n1; ++n) {
        const unsigned char* blk = w.data + static_cast<std::size_t>(stored_row(n)) * w.row_bytes;
        __m512 acc[MB][2];
        for (int i = 0; i < MB; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        for (Index b = 0; b < nb; ++b, blk += bytes) {
            const float* x = X + 256 * b;
            auto madd = [&](int at, __m512 v, int part) {  // acc[i][part] += v * x_i
                for (int i = 0; i < MB; ++i) acc[i][part] = _mm512_fmadd_ps(v, _mm512_loadu_ps(x + i * ldx + at), acc[i][part]);
            };
            if (t == io::ggml::Type::Q6_K) for_each_q6_k(blk, madd);
            else for_each_q45_k(blk, t == io::ggml::Type::Q5_K, madd);
        }
        for (int i = 0; i < MB; ++i) Y[i * ldy + n] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]));
    }
}
#endif

/// f(std::integral_constant<int, MB>, i) for the rows i .. i + MB - 1 of M rows, four at a time (MB = 4, the last 1-4).
template <typename F>
void by_fours(Index M, F&& f) {
    for (Index i = 0; i < M; i += 4) switch (std::min<Index>(4, M - i)) {
            case 1: f(std::integral_constant<int, 1>{}, i); break;
            case 2: f(std::integral_constant<int, 2>{}, i); break;
            case 3: f(std::integral_constant<int, 3>{}, i); break;
            default: f(std::integral_constant<int, 4>{}, i); break;
        }
}

/// Rows [n0, n1) of W against MB rows of X.
template <int MB, typename StoredRow>
void rows(const StoredMatrix& w, StoredRow&& stored_row, Index n0, Index n1, const float* X, Index ldx, float* Y, Index ldy,
          bool round) {
#if defined(__AVX512F__)
    if (!round && (w.type == io::ggml::Type::F32 || w.type == io::ggml::Type::BF16 || w.type == io::ggml::Type::F16))
        return rows_float<MB>(w, stored_row, n0, n1, X, ldx, Y, ldy);
    if (!round && (w.type == io::ggml::Type::Q4_K || w.type == io::ggml::Type::Q5_K || w.type == io::ggml::Type::Q6_K))
        return rows_k<MB>(w, stored_row, n0, n1, X, ldx, Y, ldy);
#endif
    const io::ggml::TypeInfo info = io::ggml::type_info(static_cast<std::uint32_t>(w.type));
    const bool blocked = info.block > 1;
    // a step of 256 values: a K block, eight 32-blocks, or 256 floats. The whole step is decoded before any of it
    // is read back, so that the vector loads do not wait on the decoder's narrower stores still in flight
    // (store-to-load forwarding fails across store widths: read right after each 32-block, Q8_0 ran 1.4x slower).
    const Index block = blocked ? static_cast<Index>(info.block) : FLOAT_BLOCK, step = std::max<Index>(block, 256), K = w.cols;
    alignas(64) float tmp[256];
    for (Index n = n0; n < n1; ++n) {
        const unsigned char* row = w.data + static_cast<std::size_t>(stored_row(n)) * w.row_bytes;
        const unsigned char* blk = row;  // (the next block, for the block types)
        batch acc[MB][2];
        float tail[MB];
        for (int i = 0; i < MB; ++i) {
            acc[i][0] = acc[i][1] = batch(0.0f);
            tail[i] = 0.0f;
        }
        for (Index k0 = 0; k0 < K; k0 += step) {
            const Index len = std::min(step, K - k0);
            const float* b = tmp;
            if (blocked)
                for (Index j = 0; j < len; j += block, blk += info.bytes) decode_block(w.type, blk, tmp + j);
            else
                b = decode_floats(w.type, row, k0, len, tmp);
            if (round && w.type != io::ggml::Type::BF16) {  // (a BF16 value is its own rounding)
                for (Index k = 0; k < len; ++k) tmp[k] = round_bf16(b[k]);
                b = tmp;
            }
            accumulate<MB>(X + k0, ldx, b, len, acc, tail);
        }
        for (int i = 0; i < MB; ++i) Y[i * ldy + n] = simd::hsum(acc[i][0] + acc[i][1]) + tail[i];
    }
}

}  // namespace gemv_detail

/// Y [M, N] (row stride ldy) = X [M, K] (row stride ldx) W^T, W = `w` [N, K] whose logical row n is stored row
/// stored_row(n). Rows of X are taken four at a time (each block of W is decoded once per four rows), so the
/// kernel is meant for M up to about a dozen; larger M belongs to gemm_bt. `round_bf16`: Precision::BF16.
template <typename StoredRow>
void gemv_stored(const StoredMatrix& w, StoredRow&& stored_row, const float* X, Index ldx, Index M, float* Y, Index ldy,
                 bool round_bf16 = false) {
    using namespace gemv_detail;
    const Index N = w.rows, K = w.cols;
    if (M <= 0 || N <= 0) return;
    if (!gemv_reads(w.type)) throw Error("gemv: no reader for the stored type");
#if defined(MASSACT_HAS_AVX512BF16)
    if (round_bf16 && w.type == io::ggml::Type::BF16) {  // both operands in bfloat16: native dot products
        std::vector<std::uint16_t> xb(static_cast<std::size_t>(M * K));
        for (Index i = 0; i < M; ++i)
            for (Index k = 0; k < K; ++k) xb[static_cast<std::size_t>(i * K + k)] = float_to_bf16(X[i * ldx + k]);
        split_rows(w, [&](Index n0, Index n1) {
            by_fours(M, [&](auto mb, Index i) {
                rows_bf16_dot<decltype(mb)::value>(w, stored_row, n0, n1, xb.data() + i * K, K, Y + i * ldy, ldy);
            });
        });
        return;
    }
#endif
    std::vector<float> rounded;
    if (round_bf16) {
        rounded.resize(static_cast<std::size_t>(M * K));
        for (Index i = 0; i < M; ++i)
            for (Index k = 0; k < K; ++k) rounded[static_cast<std::size_t>(i * K + k)] = gemv_detail::round_bf16(X[i * ldx + k]);
        X = rounded.data();
        ldx = K;
    }
    split_rows(w, [&](Index n0, Index n1) {
        by_fours(M, [&](auto mb, Index i) {
            rows<decltype(mb)::value>(w, stored_row, n0, n1, X + i * ldx, ldx, Y + i * ldy, ldy, round_bf16);
        });
    });
}

/// The same with the stored rows in order.
inline void gemv_stored(const StoredMatrix& w, const float* X, Index ldx, Index M, float* Y, Index ldy, bool round_bf16 = false) {
    gemv_stored(w, [](Index n) { return n; }, X, ldx, M, Y, ldy, round_bf16);
}

#endif  // MASSACT_HAS_XSIMD

}  // namespace massact::kernels

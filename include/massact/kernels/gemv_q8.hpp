// massact/kernels/gemv_q8.hpp - the integer path for quantized weights (Precision::Q8): Y [M, N] = X [M, K] W^T
// for a few rows X, with W [N, K] in Q8_0, Q4_0, Q4_K, Q5_K or Q6_K and X quantized to 8 bits per block, the
// products summed in 32-bit integers (what llama.cpp's CPU backend does).
//
// The activations are quantized as llama.cpp quantizes them for these weights:
//   32-blocks (Q8_0, Q4_0 weights): per 32 values, d = amax / 127 (stored as f16, as block_q8_0 does),
//     q = round(x * 127 / amax) (nearest, ties to even);
//   K-quants: per 256 values (Q8_K), d = max / -127 with max the value of largest magnitude, q = round(x / d)
//     (at most 127), d kept in float32; the sums of q per 16 values ("bsums") carry the weights' offsets and mins.
// A block's contribution is then d_w * d_x * (an exact integer sum), the sub-block scales applied in integers.
// So the result differs from the float path (gemv_stored, the default and the reference) only by the rounding
// of x to 8 bits: about 0.4% of amax per value (half a quantization step, amax / 254), the error llama.cpp has.
//
// The inner products, 32 bytes at a time: for the 32-blocks AVX512-VNNI (with VL) or AVX-VNNI `vpdpbusd` where the
// compiler targets it, AVX2 `vpmaddubsw` + `vpmaddwd` otherwise (Q8_0's signed weights through 16-bit products);
// for the K-quants `vpmaddubsw` (exact: their q are 6-bit at most) and `vpmaddwd` with the sub-block scales, which
// applies the scales in the same instruction; a scalar loop on other CPUs. All give the same integers; only the
// float32 sums of the block contributions differ in order.
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/core/half.hpp"
#include "massact/io/ggml_blocks.hpp"
#include "massact/kernels/gemm.hpp"
#include "massact/kernels/gemv.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#elif defined(__SSE__)
#include <xmmintrin.h>  // (_mm_prefetch)
#endif

namespace massact::kernels {

/// Whether gemv_q8() multiplies `type` in integers (the other types take the float path).
inline bool gemv_q8_reads(io::ggml::Type type) {
    using T = io::ggml::Type;
    return type == T::Q8_0 || type == T::Q4_0 || type == T::Q4_K || type == T::Q5_K || type == T::Q6_K;
}

/// One row of activations quantized to 8 bits per block of `block` values (32, or 256 for the K-quants).
struct Q8Row {
    Index block = 32;
    std::vector<std::int8_t> q;   // [K]
    std::vector<float> d;         // [K / block]: x ~ d * q
    std::vector<std::int32_t> sums;  // sum of q per 32 values (block 32) or per 16 (block 256)
    std::vector<std::int16_t> sums16;  // block 256: the same sums as int16 (|sum| <= 16 x 127), for vpmaddwd
};

/// x [K] (K a multiple of `block`) quantized as llama.cpp quantizes activations (above). A block holding a
/// non-finite value gets d = NaN, so that the products are NaN as the float path's are.
inline void quantize_q8(const float* x, Index K, Index block, Q8Row& out) {
    if (block != 32 && block != 256) throw Error("quantize_q8: block " + std::to_string(block) + " (expected 32 or 256)");
    if (K % block != 0) throw Error("quantize_q8: " + std::to_string(K) + " values are not whole blocks of " + std::to_string(block));
    const Index nb = K / block, group = block == 32 ? 32 : 16;
    out.block = block;
    out.q.assign(static_cast<std::size_t>(K), 0);
    out.d.assign(static_cast<std::size_t>(nb), 0.0f);
    out.sums.assign(static_cast<std::size_t>(K / group), 0);
    for (Index b = 0; b < nb; ++b) {
        const float* v = x + b * block;
        std::int8_t* q = out.q.data() + b * block;
        float amax = 0.0f, max = 0.0f;
        bool finite = true;
        for (Index j = 0; j < block; ++j) {
            finite = finite && std::isfinite(v[j]);
            if (std::fabs(v[j]) > amax) amax = std::fabs(v[j]), max = v[j];
        }
        float& d = out.d[static_cast<std::size_t>(b)];
        if (!finite) {
            d = std::numeric_limits<float>::quiet_NaN();
            continue;
        }
        if (amax == 0.0f) continue;  // (d = 0, q = 0)
        const float scale = block == 32 ? 127.0f / amax : -127.0f / max;
        d = block == 32 ? f16_to_float(float_to_f16(amax / 127.0f)) : 1.0f / scale;
        for (Index j = 0; j < block; ++j)
            q[j] = static_cast<std::int8_t>(std::clamp(std::nearbyint(v[j] * scale), -127.0f, 127.0f));
    }
    for (Index g = 0; g < K / group; ++g) {
        std::int32_t s = 0;
        for (Index j = 0; j < group; ++j) s += out.q[static_cast<std::size_t>(g * group + j)];
        out.sums[static_cast<std::size_t>(g)] = s;
    }
    if (block == 256) out.sums16.assign(out.sums.begin(), out.sums.end());  // (exact: |s| <= 2032 for the groups of 16)
    else out.sums16.clear();
}

namespace gemv_q8_detail {

inline float half_at(const unsigned char* p) {
    std::uint16_t h;
    std::memcpy(&h, p, 2);
#if defined(__F16C__)
    return _cvtsh_ss(h);  // (one instruction, exact)
#else
    return f16_to_float(h);
#endif
}

#if defined(__AVX2__)
/// 8 int32 lanes, lane i the sum of u[4i .. 4i+3] * s[4i .. 4i+3] (u unsigned, at most 63 without VNNI).
inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#elif defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}
/// Lanes summing to sum w[j] * x[j] over 32 signed bytes (every int8 value, -128 included).
inline __m256i dot_s8s8(__m256i w, __m256i x, std::int32_t x_sum) {
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
    // (w + 128) is unsigned: sum (w + 128) x = sum w x + 128 sum x; the excess leaves through lane 0
    const __m256i p = dot_u8s8(_mm256_xor_si256(w, _mm256_set1_epi8(static_cast<char>(0x80))), x);
    return _mm256_sub_epi32(p, _mm256_castsi128_si256(_mm_cvtsi32_si128(128 * x_sum)));
#else
    (void)x_sum;
    const __m256i w0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w)), w1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1));
    const __m256i x0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(x)), x1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(x, 1));
    return _mm256_add_epi32(_mm256_madd_epi16(w0, x0), _mm256_madd_epi16(w1, x1));
#endif
}
inline std::int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}
inline float hsum_f32(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
#endif

/// Ask for the weights `ahead` bytes on: a row is streamed once, and the hardware prefetcher alone left the loads
/// waiting on memory (Q8_0 decoding 9.9 -> 11.2 tokens/s on the 1.1B shape).
inline void prefetch(const unsigned char* p, std::size_t ahead) {
#if defined(__SSE__) || defined(__AVX2__)
    _mm_prefetch(reinterpret_cast<const char*>(p) + ahead, _MM_HINT_T0);
#else
    (void)p, (void)ahead;
#endif
}

/// R <= 4 rows of quantized activations as the tiled products read them: raw pointers (no indirection in the inner
/// loops) and the rows' block scales side by side, d4[4 b + r] = row r's scale of block b.
struct Q8Tile {
    const std::int8_t* q[4] = {};
    const std::int32_t* sums[4] = {};
    const std::int16_t* sums16[4] = {};
    const float* d4 = nullptr;
};

/// out[r] = sum over the row's nb blocks of w . (row r of the tile) for R rows of activations at once, one function per weight
/// type: each block of weights is loaded and decoded once for the R rows (a prefill's tile), and each row's sums are
/// taken in the same order as with R = 1, so a row's result does not depend on the rows beside it (a prompt's
/// prefill and its token-by-token decoding give the same products bit for bit).
template <int R>
inline void dot_q8_0(const unsigned char* w, const Q8Tile& t, Index nb, float* out) {
    const auto dx = [&t](int r, Index b) { return t.d4[4 * b + r]; };
    const auto xq = [&t](int r, Index b) { return t.q[r] + 32 * b; };
#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
    // Two blocks per 512-bit step, two accumulators (the float chain no longer waits on one fma per block).
    // vpdpbusd takes unsigned x signed bytes: |w| times x with w's sign moved onto x, exact for every int8 w
    // (|-128| = 128 as unsigned; x is never -128).
    __m512 acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const auto pair = [&](const unsigned char* wp, Index b, int j) {  // blocks b and b + 1 at wp, into acc[.][j]
        const __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(load32(wp + 2)), load32(wp + 36), 1);
        const __m512i magnitude = _mm512_abs_epi8(wv);
        const __mmask64 negative = _mm512_movepi8_mask(wv);
        const float d0 = half_at(wp), d1 = half_at(wp + 34);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
            const __m512i xv = _mm512_loadu_si512(xq(r, b));
            const __m512i sx = _mm512_mask_sub_epi8(xv, negative, _mm512_setzero_si512(), xv);
            const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), magnitude, sx);
            const __m512 scale = _mm512_insertf32x8(_mm512_set1_ps(d0 * dx(r, b)), _mm256_set1_ps(d1 * dx(r, b + 1)), 1);
            acc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scale, acc[r][j]);
        }
    };
    Index b = 0;
    for (; b + 4 <= nb; b += 4, w += 136) {
        prefetch(w, 1024);
        prefetch(w, 1024 + 64);
        prefetch(w, 1024 + 128);
        pair(w, b, 0);
        pair(w + 68, b + 2, 1);
    }
    if (b + 2 <= nb) {
        pair(w, b, 0);
        b += 2, w += 68;
    }
    for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
    for (; b < nb; ++b, w += 34) {
        const __m256i wv = load32(w + 2);
        const float d = half_at(w);
        for (int r = 0; r < R; ++r)
            out[r] += d * dx(r, b) * static_cast<float>(hsum_i32(dot_s8s8(wv, load32(xq(r, b)), t.sums[r][b])));
    }
#elif defined(__AVX2__)
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (Index b = 0; b < nb; ++b, w += 34) {
        prefetch(w, 1024);
        const __m256i wv = load32(w + 2);
        const float d = half_at(w);
        for (int r = 0; r < R; ++r) {
            const __m256i p = dot_s8s8(wv, load32(xq(r, b)), t.sums[r][b]);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * dx(r, b)), acc[r]);
        }
    }
    for (int r = 0; r < R; ++r) out[r] = hsum_f32(acc[r]);
#else
    for (int r = 0; r < R; ++r) out[r] = 0.0f;
    for (Index b = 0; b < nb; ++b, w += 34)
        for (int r = 0; r < R; ++r) {
            std::int32_t isum = 0;
            for (int j = 0; j < 32; ++j) isum += static_cast<std::int8_t>(w[2 + j]) * xq(r, b)[j];
            out[r] += half_at(w) * dx(r, b) * static_cast<float>(isum);
        }
#endif
}

template <int R>
inline void dot_q4_0(const unsigned char* w, const Q8Tile& t, Index nb, float* out) {
    const auto dx = [&t](int r, Index b) { return t.d4[4 * b + r]; };
    const auto xq = [&t](int r, Index b) { return t.q[r] + 32 * b; };
#if defined(__AVX2__)
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    const __m128i low4 = _mm_set1_epi8(0x0F);
    for (Index b = 0; b < nb; ++b, w += 18) {
        prefetch(w, 1024);
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2));
        const __m256i u = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), low4), _mm_and_si128(v, low4));
        const float d = half_at(w);
        for (int r = 0; r < R; ++r) {  // sum (u - 8) x = sum u x - 8 sum x
            const __m256i p = _mm256_sub_epi32(dot_u8s8(u, load32(xq(r, b))),
                                               _mm256_castsi128_si256(_mm_cvtsi32_si128(8 * t.sums[r][b])));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * dx(r, b)), acc[r]);
        }
    }
    for (int r = 0; r < R; ++r) out[r] = hsum_f32(acc[r]);
#else
    for (int r = 0; r < R; ++r) out[r] = 0.0f;
    for (Index b = 0; b < nb; ++b, w += 18)
        for (int r = 0; r < R; ++r) {
            std::int32_t isum = 0;
            for (int j = 0; j < 16; ++j) isum += ((w[2 + j] & 0xF) - 8) * xq(r, b)[j] + ((w[2 + j] >> 4) - 8) * xq(r, b)[16 + j];
            out[r] += half_at(w) * dx(r, b) * static_cast<float>(isum);
        }
#endif
}

/// Q4_K / Q5_K's eight 6-bit scales and mins from their 12 bytes, four at a time: bytes 0-3 hold the low six bits
/// of scales 0-3 and bits 4-5 of scales 4-7, bytes 4-7 the same for the mins, bytes 8-11 the low four bits of scales
/// 4-7 (low nibbles) and of mins 4-7 (high nibbles).
inline void scales_mins(const unsigned char* q, unsigned char (&sc)[8], unsigned char (&m)[8]) {
    std::uint32_t word[3];
    std::memcpy(word, q, 12);
    const std::uint32_t six = 0x3f3f3f3fu, four = 0x0f0f0f0fu, two = 0x03030303u;
    const std::uint32_t s_lo = word[0] & six, m_lo = word[1] & six;
    const std::uint32_t s_hi = (word[2] & four) | (((word[0] >> 6) & two) << 4);
    const std::uint32_t m_hi = ((word[2] >> 4) & four) | (((word[1] >> 6) & two) << 4);
#if defined(__AVX2__)  // (x86: little-endian, byte i of a word is its lowest-but-i byte in memory)
    std::memcpy(sc, &s_lo, 4), std::memcpy(sc + 4, &s_hi, 4), std::memcpy(m, &m_lo, 4), std::memcpy(m + 4, &m_hi, 4);
#else
    for (int i = 0; i < 4; ++i) {  // (byte i of a word is the value of sub-block i, on any byte order)
        sc[i] = static_cast<unsigned char>(s_lo >> (8 * i)), sc[4 + i] = static_cast<unsigned char>(s_hi >> (8 * i));
        m[i] = static_cast<unsigned char>(m_lo >> (8 * i)), m[4 + i] = static_cast<unsigned char>(m_hi >> (8 * i));
    }
#endif
}

/// Q4_K (five = false) and Q5_K: x = d * sc * q - dmin * m per sub-block of 32.
template <bool five, int R>
inline void dot_q45_k(const unsigned char* w, const Q8Tile& t, Index nb, float* out) {
    const std::size_t bytes = five ? 176 : 144;
    const auto dx = [&t](int r, Index b) { return t.d4[4 * b + r]; };
#if defined(__AVX2__)
    // Every block's integer sums stay in vector lanes and go into one float accumulator (one horizontal sum a row):
    // d dx sum_k sc_k (q . x)_k  -  dmin dx sum_j m_j (sum of x over sub-block j).
    __m256 accf[R];
    for (int r = 0; r < R; ++r) accf[r] = _mm256_setzero_ps();
    const __m128i pairs_of = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);  // m_j for both halves of sub-block j
    for (Index b = 0; b < nb; ++b, w += bytes) {
        for (std::size_t ahead = 1024; ahead < 1024 + bytes; ahead += 64) prefetch(w, ahead);
        const unsigned char* qs = w + (five ? 48 : 16);
        const unsigned char* qh = w + 16;
        unsigned char sc[8], m[8];
        scales_mins(w + 4, sc, m);
        std::uint64_t m8;
        std::memcpy(&m8, m, 8);
        const __m256i m16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_cvtsi64_si128(static_cast<long long>(m8)), pairs_of));
        // 16-bit products of pairs (exact: q <= 31, |x| <= 127), times the sub-block's scale into 32 bits
        const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
        const __m256i hbits = five ? load32(qh) : _mm256_setzero_si256();
        __m256i acc[R];
        for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_si256();
        for (int g = 0; g < 4; ++g) {
            const __m256i v = load32(qs + 32 * g);
            for (int h = 0; h < 2; ++h) {
                const int k = 2 * g + h;
                __m256i u = _mm256_and_si256(h ? _mm256_srli_epi16(v, 4) : v, low4);
                if constexpr (five) u = _mm256_or_si256(u, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hbits, _mm_cvtsi32_si128(k)), one), 4));
                const __m256i scale = _mm256_set1_epi16(sc[k]);
#pragma GCC unroll 4
                for (int r = 0; r < R; ++r) {
                    const __m256i pairs = _mm256_maddubs_epi16(u, load32(t.q[r] + 256 * b + 32 * k));
                    acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(pairs, scale));
                }
            }
        }
        const float d = half_at(w), dmin = half_at(w + 2);
        for (int r = 0; r < R; ++r) {
            const __m256i mins = _mm256_madd_epi16(m16, load32(t.sums16[r] + 16 * b));  // 8 lanes: m_j x sum over sub-block j
            accf[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r]), _mm256_set1_ps(d * dx(r, b)), accf[r]);
            accf[r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(dmin * dx(r, b)), accf[r]);
        }
    }
    for (int r = 0; r < R; ++r) out[r] = hsum_f32(accf[r]);
#else
    for (int r = 0; r < R; ++r) out[r] = 0.0f;
    for (Index b = 0; b < nb; ++b, w += bytes) {
        const unsigned char* qs = w + (five ? 48 : 16);
        const unsigned char* qh = w + 16;
        unsigned char sc[8], m[8];
        scales_mins(w + 4, sc, m);
        for (int r = 0; r < R; ++r) {
            const std::int8_t* xq = t.q[r] + 256 * b;
            const std::int32_t* bs = t.sums[r] + 16 * b;
            std::int32_t isum = 0, mins = 0;
            for (int j = 0; j < 8; ++j) mins += m[j] * (bs[2 * j] + bs[2 * j + 1]);
            for (int k = 0; k < 8; ++k) {
                std::int32_t sub = 0;
                for (int l = 0; l < 32; ++l) {
                    const unsigned char byte = qs[32 * (k / 2) + l];
                    int q = (k & 1) ? byte >> 4 : byte & 0xF;
                    if (five) q |= ((qh[l] >> k) & 1) << 4;
                    sub += q * xq[32 * k + l];
                }
                isum += sc[k] * sub;
            }
            out[r] += half_at(w) * dx(r, b) * static_cast<float>(isum) - half_at(w + 2) * dx(r, b) * static_cast<float>(mins);
        }
    }
#endif
}

/// Q6_K: x = d * sc * (q - 32) per sub-block of 16, q 6-bit (4 bits in ql, 2 in qh).
template <int R>
inline void dot_q6_k(const unsigned char* w, const Q8Tile& t, Index nb, float* out) {
    const auto dx = [&t](int r, Index b) { return t.d4[4 * b + r]; };
#if defined(__AVX2__)
    // As Q4_K: integer sums in lanes, one float accumulator; the offset 32 sum_j sc_j (sum of x over sub-block j)
    // by vpmaddwd of the 16 scales with the 16 sums.
    __m256 accf[R];
    for (int r = 0; r < R; ++r) accf[r] = _mm256_setzero_ps();
    for (Index b = 0; b < nb; ++b, w += 210) {
        for (std::size_t ahead = 1024; ahead < 1024 + 210; ahead += 64) prefetch(w, ahead);
        const auto* sc = reinterpret_cast<const std::int8_t*>(w + 192);
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)));
        // 16-bit products of pairs (exact: q <= 63, |x| <= 127), times the scales of the two 16-value sub-blocks
        const __m256i low4 = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3);
        __m256i acc[R];
        for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_si256();
        for (int half = 0; half < 2; ++half) {
            const __m256i ql[2] = {load32(w + 64 * half), load32(w + 64 * half + 32)};
            const __m256i qh = load32(w + 128 + 32 * half);
            for (int g = 0; g < 4; ++g) {  // values 128 half + 32 g .. + 31: sub-blocks 8 half + 2 g and + 1
                const __m256i nib = _mm256_and_si256(g < 2 ? ql[g & 1] : _mm256_srli_epi16(ql[g & 1], 4), low4);
                const __m256i top = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g)), three);
                const __m256i u = _mm256_or_si256(nib, _mm256_slli_epi16(top, 4));
                const int j = 8 * half + 2 * g;
                const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(sc[j + 1]), _mm_set1_epi16(sc[j]));
#pragma GCC unroll 4
                for (int r = 0; r < R; ++r) {
                    const __m256i pairs = _mm256_maddubs_epi16(u, load32(t.q[r] + 256 * b + 128 * half + 32 * g));
                    acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(pairs, scales));
                }
            }
        }
        const float d = half_at(w + 208);
        for (int r = 0; r < R; ++r) {
            const __m256i offset = _mm256_madd_epi16(sc16, load32(t.sums16[r] + 16 * b));
            acc[r] = _mm256_sub_epi32(acc[r], _mm256_slli_epi32(offset, 5));
            accf[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r]), _mm256_set1_ps(d * dx(r, b)), accf[r]);
        }
    }
    for (int r = 0; r < R; ++r) out[r] = hsum_f32(accf[r]);
#else
    for (int r = 0; r < R; ++r) out[r] = 0.0f;
    for (Index b = 0; b < nb; ++b, w += 210) {
        const auto* sc = reinterpret_cast<const std::int8_t*>(w + 192);
        for (int r = 0; r < R; ++r) {
            const std::int8_t* xq = t.q[r] + 256 * b;
            const std::int32_t* bs = t.sums[r] + 16 * b;
            std::int32_t offset = 0;  // sum over sub-blocks of sc * sum x (the q - 32)
            for (int j = 0; j < 16; ++j) offset += sc[j] * bs[j];
            std::int32_t isum = 0;
            for (int v = 0; v < 256; ++v) {
                const int half = v / 128, rest = v % 128, g = rest / 32, l = rest % 32;
                const unsigned char lo = w[64 * half + 32 * (g & 1) + l];
                const int q = (g < 2 ? lo & 0xF : lo >> 4) | (((w[128 + 32 * half + l] >> (2 * g)) & 3) << 4);
                isum += sc[v / 16] * q * xq[v];
            }
            out[r] += half_at(w + 208) * dx(r, b) * static_cast<float>(isum - 32 * offset);
        }
    }
#endif
}

template <int R>
inline void dot_rows(io::ggml::Type type, const unsigned char* w, const Q8Tile& t, Index nb, float* out) {
    switch (type) {
        case io::ggml::Type::Q8_0: return dot_q8_0<R>(w, t, nb, out);
        case io::ggml::Type::Q4_0: return dot_q4_0<R>(w, t, nb, out);
        case io::ggml::Type::Q4_K: return dot_q45_k<false, R>(w, t, nb, out);
        case io::ggml::Type::Q5_K: return dot_q45_k<true, R>(w, t, nb, out);
        case io::ggml::Type::Q6_K: return dot_q6_k<R>(w, t, nb, out);
        default:  // (not reached: gemv_q8 checks the type first)
            for (int r = 0; r < R; ++r) out[r] = std::numeric_limits<float>::quiet_NaN();
    }
}

}  // namespace gemv_q8_detail

/// The block of activations a weight type is multiplied with: 32 for Q8_0 / Q4_0, 256 for the K-quants.
inline Index q8_block(io::ggml::Type type) {
    return type == io::ggml::Type::Q8_0 || type == io::ggml::Type::Q4_0 ? 32 : 256;
}

/// Y [M, N] (row stride ldy) = X [M, K] W^T in integers (above), W = `w` whose logical row n is stored row
/// stored_row(n); gemv_q8_reads(w.type) must hold. Each row of X is quantized once; the rows of W are split into
/// contiguous ranges over the threads and read from memory once: a range is taken 16 rows of W at a time (they stay
/// in cache) against tiles of up to 4 rows of X, each block of weights decoded once per tile. A row of Y does not
/// depend on the other rows of X (each row's sums keep one order). The model uses it for a few rows (decoding,
/// Precision::Q8): for a prefill, the float path's register-blocked GEMM on the dequantized blocks was faster here
/// (integer tiles of 4 rows: 82-94 tokens/s against 110-114 on the 1.1B shape's Q8_0 and Q4_K_M, 2 threads).
template <typename StoredRow>
void gemv_q8(const StoredMatrix& w, StoredRow&& stored_row, const float* X, Index ldx, Index M, float* Y, Index ldy) {
    const Index N = w.rows, K = w.cols;
    if (M <= 0 || N <= 0) return;
    if (!gemv_q8_reads(w.type)) throw Error("gemv_q8: no integer product for the stored type");
    const Index block = q8_block(w.type), nb = K / block;
    if (K % block != 0) throw Error("gemv_q8: " + std::to_string(K) + " columns are not whole blocks of " + std::to_string(block));
    std::vector<Q8Row> acts(static_cast<std::size_t>(M));
    for (Index i = 0; i < M; ++i) quantize_q8(X + i * ldx, K, block, acts[static_cast<std::size_t>(i)]);
    constexpr Index kTile = 4, kWeightRows = 16;
    const Index tiles = (M + kTile - 1) / kTile;
    std::vector<gemv_q8_detail::Q8Tile> tile(static_cast<std::size_t>(tiles));
    std::vector<float> d4(static_cast<std::size_t>(tiles * nb * 4), 0.0f);  // each tile's block scales side by side
    for (Index i = 0; i < M; ++i) {
        const Q8Row& a = acts[static_cast<std::size_t>(i)];
        gemv_q8_detail::Q8Tile& t = tile[static_cast<std::size_t>(i / kTile)];
        const Index r = i % kTile;
        t.q[r] = a.q.data(), t.sums[r] = a.sums.data(), t.sums16[r] = a.sums16.data();
        t.d4 = d4.data() + (i / kTile) * nb * 4;
        for (Index b = 0; b < nb; ++b) d4[static_cast<std::size_t>(((i / kTile) * nb + b) * 4 + r)] = a.d[static_cast<std::size_t>(b)];
    }
    split_rows(w, [&](Index n0, Index n1) {
        for (Index c0 = n0; c0 < n1; c0 += kWeightRows) {  // 16 rows of W (in cache) against every tile of X
            const Index c1 = std::min(n1, c0 + kWeightRows);
            for (Index ti = 0; ti < tiles; ++ti) {
                const auto run = [&](auto rows_c) {
                    constexpr int R = decltype(rows_c)::value;
                    for (Index n = c0; n < c1; ++n) {
                        float out[R];
                        gemv_q8_detail::dot_rows<R>(w.type, w.data + static_cast<std::size_t>(stored_row(n)) * w.row_bytes,
                                                    tile[static_cast<std::size_t>(ti)], nb, out);
                        for (int r = 0; r < R; ++r) Y[(ti * kTile + r) * ldy + n] = out[r];
                    }
                };
                switch (std::min(kTile, M - ti * kTile)) {
                    case 4: run(std::integral_constant<int, 4>{}); break;
                    case 3: run(std::integral_constant<int, 3>{}); break;
                    case 2: run(std::integral_constant<int, 2>{}); break;
                    default: run(std::integral_constant<int, 1>{});
                }
            }
        }
    });
}

/// The same with the stored rows in order.
inline void gemv_q8(const StoredMatrix& w, const float* X, Index ldx, Index M, float* Y, Index ldy) {
    gemv_q8(w, [](Index n) { return n; }, X, ldx, M, Y, ldy);
}

}  // namespace massact::kernels

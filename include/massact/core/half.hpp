// massact/core/half.hpp - IEEE binary16 and bfloat16 <-> float32.
//
// Conversions are exact (every half and bfloat16 value is a float32 value);
// float -> half rounds to nearest even. Bulk conversion of half buffers uses
// F16C when the compiler targets it.
#pragma once

#include "massact/core/third_party.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__F16C__) || defined(__AVX2__) || defined(__AVX512F__)
MASSACT_THIRD_PARTY_BEGIN
#include <immintrin.h>
MASSACT_THIRD_PARTY_END
#endif

namespace massact {

/// The float whose IEEE-754 bits are `bits`, and the bits of a float (std::bit_cast before C++20).
inline float float_from_bits(std::uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}
inline std::uint32_t float_bits(float f) {
    std::uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    return bits;
}

inline float bf16_to_float(std::uint16_t h) { return float_from_bits(static_cast<std::uint32_t>(h) << 16); }

inline std::uint16_t float_to_bf16(float f) {
    const std::uint32_t bits = float_bits(f);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);  // NaN stays NaN
    const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
    return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

inline float f16_to_float(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu;
    std::uint32_t mant = h & 0x3ffu;
    std::uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            int e = -1;
            do { ++e; mant <<= 1; } while ((mant & 0x400u) == 0);
            bits = sign | (static_cast<std::uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    return float_from_bits(bits);
}

inline std::uint16_t float_to_f16(float f) {
    const std::uint32_t x = float_bits(f);
    const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
    const std::uint32_t absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);  // NaN
    if (absx >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow -> inf
    if (absx < 0x38800000u) {  // subnormal or zero in half
        if (absx < 0x33000000u) return sign;
        const std::uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
        const int shift = 113 - static_cast<int>(absx >> 23) + 13;
        std::uint32_t r = mant >> shift;
        const std::uint32_t rem = mant & ((1u << shift) - 1u);
        const std::uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return static_cast<std::uint16_t>(sign | r);
    }
    std::uint32_t r = ((absx >> 13) - ((127u - 15u) << 10));
    const std::uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return static_cast<std::uint16_t>(sign | r);
}

/// Convert n bfloat16 values (unaligned source) to float32. Chunks are copied to an aligned
/// buffer first so that the widening loop vectorises.
inline void bf16_to_float(const void* src, float* dst, std::size_t n) {
    const unsigned char* s = static_cast<const unsigned char*>(src);
    std::size_t i0 = 0;
#if defined(__AVX512F__)
    for (; i0 + 16 <= n; i0 += 16) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + 2 * i0));
        _mm512_storeu_si512(dst + i0, _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
#elif defined(__AVX2__)
    for (; i0 + 8 <= n; i0 += 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 2 * i0));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i0), _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
#endif
    s += 2 * i0;
    dst += i0;
    n -= i0;
    constexpr std::size_t chunk = 512;
    alignas(64) std::uint16_t buf[chunk];
    alignas(64) std::uint32_t wide[chunk];
    for (std::size_t i = 0; i < n; i += chunk) {
        const std::size_t m = n - i < chunk ? n - i : chunk;
        std::memcpy(buf, s + 2 * i, 2 * m);
        for (std::size_t k = 0; k < m; ++k) wide[k] = static_cast<std::uint32_t>(buf[k]) << 16;
        std::memcpy(dst + i, wide, 4 * m);  // float bits
    }
}

/// Convert n binary16 values (unaligned source) to float32.
inline void f16_to_float(const void* src, float* dst, std::size_t n) {
    const unsigned char* s = static_cast<const unsigned char*>(src);
    std::size_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
#endif
    for (; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        dst[i] = f16_to_float(h);
    }
}

}  // namespace massact

// massact/io/ggml_blocks.hpp - the tensor types of GGUF files (ggml's block quantizations) and their
// dequantization to float32.
//
// A quantized row is a sequence of blocks of B elements; every block stores its own scale(s) in half
// precision (f16 below) and small integers q. Element j of a block (the formats, as ggml defines them):
//   Q8_0  (B 32,  34 bytes: f16 d, int8 q[32])             x = d * q[j]
//   Q4_0  (B 32,  18 bytes: f16 d, u8 qs[16])              x = d * (q - 8),  q = qs[j] & 15 (j < 16), qs[j-16] >> 4
//   Q4_1  (B 32,  20 bytes: f16 d, f16 m, u8 qs[16])       x = d * q + m
//   Q5_0  (B 32,  22 bytes: f16 d, u32 qh, u8 qs[16])      x = d * (q + 16 * bit j of qh - 16)
//   Q5_1  (B 32,  24 bytes: f16 d, f16 m, u32 qh, qs[16])  x = d * (q + 16 * bit j of qh) + m
// K-quants: super-blocks of 256 elements in sub-blocks of 16 or 32, each with its own 4-, 6- or 8-bit
// scale (and min) relative to the super-block's f16 d (and dmin):
//   Q2_K  (84 bytes:  u8 scales[16], u8 qs[64], f16 d, f16 dmin)   16 x 16: x = d * (sc & 15) * q - dmin * (sc >> 4), 2-bit q
//   Q3_K  (110 bytes: u8 hmask[32], u8 qs[64], u8 scales[12], f16 d) 16 x 16: x = d * (s - 32) * (q - 4 * !hbit), 6-bit s
//   Q4_K  (144 bytes: f16 d, f16 dmin, u8 scales[12], u8 qs[128])  8 x 32: x = d * s * q - dmin * m, 6-bit s, m
//   Q5_K  (176 bytes: f16 d, f16 dmin, scales[12], u8 qh[32], qs[128]) the same with a fifth bit from qh
//   Q6_K  (210 bytes: u8 ql[128], u8 qh[64], int8 scales[16], f16 d) 16 x 16: x = d * s * (q - 32), 6-bit q
// Non-linear and ternary types: a 4-bit index into a table of 16 values, or a trit:
//   IQ4_NL (B 32,  18 bytes: f16 d, u8 qs[16])             x = d * kv[q], q as in Q4_0, kv the 16 IQ4 values below
//   IQ4_XS (B 256, 136 bytes: f16 d, u16 scales_h, u8 scales_l[4], u8 qs[128])  8 x 32: x = (d * (s - 32)) * kv[q],
//          6-bit s (low 4 bits from scales_l, high 2 from scales_h), q as in Q4_0 within each 32
//   MXFP4  (B 32,  17 bytes: u8 e, u8 qs[16])              x = e2m1[q] * 2^(e - 127) (OCP microscaling: e is E8M0)
//   TQ1_0  (B 256, 54 bytes: u8 qs[48], u8 qh[4], f16 d)   x = d * (t - 1), trits t packed five per byte (four in qh)
//   TQ2_0  (B 256, 66 bytes: u8 qs[64], f16 d)             x = d * (q - 1), 2-bit q
// Where the bits of each q and scale sit is spelled out in the dequantizers below.
#pragma once

#include "massact/core/error.hpp"
#include "massact/core/half.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

namespace massact::io::ggml {

/// ggml's type ids (the numbers stored in GGUF tensor infos).
enum class Type : std::uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9, Q2_K = 10, Q3_K = 11, Q4_K = 12,
    Q5_K = 13, Q6_K = 14, Q8_K = 15, IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21,
    IQ2_S = 22, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30, TQ1_0 = 34,
    TQ2_0 = 35, MXFP4 = 39,
};

struct TypeInfo {
    const char* name;
    std::uint32_t block;  // elements per block (1: not blocked)
    std::uint32_t bytes;  // bytes per block
    bool readable;        // massact dequantizes it
};

/// Name and block layout of a type id; name "" for ids ggml does not define.
inline TypeInfo type_info(std::uint32_t id) {
    switch (static_cast<Type>(id)) {
        case Type::F32: return {"F32", 1, 4, true};
        case Type::F16: return {"F16", 1, 2, true};
        case Type::BF16: return {"BF16", 1, 2, true};
        case Type::Q4_0: return {"Q4_0", 32, 18, true};
        case Type::Q4_1: return {"Q4_1", 32, 20, true};
        case Type::Q5_0: return {"Q5_0", 32, 22, true};
        case Type::Q5_1: return {"Q5_1", 32, 24, true};
        case Type::Q8_0: return {"Q8_0", 32, 34, true};
        case Type::Q8_1: return {"Q8_1", 32, 36, false};
        case Type::Q2_K: return {"Q2_K", 256, 84, true};
        case Type::Q3_K: return {"Q3_K", 256, 110, true};
        case Type::Q4_K: return {"Q4_K", 256, 144, true};
        case Type::Q5_K: return {"Q5_K", 256, 176, true};
        case Type::Q6_K: return {"Q6_K", 256, 210, true};
        case Type::Q8_K: return {"Q8_K", 256, 292, false};
        case Type::IQ2_XXS: return {"IQ2_XXS", 256, 66, false};
        case Type::IQ2_XS: return {"IQ2_XS", 256, 74, false};
        case Type::IQ3_XXS: return {"IQ3_XXS", 256, 98, false};
        case Type::IQ1_S: return {"IQ1_S", 256, 50, false};
        case Type::IQ4_NL: return {"IQ4_NL", 32, 18, true};
        case Type::IQ3_S: return {"IQ3_S", 256, 110, false};
        case Type::IQ2_S: return {"IQ2_S", 256, 82, false};
        case Type::IQ4_XS: return {"IQ4_XS", 256, 136, true};
        case Type::I8: return {"I8", 1, 1, false};
        case Type::I16: return {"I16", 1, 2, false};
        case Type::I32: return {"I32", 1, 4, false};
        case Type::I64: return {"I64", 1, 8, false};
        case Type::F64: return {"F64", 1, 8, false};
        case Type::IQ1_M: return {"IQ1_M", 256, 56, false};
        case Type::TQ1_0: return {"TQ1_0", 256, 54, true};
        case Type::TQ2_0: return {"TQ2_0", 256, 66, true};
        case Type::MXFP4: return {"MXFP4", 32, 17, true};
    }
    return {"", 0, 0, false};
}

namespace detail {

inline float f16(const unsigned char* p) {
    std::uint16_t h;
    std::memcpy(&h, p, 2);
    return massact::f16_to_float(h);
}

/// The 16 values of IQ4_NL and IQ4_XS (a non-uniform 4-bit grid, denser near zero; ggml's kvalues_iq4nl).
constexpr std::int8_t kIQ4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
/// MXFP4's e2m1 values doubled (so they are integers; the block exponent is halved to match).
constexpr std::int8_t kE2M1Doubled[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/// Q4_K / Q5_K: the 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes: j < 4 in the low
/// six bits of bytes j and j + 4; j >= 4 in the nibbles of byte j + 4 with their top two bits in the
/// top bits of bytes j - 4 (scale) and j (min).
inline void scale_min_k4(int j, const unsigned char* q, float& sc, float& m) {
    if (j < 4) {
        sc = static_cast<float>(q[j] & 63);
        m = static_cast<float>(q[j + 4] & 63);
    } else {
        sc = static_cast<float>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = static_cast<float>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

inline void q8_0(const unsigned char* b, float* y) {
    const float d = f16(b);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(static_cast<std::int8_t>(b[2 + j]));
}

inline void q4_0(const unsigned char* b, float* y) {
    const float d = f16(b);
    const unsigned char* qs = b + 2;
    for (int j = 0; j < 16; ++j) {
        y[j] = d * static_cast<float>((qs[j] & 0xF) - 8);
        y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
    }
}

inline void q4_1(const unsigned char* b, float* y) {
    const float d = f16(b), m = f16(b + 2);
    const unsigned char* qs = b + 4;
    for (int j = 0; j < 16; ++j) {
        y[j] = d * static_cast<float>(qs[j] & 0xF) + m;
        y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
    }
}

/// Q5_0 (with_min false) and Q5_1: the fifth bit of element j is bit j of the little-endian u32 qh.
inline void q5(const unsigned char* b, float* y, bool with_min) {
    const float d = f16(b), m = with_min ? f16(b + 2) : 0.0f;
    const unsigned char* p = b + (with_min ? 4 : 2);
    const std::uint32_t qh = std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 | std::uint32_t(p[3]) << 24;
    const unsigned char* qs = p + 4;
    const int offset = with_min ? 0 : 16;
    for (int j = 0; j < 16; ++j) {
        const int lo = (qs[j] & 0xF) | static_cast<int>(((qh >> j) & 1) << 4);
        const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
        y[j] = d * static_cast<float>(lo - offset) + m;
        y[j + 16] = d * static_cast<float>(hi - offset) + m;
    }
}

/// Q2_K: two halves of 128; in each, byte l of qs[32 * half ..] holds four 2-bit values (bits 2s..2s+1
/// for s = 0..3), one in each of four 32-element groups; each group is two sub-blocks of 16 with their
/// own scale byte (low nibble: scale, high nibble: min).
inline void q2_k(const unsigned char* b, float* y) {
    const unsigned char* scales = b;
    const unsigned char* qs = b + 16;
    const float d = f16(b + 80), dmin = f16(b + 82);
    int is = 0;
    for (int half = 0; half < 2; ++half, qs += 32)
        for (int shift = 0; shift < 8; shift += 2)
            for (int sub = 0; sub < 2; ++sub) {
                const unsigned char sc = scales[is++];
                const float dl = d * static_cast<float>(sc & 0xF), ml = dmin * static_cast<float>(sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((qs[16 * sub + l] >> shift) & 3) - ml;
            }
}

/// Q3_K: as Q2_K for the low two bits; the third bit of element i of each 32-element group s (0..7 over
/// the block) is bit s of hmask[i] (set: q, clear: q - 4). The sixteen 6-bit scales: low nibble of
/// scales[j] (j < 8) or high nibble of scales[j - 8]; top two bits at bits 2 (j / 4) of scales[8 + j % 4].
inline void q3_k(const unsigned char* b, float* y) {
    const unsigned char* hmask = b;
    const unsigned char* qs = b + 32;
    const unsigned char* s = b + 96;
    const float d = f16(b + 108);
    int scale[16];
    for (int j = 0; j < 16; ++j) {
        const int low = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
        const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        scale[j] = (low | (high << 4)) - 32;
    }
    int is = 0, bit = 0;
    for (int half = 0; half < 2; ++half, qs += 32)
        for (int shift = 0; shift < 8; shift += 2, ++bit)
            for (int sub = 0; sub < 2; ++sub) {
                const float dl = d * static_cast<float>(scale[is++]);
                for (int l = 0; l < 16; ++l) {
                    const int i = 16 * sub + l;
                    const int q = ((qs[i] >> shift) & 3) - ((hmask[i] >> bit) & 1 ? 0 : 4);
                    *y++ = dl * static_cast<float>(q);
                }
            }
}

/// Q4_K (with qh == nullptr) and Q5_K: four 64-element groups; group g reads 32 bytes of qs, the low
/// nibbles for its first 32 elements (sub-block 2g), the high nibbles for the next 32 (sub-block 2g + 1);
/// Q5_K's fifth bit of element l of sub-block k is bit k of qh[l].
inline void q45_k(const unsigned char* b, float* y, bool five) {
    const float d = f16(b), dmin = f16(b + 2);
    const unsigned char* scales = b + 4;
    const unsigned char* qh = five ? b + 16 : nullptr;
    const unsigned char* qs = b + (five ? 48 : 16);
    for (int g = 0; g < 4; ++g, qs += 32)
        for (int h = 0; h < 2; ++h) {
            const int k = 2 * g + h;
            float sc, m;
            scale_min_k4(k, scales, sc, m);
            const float dl = d * sc, ml = dmin * m;
            for (int l = 0; l < 32; ++l) {
                int q = h ? qs[l] >> 4 : qs[l] & 0xF;
                if (qh) q |= ((qh[l] >> k) & 1) << 4;
                *y++ = dl * static_cast<float>(q) - ml;
            }
        }
}

/// Q6_K: two halves of 128 elements; in half h, element 32 s + l (s = 0..3) takes its low nibble from
/// ql[64 h + l + 32 (s & 1)] (low nibble for s < 2, high for s >= 2) and its top two bits from bits 2 s of
/// qh[32 h + l]; sub-block of 16 elements i uses the signed scale scales[i].
inline void q6_k(const unsigned char* b, float* y) {
    const unsigned char* ql = b;
    const unsigned char* qh = b + 128;
    const auto* sc = reinterpret_cast<const std::int8_t*>(b + 192);
    const float d = f16(b + 208);
    for (int h = 0; h < 2; ++h, ql += 64, qh += 32, sc += 8, y += 128)
        for (int s = 0; s < 4; ++s)
            for (int l = 0; l < 32; ++l) {
                const unsigned char lo = ql[l + 32 * (s & 1)];
                const int q = ((s < 2 ? lo & 0xF : lo >> 4) | (((qh[l] >> (2 * s)) & 3) << 4)) - 32;
                y[32 * s + l] = d * static_cast<float>(sc[2 * s + l / 16]) * static_cast<float>(q);
            }
}

/// 32 values from 16 bytes of 4-bit indices into `table`: y[j] = d * table[low nibble of qs[j]], y[j + 16] = d *
/// table[high nibble of qs[j]] (IQ4_NL, each 32 of IQ4_XS, MXFP4).
inline void table_nibbles(const unsigned char* qs, float d, const std::int8_t* table, float* y) {
    for (int j = 0; j < 16; ++j) {
        y[j] = d * float(table[qs[j] & 15]);
        y[j + 16] = d * float(table[qs[j] >> 4]);
    }
}

/// IQ4_NL: element j < 16 from the low nibble of qs[j], j >= 16 from the high nibble of qs[j - 16].
inline void iq4_nl(const unsigned char* b, float* y) { table_nibbles(b + 2, f16(b), kIQ4Values, y); }

/// IQ4_XS: sub-block i (32 elements) has scale ((scales_l[i / 2] >> 4 (i % 2)) & 15 | ((scales_h >> 2 i) & 3) << 4) - 32
/// and its 16 bytes of qs at 16 i, nibbles as IQ4_NL's.
inline void iq4_xs(const unsigned char* b, float* y) {
    const float d = f16(b);
    const unsigned scales_h = unsigned(b[2]) | unsigned(b[3]) << 8;
    const unsigned char* scales_l = b + 4;
    const unsigned char* qs = b + 8;
    for (int i = 0; i < 8; ++i) {
        const int s = int(((scales_l[i / 2] >> (4 * (i % 2))) & 15) | ((scales_h >> (2 * i)) & 3) << 4) - 32;
        table_nibbles(qs + 16 * i, d * float(s), kIQ4Values, y + 32 * i);
    }
}

/// MXFP4: the doubled e2m1 value of each nibble (as IQ4_NL's) times 2^(e - 128), which is exact in float32 for
/// every e (e < 2 gives a subnormal).
inline void mxfp4(const unsigned char* b, float* y) { table_nibbles(b + 1, std::ldexp(1.0f, int(b[0]) - 128), kE2M1Doubled, y); }

/// TQ1_0: a byte holds five trits as ceil(t * 256 / 243) of the base-3 number t = t0 t1 t2 t3 t4 (t0 most
/// significant); trit k is ((byte * 3^k mod 256) * 3) >> 8. Elements 0..159: trit k of qs[l] (l < 32) is element
/// 32 k + l; 160..239: trit k of qs[32 + l] (l < 16) is element 160 + 16 k + l; 240..255: trit k (k < 4) of qh[l]
/// is element 240 + 4 k + l.
inline void tq1_0(const unsigned char* b, float* y) {
    const float d = f16(b + 52);
    auto trit = [](unsigned char byte, int k) {
        static constexpr unsigned pow3[5] = {1, 3, 9, 27, 81};
        const unsigned shifted = (unsigned(byte) * pow3[k]) & 255u;
        return int((shifted * 3u) >> 8) - 1;
    };
    for (int k = 0; k < 5; ++k)
        for (int l = 0; l < 32; ++l) y[32 * k + l] = d * float(trit(b[l], k));
    for (int k = 0; k < 5; ++k)
        for (int l = 0; l < 16; ++l) y[160 + 16 * k + l] = d * float(trit(b[32 + l], k));
    for (int k = 0; k < 4; ++k)
        for (int l = 0; l < 4; ++l) y[240 + 4 * k + l] = d * float(trit(b[48 + l], k));
}

/// TQ2_0: two halves of 128; in half h, bits 2s..2s+1 of qs[32 h + l] are element 128 h + 32 s + l.
inline void tq2_0(const unsigned char* b, float* y) {
    const float d = f16(b + 64);
    for (int h = 0; h < 2; ++h)
        for (int s = 0; s < 4; ++s)
            for (int l = 0; l < 32; ++l) y[128 * h + 32 * s + l] = d * float(int((b[32 * h + l] >> (2 * s)) & 3) - 1);
}

}  // namespace detail

/// Dequantize one block of a blocked type into y[0 .. block).
inline void dequantize_block(Type t, const unsigned char* b, float* y) {
    switch (t) {
        case Type::Q8_0: return detail::q8_0(b, y);
        case Type::Q4_0: return detail::q4_0(b, y);
        case Type::Q4_1: return detail::q4_1(b, y);
        case Type::Q5_0: return detail::q5(b, y, false);
        case Type::Q5_1: return detail::q5(b, y, true);
        case Type::Q2_K: return detail::q2_k(b, y);
        case Type::Q3_K: return detail::q3_k(b, y);
        case Type::Q4_K: return detail::q45_k(b, y, false);
        case Type::Q5_K: return detail::q45_k(b, y, true);
        case Type::Q6_K: return detail::q6_k(b, y);
        case Type::IQ4_NL: return detail::iq4_nl(b, y);
        case Type::IQ4_XS: return detail::iq4_xs(b, y);
        case Type::MXFP4: return detail::mxfp4(b, y);
        case Type::TQ1_0: return detail::tq1_0(b, y);
        case Type::TQ2_0: return detail::tq2_0(b, y);
        default: throw Error(std::string("ggml: no block dequantizer for type ") + type_info(static_cast<std::uint32_t>(t)).name);
    }
}

/// Elements [first, first + count) of a tensor of type t stored at `data`, as float32.
inline void dequantize(Type t, const unsigned char* data, std::size_t first, std::size_t count, float* out) {
    const TypeInfo info = type_info(static_cast<std::uint32_t>(t));
    if (t == Type::F32) {
        std::memcpy(out, data + 4 * first, 4 * count);
        return;
    }
    if (t == Type::F16) return f16_to_float(data + 2 * first, out, count);
    if (t == Type::BF16) return bf16_to_float(data + 2 * first, out, count);
    const std::size_t B = info.block;
    float tmp[256];
    std::size_t i = first;
    const std::size_t end = first + count;
    while (i < end) {
        const std::size_t blk = i / B, in = i % B, n = std::min(B - in, end - i);
        const unsigned char* b = data + blk * info.bytes;
        if (in == 0 && n == B) {
            dequantize_block(t, b, out);
        } else {
            dequantize_block(t, b, tmp);
            std::copy(tmp + in, tmp + in + n, out);
        }
        out += n;
        i += n;
    }
}

}  // namespace massact::io::ggml

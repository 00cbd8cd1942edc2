// GGUF files: the reader's checks, ggml's block formats, llama.cpp-quantized tiny-llama against the
// float64 references, and the vocabulary as a tokenizer.
#include "common.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

using namespace massact;

namespace {

std::string gguf(const std::string& name) { return test::data("gguf/" + name); }

std::vector<unsigned char> read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<unsigned char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// ---- a double-precision reference of each block format, element by element, from the layouts ----

double f16(const unsigned char* p) { return static_cast<double>(f16_to_float(static_cast<std::uint16_t>(p[0] | p[1] << 8))); }

/// Element e of one block.
double reference_value(io::ggml::Type t, const unsigned char* b, int e) {
    using io::ggml::Type;
    switch (t) {
        case Type::Q8_0: return f16(b) * static_cast<std::int8_t>(b[2 + e]);
        case Type::Q4_0:
        case Type::Q4_1: {
            const unsigned char* qs = b + (t == Type::Q4_0 ? 2 : 4);
            const int q = e < 16 ? qs[e] & 15 : qs[e - 16] >> 4;
            return t == Type::Q4_0 ? f16(b) * (q - 8) : f16(b) * q + f16(b + 2);
        }
        case Type::Q5_0:
        case Type::Q5_1: {
            const unsigned char* qh = b + (t == Type::Q5_0 ? 2 : 4);
            const unsigned char* qs = qh + 4;
            const int high = (qh[e / 8] >> (e % 8)) & 1;  // bit e of the little-endian u32
            const int q = (e < 16 ? qs[e] & 15 : qs[e - 16] >> 4) + 16 * high;
            return t == Type::Q5_0 ? f16(b) * (q - 16) : f16(b) * q + f16(b + 2);
        }
        case Type::Q2_K:
        case Type::Q3_K: {
            const unsigned char* qs = b + (t == Type::Q2_K ? 16 : 32);
            const int q2 = (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            if (t == Type::Q2_K) {
                const int sc = b[e / 16];
                return f16(b + 80) * (sc & 15) * q2 - f16(b + 82) * (sc >> 4);
            }
            const int j = e / 16;
            const unsigned char* s = b + 96;
            const int scale = ((j < 8 ? s[j] & 15 : s[j - 8] >> 4) | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
            const int hbit = (b[e % 32] >> (e / 32)) & 1;
            return f16(b + 108) * scale * (q2 - (hbit ? 0 : 4));
        }
        case Type::Q4_K:
        case Type::Q5_K: {
            const int k = e / 32;
            const unsigned char* sc = b + 4;
            const int s = k < 4 ? sc[k] & 63 : (sc[k + 4] & 15) | ((sc[k - 4] >> 6) << 4);
            const int m = k < 4 ? sc[k + 4] & 63 : (sc[k + 4] >> 4) | ((sc[k] >> 6) << 4);
            const unsigned char* qs = b + (t == Type::Q4_K ? 16 : 48);
            const unsigned char byte = qs[32 * (e / 64) + e % 32];
            int q = k % 2 ? byte >> 4 : byte & 15;
            if (t == Type::Q5_K) q += 16 * ((b[16 + e % 32] >> k) & 1);
            return f16(b) * s * q - f16(b + 2) * m;
        }
        case Type::Q6_K: {
            const int h = e / 128, s = (e % 128) / 32, l = e % 32;
            const unsigned char lo = b[64 * h + l + 32 * (s % 2)];
            const int q = ((s < 2 ? lo & 15 : lo >> 4) | (((b[128 + 32 * h + l] >> (2 * s)) & 3) << 4)) - 32;
            return f16(b + 208) * static_cast<std::int8_t>(b[192 + e / 16]) * q;
        }
        case Type::IQ4_NL:
        case Type::IQ4_XS: {
            static constexpr int kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
            if (t == Type::IQ4_NL) return f16(b) * kv[e < 16 ? b[2 + e] & 15 : b[2 + e - 16] >> 4];
            const int ib = e / 32, j = e % 32;
            const int high = ((b[2] | b[3] << 8) >> (2 * ib)) & 3, low = (b[4 + ib / 2] >> (4 * (ib % 2))) & 15;
            const unsigned char byte = b[8 + 16 * ib + j % 16];
            return f16(b) * ((low | high << 4) - 32) * kv[j < 16 ? byte & 15 : byte >> 4];
        }
        case Type::MXFP4: {  // e2m1 from its bits (sign, 2-bit exponent, 1-bit mantissa), times 2^(E - 127)
            const int q = e < 16 ? b[1 + e] & 15 : b[1 + e - 16] >> 4;
            const int ex = (q >> 1) & 3, man = q & 1;
            const double mag = ex == 0 ? 0.5 * man : (1.0 + 0.5 * man) * std::ldexp(1.0, ex - 1);
            return (q & 8 ? -mag : mag) * std::ldexp(1.0, int(b[0]) - 127);
        }
        case Type::TQ1_0: {  // a byte is ceil(N 256 / 243) for the base-3 number N of its trits, most significant first
            int byte = 0, k = 0;
            if (e < 160) byte = b[e % 32], k = e / 32;
            else if (e < 240) byte = b[32 + (e - 160) % 16], k = (e - 160) / 16;
            else byte = b[48 + (e - 240) % 4], k = (e - 240) / 4;
            const int n = byte * 243 / 256;
            int p = 1;
            for (int i = k; i < 4; ++i) p *= 3;
            return f16(b + 52) * ((n / p) % 3 - 1);
        }
        case Type::TQ2_0: return f16(b + 64) * (((b[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) - 1);
        default: FAIL("no reference"); return 0;
    }
}

/// Random TQ1_0 bytes are not all encodings of five trits (243 of 256 are): make each one the encoding of random trits.
void canonical_trits(unsigned char* b, std::mt19937& g) {
    for (int i = 0; i < 52; ++i) {
        const int n = i < 48 ? int(g() % 243) : int(g() % 81) * 3;  // qh holds four trits (the fifth digit 0)
        b[i] = static_cast<unsigned char>((n * 256 + 242) / 243);
    }
}

/// Where the f16 scales of a block sit (kept finite in random blocks).
std::vector<int> scale_offsets(io::ggml::Type t) {
    using io::ggml::Type;
    switch (t) {
        case Type::Q4_1: case Type::Q5_1: case Type::Q4_K: case Type::Q5_K: return {0, 2};
        case Type::Q2_K: return {80, 82};
        case Type::Q3_K: return {108};
        case Type::Q6_K: return {208};
        case Type::TQ1_0: return {52};
        case Type::TQ2_0: return {64};
        case Type::MXFP4: return {};
        default: return {0};
    }
}

// ---- a minimal GGUF writer for vocabularies and corrupt files ----

struct Writer {
    std::vector<unsigned char> b;
    template <typename T>
    void put(T v) {
        const auto* p = reinterpret_cast<const unsigned char*>(&v);
        b.insert(b.end(), p, p + sizeof(T));
    }
    void str(const std::string& s) {
        put<std::uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
    }
    void kv_str(const std::string& k, const std::string& v) { str(k); put<std::uint32_t>(8); str(v); }
    void kv_u32(const std::string& k, std::uint32_t v) { str(k); put<std::uint32_t>(4); put(v); }
    void kv_bool(const std::string& k, bool v) { str(k); put<std::uint32_t>(7); put<std::uint8_t>(v); }
    void kv_strs(const std::string& k, const std::vector<std::string>& v) {
        str(k); put<std::uint32_t>(9); put<std::uint32_t>(8); put<std::uint64_t>(v.size());
        for (const auto& s : v) str(s);
    }
    template <typename T>
    void kv_arr(const std::string& k, std::uint32_t type, const std::vector<T>& v) {
        str(k); put<std::uint32_t>(9); put<std::uint32_t>(type); put<std::uint64_t>(v.size());
        for (T x : v) put(x);
    }
};

/// A GGUF holding only a SentencePiece vocabulary.
io::GgufFile spm_file(const std::vector<std::string>& tokens, const std::vector<float>& scores, const std::vector<std::int32_t>& types) {
    Writer w;
    w.b = {'G', 'G', 'U', 'F'};
    w.put<std::uint32_t>(3);
    w.put<std::uint64_t>(0);
    w.put<std::uint64_t>(6);
    w.kv_str("tokenizer.ggml.model", "llama");
    w.kv_strs("tokenizer.ggml.tokens", tokens);
    w.kv_arr("tokenizer.ggml.scores", 6, scores);
    w.kv_arr("tokenizer.ggml.token_type", 5, types);
    w.kv_u32("tokenizer.ggml.bos_token_id", 1);
    w.kv_u32("tokenizer.ggml.unknown_token_id", 0);
    return io::GgufFile(io::MappedFile::from_bytes("spm.gguf", w.b));
}

}  // namespace

TEST_CASE("every block format dequantizes like a double-precision reader of its layout, in whole and in part") {
    using io::ggml::Type;
    std::mt19937 g(11);
    for (Type t : {Type::Q8_0, Type::Q4_0, Type::Q4_1, Type::Q5_0, Type::Q5_1, Type::Q2_K, Type::Q3_K, Type::Q4_K, Type::Q5_K, Type::Q6_K,
                   Type::IQ4_NL, Type::IQ4_XS, Type::MXFP4, Type::TQ1_0, Type::TQ2_0}) {
        const auto info = io::ggml::type_info(static_cast<std::uint32_t>(t));
        CAPTURE(info.name);
        const int blocks = 24;
        std::vector<unsigned char> raw(static_cast<std::size_t>(blocks) * info.bytes);
        for (auto& x : raw) x = static_cast<unsigned char>(g());
        std::uniform_real_distribution<float> scale(-3.0f, 3.0f);
        for (int k = 0; k < blocks; ++k) {
            unsigned char* blk = raw.data() + static_cast<std::size_t>(k) * info.bytes;
            if (t == Type::TQ1_0) canonical_trits(blk, g);
            if (t == Type::MXFP4) blk[0] = static_cast<unsigned char>(110 + g() % 30);  // 2^-17 .. 2^12: no overflow
        }
        for (int k = 0; k < blocks; ++k)
            for (int off : scale_offsets(t)) {
                const std::uint16_t h = float_to_f16(scale(g));
                raw[static_cast<std::size_t>(k) * info.bytes + off] = static_cast<unsigned char>(h & 0xFF);
                raw[static_cast<std::size_t>(k) * info.bytes + off + 1] = static_cast<unsigned char>(h >> 8);
            }
        const std::size_t n = static_cast<std::size_t>(blocks) * info.block;
        std::vector<float> got(n);
        io::ggml::dequantize(t, raw.data(), 0, n, got.data());
        double worst = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const double want = reference_value(t, raw.data() + i / info.block * info.bytes, static_cast<int>(i % info.block));
            worst = std::max(worst, std::abs(got[i] - want) / (1e-3 + std::abs(want)));
        }
        CHECK(worst < 1e-6);
        // A range that starts and ends inside blocks.
        std::vector<float> part(info.block + 7);
        io::ggml::dequantize(t, raw.data(), info.block / 2 + 3, part.size(), part.data());
        for (std::size_t i = 0; i < part.size(); ++i) CHECK(part[i] == got[info.block / 2 + 3 + i]);
    }
}

TEST_CASE("every block type equals llama.cpp's gguf-py dequantization: bit for bit for IQ4_NL, IQ4_XS, MXFP4, TQ1_0, TQ2_0") {
    // tests/data/gguf/blocks.safetensors: 24 random blocks of each type and what gguf-py makes of them
    // (tools/make_block_refs.py; bytes uniform but the scales, TQ1_0's bytes not made canonical).
    const io::SafetensorsFile f(test::data("gguf/blocks.safetensors"));
    int types = 0;
    for (std::uint32_t id = 0; id < 64; ++id) {
        const auto info = io::ggml::type_info(id);
        if (!info.readable || info.block < 2 || !f.has(std::string(info.name) + ".blocks")) continue;
        CAPTURE(info.name);
        ++types;
        const auto& blocks = f.tensor(std::string(info.name) + ".blocks");
        const std::vector<float> want = f.tensor(std::string(info.name) + ".values").to_float();
        REQUIRE(blocks.nbytes % info.bytes == 0);
        REQUIRE(want.size() == blocks.nbytes / info.bytes * info.block);
        std::vector<float> got(want.size());
        io::ggml::dequantize(static_cast<io::ggml::Type>(id), blocks.data, 0, got.size(), got.data());
        const std::string name = info.name;
        const bool added = name == "IQ4_NL" || name == "IQ4_XS" || name == "MXFP4" || name == "TQ1_0" || name == "TQ2_0";
        std::size_t same = 0;
        double worst = 0;
        for (std::size_t i = 0; i < got.size(); ++i) {
            same += std::memcmp(&got[i], &want[i], 4) == 0;
            worst = std::max(worst, std::abs(double(got[i]) - want[i]) / (1e-3 + std::abs(double(want[i]))));
        }
        MESSAGE(name << ": " << same << " of " << got.size() << " values bit for bit, largest relative difference " << worst);
        if (added) CHECK(same == got.size());
        CHECK(worst < 1e-6);
    }
    CHECK(types == 15);
}

TEST_CASE("an IQ4_NL / MXFP4 / Q8_0 GGUF by llama-quantize computes what its gguf-py-dequantized F32 copy computes") {
    // tests/data/gguf/tiny-llama3-IQ4_NL-MXFP4.gguf: the Llama 3 test model quantized by llama-quantize (IQ4_NL, attn_v and
    // ffn_down MXFP4, the embedding Q8_0); its .dequantized.gguf: every tensor dequantized by gguf-py, metadata copied.
    const Transformer q(test::data("gguf/tiny-llama3-IQ4_NL-MXFP4.gguf")), f(test::data("gguf/tiny-llama3-IQ4_NL-MXFP4.dequantized.gguf"));
    const Transformer orig(test::data("gguf/tiny-llama3-F32.gguf"));
    TokenBatch ids(2, 9);
    ids << 1, 5, 9, 200, 31, 7, 44, 12, 3, 1, 77, 2, 19, 150, 8, 64, 90, 11;
    for (int decode = 0; decode < 2; ++decode) {
        RunOptions o;
        const RowMatrixF a = q.forward(decode ? TokenBatch(ids.topRows(1).leftCols(1)) : ids, {}, o);
        const RowMatrixF b = f.forward(decode ? TokenBatch(ids.topRows(1).leftCols(1)) : ids, {}, o);
        const RowMatrixF c = orig.forward(decode ? TokenBatch(ids.topRows(1).leftCols(1)) : ids, {}, o);
        const double scale = b.cwiseAbs().maxCoeff(), diff = (a - b).cwiseAbs().maxCoeff(), quant = (c - b).cwiseAbs().maxCoeff();
        MESSAGE(std::string(decode ? "one token" : "two sequences") << ": quantized vs its gguf-py dequantization " << diff / scale
                                                          << " of max |logit|; vs the float model " << quant / scale);
        CHECK(diff <= 1e-5 * scale);
        CHECK(quant > 1e-3 * scale);  // (the quantization is there: the float model differs)
    }
}

#if defined(MASSACT_HAS_XSIMD)
TEST_CASE("gemv_stored at bf16 precision: activations rounded to bfloat16 times the stored values, float sums (native dot products where the CPU has them)") {
    using io::ggml::Type;
    std::mt19937 g(11);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (Type t : {Type::BF16, Type::F16, Type::F32}) {
        for (const Index K : {Index(19), Index(64), Index(300), Index(777)}) {  // (off and on the 64-value step of the dot kernel)
            for (const Index N : {Index(5), Index(301)}) {
                CAPTURE(static_cast<int>(t));
                CAPTURE(K);
                CAPTURE(N);
                const std::size_t esize = t == Type::F32 ? 4 : 2;
                std::vector<unsigned char> data(static_cast<std::size_t>(N * K) * esize);
                std::vector<double> values(static_cast<std::size_t>(N * K));
                for (Index i = 0; i < N * K; ++i) {
                    const float v = u(g);
                    if (t == Type::BF16) { const std::uint16_t h = float_to_bf16(v); std::memcpy(&data[2 * i], &h, 2); values[i] = bf16_to_float(h); }
                    if (t == Type::F16) { const std::uint16_t h = float_to_f16(v); std::memcpy(&data[2 * i], &h, 2); values[i] = f16_to_float(h); }
                    if (t == Type::F32) { std::memcpy(&data[4 * i], &v, 4); values[i] = v; }
                }
                const kernels::StoredMatrix w{t, data.data(), N, K, static_cast<std::size_t>(K) * esize};
                for (const Index M : {Index(1), Index(5)}) {
                    std::vector<float> X(static_cast<std::size_t>(M * K)), Y(static_cast<std::size_t>(M * N));
                    for (auto& x : X) x = u(g);
                    kernels::gemv_stored(w, X.data(), K, M, Y.data(), N, true);
                    double worst = 0;
                    for (Index i = 0; i < M; ++i)
                        for (Index n = 0; n < N; ++n) {
                            double want = 0, mag = 1e-30;
                            for (Index k = 0; k < K; ++k) {
                                // both operands rounded to bfloat16 (a BF16 weight is its own rounding)
                                const double x = bf16_to_float(float_to_bf16(X[static_cast<std::size_t>(i * K + k)]));
                                const double v = bf16_to_float(float_to_bf16(static_cast<float>(values[static_cast<std::size_t>(n * K + k)])));
                                want += x * v;
                                mag += std::abs(x * v);
                            }
                            worst = std::max(worst, std::abs(Y[static_cast<std::size_t>(i * N + n)] - want) / mag);
                        }
                    CHECK(worst < 2e-6);
                }
            }
        }
    }
}

TEST_CASE("gemv_stored: a few rows against every stored type equal a double loop over the format's values (rows split over threads)") {
    using io::ggml::Type;
    std::mt19937 g(5);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f), scale(-3.0f, 3.0f);
    for (Type t : {Type::F32, Type::F16, Type::BF16, Type::Q8_0, Type::Q4_0, Type::Q4_1, Type::Q5_0, Type::Q5_1, Type::Q2_K, Type::Q3_K,
                   Type::Q4_K, Type::Q5_K, Type::Q6_K, Type::IQ4_NL, Type::IQ4_XS, Type::MXFP4, Type::TQ1_0, Type::TQ2_0}) {
        const auto info = io::ggml::type_info(static_cast<std::uint32_t>(t));
        const bool blocked = info.block > 1;
        // K: several blocks (and for the float types a length off every vector and step boundary); N: rows that
        // split unevenly over the threads and past a 64 KiB matrix (the parallel path)
        for (const Index K : blocked ? std::vector<Index>{static_cast<Index>(info.block), 3 * static_cast<Index>(info.block) * (info.block == 32 ? 8 : 1)}
                                     : std::vector<Index>{1, 19, 300, 777}) {
            for (const Index N : {Index(5), Index(301)}) {
                CAPTURE(info.name);
                CAPTURE(K);
                CAPTURE(N);
                const std::size_t row_bytes = blocked ? static_cast<std::size_t>(K / info.block) * info.bytes : static_cast<std::size_t>(K) * info.bytes;
                std::vector<unsigned char> raw(static_cast<std::size_t>(N) * row_bytes + 8);
                // F32 rows not 4-byte aligned (the copy path), or off a cache line by 8 bytes; half-precision rows off by
                // one value: the float kernels' loads start after a peel to the next 64-byte line
                const std::size_t skew = t == Type::F32 ? (N == 5 ? 1 : 8) : blocked ? 0 : (N == 5 ? 0 : 2);
                unsigned char* data = raw.data() + skew;
                std::vector<float> values(static_cast<std::size_t>(N * K));
                if (blocked) {
                    for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<unsigned char>(g());
                    for (std::size_t b = 0; b < static_cast<std::size_t>(N * K) / info.block; ++b) {
                        if (t == Type::TQ1_0) canonical_trits(data + b * info.bytes, g);
                        if (t == Type::MXFP4) data[b * info.bytes] = static_cast<unsigned char>(120 + g() % 10);
                        for (int off : scale_offsets(t)) {
                            const std::uint16_t h = float_to_f16(scale(g));
                            data[b * info.bytes + off] = static_cast<unsigned char>(h & 0xFF);
                            data[b * info.bytes + off + 1] = static_cast<unsigned char>(h >> 8);
                        }
                    }
                    for (Index i = 0; i < N * K; ++i)
                        values[static_cast<std::size_t>(i)] = static_cast<float>(
                            reference_value(t, data + static_cast<std::size_t>(i / info.block) * info.bytes, static_cast<int>(i % info.block)));
                } else {
                    for (Index i = 0; i < N * K; ++i) {
                        float v = u(g);
                        if (t == Type::F16) v = f16_to_float(float_to_f16(v));
                        if (t == Type::BF16) v = bf16_to_float(float_to_bf16(v));
                        values[static_cast<std::size_t>(i)] = v;
                        if (t == Type::F32) std::memcpy(data + 4 * i, &v, 4);
                        if (t == Type::F16) { const std::uint16_t h = float_to_f16(v); std::memcpy(data + 2 * i, &h, 2); }
                        if (t == Type::BF16) { const std::uint16_t h = float_to_bf16(v); std::memcpy(data + 2 * i, &h, 2); }
                    }
                }
                const kernels::StoredMatrix w{t, data, N, K, row_bytes};
                for (const Index M : {Index(1), Index(3), Index(6)}) {
                    const Index ldx = K + 2, ldy = N + 3;
                    std::vector<float> X(static_cast<std::size_t>(M * ldx)), Y(static_cast<std::size_t>(M * ldy), 42.0f), Yp = Y;
                    for (auto& x : X) x = u(g);
                    kernels::gemv_stored(w, X.data(), ldx, M, Y.data(), ldy);
                    // stored rows in reverse order (a file's row permutation): logical row n is stored row N-1-n
                    kernels::gemv_stored(w, [N](Index n) { return N - 1 - n; }, X.data(), ldx, M, Yp.data(), ldy);
                    double worst = 0, worst_p = 0;
                    for (Index i = 0; i < M; ++i)
                        for (Index n = 0; n < N; ++n) {
                            double want = 0, want_p = 0, mag = 1e-30, mag_p = 1e-30;
                            for (Index k = 0; k < K; ++k) {
                                const double x = X[static_cast<std::size_t>(i * ldx + k)];
                                want += x * values[static_cast<std::size_t>(n * K + k)];
                                want_p += x * values[static_cast<std::size_t>((N - 1 - n) * K + k)];
                                mag += std::abs(x * values[static_cast<std::size_t>(n * K + k)]);
                                mag_p += std::abs(x * values[static_cast<std::size_t>((N - 1 - n) * K + k)]);
                            }
                            worst = std::max(worst, std::abs(Y[static_cast<std::size_t>(i * ldy + n)] - want) / mag);
                            worst_p = std::max(worst_p, std::abs(Yp[static_cast<std::size_t>(i * ldy + n)] - want_p) / mag_p);
                        }
                    CHECK(worst < 2e-6);
                    CHECK(worst_p < 2e-6);
                    for (Index i = 0; i < M; ++i)  // Y's padding untouched
                        for (Index n = N; n < ldy; ++n) REQUIRE(Y[static_cast<std::size_t>(i * ldy + n)] == 42.0f);
                }
            }
        }
    }
}
#endif

TEST_CASE("quantize_q8: llama.cpp's activation blocks (d = amax / 127 in f16 per 32, max / -127 per 256), sums, non-finite blocks") {
    std::mt19937 g(11);
    std::normal_distribution<float> n(0.0f, 1.0f);
    const Index K = 512;
    std::vector<float> x(K);
    for (auto& v : x) v = n(g);
    x[3] = 90.0f;    // a massive activation in the first block
    x[300] = -7.0f;  // the largest magnitude of the second 256 block, negative
    for (Index k = 64; k < 96; ++k) x[static_cast<std::size_t>(k)] = 0.0f;  // an all-zero block
    for (const Index block : {Index(32), Index(256)}) {
        CAPTURE(block);
        kernels::Q8Row a;
        kernels::quantize_q8(x.data(), K, block, a);
        REQUIRE(a.q.size() == static_cast<std::size_t>(K));
        REQUIRE(a.d.size() == static_cast<std::size_t>(K / block));
        const Index group = block == 32 ? 32 : 16;
        REQUIRE(a.sums.size() == static_cast<std::size_t>(K / group));
        for (Index b = 0; b < K / block; ++b) {
            double amax = 0, max = 0;
            for (Index j = 0; j < block; ++j) {
                const double v = x[static_cast<std::size_t>(b * block + j)];
                if (std::abs(v) > amax) amax = std::abs(v), max = v;
            }
            const double d = a.d[static_cast<std::size_t>(b)];
            if (amax == 0) {
                CHECK(d == 0.0);
                continue;
            }
            // the scale: f16(amax / 127) for 32-blocks; -max / 127 (its sign opposite to the largest value's) for 256
            if (block == 32) CHECK(d == static_cast<double>(f16_to_float(float_to_f16(static_cast<float>(amax / 127)))));
            else CHECK(d == doctest::Approx(-max / 127).epsilon(1e-6));
            for (Index j = 0; j < block; ++j) {
                const std::size_t i = static_cast<std::size_t>(b * block + j);
                CHECK(std::abs(a.q[i]) <= 127);
                const double step = block == 32 ? amax / 127 : d;  // (a 32-block's q was computed with 127 / amax)
                CHECK(std::abs(x[i] - step * a.q[i]) <= 0.5 * std::abs(step) * (1 + 1e-6));
                if (std::abs(x[i]) == amax) CHECK(std::abs(a.q[i]) == 127);
            }
        }
        for (Index s = 0; s < K / group; ++s) {
            int want = 0;
            for (Index j = 0; j < group; ++j) want += a.q[static_cast<std::size_t>(s * group + j)];
            CHECK(a.sums[static_cast<std::size_t>(s)] == want);
        }
        std::vector<float> bad = x;
        bad[static_cast<std::size_t>(block + 1)] = std::numeric_limits<float>::infinity();
        kernels::quantize_q8(bad.data(), K, block, a);
        CHECK(std::isnan(a.d[1]));
        CHECK(std::isfinite(a.d[0]));
    }
    kernels::Q8Row a;
    CHECK_THROWS_WITH_AS(kernels::quantize_q8(x.data(), 100, 32, a), doctest::Contains("whole blocks"), Error);
    CHECK_THROWS_WITH_AS(kernels::quantize_q8(x.data(), 128, 64, a), doctest::Contains("block 64"), Error);
}

#if defined(MASSACT_HAS_XSIMD)
TEST_CASE("gemv_q8: integer products of Q8_0, Q4_0, Q4_K, Q5_K, Q6_K rows with 8-bit activations equal a double loop, "
          "differ from the float path by no more than the activations' rounding, and tiles of rows equal rows alone") {
    using io::ggml::Type;
    std::mt19937 g(17);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f), scale(-3.0f, 3.0f);
    for (Type t : {Type::Q8_0, Type::Q4_0, Type::Q4_K, Type::Q5_K, Type::Q6_K}) {
        const auto info = io::ggml::type_info(static_cast<std::uint32_t>(t));
        REQUIRE(kernels::gemv_q8_reads(t));
        // blocks per row: 1, 7 (Q8_0's four-block step, a pair and a single block) and 24 (or 3 for the K-quants)
        for (const Index K : {static_cast<Index>(info.block), static_cast<Index>(info.block) * 7,
                              static_cast<Index>(info.block) * (info.block == 32 ? 24 : 3)}) {
            for (const Index N : {Index(5), Index(301)}) {
                CAPTURE(info.name);
                CAPTURE(K);
                CAPTURE(N);
                const std::size_t row_bytes = static_cast<std::size_t>(K / info.block) * info.bytes;
                std::vector<unsigned char> data(static_cast<std::size_t>(N) * row_bytes);
                for (auto& b : data) b = static_cast<unsigned char>(g());  // (Q8_0: every int8, -128 included)
                for (std::size_t b = 0; b < static_cast<std::size_t>(N * K) / info.block; ++b)
                    for (int off : scale_offsets(t)) {
                        const std::uint16_t h = float_to_f16(scale(g));
                        data[b * info.bytes + off] = static_cast<unsigned char>(h & 0xFF);
                        data[b * info.bytes + off + 1] = static_cast<unsigned char>(h >> 8);
                    }
                std::vector<double> values(static_cast<std::size_t>(N * K));
                for (Index i = 0; i < N * K; ++i)
                    values[static_cast<std::size_t>(i)] =
                        reference_value(t, data.data() + static_cast<std::size_t>(i / info.block) * info.bytes, static_cast<int>(i % info.block));
                const kernels::StoredMatrix w{t, data.data(), N, K, row_bytes};
                for (const Index M : {Index(1), Index(3), Index(9)}) {  // (9: two tiles of four rows and one row)
                    const Index ldx = K + 5, ldy = N + 2;
                    std::vector<float> X(static_cast<std::size_t>(M * ldx));
                    for (auto& x : X) x = u(g);
                    X[2] = 60.0f;  // a massive activation
                    std::vector<float> Y(static_cast<std::size_t>(M * ldy), 42.0f), Yp = Y, Yf = Y;
                    kernels::gemv_q8(w, X.data(), ldx, M, Y.data(), ldy);
                    kernels::gemv_q8(w, [N](Index n) { return N - 1 - n; }, X.data(), ldx, M, Yp.data(), ldy);
                    kernels::gemv_stored(w, X.data(), ldx, M, Yf.data(), ldy);
                    double worst = 0, worst_p = 0;
                    for (Index i = 0; i < M; ++i) {
                        kernels::Q8Row a;
                        kernels::quantize_q8(X.data() + i * ldx, K, kernels::q8_block(t), a);
                        for (Index n = 0; n < N; ++n) {
                            double want = 0, want_p = 0, mag = 1e-30, mag_p = 1e-30, bound = 0;
                            for (Index k = 0; k < K; ++k) {
                                const double xq = static_cast<double>(a.d[static_cast<std::size_t>(k / a.block)]) * a.q[static_cast<std::size_t>(k)];
                                const double v = values[static_cast<std::size_t>(n * K + k)], vp = values[static_cast<std::size_t>((N - 1 - n) * K + k)];
                                want += v * xq, want_p += vp * xq;
                                mag += std::abs(v * xq), mag_p += std::abs(vp * xq);
                                bound += std::abs(v) * std::abs(X[static_cast<std::size_t>(i * ldx + k)] - xq);
                            }
                            const std::size_t at = static_cast<std::size_t>(i * ldy + n);
                            worst = std::max(worst, std::abs(Y[at] - want) / mag);
                            worst_p = std::max(worst_p, std::abs(Yp[at] - want_p) / mag_p);
                            // the float path's result differs by the activations' rounding at most (and float sums)
                            CHECK(std::abs(Y[at] - Yf[at]) <= bound * (1 + 1e-4) + 1e-5 * mag);
                        }
                        for (Index n = N; n < ldy; ++n) REQUIRE(Y[static_cast<std::size_t>(i * ldy + n)] == 42.0f);
                    }
                    CHECK(worst < 2e-6);
                    CHECK(worst_p < 2e-6);
                    // a row's products do not depend on the rows beside it: each row alone gives the same bits
                    for (Index i = 0; i < M; ++i) {
                        std::vector<float> alone(static_cast<std::size_t>(N));
                        kernels::gemv_q8(w, X.data() + i * ldx, ldx, 1, alone.data(), N);
                        for (Index n = 0; n < N; ++n) REQUIRE(alone[static_cast<std::size_t>(n)] == Y[static_cast<std::size_t>(i * ldy + n)]);
                    }
                }
            }
        }
    }
    // a non-finite activation gives NaN, as the float path does; a type without an integer product is refused
    std::vector<unsigned char> q8(34, 0);
    q8[1] = 0x3C;  // d = 1
    std::vector<float> x(32, 1.0f);
    x[5] = std::numeric_limits<float>::quiet_NaN();
    float y = 0;
    kernels::gemv_q8(kernels::StoredMatrix{Type::Q8_0, q8.data(), 1, 32, 34}, x.data(), 32, 1, &y, 1);
    CHECK(std::isnan(y));
    CHECK_FALSE(kernels::gemv_q8_reads(Type::Q4_1));
    CHECK_THROWS_AS(kernels::gemv_q8(kernels::StoredMatrix{Type::Q4_1, q8.data(), 1, 32, 20}, x.data(), 32, 1, &y, 1), Error);
}

TEST_CASE("Precision::Q8 decodes llama.cpp's Q8_0 and Q4_K_M tiny-llama token by token close to the float path") {
    const io::SafetensorsFile st(test::data("tiny-llama.ref.safetensors"));
    const auto v = st.tensor("ppl.input_ids").to_int64();
    const Index T = 24;
    for (const char* name : {"tiny-llama-Q8_0.gguf", "tiny-llama-Q4_K_M.gguf"}) {
        CAPTURE(name);
        const Transformer m(gguf(name));
        RunOptions q8;
        q8.precision = kernels::Precision::Q8;
        KVCache cf(m.config()), cq(m.config());
        Workspace wf, wq;
        double nll_f = 0, nll_q = 0, worst = 0;
        for (Index t = 0; t + 1 < T; ++t) {
            TokenBatch one(1, 1);
            one(0, 0) = v[static_cast<std::size_t>(t)];
            const RowMatrixF lf = m.run(one, cf, wf), lq = m.run(one, cq, wq, {}, q8);
            REQUIRE(lq.cols() == lf.cols());
            const auto nll = [&](const RowMatrixF& l) {
                const double mx = l.maxCoeff();
                double z = 0;
                for (Index j = 0; j < l.cols(); ++j) z += std::exp(static_cast<double>(l(0, j)) - mx);
                return mx + std::log(z) - l(0, static_cast<Index>(v[static_cast<std::size_t>(t + 1)]));
            };
            nll_f += nll(lf), nll_q += nll(lq);
            worst = std::max(worst, static_cast<double>((lq - lf).cwiseAbs().maxCoeff() / lf.cwiseAbs().maxCoeff()));
        }
        // not equal (8-bit activations), close: llama.cpp's own error against the float path
        CHECK(worst > 0.0);
        CHECK(worst < 0.05);
        CHECK(std::abs(nll_q / nll_f - 1) < 0.01);
    }
}
#endif

TEST_CASE("Precision::Auto keeps the weights' own precision: q8 for quantized GGUF, bf16 for BF16 weights, else f32") {
    using kernels::Precision;
    const Transformer q8(gguf("tiny-llama-Q8_0.gguf")), q4(gguf("tiny-llama-Q4_K_M.gguf")), f32(gguf("tiny-llama3-F32.gguf"));
    const Transformer bf16(test::model("tiny-llama"));  // (BF16 safetensors)
    CHECK(q8.precision_for(Precision::Auto) == Precision::Q8);
    CHECK(q4.precision_for(Precision::Auto) == Precision::Q8);
    CHECK(f32.precision_for(Precision::Auto) == Precision::F32);
    CHECK(bf16.precision_for(Precision::Auto) == Precision::BF16);
    for (Precision p : {Precision::F32, Precision::BF16, Precision::Q8}) CHECK(q8.precision_for(p) == p);  // (asked: given)
    // a decoding step at auto is that precision's step, bit for bit
    for (const Transformer* m : {&q8, &bf16}) {
        TokenBatch ids(1, 5);
        ids << 1, 450, 1801, 338, 4094;  // (a vocabulary of 4096)
        RunOptions autop, explicit_p;
        autop.precision = Precision::Auto;
        explicit_p.precision = m->precision_for(Precision::Auto);
        KVCache ca(m->config()), ce(m->config());
        Workspace wa, we;
        for (Index t = 0; t < ids.cols(); ++t) {
            const TokenBatch one = ids.middleCols(t, 1);
            const RowMatrixF a = m->run(one, ca, wa, {}, autop), e = m->run(one, ce, we, {}, explicit_p);
            CHECK(a == e);
        }
    }
    CHECK(kernels::precision_from_name("auto", "x") == Precision::Auto);
    CHECK_THROWS_WITH_AS(kernels::precision_from_name("fp8", "--precision"), "--precision: \"fp8\" (expected f32, bf16, q8 or auto)", Error);
}

TEST_CASE("llama.cpp's Q8_0 and Q4_K_M tiny-llama: perplexity and per-sequence NLL within 0.05% of the float64 references") {
    const auto ref = io::read_json_file(gguf("reference.json"));
    const io::SafetensorsFile st(test::data("tiny-llama.ref.safetensors"));
    const auto& t = st.tensor("ppl.input_ids");
    const auto v = t.to_int64();
    TokenBatch ids(t.shape[0], t.shape[1]);
    for (Index i = 0; i < ids.size(); ++i) ids.data()[i] = v[static_cast<std::size_t>(i)];
    for (const char* name : {"tiny-llama-Q8_0.gguf", "tiny-llama-Q4_K_M.gguf"}) {
        CAPTURE(name);
        const Transformer m(gguf(name));
        const auto r = analysis::perplexity(m, ids);
        const auto& want = ref.at(name);
        CHECK(std::abs(r.ppl / want["ppl"].get<double>() - 1) < 5e-4);
        REQUIRE(r.seq_nll.size() == want["seq_nll"].size());
        for (std::size_t i = 0; i < r.seq_nll.size(); ++i) CHECK(std::abs(r.seq_nll[i] / want["seq_nll"][i].get<double>() - 1) < 5e-4);
    }
}

TEST_CASE("GGUF tiny-llama computes what the safetensors model computes: Q/K rows un-permuted, Q8_0 close") {
    const Transformer st(test::model("tiny-llama")), q8(gguf("tiny-llama-Q8_0.gguf"));
    CHECK(q8.config().num_kv_heads == 4);
    CHECK(q8.config().eos_token_ids == std::vector<std::int64_t>{2});
    TokenBatch ids(1, 12);
    ids << 1, 42, 425, 320, 2986, 14, 275, 1209, 1069, 292, 3222, 285;
    const std::vector<std::string> sites = {"blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.5.hook_resid_post"};
    const auto a = run_with_cache(st, ids, sites), b = run_with_cache(q8, ids, sites);
    for (const auto& s : sites) {
        CAPTURE(s);
        double scale = 0, diff = 0;
        const auto &x = a.at(s).data, &y = b.at(s).data;
        for (std::size_t i = 0; i < x.size(); ++i) {
            scale = std::max(scale, static_cast<double>(std::abs(x[i])));
            diff = std::max(diff, static_cast<double>(std::abs(x[i] - y[i])));
        }
        CHECK(diff / scale < 0.03);  // permuted rows would put other heads' features here: O(1) differences
    }
    // The massive activation survives Q8_0: dim 215 of <s> after block 2.
    const auto c = run_with_cache(q8, ids, {"blocks.2.hook_resid_post"});
    const auto& h = c.at("blocks.2.hook_resid_post").data;
    const auto top = std::max_element(h.begin(), h.begin() + 256, [](float p, float q) { return std::abs(p) < std::abs(q); }) - h.begin();
    CHECK(top == 215);
}

TEST_CASE("Llama 3 GGUF: rope_freqs.weight (llama.cpp's llama3 factors) gives the Hugging Face llama3-scaled model's logits") {
    // tools/make_llama3_gguf.py: one set of random weights as a Hugging Face checkpoint with llama3 RoPE scaling and
    // as a GGUF written with gguf-py in llama.cpp's layout (permuted Q/K rows, the scaling only as rope_freqs.weight).
    const Transformer st(gguf("llama3")), gg(gguf("tiny-llama3-F32.gguf"));
    REQUIRE(gg.config().rope.size() == 1);
    const auto& ff = gg.config().rope[0].freq_factors;
    REQUIRE(ff.size() == 8);
    CHECK(ff.front() == 1.0);
    CHECK(ff.back() == 8.0);
    TokenBatch ids(1, 48);
    for (Index t = 0; t < 48; ++t) ids(0, t) = (7 * t + 3) % 128;
    RowMatrixF want = st.forward(ids), got = gg.forward(ids);
    const double scale = want.cwiseAbs().maxCoeff();
    CHECK(test::max_abs_diff(got, want) / scale < 2e-4);
    // Without the factors (the file as it used to be read) the logits are far off: the test can fail.
    ModelConfig plain = gg.config();
    plain.rope[0].freq_factors.clear();
    const auto a = st.config().rope[0].inv_freq(48), b = gg.config().rope[0].inv_freq(48), c = plain.rope[0].inv_freq(48);
    double same = 0, off = 0;
    for (std::size_t j = 0; j < a.size(); ++j) {
        same = std::max(same, std::abs(double(b[j]) / a[j] - 1));
        off = std::max(off, std::abs(double(c[j]) / a[j] - 1));
    }
    CHECK(same < 1e-6);
    CHECK(off > 1.0);  // (7 of the 8 frequencies are slowed by up to 8x)
}

TEST_CASE("the GGUF vocabulary is the tokenizer: gpt2 byte-level BPE equals tiny-llama's tokenizer.json") {
    const auto from_gguf = text::load_tokenizer(gguf("tiny-llama-Q4_K_M.gguf"));
    const auto from_json = text::load_tokenizer(test::model("tiny-llama"));
    CHECK(text::has_tokenizer(gguf("tiny-llama-Q4_K_M.gguf")));
    std::ifstream f(std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt");
    const std::string val((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const auto a = from_gguf.encode(val, true), b = from_json.encode(val, true);
    CHECK(a.size() > 100000);
    CHECK(a == b);
    CHECK(from_gguf.decode(a, true) == from_json.decode(b, true));
}

TEST_CASE("a SentencePiece GGUF vocabulary: merges by score, byte fallback, BOS") {
    const std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "h", "e", "l", "o", "he", "ll", "llo", "\xE2\x96\x81he",
                                             "el", "<0xC3>", "<0xA9>"};
    std::vector<std::int32_t> types(tokens.size(), 1);
    types[0] = 2;
    types[1] = types[2] = 3;
    types[13] = types[14] = 6;
    std::vector<float> scores = {0, 0, 0, -100, -100, -100, -100, -100, -1, -2, -3, -4, -50, 0, 0};
    // he (-1) first, then ll (-2), llo (-3), "▁he" (-4): "▁hello" -> ▁he llo.
    auto tok = text::Tokenizer(text::tokenizer_json(spm_file(tokens, scores, types)));
    CHECK(tok.encode("hello", true) == std::vector<text::TokenId>{1, 11, 10});
    CHECK(tok.decode({1, 11, 10}, true) == "hello");
    // With "el" scored above "he", it merges first and leaves no pair for ll: ▁ h el l o.
    scores[12] = -0.5f;
    tok = text::Tokenizer(text::tokenizer_json(spm_file(tokens, scores, types)));
    CHECK(tok.encode("hello", false) == std::vector<text::TokenId>{3, 4, 12, 6, 7});
    // Characters outside the vocabulary fall back to their UTF-8 bytes.
    CHECK(tok.encode("\xC3\xA9", false) == std::vector<text::TokenId>{3, 13, 14});
    CHECK(tok.decode({3, 13, 14}, false) == "\xC3\xA9");  // the decoder strips the first space
}

TEST_CASE("30 corrupt GGUF files are refused with a message naming what is wrong") {
    const auto good = read_bytes(gguf("tiny-llama-Q8_0.gguf"));
    REQUIRE(good.size() > 100000);
    const io::GgufFile ok(io::MappedFile::from_bytes("ok.gguf", good));
    // Byte positions of the header fields and of the first tensor info, found by parsing.
    std::size_t info0 = 0;  // where tensor 0's name starts
    {
        const std::string first = ok.tensors()[0].name;
        const auto it = std::search(good.begin(), good.end(), first.begin(), first.end());
        REQUIRE(it != good.end());
        info0 = static_cast<std::size_t>(it - good.begin()) - 8;
    }
    const std::size_t dims_at = info0 + 8 + ok.tensors()[0].name.size();  // u32 n_dims
    const std::size_t type_at = dims_at + 4 + 8 * ok.tensors()[0].ne.size(), offset_at = type_at + 4;
    auto patch = [&](std::size_t at, auto value) {
        auto b = good;
        std::memcpy(b.data() + at, &value, sizeof(value));
        return b;
    };
    std::vector<std::pair<std::vector<unsigned char>, std::string>> cases;
    for (std::size_t cut : {std::size_t(0), std::size_t(3), std::size_t(7), std::size_t(15), std::size_t(23), std::size_t(40),
                            std::size_t(200), std::size_t(5000), std::size_t(60000), info0 + 3, dims_at + 2, offset_at + 4, good.size() / 2, good.size() - 1})
        cases.emplace_back(std::vector<unsigned char>(good.begin(), good.begin() + static_cast<long>(cut)),
                           cut < 4 ? "not a GGUF file" : cut >= good.size() / 2 ? "past its end" : cut >= info0 ? "cannot fit in the file" : "");
    cases.emplace_back(patch(0, std::uint32_t(0x46554746)), "not a GGUF file");
    cases.emplace_back(patch(4, std::uint32_t(1)), "GGUF version 1");
    cases.emplace_back(patch(4, std::uint32_t(99)), "GGUF version 99");
    cases.emplace_back(patch(8, std::uint64_t(1) << 40), "tensor count");
    cases.emplace_back(patch(16, std::uint64_t(1) << 40), "metadata count");
    cases.emplace_back(patch(8, std::uint64_t(76)), "");  // one tensor too many: the data is read as tensor infos
    cases.emplace_back(patch(24, std::uint64_t(1) << 50), "runs past the end");           // first key's length
    cases.emplace_back(patch(24 + 8 + 20, std::uint32_t(13)), "unknown value type 13");    // general.architecture's type
    cases.emplace_back(patch(dims_at, std::uint32_t(0)), "0 dimensions");
    cases.emplace_back(patch(dims_at, std::uint32_t(7)), "7 dimensions");
    cases.emplace_back(patch(type_at, std::uint32_t(5)), "unknown ggml type 5");
    cases.emplace_back(patch(type_at, std::uint32_t(9)), "overlaps");  // Q8_1: 36-byte blocks where 34-byte ones were
    cases.emplace_back(patch(offset_at, std::uint64_t(3)), "not a multiple of the alignment");
    cases.emplace_back(patch(offset_at, std::uint64_t(1) << 40), "run past its end");
    cases.emplace_back(patch(offset_at, std::uint64_t(ok.tensors()[1].offset)), "overlaps");
    cases.emplace_back(patch(dims_at + 4, std::uint64_t(0)), "not a plausible size");
    cases.emplace_back(patch(info0 + 8, std::uint8_t(0x9F)), "not valid UTF-8");  // a continuation byte opening a name
    REQUIRE(cases.size() >= 30);
    int refused = 0;
    for (std::size_t i = 0; i < cases.size(); ++i) {
        CAPTURE(i);
        CAPTURE(cases[i].second);
        std::string msg;
        try {
            // What parses must still bind as a model (shapes, types) or be refused there.
            auto f = std::make_shared<const io::GgufFile>(io::MappedFile::from_bytes("corrupt.gguf", cases[i].first));
            GgufModel g = open_gguf(f);
            const ModelConfig c = parse_config(g.config, "corrupt.gguf");
            const io::Checkpoint ck("corrupt.gguf", std::move(g.tensors), f);
            bind_weights(ck, c);
        } catch (const Error& e) {
            msg = e.what();
        }
        CHECK(!msg.empty());
        CHECK(msg.find("corrupt.gguf") != std::string::npos);
        if (!cases[i].second.empty()) CHECK(msg.find(cases[i].second) != std::string::npos);
        refused += !msg.empty();
    }
    CHECK(refused == static_cast<int>(cases.size()));
}

TEST_CASE("GGUF files of llama.cpp's convert_hf_to_gguf.py, one per family: the same model as the safetensors checkpoint") {
    // tests/data/gguf/families/<name>-F32.gguf: tests/data/families/<name> converted by llama.cpp's own converter
    // (tools/make_family_ggufs.py). Each opens as the same family and computes the checkpoint's logits within 2e-4 of
    // max |logit| (undoing the converter's changes: llama's permuted Q/K rows, Gemma's 1 + w norms, stacked experts).
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(test::data("gguf/families"))) {
        const std::string f = e.path().filename().string();
        if (f.size() > 9 && f.substr(f.size() - 9) == "-F32.gguf") names.push_back(f.substr(0, f.size() - 9));
    }
    std::sort(names.begin(), names.end());
    CHECK(names.size() == 21);
    for (const std::string& name : names) {
        CAPTURE(name);
        ModelFiles files = open_model_files(test::data("families/" + name));
        // What llama.cpp's format cannot say about these checkpoints, the GGUF holds as llama.cpp computes it (and
        // llama-perplexity agrees with massact on the file, below): Gemma 2's query_pre_attn_scalar (24 here) is dropped,
        // llama.cpp scales by 1/sqrt(head_dim); SmolLM3's no_rope_layers (every 2nd layer here) are dropped, llama.cpp
        // leaves every 4th without RoPE; StarCoder2's sliding_window (8 here) is not written, llama.cpp attends to all.
        ModelConfig& c = files.config;
        if (name == "gemma2") c.attn_scale = 1.0 / std::sqrt(double(c.head_dim));
        for (int l = 0; l < c.num_layers && name == "smollm3"; ++l) c.layers[static_cast<std::size_t>(l)].nope = (l + 1) % 4 == 0;
        for (int l = 0; l < c.num_layers && name == "starcoder2"; ++l) c.layers[static_cast<std::size_t>(l)].window = 0;
        const Transformer st(name, std::move(files), {}), gg(test::data("gguf/families/" + name + "-F32.gguf"));
        CHECK(gg.config().model_type == st.config().model_type);
        CHECK(gg.config().num_experts == st.config().num_experts);
        TokenBatch ids(2, 12);
        for (Index i = 0; i < ids.size(); ++i) ids.data()[i] = (37 * i + 11) % st.config().vocab_size;
        const RowMatrixF a = st.forward(ids), b = gg.forward(ids);
        REQUIRE(a.rows() == b.rows());
        REQUIRE(a.cols() == b.cols());
        const double rel = (a - b).cwiseAbs().maxCoeff() / a.cwiseAbs().maxCoeff();
        MESSAGE(name << ": GGUF against safetensors " << rel << " of max |logit|");
        CHECK(rel < 2e-4);
    }
}

TEST_CASE("llama.cpp's llama-perplexity on each family's F16 GGUF: massact's perplexity, scored the same way, within 0.5%") {
    // tests/data/gguf/families/llama-perplexity.json (tools/llama_perplexity_refs.py): llama-perplexity on <name>-F16.gguf
    // and text.txt, windows of ctx tokens, the second half of each scored. massact tokenizes the text with the file's
    // vocabulary (the same windows: their count must agree) and scores the same predictions.
    const auto refs = io::read_json_file(test::data("gguf/families/llama-perplexity.json"));
    std::ifstream in(test::data("gguf/families/text.txt"), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(text.size() > 1000);
    CHECK(refs.size() == 19);
    for (auto it = refs.begin(); it != refs.end(); ++it) {
        const std::string file = it.key();
        const nlohmann::json& ref = it.value();
        CAPTURE(file);
        const Transformer m(test::data("gguf/families/" + file));
        const auto tokens = m.tokenizer().encode(text, true);
        const Index ctx = ref.at("ctx").get<Index>(), first = ctx / 2;
        const Index chunks = static_cast<Index>(tokens.size()) / ctx;
        CHECK(chunks == ref.at("chunks").get<Index>());
        TokenBatch ids(chunks, ctx);
        std::copy(tokens.begin(), tokens.begin() + chunks * ctx, ids.data());
        const RowMatrixF logits = m.forward(ids);  // [chunks * ctx, V]
        double nll = 0;
        Index count = 0;
        for (Index c = 0; c < chunks; ++c)
            for (Index t = first; t < ctx - 1; ++t) {
                const auto row = logits.row(c * ctx + t).cast<double>();
                const double mx = row.maxCoeff();
                nll += mx + std::log((row.array() - mx).exp().sum()) - row(ids(c, t + 1));
                ++count;
            }
        const double ppl = std::exp(nll / static_cast<double>(count)), want = ref.at("ppl").get<double>();
        MESSAGE(file << ": massact " << ppl << ", llama.cpp " << want << " (" << 100 * (ppl / want - 1) << "%)");
        CHECK(std::abs(ppl / want - 1) < 0.005);
    }
}

TEST_CASE("llama-quantize's Q4_K_M of family GGUFs (experts, 1 + w norms, reordered QKV) computes what its gguf-py dequantization computes") {
    // tests/data/gguf/families/<name>-Q4_K_M.gguf: llama-quantize of <name>-F32.gguf (Q4_K where rows are 256 wide,
    // else Q5_0, Q8_0 for the head); .dequantized.gguf: gguf-py's dequantization of every tensor, metadata copied.
    for (const char* name : {"mixtral", "gemma2", "falcon_new"}) {
        CAPTURE(name);
        const std::string base = test::data("gguf/families/") + name;
        const Transformer q(base + "-Q4_K_M.gguf"), f(base + "-Q4_K_M.dequantized.gguf"), orig(base + "-F32.gguf");
        TokenBatch ids(2, 10);
        for (Index i = 0; i < ids.size(); ++i) ids.data()[i] = (53 * i + 7) % q.config().vocab_size;
        const RowMatrixF a = q.forward(ids), b = f.forward(ids), c = orig.forward(ids);
        const double scale = b.cwiseAbs().maxCoeff(), diff = (a - b).cwiseAbs().maxCoeff(), quant = (c - b).cwiseAbs().maxCoeff();
        MESSAGE(std::string(name) << ": Q4_K_M vs its gguf-py dequantization " << diff / scale << " of max |logit|; vs F32 " << quant / scale);
        CHECK(diff <= 1e-5 * scale);
        CHECK(quant > 1e-3 * scale);  // (the quantization is there)
    }
}

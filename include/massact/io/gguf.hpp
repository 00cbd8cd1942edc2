// massact/io/gguf.hpp - a validated, memory-mapped GGUF file (llama.cpp's format), versions 2 and 3.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata count; the metadata
// (string key, u32 value type, value); the tensor infos (string name, u32 n_dims <= 4, u64 ne[n_dims]
// fastest dimension first, u32 ggml type, u64 offset); padding to the alignment (metadata
// general.alignment, default 32); the data, each tensor at data start + its offset. Strings are a u64
// length and bytes. Value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string,
// 9 array (u32 element type, u64 count, elements), 10 u64, 11 i64, 12 f64.
//
// Refused, with the file and the field: a bad magic or version; counts, lengths or offsets past the
// end of the file; a value or tensor type ggml does not define; a duplicate key or tensor name; a
// misaligned offset; a row length that is not a whole number of blocks; overlapping tensors; a string
// that is not UTF-8.
#pragma once

#include "massact/core/error.hpp"
#include "massact/io/ggml_blocks.hpp"
#include "massact/io/mapped_file.hpp"
#include "massact/io/safetensors.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace massact::io {

/// Whether a model path names a GGUF file (by its extension).
inline bool is_gguf_path(const std::string& path) { return path.size() > 5 && path.compare(path.size() - 5, 5, ".gguf") == 0; }

/// Whether bytes are well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
inline bool valid_utf8(const std::string& s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    for (std::size_t i = 0; i < n;) {
        const unsigned c = p[i];
        std::size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n) return false;
        std::uint32_t cp = len == 1 ? c : c & (0x7Fu >> len);
        for (std::size_t k = 1; k < len; ++k) {
            if ((p[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        static constexpr std::uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

/// One tensor of a GGUF file as stored: ne[0] is the fastest dimension (a [out, in] matrix has ne {in, out}).
struct GgufTensor {
    std::string name;
    std::uint32_t type = 0;
    std::vector<std::int64_t> ne;
    std::uint64_t offset = 0;  // from the start of the data section
    std::size_t nbytes = 0;
    const unsigned char* data = nullptr;
};

class GgufFile {
public:
    explicit GgufFile(const std::string& path) : map_(path) { parse(); }
    explicit GgufFile(MappedFile map) : map_(std::move(map)) { parse(); }

    const std::string& path() const { return map_.path(); }
    std::uint32_t version() const { return version_; }
    std::size_t alignment() const { return alignment_; }
    /// Metadata values as JSON (integers, floats, booleans, strings, arrays).
    const nlohmann::json& metadata() const { return meta_; }
    bool has(const std::string& key) const { return meta_.contains(key); }
    const std::vector<GgufTensor>& tensors() const { return tensors_; }
    const GgufTensor* find(const std::string& name) const {
        const auto it = index_.find(name);
        return it == index_.end() ? nullptr : &tensors_[it->second];
    }

    /// A metadata value of the expected kind; throws naming the file and key.
    std::string get_string(const std::string& key) const { return get(key, nlohmann::json::value_t::string, "a string").get<std::string>(); }
    std::int64_t get_int(const std::string& key) const {
        const auto& v = at(key);
        if (!v.is_number_integer()) fail("metadata \"" + key + "\": expected an integer, found " + json_brief(v, 40));
        return v.get<std::int64_t>();
    }
    double get_float(const std::string& key) const {
        const auto& v = at(key);
        if (!v.is_number()) fail("metadata \"" + key + "\": expected a number, found " + json_brief(v, 40));
        return v.get<double>();
    }
    const nlohmann::json& get_array(const std::string& key) const { return get(key, nlohmann::json::value_t::array, "an array"); }
    const nlohmann::json& at(const std::string& key) const {
        if (!meta_.contains(key)) fail("metadata \"" + key + "\" is missing");
        return meta_[key];
    }

    /// A tensor as a TensorView in row-major order (shape = ne reversed: [out, in] for a matrix), or throws
    /// naming the tensor when the type is one massact does not dequantize.
    TensorView view(const GgufTensor& t) const {
        TensorView v;
        v.name = t.name;
        v.file = path();
        v.shape.assign(t.ne.rbegin(), t.ne.rend());
        v.data = t.data;
        v.nbytes = t.nbytes;
        const ggml::TypeInfo info = ggml::type_info(t.type);
        switch (static_cast<ggml::Type>(t.type)) {
            case ggml::Type::F32: v.dtype = DType::F32; break;
            case ggml::Type::F16: v.dtype = DType::F16; break;
            case ggml::Type::BF16: v.dtype = DType::BF16; break;
            case ggml::Type::Q8_0: v.dtype = DType::Q8_0; break;
            case ggml::Type::Q4_0: v.dtype = DType::Q4_0; break;
            case ggml::Type::Q4_1: v.dtype = DType::Q4_1; break;
            case ggml::Type::Q5_0: v.dtype = DType::Q5_0; break;
            case ggml::Type::Q5_1: v.dtype = DType::Q5_1; break;
            case ggml::Type::Q2_K: v.dtype = DType::Q2_K; break;
            case ggml::Type::Q3_K: v.dtype = DType::Q3_K; break;
            case ggml::Type::Q4_K: v.dtype = DType::Q4_K; break;
            case ggml::Type::Q5_K: v.dtype = DType::Q5_K; break;
            case ggml::Type::Q6_K: v.dtype = DType::Q6_K; break;
            case ggml::Type::IQ4_NL: v.dtype = DType::IQ4_NL; break;
            case ggml::Type::IQ4_XS: v.dtype = DType::IQ4_XS; break;
            case ggml::Type::MXFP4: v.dtype = DType::MXFP4; break;
            case ggml::Type::TQ1_0: v.dtype = DType::TQ1_0; break;
            case ggml::Type::TQ2_0: v.dtype = DType::TQ2_0; break;
            default:
                fail("tensor \"" + t.name + "\": type " + info.name +
                     " is not one massact reads (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, "
                     "IQ4_NL, IQ4_XS, MXFP4, TQ1_0, TQ2_0)");
        }
        return v;
    }

private:
    [[noreturn]] void fail(const std::string& what) const { throw Error(path() + ": " + what); }

    const nlohmann::json& get(const std::string& key, nlohmann::json::value_t kind, const char* what) const {
        const auto& v = at(key);
        if (v.type() != kind) fail("metadata \"" + key + "\": expected " + what + ", found " + json_brief(v, 40));
        return v;
    }

    /// A bounds-checked reader over the mapped bytes.
    struct Cursor {
        const GgufFile& f;
        std::size_t pos = 0;
        void need(std::size_t n, const std::string& what) const {
            if (n > f.map_.size() - pos)
                f.fail(what + " at byte " + std::to_string(pos) + " runs past the end of the file (" + std::to_string(f.map_.size()) +
                       " bytes)");
        }
        template <typename T>
        T read(const std::string& what) {
            need(sizeof(T), what);
            T v;
            std::memcpy(&v, f.map_.data() + pos, sizeof(T));
            pos += sizeof(T);
            return v;
        }
        std::string string(const std::string& what) {
            const auto n = read<std::uint64_t>(what + " length");
            need(n, what + " (" + std::to_string(n) + " bytes)");
            std::string s(reinterpret_cast<const char*>(f.map_.data() + pos), static_cast<std::size_t>(n));
            if (!valid_utf8(s)) f.fail(what + " at byte " + std::to_string(pos) + " is not valid UTF-8");
            pos += static_cast<std::size_t>(n);
            return s;
        }
        std::size_t left() const { return f.map_.size() - pos; }
    };

    /// One value of type `type`; arrays may nest (at most 2 deep).
    nlohmann::json value(Cursor& c, std::uint32_t type, const std::string& what, int depth = 0) {
        switch (type) {
            case 0: return c.read<std::uint8_t>(what);
            case 1: return c.read<std::int8_t>(what);
            case 2: return c.read<std::uint16_t>(what);
            case 3: return c.read<std::int16_t>(what);
            case 4: return c.read<std::uint32_t>(what);
            case 5: return c.read<std::int32_t>(what);
            case 6: return c.read<float>(what);
            case 7: {
                const auto b = c.read<std::uint8_t>(what);
                if (b > 1) fail(what + ": boolean byte " + std::to_string(b) + " is neither 0 nor 1");
                return b == 1;
            }
            case 8: return c.string(what);
            case 9: {
                if (depth >= 2) fail(what + ": arrays nested more than two deep");
                const auto et = c.read<std::uint32_t>(what + " element type");
                const auto n = c.read<std::uint64_t>(what + " element count");
                static constexpr std::size_t min_size[] = {1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8};
                if (et > 12) fail(what + ": unknown element type " + std::to_string(et) + " (expected 0..12)");
                if (n > c.left() / min_size[et])
                    fail(what + ": " + std::to_string(n) + " elements cannot fit in the " + std::to_string(c.left()) + " bytes left");
                nlohmann::json a = nlohmann::json::array();
                a.get_ref<nlohmann::json::array_t&>().reserve(static_cast<std::size_t>(n));
                for (std::uint64_t i = 0; i < n; ++i) a.push_back(value(c, et, what + "[" + std::to_string(i) + "]", depth + 1));
                return a;
            }
            case 10: return c.read<std::uint64_t>(what);
            case 11: return c.read<std::int64_t>(what);
            case 12: return c.read<double>(what);
            default: fail(what + ": unknown value type " + std::to_string(type) + " (expected 0..12)");
        }
    }

    void parse() {
        Cursor c{*this};
        if (map_.size() < 4 || std::memcmp(map_.data(), "GGUF", 4) != 0) fail("not a GGUF file (the first four bytes are not \"GGUF\")");
        c.pos = 4;
        version_ = c.read<std::uint32_t>("version");
        if (version_ != 2 && version_ != 3) fail("GGUF version " + std::to_string(version_) + " is not supported (expected 2 or 3)");
        const auto n_tensors = c.read<std::uint64_t>("tensor count");
        const auto n_kv = c.read<std::uint64_t>("metadata count");
        if (n_kv > c.left() / 12) fail("metadata count " + std::to_string(n_kv) + " cannot fit in the file");
        for (std::uint64_t i = 0; i < n_kv; ++i) {
            const std::string key = c.string("metadata key " + std::to_string(i));
            if (meta_.contains(key)) fail("metadata key \"" + key + "\" appears twice");
            const auto type = c.read<std::uint32_t>("metadata \"" + key + "\" type");
            meta_[key] = value(c, type, "metadata \"" + key + "\"");
        }
        alignment_ = 32;
        if (meta_.contains("general.alignment")) {
            const auto& a = meta_["general.alignment"];
            if (!a.is_number_unsigned() || a.get<std::uint64_t>() == 0 || a.get<std::uint64_t>() > (1u << 20) ||
                (a.get<std::uint64_t>() & (a.get<std::uint64_t>() - 1)) != 0)
                fail("metadata \"general.alignment\": " + json_brief(a) + " is not a power of two up to 2^20");
            alignment_ = a.get<std::size_t>();
        }
        if (n_tensors > c.left() / 24) fail("tensor count " + std::to_string(n_tensors) + " cannot fit in the file");
        tensors_.reserve(static_cast<std::size_t>(n_tensors));
        for (std::uint64_t i = 0; i < n_tensors; ++i) {
            GgufTensor t;
            t.name = c.string("tensor " + std::to_string(i) + " name");
            const std::string what = "tensor \"" + t.name + "\"";
            if (index_.count(t.name)) fail(what + " appears twice");
            const auto n_dims = c.read<std::uint32_t>(what + " dimension count");
            if (n_dims < 1 || n_dims > 4) fail(what + ": " + std::to_string(n_dims) + " dimensions (expected 1 to 4)");
            std::uint64_t numel = 1;
            for (std::uint32_t d = 0; d < n_dims; ++d) {
                const auto n = c.read<std::uint64_t>(what + " ne[" + std::to_string(d) + "]");
                if (n == 0 || n > (std::uint64_t(1) << 40) || __builtin_mul_overflow(numel, n, &numel) || numel > (std::uint64_t(1) << 44))
                    fail(what + ": ne[" + std::to_string(d) + "] = " + std::to_string(n) + " is not a plausible size");
                t.ne.push_back(static_cast<std::int64_t>(n));
            }
            t.type = c.read<std::uint32_t>(what + " type");
            const ggml::TypeInfo info = ggml::type_info(t.type);
            if (info.block == 0) fail(what + ": unknown ggml type " + std::to_string(t.type));
            if (t.ne[0] % info.block != 0)
                fail(what + ": rows of " + std::to_string(t.ne[0]) + " elements are not whole " + info.name + " blocks of " +
                     std::to_string(info.block));
            t.nbytes = static_cast<std::size_t>(numel / info.block * info.bytes);
            t.offset = c.read<std::uint64_t>(what + " offset");
            if (t.offset % alignment_ != 0)
                fail(what + ": offset " + std::to_string(t.offset) + " is not a multiple of the alignment " + std::to_string(alignment_));
            index_[t.name] = tensors_.size();
            tensors_.push_back(std::move(t));
        }
        const std::size_t data_start = (c.pos + alignment_ - 1) / alignment_ * alignment_;
        if (data_start > map_.size() && !tensors_.empty()) fail("the data section starts past the end of the file");
        const std::size_t data_size = map_.size() - std::min(data_start, map_.size());
        std::vector<std::pair<std::uint64_t, std::size_t>> spans;
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            GgufTensor& t = tensors_[i];
            if (t.offset > data_size || t.nbytes > data_size - t.offset)
                fail("tensor \"" + t.name + "\": bytes [" + std::to_string(t.offset) + ", " + std::to_string(t.offset + t.nbytes) +
                     ") of the data section run past its end (" + std::to_string(data_size) + " bytes)");
            t.data = map_.data() + data_start + t.offset;
            spans.emplace_back(t.offset, i);
        }
        std::sort(spans.begin(), spans.end());
        for (std::size_t i = 1; i < spans.size(); ++i) {
            const GgufTensor& a = tensors_[spans[i - 1].second];
            if (a.offset + a.nbytes > spans[i].first)
                fail("tensor \"" + a.name + "\" overlaps tensor \"" + tensors_[spans[i].second].name + "\"");
        }
    }

    MappedFile map_;
    std::uint32_t version_ = 0;
    std::size_t alignment_ = 32;
    nlohmann::json meta_ = nlohmann::json::object();
    std::vector<GgufTensor> tensors_;
    std::map<std::string, std::size_t> index_;
};

}  // namespace massact::io

// massact/io/safetensors.hpp - memory-mapped safetensors reader and an F32/I64 writer.
//
// Format (https://github.com/huggingface/safetensors): u64 little-endian header
// length N, N bytes of UTF-8 JSON {name: {dtype, shape, data_offsets}}, then
// the data buffer. Every validation rule of docs/formats.md is checked
// when a file is opened; errors name the file, the tensor and the rule.
#pragma once

#include "massact/core/error.hpp"
#include "massact/io/atomic_file.hpp"
#include "massact/core/half.hpp"
#include "massact/io/ggml_blocks.hpp"
#include "massact/io/json_file.hpp"
#include "massact/io/mapped_file.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

namespace massact::io {

/// Element types: safetensors' dtypes, and the block quantizations of GGUF files (io/ggml_blocks.hpp).
enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, U16, U32, U64, BOOL, F8_E4M3, F8_E5M2,
                   Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, MXFP4, TQ1_0, TQ2_0 };

/// The ggml type of a quantized dtype (F32 for the others).
inline ggml::Type ggml_type(DType t) {
    switch (t) {
        case DType::Q8_0: return ggml::Type::Q8_0;
        case DType::Q4_0: return ggml::Type::Q4_0;
        case DType::Q4_1: return ggml::Type::Q4_1;
        case DType::Q5_0: return ggml::Type::Q5_0;
        case DType::Q5_1: return ggml::Type::Q5_1;
        case DType::Q2_K: return ggml::Type::Q2_K;
        case DType::Q3_K: return ggml::Type::Q3_K;
        case DType::Q4_K: return ggml::Type::Q4_K;
        case DType::Q5_K: return ggml::Type::Q5_K;
        case DType::Q6_K: return ggml::Type::Q6_K;
        case DType::IQ4_NL: return ggml::Type::IQ4_NL;
        case DType::IQ4_XS: return ggml::Type::IQ4_XS;
        case DType::MXFP4: return ggml::Type::MXFP4;
        case DType::TQ1_0: return ggml::Type::TQ1_0;
        case DType::TQ2_0: return ggml::Type::TQ2_0;
        default: return ggml::Type::F32;
    }
}
inline bool quantized(DType t) { return ggml_type(t) != ggml::Type::F32; }

inline const char* dtype_name(DType t) {
    switch (t) {
        case DType::F64: return "F64";
        case DType::F32: return "F32";
        case DType::F16: return "F16";
        case DType::BF16: return "BF16";
        case DType::I64: return "I64";
        case DType::I32: return "I32";
        case DType::I16: return "I16";
        case DType::I8: return "I8";
        case DType::U8: return "U8";
        case DType::U16: return "U16";
        case DType::U32: return "U32";
        case DType::U64: return "U64";
        case DType::BOOL: return "BOOL";
        case DType::F8_E4M3: return "F8_E4M3";
        case DType::F8_E5M2: return "F8_E5M2";
        default: return ggml::type_info(static_cast<std::uint32_t>(ggml_type(t))).name;
    }
    return "?";
}

inline std::size_t dtype_size(DType t) {
    switch (t) {
        case DType::F64: case DType::I64: case DType::U64: return 8;
        case DType::F32: case DType::I32: case DType::U32: return 4;
        case DType::F16: case DType::BF16: case DType::I16: case DType::U16: return 2;
        default: return 1;
    }
}

inline bool parse_dtype(const std::string& s, DType& out) {
    static constexpr DType all[] = {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64,
                                    DType::I32, DType::I16, DType::I8, DType::U8, DType::U16,
                                    DType::U32, DType::U64, DType::BOOL, DType::F8_E4M3, DType::F8_E5M2};
    for (DType t : all)
        if (s == dtype_name(t)) { out = t; return true; }
    return false;
}

/// Whether massact can convert a dtype to float32 / int64 (the rest are validated, not read).
inline bool dtype_readable(DType t) {
    return t == DType::F64 || t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::I64 ||
           t == DType::I32 || quantized(t);
}

inline std::string shape_string(const std::vector<std::int64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

/// One tensor of a mapped file: a view, valid while its SafetensorsFile lives.
struct TensorView {
    std::string name;
    std::string file;
    DType dtype = DType::F32;
    std::vector<std::int64_t> shape;
    const unsigned char* data = nullptr;  // may be unaligned
    std::size_t nbytes = 0;
    /// > 0: a [rows, cols] matrix whose rows llama.cpp's converter permuted for interleaved RoPE, per
    /// block of rows of this many heads (Q and K of llama-style GGUF files); to_float undoes it.
    std::int64_t rope_heads = 0;

    std::int64_t numel() const {
        std::int64_t n = 1;
        for (auto d : shape) n *= d;
        return n;
    }
    std::string where() const { return file + ": tensor \"" + name + "\""; }

    /// Convert elements [first, first + count) to float32 into out. Throws for dtypes massact does not read.
    void to_float(float* out, std::size_t first, std::size_t count) const {
        if (rope_heads > 0) return unpermuted(out, first, count);
        if (quantized(dtype)) return ggml::dequantize(ggml_type(dtype), data, first, count, out);
        const std::size_t n = count;
        const unsigned char* p = data + first * dtype_size(dtype);
        switch (dtype) {
            case DType::F32: std::memcpy(out, p, n * 4); return;
            case DType::BF16: bf16_to_float(p, out, n); return;
            case DType::F16: f16_to_float(p, out, n); return;
            case DType::F64:
                for (std::size_t i = 0; i < n; ++i) { double v; std::memcpy(&v, p + 8 * i, 8); out[i] = static_cast<float>(v); }
                return;
            case DType::I64:
                for (std::size_t i = 0; i < n; ++i) { std::int64_t v; std::memcpy(&v, p + 8 * i, 8); out[i] = static_cast<float>(v); }
                return;
            case DType::I32:
                for (std::size_t i = 0; i < n; ++i) { std::int32_t v; std::memcpy(&v, p + 4 * i, 4); out[i] = static_cast<float>(v); }
                return;
            default:
                throw Error(where() + ": unsupported dtype " + dtype_name(dtype) +
                            " (massact reads F32, F16, BF16, F64, I64, I32)");
        }
    }
    void to_float(float* out) const { to_float(out, 0, static_cast<std::size_t>(numel())); }

    /// Logical row r of head h holds pair half s = (r % hd) / (hd / 2), index i = r % (hd / 2); llama.cpp
    /// stored it at row h * hd + 2 i + s (its `permute` for interleaved rotary pairs).
    std::size_t stored_row(std::size_t r) const {
        const auto hd = static_cast<std::size_t>(shape[0] / rope_heads), half = hd / 2, in = r % hd;
        return r - in + 2 * (in % half) + in / half;
    }
    void unpermuted(float* out, std::size_t first, std::size_t count) const {
        TensorView plain = *this;
        plain.rope_heads = 0;
        const auto cols = static_cast<std::size_t>(shape[1]);
        for (std::size_t i = first; i < first + count;) {
            const std::size_t r = i / cols, c = i % cols, n = std::min(cols - c, first + count - i);
            plain.to_float(out, stored_row(r) * cols + c, n);
            out += n;
            i += n;
        }
    }
    std::vector<float> to_float() const {
        std::vector<float> v(static_cast<std::size_t>(numel()));
        to_float(v.data());
        return v;
    }
    std::vector<double> to_double() const {
        const auto n = static_cast<std::size_t>(numel());
        std::vector<double> v(n);
        if (dtype == DType::F64) {
            std::memcpy(v.data(), data, n * 8);
        } else {
            std::vector<float> f = to_float();
            std::copy(f.begin(), f.end(), v.begin());
        }
        return v;
    }
    /// Integer tensors (I64, I32) as int64.
    std::vector<std::int64_t> to_int64() const {
        const auto n = static_cast<std::size_t>(numel());
        std::vector<std::int64_t> v(n);
        if (dtype == DType::I64) {
            std::memcpy(v.data(), data, n * 8);
        } else if (dtype == DType::I32) {
            for (std::size_t i = 0; i < n; ++i) { std::int32_t x; std::memcpy(&x, data + 4 * i, 4); v[i] = x; }
        } else {
            throw Error(where() + ": expected an integer tensor (I64 or I32), found " + dtype_name(dtype));
        }
        return v;
    }
};

/// A validated, memory-mapped .safetensors file.
class SafetensorsFile {
public:
    static constexpr std::uint64_t kMaxHeader = 100000000;

    explicit SafetensorsFile(const std::string& path) : map_(path) { parse(); }
    /// The same checks on bytes in memory (`map.path()` names them in errors).
    explicit SafetensorsFile(MappedFile map) : map_(std::move(map)) { parse(); }

    const std::string& path() const { return map_.path(); }
    bool has(const std::string& name) const { return tensors_.count(name) != 0; }
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        for (const auto& kv : tensors_) out.push_back(kv.first);
        return out;
    }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

    const TensorView& tensor(const std::string& name) const {
        auto it = tensors_.find(name);
        if (it == tensors_.end()) throw Error(path() + ": missing tensor \"" + name + "\"");
        return it->second;
    }

private:
    [[noreturn]] void fail(const std::string& rule) const { throw Error(path() + ": " + rule); }

    struct Span {
        std::uint64_t begin, end;
        std::string name;
    };

    void parse() {
        const std::size_t size = map_.size();
        if (size < 8) fail("file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
        std::uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | map_.data()[i];
        if (n > kMaxHeader)
            fail("header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(kMaxHeader));
        if (8 + n > size)
            fail("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) +
                 " bytes)");
        const nlohmann::json header = parse_header(reinterpret_cast<const char*>(map_.data()) + 8, n);
        const std::uint64_t buffer_size = size - 8 - n;
        std::vector<Span> spans;
        for (auto it = header.begin(); it != header.end(); ++it) {
            if (it.key() == "__metadata__") {
                read_metadata(it.value());
                continue;
            }
            TensorView t = parse_entry(it.key(), it.value(), buffer_size);
            spans.push_back({static_cast<std::uint64_t>(t.data - (map_.data() + 8 + n)),
                             static_cast<std::uint64_t>(t.data - (map_.data() + 8 + n)) + t.nbytes, it.key()});
            tensors_.emplace(it.key(), std::move(t));
        }
        check_tiling(spans, buffer_size);
    }

    /// The header JSON, refusing duplicate top-level names (nlohmann would keep the last).
    nlohmann::json parse_header(const char* begin, std::uint64_t n) const {
        std::set<std::string> seen;
        std::string duplicate;
        nlohmann::json header;
        try {
            header = nlohmann::json::parse(begin, begin + n, [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
                if (depth == 1 && ev == nlohmann::json::parse_event_t::key) {
                    const std::string& key = parsed.get_ref<const std::string&>();
                    if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
                }
                return true;
            });
        } catch (const nlohmann::json::exception& e) {
            fail(std::string("header is not valid UTF-8 JSON: ") + e.what());
        }
        if (!duplicate.empty()) fail("tensor \"" + duplicate + "\": duplicate name in header");
        if (!header.is_object()) fail("header is not a JSON object");
        return header;
    }

    void read_metadata(const nlohmann::json& e) {
        if (!e.is_object()) fail("__metadata__ is not an object");
        for (auto m = e.begin(); m != e.end(); ++m) {
            if (!m.value().is_string()) fail("__metadata__ field \"" + m.key() + "\" is not a string");
            metadata_[m.key()] = m.value().get<std::string>();
        }
    }

    /// One tensor entry: dtype, shape (no overflow), data_offsets matching the byte count, inside the buffer.
    TensorView parse_entry(const std::string& name, const nlohmann::json& e, std::uint64_t buffer_size) const {
        const std::string where = "tensor \"" + name + "\": ";
        if (!e.is_object()) fail(where + "entry is not an object");
        if (!e.contains("dtype") || !e["dtype"].is_string()) fail(where + "missing string field \"dtype\"");
        TensorView t;
        t.name = name;
        t.file = path();
        const std::string ds = e["dtype"].get<std::string>();
        if (!parse_dtype(ds, t.dtype)) fail(where + "unsupported dtype \"" + ds + "\"");
        if (!e.contains("shape") || !e["shape"].is_array()) fail(where + "missing array field \"shape\"");
        std::uint64_t numel = 1;
        for (const auto& d : e["shape"]) {
            if (!d.is_number_unsigned()) fail(where + "shape " + json_brief(e["shape"]) + " has a non-negative-integer entry");
            const std::uint64_t v = d.get<std::uint64_t>();
            if (v > static_cast<std::uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, v, &numel))
                fail(where + "shape " + json_brief(e["shape"]) + ": element count overflows");
            t.shape.push_back(static_cast<std::int64_t>(v));
        }
        std::uint64_t nbytes = 0;
        if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(dtype_size(t.dtype)), &nbytes))
            fail(where + "shape " + json_brief(e["shape"]) + ": byte count overflows");
        const auto& off = e.contains("data_offsets") ? e["data_offsets"] : nlohmann::json();
        if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
            fail(where + "\"data_offsets\" must be two non-negative integers");
        const std::uint64_t b = off[0].get<std::uint64_t>(), en = off[1].get<std::uint64_t>();
        if (en < b) fail(where + "data_offsets [" + std::to_string(b) + ", " + std::to_string(en) + "] end before begin");
        if (en - b != nbytes)
            fail(where + "wrong byte count: data_offsets span " + std::to_string(en - b) + " bytes, but " + ds + " " +
                 json_brief(e["shape"]) + " needs " + std::to_string(nbytes));
        if (en > buffer_size)
            fail(where + "data_offsets end " + std::to_string(en) + " is past the data buffer (" + std::to_string(buffer_size) +
                 " bytes; file truncated?)");
        t.data = map_.data() + (map_.size() - buffer_size) + b;
        t.nbytes = static_cast<std::size_t>(nbytes);
        return t;
    }

    /// The spans, sorted, must start at 0 and tile the buffer exactly.
    void check_tiling(std::vector<Span>& spans, std::uint64_t buffer_size) const {
        std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
            return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
        });
        std::uint64_t pos = 0;
        const Span* prev = nullptr;
        for (const auto& s : spans) {
            if (s.begin > pos)
                fail("tensor \"" + s.name + "\": gap in the data buffer: bytes [" + std::to_string(pos) + ", " +
                     std::to_string(s.begin) + ") belong to no tensor");
            if (s.begin < pos)
                fail("tensor \"" + s.name + "\": data_offsets overlap tensor \"" + (prev ? prev->name : std::string()) +
                     "\" at byte " + std::to_string(s.begin));
            pos = s.end;
            prev = &s;
        }
        if (pos != buffer_size)
            fail("data buffer is " + std::to_string(buffer_size) + " bytes but the tensors cover " + std::to_string(pos) +
                 (pos < buffer_size ? " (trailing bytes)" : " (truncated file)"));
    }

    MappedFile map_;
    std::map<std::string, TensorView> tensors_;
    std::map<std::string, std::string> metadata_;
};

/// Writes F32 and I64 tensors (and F16/BF16 given as raw bits) to a .safetensors file.
/// The file appears atomically: data goes to a temporary file renamed at the end.
class SafetensorsWriter {
public:
    void add_f32(const std::string& name, std::vector<std::int64_t> shape, const float* data) {
        add_raw(name, DType::F32, std::move(shape), data);
    }
    void add_i64(const std::string& name, std::vector<std::int64_t> shape, const std::int64_t* data) {
        add_raw(name, DType::I64, std::move(shape), data);
    }
    /// Any dtype, from its little-endian bytes (numel * dtype_size bytes).
    void add_raw(const std::string& name, DType dtype, std::vector<std::int64_t> shape, const void* data) {
        if (name.empty() || name == "__metadata__") throw Error("safetensors writer: invalid tensor name \"" + name + "\"");
        for (const auto& e : entries_)
            if (e.name == name) throw Error("safetensors writer: duplicate tensor name \"" + name + "\"");
        std::size_t n = 1;
        for (auto d : shape) {
            if (d < 0) throw Error("safetensors writer: tensor \"" + name + "\" has a negative dimension");
            n *= static_cast<std::size_t>(d);
        }
        Entry e{name, dtype, std::move(shape), std::vector<unsigned char>(n * dtype_size(dtype))};
        if (!e.bytes.empty()) std::memcpy(e.bytes.data(), data, e.bytes.size());
        entries_.push_back(std::move(e));
    }
    void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
    std::size_t size() const { return entries_.size(); }

    void write(const std::string& path) const {
        nlohmann::json h = nlohmann::json::object();
        if (!metadata_.empty()) h["__metadata__"] = metadata_;
        std::uint64_t off = 0;
        for (const auto& e : entries_) {
            h[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {off, off + e.bytes.size()}}};
            off += e.bytes.size();
        }
        std::string header = h.dump();
        while ((8 + header.size()) % 8 != 0) header.push_back(' ');  // data starts 8-byte aligned
        AtomicFile out(path);
        unsigned char len[8];
        const std::uint64_t n = header.size();
        for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xffu);
        out.write(len, 8);
        out.write(header.data(), header.size());
        for (const auto& e : entries_) out.write(e.bytes.data(), e.bytes.size());
        out.commit();
    }

private:
    struct Entry {
        std::string name;
        DType dtype;
        std::vector<std::int64_t> shape;
        std::vector<unsigned char> bytes;
    };
    std::vector<Entry> entries_;
    std::map<std::string, std::string> metadata_;
};

/// Writes a safetensors file tensor by tensor, for files too large to hold in memory
/// (e.g. a 7B checkpoint): declare every tensor, then write their data in declaration order.
/// The file appears only when finish() succeeds; otherwise the temporary file is removed.
class SafetensorsStreamWriter {
public:
    struct Entry {
        std::string name;
        DType dtype;
        std::vector<std::int64_t> shape;
    };
    SafetensorsStreamWriter(std::string path, std::vector<Entry> entries)
        : out_(path), entries_(std::move(entries)) {
        nlohmann::json h = nlohmann::json::object();
        std::uint64_t off = 0;
        for (const auto& e : entries_) {
            std::uint64_t n = dtype_size(e.dtype);
            for (auto d : e.shape) n *= static_cast<std::uint64_t>(d);
            h[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {off, off + n}}};
            sizes_.push_back(n);
            off += n;
        }
        std::string header = h.dump();
        while ((8 + header.size()) % 8 != 0) header.push_back(' ');
        unsigned char len[8];
        const std::uint64_t n = header.size();
        for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xffu);
        out_.write(len, 8);
        out_.write(header.data(), header.size());
    }
    SafetensorsStreamWriter(const SafetensorsStreamWriter&) = delete;
    SafetensorsStreamWriter& operator=(const SafetensorsStreamWriter&) = delete;
    /// The next tensor's bytes (numel * dtype_size).
    void write_next(const void* data, std::size_t nbytes) {
        if (next_ >= entries_.size()) throw Error(out_.path() + ": more tensors written than declared");
        if (nbytes != sizes_[next_])
            throw Error(out_.path() + ": tensor \"" + entries_[next_].name + "\": " + std::to_string(nbytes) + " bytes given, " +
                        std::to_string(sizes_[next_]) + " declared");
        out_.write(data, nbytes);
        ++next_;
    }
    const Entry& next_entry() const { return entries_.at(next_); }
    void finish() {
        if (next_ != entries_.size())
            throw Error(out_.path() + ": only " + std::to_string(next_) + " of " + std::to_string(entries_.size()) + " tensors written");
        out_.commit();
    }

private:
    AtomicFile out_;
    std::vector<Entry> entries_;
    std::vector<std::uint64_t> sizes_;
    std::size_t next_ = 0;
};

}  // namespace massact::io

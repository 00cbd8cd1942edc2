// massact/core/bytes.hpp - a flat byte encoding of statistics, so partial results computed elsewhere (other
// processes, other machines) can be shipped and merged: ByteWriter appends numbers and vectors in the
// machine's byte order, ByteReader reads them back and refuses truncated or inconsistent input.
#pragma once

#include "massact/core/error.hpp"

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace massact {

class ByteWriter {
public:
    template <typename T>
    void put(const T& v) {
        static_assert(std::is_trivially_copyable_v<T>, "ByteWriter::put: plain values only");
        const auto* p = reinterpret_cast<const unsigned char*>(&v);
        bytes_.insert(bytes_.end(), p, p + sizeof(T));
    }
    template <typename T>
    void put_vector(const std::vector<T>& v) {
        put(static_cast<std::uint64_t>(v.size()));
        for (const T& x : v) put(x);
    }
    const std::vector<unsigned char>& bytes() const { return bytes_; }
    std::vector<unsigned char> take() { return std::move(bytes_); }

private:
    std::vector<unsigned char> bytes_;
};

class ByteReader {
public:
    ByteReader(const unsigned char* data, std::size_t size, std::string what) : p_(data), end_(data + size), what_(std::move(what)) {}

    template <typename T>
    T get() {
        static_assert(std::is_trivially_copyable_v<T>, "ByteReader::get: plain values only");
        if (static_cast<std::size_t>(end_ - p_) < sizeof(T)) throw Error(what_ + ": truncated (" + std::to_string(sizeof(T)) + " more bytes expected)");
        T v;
        std::memcpy(&v, p_, sizeof(T));
        p_ += sizeof(T);
        return v;
    }
    template <typename T>
    std::vector<T> get_vector(std::size_t max_size = std::size_t(1) << 32) {
        const auto n = get<std::uint64_t>();
        if (n > max_size || n * sizeof(T) > static_cast<std::size_t>(end_ - p_))
            throw Error(what_ + ": a vector of " + std::to_string(n) + " entries does not fit the remaining bytes");
        std::vector<T> v(static_cast<std::size_t>(n));
        for (auto& x : v) x = get<T>();
        return v;
    }
    bool done() const { return p_ == end_; }
    const std::string& what() const { return what_; }

private:
    const unsigned char* p_;
    const unsigned char* end_;
    std::string what_;
};

}  // namespace massact

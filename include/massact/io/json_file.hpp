// massact/io/json_file.hpp - read a JSON file with errors that name the file.
#pragma once

#include "massact/core/error.hpp"
#include "massact/io/atomic_file.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <string>

namespace massact::io {

namespace detail {
inline void json_brief(const nlohmann::json& v, int depth, std::string& out, std::size_t limit) {
    if (out.size() > limit) return;
    if (!v.is_array() && !v.is_object()) {  // (invalid UTF-8 in a string written as U+FFFD, not thrown)
        out += v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        return;
    }
    if (depth >= 4) {
        out += v.is_array() ? "[...]" : "{...}";
        return;
    }
    out += v.is_array() ? '[' : '{';
    bool first = true;
    for (auto it = v.begin(); it != v.end() && out.size() <= limit; ++it) {
        if (!first) out += ',';
        first = false;
        if (v.is_object()) json_brief(nlohmann::json(it.key()), depth + 1, out, limit), out += ':';
        json_brief(*it, depth + 1, out, limit);
    }
    out += v.is_array() ? ']' : '}';
}
}  // namespace detail

/// A JSON value from a stranger's file as error messages show it: its JSON text, at most `limit` characters (then
/// "..."), values nested beyond 4 levels written [...] / {...}. (nlohmann's dump() recurses without bound: a value nested
/// a million deep overflows the stack; it also throws on invalid UTF-8.)
inline std::string json_brief(const nlohmann::json& v, std::size_t limit = 80) {
    std::string out;
    detail::json_brief(v, 0, out, limit);
    return out.size() > limit ? out.substr(0, limit) + "..." : out;
}

/// The fields of a JSON object from a stranger's file (config.json, preprocessor_config.json), typed: a missing or null
/// field gives the default, a field of another type or out of bounds an error naming the file and the field.
class JsonFields {
public:
    JsonFields(const nlohmann::json& j, std::string file) : j_(j), file_(std::move(file)) {}

    [[noreturn]] void fail(const std::string& field, const std::string& msg) const {
        throw Error(file_ + ": field \"" + field + "\": " + msg);
    }
    bool present(const std::string& k) const { return j_.contains(k) && !j_[k].is_null(); }
    int get_int(const std::string& k) const {
        if (!present(k)) fail(k, "missing (expected a positive integer)");
        return positive(k, j_[k]);
    }
    int get_int(const std::string& k, int dflt) const { return present(k) ? positive(k, j_[k]) : dflt; }
    /// A size with an upper bound (no real model comes near it; a larger value is a corrupt file, and
    /// would make massact allocate per-layer or per-head tables of that size before any tensor is read).
    int get_size(const std::string& k, int max) const {
        const int v = get_int(k);
        if (v > max) fail(k, "value " + std::to_string(v) + " is implausibly large (at most " + std::to_string(max) + ")");
        return v;
    }
    int get_size(const std::string& k, int dflt, int max) const { return present(k) ? get_size(k, max) : dflt; }
    double get_num(const std::string& k, double dflt) const {
        if (!present(k)) return dflt;
        if (!j_[k].is_number()) fail(k, "expected a number, found " + io::json_brief(j_[k]));
        return j_[k].get<double>();
    }
    bool get_bool(const std::string& k, bool dflt) const {
        if (!present(k)) return dflt;
        if (!j_[k].is_boolean()) fail(k, "expected true or false, found " + io::json_brief(j_[k]));
        return j_[k].get<bool>();
    }
    std::string get_str(const std::string& k, const std::string& dflt) const {
        if (!present(k)) return dflt;
        if (!j_[k].is_string()) fail(k, "expected a string, found " + io::json_brief(j_[k]));
        return j_[k].get<std::string>();
    }
    const nlohmann::json& json() const { return j_; }
    const std::string& file() const { return file_; }

private:
    int positive(const std::string& k, const nlohmann::json& v) const {
        if (!v.is_number_integer() || v.get<long long>() <= 0 || v.get<long long>() > 1LL << 30)
            fail(k, "expected a positive integer, found " + io::json_brief(v));
        return static_cast<int>(v.get<long long>());
    }
    const nlohmann::json& j_;
    std::string file_;
};

inline nlohmann::json read_json_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    try {
        return nlohmann::json::parse(ss.str());
    } catch (const nlohmann::json::exception& e) {
        throw Error(path + ": invalid JSON: " + e.what());
    }
}

}  // namespace massact::io

#include <cstdio>
#include <unistd.h>

namespace massact::io {

/// Write `text` to `path` atomically: a temporary file in the same folder, renamed into place.
inline void write_text_file_atomic(const std::string& path, const std::string& text) {
    AtomicFile out(path);
    out.write(text.data(), text.size());
    out.commit();
}

}  // namespace massact::io

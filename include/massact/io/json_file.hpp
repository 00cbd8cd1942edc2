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

// massact/io/json_file.hpp - read a JSON file with errors that name the file.
#pragma once

#include "massact/core/error.hpp"
#include "massact/io/atomic_file.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <string>

namespace massact::io {

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

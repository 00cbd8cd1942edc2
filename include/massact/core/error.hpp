// massact/core/error.hpp - the one exception type of the library.
//
// Errors are thrown while loading and validating (files, configs, options),
// never from inside the numeric kernels. Messages say what is wrong, where
// (file, tensor, field) and what was expected.
#pragma once

#include <cmath>
#include <stdexcept>
#include <string>

namespace massact {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// Refuse a count below `min` (a batch size, a tile): "WHAT must be at least MIN, got VALUE".
inline void require_at_least(long long value, long long min, const std::string& what) {
    if (value < min) throw Error(what + " must be at least " + std::to_string(min) + ", got " + std::to_string(value));
}

/// A whole-string finite float (an option's value `v`, taken from `spec`), or "WHAT: "SPEC": "V" is not a number".
inline float parse_number(const std::string& v, const std::string& what, const std::string& spec) {
    std::size_t pos = 0;
    float f = 0.0f;
    try {
        f = std::stof(v, &pos);
    } catch (const std::exception&) {
        pos = 0;
    }
    if (v.empty() || pos != v.size() || !std::isfinite(f)) throw Error(what + ": \"" + spec + "\": \"" + v + "\" is not a number");
    return f;
}

}  // namespace massact

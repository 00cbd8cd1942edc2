// massact/core/error.hpp - the one exception type of the library.
//
// Errors are thrown while loading and validating (files, configs, options),
// never from inside the numeric kernels. Messages say what is wrong, where
// (file, tensor, field) and what was expected.
#pragma once

#include <stdexcept>
#include <string>

namespace massact {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace massact

// massact/core/version.hpp - the library's version (CMake's project version is read from here).
#pragma once

#define MASSACT_VERSION_MAJOR 0
#define MASSACT_VERSION_MINOR 2
#define MASSACT_VERSION_PATCH 0
#define MASSACT_VERSION_STRING "0.2.0"

namespace massact {

/// The version of the headers this translation unit was compiled with, e.g. "0.2.0".
inline const char* version() { return MASSACT_VERSION_STRING; }

}  // namespace massact

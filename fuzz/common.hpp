// Shared by the fuzz targets: every input must end in success or massact::Error; anything else (another
// exception type, a crash, a sanitizer report) is a finding.
#pragma once

#include <massact/massact.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace fuzz {

template <typename F>
void expect_clean(F&& f) {
    try {
        f();
    } catch (const massact::Error&) {
        // refused with a message: the expected outcome for bad input
    } catch (const std::exception& e) {
        std::fprintf(stderr, "unexpected exception (not massact::Error): %s\n", e.what());
        std::abort();
    }
}

/// Parse bytes as JSON; nullopt-like: a discarded value when they are not JSON (that path is nlohmann's).
inline nlohmann::json json_or_discarded(const std::uint8_t* data, std::size_t size) {
    return nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
}

}  // namespace fuzz

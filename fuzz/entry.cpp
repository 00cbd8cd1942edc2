// A fuzz target's entry point: its body, compiled with the others in fuzz/all_targets.cpp as MASSACT_FUZZ_BODY.
#include <cstddef>
#include <cstdint>

extern "C" int MASSACT_FUZZ_BODY(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { return MASSACT_FUZZ_BODY(data, size); }

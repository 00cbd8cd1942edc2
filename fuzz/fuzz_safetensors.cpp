// Fuzz target: a safetensors file's bytes -> header validation, then every tensor converted.
#include "common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::expect_clean([&] {
        const massact::io::SafetensorsFile f(
            massact::io::MappedFile::from_bytes("fuzz.safetensors", std::vector<unsigned char>(data, data + size)));
        for (const auto& name : f.names()) {
            const auto& t = f.tensor(name);
            if (massact::io::dtype_readable(t.dtype) && t.numel() < (1 << 20)) {
                if (t.dtype == massact::io::DType::I64 || t.dtype == massact::io::DType::I32)
                    (void)t.to_int64();
                else
                    (void)t.to_float();
            }
        }
    });
    return 0;
}

// Fuzz target: preprocessor_config.json bytes -> the image processor, applied to a small fixed image (resizing
// to the sizes the file claims is bounded by the image caps).
#include "common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const nlohmann::json j = fuzz::json_or_discarded(data, size);
    if (j.is_discarded()) return 0;
    fuzz::expect_clean([&] {
        const auto p = massact::analysis::parse_image_processor(j, "fuzz/preprocessor_config.json");
        if (p.resize && (p.shortest_edge > 512 || p.height * p.width > (1 << 18))) return;  // (valid, but slow to run)
        massact::analysis::Image8 im;
        im.width = 13;
        im.height = 9;
        im.name = "fixed";
        for (int i = 0; i < 13 * 9 * 3; ++i) im.rgb.push_back(static_cast<std::uint8_t>(i * 37));
        (void)massact::analysis::preprocess_images({im}, p);
    });
    return 0;
}

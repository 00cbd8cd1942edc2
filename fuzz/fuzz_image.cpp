// Fuzz target: image file bytes (PNG, JPEG, anything stb_image tries) -> the header's size checked against the
// caps, decoded, then resized, cropped and normalised as a CLIP-style preprocessor_config.json says.
#include "common.hpp"

#include "../examples/massact/images.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::expect_clean([&] {
        const auto im = massact_tool::decode_image_bytes(data, size, "fuzz.png");
        // (decoded within the caps; preprocessing large or very elongated images is valid but slow)
        if (im.width * im.height > (1 << 16) || std::max(im.width, im.height) > 64 * std::min(im.width, im.height)) return;
        massact::analysis::ImageProcessor p;
        p.shortest_edge = 24;
        p.bicubic = true;
        p.crop = true;
        p.crop_height = p.crop_width = 16;
        (void)massact::analysis::preprocess_images({im}, p);
    });
    return 0;
}

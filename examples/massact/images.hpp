// Image input for the massact tool: --pixels FILE[:TENSOR] (a float tensor [N, 3, H, W], already
// normalised) or --images DIR|FILE,... (PNG/JPEG decoded by stb_image, preprocessed as the model's
// preprocessor_config.json says: analysis/images.hpp).
#pragma once

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <dirent.h>
#include <string>
#include <sys/stat.h>
#include <vector>

#if defined(MASSACT_HAVE_STB)
#include <stb/stb_image.h>
#endif

namespace massact_tool {

struct PixelInput {
    std::string pixels;  // --pixels FILE[:TENSOR]
    std::string images;  // --images DIR or FILE,FILE,...
    bool given() const { return !pixels.empty() || !images.empty(); }
};

/// PNG/JPEG files named by --images: a directory's *.png, *.jpg, *.jpeg (sorted), or a comma-separated list.
inline std::vector<std::string> image_files(const std::string& arg) {
    std::vector<std::string> files;
    struct stat st {};
    if (::stat(arg.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        DIR* d = ::opendir(arg.c_str());
        if (!d) throw massact::Error("--images: " + arg + ": cannot read the directory");
        while (const dirent* e = ::readdir(d)) {
            std::string n = e->d_name, low = n;
            std::transform(low.begin(), low.end(), low.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
            for (const char* ext : {".png", ".jpg", ".jpeg"})
                if (low.size() > std::string(ext).size() && low.compare(low.size() - std::string(ext).size(), std::string::npos, ext) == 0)
                    files.push_back(arg + "/" + n);
        }
        ::closedir(d);
        std::sort(files.begin(), files.end());
        if (files.empty()) throw massact::Error("--images: " + arg + ": no .png, .jpg or .jpeg files");
        return files;
    }
    std::size_t b = 0;
    while (b <= arg.size()) {
        const std::size_t e = std::min(arg.find(',', b), arg.size());
        if (e > b) files.push_back(arg.substr(b, e - b));
        b = e + 1;
    }
    if (files.empty()) throw massact::Error("--images: no file given");
    return files;
}

/// Decode a PNG or JPEG file's bytes (`name` in messages): the size its header claims is checked against
/// analysis::kMaxImagePixels before stb_image allocates anything.
inline massact::analysis::Image8 decode_image_bytes(const unsigned char* bytes, std::size_t size, const std::string& name) {
#if defined(MASSACT_HAVE_STB)
    if (size > static_cast<std::size_t>(1) << 30 || size == 0)
        throw massact::Error("--images: " + name + ": " + std::to_string(size) + " bytes (expected 1 byte to 1 GiB)");
    const int len = static_cast<int>(size);
    int w = 0, h = 0, n = 0;
    if (!stbi_info_from_memory(bytes, len, &w, &h, &n))
        throw massact::Error("--images: " + name + ": cannot decode (" + std::string(stbi_failure_reason()) + "; PNG or JPEG expected)");
    massact::analysis::check_image_size(h, w, "--images: " + name + ": the header claims");
    unsigned char* px = stbi_load_from_memory(bytes, len, &w, &h, &n, 3);
    if (!px) throw massact::Error("--images: " + name + ": cannot decode (" + std::string(stbi_failure_reason()) + "; PNG or JPEG expected)");
    massact::analysis::Image8 im;
    im.width = w;
    im.height = h;
    im.name = name;
    im.rgb.assign(px, px + static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * 3);
    stbi_image_free(px);
    return im;
#else
    (void)bytes;
    (void)size;
    throw massact::Error("--images: " + name + ": this massact was built without stb_image (apt-get install libstb-dev and rebuild), use --pixels");
#endif
}

inline massact::analysis::Image8 decode_image(const std::string& path) {
    const massact::io::MappedFile f(path);  // (errors name the file)
    return decode_image_bytes(f.data(), f.size(), path);
}

/// The pixel batch of --pixels or --images for a vision model in `model_dir`.
inline massact::PixelBatch load_pixels_input(const PixelInput& in, const std::string& model_dir, const massact::Transformer& m) {
    if (!m.config().is_vision())
        throw massact::Error("--pixels/--images: this " + m.config().model_type + " model reads text; give --ids, --prompt or --data");
    if (!in.given())
        throw massact::Error("this " + m.config().model_type + " model reads images: give --pixels FILE[:TENSOR] or --images DIR|FILES");
    if (!in.pixels.empty() && !in.images.empty()) throw massact::Error("give only one of --pixels and --images");
    if (!in.pixels.empty()) {
        const std::size_t colon = in.pixels.rfind(':');
        const bool named = colon != std::string::npos && colon + 1 < in.pixels.size() && in.pixels.find('/', colon) == std::string::npos;
        return massact::analysis::load_pixels(named ? in.pixels.substr(0, colon) : in.pixels,
                                              named ? in.pixels.substr(colon + 1) : "pixel_values");
    }
    std::vector<massact::analysis::Image8> images;
    for (const auto& f : image_files(in.images)) images.push_back(decode_image(f));
    return massact::analysis::preprocess_images(images, massact::analysis::load_image_processor(model_dir, m.config().vision.image_size));
}

inline void add_pixel_options(CLI::App* cmd, PixelInput& in) {
    cmd->add_option("--pixels", in.pixels, "Vision models: FILE[:TENSOR], float pixels [N, 3, H, W] (default tensor pixel_values)");
    cmd->add_option("--images", in.images,
                    "Vision models: a directory of PNG/JPEG files or FILE,FILE,..., preprocessed as preprocessor_config.json says");
}

}  // namespace massact_tool

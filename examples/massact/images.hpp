// Image input for the massact tool: --pixels FILE[:TENSOR] (a float tensor [N, 3, H, W], already
// normalised) or --images DIR|FILE,... (PNG decoded by stb_image, JPEG by libjpeg-turbo's TurboJPEG API,
// preprocessed as the model's preprocessor_config.json says: analysis/images.hpp). Only these two formats are
// tried (by their signatures): stb_image's other decoders are never reached by untrusted bytes, and its JPEG
// decoder (Debian's libstb 2.27) crashes on inputs the fuzzer finds (fuzz/findings/stb_jpeg_segv.jpg).
#pragma once

#include <massact/massact.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <dirent.h>
#include <initializer_list>
#include <string>
#include <sys/stat.h>
#include <vector>

#if defined(MASSACT_HAVE_STB)
#include <stb/stb_image.h>
#endif
#if defined(MASSACT_HAVE_TURBOJPEG)
#include <turbojpeg.h>
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

namespace detail {

inline bool starts_with_bytes(const unsigned char* bytes, std::size_t size, std::initializer_list<unsigned char> sig) {
    return size >= sig.size() && std::equal(sig.begin(), sig.end(), bytes);
}

inline massact::analysis::Image8 decode_png(const unsigned char* bytes, std::size_t size, const std::string& name) {
#if defined(MASSACT_HAVE_STB)
    const int len = static_cast<int>(size);
    int w = 0, h = 0, n = 0;
    if (!stbi_info_from_memory(bytes, len, &w, &h, &n))
        throw massact::Error("--images: " + name + ": not a valid PNG (" + std::string(stbi_failure_reason()) + ")");
    massact::analysis::check_image_size(h, w, "--images: " + name + ": the PNG header claims");
    unsigned char* px = stbi_load_from_memory(bytes, len, &w, &h, &n, 3);
    if (!px) throw massact::Error("--images: " + name + ": not a valid PNG (" + std::string(stbi_failure_reason()) + ")");
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

inline massact::analysis::Image8 decode_jpeg(const unsigned char* bytes, std::size_t size, const std::string& name) {
#if defined(MASSACT_HAVE_TURBOJPEG)
    struct Handle {
        tjhandle h = tjInitDecompress();
        ~Handle() {
            if (h) tjDestroy(h);
        }
    } tj;
    if (!tj.h) throw massact::Error("--images: " + name + ": cannot start the JPEG decoder");
    const auto failed = [&](const char* what) {
        return massact::Error("--images: " + name + ": not a valid JPEG (" + what + ": " + tjGetErrorStr2(tj.h) + ")");
    };
    int w = 0, h = 0, subsampling = 0, colorspace = 0;
    if (tjDecompressHeader3(tj.h, bytes, static_cast<unsigned long>(size), &w, &h, &subsampling, &colorspace) != 0)
        throw failed("header");
    massact::analysis::check_image_size(h, w, "--images: " + name + ": the JPEG header claims");
    massact::analysis::Image8 im;
    im.width = w;
    im.height = h;
    im.name = name;
    im.rgb.resize(static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * 3);
    // (TJFLAG_LIMITSCANS: a progressive file with more than 500 scans is refused, not decoded for minutes;
    // TJFLAG_STOPONWARNING: a corrupt file is an error, not a partly grey image.)
    if (tjDecompress2(tj.h, bytes, static_cast<unsigned long>(size), im.rgb.data(), w, 0, h, TJPF_RGB,
                      TJFLAG_LIMITSCANS | TJFLAG_STOPONWARNING) != 0)
        throw failed("data");
    return im;
#else
    (void)bytes;
    (void)size;
    throw massact::Error("--images: " + name +
                         ": this massact was built without libjpeg-turbo (apt-get install libturbojpeg0-dev and rebuild): use PNG or --pixels");
#endif
}

}  // namespace detail

/// Decode a PNG or JPEG file's bytes (`name` in messages), told apart by their signatures; the size the header
/// claims is checked against analysis::kMaxImagePixels before the decoder allocates anything.
inline massact::analysis::Image8 decode_image_bytes(const unsigned char* bytes, std::size_t size, const std::string& name) {
    if (size > static_cast<std::size_t>(1) << 30 || size == 0)
        throw massact::Error("--images: " + name + ": " + std::to_string(size) + " bytes (expected 1 byte to 1 GiB)");
    if (detail::starts_with_bytes(bytes, size, {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'})) return detail::decode_png(bytes, size, name);
    if (detail::starts_with_bytes(bytes, size, {0xff, 0xd8, 0xff})) return detail::decode_jpeg(bytes, size, name);
    throw massact::Error("--images: " + name + ": neither PNG nor JPEG (the first bytes are no PNG or JPEG signature)");
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

// massact/analysis/images.hpp - inputs of vision models: pixel tensors from safetensors, and decoded
// images preprocessed as the model's preprocessor_config.json says (Hugging Face image processors).
//
// Preprocessing, in transformers' order (ViTImageProcessor, CLIPImageProcessor, BitImageProcessor):
//   1. resize (do_resize): size {"height", "width"} exactly, or {"shortest_edge": s}: the short side
//      becomes s, the long one int(s * long / short); PIL's resampling on the 8-bit image (`resample`:
//      2 = bilinear, 3 = bicubic), rounded to 8 bits after each pass (kernels/resample.hpp);
//   2. center crop (do_center_crop) to crop_size: top = (h - ch) / 2, left = (w - cw) / 2 (integer division);
//   3. rescale (do_rescale): x * rescale_factor (1/255);
//   4. normalise (do_normalize): (x - image_mean[c]) / image_std[c];
// giving [N, 3, H, W] float32. Decoding PNG/JPEG is the caller's (the tool uses stb_image).
#pragma once

#include "massact/core/error.hpp"
#include "massact/io/checkpoint.hpp"
#include "massact/io/json_file.hpp"
#include "massact/io/safetensors.hpp"
#include "massact/kernels/resample.hpp"
#include "massact/model/transformer.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace massact::analysis {

/// The largest image massact decodes or makes by resizing: 2^26 pixels (8192 x 8192; 768 MB as float32 RGB), at
/// most 2^15 on a side. Image files and preprocessor configs are untrusted: a small file may claim any size.
constexpr Index kMaxImagePixels = Index(1) << 26, kMaxImageSide = Index(1) << 15;

/// Refuse an image size above the caps: "WHAT: H x W pixels ...".
inline void check_image_size(Index height, Index width, const std::string& what) {
    if (height < 1 || width < 1 || height > kMaxImageSide || width > kMaxImageSide || height * width > kMaxImagePixels)
        throw Error(what + ": " + std::to_string(height) + " x " + std::to_string(width) + " pixels (at most " +
                    std::to_string(kMaxImageSide) + " on a side and " + std::to_string(kMaxImagePixels) + " in all)");
}

/// A decoded 8-bit RGB image, rows of width * 3 bytes.
struct Image8 {
    Index width = 0, height = 0;
    std::vector<std::uint8_t> rgb;
    std::string name;  // for messages
};

/// preprocessor_config.json's fields that decide the pixels.
struct ImageProcessor {
    bool resize = true;
    Index height = 224, width = 224;  // exact size, when shortest_edge is 0
    Index shortest_edge = 0;
    bool bicubic = false;  // PIL resample 3 (else 2, bilinear)
    bool crop = false;
    Index crop_height = 224, crop_width = 224;
    bool rescale = true;
    double rescale_factor = 1.0 / 255.0;
    bool normalize = true;
    std::vector<double> mean = {0.5, 0.5, 0.5}, std = {0.5, 0.5, 0.5};
};

/// Read preprocessor_config.json (`file` names it in messages).
inline ImageProcessor parse_image_processor(const nlohmann::json& j, const std::string& file) {
    ImageProcessor p;
    const io::JsonFields r(j, file);
    auto fail = [&](const std::string& field, const std::string& msg) { r.fail(field, msg); };
    auto flag = [&](const char* k, bool dflt) { return r.get_bool(k, dflt); };
    auto size_of = [&](const nlohmann::json& o, const char* k) -> Index {
        if (!o.contains(k) || !o[k].is_number_integer() || o[k].get<long long>() <= 0 || o[k].get<long long>() > (1 << 16))
            fail(k, "expected a positive integer size, found " + (o.contains(k) ? io::json_brief(o[k]) : std::string("nothing")));
        return o[k].get<Index>();
    };
    auto triple = [&](const char* k, std::vector<double>& out) {
        if (!j.contains(k) || j[k].is_null()) return;
        const auto& v = j[k];
        if (v.is_number()) {
            out.assign(3, v.get<double>());
            return;
        }
        if (!v.is_array() || v.size() != 3) fail(k, "expected 3 numbers, found " + io::json_brief(v));
        out.clear();
        for (const auto& x : v) {
            if (!x.is_number()) fail(k, "expected 3 numbers, found " + io::json_brief(v));
            out.push_back(x.get<double>());
        }
    };
    if (!j.is_object()) throw Error(file + ": expected a JSON object");
    p.resize = flag("do_resize", true);
    if (j.contains("size")) {
        const auto& s = j["size"];
        if (s.is_number_integer()) {
            p.height = p.width = size_of(j, "size");
        } else if (s.is_object() && s.contains("shortest_edge")) {
            p.shortest_edge = size_of(s, "shortest_edge");
        } else if (s.is_object()) {
            p.height = size_of(s, "height");
            p.width = size_of(s, "width");
        } else {
            fail("size", "expected {\"height\", \"width\"} or {\"shortest_edge\"}, found " + io::json_brief(s));
        }
    }
    if (j.contains("resample") && !j["resample"].is_null()) {
        if (!j["resample"].is_number_integer() || (j["resample"] != 2 && j["resample"] != 3))
            fail("resample", "expected 2 (bilinear) or 3 (bicubic), found " + io::json_brief(j["resample"]));
        p.bicubic = j["resample"] == 3;
    }
    p.crop = flag("do_center_crop", false);
    if (p.crop && j.contains("crop_size")) {
        const auto& c = j["crop_size"];
        if (c.is_number_integer()) {
            p.crop_height = p.crop_width = size_of(j, "crop_size");
        } else if (c.is_object()) {
            p.crop_height = size_of(c, "height");
            p.crop_width = size_of(c, "width");
        } else {
            fail("crop_size", "expected {\"height\", \"width\"}, found " + io::json_brief(c));
        }
    }
    p.rescale = flag("do_rescale", true);
    p.rescale_factor = r.get_num("rescale_factor", p.rescale_factor);
    p.normalize = flag("do_normalize", true);
    triple("image_mean", p.mean);
    triple("image_std", p.std);
    for (double s : p.std)
        if (!(s != 0)) fail("image_std", "a standard deviation of 0");
    return p;
}

/// The model directory's preprocessor_config.json, or for a square input of the config's image size
/// without one: resize to image_size, bilinear, mean and std 0.5 (ViTImageProcessor's defaults).
inline ImageProcessor load_image_processor(const std::string& model_dir, Index image_size) {
    const std::string file = model_dir + "/preprocessor_config.json";
    if (io::file_exists(file)) return parse_image_processor(io::read_json_file(file), file);
    ImageProcessor p;
    p.height = p.width = image_size;
    return p;
}

/// Images -> [N, 3, H, W] as the processor says; every image must come out the same size.
inline PixelBatch preprocess_images(const std::vector<Image8>& images, const ImageProcessor& p) {
    PixelBatch out;
    if (images.empty()) throw Error("images: none given");
    for (const Image8& im : images) {
        if (im.width <= 0 || im.height <= 0 || static_cast<Index>(im.rgb.size()) != im.width * im.height * 3)
            throw Error("image " + im.name + ": empty or not 8-bit RGB");
        std::vector<float> chw(static_cast<std::size_t>(3 * im.height * im.width));
        for (Index y = 0; y < im.height; ++y)
            for (Index x = 0; x < im.width; ++x)
                for (Index c = 0; c < 3; ++c)
                    chw[static_cast<std::size_t>((c * im.height + y) * im.width + x)] = im.rgb[static_cast<std::size_t>((y * im.width + x) * 3 + c)];
        Index h = im.height, w = im.width;
        if (p.resize) {
            Index nh = p.height, nw = p.width;
            if (p.shortest_edge > 0) {
                const Index s = p.shortest_edge, shorter = std::min(h, w), longer = std::max(h, w);
                const auto l = static_cast<Index>(static_cast<double>(s) * static_cast<double>(longer) / static_cast<double>(shorter));
                nh = h <= w ? s : l;
                nw = h <= w ? l : s;
            }
            check_image_size(nh, nw, "image " + im.name + ": resizing (preprocessor_config.json \"size\") gives");
            chw = kernels::resize_pil(chw.data(), 3, h, w, nh, nw, p.bicubic);
            h = nh;
            w = nw;
        }
        if (p.crop) {
            if (p.crop_height > h || p.crop_width > w)
                throw Error("image " + im.name + ": " + std::to_string(h) + "x" + std::to_string(w) + " after resizing, smaller than the " +
                            std::to_string(p.crop_height) + "x" + std::to_string(p.crop_width) + " crop");
            const Index top = (h - p.crop_height) / 2, left = (w - p.crop_width) / 2;
            std::vector<float> c(static_cast<std::size_t>(3 * p.crop_height * p.crop_width));
            for (Index ch = 0; ch < 3; ++ch)
                for (Index y = 0; y < p.crop_height; ++y)
                    for (Index x = 0; x < p.crop_width; ++x)
                        c[static_cast<std::size_t>((ch * p.crop_height + y) * p.crop_width + x)] =
                            chw[static_cast<std::size_t>((ch * h + top + y) * w + left + x)];
            chw = std::move(c);
            h = p.crop_height;
            w = p.crop_width;
        }
        for (Index ch = 0; ch < 3; ++ch)
            for (Index i = 0; i < h * w; ++i) {
                float& v = chw[static_cast<std::size_t>(ch * h * w + i)];
                if (p.rescale) v = static_cast<float>(v * p.rescale_factor);
                if (p.normalize) v = static_cast<float>((v - p.mean[static_cast<std::size_t>(ch)]) / p.std[static_cast<std::size_t>(ch)]);
            }
        if (out.n == 0) {
            out.channels = 3;
            out.height = h;
            out.width = w;
        } else if (h != out.height || w != out.width) {
            throw Error("image " + im.name + ": " + std::to_string(h) + "x" + std::to_string(w) + " after preprocessing, but the first image is " +
                        std::to_string(out.height) + "x" + std::to_string(out.width) + " (images of a batch must match; set a crop size)");
        }
        out.data.insert(out.data.end(), chw.begin(), chw.end());
        ++out.n;
    }
    return out;
}

/// A float tensor [N, C, H, W] (or [C, H, W]: one image) from a safetensors file; F32, F16 or BF16.
inline PixelBatch load_pixels(const std::string& file, const std::string& tensor = "pixel_values") {
    const io::SafetensorsFile f(file);
    if (!f.has(tensor)) throw Error(file + ": no tensor \"" + tensor + "\" (give FILE:TENSOR)");
    const auto& t = f.tensor(tensor);
    if (t.dtype != io::DType::F32 && t.dtype != io::DType::F16 && t.dtype != io::DType::BF16)
        throw Error(t.where() + ": dtype " + io::dtype_name(t.dtype) + ", expected F32, F16 or BF16 pixels");
    if (t.shape.size() != 3 && t.shape.size() != 4)
        throw Error(t.where() + ": shape " + io::shape_string(t.shape) + ", expected [N, C, H, W] or [C, H, W]");
    PixelBatch p;
    const std::size_t o = t.shape.size() == 4 ? 1 : 0;
    p.n = o ? t.shape[0] : 1;
    p.channels = t.shape[o];
    p.height = t.shape[o + 1];
    p.width = t.shape[o + 2];
    p.data = t.to_float();
    for (std::size_t i = 0; i < p.data.size(); ++i)
        if (!std::isfinite(p.data[i])) throw Error(t.where() + ": value " + std::to_string(i) + " is not finite");
    return p;
}

}  // namespace massact::analysis

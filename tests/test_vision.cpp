// Vision models through the tool: --pixels dumps, --images preprocessing against a hand computation of
// PIL's resampling, the crop and the normalisation, and the error messages.
#include "common.hpp"

#include <stb/stb_image_write.h>

#include <fstream>
#include <sstream>

using namespace massact;

namespace {

int tool(const std::string& args, std::string* out = nullptr) {
    const std::string dir = test::temp_dir("vision-tool");
    const int rc = std::system((std::string(MASSACT_TOOL) + " " + args + " > " + dir + "/out.txt 2>&1").c_str());
    std::ifstream f(dir + "/out.txt");
    std::stringstream ss;
    ss << f.rdbuf();
    if (out) *out = ss.str();
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// ---- the reference, written from PIL's description (Image.resize on an 8-bit RGB image) --------------------
double filter(double x, bool bicubic) {
    x = std::fabs(x);
    if (!bicubic) return x < 1 ? 1 - x : 0;
    const double a = -0.5;  // PIL's bicubic
    if (x < 1) return (a + 2) * x * x * x - (a + 3) * x * x + 1;
    if (x < 2) return a * x * x * x - 5 * a * x * x + 8 * a * x - 4 * a;
    return 0;
}

/// One axis: weights normalised (support widened when shrinking), then PIL's 8-bit arithmetic: each weight
/// in 22-bit fixed point, the sum started at 2^21, shifted back and clamped to 0..255.
std::vector<double> resample_line(const std::vector<double>& in, int out_n, bool bicubic) {
    const int n = static_cast<int>(in.size());
    const double scale = double(n) / out_n, widen = std::max(1.0, scale), support = (bicubic ? 2 : 1) * widen;
    std::vector<double> out(static_cast<std::size_t>(out_n));
    for (int o = 0; o < out_n; ++o) {
        const double center = (o + 0.5) * scale;
        const int lo = std::max(0, int(center - support + 0.5)), hi = std::min(n, int(center + support + 0.5));
        double sum = 0;
        for (int i = lo; i < hi; ++i) sum += filter((i + 0.5 - center) / widen, bicubic);
        long long acc = 1LL << 21;
        for (int i = lo; i < hi; ++i) {
            const double w = filter((i + 0.5 - center) / widen, bicubic) / sum;
            acc += static_cast<long long>(in[static_cast<std::size_t>(i)]) * static_cast<int>(w * (1 << 22) + (w < 0 ? -0.5 : 0.5));
        }
        out[static_cast<std::size_t>(o)] = acc < 0 ? 0.0 : std::min(255.0, static_cast<double>(acc >> 22));
    }
    return out;
}

/// [3][h][w] planes resized to nh x nw: rows first, then columns (PIL's order).
std::vector<std::vector<std::vector<double>>> resize(const std::vector<std::vector<std::vector<double>>>& img, int nh, int nw, bool bicubic) {
    std::vector<std::vector<std::vector<double>>> out(3);
    for (int c = 0; c < 3; ++c) {
        std::vector<std::vector<double>> rows;
        for (const auto& row : img[static_cast<std::size_t>(c)]) rows.push_back(resample_line(row, nw, bicubic));
        out[static_cast<std::size_t>(c)].assign(static_cast<std::size_t>(nh), std::vector<double>(static_cast<std::size_t>(nw)));
        for (int x = 0; x < nw; ++x) {
            std::vector<double> col;
            for (const auto& r : rows) col.push_back(r[static_cast<std::size_t>(x)]);
            const auto rc = resample_line(col, nh, bicubic);
            for (int y = 0; y < nh; ++y) out[static_cast<std::size_t>(c)][static_cast<std::size_t>(y)][static_cast<std::size_t>(x)] = rc[static_cast<std::size_t>(y)];
        }
    }
    return out;
}

struct Processor {
    nlohmann::json json;
    int nh, nw;             // size after resizing
    int ch, cw;             // after cropping (= nh, nw without a crop)
    bool bicubic;
    double mean[3], std[3];
};

}  // namespace

TEST_CASE("massact run --pixels on each vision family dumps what the library computes, near the reference") {
    for (const char* name : {"vit", "dinov2", "dinov2_reg", "clip_vision", "siglip_vision", "dinov3"}) {
        CAPTURE(name);
        const std::string dir = test::data(std::string("families/") + name), out = test::temp_dir("vision") + "/d.safetensors";
        std::string msg;
        REQUIRE(tool("run " + dir + " --pixels " + dir + "/ref.safetensors:pixel_values --dump " + out +
                         " --hooks '*hook_resid_post,*hook_pattern,ln_final.hook_normalized'",
                     &msg) == 0);
        const io::SafetensorsFile d(out), ref(dir + "/ref.safetensors");
        CHECK(d.tensor("pixel_values").to_float() == ref.tensor("pixel_values").to_float());
        const Transformer m(dir);
        const int L = m.config().num_layers;
        const auto got = d.tensor("blocks." + std::to_string(L - 1) + ".hook_resid_post");
        const auto want = ref.tensor("hidden_states." + std::to_string(L)).to_float();
        const auto g = got.to_float();
        REQUIRE(g.size() == want.size());
        double diff = 0, mag = 0;
        for (std::size_t i = 0; i < g.size(); ++i) {
            diff = std::max(diff, std::fabs(double(g[i]) - want[i]));
            mag = std::max(mag, std::fabs(double(want[i])));
        }
        CHECK(diff < 2e-4 * mag);
        CHECK(got.shape == std::vector<std::int64_t>{2, m.config().vision.tokens(32, 32), 64});  // (SigLIP: no CLS, 16 patches)
        CHECK(d.tensor("blocks.0.attn.hook_pattern").shape == std::vector<std::int64_t>{2, 4, got.shape[1], got.shape[1]});
    }
}

TEST_CASE("massact run --images: a PNG resized, cropped and normalised as preprocessor_config.json says") {
    // A 29 x 37 RGB image with random bytes, saved as PNG.
    const int W = 37, H = 29;
    std::mt19937 g(7);
    std::vector<unsigned char> rgb(static_cast<std::size_t>(W * H * 3));
    for (auto& b : rgb) b = static_cast<unsigned char>(g() & 255);
    const std::string tmp = test::temp_dir("images"), png = tmp + "/a.png";
    REQUIRE(stbi_write_png(png.c_str(), W, H, 3, rgb.data(), W * 3) != 0);
    std::vector<std::vector<std::vector<double>>> img(3, std::vector<std::vector<double>>(H, std::vector<double>(W)));
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x)
            for (int c = 0; c < 3; ++c) img[static_cast<std::size_t>(c)][static_cast<std::size_t>(y)][static_cast<std::size_t>(x)] = rgb[static_cast<std::size_t>((y * W + x) * 3 + c)];

    const std::vector<std::pair<std::string, Processor>> cases = {
        // ViTImageProcessor: exact size, bilinear, mean/std 0.5
        {"vit", {{{"do_resize", true}, {"size", {{"height", 32}, {"width", 32}}}, {"resample", 2}, {"do_rescale", true},
                  {"rescale_factor", 1.0 / 255}, {"do_normalize", true}, {"image_mean", {0.5, 0.5, 0.5}}, {"image_std", {0.5, 0.5, 0.5}}},
                 32, 32, 32, 32, false, {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}}},
        // CLIPImageProcessor: shortest edge 40 (so 29 x 37 -> 40 x 51), bicubic, center crop 32, CLIP's mean/std
        {"clip_vision", {{{"do_resize", true}, {"size", {{"shortest_edge", 40}}}, {"resample", 3}, {"do_center_crop", true},
                          {"crop_size", {{"height", 32}, {"width", 32}}}, {"do_rescale", true}, {"rescale_factor", 1.0 / 255},
                          {"do_normalize", true}, {"image_mean", {0.48145466, 0.4578275, 0.40821073}},
                          {"image_std", {0.26862954, 0.26130258, 0.27577711}}},
                         40, 51, 32, 32, true, {0.48145466, 0.4578275, 0.40821073}, {0.26862954, 0.26130258, 0.27577711}}},
    };
    for (const auto& entry : cases) {  // (no structured binding: clang's C++17 cannot capture one in CAPTURE)
        const std::string& family = entry.first;
        const Processor& p = entry.second;
        CAPTURE(family);
        // the fixture's checkpoint with this preprocessor_config.json beside it
        const std::string model = test::temp_dir("images-" + family);
        for (const char* f : {"config.json", "model.safetensors"})
            std::filesystem::copy_file(test::data("families/" + family + "/" + f), model + "/" + f,
                                       std::filesystem::copy_options::overwrite_existing);
        std::ofstream(model + "/preprocessor_config.json") << p.json.dump(1);
        const std::string out = tmp + "/" + family + ".safetensors";
        std::string msg;
        REQUIRE(tool("run " + model + " --images " + png + " --dump " + out + " --hooks ln_final.hook_normalized", &msg) == 0);
        const io::SafetensorsFile dumped(out);  // (views point into the mapped file: keep it open)
        const auto& px = dumped.tensor("pixel_values");
        REQUIRE(px.shape == std::vector<std::int64_t>{1, 3, p.ch, p.cw});
        const auto got = px.to_float();
        const auto resized = resize(img, p.nh, p.nw, p.bicubic);
        const int top = (p.nh - p.ch) / 2, left = (p.nw - p.cw) / 2;
        double worst = 0;
        for (int c = 0; c < 3; ++c)
            for (int y = 0; y < p.ch; ++y)
                for (int x = 0; x < p.cw; ++x) {
                    const double v = resized[static_cast<std::size_t>(c)][static_cast<std::size_t>(top + y)][static_cast<std::size_t>(left + x)];
                    const double want = (v / 255.0 - p.mean[c]) / p.std[c];
                    worst = std::max(worst, std::fabs(want - got[static_cast<std::size_t>((c * p.ch + y) * p.cw + x)]));
                }
        CHECK(worst < 1e-5);
        // the same pixels through --pixels give the same features
        const std::string out2 = tmp + "/" + family + "-px.safetensors";
        REQUIRE(tool("run " + model + " --pixels " + out + ":pixel_values --dump " + out2 + " --hooks ln_final.hook_normalized") == 0);
        CHECK(io::SafetensorsFile(out2).tensor("ln_final.hook_normalized").to_float() ==
              io::SafetensorsFile(out).tensor("ln_final.hook_normalized").to_float());
    }
}

TEST_CASE("massact run --images: a JPEG (TurboJPEG) gives the pixels of its PNG within JPEG's loss; broken JPEGs are refused") {
    // A smooth 40 x 40 image (JPEG at quality 100 keeps it within a few grey levels), as PNG and as JPEG.
    const int W = 40, H = 40;
    std::vector<unsigned char> rgb(static_cast<std::size_t>(W * H * 3));
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x)
            for (int c = 0; c < 3; ++c)
                rgb[static_cast<std::size_t>((y * W + x) * 3 + c)] = static_cast<unsigned char>(40 + 4 * x + c * 20 + 2 * y);
    const std::string tmp = test::temp_dir("images-jpeg"), png = tmp + "/a.png", jpg = tmp + "/a.jpg";
    REQUIRE(stbi_write_png(png.c_str(), W, H, 3, rgb.data(), W * 3) != 0);
    REQUIRE(stbi_write_jpg(jpg.c_str(), W, H, 3, rgb.data(), 100) != 0);
    const std::string vit = test::data("families/vit");
    std::string msg;
    REQUIRE(tool("run " + vit + " --images " + png + " --dump " + tmp + "/png.safetensors --hooks ln_final.hook_normalized", &msg) == 0);
    REQUIRE(tool("run " + vit + " --images " + jpg + " --dump " + tmp + "/jpg.safetensors --hooks ln_final.hook_normalized", &msg) == 0);
    const auto a = io::SafetensorsFile(tmp + "/png.safetensors").tensor("pixel_values").to_float();
    const auto b = io::SafetensorsFile(tmp + "/jpg.safetensors").tensor("pixel_values").to_float();
    REQUIRE(a.size() == b.size());
    double worst = 0, mean = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        worst = std::max(worst, std::fabs(double(a[i]) - b[i]));
        mean += std::fabs(double(a[i]) - b[i]) / static_cast<double>(a.size());
    }
    CHECK(worst < 8.0 / 127.5);  // (pixels normalised as (v / 255 - 0.5) / 0.5: 8 grey levels)
    CHECK(mean < 2.0 / 127.5);
    CHECK(worst > 0);  // (it went through the lossy decoder, not the PNG one)

    // Truncated, corrupt, and the file that crashes Debian's stb_image JPEG decoder: errors naming the file.
    std::ifstream in(jpg, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(tmp + "/cut.jpg", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    std::string corrupt = bytes;
    for (std::size_t i = bytes.size() / 3; i < bytes.size() / 3 + 64; ++i) corrupt[i] = static_cast<char>(0xff);
    std::ofstream(tmp + "/corrupt.jpg", std::ios::binary) << corrupt;
    for (const std::string& f : {tmp + "/cut.jpg", tmp + "/corrupt.jpg", std::string(MASSACT_SOURCE_DIR) + "/fuzz/findings/stb_jpeg_segv.jpg"}) {
        CAPTURE(f);
        CHECK(tool("run " + vit + " --images " + f + " --dump " + tmp + "/x.safetensors", &msg) == 1);
        CHECK(msg.find(f + ": not a valid JPEG") != std::string::npos);
        CHECK(!std::filesystem::exists(tmp + "/x.safetensors"));
    }
}

TEST_CASE("vision input errors name the file and what was expected") {
    const std::string vit = test::data("families/vit"), tmp = test::temp_dir("vision-errors");
    std::string msg;
    CHECK(tool("run " + vit + " --ids 1,2 --dump " + tmp + "/x.safetensors", &msg) == 1);
    CHECK(msg.find("reads images") != std::string::npos);
    std::ofstream(tmp + "/bad.png") << "not a png";
    CHECK(tool("run " + vit + " --images " + tmp + "/bad.png --dump " + tmp + "/x.safetensors", &msg) == 1);
    CHECK(msg.find("bad.png: neither PNG nor JPEG") != std::string::npos);
    CHECK(tool("run " + vit + " --pixels " + vit + "/ref.safetensors:nope --dump " + tmp + "/x.safetensors", &msg) == 1);
    CHECK(msg.find("no tensor \"nope\"") != std::string::npos);
    CHECK(tool("run " + vit + " --pixels " + vit + "/ref.safetensors:attentions.0 --dump " + tmp + "/x.safetensors", &msg) == 1);
    CHECK(msg.find("channels") != std::string::npos);  // [2, 4, 17, 17] read as 4-channel images
    CHECK(tool("run " + test::model("tiny-llama") + " --pixels " + vit + "/ref.safetensors --dump " + tmp + "/x.safetensors", &msg) == 1);
    CHECK(msg.find("reads text") != std::string::npos);
    CHECK(!std::filesystem::exists(tmp + "/x.safetensors"));
}

namespace {
PixelBatch fixture_pixels(const std::string& name) {
    return analysis::load_pixels(test::data("families/" + name + "/ref.safetensors"));
}
}  // namespace

TEST_CASE("scan over images: CLS, register and patch carriers; attention on the registers; no perplexity") {
    const Transformer m(test::data("families/dinov2_reg"));
    const PixelBatch px = fixture_pixels("dinov2_reg");
    const Index T = 21, d = 64, H = 4;
    analysis::ScanOptions opt;
    opt.batch = 1;  // two forwards: the accumulation across batches is part of the test
    // plant a massive activation: dim 5 of register 2 (position 3) at every block output, 400 (|x| ~ 1 elsewhere)
    opt.hooks.add("*hook_resid_post", [&](Activation& a) {
        for (Index b = 0; b < a.shape[0]; ++b) a.data[(b * T + 3) * d + 5] = 400.0f;
    });
    std::vector<double> on_regs(static_cast<std::size_t>(3 * H), 0.0);  // the naive mean, from the patterns
    opt.hooks.add("*attn.hook_pattern", [&](Activation& a) {
        for (Index b = 0; b < a.shape[0]; ++b)
            for (Index h = 0; h < H; ++h)
                for (Index q = 0; q < T; ++q)
                    for (Index k = 1; k <= 4; ++k)
                        on_regs[static_cast<std::size_t>(a.layer * H + h)] += a.data[((b * H + h) * T + q) * T + k] / double(T) / 2.0;
    });
    const auto r = analysis::scan_pixels(m, px, opt);
    CHECK(r.sequences == 2);
    CHECK(r.seq_len == T);
    REQUIRE(r.massive.size() == 1);
    CHECK(r.massive[0].dim == 5);
    CHECK(r.massive[0].first_layer == 0);
    CHECK(r.massive[0].positions == std::vector<std::string>{"register:2"});
    CHECK(r.massive[0].mean == doctest::Approx(400.0));
    REQUIRE(r.attention_on_registers.size() == 3);
    for (int l = 0; l < 3; ++l)
        for (Index h = 0; h < H; ++h)
            CHECK(r.attention_on_registers[static_cast<std::size_t>(l)][static_cast<std::size_t>(h)] ==
                  doctest::Approx(on_regs[static_cast<std::size_t>(l * H + h)]).epsilon(1e-9));
    const auto j = r.to_json();
    CHECK(!j.contains("val_ppl"));
    CHECK(j["first_token"] == "cls");
    CHECK(j["massive_activations"][0]["carriers"][0]["position"] == "register:2");
    // the tool's JSON holds the same statistics (without the planted value: nothing massive there)
    const std::string out = test::temp_dir("vision-scan") + "/s.json";
    REQUIRE(tool("scan " + test::data("families/dinov2_reg") + " --pixels " + test::data("families/dinov2_reg/ref.safetensors") +
                 " --json " + out) == 0);
    std::ifstream f(out);
    const auto tj = nlohmann::json::parse(f);
    CHECK(tj["val_sequences"] == 2);
    CHECK(tj["attention_on_registers_per_layer_head"].size() == 3);
    CHECK(tj["massive_activations"].empty());
}

TEST_CASE("Fix-Reg-Mean: registers set to their mean or to zero, measured on the pooled and CLS features") {
    const Transformer m(test::data("families/dinov2_reg"));
    const PixelBatch px = fixture_pixels("dinov2_reg");
    analysis::VisionAblation va;
    va.tokens = analysis::vision_token_positions(m.config(), "registers", 21);
    CHECK(va.tokens == std::vector<Index>{1, 2, 3, 4});
    const auto rows = analysis::vision_ablation(m, px, va, {"zero", "mean"});
    REQUIRE(rows.size() == 3);
    CHECK(rows[0].mode == "none");
    // the zero row, recomputed by hand: every block output's register rows zeroed, pooled = CLS of ln_final
    Workspace w0, w1;
    m.run_pixels(px, w0);
    Hooks zero;
    zero.add("*hook_resid_post", [](Activation& a) {
        for (Index b = 0; b < 2; ++b)
            for (Index t = 1; t <= 4; ++t)
                for (Index j = 0; j < 64; ++j) a.data[(b * 21 + t) * 64 + j] = 0.0f;
    });
    m.run_pixels(px, w1, zero);
    double cos = 0;
    for (Index b = 0; b < 2; ++b) {
        const Eigen::VectorXd a = w0.pooled.row(b).cast<double>(), c = w1.pooled.row(b).cast<double>();
        cos += a.dot(c) / (a.norm() * c.norm()) / 2;
    }
    CHECK(rows[1].mode == "zero");
    CHECK(rows[1].pooled_cosine == doctest::Approx(cos).epsilon(1e-9));
    CHECK(rows[1].pooled_cosine < 0.999);  // zeroing the registers changes the features
    CHECK(rows[2].pooled_cosine > rows[1].pooled_cosine);  // their mean changes them less
    // one image: its mean is itself, so the mean ablation changes nothing
    PixelBatch one = px;
    one.n = 1;
    one.data.resize(one.data.size() / 2);
    const auto single = analysis::vision_ablation(m, one, va, {"mean"});
    CHECK(single[1].pooled_cosine == doctest::Approx(1.0).epsilon(1e-6));
    test::expect_error([&] { analysis::vision_token_positions(Transformer(test::data("families/vit")).config(), "registers", 17); },
                       {"no register tokens"});
    test::expect_error([&] { analysis::vision_token_positions(m.config(), "register=4", 21); }, {"register=4", "0 <= K < 4"});
    std::string msg;
    CHECK(tool("ablate " + test::data("families/dinov2_reg") + " --pixels " + test::data("families/dinov2_reg/ref.safetensors"), &msg) == 0);
    CHECK(msg.find("mean ") != std::string::npos);
}

TEST_CASE("SigLIP (no CLS, attention-pooling head): carriers are patches, the first token is patch 0, CLS is refused") {
    const std::string dir = test::data("families/siglip_vision"), px = " --pixels " + dir + "/ref.safetensors";
    const Transformer m(dir);
    const PixelBatch pixels = analysis::load_pixels(dir + "/ref.safetensors");
    analysis::ScanOptions opt;
    opt.hooks.add("*hook_resid_post", [&](Activation& a) {  // plant 400 in dim 7 of the first token (a patch)
        for (Index b = 0; b < a.shape[0]; ++b) a.data[(b * 16) * 64 + 7] = 400.0f;
    });
    const auto r = analysis::scan_pixels(m, pixels, opt);
    REQUIRE(r.massive.size() == 1);
    CHECK(r.massive[0].positions == std::vector<std::string>{"patch"});
    CHECK(r.to_json()["first_token"] == "patch_0");
    // the pooled feature is the head's: patch ablations move it, and the tool runs scan, ablate and report
    std::string msg;
    CHECK(tool("ablate " + dir + px + " --tokens cls", &msg) == 1);
    CHECK(msg.find("no CLS token") != std::string::npos);
    CHECK(tool("ablate " + dir + px + " --tokens patches --dims 0,1,2", &msg) == 0);
    CHECK(msg.find("pooled cos") != std::string::npos);
    const std::string out = test::temp_dir("siglip-report");
    CHECK(tool("scan " + dir + px, &msg) == 0);
    CHECK(tool("report " + dir + px + " --out " + out, &msg) == 0);
    INFO(msg);
    CHECK(tool("info " + dir, &msg) == 0);
    CHECK(msg.find("no CLS, 0 registers, 16 patches") != std::string::npos);
    CHECK(msg.find("attention-pooling head") != std::string::npos);
    CHECK(tool("info " + test::data("families/dinov3"), &msg) == 0);
    CHECK(msg.find("2-D RoPE of the patch centres") != std::string::npos);
    CHECK(msg.find("CLS, 4 registers, 16 patches") != std::string::npos);
}

TEST_CASE("massact report on a vision model: scan, register ablations, token norms of the last block") {
    const std::string dir = test::data("families/dinov2_reg"), out = test::temp_dir("vision-report");
    std::string msg;
    REQUIRE(tool("report " + dir + " --pixels " + dir + "/ref.safetensors --out " + out, &msg) == 0);
    std::ifstream f(out + "/report.json");
    const auto j = nlohmann::json::parse(f);
    CHECK(j["images"] == 2);
    CHECK(j["ablation"].size() == 3);
    CHECK(j["scan"]["attention_on_registers_per_layer_head"].size() == 3);
    REQUIRE(j["token_norms_last_block"].size() == 2);
    // the norms, recomputed from the last block's output
    const Transformer m(dir);
    std::vector<float> last;
    Hooks h;
    h.add("blocks.2.hook_resid_post", [&](Activation& a) { last.assign(a.data, a.data + a.numel()); });
    Workspace w;
    m.run_pixels(analysis::load_pixels(dir + "/ref.safetensors"), w, h);
    auto norm = [&](Index b, Index t) {
        double s = 0;
        for (Index k = 0; k < 64; ++k) s += double(last[static_cast<std::size_t>((b * 21 + t) * 64 + k)]) * last[static_cast<std::size_t>((b * 21 + t) * 64 + k)];
        return std::sqrt(s);
    };
    for (Index b = 0; b < 2; ++b) {
        const auto& e = j["token_norms_last_block"][static_cast<std::size_t>(b)];
        CHECK(e["cls"].get<double>() == doctest::Approx(norm(b, 0)).epsilon(1e-5));
        CHECK(e["registers"][3].get<double>() == doctest::Approx(norm(b, 4)).epsilon(1e-5));
        double patches = 0;
        for (Index t = 5; t < 21; ++t) patches += norm(b, t) / 16;
        CHECK(e["patch_mean"].get<double>() == doctest::Approx(patches).epsilon(1e-5));
    }
    std::ifstream md(out + "/report.md");
    std::stringstream ss;
    ss << md.rdbuf();
    CHECK(ss.str().find("Fix-Reg-Mean") != std::string::npos);
}

TEST_CASE("test-time registers: appended zero tokens act as registers; the planted register neuron is found and moved") {
    const std::string src = test::data("families/dinov2");
    const Transformer orig(src);
    const Index d = 64, I = 128, T0 = 17, np = 16;
    // Images: noise, and in image i one patch (position spot[i]) holding the same pattern (drawn once from the noise).
    const std::vector<Index> spot = {5, 10, 3, 14, 0, 9};
    PixelBatch px;
    px.n = static_cast<Index>(spot.size());
    px.channels = 3;
    px.height = px.width = 32;
    px.data.resize(static_cast<std::size_t>(px.n * 3 * 32 * 32));
    std::mt19937 rng(11);
    std::normal_distribution<float> noise(0.0f, 0.5f);
    for (auto& v : px.data) v = noise(rng);
    std::vector<float> pattern(3 * 8 * 8);
    for (auto& v : pattern) v = noise(rng);
    for (Index i = 0; i < px.n; ++i)
        for (Index ch = 0; ch < 3; ++ch)
            for (Index y = 0; y < 8; ++y)
                for (Index x = 0; x < 8; ++x)
                    px.data[static_cast<std::size_t>(((i * 3 + ch) * 32 + (spot[static_cast<std::size_t>(i)] / 4) * 8 + y) * 32 +
                                                     (spot[static_cast<std::size_t>(i)] % 4) * 8 + x)] = pattern[static_cast<std::size_t>((ch * 8 + y) * 8 + x)];

    // 1. RunOptions::extra_tokens: zero tokens after the patches. A DINOv2 with registers whose register tokens are zero
    // holds the same tokens in another order, and its attention sees no positions on them: the same outputs, permuted.
    {
        const std::string dir = test::temp_dir("zero-registers");
        auto cfg = io::read_json_file(test::data("families/dinov2_reg/config.json"));
        io::write_text_file_atomic(dir + "/config.json", cfg.dump());
        const io::SafetensorsFile f(src + "/model.safetensors");
        io::SafetensorsWriter w;
        std::vector<std::vector<float>> keep;
        for (const auto& name : f.names()) {
            keep.push_back(f.tensor(name).to_float());
            w.add_f32(name, f.tensor(name).shape, keep.back().data());
        }
        const std::vector<float> zeros(4 * 64, 0.0f);
        w.add_f32("embeddings.register_tokens", {1, 4, 64}, zeros.data());
        w.write(dir + "/model.safetensors");
        const Transformer reg(dir);
        Workspace a, b;
        RunOptions extra;
        extra.extra_tokens = 4;
        orig.run_pixels(px, a, {}, extra);
        reg.run_pixels(px, b);
        REQUIRE(a.hidden.rows() == px.n * 21);
        double worst = 0;
        for (Index i = 0; i < px.n; ++i)
            for (Index t = 0; t < 21; ++t) {
                const Index u = t == 0 ? 0 : t <= 16 ? t + 4 : t - 16;  // [CLS, patches, extra] -> [CLS, registers, patches]
                worst = std::max(worst, double((a.hidden.row(i * 21 + t) - b.hidden.row(i * 21 + u)).cwiseAbs().maxCoeff()));
            }
        CHECK(worst < 1e-4);
        CHECK((a.pooled - b.pooled).cwiseAbs().maxCoeff() < 1e-4);
        Workspace t;
        test::expect_error([&] { Transformer(test::model("tiny-llama")).forward(TokenBatch::Constant(1, 3, 1), {}, extra); }, {"vision models only"});
        extra.extra_tokens = -1;
        test::expect_error([&] { orig.run_pixels(px, t, {}, extra); }, {"extra_tokens -1"});
    }

    // 2. No high-norm patches in the random-weight model: nothing is moved, and the note says why.
    const auto none = analysis::test_time_registers(orig, px);
    INFO(none.note);
    CHECK(none.layer == -1);
    CHECK(none.neurons.empty());
    CHECK(none.note.find("no high-norm patches") != std::string::npos);

    // 3. Plant a register neuron: in block 1, MLP unit 37 reads the direction of the patterned patches' MLP input (their
    // projection on it is ~1.0, the other patches' at most ~0.6, so 16 x - 12 keeps it off there) and writes 12 into dim
    // 17 of the residual stream: those patches become high-norm from block 1 on.
    const int L = 1;
    const Index J = 37, D = 17;
    std::vector<double> u(static_cast<std::size_t>(d), 0.0);
    Hooks cap;
    cap.add("blocks.1.ln2.hook_normalized", [&](Activation& a) {
        for (Index i = 0; i < a.shape[0]; ++i)
            for (Index j = 0; j < d; ++j) u[static_cast<std::size_t>(j)] += a.data[(i * T0 + 1 + spot[static_cast<std::size_t>(i)]) * d + j] / double(px.n);
    });
    Workspace w0;
    orig.run_pixels(px, w0, cap);
    double uu = 0;
    for (double x : u) uu += x * x;
    const std::string dir = test::temp_dir("planted-register-neuron");
    REQUIRE(std::system(("cp " + src + "/config.json " + dir + "/").c_str()) == 0);
    {
        const io::SafetensorsFile f(src + "/model.safetensors");
        io::SafetensorsWriter w;
        std::vector<std::vector<float>> keep;
        const std::string p = "encoder.layer." + std::to_string(L) + ".mlp.";
        for (const auto& name : f.names()) {
            keep.push_back(f.tensor(name).to_float());
            auto& t = keep.back();
            if (name == p + "fc1.weight")
                for (Index j = 0; j < d; ++j) t[static_cast<std::size_t>(J * d + j)] = static_cast<float>(16.0 * u[static_cast<std::size_t>(j)] / uu);
            if (name == p + "fc1.bias") t[static_cast<std::size_t>(J)] = -12.0f;
            if (name == p + "fc2.weight") {
                for (Index o = 0; o < d; ++o) t[static_cast<std::size_t>(o * I + J)] = 0.0f;
                t[static_cast<std::size_t>(D * I + J)] = 12.0f;
            }
            w.add_f32(name, f.tensor(name).shape, t.data());
        }
        w.write(dir + "/model.safetensors");
    }
    const Transformer planted(dir);
    // the plant works as meant: unit 37 fires on the patterned patches only (checked here, not assumed)
    double on = 1e30, off = -1e30;
    Hooks act;
    act.add("blocks.1.mlp.hook_post", [&](Activation& a) {
        for (Index i = 0; i < a.shape[0]; ++i)
            for (Index p = 0; p < np; ++p) {
                const double v = a.data[(i * T0 + 1 + p) * I + J];
                if (p == spot[static_cast<std::size_t>(i)]) on = std::min(on, v);
                else off = std::max(off, v);
            }
    });
    Workspace w1;
    planted.run_pixels(px, w1, act);
    REQUIRE(on > 1.0);
    REQUIRE(off < 0.2);

    analysis::TestTimeRegisterOptions opt;
    opt.batch = 4;  // two batches: the sums across batches are part of the test
    const auto r = analysis::test_time_registers(planted, px, opt);
    INFO(r.note);
    MESSAGE("planted register neuron: " << r.note << "; top candidate block " << r.neurons[0].layer << " unit " << r.neurons[0].neuron
                                        << " (" << r.neurons[0].at_outliers << " on the outliers, " << r.neurons[0].elsewhere
                                        << " elsewhere; next " << r.ranked[1].concentration() << "); patch max/median " << r.before.max_ratio()
                                        << " -> " << r.after.max_ratio() << ", last block " << r.before_last.max_ratio() << " -> "
                                        << r.after_last.max_ratio() << "; pooled cosine " << r.pooled_cosine);
    CHECK(r.layer == L);
    CHECK(r.outliers == px.n);  // exactly the patterned patches
    for (Index i = 0; i < px.n; ++i) {
        Index arg = 0;
        r.before.patches.row(i).maxCoeff(&arg);
        CHECK(arg == spot[static_cast<std::size_t>(i)]);
    }
    REQUIRE(r.neurons.size() == 10);
    CHECK(r.neurons[0].layer == L);
    CHECK(r.neurons[0].neuron == J);
    CHECK(r.neurons[0].concentration() > 3 * r.ranked[1].concentration());
    // moved: no high-norm patch is left, the test-time register carries the norm instead
    CHECK(r.outliers_after == 0);
    CHECK(r.after.max_ratio() < 0.5 * r.before.max_ratio());
    for (Index i = 0; i < px.n; ++i) CHECK(r.after.extra[static_cast<std::size_t>(i)] > r.after.patches.row(i).maxCoeff());
    // the same run written out by hand: unit 37's largest activation over the image's tokens on the extra token, zero
    // elsewhere (only the top-1 neuron, to keep the check readable), then the patch norms at block 1
    analysis::TestTimeRegisterOptions one = opt;
    one.top_k = 1;
    const auto r1 = analysis::test_time_registers(planted, px, one);
    Hooks naive;
    std::vector<double> norms(static_cast<std::size_t>(px.n * 18), 0.0);
    naive.add("blocks.1.mlp.hook_post", [&](Activation& a) {
        for (Index i = 0; i < a.shape[0]; ++i) {
            float mx = -1e30f;
            for (Index t = 0; t < T0; ++t) mx = std::max(mx, a.data[(i * 18 + t) * I + J]);
            for (Index t = 0; t < T0; ++t) a.data[(i * 18 + t) * I + J] = 0.0f;
            a.data[(i * 18 + T0) * I + J] = mx;
        }
    });
    naive.add("blocks.1.hook_resid_post", [&](Activation& a) {
        for (Index k = 0; k < a.shape[0] * 18; ++k) {
            double s = 0;
            for (Index j = 0; j < d; ++j) s += double(a.data[k * d + j]) * a.data[k * d + j];
            norms[static_cast<std::size_t>(k)] = std::sqrt(s);
        }
    });
    RunOptions ro;
    ro.extra_tokens = 1;
    Workspace w2;
    planted.run_pixels(px, w2, naive, ro);
    for (Index i = 0; i < px.n; ++i) {
        for (Index p = 0; p < np; ++p) CHECK(r1.after.patches(i, p) == doctest::Approx(norms[static_cast<std::size_t>(i * 18 + 1 + p)]).epsilon(1e-9));
        CHECK(r1.after.extra[static_cast<std::size_t>(i)] == doctest::Approx(norms[static_cast<std::size_t>(i * 18 + T0)]).epsilon(1e-9));
    }
    CHECK(r1.pooled_cosine < 1.0);
    const auto j = r.to_json();
    CHECK(j["register_neurons"][0]["neuron"] == J);
    CHECK(j["before"]["images"][0]["patches"].size() == 4);
    // refusals
    test::expect_error([&] { analysis::test_time_registers(Transformer(test::model("tiny-llama")), px); }, {"not a vision model"});
    analysis::TestTimeRegisterOptions bad;
    bad.outlier_ratio = 1.0;
    test::expect_error([&] { analysis::test_time_registers(planted, px, bad); }, {"outlier ratio", "> 1"});
    bad = {};
    bad.layer = 3;
    test::expect_error([&] { analysis::test_time_registers(planted, px, bad); }, {"layer 3", "[0, 3)"});
    // the tool: the same neuron, the maps in its JSON
    const std::string out = test::temp_dir("ttr-tool");
    std::string msg;
    // (pixels from a safetensors file: the planted images written out)
    {
        io::SafetensorsWriter w;
        w.add_f32("pixel_values", {px.n, 3, 32, 32}, px.data.data());
        w.write(out + "/px.safetensors");
    }
    REQUIRE(tool("registers " + dir + " --pixels " + out + "/px.safetensors --json " + out + "/r.json --figure " + out + "/r.png", &msg) == 0);
    INFO(msg);
    const auto tj = io::read_json_file(out + "/r.json");
    CHECK(tj["register_neurons"][0]["layer"] == L);
    CHECK(tj["register_neurons"][0]["neuron"] == J);
    CHECK(tj["outliers_after"] == 0);
    CHECK(msg.find("block 1 unit 37") != std::string::npos);
    // every vision family runs it (with trained registers too); a language model is refused
    for (const std::string family : {"vit", "dinov2_reg", "clip_vision", "dinov3"}) {
        const std::string fdir = test::data("families/" + family);
        CHECK(tool("registers " + fdir + " --pixels " + fdir + "/ref.safetensors --outlier-ratio 1.01 --neurons 2", &msg) == 0);
        CHECK(msg.find("register neurons moved") != std::string::npos);
    }
    CHECK(tool("registers " + test::model("tiny-llama") + " --pixels " + out + "/px.safetensors", &msg) == 1);
    CHECK(msg.find("reads text") != std::string::npos);
    const std::string sig = test::data("families/siglip_vision");  // (no CLS token to report)
    CHECK(tool("registers " + sig + " --pixels " + sig + "/ref.safetensors", &msg) == 1);
    CHECK(msg.find("no CLS token") != std::string::npos);
}

// safetensors reader/writer: round trips, every validation rule of docs/formats.md,
// sharded checkpoints, and weight binding errors (missing tensor, wrong shape).
#include "common.hpp"

#include <fstream>

using namespace massact;

namespace {

/// Write a file: u64 header length, header text, then `data_bytes` zero bytes (or `raw_len` override).
std::string write_raw(const std::string& dir, const std::string& name, const std::string& header, std::size_t data_bytes,
                      std::int64_t header_len_override = -1) {
    const std::string path = dir + "/" + name;
    std::ofstream f(path, std::ios::binary);
    std::uint64_t n = header_len_override >= 0 ? static_cast<std::uint64_t>(header_len_override) : header.size();
    for (int i = 0; i < 8; ++i) f.put(static_cast<char>((n >> (8 * i)) & 0xff));
    f << header;
    for (std::size_t i = 0; i < data_bytes; ++i) f.put('\0');
    return path;
}

void expect_open_error(const std::string& path, std::initializer_list<std::string> parts) {
    test::expect_error([&] { io::SafetensorsFile f(path); }, parts);
}

/// Copy a model directory's config and re-write its tensors through `edit` (name, view) -> keep?
void copy_model(const std::string& from, const std::string& to,
                const std::function<bool(const std::string&, io::SafetensorsWriter&, const io::TensorView&)>& edit) {
    std::ifstream src(from + "/config.json");
    std::ofstream dst(to + "/config.json");
    dst << src.rdbuf();
    dst.close();
    io::SafetensorsFile st(from + "/model.safetensors");
    io::SafetensorsWriter w;
    for (const auto& n : st.names()) {
        const auto& t = st.tensor(n);
        if (edit(n, w, t)) w.add_raw(n, t.dtype, t.shape, t.data);
    }
    w.write(to + "/model.safetensors");
}

}  // namespace

TEST_CASE("writer output reads back: F32, I64, raw BF16, metadata, 8-byte aligned data") {
    const std::string dir = test::temp_dir("st");
    io::SafetensorsWriter w;
    std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 5.0f, 6.0f};
    std::vector<std::int64_t> ids = {1, 2, 3};
    std::uint16_t bf[2] = {float_to_bf16(1.0f), float_to_bf16(-0.5f)};
    w.add_f32("a", {2, 3}, a.data());
    w.add_i64("ids", {3}, ids.data());
    w.add_raw("h", io::DType::BF16, {2}, bf);
    w.add_f32("scalar", {}, a.data());
    w.set_metadata("format", "pt");
    w.write(dir + "/x.safetensors");
    io::SafetensorsFile f(dir + "/x.safetensors");
    CHECK(f.tensor("a").to_float() == a);
    CHECK(f.tensor("a").shape == std::vector<std::int64_t>{2, 3});
    CHECK(f.tensor("ids").to_int64() == ids);
    CHECK(f.tensor("h").to_float() == std::vector<float>{1.0f, -0.5f});
    CHECK(f.tensor("scalar").numel() == 1);
    CHECK(f.metadata().at("format") == "pt");
    // Header padded with spaces so that data starts 8-byte aligned (as Python's safetensors writes).
    std::ifstream raw(dir + "/x.safetensors", std::ios::binary);
    unsigned char len[8];
    raw.read(reinterpret_cast<char*>(len), 8);
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
    CHECK((8 + n) % 8 == 0);
    // No temporary file is left behind.
    CHECK(!io::file_exists(dir + "/x.safetensors.tmp." + std::to_string(::getpid())));
    CHECK_THROWS_AS(w.add_f32("a", {1}, a.data()), Error);
}

TEST_CASE("every validation rule is enforced with a message naming file, tensor and rule") {
    const std::string dir = test::temp_dir("bad");
    const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    {  // shorter than 8 bytes
        std::ofstream(dir + "/short.safetensors") << "abc";
        expect_open_error(dir + "/short.safetensors", {"short.safetensors", "shorter than the 8-byte header length"});
    }
    expect_open_error(write_raw(dir, "huge.safetensors", ok, 8, 200000000), {"huge.safetensors", "exceeds the limit"});
    expect_open_error(write_raw(dir, "past.safetensors", ok, 0, 5000), {"past.safetensors", "runs past the end of the file"});
    expect_open_error(write_raw(dir, "json.safetensors", R"({"a": {"dtype": )", 0), {"json.safetensors", "not valid UTF-8 JSON"});
    expect_open_error(write_raw(dir, "utf8.safetensors", "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0),
                      {"utf8.safetensors", "not valid UTF-8 JSON"});
    expect_open_error(write_raw(dir, "trunc.safetensors", ok, 4), {"trunc.safetensors", "tensor \"a\"", "past the data buffer"});
    expect_open_error(write_raw(dir, "trailing.safetensors", ok, 12), {"trailing.safetensors", "trailing bytes"});
    expect_open_error(
        write_raw(dir, "overlap.safetensors",
                  R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
        {"overlap.safetensors", "tensor \"b\"", "overlap"});
    expect_open_error(
        write_raw(dir, "gap.safetensors",
                  R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})", 20),
        {"gap.safetensors", "tensor \"b\"", "gap"});
    expect_open_error(write_raw(dir, "start.safetensors", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
                      {"start.safetensors", "tensor \"a\"", "gap"});
    expect_open_error(
        write_raw(dir, "dup.safetensors",
                  R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
        {"dup.safetensors", "tensor \"a\"", "duplicate name"});
    expect_open_error(write_raw(dir, "count.safetensors", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
                      {"count.safetensors", "tensor \"a\"", "wrong byte count", "needs 12"});
    expect_open_error(write_raw(dir, "dtype.safetensors", R"({"a":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,8]}})", 8),
                      {"dtype.safetensors", "tensor \"a\"", "unsupported dtype \"Q4_K\""});
    expect_open_error(
        write_raw(dir, "overflow.safetensors",
                  R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
        {"overflow.safetensors", "tensor \"a\"", "overflows"});
    expect_open_error(write_raw(dir, "meta.safetensors", R"({"__metadata__":{"k":1}})", 0), {"meta.safetensors", "__metadata__"});
    // Known dtypes massact does not convert: readable header, clear error on use.
    io::SafetensorsFile u8(write_raw(dir, "u8.safetensors", R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", 8));
    test::expect_error([&] { u8.tensor("a").to_float(); }, {"u8.safetensors", "tensor \"a\"", "unsupported dtype U8"});
    test::expect_error([&] { u8.tensor("missing"); }, {"u8.safetensors", "missing tensor \"missing\""});
}

TEST_CASE("a sharded checkpoint loads through model.safetensors.index.json and runs identically") {
    const std::string dir = test::temp_dir("shard");
    const std::string from = test::model("tiny-llama");
    {
        std::ifstream src(from + "/config.json");
        std::ofstream dst(dir + "/config.json");
        dst << src.rdbuf();
    }
    io::SafetensorsFile st(from + "/model.safetensors");
    io::SafetensorsWriter w1, w2;
    nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
    int i = 0;
    for (const auto& n : st.names()) {
        const auto& t = st.tensor(n);
        const bool first = (i++ % 2) == 0;
        (first ? w1 : w2).add_raw(n, t.dtype, t.shape, t.data);
        index["weight_map"][n] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    }
    w1.write(dir + "/model-00001-of-00002.safetensors");
    w2.write(dir + "/model-00002-of-00002.safetensors");
    std::ofstream(dir + "/model.safetensors.index.json") << index.dump();
    const Transformer sharded(dir), single(from);
    CHECK(sharded.checkpoint().num_shards() == 2);
    TokenBatch ids(1, 12);
    ids << 1, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150;
    CHECK(test::max_abs_diff(sharded.forward(ids), single.forward(ids)) == 0.0);
    // An index naming a tensor its shard lacks is refused.
    index["weight_map"]["model.extra.weight"] = "model-00001-of-00002.safetensors";
    std::ofstream(dir + "/model.safetensors.index.json") << index.dump();
    test::expect_error([&] { io::Checkpoint c(dir); }, {"model-00001-of-00002.safetensors", "missing tensor \"model.extra.weight\""});
}

TEST_CASE("weights: missing tensor, wrong shape, unsupported dtype and unknown model_type are refused") {
    const std::string from = test::model("tiny-llama");
    {
        const std::string dir = test::temp_dir("missing");
        copy_model(from, dir, [](const std::string& n, io::SafetensorsWriter&, const io::TensorView&) {
            return n != "model.layers.3.mlp.up_proj.weight";
        });
        test::expect_error([&] { Transformer m(dir); }, {"missing tensor \"model.layers.3.mlp.up_proj.weight\""});
    }
    {
        const std::string dir = test::temp_dir("shape");
        copy_model(from, dir, [](const std::string& n, io::SafetensorsWriter& w, const io::TensorView& t) {
            if (n != "model.layers.1.self_attn.k_proj.weight") return true;
            w.add_raw(n, t.dtype, {256, 128}, t.data);  // transposed shape
            return false;
        });
        test::expect_error([&] { Transformer m(dir); },
                           {"model.layers.1.self_attn.k_proj.weight", "wrong shape [256, 128]", "expected [128, 256]"});
    }
    {
        const std::string dir = test::temp_dir("dtype");
        copy_model(from, dir, [](const std::string& n, io::SafetensorsWriter& w, const io::TensorView& t) {
            if (n != "model.norm.weight") return true;
            std::vector<std::int32_t> z(256, 0);
            w.add_raw(n, io::DType::I32, t.shape, z.data());
            return false;
        });
        test::expect_error([&] { Transformer m(dir); }, {"model.norm.weight", "unsupported dtype I32"});
    }
    {
        const std::string dir = test::temp_dir("type");
        copy_model(from, dir, [](const std::string&, io::SafetensorsWriter&, const io::TensorView&) { return true; });
        auto cfg = io::read_json_file(dir + "/config.json");
        cfg["model_type"] = "rwkv";
        std::ofstream(dir + "/config.json") << cfg.dump();
        test::expect_error([&] { Transformer m(dir); }, {"config.json", "model_type", "unsupported value \"rwkv\""});
    }
}

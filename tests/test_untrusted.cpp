// Untrusted input and reliability II: each defect the security issue listed, with the check that failed before
// its fix (a hang, an allocation far beyond the file, an out-of-bounds access, a silent wrong result).
#include "common.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

using namespace massact;
using namespace massact::analysis;

namespace {

TokenBatch some_ids(Index N, Index T) {
    TokenBatch ids(N, T);
    for (Index b = 0; b < N; ++b)
        for (Index t = 0; t < T; ++t) ids(b, t) = t == 0 ? 1 : 3 + (37 * t + 11 * b) % 4000;
    return ids;
}

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

nlohmann::json tiny_tokenizer() {
    return nlohmann::json::parse(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})");
}

}  // namespace

TEST_CASE("tokenizer.json: a Sequence post-processor whose processors is no array names the file and field") {
    auto j = tiny_tokenizer();
    j["post_processor"] = {{"type", "Sequence"}, {"processors", {{"x", 1}}}};
    test::expect_error([&] { text::Tokenizer(j, "evil/tokenizer.json"); },
                       {"evil/tokenizer.json", "post_processor.processors", "expected an array"});
}

TEST_CASE("tokenizer.json: a token id far beyond the tokens the file declares is refused, not allocated") {
    auto j = tiny_tokenizer();
    j["added_tokens"] = {{{"id", 67108864}, {"content", "<big>"}, {"special", true}}};  // used to take 2.1 GB
    test::expect_error([&] { text::Tokenizer(j, "small.json"); }, {"small.json", "added_tokens[0].id", "67108864", "out of range"});
    j = tiny_tokenizer();
    j["model"]["vocab"]["ab"] = 5000000;
    test::expect_error([&] { text::Tokenizer(j, "small.json"); }, {"model.vocab[\"ab\"]", "5000000"});
    // Real tokenizers leave small gaps (reserved ids): an id near the declared count still loads.
    j = tiny_tokenizer();
    j["added_tokens"] = {{{"id", 900}, {"content", "<pad>"}, {"special", true}}};
    const text::Tokenizer t(j, "gap.json");
    CHECK(t.vocab_size() == 901);
}

TEST_CASE("tokenizer.json: a Strip decoder must strip one character (empty content used to loop INT_MAX times per token)") {
    auto j = tiny_tokenizer();
    j["decoder"] = {{"type", "Strip"}, {"content", ""}, {"start", 2147483647}, {"stop", 0}};
    test::expect_error([&] { text::Tokenizer(j, "strip.json"); }, {"strip.json", "decoder.content", "one character"});
    j["decoder"] = {{"type", "Strip"}, {"content", " "}, {"start", -1}, {"stop", 0}};
    test::expect_error([&] { text::Tokenizer(j, "strip.json"); }, {"decoder.start", "non-negative"});
    j["decoder"] = {{"type", "Strip"}, {"content", "a"}, {"start", 2147483647}, {"stop", 2147483647}};
    const text::Tokenizer t(j, "strip.json");
    CHECK(t.decode({0, 1, 2}) == "bb");  // each token's leading/trailing "a" stripped, however large the counts
}

TEST_CASE("GEMM inside a parallel region with nesting enabled: per-thread scratch covers the inner team") {
#if defined(_OPENMP) && defined(MASSACT_HAS_XSIMD)
    std::mt19937 g(3);
    const Index M = 20, N = 700, K = 300;
    const RowMatrixF A = test::random_matrix(M, K, g), B = test::random_matrix(N, K, g);
    const RowMatrixF want = A * B.transpose();
    auto fill = [&](Index n0, Index rows, Index k0, Index cols, float* dst) {
        for (Index i = 0; i < rows; ++i)
            for (Index j = 0; j < cols; ++j) dst[i * cols + j] = B(n0 + i, k0 + j);
    };
    const int levels = omp_get_max_active_levels();
    omp_set_max_active_levels(2);
    double worst = 0;
    for (const Index m : {M, Index(2)}) {  // the packed kernel and the few-rows path
        std::vector<RowMatrixF> got(2, RowMatrixF::Zero(m, N));
#pragma omp parallel num_threads(2)
        {
            kernels::GemmScratch scratch;  // one per outer thread, resized for its own inner team
            const int t = omp_get_thread_num();
            kernels::gemm_bt(A.data(), K, m, N, K, fill, got[static_cast<std::size_t>(t)].data(), N, kernels::Precision::F32, scratch);
        }
        for (const auto& r : got) worst = std::max(worst, test::max_abs_diff(r, want.topRows(m)));
    }
    omp_set_max_active_levels(levels);
    CHECK(worst < 1e-3);
#else
    MESSAGE("built without OpenMP or xsimd: no blocked product in parallel regions to test");
#endif
}

TEST_CASE("a KV cache made for another model is refused before anything is read or written") {
    const Transformer m(test::model("tiny-llama"));
    ModelConfig other = m.config();
    other.positions = PositionKind::Learned;  // same layers, heads and widths, no RoPE: the cache holds no k_raw
    other.rope.clear();
    KVCache foreign(other, 1);
    Workspace w;
    test::expect_error([&] { m.run(some_ids(1, 4), foreign, w); }, {"KV cache does not fit", "RoPE"});
    ModelConfig heads = m.config();
    heads.num_kv_heads *= 2;
    heads.head_dim /= 2;  // the same key width, other heads
    KVCache split(heads, 1);
    test::expect_error([&] { m.run(some_ids(1, 4), split, w); }, {"key/value heads"});
    KVCache ok(m.config(), 1);
    CHECK(m.run(some_ids(1, 4), ok, w).rows() == 4);
    test::expect_error([&] { m.run(some_ids(2, 1), ok, w); }, {"holds 1 sequences, not 2"});
}

TEST_CASE("batch sizes below 1 and attention tiles below 1 are errors, not endless loops") {
    const Transformer m(test::model("tiny-llama"));
    const TokenBatch ids = some_ids(2, 8);
    Intervention iv;
    iv.site = Intervention::resid_post(1);
    iv.tokens = TokenSelection::first();
    iv.dims = {215};
    iv.mode = Intervention::Mode::Zero;
    for (const Index b : {Index(0), Index(-3)}) {
        CAPTURE(b);
        test::expect_error([&] { perplexity(m, ids, {}, {}, b); }, {"perplexity: batch must be at least 1"});
        test::expect_error([&] { dataset_mean(m, ids, iv, b); }, {"dataset_mean: batch must be at least 1"});
        test::expect_error([&] { inject(m, ids, 1, 0, 5, {215}, b); }, {"inject: batch must be at least 1"});
        test::expect_error([&] { activation_absmax(m, ids, b); }, {"activation_absmax: batch must be at least 1"});
        test::expect_error([&] { quant_study(m, ids, {QuantExperiment{}}, {}, b); }, {"quant: batch must be at least 1"});
        CompareOptions co;
        co.batch = b;
        test::expect_error([&] { compare(m, ids, make_hooks({iv}), co); }, {"compare: batch must be at least 1"});
        StreamOptions so;
        so.policy = StreamPolicy::Recompute;
        so.batch = b;
        so.window = 4;
        so.sinks = 0;
        const std::vector<std::int64_t> stream_ids(12, 5);
        test::expect_error([&] { stream_nll(m, stream_ids, so); }, {"stream: batch must be at least 1"});
        RunOptions ro;
        ro.attention_tile = b;
        test::expect_error([&] { m.forward(ids, {}, ro); }, {"attention_tile must be at least 1"});
    }
}

TEST_CASE("config values that used to overflow or divide by zero are refused with the field") {
    nlohmann::json vit = {{"model_type", "vit"}, {"hidden_size", 32}, {"intermediate_size", 64}, {"num_hidden_layers", 1},
                          {"num_attention_heads", 2}, {"image_size", 1 << 20}, {"patch_size", 1}};
    test::expect_error([&] { parse_config(vit, "vit/config.json"); }, {"vit/config.json", "image_size", "patches (at most"});
    vit["image_size"] = 224;
    vit["patch_size"] = 16;
    CHECK(parse_config(vit).max_positions == 14 * 14 + 1);
    nlohmann::json qwen = {{"model_type", "qwen2"}, {"hidden_size", 32}, {"intermediate_size", 64}, {"num_hidden_layers", 2},
                           {"num_attention_heads", 2}, {"vocab_size", 50}, {"use_sliding_window", true}, {"sliding_window", 4},
                           {"max_window_layers", 1e300}};
    test::expect_error([&] { parse_config(qwen); }, {"max_window_layers", "layer count"});
    qwen["max_window_layers"] = -1;
    test::expect_error([&] { parse_config(qwen); }, {"max_window_layers"});
    qwen["max_window_layers"] = 1;
    CHECK(parse_config(qwen).layers.size() == 2);
    nlohmann::json phi3 = {{"model_type", "phi3"}, {"hidden_size", 32}, {"intermediate_size", 64}, {"num_hidden_layers", 1},
                           {"num_attention_heads", 2}, {"vocab_size", 50},
                           {"rope_scaling", {{"type", "longrope"}, {"short_factor", std::vector<double>(8, 1.0)},
                                             {"long_factor", std::vector<double>(8, 2.0)}}}};
    test::expect_error([&] { parse_config(phi3); }, {"max_position_embeddings", "longrope"});
    phi3["max_position_embeddings"] = 64;
    const auto c = parse_config(phi3);
    for (const float f : c.rope[0].inv_freq(16)) CHECK(std::isfinite(f));
    CHECK(std::isfinite(c.rope[0].cos_sin_scale()));
}

TEST_CASE("dataset_mean refuses dims outside the site instead of reading past the row") {
    const Transformer m(test::model("tiny-llama"));
    Intervention iv;
    iv.site = Intervention::resid_post(1);
    iv.tokens = TokenSelection::first();
    iv.dims = {3, 256};
    iv.mode = Intervention::Mode::Mean;
    test::expect_error([&] { dataset_mean(m, some_ids(2, 6), iv, 2); }, {"dim 256 out of range [0, 256)", "blocks.1.hook_resid_post"});
}

TEST_CASE("run_pixels with last_layer returns empty outputs, never the previous images'") {
    const Transformer m(test::data("families/vit"));
    const auto& v = m.config().vision;
    PixelBatch px;
    px.n = 1;
    px.channels = v.channels;
    px.height = px.width = v.image_size;
    std::mt19937 g(5);
    std::normal_distribution<float> n(0.0f, 1.0f);
    px.data.resize(static_cast<std::size_t>(px.channels * px.height * px.width));
    for (auto& x : px.data) x = n(g);
    Workspace w;
    CHECK(m.run_pixels(px, w).rows() > 0);
    RunOptions early;
    early.last_layer = 0;
    const RowMatrixF& h = m.run_pixels(px, w, {}, early);
    CHECK(h.size() == 0);
    CHECK(w.pooled.size() == 0);
}

TEST_CASE("quantization study: weight-only SmoothQuant is exact, massive-dim protection only on residual inputs, labels") {
    const Transformer m(test::model("tiny-llama"));
    const TokenBatch ids = some_ids(2, 24);
    QuantExperiment smooth;  // float weights, float activations: smoothing alone changes nothing
    smooth.weights.format = QuantFormat::Float;
    smooth.smooth_quant = true;
    smooth.smooth_alpha = 0.8;
    const QuantStudy s = quant_study(m, ids, {smooth}, {}, 2);
    CHECK(std::abs(s.rows[0].ppl / s.ppl_float - 1) < 1e-4);  // the weights used to be scaled without the activations
    CHECK(s.rows[0].experiment.protect() == "SmoothQuant a=0.8");
    QuantExperiment llm;
    llm.outlier_threshold = true;
    llm.threshold = 4;
    CHECK(llm.protect() == "|x| > 4 in float (LLM.int8)");

    // Every dim "massive": the ln1/ln2 outputs stay float, hook_z (of width d here too) is still quantized.
    const Index d = m.config().hidden_size;
    REQUIRE(m.config().num_heads * m.config().head_dim == d);
    QuantExperiment a8;
    a8.activations = QuantFormat::Int8;
    a8.keep_massive_dims = true;
    QuantContext ctx;
    for (Index j = 0; j < d; ++j) ctx.massive_dims.push_back(j);
    Hooks h = activation_hooks(m.config(), a8, ctx);
    double z_off_grid = 0, ln_changed = 0;
    RowMatrixF ln_before;
    Hooks before;
    before.add("blocks.0.ln1.hook_normalized", [&](Activation& a) { ln_before = a.matrix(); });
    before.extend(h);
    before.add("blocks.0.ln1.hook_normalized", [&](Activation& a) { ln_changed = test::max_abs_diff(a.matrix(), ln_before); });
    before.add("blocks.0.attn.hook_z", [&](Activation& a) {
        const auto x = a.matrix();
        const double scale = x.cwiseAbs().maxCoeff() / 127.0;
        for (Index i = 0; i < x.size(); ++i) {
            const double q = x.data()[i] / scale;
            z_off_grid = std::max(z_off_grid, std::abs(q - std::round(q)));
        }
    });
    m.forward(ids, before);
    CHECK(ln_changed == 0.0);
    CHECK(z_off_grid < 1e-3);  // on the int8 grid: quantized (it used to be kept in float)
}

TEST_CASE("compare without the decomposition does not compute it (no hook_v copies)") {
    const Transformer m(test::model("tiny-llama"));
    analysis::detail::AttentionProbe p;
    p.init(m.config(), {0}, false);
    Hooks h;
    p.add_hooks(h);
    CHECK(h.matching("blocks.0.attn.hook_v").empty());
    CHECK(h.matching("blocks.0.attn.hook_pattern").size() == 1);
    p.init(m.config(), {0}, true);
    Hooks h2;
    p.add_hooks(h2);
    CHECK(h2.matching("blocks.0.attn.hook_v").size() == 1);
}

TEST_CASE("atomic writes: a symbolic link planted at the old temporary name is never followed") {
    const std::string dir = test::temp_dir("atomic");
    const std::string victim = dir + "/victim.txt", out = dir + "/out.json";
    { std::ofstream(victim) << "precious"; }
    for (const std::string& planted : {out + ".tmp." + std::to_string(::getpid()), out + ".tmp"})
        REQUIRE(::symlink(victim.c_str(), planted.c_str()) == 0);
    io::write_text_file_atomic(out, "{\"ok\": 1}\n");
    CHECK(slurp(victim) == "precious");
    CHECK(slurp(out) == "{\"ok\": 1}\n");
    struct stat st {};
    REQUIRE(::lstat(out.c_str(), &st) == 0);
    CHECK(S_ISREG(st.st_mode));  // a new file, not the link renamed into place
    // Each temporary is new, next to its file, and gone after a failure.
    std::string tmp;
    {
        io::AtomicFile f(out);
        tmp = f.temporary_path();
        CHECK(tmp.rfind(out + ".tmp.", 0) == 0);
        CHECK(::access(tmp.c_str(), F_OK) == 0);
        f.write("partial", 7);
    }
    CHECK(::access(tmp.c_str(), F_OK) != 0);
    CHECK(slurp(out) == "{\"ok\": 1}\n");
    test::expect_error([&] { io::write_text_file_atomic(dir + "/no/such/folder/x.json", "x"); }, {"no/such/folder/x.json", "cannot write"});
}

namespace {

/// A GGUF v3 file built field by field (little-endian), for files that claim sizes they do not have.
struct GgufBytes {
    std::vector<unsigned char> b;
    template <typename T>
    GgufBytes& put(T v) {
        const auto* p = reinterpret_cast<const unsigned char*>(&v);
        b.insert(b.end(), p, p + sizeof(T));
        return *this;
    }
    GgufBytes& str(const std::string& s, std::uint64_t claimed = ~std::uint64_t(0)) {
        put<std::uint64_t>(claimed == ~std::uint64_t(0) ? s.size() : claimed);
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
    GgufBytes(std::uint64_t tensors, std::uint64_t kvs) {
        b = {'G', 'G', 'U', 'F'};
        put<std::uint32_t>(3).put(tensors).put(kvs);
    }
    GgufBytes& kv_string(const std::string& k, const std::string& v) { return str(k).put<std::uint32_t>(8).str(v); }
    GgufBytes& kv_u32(const std::string& k, std::uint32_t v) { return str(k).put<std::uint32_t>(4).put(v); }
    GgufBytes& kv_u64(const std::string& k, std::uint64_t v) { return str(k).put<std::uint32_t>(10).put(v); }
    GgufBytes& kv_f32(const std::string& k, float v) { return str(k).put<std::uint32_t>(6).put(v); }
    GgufBytes& kv_strings(const std::string& k, const std::vector<std::string>& v) {
        str(k).put<std::uint32_t>(9).put<std::uint32_t>(8).put<std::uint64_t>(v.size());
        for (const auto& s : v) str(s);
        return *this;
    }
    GgufBytes& pad() {
        while (b.size() % 32) b.push_back(0);
        return *this;
    }
};

long peak_rss_kib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

}  // namespace

TEST_CASE("tiny files that claim huge sizes are refused before anything that size is allocated, naming the field") {
    const long rss_before = peak_rss_kib();
    std::vector<std::pair<std::vector<unsigned char>, std::vector<std::string>>> gguf;
    // counts of tensors and metadata, a key's length, a string value's length, an array's element count
    gguf.push_back({GgufBytes(std::uint64_t(1) << 40, 0).b, {"tensor count", "cannot fit"}});
    gguf.push_back({GgufBytes(0, std::uint64_t(1) << 40).b, {"metadata count", "cannot fit"}});
    gguf.push_back({GgufBytes(0, 1).str("general.architecture", std::uint64_t(1) << 50).b, {"runs past the end"}});
    gguf.push_back({GgufBytes(0, 1).str("general.name").put<std::uint32_t>(8).put<std::uint64_t>(std::uint64_t(1) << 40).b,
                    {"general.name", "runs past the end"}});
    gguf.push_back({GgufBytes(0, 1).str("tokenizer.ggml.tokens").put<std::uint32_t>(9).put<std::uint32_t>(8).put<std::uint64_t>(std::uint64_t(1) << 40).b,
                    {"tokenizer.ggml.tokens", "elements cannot fit"}});
    // a tensor of 2^60 elements in a file of 100 bytes
    {
        GgufBytes g(1, 0);
        g.str("token_embd.weight").put<std::uint32_t>(3).put<std::uint64_t>(1 << 20).put<std::uint64_t>(1 << 20).put<std::uint64_t>(1 << 20);
        g.put<std::uint32_t>(0).put<std::uint64_t>(0).pad();
        gguf.push_back({g.b, {"token_embd.weight", "not a plausible size"}});
    }
    for (std::size_t i = 0; i < gguf.size(); ++i) {
        CAPTURE(i);
        CHECK(gguf[i].first.size() < 200);
        std::vector<std::string> parts = gguf[i].second;
        parts.insert(parts.begin(), "claims.gguf");
        test::expect_error([&] { io::GgufFile f(io::MappedFile::from_bytes("claims.gguf", gguf[i].first)); }, parts);
    }

    // A model whose metadata claims 2^31 layers or a 2^40-wide residual: refused by the config check.
    const auto llama = [](std::uint64_t width, std::uint64_t layers) {
        GgufBytes g(1, 7);
        g.kv_string("general.architecture", "llama").kv_u64("llama.embedding_length", width).kv_u64("llama.feed_forward_length", 64);
        g.kv_u64("llama.block_count", layers).kv_u32("llama.attention.head_count", 4).kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
        g.kv_u64("llama.vocab_size", 2);
        g.str("token_embd.weight").put<std::uint32_t>(2).put<std::uint64_t>(2).put<std::uint64_t>(2).put<std::uint32_t>(0).put<std::uint64_t>(0);
        g.pad().b.resize(g.b.size() + 16);  // a 2 x 2 float32 embedding
        return g.b;
    };
    for (const auto& c : {std::make_pair(llama(std::uint64_t(1) << 40, 2), std::string("hidden_size")),
                          std::make_pair(llama(64, std::uint64_t(1) << 31), std::string("num_hidden_layers"))}) {
        CAPTURE(c.second);
        test::expect_error(
            [&] {
                const auto f = std::make_shared<const io::GgufFile>(io::MappedFile::from_bytes("claims.gguf", c.first));
                (void)gguf_config(open_gguf(f));
            },
            {"claims.gguf", c.second});
    }
    // A vocabulary of three tokens whose BOS id is 2^40.
    {
        GgufBytes g(0, 3);
        g.kv_string("tokenizer.ggml.model", "gpt2").kv_strings("tokenizer.ggml.tokens", {"a", "b", "ab"});
        g.kv_u64("tokenizer.ggml.bos_token_id", std::uint64_t(1) << 40);
        const io::GgufFile f(io::MappedFile::from_bytes("claims.gguf", g.pad().b));
        test::expect_error([&] { (void)text::tokenizer_json(f); }, {"claims.gguf", "tokenizer.ggml.bos_token_id", "not a token id"});
    }

    // safetensors: a header length of 2^62, a tensor of 2^62 elements over 8 bytes of data
    const auto st = [](std::uint64_t header_len, const std::string& header, std::size_t data) {
        if (header_len == 0) header_len = header.size();
        std::vector<unsigned char> b(8);
        std::memcpy(b.data(), &header_len, 8);
        b.insert(b.end(), header.begin(), header.end());
        b.resize(b.size() + data);
        return b;
    };
    test::expect_error([&] { io::SafetensorsFile f(io::MappedFile::from_bytes("claims.safetensors", st(std::uint64_t(1) << 62, "{}", 0))); },
                       {"claims.safetensors", "header"});
    test::expect_error(
        [&] {
            io::SafetensorsFile f(io::MappedFile::from_bytes(
                "claims.safetensors", st(0, R"({"a":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,8]}})", 8)));
        },
        {"claims.safetensors", "tensor \"a\""});
    // (none of this took memory: the peak resident size grew by less than 64 MiB)
    CHECK(peak_rss_kib() - rss_before < 64 * 1024);
}

TEST_CASE("values nested a million deep in config.json, tokenizer.json and ids files: errors naming the field, no crash") {
    const std::string dir = test::temp_dir("deep_json");
    const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
    // config.json: a field whose value is the nested array (its message shows it cut short)
    std::filesystem::create_directories(dir + "/cfg");
    std::ofstream(dir + "/cfg/config.json") << R"({"model_type": "llama", "hidden_size": )" + deep + "}";
    test::expect_error([&] { load_config(dir + "/cfg"); }, {"config.json", "hidden_size", "[[[[...]]]]"});
    // tokenizer.json: a normalizer whose type is the nested array; Sequences nested 50000 deep
    const std::string tok_src = test::model("tiny-llama") + "/tokenizer.json";
    auto tok = io::read_json_file(tok_src);
    for (const auto& [field, value, says] :
         std::vector<std::tuple<std::string, std::string, std::string>>{
             {"normalizer", R"({"type": )" + deep + "}", "normalizer.type"},
             {"normalizer", [] {
                  std::string s;
                  for (int i = 0; i < 50000; ++i) s += R"({"type": "Sequence", "normalizers": [)";
                  s += R"({"type": "Lowercase"})";
                  for (int i = 0; i < 50000; ++i) s += "]}";
                  return s;
              }(), "nested more than 8 levels"}}) {
        tok[field] = "@@";
        std::string text = tok.dump();
        text.replace(text.find("\"@@\""), 4, value);
        std::filesystem::create_directories(dir + "/tok");
        std::ofstream(dir + "/tok/tokenizer.json") << text;
        test::expect_error([&] { text::load_tokenizer(dir + "/tok"); }, {"tokenizer.json", says});
    }
}

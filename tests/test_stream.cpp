// The KV cache, generation, and StreamingLLM's cache policies.
#include "common.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

using namespace massact;

namespace {

std::vector<std::string> language_models() {
    std::vector<std::string> dirs;
    for (const auto& e : std::filesystem::directory_iterator(test::data("families"))) {
        if (!load_config(e.path().string()).is_vision()) dirs.push_back(e.path().string());
    }
    for (const char* m : {"tiny-llama", "tiny-gpt2", "tiny-llama-kvbias", "tiny-llama-sinklogit", "tiny-qwen3next-gated",
                          "tiny-llama-softpick", "tiny-llama-sigmoid"})
        dirs.push_back(test::model(m));
    std::sort(dirs.begin(), dirs.end());
    return dirs;
}

TokenBatch random_ids(Index N, Index T, Index V, unsigned seed) {
    std::mt19937 g(seed);
    TokenBatch ids(N, T);
    for (Index i = 0; i < ids.size(); ++i) ids.data()[i] = static_cast<std::int64_t>(g() % static_cast<unsigned>(V));
    return ids;
}

/// Logits of `ids` fed through a cache in steps of the given sizes (cycled).
RowMatrixF decode(const Transformer& m, const TokenBatch& ids, const std::vector<Index>& steps, CachePolicy pol = {},
                  const Hooks& hooks = {}) {
    const Index N = ids.rows(), T = ids.cols();
    KVCache cache(m.config(), N, pol);
    Workspace ws;
    RowMatrixF out(N * T, m.config().vocab_size);
    std::size_t k = 0;
    for (Index t = 0; t < T;) {
        const Index n = std::min(steps[k++ % steps.size()], T - t);
        const TokenBatch part = ids.middleCols(t, n);
        const RowMatrixF& logits = m.run(part, cache, ws, hooks);
        for (Index b = 0; b < N; ++b) out.middleRows(b * T + t, n) = logits.middleRows(b * n, n);
        t += n;
    }
    CHECK(cache.size() == T);
    return out;
}

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(std::ifstream(path)); }

std::vector<std::int64_t> stream_ids() { return read_json(test::data("stream/val_stream_ids_2048.json")).get<std::vector<std::int64_t>>(); }

}  // namespace

TEST_CASE("decoding token by token, or in chunks, through a KV cache equals the full forward: every family") {
    const auto dirs = language_models();
    REQUIRE(dirs.size() >= 25);
    for (const auto& dir : dirs) {
        INFO(dir);
        const Transformer m(dir);
        const TokenBatch ids = random_ids(2, 11, m.config().vocab_size, 7);
        const RowMatrixF full = m.forward(ids);
        const double scale = std::max(1.0, static_cast<double>(full.cwiseAbs().maxCoeff()));
        CHECK(test::max_abs_diff(decode(m, ids, {1}), full) / scale < 2e-5);
        CHECK(test::max_abs_diff(decode(m, ids, {4, 1, 3}), full) / scale < 2e-5);
        // Positions = index in the cache change nothing while nothing is evicted.
        CHECK(test::max_abs_diff(decode(m, ids, {2}, {0, 0, CachePolicy::Positions::CacheIndex}), full) / scale < 2e-5);
    }
}

TEST_CASE("multi-head latent attention: the cache holds the compressed KV, attends in latent space, equals the full forward") {
    for (const char* name : {"deepseek_v2", "deepseek_v3"}) {
        INFO(name);
        const Transformer m(test::data(std::string("families/") + name));
        const ModelConfig& c = m.config();
        REQUIRE(c.has_mla());
        const Index N = 2, T = 9, D = c.mla.qk_rope + c.mla.kv_lora_rank;
        const TokenBatch ids = random_ids(N, T, c.vocab_size, 3);
        CachePolicy heads;
        heads.latent = false;
        KVCache latent(c, N), per_head(c, N, heads);
        CHECK(latent.latent());
        CHECK_FALSE(per_head.latent());
        CHECK(latent.kv_width() == D);
        CHECK(per_head.kv_width() == c.num_kv_heads * c.head_dim);
        const auto info = describe_blocks(c);  // (massact info's "KV cache" line says so)
        const auto line = std::find_if(info.begin(), info.end(), [](const auto& kv) { return kv.first == "KV cache"; });
        REQUIRE(line != info.end());
        CHECK(line->second.find(std::to_string(D) + " floats per token each: the latent") != std::string::npos);
        Workspace ws;
        m.run(ids, latent, ws);
        m.run(ids, per_head, ws);
        // The same tokens held: [shared key; latent] per token and layer, no values - (rope + r) / (2 H hd) of the heads'.
        CHECK(latent.bytes() * static_cast<std::size_t>(2 * c.num_kv_heads * c.head_dim) == per_head.bytes() * static_cast<std::size_t>(D));
        for (int l = 0; l < c.num_layers; ++l) CHECK(latent.layer(l).v.cols() == 0);

        // Logits token by token and in chunks, and the attention pattern of every step, equal the full forward's.
        std::vector<float> full_pattern;
        Hooks keep;
        keep.add("blocks.1.attn.hook_pattern", [&](Activation& a) { full_pattern.assign(a.data, a.data + a.numel()); });
        const RowMatrixF full = m.forward(ids, keep);
        const double scale = std::max(1.0, static_cast<double>(full.cwiseAbs().maxCoeff()));
        const Index H = c.num_heads;
        double worst_pattern = 0;
        Index step = 0;  // the query position of the step in progress (token by token)
        Hooks compare;
        compare.add("blocks.1.attn.hook_pattern", [&](Activation& a) {
            REQUIRE(a.shape == std::vector<Index>{N, H, 1, step + 1});
            for (Index b = 0; b < N; ++b)
                for (Index h = 0; h < H; ++h)
                    for (Index k = 0; k <= step; ++k)
                        worst_pattern = std::max(worst_pattern, std::abs(double(a.data[(b * H + h) * (step + 1) + k]) -
                                                                         full_pattern[static_cast<std::size_t>(((b * H + h) * T + step) * T + k)]));
            ++step;
        });
        CHECK(test::max_abs_diff(decode(m, ids, {1}, {}, compare), full) / scale < 2e-5);
        CHECK(step == T);
        CHECK(worst_pattern < 2e-6);
        CHECK(test::max_abs_diff(decode(m, ids, {4, 1, 3}), full) / scale < 2e-5);
        CHECK(test::max_abs_diff(decode(m, ids, {1}, heads), full) / scale < 2e-5);
        // Held in f16 the latent stays close (each value rounded once).
        CachePolicy half;
        half.storage = kernels::KVFormat::F16;
        CHECK(test::max_abs_diff(decode(m, ids, {1}, half), full) / scale < 2e-3);

        // Hooks on the heads' keys or values would edit nothing a latent cache holds: refused, naming the way out.
        for (const char* site : {"blocks.0.attn.hook_k", "blocks.2.attn.hook_v", "blocks.1.attn.hook_rot_k"}) {
            Hooks h;
            h.add(site, [](Activation&) {});
            KVCache one(c, 1);
            test::expect_error([&] { m.run(ids.topRows(1), one, ws, h); }, {site, "may edit", "latent", "CachePolicy::latent = false"});
            CHECK(one.size() == 0);
            Hooks reader;  // (a reader sees the new tokens' heads, as with any cache)
            Index seen = 0;
            reader.observe(site, [&](Activation& a) { seen += a.shape[1]; });
            m.run(ids.topRows(1), one, ws, reader);
            CHECK(seen == T);
            one.clear();
            KVCache heads_one(c, 1, heads);
            m.run(ids.topRows(1), heads_one, ws, h);
            CHECK(heads_one.size() == T);
        }
        // Caches that move positions or quantize hold the heads; a cache is refused by a model of another shape.
        CHECK_FALSE(KVCache(c, 1, CachePolicy::streaming(1, 4)).latent());
        CHECK_FALSE(KVCache(c, 1, CachePolicy{0, 0, {}, {}, KVQuant::parse("kv4", "t")}).latent());
        const Transformer llama(test::model("tiny-llama"));
        KVCache other(c, 1);
        test::expect_error([&] { llama.run(ids.topRows(1), other, ws); }, {"does not fit"});
    }
}

TEST_CASE("a KV cache in f16 / bf16 equals a float cache fed keys and values rounded to 16 bits") {
    for (const char* name : {"tiny-llama", "tiny-gpt2"}) {
        INFO(name);
        const Transformer m(test::model(name));
        const TokenBatch ids = random_ids(2, 13, m.config().vocab_size, 11);
        for (kernels::KVFormat f : {kernels::KVFormat::F16, kernels::KVFormat::BF16}) {
            INFO(kernels::kv_format_name(f));
            // The keys attention reads (after RoPE where the model has it) and the values, rounded as the cache holds them.
            auto round16 = [f](Activation& a) {
                for (Index i = 0; i < a.numel(); ++i)
                    a.data[i] = f == kernels::KVFormat::BF16 ? bf16_to_float(float_to_bf16(a.data[i])) : f16_to_float(float_to_f16(a.data[i]));
            };
            Hooks hooks;
            hooks.add(m.config().has_rope() ? "blocks.*.attn.hook_rot_k" : "blocks.*.attn.hook_k", round16);
            hooks.add("blocks.*.attn.hook_v", round16);
            const RowMatrixF full = m.forward(ids);
            const double scale = std::max(1.0, static_cast<double>(full.cwiseAbs().maxCoeff()));
            CachePolicy pol;
            pol.storage = f;
            for (const std::vector<Index>& steps : {std::vector<Index>{1}, std::vector<Index>{5, 1, 2}}) {
                // The same path with the same rounding: equal up to float summation order.
                const RowMatrixF cached16 = decode(m, ids, steps, pol), fed = decode(m, ids, steps, {}, hooks);
                CHECK(test::max_abs_diff(cached16, fed) / scale < 1e-6);
                // Against the exact forward: one rounding of every key and value (2^-11 relative in f16, 2^-8 in bf16).
                const double err = test::max_abs_diff(cached16, full) / scale;
                CHECK(err > 0.0);
                CHECK(err < (f == kernels::KVFormat::F16 ? 2e-3 : 1.5e-2));
            }
            Workspace ws;
            KVCache c16(m.config(), 2, pol), c32(m.config(), 2);
            m.run(ids, c16, ws);
            m.run(ids, c32, ws);
            CHECK(2 * c16.bytes() == c32.bytes());
        }
    }
}

namespace {

/// KIVI / KVQuant's asymmetric quantization of one sequence's rows x [T, W] (stream order), written out in double:
/// lo, hi = min, max of a group; step = (hi - lo) / (2^bits - 1); x' = lo + step * clamp(round((x - lo) / step)).
/// Per token: groups of `cgroup` channels of each row from token `keep` on; per channel: each channel of the complete
/// groups of `tgroup` tokens from `keep` on (the tokens of an incomplete group unchanged). `tie` marks the values whose
/// (x - lo) / step lies within 1e-4 of a rounding boundary, where float and double may round apart.
std::vector<double> kivi_reference(const std::vector<float>& x, Index T, Index W, int bits, KVQuant::Axis axis, Index cgroup, Index tgroup,
                                   Index keep, std::vector<char>& tie) {
    std::vector<double> y(x.begin(), x.end());
    tie.assign(x.size(), 0);
    if (bits == 0) return y;  // (not quantized)
    const double L = std::pow(2.0, bits) - 1.0;
    auto group = [&](const std::vector<std::size_t>& at) {
        double lo = 1e300, hi = -1e300;
        for (auto i : at) lo = std::min(lo, y[i]), hi = std::max(hi, y[i]);
        const double step = (hi - lo) / L;
        if (step <= 0) return;
        for (auto i : at) {
            const double u = (y[i] - lo) / step;
            tie[i] = std::abs(u - std::floor(u) - 0.5) < 1e-4;
            y[i] = lo + step * std::min(L, std::max(0.0, std::round(u)));
        }
    };
    if (axis == KVQuant::Axis::Token) {
        for (Index t = keep; t < T; ++t)
            for (Index c0 = 0; c0 < W; c0 += cgroup) {
                std::vector<std::size_t> at;
                for (Index c = c0; c < std::min(W, c0 + cgroup); ++c) at.push_back(static_cast<std::size_t>(t * W + c));
                group(at);
            }
    } else {
        for (Index t0 = keep; t0 + tgroup <= T; t0 += tgroup)
            for (Index c = 0; c < W; ++c) {
                std::vector<std::size_t> at;
                for (Index t = t0; t < t0 + tgroup; ++t) at.push_back(static_cast<std::size_t>(t * W + c));
                group(at);
            }
    }
    return y;
}

}  // namespace

TEST_CASE("KV-cache quantization: the held keys and values equal KIVI's formula written out in double; pre-RoPE keys, kept sinks") {
    struct Case {
        std::string model, spec;
    };
    const std::vector<Case> cases = {
        {"tiny-llama", "kv4,group-tokens=4,keep-first=1"},                                  // KIVI: keys per channel, values per token
        {"tiny-llama", "k2,k-per-token,group-channels=8,v3,v-per-channel,group-tokens=5,pre-rope"},  // KVQuant-like: keys before RoPE
        {"tiny-llama", "k8,pre-rope,group-tokens=3,keep-first=2"},
        {"tiny-gpt2", "k4,v2,v-per-channel,group-tokens=6,keep-first=3"},                   // no RoPE: pre-rope would change nothing
    };
    for (const auto& cs : cases) {
        CAPTURE(cs.model);
        CAPTURE(cs.spec);
        const Transformer m(test::model(cs.model));
        const ModelConfig& c = m.config();
        const KVQuant q = KVQuant::parse(cs.spec, "test");
        CHECK(KVQuant::parse(q.name(), "test").name() == q.name());  // the canonical spec reads back
        const Index N = 2, T = 17, W = c.num_kv_heads * c.head_dim, L = c.num_layers;
        const TokenBatch ids = random_ids(N, T, c.vocab_size, 23);
        CachePolicy pol;
        pol.quant = q;
        KVCache cache(c, N, pol);
        Workspace ws;
        // the keys before RoPE (hook_k), as attention reads them (hook_rot_k) and the values, per layer, [N, T, W]
        std::vector<std::vector<float>> raw(static_cast<std::size_t>(L), std::vector<float>(static_cast<std::size_t>(N * T * W))), rot = raw, val = raw;
        Index t0 = 0, n = 0;
        auto keep = [&](std::vector<std::vector<float>>& into) {
            return [=, &into, &t0, &n](Activation& a) {
                for (Index b = 0; b < N; ++b)
                    std::copy_n(a.data + b * n * W, n * W, into[static_cast<std::size_t>(a.layer)].begin() + (b * T + t0) * W);
            };
        };
        Hooks hooks;
        hooks.add("blocks.*.attn.hook_k", keep(raw));
        hooks.add(c.has_rope() ? "blocks.*.attn.hook_rot_k" : "blocks.*.attn.hook_k", keep(rot));
        hooks.add("blocks.*.attn.hook_v", keep(val));
        for (const Index step : {3, 1, 4, 2, 5, 2}) {
            n = step;
            m.run(ids.middleCols(t0, n), cache, ws, hooks);
            t0 += n;
        }
        REQUIRE(t0 == T);
        const bool pre = q.keys_before_rope && c.has_rope();
        CHECK(cache.keeps_raw_keys() == pre);
        const auto table = c.has_rope() ? kernels::make_rope_table(c.rope[0].inv_freq(T), 0, T) : kernels::RopeTable{};
        const Index cg = q.channel_group > 0 ? q.channel_group : c.head_dim;
        std::size_t compared = 0, ties = 0, changed = 0;
        double worst = 0;
        for (Index l = 0; l < L; ++l) {
            const auto& C = cache.layer(static_cast<int>(l));
            for (Index b = 0; b < N; ++b) {
                auto rows = [&](const std::vector<float>& all) {
                    return std::vector<float>(all.begin() + b * T * W, all.begin() + (b + 1) * T * W);
                };
                std::vector<char> tie_v, tie_k;
                const auto want_v = kivi_reference(rows(val[static_cast<std::size_t>(l)]), T, W, q.value_bits, q.value_axis, cg, q.token_group,
                                                   q.keep_first, tie_v);
                auto want_k = kivi_reference(rows((pre ? raw : rot)[static_cast<std::size_t>(l)]), T, W, q.key_bits, q.key_axis, cg,
                                             q.token_group, q.keep_first, tie_k);
                std::vector<double> want_rot = want_k;
                if (pre) {  // the quantized key before RoPE, rotated as attention reads it
                    RowMatrixF k(T, W);
                    for (Index i = 0; i < T * W; ++i) k.data()[i] = static_cast<float>(want_k[static_cast<std::size_t>(i)]);
                    kernels::rope<float>(k, c.num_kv_heads, table);
                    for (Index i = 0; i < T * W; ++i) want_rot[static_cast<std::size_t>(i)] = k.data()[i];
                }
                for (Index t = 0; t < T; ++t)
                    for (Index i = 0; i < W; ++i) {
                        const auto at = static_cast<std::size_t>(t * W + i);
                        const Index r = cache.row(b, t);
                        ++compared;
                        if (tie_v[at] || tie_k[at]) {
                            ++ties;
                            continue;
                        }
                        const double scale = 1e-5 * (1.0 + std::abs(want_rot[at]) + std::abs(want_v[at]));
                        worst = std::max({worst, std::abs(C.v(r, i) - want_v[at]) / scale, std::abs(C.k(r, i) - want_rot[at]) / scale});
                        if (pre) worst = std::max(worst, std::abs(C.k_raw(r, i) - want_k[at]) / scale);
                        changed += want_v[at] != val[static_cast<std::size_t>(l)][static_cast<std::size_t>(b * T * W) + at] ||
                                   want_rot[at] != rot[static_cast<std::size_t>(l)][static_cast<std::size_t>(b * T * W) + at];
                        if (t < q.keep_first) {  // IntactKV: the first tokens as computed, exactly
                            CHECK(C.v(r, i) == val[static_cast<std::size_t>(l)][static_cast<std::size_t>(b * T * W) + at]);
                            CHECK(C.k(r, i) == rot[static_cast<std::size_t>(l)][static_cast<std::size_t>(b * T * W) + at]);
                        }
                    }
            }
        }
        MESSAGE(cs.model << " " << q.name() << ": " << compared << " values, " << ties << " at a rounding tie, worst " << worst
                         << " (units of 1e-5 relative)");
        CHECK(worst < 1.0);
        CHECK(ties < compared / 1000);
        CHECK(changed > compared / 4);  // the quantization did move most values
    }
}

TEST_CASE("KV-cache quantization: 8 bits barely moves the stream's perplexity, 2 bits more; refusals name the setting") {
    const Transformer m(test::model("tiny-llama"));
    std::vector<std::int64_t> ids = stream_ids();
    ids.resize(384);
    analysis::StreamOptions o;
    o.policy = analysis::StreamPolicy::Dense;
    o.chunk = 64;
    o.sink_attention = false;
    const double ppl = analysis::stream_nll(m, ids, o).ppl;
    o.kv_quant = KVQuant::parse("kv8", "test");
    const double ppl8 = analysis::stream_nll(m, ids, o).ppl;
    o.kv_quant = KVQuant::parse("kv2,group-tokens=32", "test");
    const double ppl2 = analysis::stream_nll(m, ids, o).ppl;
    MESSAGE("tiny-llama, 384 tokens: float " << ppl << ", kv8 " << ppl8 << ", kv2 " << ppl2);
    CHECK(std::abs(ppl8 / ppl - 1.0) < 0.01);
    CHECK(ppl2 > ppl8);
    // StreamingLLM's cache with keys quantized before RoPE: held keys rotated again from quantized keys
    o.policy = analysis::StreamPolicy::Cache;
    o.sinks = 4;
    o.window = 60;
    o.kv_quant = KVQuant::parse("kv8,pre-rope,keep-first=4", "test");
    const double cached8 = analysis::stream_nll(m, ids, o).ppl;
    o.kv_quant = {};
    const double cached = analysis::stream_nll(m, ids, o).ppl;
    CHECK(std::abs(cached8 / cached - 1.0) < 0.01);
    o.kv_quant = KVQuant::parse("kv4", "test");
    test::expect_error([&] { analysis::stream_nll(m, ids, o); }, {"after RoPE", "pre-rope"});
    o.policy = analysis::StreamPolicy::Recompute;
    o.sinks = 0;
    test::expect_error([&] { analysis::stream_nll(m, ids, o); }, {"recompute", "without a KV cache"});
    test::expect_error([] { KVQuant::parse("k5", "--kv-quant"); }, {"--kv-quant", "k5", "2, 3, 4 or 8"});
    test::expect_error([] { KVQuant::parse("kv4,group-tokens=0", "--kv-quant"); }, {"group-tokens=0", ">= 1"});
    test::expect_error([] { KVQuant::parse("kv4,bogus", "--kv-quant"); }, {"\"bogus\"", "not a KV quantization setting"});
    test::expect_error([] { KVQuant::parse("pre-rope", "--kv-quant"); }, {"quantizes neither"});
    CachePolicy half;
    half.storage = kernels::KVFormat::F16;
    half.quant = KVQuant::parse("kv4", "test");
    test::expect_error([&] { KVCache(m.config(), 1, half); }, {"decoded values in f32", "f16"});
    test::expect_error([&] { KVCache(load_config(test::data("families/mamba2")), 1, CachePolicy{0, 0, {}, {}, KVQuant::parse("kv4", "t")}); },
                       {"no attention layer"});
}

TEST_CASE("an incremental forward's hooks see the new rows, and the pattern over the whole cache") {
    const Transformer m(test::model("tiny-llama"));
    const TokenBatch ids = random_ids(1, 9, m.config().vocab_size, 3);
    const auto full = run_with_cache(m, ids, {"blocks.3.hook_resid_post", "blocks.3.attn.hook_pattern"});
    const auto& resid = full.at("blocks.3.hook_resid_post");
    const auto& pattern = full.at("blocks.3.attn.hook_pattern");
    const Index d = m.config().hidden_size, H = m.config().num_heads;
    KVCache cache(m.config());
    Workspace ws;
    m.run(ids.leftCols(6), cache, ws);
    int calls = 0;
    Hooks hooks;
    hooks.add("blocks.3.hook_resid_post", [&](Activation& a) {
        ++calls;
        REQUIRE(a.shape == std::vector<Index>{1, 3, d});
        for (Index i = 0; i < 3 * d; ++i) CHECK(a.data[i] == doctest::Approx(resid.data[static_cast<std::size_t>(6 * d + i)]).epsilon(1e-4).scale(1));
    });
    hooks.add("blocks.3.attn.hook_pattern", [&](Activation& a) {
        ++calls;
        REQUIRE(a.shape == std::vector<Index>{1, H, 3, 9});
        for (Index h = 0; h < H; ++h)
            for (Index t = 0; t < 3; ++t)
                for (Index j = 0; j < 9; ++j)
                    CHECK(a.data[(h * 3 + t) * 9 + j] ==
                          doctest::Approx(pattern.data[static_cast<std::size_t>((h * 9 + 6 + t) * 9 + j)]).epsilon(1e-4).scale(1e-6));
    });
    m.run(ids.rightCols(3), cache, ws, hooks);
    CHECK(calls == 2);
    CHECK(m.hook_shape("blocks.3.attn.hook_pattern", 1, 3, {}, 9) == std::vector<Index>{1, H, 3, 9});
}

TEST_CASE("eviction keeps S sinks and the W most recent; positions become the index in the cache") {
    const Transformer m(test::model("tiny-llama"));
    const TokenBatch ids = random_ids(1, 20, m.config().vocab_size, 5);
    KVCache cache(m.config(), 1, CachePolicy::streaming(2, 5));
    Workspace ws;
    for (Index t = 0; t < 20; ++t) {
        m.run(ids.middleCols(t, 1), cache, ws);
        const Index held = std::min<Index>(t + 1, 7);
        REQUIRE(cache.size() == held);
        std::vector<Index> want;
        for (Index j = 0; j < std::min<Index>(t + 1, 2); ++j) want.push_back(j);
        for (Index j = std::max<Index>(2, t + 1 - 5); j <= t; ++j) want.push_back(j);
        CHECK(cache.held() == want);
        CHECK(cache.position(held - 1) == held - 1);
    }
    // Every held key is the stored key before RoPE, rotated for its index in the cache.
    const auto& L = cache.layer(0);
    const auto table = kernels::make_rope_table(m.config().rope[0].inv_freq(8), 0, 8);
    for (Index j = 0; j < 7; ++j) {
        std::vector<float> k(L.k_raw.row(j).data(), L.k_raw.row(j).data() + L.k_raw.cols());
        for (Index h = 0; h < m.config().num_kv_heads; ++h)
            kernels::rope_apply_head<float>(k.data() + h * 32, table.cos.row(j).data(), table.sin.row(j).data(), 16, kernels::RopeLayout::RotateHalf);
        for (Index i = 0; i < L.k.cols(); ++i) CHECK(L.k(j, i) == doctest::Approx(k[static_cast<std::size_t>(i)]).epsilon(1e-6).scale(1e-6));
    }
    // Layer 0's key of a token depends on the token and its position only: a token moved to index j has
    // the key a full forward gives the held tokens at position j.
    TokenBatch held(1, 7);
    for (Index j = 0; j < 7; ++j) held(0, j) = ids(0, cache.held()[static_cast<std::size_t>(j)]);
    const auto full = run_with_cache(m, held, {"blocks.0.attn.hook_rot_k"});
    const auto& rk = full.at("blocks.0.attn.hook_rot_k").data;
    for (Index j = 0; j < 7; ++j)
        for (Index i = 0; i < L.k.cols(); ++i) CHECK(L.k(j, i) == doctest::Approx(rk[static_cast<std::size_t>(j * L.k.cols() + i)]).epsilon(1e-4).scale(1e-3));
}

TEST_CASE("a KV cache refuses what it cannot do, and a failed step leaves it as it was") {
    const Transformer m(test::model("tiny-llama"));
    test::expect_error([&] { KVCache(m.config(), 1, {4, 0, CachePolicy::Positions::CacheIndex}); }, {"sink tokens need a window"});
    test::expect_error([&] { KVCache(m.config(), 0); }, {"batch size 0"});
    KVCache cache(m.config(), 1, CachePolicy::streaming(1, 3));
    Workspace ws;
    test::expect_error([&] { m.run(random_ids(2, 1, 100, 1), cache, ws); }, {"KV cache does not fit", "holds 1 sequences, not 2"});
    m.run(random_ids(1, 2, 100, 1), cache, ws);
    test::expect_error([&] { m.run(random_ids(1, 4, 100, 1), cache, ws); }, {"4 tokens", "window of 3"});
    TokenBatch bad(1, 1);
    bad << 99999;
    test::expect_error([&] { m.run(bad, cache, ws); }, {"token id 99999"});
    RunOptions early;
    early.last_layer = 1;
    test::expect_error([&] { m.run(random_ids(1, 1, 100, 1), cache, ws, {}, early); }, {"last_layer", "KV cache"});
    CHECK(cache.size() == 2);
    CHECK(cache.seen() == 2);
    const Transformer gpt2(test::model("tiny-gpt2"));
    KVCache dense(gpt2.config());
    const Index P = gpt2.config().max_positions;
    for (Index t = 0; t < P; t += 64) gpt2.run(random_ids(1, std::min<Index>(64, P - t), 100, 2), dense, ws);
    test::expect_error([&] { gpt2.run(random_ids(1, 1, 100, 2), dense, ws); }, {"position " + std::to_string(P), "learned positions"});
}

TEST_CASE("Gated DeltaNet layers: the recurrent state and convolution history live in the cache; a failed step leaves them") {
    const Transformer m(test::data("families/qwen3_5_text"));
    const TokenBatch a = random_ids(2, 5, m.config().vocab_size, 3), b = random_ids(2, 3, m.config().vocab_size, 4);
    TokenBatch ab(2, 8);
    ab << a, b;
    const RowMatrixF full = m.forward(ab);
    Workspace ws;
    KVCache cache(m.config(), 2);
    CHECK(cache.bytes() > 0);  // (two layers' states and histories, no keys yet)
    m.run(a, cache, ws);
    Hooks boom;  // a hook that throws in the last layer, after every Gated DeltaNet layer has run
    boom.add("blocks.3.hook_resid_post", [](Activation&) { throw Error("stop"); });
    test::expect_error([&] { m.run(b, cache, ws, boom); }, {"stop"});
    CHECK(cache.size() == 5);
    RowMatrixF want(6, full.cols());  // rows [N*T]: sequence 0's last 3, then sequence 1's
    want << full.middleRows(5, 3), full.middleRows(13, 3);
    const double scale = std::max(1.0, static_cast<double>(full.cwiseAbs().maxCoeff()));
    const RowMatrixF last = m.run(b, cache, ws);
    CHECK(test::max_abs_diff(last, want) / scale < 2e-5);
    // clear() starts over from zero states: the same logits again
    cache.clear();
    m.run(a, cache, ws);
    CHECK(test::max_abs_diff(m.run(b, cache, ws), last) == 0);
    // a cache made for an attention-only model of the same shape does not fit
    const Transformer dense(test::data("families/qwen3_next_gated_dense"));
    KVCache other(dense.config(), 2);
    test::expect_error([&] { m.run(a, other, ws); }, {"KV cache does not fit", "is a recurrent layer in the model"});
}

TEST_CASE("StreamingLLM on tiny-llama: the cache policies match the float64 references over 2048 tokens") {
    const Transformer m(test::model("tiny-llama"));
    const auto ids = stream_ids();
    REQUIRE(ids.size() == 2048);
    // val_stream_ids is BOS + val.txt encoded as one text by the model's tokenizer.
    const auto tok = text::Tokenizer::from_file(test::model("tiny-llama") + "/tokenizer.json");
    std::ifstream f(std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt");
    const std::string val((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const auto enc = tok.encode(val, true);
    REQUIRE(enc.size() > 2048);
    CHECK(std::equal(ids.begin(), ids.end(), enc.begin()));
    for (const char* name : {"cache_4_60", "cache_0_64"}) {
        INFO(name);
        const auto ref = read_json(test::data(std::string("stream/") + name + ".json"));
        analysis::StreamOptions o;
        o.policy = analysis::parse_policy(ref.at("policy").get<std::string>());
        o.sinks = ref.at("sinks").get<Index>();
        o.window = ref.at("window").get<Index>();
        const auto r = analysis::stream_nll(m, ids, o);
        const auto want = ref.at("nll").get<std::vector<double>>();
        REQUIRE(r.nll.size() == want.size());
        double worst = 0;
        for (std::size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(r.nll[i] - want[i]));
        CHECK(worst < 2e-3);
        CHECK(std::abs(r.ppl / ref.at("ppl").get<double>() - 1) < 1e-4);
        REQUIRE(r.sink_attention.size() == want.size());
        for (double a : r.sink_attention) CHECK((a >= 0 && a <= 1 + 1e-6));
    }
}

TEST_CASE("dense and recompute equal full forwards over their windows") {
    const Transformer m(test::model("tiny-llama"));
    auto ids = stream_ids();
    ids.resize(300);
    const Index V = m.config().vocab_size;
    // Dense: the full forward of all 300 tokens.
    analysis::StreamOptions o;
    o.policy = analysis::StreamPolicy::Dense;
    o.chunk = 128;
    const auto dense = analysis::stream_nll(m, ids, o);
    TokenBatch all(1, 300);
    for (Index i = 0; i < 300; ++i) all(0, i) = ids[static_cast<std::size_t>(i)];
    const RowMatrixF logits = m.forward(all);
    for (Index t = 0; t + 1 < 300; ++t)
        CHECK(dense.nll[static_cast<std::size_t>(t)] == doctest::Approx(-analysis::log_prob(logits.row(t).data(), V, ids[static_cast<std::size_t>(t + 1)])).epsilon(1e-4));
    // Recompute W: prediction t + 1 from the W tokens before it, positions 0..W-1 (naive: one forward each).
    o.policy = analysis::StreamPolicy::Recompute;
    o.sinks = 0;
    o.window = 16;
    o.batch = 7;
    const auto rec = analysis::stream_nll(m, ids, o);
    REQUIRE(rec.nll.size() == 299);
    for (Index t = 0; t + 1 < 300; t += 13) {
        const Index from = std::max<Index>(0, t + 1 - 16);
        const RowMatrixF l = m.forward(all.middleCols(from, t + 1 - from));
        CHECK(rec.nll[static_cast<std::size_t>(t)] == doctest::Approx(-analysis::log_prob(l.row(l.rows() - 1).data(), V, ids[static_cast<std::size_t>(t + 1)])).epsilon(1e-4));
    }
    test::expect_error([&] { o.sinks = 4; analysis::stream_nll(m, ids, o); }, {"recompute policy keeps no sink tokens"});
}

TEST_CASE("generate: greedy continues with the argmax of a full forward; sampling is seeded") {
    const Transformer m(test::model("tiny-llama"));
    std::vector<std::int64_t> prompt = {1, 1471, 378, 275, 2947};
    analysis::GenerateOptions o;
    o.max_tokens = 12;
    const auto out = analysis::generate(m, prompt, o);
    REQUIRE(out.size() == 12);
    std::vector<std::int64_t> seq = prompt;
    for (std::int64_t next : out) {
        TokenBatch b(1, static_cast<Index>(seq.size()));
        for (std::size_t i = 0; i < seq.size(); ++i) b(0, static_cast<Index>(i)) = seq[i];
        const RowMatrixF l = m.forward(b);
        const float* last = l.row(l.rows() - 1).data();
        CHECK(next == std::max_element(last, last + m.config().vocab_size) - last);
        seq.push_back(next);
    }
    o.temperature = 0.8;
    o.seed = 42;
    const auto a = analysis::generate(m, prompt, o), b = analysis::generate(m, prompt, o);
    CHECK(a == b);
    // Sampling draws from softmax(logits / temperature).
    const float logits[3] = {1.0f, 2.0f, 0.0f};
    std::mt19937_64 rng(1);
    std::vector<int> hits(3);
    for (int i = 0; i < 20000; ++i) ++hits[static_cast<std::size_t>(analysis::sample_token(logits, 3, 0.5, rng))];
    const double z = std::exp(2.0) + std::exp(4.0) + 1.0;
    CHECK(hits[0] / 20000.0 == doctest::Approx(std::exp(2.0) / z).epsilon(0.05));
    CHECK(hits[1] / 20000.0 == doctest::Approx(std::exp(4.0) / z).epsilon(0.02));
    CHECK(analysis::sample_token(logits, 3, 0.0, rng) == 1);
    // A stop token ends the generation (and is returned); on_token can stop it too.
    o.temperature = 0;
    o.stop = {out[3]};
    CHECK(analysis::generate(m, prompt, o).size() == std::size_t(std::find(out.begin(), out.end(), out[3]) - out.begin() + 1));
    o.stop.clear();
    int seen = 0;
    CHECK(analysis::generate(m, prompt, o, [&](std::int64_t) { return ++seen < 5; }).size() == 5);
    // With a streaming cache the prompt is fed as the policy allows: longer prompts than the cache work.
    o.cache = CachePolicy::streaming(2, 4);
    CHECK(analysis::generate(m, std::vector<std::int64_t>(prompt.begin(), prompt.end()), o).size() == 12);
}

// Interventions against the float64 reference findings (tests/data/README.md):
// ablation perplexities, the attention shift on p0, injection factors, and the super weight.
#include "common.hpp"

#include <set>

using namespace massact;
using namespace massact::analysis;

namespace {

TokenBatch tensor_ids(const io::SafetensorsFile& f, const std::string& name) {
    const auto& t = f.tensor(name);
    const auto v = t.to_int64();
    TokenBatch b(t.shape.size() == 1 ? 1 : t.shape[0], t.shape.back());
    for (Index i = 0; i < b.size(); ++i) b.data()[i] = v[static_cast<std::size_t>(i)];
    return b;
}

/// The reference findings (tests/data/tiny-llama.findings.json).
const nlohmann::json& findings() {
    static const nlohmann::json j = io::read_json_file(test::data("tiny-llama.findings.json"));
    return j;
}

std::vector<double> numbers(const nlohmann::json& j) { return j.get<std::vector<double>>(); }

std::vector<Index> massive_dims() { return findings()["massive"]["dims"].get<std::vector<Index>>(); }

Intervention five_dims(Intervention::Mode mode) {
    Intervention iv;
    iv.site = Intervention::resid_post(findings()["massive"]["layer"].get<int>());
    iv.tokens = TokenSelection::at({0});
    iv.dims = massive_dims();
    iv.mode = mode;
    return iv;
}

struct Fixture {
    Transformer model{test::model("tiny-llama")};
    io::SafetensorsFile ref{test::data("tiny-llama.ref.safetensors")};
};

}  // namespace

TEST_CASE("zeroing the massive activation raises perplexity to 16.058; setting it to its mean leaves 11.982") {
    Fixture f;
    const TokenBatch ids = tensor_ids(f.ref, "ppl.input_ids");
    const auto stats = io::read_json_file(test::data("tiny-llama.stats.json"))["intervention"];
    CompareOptions fast;
    fast.tokens = {};
    fast.decomposition = false;
    Intervention zero = five_dims(Intervention::Mode::Zero);
    zero.validate(f.model);
    const auto z = compare(f.model, ids, make_hooks({zero}), fast);
    CHECK(std::abs(z.ppl_intervened / stats["ppl_zero"].get<double>() - 1) < 1e-3);
    CHECK(std::abs(z.ppl_original / stats["ppl_original"].get<double>() - 1) < 5e-4);
    CHECK(z.kl_mean > 0.1);
    Intervention mean = five_dims(Intervention::Mode::Mean);
    mean.values = dataset_mean(f.model, ids, mean);
    const auto expect = stats["mean_values"].get<std::vector<double>>();
    for (std::size_t i = 0; i < 5; ++i) CHECK(mean.values[i] == doctest::Approx(expect[i]).epsilon(1e-3));
    const auto m = compare(f.model, ids, make_hooks({mean}), fast);
    CHECK(std::abs(m.ppl_intervened / stats["ppl_mean"].get<double>() - 1) < 1e-3);
    CHECK(m.kl_mean < 1e-6);
}

TEST_CASE("attention shift on p0: the sink survives the ablation and grows in layers 3-6") {
    Fixture f;
    const TokenBatch p0 = tensor_ids(f.ref, "p0.input_ids");
    const auto c = compare(f.model, p0, make_hooks({five_dims(Intervention::Mode::Zero)}));
    const auto before = Comparison::head_mean(c.attn_original)[0], after = Comparison::head_mean(c.attn_intervened)[0];
    const auto ref_before = numbers(findings()["attention_shift_p0"]["before"]);
    const auto ref_after = numbers(findings()["attention_shift_p0"]["after"]);
    for (std::size_t l = 0; l < 8; ++l) {
        CAPTURE(l);
        CHECK(std::abs(before[l] - ref_before[l]) < 1e-3);
        CHECK(std::abs(after[l] - ref_after[l]) < 1e-3);
    }
    // Layers before the intervention are untouched; the decomposition is measured.
    CHECK(c.decomp_original[1].sink_norm == doctest::Approx(c.decomp_intervened[1].sink_norm));
    CHECK(c.decomp_intervened[3].sink_norm > c.decomp_original[3].sink_norm);
    CHECK(c.decomp_original[4].sink_constancy > 0.99);  // v of <s> is one vector: the sink part is a constant direction
}

TEST_CASE("injection: position 0's massive activation copied into position 30 draws attention to it") {
    Fixture f;
    const TokenBatch ids = tensor_ids(f.ref, "ppl.input_ids").topRows(8).leftCols(64);
    const auto& inj = findings()["injection"];
    const int layer = inj["layer"].get<int>(), from = inj["from"].get<int>(), to = inj["to"].get<int>();
    const auto five = inject(f.model, ids, layer, from, to, massive_dims());
    const auto whole = inject(f.model, ids, layer, from, to, {});
    const auto ref5 = numbers(inj["factor_five_dims"]), refall = numbers(inj["factor_whole_state"]);
    for (int l = 3; l < 8; ++l) {
        CAPTURE(l);
        CHECK(std::abs(five.median_factor[static_cast<std::size_t>(l)] / ref5[static_cast<std::size_t>(l - 3)] - 1) < 0.02);
        CHECK(std::abs(whole.median_factor[static_cast<std::size_t>(l)] / refall[static_cast<std::size_t>(l - 3)] - 1) < 0.02);
    }
    for (int l = 0; l <= 2; ++l) CHECK(five.median_factor[static_cast<std::size_t>(l)] == doctest::Approx(1.0));
}

TEST_CASE("super weight: layer 2, down_proj[215, 46]; zeroing it shrinks the massive activation") {
    Fixture f;
    const TokenBatch p0 = tensor_ids(f.ref, "p0.input_ids");
    const auto found = find_super_weights(f.model, p0);
    const auto& ref = findings()["super_weight"];
    REQUIRE(found.size() == 1);
    const auto& s = found[0];
    CHECK(s.layer == ref["layer"].get<int>());
    CHECK(s.row == ref["row"].get<Index>());
    CHECK(s.col == ref["col"].get<Index>());
    CHECK(s.token == ref["token"].get<Index>());
    CHECK(s.input == doctest::Approx(ref["input"].get<double>()).epsilon(0.01));
    CHECK(s.output == doctest::Approx(ref["output"].get<double>()).epsilon(0.01));
    CHECK(s.contribution == doctest::Approx(ref["contribution"].get<double>()).epsilon(0.01));
    float v2 = 0, v7 = 0;
    Hooks h = zero_weight_hooks(s);
    h.add("blocks.2.hook_resid_post", [&](Activation& a) { v2 = a.data[215]; });
    h.add("blocks.7.hook_resid_post", [&](Activation& a) { v7 = a.data[215]; });
    f.model.forward(p0, h);
    CHECK(v2 == doctest::Approx(ref["dim215_after_zeroing_block2"].get<double>()).epsilon(0.01));
    CHECK(v7 == doctest::Approx(ref["dim215_after_zeroing_block7"].get<double>()).epsilon(0.01));
}

TEST_CASE("interventions compose with scan: an ablated model has no massive activation at dim 215 in layer 2") {
    Fixture f;
    const TokenBatch ids = tensor_ids(f.ref, "ppl.input_ids").topRows(8);
    ScanOptions opt;
    Intervention all = five_dims(Intervention::Mode::Zero);
    all.site = Intervention::resid_post(7);  // after the last block: nothing downstream can rebuild it
    opt.hooks = make_hooks({five_dims(Intervention::Mode::Zero), all});
    const auto r = scan(f.model, ids, opt);
    CHECK(r.layers[2].dominant_dim() != 215);
    CHECK(r.layers[7].dominant_dim() != 215);
    const auto plain = scan(f.model, ids);
    CHECK(plain.layers[2].dominant_dim() == 215);
    CHECK(r.layers[2].top1_mean < 0.5 * plain.layers[2].top1_mean);
}

TEST_CASE("bad intervention specifications are refused") {
    Fixture f;
    Intervention iv = five_dims(Intervention::Mode::Zero);
    iv.dims = {256};
    test::expect_error([&] { iv.validate(f.model); }, {"dim 256 out of range [0, 256)"});
    iv = five_dims(Intervention::Mode::Zero);
    iv.site = "blocks.9.hook_resid_post";
    test::expect_error([&] { iv.validate(f.model); }, {"unknown hook site"});
    iv = five_dims(Intervention::Mode::Mean);
    test::expect_error([&] { iv.validate(f.model); }, {"mean value per dim"});
    iv = five_dims(Intervention::Mode::Zero);
    iv.tokens = TokenSelection::at({});
    test::expect_error([&] { iv.validate(f.model); }, {"empty token selection"});
    test::expect_error([&] { inject(f.model, tensor_ids(f.ref, "p0.input_ids"), 8, 0, 3, {}); }, {"layer 8 out of range"});
}

TEST_CASE("massive values in Q and K: the profile equals double loops; frequencies, shares and the picked dims as defined") {
    const Transformer m(test::model("tiny-llama"));
    const io::SafetensorsFile ref(test::data("tiny-llama.ref.safetensors"));
    const auto v = ref.tensor("ppl.input_ids").to_int64();
    TokenBatch ids(3, 40);
    for (Index b = 0; b < 3; ++b)
        for (Index t = 0; t < 40; ++t) ids(b, t) = v[static_cast<std::size_t>(b * 256 + t)];
    const auto p = analysis::qk_profile(m, ids, 2);  // (two forwards: the sums span batches)
    REQUIRE(p.layers.size() == 8);
    CHECK(p.tokens == 120);
    // mean |x| and mean x of layer 3's q (before RoPE) and rot_k (after), straight from the hooks in double
    std::vector<float> q, rk;
    Hooks h;
    h.add("blocks.3.attn.hook_q", [&](Activation& a) { q.assign(a.data, a.data + a.numel()); });
    h.add("blocks.3.attn.hook_rot_k", [&](Activation& a) { rk.assign(a.data, a.data + a.numel()); });
    m.forward(ids, h);
    const Index H = 8, KV = 4, hd = 32;
    double eq = 0, em = 0, ek = 0;
    for (Index i = 0; i < H * hd; ++i) {
        double sa = 0, s = 0;
        for (Index r = 0; r < 120; ++r) {
            sa += std::abs(double(q[static_cast<std::size_t>(r * H * hd + i)]));
            s += q[static_cast<std::size_t>(r * H * hd + i)];
        }
        eq = std::max(eq, std::abs(sa / 120 - p.layers[3].q.mean_abs[static_cast<std::size_t>(i)]));
        em = std::max(em, std::abs(s / 120 - p.layers[3].q.mean[static_cast<std::size_t>(i)]));
    }
    for (Index i = 0; i < KV * hd; ++i) {
        double sa = 0;
        for (Index r = 0; r < 120; ++r) sa += std::abs(double(rk[static_cast<std::size_t>(r * KV * hd + i)]));
        ek = std::max(ek, std::abs(sa / 120 - p.layers[3].rot_k.mean_abs[static_cast<std::size_t>(i)]));
    }
    CHECK(eq < 1e-9);
    CHECK(em < 1e-9);
    CHECK(ek < 1e-9);
    // RoPE pairs (d, d + 16) share inverse frequency 10000^(-2j/32), j = d mod 16
    for (Index d : {0, 5, 16, 21, 31})
        CHECK(p.layers[0].frequency[static_cast<std::size_t>(d)] == doctest::Approx(std::pow(10000.0, -2.0 * double(d % 16) / 32)).epsilon(1e-6));
    // The low-frequency share: 1 when all of |x| sits in the slower half, 0.5 when spread evenly
    analysis::QKSiteProfile s;
    s.heads = 1;
    s.head_dim = 32;
    s.mean_abs.assign(32, 1.0);
    CHECK(analysis::detail::low_frequency_share(s, p.layers[0].frequency) == doctest::Approx(0.5));
    s.mean_abs.assign(32, 0.0);
    s.mean_abs[9] = s.mean_abs[31] = 7.0;  // j = 9 and 15: slower than the median frequency
    CHECK(analysis::detail::low_frequency_share(s, p.layers[0].frequency) == doctest::Approx(1.0));
    s.mean_abs[9] = 0.0;
    s.mean_abs[2] = 7.0;  // j = 2: a fast pair
    CHECK(analysis::detail::low_frequency_share(s, p.layers[0].frequency) == doctest::Approx(0.5));
    // The top pick takes each head's largest mean |q|, the random pick m distinct dims per head, seeded; mean values
    analysis::QKIntervention spec;
    spec.m = 3;
    spec.on_k = false;
    const auto top = analysis::qk_interventions(m.config(), p, spec);
    REQUIRE(top.size() == 8);
    CHECK(top[3].site == "blocks.3.attn.hook_q");
    REQUIRE(top[3].dims.size() == static_cast<std::size_t>(H * 3));
    for (Index hh = 0; hh < H; ++hh) {
        std::vector<double> mags;
        for (Index d = 0; d < hd; ++d) mags.push_back(p.layers[3].q.abs_at(hh, d));
        std::sort(mags.rbegin(), mags.rend());
        for (Index k = 0; k < 3; ++k) {
            const Index flat = top[3].dims[static_cast<std::size_t>(hh * 3 + k)];
            CHECK(flat / hd == hh);
            CHECK(p.layers[3].q.abs_at(hh, flat % hd) >= mags[2]);
            CHECK(top[3].values[static_cast<std::size_t>(hh * 3 + k)] == static_cast<float>(p.layers[3].q.mean[static_cast<std::size_t>(flat)]));
        }
    }
    spec.pick = analysis::QKIntervention::Pick::Random;
    spec.seed = 11;
    const auto r1 = analysis::qk_interventions(m.config(), p, spec), r2 = analysis::qk_interventions(m.config(), p, spec);
    spec.seed = 12;
    const auto r3 = analysis::qk_interventions(m.config(), p, spec);
    CHECK(r1[0].dims == r2[0].dims);
    CHECK(r1[0].dims != r3[0].dims);
    for (const auto& iv : r1) {
        std::set<Index> distinct(iv.dims.begin(), iv.dims.end());
        CHECK(distinct.size() == iv.dims.size());
    }
    spec.m = 0;
    test::expect_error([&] { analysis::qk_interventions(m.config(), p, spec); }, {"qk: m 0 dims per head"});
    // The measured runs: the original perplexity is the model's; zeroing every dim of q makes attention uniform
    analysis::QKIntervention all;
    all.m = hd;
    all.zero = true;
    all.on_k = false;
    const auto res = analysis::qk_massive_values(m, ids, all, 1, 4);
    CHECK(res.ppl_original == doctest::Approx(analysis::perplexity(m, ids).ppl).epsilon(1e-9));
    std::vector<float> pat;
    Hooks zq = analysis::make_hooks(m, analysis::qk_interventions(m.config(), res.profile, all));
    zq.add("blocks.0.attn.hook_pattern", [&](Activation& a) { pat.assign(a.data, a.data + a.numel()); });
    m.forward(TokenBatch(ids.topRows(1)), zq);
    CHECK(pat[static_cast<std::size_t>(5 * 40 + 2)] == doctest::Approx(1.0 / 6));  // head 0, query 5: six keys, equal weights
    CHECK(res.top.kl > 0.1);
    CHECK(res.random.size() == 1);
    CHECK(res.random[0].ppl == doctest::Approx(res.top.ppl));  // m = head_dim: every dim, whichever order
}

TEST_CASE("super experts: the finder names exactly the expert planted to write a massive activation, and routing around it removes it") {
    // Mixtral with random weights (tests/data/families/mixtral: 3 layers, 4 experts, top-2, d = 64) has no massive
    // activation. Plant one: in layer 1, expert 2's router row and one hidden unit point along the MLP input of the first
    // token (position 0 sees only itself, so that input is the same in every sequence that starts with BOS), and its
    // down_proj writes that unit into dim 17. Every other weight stays as it was.
    const std::string src = test::data("families/mixtral");
    const Transformer orig(src);
    const TokenBatch ids = analysis::random_tokens(12, 24, 512, 5, {1});
    std::vector<float> u;
    Hooks cap;
    cap.add("blocks.1.ln2.hook_normalized", [&](Activation& a) { u.assign(a.data, a.data + a.shape[2]); });
    orig.forward(TokenBatch(ids.topRows(1)), cap);
    REQUIRE(u.size() == 64);
    double uu = 0;
    for (float x : u) uu += double(x) * x;
    const int L = 1, E = 2, D = 17;
    const std::string dir = test::temp_dir("planted-moe");
    REQUIRE(std::system(("cp " + src + "/config.json " + dir + "/").c_str()) == 0);
    const io::SafetensorsFile f(src + "/model.safetensors");
    io::SafetensorsWriter w;
    std::vector<std::vector<float>> keep;
    const std::string p = "model.layers." + std::to_string(L) + ".block_sparse_moe.";
    for (const auto& name : f.names()) {
        keep.push_back(f.tensor(name).to_float());
        auto& t = keep.back();
        if (name == p + "gate.weight")  // router [4, 64]: expert E's logit 12 for the first token
            for (Index j = 0; j < 64; ++j) t[static_cast<std::size_t>(E * 64 + j)] = static_cast<float>(12.0 * u[static_cast<std::size_t>(j)] / uu);
        if (name == p + "experts." + std::to_string(E) + ".w1.weight" || name == p + "experts." + std::to_string(E) + ".w3.weight")
            for (Index j = 0; j < 64; ++j) t[static_cast<std::size_t>(j)] = static_cast<float>(4.0 * u[static_cast<std::size_t>(j)] / uu);  // unit 0
        if (name == p + "experts." + std::to_string(E) + ".w2.weight") t[static_cast<std::size_t>(D * 128 + 0)] = 8.0f;  // [64, 128]
        w.add_f32(name, f.tensor(name).shape, t.data());
    }
    w.write(dir + "/model.safetensors");
    const Transformer planted(dir);

    analysis::SuperExpertOptions opt;
    const auto none = analysis::find_super_experts(orig, ids, opt);
    CHECK(none.massive.empty());
    CHECK(none.found.empty());
    CHECK(none.note.find("no massive activation") != std::string::npos);

    const auto r = analysis::find_super_experts(planted, ids, opt);
    INFO(r.note);
    REQUIRE(r.massive.size() >= 1);
    CHECK(r.massive[0].dim == D);
    REQUIRE(r.found.size() == 1);
    MESSAGE("planted super expert: layer " << r.found[0].layer << " expert " << r.found[0].expert << " dim " << r.found[0].dim
                                           << ", contribution " << r.found[0].contribution << " of " << r.found[0].massive
                                           << "; routed around: " << r.found[0].before << " -> " << r.found[0].after
                                           << "; perplexity " << r.ppl_original << " -> " << r.ppl_pruned << ", attention on token 0 "
                                           << r.attention_first_original << " -> " << r.attention_first_pruned);
    CHECK(r.found[0].layer == L);
    CHECK(r.found[0].expert == E);
    CHECK(r.found[0].dim == D);
    CHECK(r.found[0].after < 0.2 * r.found[0].before);
    CHECK(r.found[0].contribution > 0.5 * r.found[0].massive);
    CHECK(r.ppl_pruned != r.ppl_original);
    // The expert outputs the finder reads (mlp.hook_expert_out, [N, T, k, d]) are the experts' own: slot s of a token is its
    // s-th routed expert in index order, down(act(gate x) * up x) before the routing weight; their weighted sum is hook_mlp_out.
    std::vector<float> wts, outs, mlp;
    Hooks h;
    h.add("blocks.1.mlp.hook_expert_weights", [&](Activation& a) { wts.assign(a.data, a.data + a.numel()); });
    h.add("blocks.1.mlp.hook_expert_out", [&](Activation& a) {
        CHECK(a.shape == std::vector<Index>{2, 24, 2, 64});
        outs.assign(a.data, a.data + a.numel());
    });
    h.add("blocks.1.hook_mlp_out", [&](Activation& a) { mlp.assign(a.data, a.data + a.numel()); });
    planted.forward(TokenBatch(ids.topRows(2)), h);
    double err = 0;
    for (Index row = 0; row < 48; ++row) {
        std::vector<double> sum(64, 0.0);
        Index slot = 0;
        for (Index e = 0; e < 4; ++e) {
            const float we = wts[static_cast<std::size_t>(row * 4 + e)];
            if (we == 0.0f) continue;
            for (Index j = 0; j < 64; ++j) sum[static_cast<std::size_t>(j)] += we * outs[static_cast<std::size_t>((row * 2 + slot) * 64 + j)];
            ++slot;
        }
        CHECK(slot == 2);
        for (Index j = 0; j < 64; ++j) err = std::max(err, std::abs(sum[static_cast<std::size_t>(j)] - mlp[static_cast<std::size_t>(row * 64 + j)]));
    }
    CHECK(err < 1e-4);
    test::expect_error([&] { analysis::find_super_experts(Transformer(test::model("tiny-llama")), ids); }, {"no mixture-of-experts layers"});
}

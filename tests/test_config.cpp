// config.json parsing: every supported option, and errors naming field and value.
#include "common.hpp"

using namespace massact;
using nlohmann::json;

namespace {
json llama_base() {
    return json{{"model_type", "llama"},     {"hidden_size", 64},      {"intermediate_size", 96},
                {"num_hidden_layers", 2},    {"num_attention_heads", 4}, {"vocab_size", 100},
                {"rms_norm_eps", 1e-6},      {"hidden_act", "silu"}};
}
std::vector<int> windows(const ModelConfig& c) {
    std::vector<int> w;
    for (const auto& l : c.layers) w.push_back(l.window);
    return w;
}
}  // namespace

TEST_CASE("llama defaults: kv heads = heads, head_dim = hidden/heads, untied, theta 1e4") {
    const auto c = parse_config(llama_base());
    CHECK(c.model_type == "llama");
    CHECK((c.pre_attn_norm && c.pre_mlp_norm && !c.post_attn_norm && !c.parallel && c.mlp == MlpKind::Gated));
    CHECK(c.num_kv_heads == 4);
    CHECK(c.head_dim == 16);
    CHECK(!c.tie_embeddings);
    CHECK(c.rope[0].theta == 10000.0);
    CHECK(c.norm.eps == 1e-6);
    CHECK(windows(c) == std::vector<int>{0, 0});
}

TEST_CASE("rope_theta at top level, in rope_parameters, and llama3 / linear scaling") {
    auto j = llama_base();
    j["rope_theta"] = 500000.0;
    CHECK(parse_config(j).rope[0].theta == 500000.0);
    j.erase("rope_theta");
    j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 20000.0}};
    CHECK(parse_config(j).rope[0].theta == 20000.0);
    j["rope_parameters"] = {{"rope_type", "linear"}, {"rope_theta", 10000.0}, {"factor", 4.0}};
    auto c = parse_config(j);
    CHECK(c.rope[0].scaling == RopeScaling::Linear);
    auto inv = c.rope[0].inv_freq(0);
    CHECK(inv[1] == doctest::Approx(std::pow(10000.0, -2.0 / 16) / 4));
    j.erase("rope_parameters");
    j["rope_theta"] = 500000.0;
    j["rope_scaling"] = {{"type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192}};
    c = parse_config(j);
    CHECK(c.rope[0].scaling == RopeScaling::Llama3);
    inv = c.rope[0].inv_freq(0);
    for (int k = 0; k < 8; ++k) {  // docs/formats.md, written out again
        const double f = std::pow(500000.0, -2.0 * k / 16), wl = 2 * M_PI / f;
        double expect = f;
        if (wl > 8192.0) expect = f / 8;
        else if (wl >= 8192.0 / 4) {
            const double s = (8192.0 / wl - 1) / 3;
            expect = (1 - s) * f / 8 + s * f;
        }
        CHECK(inv[static_cast<std::size_t>(k)] == doctest::Approx(expect).epsilon(1e-7));  // float32, as transformers
    }
    j["rope_scaling"] = {{"rope_type", "ntk_by_parts"}, {"factor", 4.0}};
    test::expect_error([&] { parse_config(j, "cfg.json"); }, {"cfg.json", "rope_scaling.rope_type", "\"ntk_by_parts\""});
}

TEST_CASE("GQA, explicit head_dim, biases, tying, sliding windows per model_type") {
    auto j = llama_base();
    j["num_key_value_heads"] = 2;
    j["head_dim"] = 32;
    j["attention_bias"] = true;
    auto c = parse_config(j);
    CHECK(c.head_dim == 32);
    CHECK(c.q_dim() == 128);
    CHECK(c.kv_dim() == 64);
    CHECK((c.qkv_bias && c.o_bias && !c.mlp_bias));
    j["model_type"] = "qwen2";
    j["tie_word_embeddings"] = true;
    j["sliding_window"] = 4096;
    j["use_sliding_window"] = false;
    c = parse_config(j);
    CHECK((c.qkv_bias && !c.o_bias && c.tie_embeddings));
    CHECK(windows(c) == std::vector<int>{0, 0});
    j["model_type"] = "mistral";
    j["sliding_window"] = 3;
    c = parse_config(j);
    CHECK(windows(c) == std::vector<int>{3, 3});
    CHECK(!c.qkv_bias);
    j["sliding_window"] = nullptr;
    CHECK(windows(parse_config(j)) == std::vector<int>{0, 0});
    j["num_key_value_heads"] = 3;
    test::expect_error([&] { parse_config(j); }, {"num_key_value_heads", "does not divide"});
}

TEST_CASE("gpt2: n_inner null, gelu variants, attention sinks, and refused options") {
    json g = {{"model_type", "gpt2"}, {"n_embd", 32}, {"n_layer", 2}, {"n_head", 4}, {"n_positions", 64},
              {"vocab_size", 50}, {"n_inner", nullptr}, {"activation_function", "gelu"}};
    auto c = parse_config(g);
    CHECK(c.intermediate_size == 128);
    CHECK(c.act == ActivationFn::GeluErf);
    CHECK(c.tie_embeddings);
    g["activation_function"] = "laplace";
    test::expect_error([&] { parse_config(g); }, {"activation_function", "\"laplace\""});
    auto j = llama_base();
    j["attention_sink"] = {{"type", "kv_bias"}};
    CHECK(parse_config(j).sink == SinkKind::KVBias);
    j["attention_sink"] = {{"type", "logit"}};
    CHECK(parse_config(j).sink == SinkKind::Logit);
    j["attention_sink"] = {{"type", "register"}};
    test::expect_error([&] { parse_config(j); }, {"attention_sink.type", "register"});
    j.erase("attention_sink");
    j["hidden_act"] = "laplace";
    test::expect_error([&] { parse_config(j); }, {"hidden_act", "\"laplace\""});
    j["hidden_act"] = "silu";
    j["hidden_size"] = -3;
    test::expect_error([&] { parse_config(j); }, {"hidden_size", "positive integer", "-3"});
    j = llama_base();
    j["model_type"] = "mamba";
    test::expect_error([&] { parse_config(j, "x/config.json"); }, {"x/config.json", "model_type", "\"mamba\""});
    j.erase("model_type");
    test::expect_error([&] { parse_config(j); }, {"model_type", "missing"});
}

TEST_CASE("attention_softmax and attention_sigmoid_bias are read; what massact does not implement is refused with its name") {
    auto j = llama_base();
    j["attention_softmax"] = "softmax";  // the value that changes nothing
    CHECK_NOTHROW(parse_config(j));
    j["attention_softmax"] = "softmax_plus";
    test::expect_error([&] { parse_config(j, "m/config.json"); }, {"m/config.json", "attention_softmax", "\"softmax_plus\"", "softpick"});
    j["attention_softmax"] = "softpick";
    CHECK(parse_config(j).attention_fn == kernels::AttentionFn::Softpick);
    j["attention_sink"] = {{"type", "logit"}};  // a sink slot is a softmax variant
    test::expect_error([&] { parse_config(j); }, {"attention_softmax", "sink slot"});
    j = llama_base();
    j["attention_sigmoid_bias"] = -6.2;  // without sigmoid attention it means nothing: refused, not ignored
    test::expect_error([&] { parse_config(j); }, {"attention_sigmoid_bias", "sigmoid"});
    j["attention_softmax"] = "sigmoid";
    const auto sig = parse_config(j);
    CHECK(sig.attention_fn == kernels::AttentionFn::Sigmoid);
    CHECK(sig.attention_sigmoid_bias == -6.2);
    j["attention_sigmoid_bias"] = "low";
    test::expect_error([&] { parse_config(j); }, {"attention_sigmoid_bias", "expected a number"});
    j = llama_base();
    j["attn_output_gate"] = true;
    test::expect_error([&] { parse_config(j); }, {"attn_output_gate", "gated attention"});
}

TEST_CASE("families III: NoPE layers, multipliers, shared experts and windows as their configs say") {
    auto j = llama_base();
    j["model_type"] = "smollm3";
    j["num_hidden_layers"] = 8;
    j["no_rope_layer_interval"] = 4;  // default no_rope_layers: every 4th layer without RoPE
    auto c = parse_config(j);
    std::vector<bool> nope;
    for (const auto& l : c.layers) nope.push_back(l.nope);
    CHECK(nope == std::vector<bool>{false, false, false, true, false, false, false, true});
    j["no_rope_layers"] = {1, 0, 1};  // wrong length
    test::expect_error([&] { parse_config(j); }, {"no_rope_layers", "8 flags"});
    j = llama_base();
    j["model_type"] = "cohere2";
    j["num_hidden_layers"] = 6;
    j["sliding_window"] = 16;
    j["sliding_window_pattern"] = 3;
    c = parse_config(j);
    CHECK(windows(c) == std::vector<int>{16, 16, 0, 16, 16, 0});
    CHECK((!c.layers[0].nope && c.layers[2].nope && c.parallel));
    j = llama_base();
    j["model_type"] = "granite";
    j["logits_scaling"] = 0;
    test::expect_error([&] { parse_config(j); }, {"logits_scaling", "positive"});
    j = llama_base();
    j["model_type"] = "qwen2_moe";
    j["num_experts"] = 4;
    j["num_experts_per_tok"] = 2;
    j["moe_intermediate_size"] = 16;
    j["shared_expert_intermediate_size"] = 24;
    j["sliding_window"] = 0;  // (0: no window, as Qwen2-MoE's configs write it)
    c = parse_config(j);
    CHECK((c.moe() && c.shared_expert_size == 24 && c.shared_expert_gated && c.intermediate_size == 16));
    // transformers' rule: experts where (l + 1) % decoder_sparse_step == 0 and l is not in mlp_only_layers, else a
    // dense MLP of intermediate_size
    const int width = parse_config(nlohmann::json(j)).dense_intermediate_size;
    j["num_hidden_layers"] = 4;
    j["decoder_sparse_step"] = 2;
    j["mlp_only_layers"] = {3};
    c = parse_config(j);
    REQUIRE(c.num_layers == 4);
    CHECK(c.moe());
    for (int l = 0; l < c.num_layers; ++l) CHECK(c.layers[static_cast<std::size_t>(l)].dense_mlp == ((l + 1) % 2 != 0 || l == 3));
    CHECK(width == 0);
    CHECK(c.dense_intermediate_size == j.value("intermediate_size", 0));
    j["decoder_sparse_step"] = 0;
    test::expect_error([&] { parse_config(j); }, {"decoder_sparse_step", "positive"});
    j["decoder_sparse_step"] = 1;
    j["mlp_only_layers"] = {c.num_layers};
    test::expect_error([&] { parse_config(j); }, {"mlp_only_layers", "not a layer index"});
}

TEST_CASE("mamba2: the mixer's shape, time_step_limit with an infinite bound, and what is refused") {
    json j = {{"model_type", "mamba2"}, {"hidden_size", 64}, {"num_hidden_layers", 2}, {"vocab_size", 100}, {"num_heads", 8},
              {"head_dim", 16}, {"n_groups", 2}, {"state_size", 4}, {"expand", 2}, {"conv_kernel", 3},
              {"time_step_limit", json::array({0.001, json{{"__float__", "Infinity"}}})}};
    auto c = parse_config(j);
    CHECK((c.layers[1].mixer == Mixer::Mamba2 && !c.has_mlp && !c.has_attention() && c.positions == PositionKind::None));
    CHECK((c.mamba.inner() == 128 && c.mamba.conv_dim() == 128 + 16 && c.mamba.dt_min == 0.001 && c.mamba.dt_max == 0.0));
    CHECK(c.recurrent_state_size(0) == 8 * 16 * 4);
    j["time_step_limit"] = json::array({0.0, 0.1});
    CHECK(parse_config(j).mamba.dt_max == 0.1);
    j["time_step_limit"] = json::array({0.5, 0.1});
    test::expect_error([&] { parse_config(j); }, {"time_step_limit", "low <= high"});
    j["time_step_limit"] = json::array({0.0, "big"});
    test::expect_error([&] { parse_config(j); }, {"time_step_limit", "numbers"});
    j.erase("time_step_limit");
    j["num_heads"] = 4;
    test::expect_error([&] { parse_config(j); }, {"num_heads", "expand x hidden_size"});
    j["num_heads"] = 8;
    j["n_groups"] = 3;
    test::expect_error([&] { parse_config(j); }, {"n_groups", "does not divide"});
    j["n_groups"] = 2;
    j["state_size"] = 1 << 14;  // 16 x 16384 = 2^18 floats per head pass; 32 x 16384 do not
    CHECK(parse_config(j).recurrent_state_size(0) == 128 * 16384);
    j["head_dim"] = 32;
    j["num_heads"] = 4;
    test::expect_error([&] { parse_config(j); }, {"state_size", "floats per head"});
    j["state_size"] = 4;
    j["head_dim"] = 16;
    j["num_heads"] = 8;
    j["layer_types"] = {"mamba", "attention"};
    test::expect_error([&] { parse_config(j); }, {"layer_types", "\"attention\""});
}

TEST_CASE("qwen3_next: gated attention and Gated DeltaNet layers as layer_types says; dense layers where mlp_only_layers says") {
    auto j = llama_base();
    j["model_type"] = "qwen3_next";
    j["layer_types"] = {"full_attention", "full_attention"};
    j["mlp_only_layers"] = {0, 1};
    auto c = parse_config(j);
    CHECK((c.attn_output_gate && c.norm.one_plus && c.qk_norm == QKNorm::PerHead && !c.moe() && !c.has_deltanet()));
    j["layer_types"] = {"linear_attention", "full_attention"};
    j["linear_num_key_heads"] = 2;
    j["linear_num_value_heads"] = 6;
    j["linear_key_head_dim"] = 8;
    j["linear_value_head_dim"] = 4;
    j["linear_conv_kernel_dim"] = 3;
    c = parse_config(j);
    CHECK((!c.layer_attention(0) && c.layer_attention(1) && c.deltanet.grouped && c.deltanet.conv_dim() == 2 * 16 + 24));
    j["model_type"] = "qwen3_5_text";
    c = parse_config(j);
    CHECK((!c.layer_attention(0) && !c.deltanet.grouped && !c.moe()));
    j["model_type"] = "qwen3_next";
    j["linear_num_value_heads"] = 5;
    test::expect_error([&] { parse_config(j); }, {"linear_num_value_heads", "multiple"});
    j["linear_num_value_heads"] = 6;
    j["linear_key_head_dim"] = 16384;  // x 4: 65536 floats per head pass; x 16384 would not
    CHECK(parse_config(j).recurrent_state_size(0) == 6 * 16384 * 4);
    j["linear_value_head_dim"] = 16384;
    test::expect_error([&] { parse_config(j); }, {"linear_value_head_dim", "floats per head"});
    j["linear_key_head_dim"] = 8;
    j["linear_value_head_dim"] = 4;
    j["linear_num_value_heads"] = 6;
    j["layer_types"] = {"mamba", "full_attention"};
    test::expect_error([&] { parse_config(j); }, {"layer_types", "mamba", "full_attention or linear_attention"});
    j.erase("layer_types");
    test::expect_error([&] { parse_config(j); }, {"layer_types", "missing"});
    j["layer_types"] = {"full_attention", "full_attention"};
    j["num_experts"] = 4;
    j["num_experts_per_tok"] = 2;
    j["moe_intermediate_size"] = 16;
    j["mlp_only_layers"] = {0};  // a dense layer 0 of intermediate_size, experts in layer 1
    c = parse_config(j);
    CHECK((c.moe() && !c.layer_moe(0) && c.layer_moe(1) && c.layer_intermediate(0) == c.dense_intermediate_size &&
           c.layer_intermediate(1) == 16));
}

TEST_CASE("wrapper configs (gemma3, clip, siglip) read their inner model once; a wrapper inside a wrapper is refused") {
    nlohmann::json text = {{"hidden_size", 64}, {"intermediate_size", 128}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                           {"head_dim", 16}, {"num_hidden_layers", 2}, {"vocab_size", 100}};
    const ModelConfig g = parse_config({{"model_type", "gemma3"}, {"text_config", text}});
    CHECK(g.model_type == "gemma3_text");
    CHECK(g.names.prefixes == std::vector<std::string>{"model.language_model.", "language_model.model."});
    test::expect_error([&] { parse_config({{"model_type", "gemma3"}}, "w.json"); }, {"w.json", "text_config", "missing"});
    test::expect_error([&] { parse_config({{"model_type", "siglip"}, {"vision_config", 3}}, "w.json"); }, {"vision_config", "missing"});
    // gemma3 in gemma3's text_config, 2000 deep: refused at the first level (reading it level by level copied the rest
    // of the document each time: quadratic memory, 4 GB for 760 kB of config.json)
    nlohmann::json deep = nlohmann::json::object();
    for (int i = 0; i < 2000; ++i) deep = nlohmann::json{{"model_type", "gemma3"}, {"text_config", std::move(deep)}};
    test::expect_error([&] { parse_config(deep, "deep.json"); }, {"deep.json", "text_config.model_type", "\"gemma3\" inside a gemma3 config"});
    nlohmann::json clip = {{"model_type", "clip"}, {"vision_config", {{"model_type", "siglip"}}}};  // (clip forces its inner type)
    test::expect_error([&] { parse_config(clip, "c.json"); }, {"c.json (vision_config)"});
}

// Every family of the block description against Hugging Face transformers (tests/data/families/<name>:
// random-weight checkpoints with every parameter perturbed, and ref.safetensors written by transformers
// 5.17 in float32, eager attention; tests/data/README.md). Tolerances: hidden states 2e-4 of the
// reference's max |h|, attention 2e-5, logits 2e-4 of max |logit|.
#include "common.hpp"

#include <map>

using namespace massact;

namespace {

struct Diff {
    double hidden = 0, attention = 0, logits = 0;
};

double max_abs(const std::vector<float>& v) {
    double m = 0;
    for (float x : v) m = std::max(m, std::abs(static_cast<double>(x)));
    return m;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
    return m;
}

/// Run the family's checkpoint on the reference ids; relative differences against the reference.
Diff compare_family(const std::string& name) {
    const std::string dir = test::data("families/" + name);
    const Transformer m(dir);
    const io::SafetensorsFile ref(dir + "/ref.safetensors");
    const auto ids_v = ref.tensor("input_ids").to_int64();
    const auto& shape = ref.tensor("input_ids").shape;
    TokenBatch ids(shape[0], shape[1]);
    std::copy(ids_v.begin(), ids_v.end(), ids.data());
    std::map<std::string, std::vector<float>> got;
    Hooks h;
    for (const char* g : {"*hook_resid_pre", "*hook_resid_post", "*hook_pattern", "ln_final.hook_normalized"})
        h.add(g, [&](Activation& a) { got[std::string(a.name)] = std::vector<float>(a.data, a.data + a.numel()); });
    const RowMatrixF logits = m.forward(ids, h);
    const int L = m.config().num_layers;
    Diff d;
    for (int i = 0; i <= L; ++i) {
        const auto want = ref.tensor("hidden_states." + std::to_string(i)).to_float();
        const std::string site = i == 0   ? "blocks.0.hook_resid_pre"
                                 : i == L ? "ln_final.hook_normalized"
                                          : "blocks." + std::to_string(i - 1) + ".hook_resid_post";
        d.hidden = std::max(d.hidden, max_diff(got.at(site), want) / max_abs(want));
    }
    for (int l = 0; l < L; ++l)
        d.attention = std::max(d.attention, max_diff(got.at("blocks." + std::to_string(l) + ".attn.hook_pattern"),
                                                     ref.tensor("attentions." + std::to_string(l)).to_float()));
    const auto want = ref.tensor("logits").to_float();
    d.logits = max_diff(std::vector<float>(logits.data(), logits.data() + logits.size()), want) / max_abs(want);
    return d;
}

}  // namespace

TEST_CASE("families I match Hugging Face: hidden states, attention, logits") {
    for (const std::string name : {"gemma", "gemma2", "gemma3", "qwen3", "phi3", "olmo", "olmo2", "mixtral", "starcoder2",
                             "stablelm", "llama_yarn"}) {
        CAPTURE(name);
        const Diff d = compare_family(name);
        MESSAGE(name << ": hidden " << d.hidden << ", attention " << d.attention << ", logits " << d.logits);
        CHECK(d.hidden < 2e-4);
        CHECK(d.attention < 2e-5);
        CHECK(d.logits < 2e-4);
    }
}

// massact inside llama.cpp (built with -DMASSACT_LLAMA_CPP_DIR): llama_cpp_scan, llama.cpp's forward observed
// through cb_eval by massact::probe, against massact scan on the same GGUF file. llama.cpp multiplies with
// quantized activations (Q8_0 x Q8_K dot products), massact with float activations and dequantized weights,
// so values differ a little; where the outliers sit must not.
#include "common.hpp"

#include <cstdlib>

using namespace massact;

namespace {

nlohmann::json run_json(const std::string& command, const std::string& out) {
    INFO(command);
    REQUIRE(std::system((command + " > " + out + ".log 2>&1").c_str()) == 0);
    return io::read_json_file(out);
}

/// Both JSONs: the same top-1 dim per layer, top-1 and median means within `tol`, the same massive dims
/// and carriers; returns the largest relative difference of the top-1 means.
double compare_scans(const nlohmann::json& a, const nlohmann::json& b, double tol) {
    REQUIRE(a["layers"].size() == b["layers"].size());
    REQUIRE(a["val_sequences"] == b["val_sequences"]);
    REQUIRE(a["seq_len"] == b["seq_len"]);
    double worst = 0;
    for (std::size_t l = 0; l < a["layers"].size(); ++l) {
        const auto &x = a["layers"][l], &y = b["layers"][l];
        CAPTURE(l);
        CHECK(x["top1_dims"] == y["top1_dims"]);
        const double d = std::abs(x["top1_mean"].get<double>() / y["top1_mean"].get<double>() - 1);
        CHECK(d < tol);
        CHECK(std::abs(x["median_mean"].get<double>() / y["median_mean"].get<double>() - 1) < 4 * tol);
        worst = std::max(worst, d);
    }
    auto dims = [](const nlohmann::json& j) {
        std::vector<std::pair<Index, std::vector<std::string>>> v;
        for (const auto& m : j["massive_activations"]) v.push_back({m["dim"].get<Index>(), m["positions"].get<std::vector<std::string>>()});
        std::sort(v.begin(), v.end());
        return v;
    };
    CHECK(dims(a) == dims(b));
    CHECK(a["val_ppl"].get<double>() == doctest::Approx(b["val_ppl"].get<double>()).epsilon(0.01));
    return worst;
}

}  // namespace

TEST_CASE("llama_cpp_scan and massact scan agree on tiny-llama Q8_0: top-1 dims, top-1 values, massive dims, sinks") {
    const std::string gguf = test::data("gguf/tiny-llama-Q8_0.gguf"), dir = test::temp_dir("llama-cpp");
    const std::string prompt = "\"Summer is warm. Winter is cold. The children played in the garden while the old dog slept in the sun.\"";
    for (const std::string ub : {"512", "7"}) {  // one micro-batch, and rows in chunks of 7 tokens
        CAPTURE(ub);
        const auto ours = run_json(std::string(MASSACT_TOOL) + " scan " + gguf + " --prompt " + prompt + " --json " + dir + "/massact.json",
                                   dir + "/massact.json");
        const auto theirs = run_json(std::string(MASSACT_LLAMA_CPP_SCAN) + " " + gguf + " --prompt " + prompt + " --ubatch " + ub +
                                         " --json " + dir + "/llama.json",
                                     dir + "/llama.json");
        const double worst = compare_scans(theirs, ours, 0.05);
        MESSAGE("prompt, n_ubatch " << ub << ": top-1 means within " << 100 * worst << "% (largest relative difference)");
        REQUIRE(!ours["massive_activations"].empty());
        CHECK(ours["massive_activations"][0]["dim"] == 215);
        // attention on <s> per layer and head, from llama.cpp's kq_soft_max
        double att = 0;
        for (std::size_t l = 0; l < ours["attention_on_first_token_per_layer_head"].size(); ++l)
            for (std::size_t h = 0; h < ours["attention_on_first_token_per_layer_head"][l].size(); ++h)
                att = std::max(att, std::abs(theirs["attention_on_first_token_per_layer_head"][l][h].get<double>() -
                                             ours["attention_on_first_token_per_layer_head"][l][h].get<double>()));
        MESSAGE("attention on the first token: largest difference " << att);
        CHECK(att < 0.02);
    }
    // --data: the windows of massact's protocol through llama.cpp's tokenizer
    const std::string data = std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt";
    const auto ours = run_json(std::string(MASSACT_TOOL) + " scan " + gguf + " --data " + data + " --seq-len 96 --max-seqs 6 --json " + dir + "/m2.json",
                               dir + "/m2.json");
    const auto theirs = run_json(std::string(MASSACT_LLAMA_CPP_SCAN) + " " + gguf + " --data " + data + " --seq-len 96 --max-seqs 6 --json " +
                                     dir + "/l2.json",
                                 dir + "/l2.json");
    const double worst = compare_scans(theirs, ours, 0.05);
    MESSAGE("6 windows of val.txt: top-1 means within " << 100 * worst << "%, perplexity " << theirs["val_ppl"].get<double>() << " (llama.cpp) vs "
                                                        << ours["val_ppl"].get<double>() << " (massact)");
    // bad input: a clear message, exit 1, no JSON
    const std::string bad = dir + "/missing.json";
    CHECK(std::system((std::string(MASSACT_LLAMA_CPP_SCAN) + " " + dir + "/nothing.gguf --prompt hi --json " + bad + " 2> " + dir + "/err").c_str()) != 0);
    CHECK(!io::file_exists(bad));
}

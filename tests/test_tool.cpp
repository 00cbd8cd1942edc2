// The massact tool as a user runs it: outputs, exit codes, error messages, no half-written files.
#include "common.hpp"

#include <fstream>
#include <limits>
#include <cstring>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace massact;

namespace {

struct Result {
    int status;
    std::string out;
};

/// Run `massact ARGS` (with a time limit of `seconds`; 0: none) and capture its output.
Result run(const std::string& args, int seconds = 0) {
    const std::string dir = test::temp_dir("tool");
    const std::string limit = seconds > 0 ? "timeout " + std::to_string(seconds) + " " : "";
    const std::string cmd = limit + std::string(MASSACT_TOOL) + " " + args + " > " + dir + "/out.txt 2>&1";
    const int rc = std::system(cmd.c_str());
    std::ifstream f(dir + "/out.txt");
    std::stringstream ss;
    ss << f.rdbuf();
    return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, ss.str()};
}

/// Every part appears in the output.
void check_says(const Result& r, std::initializer_list<const char*> parts) {
    INFO(r.out);
    for (const char* p : parts) CHECK(r.out.find(p) != std::string::npos);
}

}  // namespace

TEST_CASE("massact run dumps the default hook sites under their names, matching the reference") {
    const std::string dir = test::temp_dir("run");
    const std::string ref = test::data("tiny-llama.ref.safetensors");
    const auto r = run("run " + test::model("tiny-llama") + " --ids-file " + ref + ":p0.input_ids --dump " + dir + "/d.safetensors");
    INFO(r.out);
    REQUIRE(r.status == 0);
    io::SafetensorsFile d(dir + "/d.safetensors"), rf(ref);
    CHECK(d.tensor("input_ids").to_int64() == rf.tensor("p0.input_ids").to_int64());
    CHECK(d.tensor("blocks.2.hook_resid_post").shape == std::vector<std::int64_t>{48, 256});
    CHECK(d.tensor("blocks.0.attn.hook_pattern").shape == std::vector<std::int64_t>{8, 48, 48});
    CHECK(d.tensor("logits").shape == std::vector<std::int64_t>{48, 4096});
    CHECK(d.has("ln_final.hook_normalized"));
    CHECK(!d.has("blocks.0.hook_resid_pre"));
    // Values: block 2's output is hidden state entry 3 of the reference.
    const auto mine = d.tensor("blocks.2.hook_resid_post").to_float();
    const auto hs = rf.tensor("p0.hidden_states").to_float();
    double maxdiff = 0, maxref = 0;
    for (std::size_t i = 0; i < mine.size(); ++i) {
        maxdiff = std::max(maxdiff, double(std::abs(mine[i] - hs[3 * 48 * 256 + i])));
        maxref = std::max(maxref, double(std::abs(hs[3 * 48 * 256 + i])));
    }
    CHECK(maxdiff / maxref < 2e-4);
    // A batch from a text ids file, with chosen hooks: [N, T, ...].
    std::ofstream(dir + "/ids.txt") << "1 20 30 40\n1 21 31 41\n";
    const auto r2 = run("run " + test::model("tiny-gpt2") + " --ids-file " + dir + "/ids.txt --hooks 'blocks.1.mlp.*' --dump " +
                        dir + "/b.safetensors");
    INFO(r2.out);
    REQUIRE(r2.status == 0);
    io::SafetensorsFile b(dir + "/b.safetensors");
    CHECK(b.tensor("input_ids").shape == std::vector<std::int64_t>{2, 4});
    CHECK(b.tensor("blocks.1.mlp.hook_pre").shape == std::vector<std::int64_t>{2, 4, 1024});
    CHECK(b.names().size() == 3);
}

TEST_CASE("massact eval reproduces val_ppl and writes ppl, seq_nll, tokens") {
    for (const char* name : {"tiny-llama", "tiny-gpt2"}) {
        const std::string dir = test::temp_dir("eval");
        const auto r = run(std::string("eval ") + test::model(name) + " --ids-file " + test::data(std::string(name) + ".ref.safetensors") +
                           ":ppl.input_ids --json " + dir + "/e.json");
        INFO(r.out);
        REQUIRE(r.status == 0);
        const auto j = io::read_json_file(dir + "/e.json");
        const auto stats = io::read_json_file(test::data(std::string(name) + ".stats.json"));
        CHECK(std::abs(j["ppl"].get<double>() / stats["val_ppl"].get<double>() - 1) < 5e-4);
        CHECK(j["seq_nll"].size() == 96);
        CHECK(j["tokens"].get<int>() == 96 * 255);
    }
}

TEST_CASE("massact info describes the model") {
    const auto r = run("info " + test::model("tiny-llama"));
    REQUIRE(r.status == 0);
    check_says(r, {"llama", "4 key/value", "7213312", "BF16"});
}

TEST_CASE("bad input: clear error, non-zero exit, no output file") {
    const std::string dir = test::temp_dir("badtool");
    // A truncated checkpoint.
    const std::string bad = dir + "/model";
    REQUIRE(std::system(("mkdir -p " + bad + " && cp " + test::model("tiny-llama") + "/config.json " + bad +
                         " && head -c 1000000 " + test::model("tiny-llama") + "/model.safetensors > " + bad + "/model.safetensors")
                            .c_str()) == 0);
    auto r = run("run " + bad + " --ids 1,2,3 --dump " + dir + "/out.safetensors");
    CHECK(r.status != 0);
    CHECK(r.out.find("massact: error:") != std::string::npos);
    CHECK(r.out.find("model.safetensors") != std::string::npos);
    CHECK(r.out.find("past the data buffer") != std::string::npos);
    CHECK(!io::file_exists(dir + "/out.safetensors"));
    // Out-of-vocabulary ids, unknown hook names, malformed id lists.
    r = run("run " + test::model("tiny-llama") + " --ids 1,99999 --dump " + dir + "/out.safetensors");
    CHECK(r.status != 0);
    CHECK(r.out.find("token id 99999") != std::string::npos);
    r = run("run " + test::model("tiny-llama") + " --ids 1,2 --hooks 'blocks.*.hook_resid_psot' --dump " + dir + "/out.safetensors");
    CHECK(r.status != 0);
    CHECK(r.out.find("matches no hook site") != std::string::npos);
    r = run("eval " + test::model("tiny-llama") + " --ids 1,x,3 --json " + dir + "/e.json");
    CHECK(r.status != 0);
    CHECK(r.out.find("\"x\" is not an integer") != std::string::npos);
    std::ofstream(dir + "/ragged.txt") << "1 2 3\n1 2\n";
    r = run("eval " + test::model("tiny-llama") + " --ids-file " + dir + "/ragged.txt --json " + dir + "/e.json");
    CHECK(r.status != 0);
    CHECK(r.out.find("ragged.txt:2") != std::string::npos);
    CHECK(!io::file_exists(dir + "/out.safetensors"));
    CHECK(!io::file_exists(dir + "/e.json"));
    r = run("info " + dir + "/nowhere");
    CHECK(r.status != 0);
    CHECK(r.out.find("nowhere/config.json: cannot open") != std::string::npos);
}

TEST_CASE("massact tokenize prints ids and tokens; --prompt and --text-file feed run and eval") {
    auto r = run("tokenize " + test::model("tiny-llama") + " --json 'Summer is warm.'");
    REQUIRE(r.status == 0);
    const auto j = nlohmann::json::parse(r.out);
    const auto tok = text::Tokenizer::from_file(test::model("tiny-llama") + "/tokenizer.json");
    CHECK(j["ids"].get<std::vector<text::TokenId>>() == tok.encode("Summer is warm.", true));
    CHECK(j["tokens"][0] == "<s>");
    CHECK(j["ids"].size() == j["tokens"].size());
    r = run("tokenize " + test::model("tiny-llama") + " --json --no-special 'Summer is warm.'");
    REQUIRE(r.status == 0);
    CHECK(nlohmann::json::parse(r.out)["ids"].get<std::vector<text::TokenId>>() == tok.encode("Summer is warm.", false));
    const std::string dir = test::temp_dir("prompt");
    r = run("run " + test::model("tiny-llama") + " --prompt 'Summer is warm. Winter is cold.' --hooks logits --dump " + dir + "/p.safetensors");
    REQUIRE(r.status == 0);
    io::SafetensorsFile d(dir + "/p.safetensors");
    CHECK(d.tensor("input_ids").to_int64() == tok.encode("Summer is warm. Winter is cold.", true));
    std::ofstream(dir + "/t.txt") << "In the beginning God created the heaven and the earth.\n";
    r = run("eval " + test::model("tiny-gpt2") + " --text-file " + dir + "/t.txt --json " + dir + "/e.json");
    INFO(r.out);
    REQUIRE(r.status == 0);
    CHECK(io::read_json_file(dir + "/e.json")["ppl"].get<double>() > 1.0);
    r = run("tokenize " + test::model("tiny-llama"));
    CHECK(r.status != 0);
}

TEST_CASE("massact scan --json carries the reference keys, the detector and the sink metrics") {
    const std::string dir = test::temp_dir("scan");
    auto r = run("scan " + test::model("tiny-llama") + " --ids-file " + test::data("tiny-llama.ref.safetensors") +
                 ":ppl.input_ids --max-seqs 24 --json " + dir + "/s.json");
    INFO(r.out);
    REQUIRE(r.status == 0);
    CHECK(r.out.find("dim 215") != std::string::npos);
    const auto j = io::read_json_file(dir + "/s.json");
    for (const char* k : {"layers", "attention_on_first_token_per_layer_head", "val_ppl", "massive_activations", "sink_rate",
                          "sink_heads"})
        CHECK(j.contains(k));
    CHECK(j["val_sequences"] == 24);
    const auto& m = j["massive_activations"][0];
    for (const char* k : {"dim", "first_layer", "layers", "positions", "mean", "std", "ratio"}) CHECK(m.contains(k));
    CHECK(m["dim"] == 215);
    // --data windows from a text file; Sun's preset finds nothing and says so.
    r = run("scan " + test::model("tiny-gpt2") + " --data " + std::string(MASSACT_SOURCE_DIR) +
            "/examples/data/val.txt --seq-len 64 --max-seqs 8 --preset sun2024 --json " + dir + "/g.json");
    INFO(r.out);
    REQUIRE(r.status == 0);
    const auto g = io::read_json_file(dir + "/g.json");
    CHECK(g["seq_len"] == 64);
    CHECK(g["val_sequences"] == 8);
    CHECK(g["massive_activations"].empty());
    CHECK(r.out.find("no massive activation") != std::string::npos);
    r = run("scan " + test::model("tiny-gpt2") + " --data /nonexistent.txt");
    CHECK(r.status != 0);
    CHECK(r.out.find("--data: /nonexistent.txt: cannot open") != std::string::npos);
    r = run("scan " + test::model("tiny-gpt2") + " --ids 1,2,3 --preset strict");
    CHECK(r.status != 0);
    CHECK(r.out.find("--preset") != std::string::npos);
}

TEST_CASE("massact ablate / inject / superweight: JSON keys, numbers, and bad specifications naming the flag") {
    const std::string dir = test::temp_dir("ablate");
    const std::string ref = test::data("tiny-llama.ref.safetensors"), model = test::model("tiny-llama");
    auto r = run("ablate " + model + " --ids-file " + ref + ":p0.input_ids --layer 2 --dims 86,170,177,215,243 --tokens 0 --mode zero --json " +
                 dir + "/a.json");
    INFO(r.out);
    REQUIRE(r.status == 0);
    const auto j = io::read_json_file(dir + "/a.json");
    for (const char* k : {"ppl_original", "ppl_intervened", "attention_on_tokens_original", "attention_on_tokens_intervened", "kl_mean"})
        CHECK(j.contains(k));
    CHECK(j["attention_on_tokens_intervened"][0][3].get<double>() == doctest::Approx(0.385).epsilon(3e-3));
    CHECK(j["ppl_intervened"].get<double>() > j["ppl_original"].get<double>());
    r = run("inject " + model + " --ids-file " + ref + ":ppl.input_ids --max-seqs 8 --seq-len 64 --layer 2 --from 0 --to 30 --json " +
            dir + "/i.json");
    REQUIRE(r.status == 0);
    CHECK(io::read_json_file(dir + "/i.json")["median_factor"][3].get<double>() == doctest::Approx(8.1).epsilon(0.02));
    r = run("superweight " + model + " --ids-file " + ref + ":p0.input_ids --json " + dir + "/s.json");
    REQUIRE(r.status == 0);
    const auto s = io::read_json_file(dir + "/s.json")["super_weights"];
    REQUIRE(s.size() == 1);
    CHECK(s[0]["row"] == 215);
    CHECK(s[0]["col"] == 46);
    CHECK(s[0]["ppl_zeroed"].get<double>() > s[0]["ppl_original"].get<double>());
    const std::string base = "ablate " + model + " --ids 1,2,3,4 --json " + dir + "/bad.json ";
    struct Bad { std::string args, message; };
    for (const Bad& b : {Bad{"--layer 8 --dims 1", "--layer: layer 8 out of range"}, Bad{"--layer 2 --dims 256", "--dims: dim 256 out of range"},
                         Bad{"--layer 2 --dims 1 --mode half", "--mode: unknown mode \"half\""},
                         Bad{"--layer 2 --dims 1 --tokens ''", "--tokens: empty token selection"},
                         Bad{"--layer 2 --dims 1 --tokens 9", "--tokens: position 9 out of range"},
                         Bad{"--layer 2 --dims x", "--dims: \"x\" is not an integer"}}) {
        r = run(base + b.args);
        CAPTURE(b.args);
        CHECK(r.status != 0);
        CHECK(r.out.find(b.message) != std::string::npos);
    }
    CHECK(!io::file_exists(dir + "/bad.json"));
    r = run("inject " + model + " --ids 1,2,3,4 --layer 2 --to 3");
    CHECK(r.status != 0);
    CHECK(r.out.find("--to: position 3 out of range") != std::string::npos);
}

namespace {
/// Width and height of a PNG file (0, 0 if it is not one).
std::pair<std::uint32_t, std::uint32_t> png_size(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    unsigned char h[24] = {0};
    f.read(reinterpret_cast<char*>(h), 24);
    const unsigned char sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    if (f.gcount() != 24 || std::memcmp(h, sig, 8) != 0 || std::memcmp(h + 12, "IHDR", 4) != 0) return {0, 0};
    auto be = [&](int o) { return (std::uint32_t(h[o]) << 24) | (std::uint32_t(h[o + 1]) << 16) | (std::uint32_t(h[o + 2]) << 8) | h[o + 3]; };
    return {be(16), be(20)};
}
}  // namespace

TEST_CASE("massact report writes report.md, report.json and six PNG figures with the numbers scan, ablate and stream print") {
    const std::string dir = test::temp_dir("report");
    auto r = run("report --out " + dir + "/out");
    INFO(r.out);
    REQUIRE(r.status == 0);
    for (const char* fig : {"fig1_magnitudes_3d", "fig2_layer_magnitudes", "fig3_attention", "fig4_perplexity", "fig5_attention_shift",
                            "fig7_streaming"}) {
        CAPTURE(fig);
        const auto [w, h] = png_size(dir + "/out/" + fig + ".png");
        CHECK(w >= 800);
        CHECK(h >= 500);
        std::ifstream f(dir + "/out/" + fig + ".png", std::ios::binary | std::ios::ate);
        CHECK(f.tellg() > 10000);
    }
    REQUIRE(io::file_exists(dir + "/out/report.md"));
    const auto rep = io::read_json_file(dir + "/out/report.json");
    // The same numbers as scan and ablate on the same data.
    const std::string data = " --data " + std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt --max-seqs 96 ";
    r = run("scan" + data + "--json " + dir + "/scan.json");
    REQUIRE(r.status == 0);
    const auto scan = io::read_json_file(dir + "/scan.json");
    CHECK(rep["scan"]["val_ppl"].get<double>() == scan["val_ppl"].get<double>());
    for (std::size_t l = 0; l < 8; ++l) {
        CHECK(rep["scan"]["layers"][l]["top1_mean"].get<double>() == scan["layers"][l]["top1_mean"].get<double>());
        CHECK(rep["scan"]["layers"][l]["median_mean"].get<double>() == scan["layers"][l]["median_mean"].get<double>());
    }
    CHECK(rep["scan"]["massive_activations"] == scan["massive_activations"]);
    const auto& iv = rep["intervention"];
    CHECK(iv["layer"] == 2);
    CHECK(iv["massive_dims"] == nlohmann::json({86, 170, 177, 215, 243}));
    r = run("ablate" + data + "--layer 2 --dims 86,170,177,215,243 --tokens first --mode zero --no-decomposition --json " + dir + "/z.json");
    REQUIRE(r.status == 0);
    const auto z = io::read_json_file(dir + "/z.json");
    CHECK(iv["ppl_zero"].get<double>() == doctest::Approx(z["ppl_intervened"].get<double>()).epsilon(1e-6));  // streaming vs materialised attention: float rounding
    CHECK(iv["ppl_original"].get<double>() == doctest::Approx(z["ppl_original"].get<double>()).epsilon(1e-6));
    CHECK(iv["ppl_zero"].get<double>() > iv["ppl_mean"].get<double>());
    CHECK(rep["super_weights"][0]["row"] == 215);
    // Streaming: 1024 tokens of val.txt, dense and through a 64-token cache; the sinks keep tiny-llama alive.
    const auto& st = rep["streaming"];
    REQUIRE(st.size() == 3);
    CHECK(st[0]["label"] == "dense");
    CHECK(st[1]["label"] == "window 0+64");
    CHECK(st[2]["label"] == "sinks 4+60");
    CHECK(st[2]["ppl"].get<double>() < st[1]["ppl"].get<double>());
    CHECK(st[2]["ppl"].get<double>() < st[0]["ppl"].get<double>());
    r = run("stream --data " + std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt --tokens 1024 --sinks 4 --window 60 --json " + dir + "/s.json");
    REQUIRE(r.status == 0);
    CHECK(io::read_json_file(dir + "/s.json")["ppl"] == st[2]["ppl"]);
    // the same stream through an f16 cache: each key and value rounded once, the perplexity within 0.5%
    r = run("stream --data " + std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt --tokens 1024 --sinks 4 --window 60 --kv-cache f16 --json " +
            dir + "/s16.json");
    REQUIRE(r.status == 0);
    const double p16 = io::read_json_file(dir + "/s16.json")["ppl"], p32 = st[2]["ppl"];
    CHECK(p16 != p32);
    CHECK(std::abs(p16 / p32 - 1) < 5e-3);
    // a 4-bit cache (keys per channel before RoPE, values per token): close; the JSON names the quantization
    r = run("stream --data " + std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt --tokens 1024 --sinks 4 --window 60 --kv-quant "
            "kv4,pre-rope --json " + dir + "/s4.json");
    REQUIRE(r.status == 0);
    const auto j4 = io::read_json_file(dir + "/s4.json");
    CHECK(j4["kv_quant"] == "k4,k-per-channel,v4,v-per-token,group-tokens=32,pre-rope");
    CHECK(j4["ppl"].get<double>() != p32);
    CHECK(std::abs(j4["ppl"].get<double>() / p32 - 1) < 0.03);
    for (const auto& [spec, says] : std::vector<std::pair<std::string, std::vector<const char*>>>{
             {"kv4", {"after RoPE", "pre-rope"}}, {"kv9", {"--kv-quant", "2, 3, 4 or 8"}}}) {
        r = run("stream --data " + std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt --kv-quant " + spec);
        CHECK(r.status == 1);
        for (const char* p : says) CHECK(r.out.find(p) != std::string::npos);
    }
}

namespace {

/// `s` as one word for sh: in single quotes, each ' written as '\''.
std::string shell_word(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

/// Render a figure's gnuplot script again as SVG (text, so what gnuplot drew can be read back) into `svg`.
bool script_as_svg(const std::string& gp, const std::string& svg) {
    std::ifstream in(gp);
    std::string line, rest;
    std::getline(in, line);  // set terminal pngcairo ...
    std::getline(in, line);  // set output ...
    for (std::stringstream ss; std::getline(in, line);) rest += line + "\n";
    const std::string script = svg + ".gp";
    std::ofstream(script) << "set terminal svg noenhanced size 1200,800\nset output \"" << svg << "\"\n" << rest;
    return std::system(("gnuplot " + shell_word(script) + " > /dev/null 2>&1").c_str()) == 0;
}

}  // namespace

TEST_CASE("strings from model files and paths reach gnuplot only as text: nothing runs, labels are drawn literally") {
    // A token, a model folder name and --out carrying every metacharacter gnuplot (or a shell) could act on:
    // backquotes (command substitution), $( ), system(), quotes, ';', '@' macros and, in the paths, a newline.
    const std::string work = test::temp_dir("inject");
    const std::string evil_token = "`touch ran1`$(touch ran2)';\"; system(\"touch ran3\") @m", evil_name =
        "m`touch ran4`$(touch ran5)\"'; system('touch ran6') @n";
    const std::string model = work + "/" + evil_name, out = work + "/o`touch ran7`$(touch ran8)\";' system(\"touch ran9\")\n@o";
    REQUIRE(::mkdir(model.c_str(), 0755) == 0);
    const std::string src = test::model("tiny-llama");
    for (const char* f : {"config.json", "model.safetensors"}) REQUIRE(::symlink((src + "/" + f).c_str(), (model + "/" + f).c_str()) == 0);
    auto tok = io::read_json_file(src + "/tokenizer.json");
    for (auto& t : tok["added_tokens"])
        if (t["content"] == "<s>") t["content"] = evil_token;  // id 1, the BOS every window starts with
    io::write_text_file_atomic(model + "/tokenizer.json", tok.dump());
    const std::string cmd = "cd " + shell_word(work) + " && " + MASSACT_TOOL + " report " + shell_word(model) +
                            " --max-seqs 4 --seq-len 64 --out " + shell_word(out) + " > log.txt 2>&1";
    const int rc = std::system(cmd.c_str());
    std::ifstream log(work + "/log.txt");
    std::stringstream ls;
    ls << log.rdbuf();
    INFO(ls.str());
    REQUIRE(rc == 0);
    for (int k = 1; k <= 9; ++k) {
        CAPTURE(k);
        CHECK(!io::file_exists(work + "/ran" + std::to_string(k)));  // nothing ran
    }
    REQUIRE(io::file_exists(out + "/fig3_attention.png"));
    REQUIRE(io::file_exists(out + "/fig2_layer_magnitudes.png"));
    // The scripts hold no character gnuplot acts on outside its own syntax...
    for (const char* fig : {"fig1_magnitudes_3d", "fig2_layer_magnitudes", "fig3_attention"}) {
        std::ifstream g(out + "/data/" + fig + ".gp");
        std::stringstream gs;
        gs << g.rdbuf();
        CAPTURE(fig);
        CHECK(gs.str().find('`') == std::string::npos);
        CHECK(gs.str().find('@') == std::string::npos);
        const bool dollar_free = gs.str().find('$') == std::string::npos || std::string(fig) == "fig1_magnitudes_3d";  // ($3: columns)
        CHECK(dollar_free);
        CHECK(gs.str().find("system(") == std::string::npos);  // (the letters stay, inside a literal; the call cannot)
    }
    // ... and what gnuplot draws is the token and the folder name, character for character.
    REQUIRE(script_as_svg(out + "/data/fig3_attention.gp", work + "/fig3.svg"));
    REQUIRE(script_as_svg(out + "/data/fig2_layer_magnitudes.gp", work + "/fig2.svg"));
    std::ifstream s3(work + "/fig3.svg"), s2(work + "/fig2.svg");
    std::stringstream t3, t2;
    t3 << s3.rdbuf();
    t2 << s2.rdbuf();
    CHECK(t3.str().find(evil_token) != std::string::npos);
    CHECK(t2.str().find(evil_name + ": largest and median") != std::string::npos);
    for (int k = 1; k <= 9; ++k) CHECK(!io::file_exists(work + "/ran" + std::to_string(k)));  // (not when rendering again either)
}

TEST_CASE("a figure path that starts with '-' is a file, not a gnuplot option") {
    const std::string work = test::temp_dir("dash");
    const std::string cmd = "cd " + shell_word(work) + " && " + MASSACT_TOOL + " compare " + test::model("tiny-llama") + " " +
                            test::model("tiny-gpt2") + " --ids 1,2,3,4,5,6 --figure '-esystem(\"touch ran\")' > log.txt 2>&1";
    CHECK(std::system(cmd.c_str()) == 0);
    CHECK(!io::file_exists(work + "/ran"));
    CHECK(io::file_exists(work + "/-esystem(\"touch ran\").png"));
}

TEST_CASE("massact report without gnuplot still writes report.md and report.json and names the skipped figures") {
    const std::string dir = test::temp_dir("nognuplot");
    const std::string cmd = "env PATH=/nonexistent " + std::string(MASSACT_TOOL) + " report " + test::model("tiny-gpt2") +
                            " --max-seqs 8 --out " + dir + "/out > " + dir + "/log.txt 2>&1";
    REQUIRE(std::system(cmd.c_str()) == 0);
    std::ifstream f(dir + "/log.txt");
    std::stringstream ss;
    ss << f.rdbuf();
    INFO(ss.str());
    CHECK(ss.str().find("gnuplot not found") != std::string::npos);
    CHECK(io::file_exists(dir + "/out/report.md"));
    CHECK(io::file_exists(dir + "/out/report.json"));
    CHECK(!io::file_exists(dir + "/out/fig1_magnitudes_3d.png"));
    const auto rep = io::read_json_file(dir + "/out/report.json");
    CHECK(rep["figures"].empty());
    CHECK(rep["skipped_figures"].size() == 6);
    std::ifstream md(dir + "/out/report.md");
    std::stringstream ms;
    ms << md.rdbuf();
    CHECK(ms.str().find("apt-get install gnuplot-nox") != std::string::npos);
    CHECK(ms.str().find("No massive activation was detected") != std::string::npos);
}

TEST_CASE("massact run and info on the families: default sites of gemma2 and mixtral match Hugging Face") {
    for (const std::string family : {"gemma2", "mixtral"}) {
        CAPTURE(family);
        const std::string dir = test::temp_dir("fam");
        const std::string model = test::data("families/" + family);
        const auto r = run("run " + model + " --ids-file " + model + "/ref.safetensors:input_ids --dump " + dir + "/d.safetensors " +
                           "--hooks '*hook_resid_post,*hook_pattern,ln_final.hook_normalized,logits'");
        INFO(r.out);
        REQUIRE(r.status == 0);
        io::SafetensorsFile d(dir + "/d.safetensors"), rf(model + "/ref.safetensors");
        auto rel = [](const std::vector<float>& a, const std::vector<float>& b) {
            double m = 0, s = 0;
            for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::abs(a[i] - b[i]))), s = std::max(s, double(std::abs(b[i])));
            return m / s;
        };
        CHECK(rel(d.tensor("blocks.1.hook_resid_post").to_float(), rf.tensor("hidden_states.2").to_float()) < 2e-4);
        CHECK(rel(d.tensor("ln_final.hook_normalized").to_float(), rf.tensor("hidden_states.3").to_float()) < 2e-4);
        CHECK(rel(d.tensor("logits").to_float(), rf.tensor("logits").to_float()) < 2e-4);
        CHECK(d.tensor("blocks.2.attn.hook_pattern").shape == rf.tensor("attentions.2").shape);
        const auto info = run("info " + model);
        REQUIRE(info.status == 0);
        CHECK(info.out.find(family == "gemma2" ? "soft-cap 50" : "mixture of 4 experts, top 2") != std::string::npos);
    }
    const auto bad = run("run " + test::data("families/mixtral") + " --ids 1,2,3 --hooks '*mlp.hook_post' --dump /tmp/never.safetensors");
    CHECK(bad.status == 1);
    CHECK(bad.out.find("matches no hook site") != std::string::npos);
}

TEST_CASE("every command runs on every language family: scan, ablate, inject, superweight, compare, swap, report, bos") {
    // MoE families have one down_proj per expert: superweight refuses them with a message (exit 1), unless some layers
    // are dense (DeepSeek's first_k_dense_replace): those are searched.
    for (const std::string family : {"gpt_neox", "gpt_neox_seq", "gptj", "phi", "opt", "falcon", "falcon_new", "bloom", "mpt",
                                     "gpt_oss", "gemma", "gemma2", "gemma3", "qwen3", "phi3", "olmo", "olmo2", "mixtral",
                                     "starcoder2", "stablelm", "llama_yarn", "seed_oss", "smollm3", "granite", "glm4", "olmo3",
                                     "exaone4", "vaultgemma", "nemotron", "cohere", "cohere2", "qwen2_moe", "olmoe", "granitemoe",
                                     "apertus", "bitnet", "qwen3_next_gated_dense", "deepseek_v2", "deepseek_v3", "llama4_text",
                                     "qwen3_next", "qwen3_5_text", "mamba2"}) {
        CAPTURE(family);
        const std::string dir = test::temp_dir("every");
        const std::string model = test::data("families/" + family);
        const std::string ids = " --ids-file " + model + "/ref.safetensors:input_ids";
        const ModelConfig cfg = load_config(model);
        bool moe = cfg.moe();
        for (int l = 0; l < cfg.num_layers; ++l) moe = moe && cfg.layer_moe(l);
        for (const std::string& cmd : {"scan " + model + ids + " --json " + dir + "/scan.json",
                                      "ablate " + model + ids + " --layer 1 --dims 0,1 --mode zero --json " + dir + "/ablate.json",
                                      "inject " + model + ids + " --layer 1 --from 0 --to 5",
                                      "compare " + model + " " + model + ids, "swap " + model + ids + " --softmax softmax1",
                                      "report " + model + ids + " --out " + dir + "/report",
                                      "stream " + model + ids + " --policy cache --sinks 1 --window 3 --json " + dir + "/stream.json",
                                      "generate " + model + " --ids 1,2,3 -n 4 --sinks 1 --window 3",
                                      "bench " + model + " -p 8 -n 4 -r 1", "bos " + model + " --ids 5,9,20,31,7 --bos 1"}) {
            const auto r = run(cmd);
            INFO(cmd << "\n" << r.out);
            CHECK(r.status == 0);
        }
        const auto sw = run("superweight " + model + ids);
        INFO(sw.out);
        CHECK(sw.status == (moe || !cfg.has_mlp ? 1 : 0));
        if (moe) CHECK(sw.out.find("mixture of experts") != std::string::npos);
        if (!cfg.has_mlp) CHECK(sw.out.find("no MLP") != std::string::npos);
        const auto scan = io::read_json_file(dir + "/scan.json");
        CHECK(scan["layers"].size() == static_cast<std::size_t>(load_config(model).num_layers));
        if (cfg.has_attention()) CHECK(scan["sink_alpha_per_layer_head"].size() == scan["layers"].size());  // ALiBi models too (bloom, mpt)
        else CHECK(!scan.contains("sink_alpha_per_layer_head"));  // (Mamba-2: nothing to measure, nothing written)
        CHECK(io::read_json_file(dir + "/ablate.json")["ppl_intervened"].get<double>() > 0);
        CHECK(io::read_json_file(dir + "/report/report.json").contains("scan"));
        CHECK(io::read_json_file(dir + "/stream.json")["ppl"].get<double>() > 0);
        for (int l = 0; l < cfg.num_layers && cfg.has_attention(); ++l)  // attention metrics only where the layer has attention (Gated DeltaNet: [])
            CHECK(scan["sink_alpha_per_layer_head"][static_cast<std::size_t>(l)].size() ==
                  static_cast<std::size_t>(cfg.layer_attention(l) ? cfg.num_heads : 0));
    }
    // info says what is special: ALiBi and the fused layout (BLOOM), interleaved rotary and the LM head bias (GPT-J)
    check_says(run("info " + test::data("families/bloom")), {"ALiBi", "fused qkv per head", "embedding norm"});
    check_says(run("info " + test::data("families/gptj")), {"interleaved (2j, 2j + 1)", "with bias"});
    check_says(run("info " + test::data("families/smollm3")), {"layers 1,3", "no RoPE (NoPE)", "layers 0,2"});
    check_says(run("info " + test::data("families/granite")), {"residual scale", "multiplied by 0.5", "logits multiplied by 0.25"});
    check_says(run("info " + test::data("families/nemotron")), {"squared ReLU", "LayerNorm (scale 1 + w)"});
    check_says(run("info " + test::data("families/qwen3_next_gated_dense")), {"gated by sigmoid(g)"});
    check_says(run("info " + test::data("families/qwen2_moe")), {"shared expert of width 48 behind a sigmoid gate"});
    check_says(run("info " + test::data("families/qwen3_next")),
               {"Gated DeltaNet: 2 key heads of 16, 4 value heads of 16", "4 taps", "fused per key head", "layers 0,2",
                "Gated DeltaNet (linear attention, no KV rows), experts", "layers 1,3", "full causal attention, experts"});
    // a layer without attention says so ("-") in scan, ablate and inject, and in their JSON (null / [])
    const std::string q35 = test::data("families/qwen3_5_text"), q35_ids = " --ids-file " + q35 + "/ref.safetensors:input_ids";
    const std::string tmp = test::temp_dir("deltanet");
    check_says(run("scan " + q35 + q35_ids), {"2 layers without attention: -"});
    const auto ab = run("ablate " + q35 + q35_ids + " --layer 1 --dims 0,1 --mode zero --json " + tmp + "/ab.json");
    REQUIRE(ab.status == 0);
    const auto abj = io::read_json_file(tmp + "/ab.json");
    CHECK((abj["attention_on_tokens_original"][0][0].is_null() && abj["attention_on_tokens_original"][0][1].is_number() &&
           abj["attention_on_tokens_original_per_head"][0][0].empty()));
    // the mean over sequences (2 here), not their sum: at most 1
    CHECK(abj["attention_on_tokens_original"][0][1].get<double>() <= 1.0);
    const auto inj = run("inject " + q35 + q35_ids + " --layer 1 --from 0 --to 5 --json " + tmp + "/inj.json");
    check_says(inj, {"- (no attention in this layer)"});
    CHECK(io::read_json_file(tmp + "/inj.json")["median_factor"][0].is_null());
    const auto qb = run("quant " + q35 + q35_ids);
    CHECK(qb.status == 1);
    check_says(qb, {"quant:", "Gated DeltaNet"});
    check_says(run("swap " + q35 + q35_ids + " --softmax sigmoid"), {"largest attention row sum with the swap"});
    check_says(run("info " + test::data("families/mamba2")),
               {"h = x + mixer(norm(x)), no MLP", "Mamba-2: 8 heads of 16, 1 group(s) of B/C, state 16", "in [0, inf)", "positions",
                "none (the order is in the recurrence)", "Mamba-2 (state space, no attention)"});
    check_says(run("scan " + test::data("families/mamba2") + " --ids-file " + test::data("families/mamba2") + "/ref.safetensors:input_ids"),
               {"none measured (no layer has attention)"});
    check_says(run("info " + test::data("families/deepseek_v3")),
               {"latent of 16 (normalised)", "rank-32", "top 2 by sigmoid", "best 1 of 2 groups (by their two best)", "x 2.5",
                "layers 0 ", "dense MLP", "layers 1,2,3"});
    check_says(run("info " + test::data("families/deepseek_v2")), {"top 2 by softmax", "shared expert of width 64"});
    check_says(run("info " + test::data("families/llama4_text")),
               {"chunked attention, chunks of 8", "after RoPE, RoPE layers only", "ln(1 + floor((pos + 1) / 8))",
                "multiplying the expert's input", "dense layers of width 128", "no RoPE (NoPE)"});
}

TEST_CASE("--batch must be positive in every command that takes it; --site widths; no shell in figure paths") {
    const std::string model = test::model("tiny-llama");
    for (const std::string cmd : {"eval", "scan", "ablate --layer 1 --dims 1", "inject --layer 1 --to 3", "superweight",
                                  "report --out /tmp/massact-never", "swap --softmax softmax1"}) {
        for (const std::string bad : {"0", "-3"}) {
            CAPTURE(cmd);
            const auto r = run(cmd + " " + model + " --ids 1,2,3,4,5 --batch " + bad);
            CHECK(r.status == 1);
            CHECK(r.out.find("--batch") != std::string::npos);
        }
    }
    const auto c = run("compare " + model + " " + model + " --ids 1,2,3,4,5 --batch 0");
    CHECK(c.status == 1);
    CHECK(c.out.find("--batch") != std::string::npos);
    // An MLP site has intermediate_size (576) features: dim 500 is valid there, 600 is not.
    const std::string ids = " --ids 1,20,30,40,50,60 ";
    auto r = run("ablate " + model + ids + "--layer 1 --site blocks.1.mlp.hook_post --dims 500 --mode zero");
    INFO(r.out);
    CHECK(r.status == 0);
    r = run("ablate " + model + ids + "--layer 1 --site blocks.1.mlp.hook_post --dims 600 --mode mean");
    CHECK(r.status == 1);
    CHECK(r.out.find("--dims: dim 600 out of range [0, 576)") != std::string::npos);
    r = run("ablate " + model + ids + "--layer 1 --site blocks.1.mlp.hook_pots --dims 5 --mode mean");
    CHECK(r.status == 1);
    CHECK(r.out.find("unknown hook site \"blocks.1.mlp.hook_pots\"") != std::string::npos);
    CHECK(r.out.find("stoi") == std::string::npos);
    // A figure path with shell syntax is a file name, never a command.
    const std::string dir = test::temp_dir("shell");
    std::remove("massact-shell-marker");
    r = run("compare " + model + " " + test::model("tiny-gpt2") + " --ids 1,2,3,4,5,6 --figure '" + dir +
            "/f$(touch massact-shell-marker).png'");
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(std::ifstream(dir + "/f$(touch massact-shell-marker).png").good());  // the literal name
    CHECK(!std::ifstream("massact-shell-marker").good());                       // nothing ran
}

TEST_CASE("a checkpoint with an Inf weight: eval, scan and run name the first non-finite site; --allow-nonfinite goes on") {
    const std::string src = test::data("families/gemma");
    const std::string dir = test::temp_dir("inf");
    std::system(("cp " + src + "/config.json " + dir + "/").c_str());
    const io::SafetensorsFile f(src + "/model.safetensors");
    io::SafetensorsWriter w;
    std::vector<std::vector<float>> keep;
    for (const auto& name : f.names()) {
        keep.push_back(f.tensor(name).to_float());
        if (name == "model.layers.1.mlp.down_proj.weight") keep.back()[5] = std::numeric_limits<float>::infinity();
        w.add_f32(name, f.tensor(name).shape, keep.back().data());
    }
    w.write(dir + "/model.safetensors");
    const std::string ids = " --ids 1,20,30,40,50,60,70";
    for (const std::string& cmd : std::vector<std::string>{"eval", "scan", "run --dump " + dir + "/d.safetensors"}) {
        CAPTURE(cmd);
        const auto r = run(cmd + " " + dir + ids);
        CHECK(r.status == 1);
        CHECK(r.out.find("non-finite value") != std::string::npos);
        CHECK(r.out.find("at blocks.1.hook_resid_post: sequence 0, position 0") != std::string::npos);
        CHECK(run(cmd + " " + dir + ids + " --allow-nonfinite").status == 0);
    }
    CHECK(run("eval " + src + ids).status == 0);  // the clean checkpoint passes the check
}

TEST_CASE("320 mutated config.json, tokenizer.json, safetensors and GGUF files: every run exits 0 or 1 with a message naming the file") {
    // Mutations: flipped bytes, truncation, a duplicated span, a huge or negative number spliced in.
    std::mt19937 g(2026);
    auto mutate = [&](std::string s) {
        std::uniform_int_distribution<int> kind(0, 3);
        auto pos = [&] { return std::uniform_int_distribution<std::size_t>(0, s.empty() ? 0 : s.size() - 1)(g); };
        switch (kind(g)) {
            case 0:
                for (int i = 0; i < 4 && !s.empty(); ++i) s[pos()] = static_cast<char>(g());
                break;
            case 1: s.resize(pos()); break;
            case 2: {
                const std::size_t a = pos(), n = std::min<std::size_t>(64, s.size() - a);
                s.insert(pos(), s.substr(a, n));
                break;
            }
            default: s.insert(pos(), g() % 2 ? "99999999999" : "-7"); break;
        }
        return s;
    };
    auto slurp = [](const std::string& p) {
        std::ifstream f(p, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(f), {});
    };
    const std::string src = test::data("families/gemma");
    const std::string config = slurp(src + "/config.json"), weights = slurp(src + "/model.safetensors");
    const std::string tokenizer = slurp(test::model("tiny-llama") + "/tokenizer.json");
    const std::string gguf = slurp(std::string(MASSACT_SOURCE_DIR) + "/fuzz/corpus/fuzz_gguf/model_mixed.gguf");  // a 1-layer llama, Q4_0 / Q5_1
    REQUIRE(gguf.size() > 1000);
    int exits0 = 0, exits1 = 0;
    for (int i = 0; i < 320; ++i) {
        const std::string dir = test::temp_dir("mut");
        const int which = i % 4;  // 0: config, 1: weights, 2: tokenizer, 3: a GGUF file
        std::ofstream(dir + "/config.json", std::ios::binary) << (which == 0 ? mutate(config) : config);
        std::ofstream(dir + "/model.safetensors", std::ios::binary) << (which == 1 ? mutate(weights) : weights);
        std::ofstream(dir + "/tokenizer.json", std::ios::binary) << (which == 2 ? mutate(tokenizer) : tokenizer);
        std::ofstream(dir + "/m.gguf", std::ios::binary) << mutate(gguf);
        const std::string cmd = which == 2   ? "tokenize " + dir + " 'Summer is warm. Winter is cold.'"
                                : which == 3 ? (i % 8 == 3 ? "tokenize " + dir + "/m.gguf 'ab a'" : "eval " + dir + "/m.gguf --ids 1,2,3,4")
                                             : "eval " + dir + " --ids 1,2,3,4";
        const auto r = run(cmd, 60);
        CAPTURE(i);
        CAPTURE(r.out);
        CHECK((r.status == 0 || r.status == 1));  // 124: hang, 128+: signal
        if (r.status == 1) {  // the message names the broken file (a NaN the weights produce: the model directory)
            CHECK(r.out.find("error") != std::string::npos);
            CHECK(r.out.find(which == 2 ? dir + "/tokenizer.json" : which == 3 ? dir + "/m.gguf" : dir) != std::string::npos);
        }
        (r.status == 0 ? exits0 : exits1) += 1;
        std::system(("rm -rf " + dir).c_str());
    }
    MESSAGE("mutated inputs: " << exits0 << " accepted, " << exits1 << " refused with a message");
    CHECK(exits1 > 130);  // most mutations are caught
}

TEST_CASE("massact stream: the JSON a policy gives, --compare's five runs and figure, and bad settings") {
    const std::string dir = test::temp_dir("stream");
    const std::string ids = " --ids-file " + test::data("stream/val_stream_ids_2048.json");
    auto r = run("stream" + ids + " --tokens 400 --policy cache --sinks 4 --window 28 --json " + dir + "/s.json");
    INFO(r.out);
    REQUIRE(r.status == 0);
    const auto j = io::read_json_file(dir + "/s.json");
    CHECK(j["policy"] == "cache");
    CHECK(j["sinks"] == 4);
    CHECK(j["window"] == 28);
    CHECK(j["tokens"] == 400);
    CHECK(j["tokens_per_s"].get<double>() > 0);
    // The tool's numbers are the library's.
    const Transformer m(test::model("tiny-llama"));
    auto stream = io::read_json_file(test::data("stream/val_stream_ids_2048.json")).get<std::vector<std::int64_t>>();
    stream.resize(400);
    analysis::StreamOptions o;
    o.sinks = 4;
    o.window = 28;
    const auto lib = analysis::stream_nll(m, stream, o);
    REQUIRE(j["nll"].size() == 399);
    for (std::size_t i = 0; i < 399; ++i) CHECK(j["nll"][i].get<double>() == doctest::Approx(lib.nll[i]).epsilon(1e-9));
    CHECK(j["ppl"].get<double>() == doctest::Approx(lib.ppl).epsilon(1e-12));
    // --data: BOS + the text as one stream, the same tokens.
    r = run("stream --data " + std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt --tokens 400 --sinks 4 --window 28 --json " +
            dir + "/d.json");
    REQUIRE(r.status == 0);
    CHECK(io::read_json_file(dir + "/d.json")["nll"] == j["nll"]);

    r = run("stream" + ids + " --tokens 300 --compare --window 32 --json " + dir + "/c.json --figure " + dir + "/c.png");
    INFO(r.out);
    REQUIRE(r.status == 0);
    check_says(r, {"dense", "window 0+32", "sinks 1+31", "sinks 4+28", "recompute 32"});
    const auto c = io::read_json_file(dir + "/c.json");
    REQUIRE(c["runs"].size() == 5);
    CHECK(c["runs"][0]["policy"] == "dense");
    CHECK(c["runs"][3]["sinks"] == 4);
    CHECK(c["runs"][3]["window"] == 28);
    CHECK(c["runs"][4]["policy"] == "recompute");
    REQUIRE(c["runs"][3]["nll"].size() == 299);  // sinks 4+28 over 300 tokens: the first 299 losses of the 400-token run
    for (std::size_t i = 0; i < 299; ++i) CHECK(c["runs"][3]["nll"][i] == j["nll"][i]);
    CHECK(io::file_exists(dir + "/c.png"));

    for (const auto& bad : std::vector<std::pair<std::string, std::string>>{
             {ids + " --policy nope", "expected dense, cache or recompute"},
             {ids + " --policy recompute --sinks 4", "recompute policy keeps no sink tokens"},
             {ids + " --policy cache --window 0", "--window: must be at least 1"},
             {ids + " --tokens 1", "--tokens: 1: expected at least 2"},
             {"", "give one of --data and --ids-file"},
             {ids + " --data x.txt", "give one of --data and --ids-file"}}) {
        const auto e = run("stream" + bad.first + " --json " + dir + "/bad.json");
        INFO(bad.first << "\n" << e.out);
        CHECK(e.status == 1);
        CHECK(e.out.find(bad.second) != std::string::npos);
        CHECK(!io::file_exists(dir + "/bad.json"));
    }
}

TEST_CASE("massact generate: greedy text streamed, sampling seeded, bad settings") {
    auto r = run("generate --prompt 'The quick brown fox' -n 8");
    INFO(r.out);
    REQUIRE(r.status == 0);
    CHECK(r.out.rfind("The quick brown fox", 0) == 0);
    CHECK(r.out.size() > std::string("The quick brown fox").size() + 8);
    // Greedy: the library's generate, decoded.
    const Transformer m(test::model("tiny-llama"));
    const auto tok = text::Tokenizer::from_file(test::model("tiny-llama") + "/tokenizer.json");
    analysis::GenerateOptions o;
    o.max_tokens = 8;
    o.stop = m.config().eos_token_ids;
    auto prompt = tok.encode("The quick brown fox", true);
    auto all = prompt;
    for (auto t : analysis::generate(m, prompt, o)) all.push_back(t);
    CHECK(r.out == tok.decode(all, true) + "\n");
    const auto a = run("generate --prompt 'Once' -n 10 --temperature 0.9 --seed 5");
    CHECK(a.status == 0);
    CHECK(run("generate --prompt 'Once' -n 10 --temperature 0.9 --seed 5").out == a.out);
    check_says(run("generate --prompt 'Once' -n -1"), {"-n: must not be negative"});
    check_says(run("generate --prompt 'Once' --sinks 2"), {"--sinks: needs --window"});
    check_says(run("generate --prompt 'Once' --temperature -1"), {"--temperature: must not be negative"});
    check_says(run("generate"), {"no input"});
}

TEST_CASE("massact bench: prefill and decode tokens/s as JSON; bad settings") {
    const auto r = run("bench -p 32 -n 8 -d 40 -r 2 -t 1 --json");
    INFO(r.out);
    REQUIRE(r.status == 0);
    const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
    CHECK(j["prefill_tokens_per_s"].get<double>() > 0);
    CHECK(j["decode_tokens_per_s"].get<double>() > 0);
    CHECK(j["decode_depth"] == 40);
    CHECK(j["decode_tokens"] == 8);
    CHECK(j["threads"] == 1);
    CHECK(j["precision"] == "f32");
    CHECK(j["tokens"] == 32);
    check_says(run("bench -p 0 -n 0"), {"nothing to measure"});
    check_says(run("bench --precision int3"), {"--precision", "\"int3\"", "f32", "bf16"});
    check_says(run("bench -p 0 -n 4 --kv-cache f8"), {"--kv-cache", "\"f8\"", "f32, f16 or bf16"});
    const auto h = run("bench -p 0 -n 4 -d 40 -r 1 -t 1 --kv-cache bf16 --json");
    REQUIRE(h.status == 0);
    CHECK(nlohmann::json::parse(h.out.substr(h.out.find('{')))["kv_cache"] == "bf16");
    check_says(run("bench " + test::model("tiny-gpt2") + " -p 8 -n 8 -d 2000"), {"learned positions"});
}

TEST_CASE("every command takes MODEL.gguf where it takes a model directory") {
    const std::string dir = test::temp_dir("gguf");
    const std::string g = test::data("gguf/tiny-llama-Q4_K_M.gguf"), data = " --data " + std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt";
    for (const std::string& cmd : {"info " + g, "tokenize " + g + " 'Hello world'", "run " + g + " --prompt 'Hello' --dump " + dir + "/d.safetensors",
                                  "eval " + g + " --prompt 'Hello world, hello'", "scan " + g + data + " --max-seqs 8 --json " + dir + "/scan.json",
                                  "ablate " + g + data + " --max-seqs 4 --layer 2 --dims 215 --mode zero", "inject " + g + data + " --max-seqs 4 --layer 2 --from 0 --to 20",
                                  "superweight " + g + " --prompt 'Summer is warm.'", "swap " + g + data + " --max-seqs 4 --softmax softmax1",
                                  "compare " + g + " " + test::model("tiny-llama") + data + " --max-seqs 4",
                                  "stream " + g + data + " --tokens 200 --window 32", "generate " + g + " --prompt 'The' -n 5", "bench " + g + " -p 16 -n 4 -r 1",
                                  "report " + g + data + " --max-seqs 8 --out " + dir + "/report"}) {
        const auto r = run(cmd);
        INFO(cmd << "\n" << r.out);
        CHECK(r.status == 0);
    }
    // The Q4_K_M model still carries tiny-llama's massive activation: dim 215 of <s> from layer 2.
    const auto scan = io::read_json_file(dir + "/scan.json");
    bool found = false;
    for (const auto& m : scan["massive_activations"]) found |= m["dim"] == 215 && m["first_layer"] == 2;
    CHECK(found);
    check_says(run("info " + dir + "/missing.gguf"), {"missing.gguf", "cannot open"});
    // massact eval on llama.cpp's files: the float64 references within 0.05%.
    const auto ref = io::read_json_file(test::data("gguf/reference.json"));
    for (const char* name : {"tiny-llama-Q8_0.gguf", "tiny-llama-Q4_K_M.gguf"}) {
        const auto r = run("eval " + test::data(std::string("gguf/") + name) + " --ids-file " + test::data("tiny-llama.ref.safetensors") +
                           ":ppl.input_ids --json " + dir + "/e.json");
        INFO(name << "\n" << r.out);
        REQUIRE(r.status == 0);
        const auto e = io::read_json_file(dir + "/e.json");
        CHECK(std::abs(e["ppl"].get<double>() / ref[name]["ppl"].get<double>() - 1) < 5e-4);
        REQUIRE(e["seq_nll"].size() == ref[name]["seq_nll"].size());
        for (std::size_t i = 0; i < e["seq_nll"].size(); ++i)
            CHECK(std::abs(e["seq_nll"][i].get<double>() / ref[name]["seq_nll"][i].get<double>() - 1) < 5e-4);
    }
}

TEST_CASE("massact quant: one row per experiment with the JSON fields, a figure, and models it cannot study") {
    const std::string dir = test::temp_dir("quant");
    const std::string data = " --data " + std::string(MASSACT_SOURCE_DIR) + "/examples/data/val.txt --max-seqs 2 --seq-len 96";
    auto r = run("quant" + data + " --json " + dir + "/q.json --figure " + dir + "/q.png");
    INFO(r.out);
    REQUIRE(r.status == 0);
    check_says(r, {"float perplexity", "massive dims: 215", "SmoothQuant", "PrefixQuant", "LLM.int8", "rotation (hadamard)",
                   "rotation (orthogonal)", "int4    int4", "rotated (hadamard): the largest |h|", "A per-tensor static", "KV4",
                   "(IntactKV)", "prefixed outlier tokens (PrefixQuant)", "PrefixQuant: 0 outlier tokens per sequence; prefix: 1 (<s>)"});
    const auto j = io::read_json_file(dir + "/q.json");
    CHECK(j["ppl_float"].get<double>() > 1);
    CHECK(j["prefix_tokens"] == nlohmann::json::array({1}));
    REQUIRE(j["rows"].size() >= 8);
    for (const auto& row : j["rows"]) {
        for (const char* k : {"weights", "activations", "granularity", "protect", "ppl", "kl_mean", "max_abs_error_per_layer", "resid_max_abs",
                              "kv_bits", "static_scales", "prefix_outliers", "intact_kv"})
            CHECK(row.contains(k));
        CHECK(row["max_abs_error_per_layer"].size() == 8);
    }
    CHECK(io::file_exists(dir + "/q.png"));
    const auto bad = run("quant " + test::data("families/gpt_neox") + " --ids-file " + test::data("families/gpt_neox") +
                         "/ref.safetensors:input_ids --json " + dir + "/bad.json");
    CHECK(bad.status == 1);
    check_says(bad, {"quant:", "sequential pre-norm"});
    CHECK(!io::file_exists(dir + "/bad.json"));
}

TEST_CASE("massact compare over several models, softpick and sigmoid swaps, and the random-token sink rate") {
    const std::string dir = test::temp_dir("sinkfree");
    const std::string a = test::model("tiny-llama-softmax"), b = test::model("tiny-llama-softpick"), c = test::model("tiny-llama-sigmoid");
    const std::string data = " --ids-file " + test::data("tiny-llama-softmax.ref.safetensors") + ":ppl.input_ids --max-seqs 4";
    auto r = run("compare " + a + " " + b + " " + c + data + " --sink-random-tokens 3 --random-seed 5 --json " + dir + "/c.json --figure " +
                 dir + "/c.png");
    INFO(r.out);
    REQUIRE(r.status == 0);
    check_says(r, {"3 models, 4 sequences x 256 tokens", "3 random-token sequences", "tiny-llama-softpick", "sink rate per layer"});
    const auto j = io::read_json_file(dir + "/c.json");
    REQUIRE(j["models"].size() == 3);
    for (const auto& m : j["models"]) {
        CHECK(m["layers"].size() == 8);
        CHECK(m.contains("sink_rate_random_tokens"));
        CHECK(m["val_ppl"].get<double>() > 1.0);
    }
    CHECK(io::file_exists(dir + "/c.png"));
    // the same scan as `massact scan` of each model on the same data
    r = run("scan " + b + data + " --json " + dir + "/s.json");
    REQUIRE(r.status == 0);
    const auto s = io::read_json_file(dir + "/s.json");
    CHECK(s["val_ppl"].get<double>() == j["models"][1]["val_ppl"].get<double>());
    CHECK(s["sink_rate"].get<double>() == j["models"][1]["sink_rate"].get<double>());
    // --random-tokens as the data of any command that takes --data: seeded
    for (const char* seed : {"3", "3", "4"}) {
        r = run("scan " + a + " --random-tokens 2 --seq-len 32 --random-seed " + seed + " --json " + dir + "/e" + seed + ".json");
        REQUIRE(r.status == 0);
    }
    r = run("scan " + a + " --random-tokens 2 --seq-len 32 --random-seed 3 --json " + dir + "/e3b.json");
    REQUIRE(r.status == 0);
    const auto e1 = io::read_json_file(dir + "/e3.json"), e2 = io::read_json_file(dir + "/e3b.json"), e3 = io::read_json_file(dir + "/e4.json");
    CHECK(e1["val_ppl"] == e2["val_ppl"]);
    CHECK(e1["val_ppl"] != e3["val_ppl"]);
    CHECK(e1["val_sequences"] == 2);
    CHECK(e1["val_ppl"].get<double>() > 100.0);  // random tokens are hard to predict
    check_says(run("scan " + a + " --random-tokens 2 --data x.txt"), {"give only one of --data, --random-tokens"});
    check_says(run("scan " + a + " --random-tokens -2"), {"--random-tokens"});
    // the swaps on the command line, and a sigmoid bias that is not a number
    r = run("scan " + a + data + " --softmax softpick --json " + dir + "/sp.json");
    REQUIRE(r.status == 0);
    CHECK(io::read_json_file(dir + "/sp.json")["val_ppl"].get<double>() > j["models"][0]["val_ppl"].get<double>());
    check_says(run("scan " + a + data + " --softmax sigmoid:big"), {"--softmax", "\"big\" is not a number"});
    check_says(run("compare " + a + data), {"models: At least 2 required"});
}

TEST_CASE("massact superexpert: a model without a massive activation says so; a dense model is refused") {
    const std::string dir = test::temp_dir("superexpert");
    auto r = run("superexpert " + test::data("families/mixtral") + " --ids 1,5,9,200,31,7,44,12 --json " + dir + "/s.json");
    INFO(r.out);
    REQUIRE(r.status == 0);
    check_says(r, {"0 massive activation(s)", "no massive activation to trace"});
    const auto j = io::read_json_file(dir + "/s.json");
    CHECK(j["super_experts"].empty());
    check_says(run("superexpert " + test::model("tiny-llama") + " --ids 1,2,3"), {"no mixture-of-experts layers"});
}

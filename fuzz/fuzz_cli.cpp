// Fuzz target: the tool's command line. The input is argument strings, one per line; "@M" stands for the bundled
// tiny-gpt2. Every command is parsed and checked; the quick ones (info, tokenize, run, eval) also run, in a
// scratch folder, and inputs naming any other path ('/' in an argument) are skipped, so nothing is written
// outside it. Any outcome but exit status 0 or 1 with a message (a crash, another exception) is a finding.
#include "common.hpp"

#include "../examples/massact/cli_entry.hpp"

#include <cstdlib>
#include <set>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const bool in_scratch = [] {
        char tmpl[] = "/tmp/massact-fuzz-cli-XXXXXX";
        return ::mkdtemp(tmpl) && ::chdir(tmpl) == 0;
    }();
    if (!in_scratch) std::abort();
    const std::string model = std::string(MASSACT_SOURCE_DIR) + "/examples/models/tiny-gpt2";
    std::vector<std::string> args = {"massact"};
    std::string cur;
    for (std::size_t i = 0; i <= size; ++i) {
        if (i == size || data[i] == '\n') {
            if (cur.find('/') != std::string::npos || cur.find('\0') != std::string::npos) return 0;
            args.push_back(cur == "@M" ? model : cur);
            cur.clear();
        } else {
            cur += static_cast<char>(data[i]);
        }
    }
    if (args.size() > 64) return 0;
    static const std::set<std::string> quick = {"info", "tokenize", "run", "eval"};
    const bool run = args.size() > 1 && quick.count(args[1]) > 0;
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    fuzz::expect_clean([&] {
        const int rc = massact_tool::cli_entry(static_cast<int>(args.size()), argv.data(), {}, nullptr, !run);
        if (rc != 0 && rc != 1) std::abort();
    });
    return 0;
}

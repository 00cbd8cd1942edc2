// Fuzz target: tokenizer.json bytes -> a tokenizer, which then encodes and decodes a fixed text.
#include "common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const nlohmann::json j = fuzz::json_or_discarded(data, size);
    if (j.is_discarded()) return 0;
    fuzz::expect_clean([&] {
        const massact::text::Tokenizer tok(j, "fuzz/tokenizer.json");
        const auto ids = tok.encode("Summer is warm. Winter is cold.\n  12345 caf\xc3\xa9 <s>");
        (void)tok.decode(ids);
    });
    return 0;
}

// Fuzz target: arbitrary bytes (any UTF-8, or not) encoded and decoded by the bundled models' tokenizers.
#include "common.hpp"

namespace {
const std::vector<massact::text::Tokenizer>& tokenizers() {
    static const std::vector<massact::text::Tokenizer> t = {
        massact::text::Tokenizer::from_file(std::string(MASSACT_SOURCE_DIR) + "/examples/models/tiny-llama/tokenizer.json"),
        massact::text::Tokenizer::from_file(std::string(MASSACT_SOURCE_DIR) + "/examples/models/tiny-gpt2/tokenizer.json"),
        massact::text::Tokenizer::from_file(std::string(MASSACT_SOURCE_DIR) + "/tests/data/sp_tokenizer.json")};
    return t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    for (const auto& tok : tokenizers())
        fuzz::expect_clean([&] {
            const auto ids = tok.encode(text);
            (void)tok.decode(ids);
        });
    return 0;
}

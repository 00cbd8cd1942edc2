// Fuzz target: a GGUF file's bytes -> its tokenizer.ggml.* vocabulary as a tokenizer.json -> a tokenizer that
// encodes and decodes a fixed text (the path `massact tokenize FILE.gguf` takes).
#include "common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace massact;
    fuzz::expect_clean([&] {
        const io::GgufFile f(io::MappedFile::from_bytes("fuzz.gguf", std::vector<unsigned char>(data, data + size)));
        const text::Tokenizer tok(text::tokenizer_json(f), "fuzz.gguf (tokenizer.ggml)");
        (void)tok.decode(tok.encode("Summer is warm. ab a\xC3\xA9 <s> </s>\n\t12", true));
    });
    return 0;
}

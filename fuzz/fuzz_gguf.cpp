// Fuzz target: a GGUF file's bytes -> header, metadata and tensor-info validation; then the model layer
// (config from the metadata, tensors bound by shape and type, every small tensor dequantized), a short
// forward when the model is small, and the vocabulary as a tokenizer encoding a text.
#include "common.hpp"

#include <memory>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace massact;
    fuzz::expect_clean([&] {
        auto f = std::make_shared<const io::GgufFile>(io::MappedFile::from_bytes("fuzz.gguf", std::vector<unsigned char>(data, data + size)));
        if (f->has("tokenizer.ggml.model")) {
            const text::Tokenizer tok(text::tokenizer_json(*f), "fuzz.gguf");
            (void)tok.decode(tok.encode("ab a\xC3\xA9 <s>", true));
        }
        if (!f->has("general.architecture")) return;
        GgufModel g = open_gguf(f);
        for (const auto& [name, t] : g.tensors)
            if (t.numel() <= (1 << 16)) (void)t.to_float();
        ModelConfig config = gguf_config(g);
        ModelFiles files{std::move(config), std::make_unique<io::Checkpoint>("fuzz.gguf", std::move(g.tensors), f)};
        const ModelConfig& c = files.config;
        const bool small = static_cast<std::int64_t>(c.num_layers) * c.hidden_size * c.intermediate_size <= (1 << 20) && c.vocab_size <= 4096;
        const Transformer m("fuzz.gguf", std::move(files), {});
        if (!small) return;
        TokenBatch ids(1, 3);
        ids << 0, 1, 2 % m.config().vocab_size;
        (void)m.forward(ids);
    });
    return 0;
}

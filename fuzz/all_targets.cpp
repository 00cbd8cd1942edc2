// The fuzz targets but the command line's, compiled once: each file's LLVMFuzzerTestOneInput renamed
// massact_fuzz_<target> (C linkage), and each target's binary is fuzz/entry.cpp calling its own (the massact headers
// under the sanitizers took 30-70 s per target, eight times over).
#define LLVMFuzzerTestOneInput massact_fuzz_safetensors
#include "fuzz_safetensors.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput massact_fuzz_config
#include "fuzz_config.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput massact_fuzz_tokenizer
#include "fuzz_tokenizer.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput massact_fuzz_encode
#include "fuzz_encode.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput massact_fuzz_gguf
#include "fuzz_gguf.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput massact_fuzz_gguf_vocab
#include "fuzz_gguf_vocab.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput massact_fuzz_preprocessor
#include "fuzz_preprocessor.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput massact_fuzz_image
#include "fuzz_image.cpp"
#undef LLVMFuzzerTestOneInput

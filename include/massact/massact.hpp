// massact/massact.hpp - the whole library.
//
//   core/      error type, Eigen setup, half-precision conversion
//   io/        safetensors (mapped reader, writer), checkpoints, JSON files
//   kernels/   norms, activations, RoPE, softmax variants, attention (know nothing of models)
//   model/     config.json, weights, hook sites, the reference transformer
//   text/      tokenizer.json: BPE, normalizers (utf8proc), regex splits (PCRE2), added tokens, decoders
//   stats/     outlier statistics on matrices: top-k |x|, quantiles, mergeable per-dim moments
//   analysis/  what researchers measure with the model: perplexity, scans, massive activations, sinks
#pragma once

#include "massact/analysis/compare_models.hpp"
#include "massact/analysis/data.hpp"
#include "massact/analysis/finite.hpp"
#include "massact/analysis/intervention.hpp"
#include "massact/analysis/perplexity.hpp"
#include "massact/analysis/quantization.hpp"
#include "massact/analysis/scan.hpp"
#include "massact/analysis/streaming.hpp"
#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/core/half.hpp"
#include "massact/io/checkpoint.hpp"
#include "massact/io/ggml_blocks.hpp"
#include "massact/io/gguf.hpp"
#include "massact/io/json_file.hpp"
#include "massact/io/mapped_file.hpp"
#include "massact/io/safetensors.hpp"
#include "massact/kernels/activation.hpp"
#include "massact/kernels/attention.hpp"
#include "massact/kernels/gemm.hpp"
#include "massact/kernels/norm.hpp"
#include "massact/kernels/rope.hpp"
#include "massact/kernels/simd.hpp"
#include "massact/kernels/softmax.hpp"
#include "massact/kernels/tensor_views.hpp"
#include "massact/model/cache.hpp"
#include "massact/model/config.hpp"
#include "massact/model/describe.hpp"
#include "massact/model/families.hpp"
#include "massact/model/gguf_model.hpp"
#include "massact/model/hooks.hpp"
#include "massact/model/kv_cache.hpp"
#include "massact/model/sites.hpp"
#include "massact/model/transformer.hpp"
#include "massact/model/weights.hpp"
#include "massact/stats/moments.hpp"
#include "massact/stats/quantile.hpp"
#include "massact/stats/topk.hpp"
#include "massact/text/added.hpp"
#include "massact/text/bpe.hpp"
#include "massact/text/decode.hpp"
#include "massact/text/gguf_vocab.hpp"
#include "massact/text/normalize.hpp"
#include "massact/text/pretokenize.hpp"
#include "massact/text/regex.hpp"
#include "massact/text/tokenizer.hpp"
#include "massact/text/unicode.hpp"

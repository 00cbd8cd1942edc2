// llama_cpp_scan MODEL.gguf (--prompt TEXT | --data FILE) [--seq-len 256] [--max-seqs N] [--json OUT]
//
// massact's scan inside llama.cpp: llama.cpp loads and runs the GGUF model with its own kernels (quantized
// weights, quantized activations in its dot products); a cb_eval callback (ggml_backend_sched_eval_callback)
// hands every residual-stream tensor l_out-N, and every attention matrix kq_soft_max-N, to
// massact::probe::Scan; the logits come from llama_get_logits. The JSON is the one `massact scan --json`
// writes. Text goes through llama.cpp's tokenizer, windows by massact's --data protocol
// (analysis/data.hpp). Built with -DMASSACT_LLAMA_CPP_DIR=<llama.cpp source> (README: "Inside llama.cpp").
#include <massact/massact.hpp>

#include <CLI/CLI.hpp>
#include <ggml-backend.h>
#include <ggml.h>
#include <llama.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

using massact::Error;
using massact::Index;

/// What the callback needs: the probe, the tokens of the sequence being decoded, and the first error.
struct Observer {
    massact::probe::Scan* probe = nullptr;
    const std::vector<llama_token>* tokens = nullptr;
    bool attention = true;
    std::string error;
    std::vector<unsigned char> host;  // a copy of tensors that live in a device buffer
};

/// "l_out-12" -> 12 when `name` is `prefix` followed by "-<layer>", else -1.
int layer_of(const char* name, const char* prefix) {
    const std::size_t n = std::strlen(prefix);
    if (std::strncmp(name, prefix, n) != 0 || name[n] != '-') return -1;
    char* end = nullptr;
    const long l = std::strtol(name + n + 1, &end, 10);
    return end && *end == '\0' && end != name + n + 1 ? static_cast<int>(l) : -1;
}

massact::probe::DType dtype_of(const ggml_tensor* t) {
    switch (t->type) {
        case GGML_TYPE_F32: return massact::probe::DType::F32;
        case GGML_TYPE_F16: return massact::probe::DType::F16;
        case GGML_TYPE_BF16: return massact::probe::DType::BF16;
        default: throw Error(std::string(t->name) + ": type " + ggml_type_name(t->type) + ", expected F32, F16 or BF16");
    }
}

/// The tensor's bytes on the host (device buffers are copied).
const unsigned char* host_data(ggml_tensor* t, Observer& o) {
    if (ggml_backend_buffer_is_host(t->buffer)) return static_cast<const unsigned char*>(t->data);
    o.host.resize(ggml_nbytes(t));
    ggml_backend_tensor_get(t, o.host.data(), 0, o.host.size());
    return o.host.data();
}

void observe(ggml_tensor* t, Observer& o) {
    const int resid = layer_of(t->name, "l_out"), pattern = layer_of(t->name, "kq_soft_max");
    massact::probe::Scan& p = *o.probe;
    const massact::probe::DType dt = dtype_of(t);
    const std::size_t es = ggml_type_size(t->type);
    if (t->nb[0] != es) throw Error(std::string(t->name) + ": rows are not contiguous");
    const unsigned char* data = host_data(t, o);
    if (resid >= 0) {  // [n_embd, n_tokens]: one row per token of this micro-batch
        const Index rows = t->ne[1], p0 = p.rows_seen(resid);
        if (p0 + rows > static_cast<Index>(o.tokens->size())) throw Error(std::string(t->name) + ": more rows than tokens");
        p.observe(resid, "hook_resid_post", data, rows, t->ne[0], static_cast<Index>(t->nb[1] / es), dt, o.tokens->data() + p0);
    } else if (pattern >= 0) {  // [n_kv, n_tokens, n_head(, streams)]: head-major query rows over the cache's keys
        const Index keys = t->ne[0], q = t->ne[1], heads = t->ne[2];
        if (t->ne[3] != 1) throw Error(std::string(t->name) + ": several KV streams are not supported");
        if (t->nb[2] == t->nb[1] * static_cast<std::size_t>(q)) {
            p.observe(pattern, "attn.hook_pattern", data, heads * q, keys, static_cast<Index>(t->nb[1] / es), dt);
        } else {  // heads not evenly strided: gather the rows
            std::vector<unsigned char> rows(static_cast<std::size_t>(heads * q * keys) * es);
            for (Index h = 0; h < heads; ++h)
                for (Index i = 0; i < q; ++i)
                    std::memcpy(rows.data() + static_cast<std::size_t>((h * q + i) * keys) * es, data + h * t->nb[2] + i * t->nb[1],
                                static_cast<std::size_t>(keys) * es);
            p.observe(pattern, "attn.hook_pattern", rows.data(), heads * q, keys, keys, dt);
        }
    }
}

/// The cb_eval callback: asked first whether a node is wanted, then called with its data.
bool eval_callback(ggml_tensor* t, bool ask, void* user) {
    auto& o = *static_cast<Observer*>(user);
    const bool wanted = layer_of(t->name, "l_out") >= 0 || (o.attention && layer_of(t->name, "kq_soft_max") >= 0);
    if (ask) return wanted;
    if (!wanted || !o.error.empty()) return o.error.empty();
    try {
        observe(t, o);
    } catch (const std::exception& e) {
        o.error = e.what();
        return false;  // stop the computation; the error is reported after llama_decode
    }
    return true;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("--data: " + path + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<llama_token> tokenize(const llama_vocab* vocab, const std::string& text, bool add_special) {
    int n = -llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), nullptr, 0, add_special, true);
    std::vector<llama_token> ids(static_cast<std::size_t>(std::max(n, 0)));
    if (n > 0 && llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), ids.data(), n, add_special, true) != n)
        throw Error("llama.cpp could not tokenize the text");
    return ids;
}

std::string piece(const llama_vocab* vocab, llama_token id) {
    char buf[256];
    const int n = llama_token_to_piece(vocab, id, buf, sizeof buf, 0, false);
    if (n < 0) throw Error("token " + std::to_string(id) + ": piece longer than 256 bytes");
    return std::string(buf, static_cast<std::size_t>(n));
}

struct Args {
    std::string model, prompt, data, json;
    Index seq_len = 256, max_seqs = 0, ubatch = 512;
    int threads = 0;
    bool no_attention = false;
};

int run(const Args& a) {
    if (a.prompt.empty() == a.data.empty()) throw Error("give one of --prompt and --data");
    llama_log_set([](ggml_log_level level, const char* text, void*) { if (level >= GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr); }, nullptr);
    llama_backend_init();
    std::unique_ptr<llama_model, void (*)(llama_model*)> model(llama_model_load_from_file(a.model.c_str(), llama_model_default_params()),
                                                              llama_model_free);
    if (!model) throw Error(a.model + ": llama.cpp could not load the model");
    const llama_vocab* vocab = llama_model_get_vocab(model.get());

    // the sequences: the prompt with special tokens, or --data windows by massact's protocol
    massact::TokenBatch ids;
    if (!a.prompt.empty()) {
        const auto t = tokenize(vocab, a.prompt, true);
        ids.resize(1, static_cast<Index>(t.size()));
        for (std::size_t i = 0; i < t.size(); ++i) ids(0, static_cast<Index>(i)) = t[i];
    } else {
        std::vector<massact::text::TokenId> prefix;
        if (llama_vocab_get_add_bos(vocab)) prefix.push_back(llama_vocab_bos(vocab));
        auto encode = [&](const std::string& doc) {
            const auto t = tokenize(vocab, doc, false);
            return std::vector<massact::text::TokenId>(t.begin(), t.end());
        };
        ids = massact::analysis::text_windows(prefix, encode, read_file(a.data), a.seq_len, a.max_seqs);
    }
    const Index T = ids.cols();

    char arch[128] = "";
    llama_model_meta_val_str(model.get(), "general.architecture", arch, sizeof arch);
    massact::analysis::StatsOptions opt;
    opt.delimiters = massact::analysis::delimiter_ids(
        static_cast<std::size_t>(llama_vocab_n_tokens(vocab)),
        [&](massact::text::TokenId id) { return llama_vocab_is_control(vocab, static_cast<llama_token>(id)); },
        [&](massact::text::TokenId id) { return piece(vocab, static_cast<llama_token>(id)); });
    massact::probe::Scan probe(llama_model_n_layer(model.get()), llama_model_n_head(model.get()), llama_model_n_embd(model.get()), opt, arch);

    Observer obs;
    obs.probe = &probe;
    obs.attention = !a.no_attention;
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = static_cast<uint32_t>(T);
    cp.n_batch = static_cast<uint32_t>(T);
    cp.n_ubatch = static_cast<uint32_t>(std::min(a.ubatch, T));
    cp.n_seq_max = 1;
    if (a.threads > 0) cp.n_threads = cp.n_threads_batch = a.threads;
    if (obs.attention) cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;  // kq_soft_max exists only without flash attention
    cp.cb_eval = eval_callback;
    cp.cb_eval_user_data = &obs;
    std::unique_ptr<llama_context, void (*)(llama_context*)> ctx(llama_init_from_model(model.get(), cp), llama_free);
    if (!ctx) throw Error(a.model + ": llama.cpp could not create a context of " + std::to_string(T) + " tokens");
    const int32_t V = llama_vocab_n_tokens(vocab);

    llama_batch batch = llama_batch_init(static_cast<int32_t>(T), 0, 1);
    std::unique_ptr<llama_batch, void (*)(llama_batch*)> free_batch(&batch, [](llama_batch* b) { llama_batch_free(*b); });
    std::vector<llama_token> tokens(static_cast<std::size_t>(T));
    obs.tokens = &tokens;
    for (Index s = 0; s < ids.rows(); ++s) {
        llama_memory_clear(llama_get_memory(ctx.get()), true);
        batch.n_tokens = static_cast<int32_t>(T);
        for (Index t = 0; t < T; ++t) {
            tokens[static_cast<std::size_t>(t)] = static_cast<llama_token>(ids(s, t));
            batch.token[t] = tokens[static_cast<std::size_t>(t)];
            batch.pos[t] = static_cast<llama_pos>(t);
            batch.n_seq_id[t] = 1;
            batch.seq_id[t][0] = 0;
            batch.logits[t] = 1;  // every token: the last block keeps all rows, and every next token is scored
        }
        const int32_t rc = llama_decode(ctx.get(), batch);
        if (!obs.error.empty()) throw Error("sequence " + std::to_string(s) + ": " + obs.error);
        if (rc != 0) throw Error("sequence " + std::to_string(s) + ": llama_decode failed (" + std::to_string(rc) + ")");
        probe.observe(-1, "logits", llama_get_logits(ctx.get()), T, V, V, massact::probe::DType::F32, tokens.data());
        probe.end_sequence();
        std::fprintf(stderr, "\rllama_cpp_scan: %ld/%ld sequences", static_cast<long>(s + 1), static_cast<long>(ids.rows()));
    }
    std::fprintf(stderr, "\n");
    const auto r = probe.result();
    std::printf("%ld sequences x %ld tokens, perplexity %.4f (llama.cpp, %s)\n", static_cast<long>(r.sequences), static_cast<long>(T),
                r.val_ppl, arch);
    std::printf("layer     top1   median  top-1 dim\n");
    for (const auto& l : r.layers)
        std::printf("%5d %8.2f %8.3f  %ld\n", l.layer, l.top1_mean, l.median_mean, static_cast<long>(l.dominant_dim()));
    std::printf("massive activations: %s\n", r.detector_note.c_str());
    if (!a.json.empty()) probe.write_json(a.json);
    llama_backend_free();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app("massact's scan of a GGUF model run by llama.cpp (cb_eval -> massact::probe)");
    Args a;
    app.add_option("model", a.model, "GGUF model file")->required();
    app.add_option("--prompt", a.prompt, "One sequence: this text, with the model's special tokens");
    app.add_option("--data", a.data, "Text file: windows of --seq-len tokens (massact's --data protocol)");
    app.add_option("--seq-len", a.seq_len, "Window length for --data")->capture_default_str();
    app.add_option("--max-seqs", a.max_seqs, "At most this many windows (0: all)")->capture_default_str();
    app.add_option("--ubatch", a.ubatch, "llama.cpp's micro-batch (n_ubatch): rows reach the probe in chunks of this size")
        ->capture_default_str();
    app.add_option("--threads", a.threads, "llama.cpp threads (0: its default)");
    app.add_flag("--no-attention", a.no_attention, "Do not observe kq_soft_max (flash attention allowed; no sink metrics)");
    app.add_option("--json", a.json, "Write the scan JSON (the format of massact scan --json)");
    CLI11_PARSE(app, argc, argv);
    try {
        return run(a);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "llama_cpp_scan: error: %s\n", e.what());
        return 1;
    }
}

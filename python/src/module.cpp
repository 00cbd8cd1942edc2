// massact._massact: the compiled core of `import massact` (pybind11). A consumer of the header-only library
// like the tool: models, tokenizers, forwards with Python hooks on live buffers (zero-copy numpy views),
// KV caches, generation, and the tool's commands (run_cli: one code path with `massact`).
// The pure-Python package around it (python/massact/) gives TransformerLens's names.
//
// Threads and the GIL: every forward runs with the GIL released; a Python hook takes it back for its call
// only. An exception raised in a hook is kept, the forward is stopped by a C++ exception, and the Python
// exception is raised again unchanged once the forward has unwound.
#include <massact/massact.hpp>

#include "../../examples/massact/cli.hpp"

#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <csignal>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace py = pybind11;
using massact::Index;

namespace {

/// numpy array owning `v` (moved to the heap; freed with the array): no copy.
template <typename T>
py::array_t<T> owned_array(std::vector<T>&& v, const std::vector<Index>& shape) {
    auto* heap = new std::vector<T>(std::move(v));
    py::capsule free_when_done(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    std::vector<py::ssize_t> dims(shape.begin(), shape.end());
    return py::array_t<T>(dims, heap->data(), free_when_done);
}

py::array_t<float> owned_matrix(massact::RowMatrixF&& m, const std::vector<Index>& shape) {
    auto* heap = new massact::RowMatrixF(std::move(m));
    py::capsule free_when_done(heap, [](void* p) { delete static_cast<massact::RowMatrixF*>(p); });
    std::vector<py::ssize_t> dims(shape.begin(), shape.end());
    return py::array_t<float>(dims, heap->data(), free_when_done);
}

/// Where run_with_cache's copies go: chunks of memory the cached arrays share (a chunk is freed with the
/// last array in it). Chunks of 2 MiB pages where the kernel offers them (madvise): fresh memory for a
/// cache of every site is tens of MB, and touching it page by page (4 KiB) cost more than the copy itself.
/// Filled without the GIL (from hooks); numpy arrays are made afterwards, with it.
class CacheArena {
public:
    struct Chunk {
        explicit Chunk(std::size_t bytes) : size(bytes) {
            data = static_cast<float*>(std::aligned_alloc(kPage, bytes));
            if (!data) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
            (void)madvise(data, bytes, MADV_HUGEPAGE);  // (a hint: without it, ordinary pages)
#endif
        }
        ~Chunk() { std::free(data); }
        Chunk(const Chunk&) = delete;
        Chunk& operator=(const Chunk&) = delete;
        float* data = nullptr;
        std::size_t size = 0, used = 0;
    };
    struct Slot {
        std::shared_ptr<Chunk> chunk;
        float* data;
    };

    /// Room for n floats (64-byte aligned).
    Slot take(std::size_t n) {
        const std::size_t bytes = round_up(std::max<std::size_t>(n, 1) * sizeof(float), 64);
        if (bytes > kChunk / 4) {  // (a large site gets a chunk of its own)
            auto c = std::make_shared<Chunk>(round_up(bytes, kPage));
            return {c, c->data};
        }
        if (!current_ || current_->size - current_->used < bytes) current_ = std::make_shared<Chunk>(kChunk);
        float* p = current_->data + current_->used / sizeof(float);
        current_->used += bytes;
        return {current_, p};
    }

private:
    static constexpr std::size_t kPage = std::size_t(2) << 20;
    static constexpr std::size_t kChunk = std::size_t(16) << 20;
    static std::size_t round_up(std::size_t v, std::size_t a) { return (v + a - 1) / a * a; }
    std::shared_ptr<Chunk> current_;
};

/// numpy array over an arena slot (keeps its chunk alive).
py::array_t<float> arena_array(const CacheArena::Slot& s, const std::vector<Index>& shape) {
    auto* keep = new std::shared_ptr<CacheArena::Chunk>(s.chunk);
    py::capsule free_when_done(keep, [](void* p) { delete static_cast<std::shared_ptr<CacheArena::Chunk>*>(p); });
    std::vector<py::ssize_t> dims(shape.begin(), shape.end());
    return py::array_t<float>(dims, s.data, free_when_done);
}

/// Token ids from numpy: int64 (or another integer type) [N, T] or [T]; floats, other ranks and empty
/// batches are refused with a message.
massact::TokenBatch token_batch(const py::array& a, const char* what) {
    if (a.dtype().kind() != 'i' && a.dtype().kind() != 'u')
        throw massact::Error(std::string(what) + ": token ids must be integers, got dtype " + std::string(py::str(a.dtype())));
    if (a.ndim() != 1 && a.ndim() != 2)
        throw massact::Error(std::string(what) + ": token ids must be [T] or [N, T], got " + std::to_string(a.ndim()) + " dimensions");
    const auto ids = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
    if (!ids) throw massact::Error(std::string(what) + ": cannot read the token ids as int64");
    const Index N = ids.ndim() == 2 ? static_cast<Index>(ids.shape(0)) : 1;
    const Index T = static_cast<Index>(ids.ndim() == 2 ? ids.shape(1) : ids.shape(0));
    if (N == 0 || T == 0) throw massact::Error(std::string(what) + ": empty token batch");
    massact::TokenBatch b(N, T);
    std::copy(ids.data(), ids.data() + N * T, b.data());
    return b;
}

/// A Python exception raised inside a hook, carried across the C++ forward.
struct HookError {
    std::optional<py::error_already_set> error;  // (touched with the GIL held only)
};
struct HookAborted : std::exception {
    const char* what() const noexcept override { return "a Python hook raised"; }
};

/// One Python hook: fn(activation, hook) with a writable float32 view of the live buffer. A returned array
/// (not None) of the same shape replaces the activation.
/// A model's HookPoint objects by site name, made on a site's first hook call and kept with the model (touched with
/// the GIL held only).
using HookPoints = std::map<std::string, py::object, std::less<>>;

massact::HookFn python_hook(py::object fn, py::object hook_point_type, std::shared_ptr<HookPoints> points,
                            std::shared_ptr<HookError> err) {
    auto holder = std::make_shared<py::object>(std::move(fn));
    auto point_type = std::make_shared<py::object>(std::move(hook_point_type));
    return [holder, point_type, points, err](massact::Activation& a) {
        py::gil_scoped_acquire gil;
        try {
            std::vector<py::ssize_t> shape(a.shape.begin(), a.shape.end());
            // a view without an owner (no copy): valid during this call only
            py::array_t<float> view(shape, a.data, py::none());
            auto it = points->find(a.name);
            if (it == points->end()) it = points->emplace(std::string(a.name), (*point_type)(a.name, a.layer)).first;
            const py::object& point = it->second;
            PyObject* args[2] = {view.ptr(), point.ptr()};  // (a vector call: no argument tuple per site)
            py::object r = py::reinterpret_steal<py::object>(PyObject_Vectorcall(holder->ptr(), args, 2, nullptr));
            if (!r) throw py::error_already_set();
            if (!r.is_none()) {
                auto arr = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(r);
                if (!arr) throw massact::Error("hook at " + a.name + ": returned " + std::string(py::str(py::type::of(r))) + ", expected None or an array");
                std::vector<Index> got(arr.shape(), arr.shape() + arr.ndim());
                if (got != a.shape)
                    throw massact::Error("hook at " + a.name + ": returned shape " + massact::io::shape_string(got) + ", expected " +
                                         massact::io::shape_string(a.shape));
                if (arr.data() != a.data) std::copy(arr.data(), arr.data() + a.numel(), a.data);
            }
            // (the view must not outlive the call: a hook that kept it holds a dangling pointer; TL documents the same)
        } catch (py::error_already_set& e) {
            err->error = std::move(e);
            throw HookAborted();
        }
    };
}

/// The result of a forward: logits [N, T, V] (or none) and the cached sites.
struct ForwardResult {
    std::optional<py::array_t<float>> logits;
    py::dict cache;
};

class Model;

/// A KV cache for one model and batch (sinks + window: StreamingLLM eviction).
class Cache {
public:
    Cache(const massact::ModelConfig& c, Index batch, massact::CachePolicy p) : cache(c, batch, p) {}
    massact::KVCache cache;
    massact::Workspace ws;
};

class Model {
public:
    Model(const std::string& path, const std::string& precision, int threads, const std::string& softmax) : threads_(threads) {
        precision_ = massact::kernels::precision_from_name(precision, "load: precision");
        attention_ = massact::parse_attention_override(softmax, "load: softmax");
        softmax_ = softmax.empty() ? "standard" : softmax;
        if (threads < 0) throw massact::Error("load: threads " + std::to_string(threads) + " (expected None or at least 1)");
        py::gil_scoped_release nogil;
        model_ = std::make_shared<massact::Transformer>(path);
        precision_ = model_->precision_for(precision_);  // ("auto" resolved once: cfg["precision"] says which)
        if (massact::text::has_tokenizer(path)) tokenizer_ = std::make_shared<massact::text::Tokenizer>(massact::text::load_tokenizer(path));
    }

    const massact::Transformer& transformer() const { return *model_; }
    const std::string& path() const { return model_->dir(); }

    py::dict cfg() const {
        const massact::ModelConfig& c = model_->config();
        py::dict d;
        d["model_type"] = c.model_type;
        d["n_layers"] = c.num_layers;
        d["d_model"] = c.hidden_size;
        d["n_heads"] = c.num_heads;
        d["n_key_value_heads"] = c.num_kv_heads;
        d["d_head"] = c.head_dim;
        d["d_mlp"] = c.intermediate_size;
        d["d_vocab"] = c.vocab_size;
        d["n_ctx"] = c.max_positions;
        d["is_vision"] = c.is_vision();
        d["precision"] = massact::kernels::precision_name(precision_);
        d["softmax"] = softmax_;
        d["attention_fn"] = massact::kernels::attention_fn_name(massact::attention_fn(c, attention_));
        py::dict blocks;
        for (const auto& kv : massact::describe_blocks(c)) blocks[py::str(kv.first)] = kv.second;
        d["blocks"] = blocks;
        return d;
    }

    std::vector<std::string> hook_names() const { return model_->hook_sites(); }

    std::vector<Index> hook_shape(const std::string& site, Index N, Index T) const { return model_->hook_shape(site, N, T); }

    /// The model's tokenizer, shared (not copied) with the Python object.
    std::shared_ptr<massact::text::Tokenizer> tokenizer_ptr() const {
        if (!tokenizer_) throw massact::Error(path() + ": this model has no tokenizer (no tokenizer.json, no GGUF vocabulary)");
        return tokenizer_;
    }
    bool has_tokenizer() const { return tokenizer_ != nullptr; }

    /// A forward on token ids (or pixels), with Python hooks [([site names], fn)] and the sites to cache.
    ForwardResult forward(const py::object& input, bool is_pixels, const std::vector<std::pair<std::vector<std::string>, py::object>>& hooks,
                          const std::vector<std::string>& cache_sites, bool want_logits, Cache* kv, py::object hook_point_type,
                          int last_layer) {
        massact::TokenBatch ids;
        massact::PixelBatch px;
        if (is_pixels) px = pixel_batch(input);
        else ids = token_batch(py::array::ensure(input), "forward");
        if (!is_pixels && input.cast<py::array>().ndim() == 1 && kv && kv->cache.batch() != 1)
            throw massact::Error("forward: a [T] input is one sequence, but the KV cache holds " + std::to_string(kv->cache.batch()));
        auto err = std::make_shared<HookError>();
        massact::Hooks h;
        // cached sites first (what the forward computed), Python hooks after in their order
        struct Stored {
            std::string name;
            CacheArena::Slot slot;
            std::vector<Index> shape;
        };
        auto stored = std::make_shared<std::vector<Stored>>();
        auto arena = std::make_shared<CacheArena>();
        auto keep = [stored, arena](massact::Activation& a) {
            const auto n = static_cast<std::size_t>(a.numel());
            CacheArena::Slot slot = arena->take(n);
            std::copy(a.data, a.data + n, slot.data);
            stored->push_back({std::string(a.name), std::move(slot), a.shape});
        };
        // globs ("*": every site) as patterns, exact names as one entry
        std::vector<std::string> names;
        for (const auto& site : cache_sites) {
            if (site.find_first_of("*?") != std::string::npos) h.observe(site, keep);
            else names.push_back(site);
        }
        if (!names.empty()) h.observe_sites(std::move(names), keep);
        for (const auto& [sites, fn] : hooks) h.add_sites(sites, python_hook(fn, hook_point_type, points_, err));
        massact::RunOptions o;
        o.precision = precision_;
        o.attention = attention_;
        o.logits = want_logits && last_layer < 0;
        o.last_layer = last_layer;
        massact::RowMatrixF logits;
        Index N = 0, T = 0;
        try {
            py::gil_scoped_release nogil;
            ThreadScope threads(threads_);
            model_->check_hooks(h, o);
            if (is_pixels) {
                massact::Workspace ws;
                model_->run_pixels(px, ws, h, o);
                logits = std::move(ws.hidden);  // (a vision model's output: last_hidden_state [N, T, d])
                N = px.n;
                T = logits.rows() / std::max<Index>(N, 1);
            } else if (kv) {
                logits = model_->run(ids, kv->cache, kv->ws, h, o);
                N = ids.rows();
                T = ids.cols();
            } else {
                massact::Workspace ws;
                model_->run(ids, ws, h, o);
                logits = std::move(ws.logits);
                N = ids.rows();
                T = ids.cols();
            }
        } catch (const HookAborted&) {
            if (err->error) throw std::move(*err->error);
            throw;
        }
        ForwardResult r;
        if ((o.logits || is_pixels) && logits.size() > 0) {
            const Index V = logits.cols();
            r.logits = owned_matrix(std::move(logits), {N, T, V});
        }
        for (const Stored& s : *stored) {
            if (r.cache.contains(s.name)) continue;  // (a site matched by two patterns is stored once)
            r.cache[py::str(s.name)] = arena_array(s.slot, s.shape);
        }
        return r;
    }

    std::vector<std::int64_t> generate(const std::vector<std::int64_t>& prompt, Index max_new_tokens, double temperature,
                                       std::uint64_t seed, Index sinks, Index window, const std::vector<std::int64_t>& stop,
                                       const std::string& kv_cache, const std::string& kv_quant) {
        if (max_new_tokens < 0) throw massact::Error("generate: max_new_tokens " + std::to_string(max_new_tokens) + " (expected at least 0)");
        if (!(temperature >= 0)) throw massact::Error("generate: temperature must be at least 0");
        massact::analysis::GenerateOptions o;
        o.max_tokens = max_new_tokens;
        o.temperature = temperature;
        o.seed = seed;
        o.stop = stop;
        o.run.precision = precision_;
        o.run.attention = attention_;
        if (window > 0) o.cache = massact::CachePolicy::streaming(sinks, window);
        else if (sinks > 0) throw massact::Error("generate: sinks need a window");
        o.cache.storage = massact::kernels::kv_format_from_name(kv_cache, "generate: kv_cache");
        o.cache.quant = massact::KVQuant::parse(kv_quant, "generate: kv_quant");
        if (max_new_tokens == 0) return {};
        py::gil_scoped_release nogil;
        ThreadScope threads(threads_);
        model_->validate(massact::make_batch(prompt));
        return massact::analysis::generate(*model_, prompt, o);
    }

    std::shared_ptr<Cache> make_cache(Index batch, Index sinks, Index window, const std::string& storage, const std::string& kv_quant,
                                      bool latent) const {
        massact::CachePolicy p;
        if (window > 0) p = massact::CachePolicy::streaming(sinks, window);
        else if (sinks > 0) throw massact::Error("make_cache: " + std::to_string(sinks) + " sink tokens need a window (window >= 1)");
        p.storage = massact::kernels::kv_format_from_name(storage, "make_cache: dtype");
        p.quant = massact::KVQuant::parse(kv_quant, "make_cache: kv_quant");
        p.latent = latent;
        return std::make_shared<Cache>(model_->config(), batch, p);
    }

private:
    /// OpenMP threads for one call (threads 0: the default), restored afterwards.
    struct ThreadScope {
        explicit ThreadScope(int n) {
#if defined(_OPENMP)
            if (n > 0) {
                saved = omp_get_max_threads();
                omp_set_num_threads(n);
            }
#else
            (void)n;
#endif
        }
        ~ThreadScope() {
#if defined(_OPENMP)
            if (saved > 0) omp_set_num_threads(saved);
#endif
        }
        int saved = 0;
    };

    massact::PixelBatch pixel_batch(const py::object& input) const {
        const py::array a = py::array::ensure(input);
        if (!a) throw massact::Error("forward: pixel_values must be an array");
        if (a.dtype().kind() != 'f') throw massact::Error("forward: pixel_values must be floats, got dtype " + std::string(py::str(a.dtype())));
        if (a.ndim() != 4 && a.ndim() != 3)
            throw massact::Error("forward: pixel_values must be [N, C, H, W] or [C, H, W], got " + std::to_string(a.ndim()) + " dimensions");
        const auto f = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
        massact::PixelBatch px;
        const int o = a.ndim() == 4 ? 1 : 0;
        px.n = o ? static_cast<Index>(f.shape(0)) : 1;
        px.channels = static_cast<Index>(f.shape(o));
        px.height = static_cast<Index>(f.shape(o + 1));
        px.width = static_cast<Index>(f.shape(o + 2));
        px.data.assign(f.data(), f.data() + f.size());
        for (std::size_t i = 0; i < px.data.size(); ++i)
            if (!std::isfinite(px.data[i])) throw massact::Error("forward: pixel_values value " + std::to_string(i) + " is not finite");
        return px;
    }

    std::shared_ptr<massact::Transformer> model_;
    std::shared_ptr<massact::text::Tokenizer> tokenizer_;
    std::shared_ptr<HookPoints> points_ = std::make_shared<HookPoints>();  // (destroyed with the GIL held, as the model is)
    massact::kernels::Precision precision_ = massact::kernels::Precision::F32;
    massact::AttentionOverride attention_;  // load(softmax=): every forward of this model runs with it
    std::string softmax_;
    int threads_ = 0;
};

/// The tool, in process: run_cli(argv) on a worker thread while this thread (the GIL released) checks for
/// Ctrl-C every 50 ms; a KeyboardInterrupt asks the command to stop at its next progress update and is raised
/// once it has. A failure raises massact.Error with the tool's message (massact: error: ... is also printed).
int tool(const std::vector<std::string>& args) {
    std::vector<std::string> a = args;
    a.insert(a.begin(), "massact");
    std::string error;
    int status = 0;
    bool interrupted = false;
    {
        py::gil_scoped_release nogil;
        auto done = std::async(std::launch::async, [&] {
            std::vector<char*> argv;
            for (auto& s : a) argv.push_back(s.data());
            argv.push_back(nullptr);
            return massact_tool::run_cli(static_cast<int>(a.size()), argv.data(), {}, nullptr, false, &error);
        });
        while (done.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
            py::gil_scoped_acquire gil;
            if (!interrupted && PyErr_CheckSignals() != 0) {
                interrupted = true;  // (the KeyboardInterrupt stays set: raised below)
                massact_tool::interrupt_requested().store(true);
            }
        }
        status = done.get();
        massact_tool::interrupt_requested().store(false);
    }
    if (interrupted) throw py::error_already_set();
    if (status != 0) throw massact::Error(error.empty() ? "massact " + args.at(0) + " failed" : error);
    return status;
}

/// The benchmark's baseline (bench/python_overhead.py): the best of `repeats` C++ forwards of `tokens`, each as
/// Transformer::forward (a fresh workspace, as a Python call has; mode "forward"), massact::run_with_cache of every
/// site ("cache"), or the forward with a no-op C++ hook on every site ("noop": attention patterns materialised, as
/// with any pattern hook); no Python runs between them. Seconds.
double bench_cpp_forward(const Model& mdl, const py::array& tokens, int repeats, const std::string& mode) {
    const massact::TokenBatch ids = token_batch(tokens, "bench");
    if (mode != "forward" && mode != "cache" && mode != "noop") throw massact::Error("bench: mode forward, cache or noop");
    massact::Hooks noop;
    noop.add("*", [](massact::Activation&) {});
    py::gil_scoped_release nogil;
    double best = 1e300;
    for (int r = 0; r < repeats; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        if (mode == "cache") (void)massact::run_with_cache(mdl.transformer(), ids, {"*"});
        else if (mode == "noop") (void)mdl.transformer().forward(ids, noop);
        else (void)mdl.transformer().forward(ids);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
}

/// Every tensor of a safetensors file (a tool --dump, a reference) as numpy: integers as int64, the rest float32.
py::dict read_safetensors(const std::string& path) {
    py::dict out;
    const massact::io::SafetensorsFile f(path);
    for (const std::string& name : f.names()) {
        const massact::io::TensorView& t = f.tensor(name);
        const std::vector<Index> shape(t.shape.begin(), t.shape.end());
        const bool integer = t.dtype == massact::io::DType::I64 || t.dtype == massact::io::DType::I32;
        if (integer) out[py::str(name)] = owned_array(t.to_int64(), shape);
        else out[py::str(name)] = owned_array(t.to_float(), shape);
    }
    return out;
}

/// Float arrays as F32, integer arrays as I64 (converted, C order), written atomically.
void write_safetensors(const std::string& path, const py::dict& tensors) {
    massact::io::SafetensorsWriter w;
    for (const auto& kv : tensors) {
        const std::string name = py::str(kv.first);
        const py::array a = py::array::ensure(kv.second);
        if (!a) throw massact::Error("write_safetensors: tensor \"" + name + "\" is not an array");
        const char kind = a.dtype().kind();
        std::vector<std::int64_t> shape(a.shape(), a.shape() + a.ndim());
        if (kind == 'f') {
            const auto f = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
            w.add_f32(name, shape, f.data());
        } else if (kind == 'i' || kind == 'u' || kind == 'b') {
            const auto i = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
            w.add_i64(name, shape, i.data());
        } else {
            throw massact::Error("write_safetensors: tensor \"" + name + "\" has dtype kind '" + std::string(1, kind) +
                                 "' (expected float or integer)");
        }
    }
    w.write(path);
}

}  // namespace

PYBIND11_MODULE(_massact, m) {
    m.doc() = "massact's compiled core (use the massact package)";
    m.attr("__version__") = massact::version();
    static py::exception<massact::Error> error(m, "Error", PyExc_ValueError);
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const massact::Error& e) {
            PyErr_SetString(error.ptr(), e.what());
        } catch (const std::bad_alloc&) {
            PyErr_SetString(PyExc_MemoryError, "massact: out of memory");
        }
    });

    py::class_<Cache, std::shared_ptr<Cache>>(m, "KVCache")
        .def_property_readonly("batch", [](const Cache& c) { return c.cache.batch(); })
        .def_property_readonly("size", [](const Cache& c) { return c.cache.size(); }, "tokens held now")
        .def_property_readonly("seen", [](const Cache& c) { return c.cache.seen(); }, "tokens appended in all")
        .def_property_readonly("sinks", [](const Cache& c) { return c.cache.policy().sinks; })
        .def_property_readonly("window", [](const Cache& c) { return c.cache.policy().window; })
        .def_property_readonly("dtype", [](const Cache& c) { return massact::kernels::kv_format_name(c.cache.policy().storage); },
                               "precision of the keys and values held: f32, f16 or bf16")
        .def_property_readonly("nbytes", [](const Cache& c) { return c.cache.bytes(); }, "bytes of keys and values allocated")
        .def_property_readonly("latent", [](const Cache& c) { return c.cache.latent(); },
                               "whether it holds multi-head latent attention's compressed KV instead of the heads' keys and values")
        .def_property_readonly("kv_quant", [](const Cache& c) { return c.cache.policy().quant.name(); },
                               "the quantization of the held keys and values (a --kv-quant spec), or \"none\"")
        .def("clear", [](Cache& c) { c.cache.clear(); });

    py::class_<massact::text::Tokenizer, std::shared_ptr<massact::text::Tokenizer>>(m, "Tokenizer")
        .def("encode", [](const massact::text::Tokenizer& t, const std::string& s, bool add_special_tokens) {
                 py::gil_scoped_release nogil;
                 return t.encode(s, add_special_tokens);
             }, py::arg("text"), py::arg("add_special_tokens") = true)
        .def("decode", [](const massact::text::Tokenizer& t, const std::vector<std::int64_t>& ids, bool skip_special_tokens) {
                 for (std::size_t i = 0; i < ids.size(); ++i)
                     if (ids[i] < 0 || ids[i] >= static_cast<std::int64_t>(t.vocab_size()))
                         throw massact::Error("decode: token id " + std::to_string(ids[i]) + " at " + std::to_string(i) +
                                              " is outside the vocabulary [0, " + std::to_string(t.vocab_size()) + ")");
                 return py::bytes(t.decode(ids, skip_special_tokens));
             }, py::arg("ids"), py::arg("skip_special_tokens") = false)
        .def("id_to_token", [](const massact::text::Tokenizer& t, std::int64_t id) {
                 if (id < 0 || id >= static_cast<std::int64_t>(t.vocab_size()))
                     throw massact::Error("id_to_token: " + std::to_string(id) + " is outside the vocabulary");
                 return py::bytes(t.id_to_token(id));
             })
        .def("token_to_id", [](const massact::text::Tokenizer& t, const std::string& s) { return t.token_to_id(s); })
        .def("label", [](const massact::text::Tokenizer& t, std::int64_t id) { return t.label(id); })
        .def("is_special", &massact::text::Tokenizer::is_special)
        .def_property_readonly("vocab_size", &massact::text::Tokenizer::vocab_size)
        .def_property_readonly("special_prefix", &massact::text::Tokenizer::special_prefix);

    py::class_<Model, std::shared_ptr<Model>>(m, "Model")
        .def(py::init<const std::string&, const std::string&, int, const std::string&>(), py::arg("path"), py::arg("precision") = "f32",
             py::arg("threads") = 0, py::arg("softmax") = "standard")
        .def_property_readonly("path", &Model::path)
        .def_property_readonly("cfg", &Model::cfg)
        .def_property_readonly("hook_names", &Model::hook_names)
        .def("hook_shape", &Model::hook_shape)
        .def_property_readonly("has_tokenizer", &Model::has_tokenizer)
        .def_property_readonly("tokenizer", &Model::tokenizer_ptr)
        .def("forward", [](Model& mdl, const py::object& input, bool is_pixels, const std::vector<std::pair<std::vector<std::string>, py::object>>& hooks,
                           const std::vector<std::string>& cache_sites, bool want_logits, std::shared_ptr<Cache> kv, py::object point_type,
                           int last_layer) {
                 ForwardResult r = mdl.forward(input, is_pixels, hooks, cache_sites, want_logits, kv.get(), point_type, last_layer);
                 return py::make_tuple(r.logits ? py::object(*r.logits) : py::object(py::none()), r.cache);
             },
             py::arg("input"), py::arg("is_pixels") = false, py::arg("hooks") = std::vector<std::pair<std::vector<std::string>, py::object>>{},
             py::arg("cache_sites") = std::vector<std::string>{}, py::arg("logits") = true, py::arg("kv") = nullptr,
             py::arg("hook_point_type") = py::none(), py::arg("last_layer") = -1)
        .def("generate", &Model::generate, py::arg("prompt"), py::arg("max_new_tokens"), py::arg("temperature"), py::arg("seed"),
             py::arg("sinks"), py::arg("window"), py::arg("stop"), py::arg("kv_cache") = "f32", py::arg("kv_quant") = "")
        .def("make_cache", &Model::make_cache, py::arg("batch") = 1, py::arg("sinks") = 0, py::arg("window") = 0,
             py::arg("dtype") = "f32", py::arg("kv_quant") = "", py::arg("latent") = true);

    m.def("_bench_cpp_forward", &bench_cpp_forward, py::arg("model"), py::arg("tokens"), py::arg("repeats"), py::arg("mode"));
    m.def("read_safetensors", &read_safetensors, py::arg("path"), "Every tensor of a safetensors file as numpy (int64 or float32)");
    m.def("write_safetensors", &write_safetensors, py::arg("path"), py::arg("tensors"),
          "Write {name: array} to a safetensors file (float arrays as F32, integer arrays as I64)");
    m.def("tool", &tool, py::arg("args"), "Run a massact tool command line in this process (argv without the program name)");
}

// massact/model/kv_cache.hpp - the keys and values of the tokens a model has seen, for incremental
// forwards (Transformer::run with a cache), with StreamingLLM's eviction.
//
// Per layer the cache holds, for every sequence of the batch and every held token, the key before RoPE
// (after q/k norms), the key as attention reads it (rotated for the position the token has now) and the
// value. Keeping keys before RoPE lets positions be re-assigned after an eviction: with
// Positions::CacheIndex (StreamingLLM) a held token's position is its index in the cache, so the window's
// tokens move down by one at every step and their keys are rotated again from the stored ones.
//
// Keys and values are held in float32, or in f16 / bf16 (CachePolicy::storage: half the memory and half the bytes
// that attention reads per decoded token, as llama.cpp's default f16 cache; each value rounded to nearest once).
//
// Gated DeltaNet and Mamba-2 layers hold no keys: per sequence, the last taps - 1 inputs of their convolution and the
// recurrent state (DeltaNet [v_heads, k_dim, v_dim], Mamba-2 [heads, head_dim, state]) summarise every token seen. A step writes new copies, made current by commit_step once
// the whole forward has succeeded (a failed step leaves the old state). Eviction does not touch them: the state has
// seen every token, as a hybrid model serving a StreamingLLM window of its attention layers would.
//
// The policy `keep S first, W most recent` (Xiao et al. 2024): before a step of T new tokens, when
// size + T > S + W, the tokens between the first S and the last W - T are dropped. window = 0 keeps
// everything (a dense cache).
#pragma once

#include "massact/core/eigen.hpp"
#include "massact/core/error.hpp"
#include "massact/core/half.hpp"
#include "massact/kernels/attention.hpp"
#include "massact/kernels/rope.hpp"
#include "massact/model/config.hpp"

#include <algorithm>
#include <string>
#include <vector>

namespace massact {

/// Fake quantization of the cached keys and values, what a serving engine's quantized KV cache does to attention
/// (KIVI, Liu et al. 2024: keys per channel, values per token; KVQuant, Hooper et al. 2024: keys before RoPE; IntactKV,
/// Liu et al. 2024: the first tokens' keys and values kept in full precision). Asymmetric min-max quantization to
/// `bits` bits (kernels/fake_quant.hpp); the cache holds the decoded values in float32, so attention reads exactly
/// what the integers decode to.
///   per token    a token's row is quantized when it is written, in groups of `channel_group` consecutive channels
///                (0: one group per head);
///   per channel  each channel of the `token_group` tokens of stream indices [keep_first + g G, keep_first + (g+1) G)
///                is one group, quantized when the group's last token is written (KIVI: until then the newest tokens
///                stay in full precision);
///   keep_first   tokens of stream index < keep_first stay float (the sinks: IntactKV);
///   keys_before_rope  the keys are quantized before RoPE (the cache keeps them) and rotated after; otherwise as
///                attention reads them (rotated, after q/k norms).
struct KVQuant {
    enum class Axis { Token, Channel };
    int key_bits = 0, value_bits = 0;  // 2, 3, 4 or 8; 0: held as computed
    Axis key_axis = Axis::Channel, value_axis = Axis::Token;
    Index channel_group = 0;  // per token: channels per group (0: the head width)
    Index token_group = 32;   // per channel: tokens per group
    bool keys_before_rope = false;
    Index keep_first = 0;

    bool active() const { return key_bits > 0 || value_bits > 0; }

    /// Parse a comma-separated spec: "k4", "v2", "kv4" (bits of keys, values, both: 2, 3, 4 or 8), "k-per-channel",
    /// "k-per-token", "v-per-channel", "v-per-token", "group-tokens=N", "group-channels=N", "pre-rope", "keep-first=S";
    /// "" or "none": no quantization. `what` names the option in errors.
    static KVQuant parse(const std::string& spec, const std::string& what) {
        KVQuant q;
        if (spec.empty() || spec == "none") return q;
        auto number = [&](const std::string& item, const std::string& digits, Index lo) {
            Index v = 0;
            bool ok = !digits.empty() && digits.size() <= 9;
            for (char ch : digits) ok = ok && ch >= '0' && ch <= '9';
            if (ok) v = static_cast<Index>(std::stoll(digits));
            if (!ok || v < lo)
                throw Error(what + ": \"" + item + "\": expected a whole number >= " + std::to_string(lo) + " after '='");
            return v;
        };
        std::size_t at = 0;
        while (at <= spec.size()) {
            const std::size_t end = std::min(spec.find(',', at), spec.size());
            const std::string item = spec.substr(at, end - at);
            at = end + 1;
            const std::size_t eq = item.find('=');
            const std::string key = item.substr(0, eq), val = eq == std::string::npos ? "" : item.substr(eq + 1);
            auto bits = [&](const std::string& b) {
                if (b != "2" && b != "3" && b != "4" && b != "8")
                    throw Error(what + ": \"" + item + "\": bits must be 2, 3, 4 or 8");
                return std::stoi(b);
            };
            if (item.rfind("kv", 0) == 0 && item.size() == 3) q.key_bits = q.value_bits = bits(item.substr(2));
            else if (item.size() == 2 && item[0] == 'k') q.key_bits = bits(item.substr(1));
            else if (item.size() == 2 && item[0] == 'v') q.value_bits = bits(item.substr(1));
            else if (item == "k-per-channel") q.key_axis = Axis::Channel;
            else if (item == "k-per-token") q.key_axis = Axis::Token;
            else if (item == "v-per-channel") q.value_axis = Axis::Channel;
            else if (item == "v-per-token") q.value_axis = Axis::Token;
            else if (item == "pre-rope") q.keys_before_rope = true;
            else if (key == "group-tokens" && eq != std::string::npos) q.token_group = number(item, val, 1);
            else if (key == "group-channels" && eq != std::string::npos) q.channel_group = number(item, val, 1);
            else if (key == "keep-first" && eq != std::string::npos) q.keep_first = number(item, val, 0);
            else
                throw Error(what + ": \"" + item + "\" is not a KV quantization setting (k4, v2, kv4, k-per-channel, k-per-token, "
                            "v-per-channel, v-per-token, group-tokens=N, group-channels=N, pre-rope, keep-first=S)");
        }
        if (!q.active()) throw Error(what + ": \"" + spec + "\" quantizes neither keys nor values (give k4, v4 or kv4, say)");
        return q;
    }

    /// The canonical spec (parse(name()) gives this back), or "none".
    std::string name() const {
        if (!active()) return "none";
        std::string s;
        auto add = [&](const std::string& x) { s += (s.empty() ? "" : ",") + x; };
        auto axis = [](Axis a) { return a == Axis::Channel ? "per-channel" : "per-token"; };
        if (key_bits > 0) add("k" + std::to_string(key_bits) + ",k-" + axis(key_axis));
        if (value_bits > 0) add("v" + std::to_string(value_bits) + ",v-" + axis(value_axis));
        if ((key_bits > 0 && key_axis == Axis::Channel) || (value_bits > 0 && value_axis == Axis::Channel))
            add("group-tokens=" + std::to_string(token_group));
        if (channel_group > 0 && ((key_bits > 0 && key_axis == Axis::Token) || (value_bits > 0 && value_axis == Axis::Token)))
            add("group-channels=" + std::to_string(channel_group));
        if (keys_before_rope && key_bits > 0) add("pre-rope");
        if (keep_first > 0) add("keep-first=" + std::to_string(keep_first));
        return s;
    }
};

/// Which tokens a KV cache keeps, which positions they get, and in what precision their keys and values are held.
struct CachePolicy {
    enum class Positions {
        Absolute,    // a token's position is its index in the stream (what the model saw in training)
        CacheIndex,  // a token's position is its index in the cache (StreamingLLM)
    };
    Index sinks = 0;   // the first S tokens are never evicted
    Index window = 0;  // and the W most recent are kept (0: nothing is evicted)
    Positions positions = Positions::Absolute;
    kernels::KVFormat storage = kernels::KVFormat::F32;  // keys and values in float32, f16 or bf16
    KVQuant quant{};                                     // fake quantization of the held keys and values (float32 storage)
    /// Multi-head latent attention (DeepSeek-V2/V3): hold per token the compressed KV (the normalised latent and the
    /// rotated key shared by the heads, kv_lora_rank + qk_rope_head_dim floats) instead of every head's key and value,
    /// and attend in the latent space (the up-projection absorbed into the queries and the output). Where the policy
    /// moves positions (CacheIndex) or quantizes, the cache holds the heads' keys and values (KVCache::latent() says).
    bool latent = true;

    /// No eviction, absolute positions: exactly the full forward.
    static CachePolicy dense() { return {}; }
    /// StreamingLLM: S sink tokens + the W most recent, positions re-assigned as the index in the cache.
    static CachePolicy streaming(Index sinks, Index window) { return {sinks, window, Positions::CacheIndex}; }

    bool evicts() const { return window > 0; }
    Index capacity() const { return sinks + window; }
};

/// Rows of keys or values in float32 or 16 bits: rows are written from float and read by attention as stored.
class KVRows {
public:
    explicit KVRows(kernels::KVFormat f = kernels::KVFormat::F32) : format_(f) {}

    kernels::KVFormat format() const { return format_; }
    Index rows() const { return rows_; }
    Index cols() const { return cols_; }
    bool empty() const { return rows_ == 0; }
    /// Float storage (format f32) and 16-bit storage (f16, bf16), row-major [rows, cols].
    const float* f32() const { return f32_.data(); }
    const std::uint16_t* half() const { return half_.data(); }
    /// Row r of float storage, writable (KV quantization rewrites held rows in place).
    float* f32_row(Index r) { return f32_.data() + r * cols_; }

    /// rows x cols, keeping the first `keep` rows of each of `blocks` blocks of old_rows / blocks rows.
    void regrow(Index blocks, Index rows_per_block, Index keep, Index cols) {
        const Index old_per = blocks > 0 && rows_ > 0 ? rows_ / blocks : 0;
        KVRows bigger(format_);
        bigger.rows_ = blocks * rows_per_block;
        bigger.cols_ = cols;
        const auto n = static_cast<std::size_t>(bigger.rows_ * cols);
        if (format_ == kernels::KVFormat::F32) bigger.f32_.assign(n, 0.0f);
        else bigger.half_.assign(n, 0);
        for (Index b = 0; b < blocks && old_per > 0; ++b)
            for (Index j = 0; j < keep; ++j) bigger.copy_row_from(*this, b * rows_per_block + j, b * old_per + j);
        *this = std::move(bigger);
    }

    /// Row r = x (cols values), rounded to nearest when held in 16 bits.
    void store(Index r, const float* x) {
        const auto at = static_cast<std::size_t>(r * cols_);
        switch (format_) {
            case kernels::KVFormat::F32: std::copy(x, x + cols_, f32_.begin() + static_cast<std::ptrdiff_t>(at)); break;
            case kernels::KVFormat::F16:
                for (Index c = 0; c < cols_; ++c) half_[at + static_cast<std::size_t>(c)] = float_to_f16(x[c]);
                break;
            case kernels::KVFormat::BF16:
                for (Index c = 0; c < cols_; ++c) half_[at + static_cast<std::size_t>(c)] = float_to_bf16(x[c]);
                break;
        }
    }

    /// The value at row r, column c, as float.
    float operator()(Index r, Index c) const {
        const auto i = static_cast<std::size_t>(r * cols_ + c);
        switch (format_) {
            case kernels::KVFormat::F16: return f16_to_float(half_[i]);
            case kernels::KVFormat::BF16: return bf16_to_float(half_[i]);
            default: return f32_[i];
        }
    }

    /// Row `to` = row `from` (both of this tensor).
    void move_row(Index to, Index from) { copy_row_from(*this, to, from); }

private:
    void copy_row_from(const KVRows& o, Index to, Index from) {
        const auto n = static_cast<std::ptrdiff_t>(cols_), src = static_cast<std::ptrdiff_t>(from * o.cols_),
                   dst = static_cast<std::ptrdiff_t>(to * cols_);
        if (format_ == kernels::KVFormat::F32) std::copy_n(o.f32_.begin() + src, n, f32_.begin() + dst);
        else std::copy_n(o.half_.begin() + src, n, half_.begin() + dst);
    }

    kernels::KVFormat format_;
    Index rows_ = 0, cols_ = 0;
    std::vector<float> f32_;
    std::vector<std::uint16_t> half_;
};

class KVCache {
public:
    /// One layer's tensors: row row(b, j) belongs to sequence b, held token j.
    struct Layer {
        KVRows k;                  // [batch * rows, KV*hd] keys as attention reads them (rotated with RoPE); a latent
                                   // cache: [batch * rows, qk_rope + kv_lora_rank] rows [rotated shared key; latent]
        RowMatrixF k_raw;          // the keys before RoPE, float32 (RoPE models whose positions move: CacheIndex)
        KVRows v;                  // values (a latent cache: none, attention reads the latent part of k)
        std::vector<Index> k_pos;  // per held token: the position its key in k was rotated for (-1: none)
        bool attention = true;     // false: a recurrent layer (the four buffers below, no keys or values)
        std::vector<float> conv, state;            // [batch, taps - 1, conv channels], [batch, the layer's state]
        std::vector<float> conv_next, state_next;  // what the step in progress writes
    };

    /// The cached rotary tables of one RoPE spec: rows are positions [0, rows).
    struct RopeMemo {
        std::vector<float> inv_freq;
        kernels::RopeTable table;
    };

    KVCache(const ModelConfig& c, Index batch = 1, CachePolicy policy = {})
        : policy_(policy), batch_(batch), latent_(holds_latent(c, policy)),
          width_(latent_ ? c.mla.qk_rope + c.mla.kv_lora_rank : c.num_kv_heads * c.head_dim), kv_heads_(c.num_kv_heads), head_dim_(c.head_dim),
          rope_(c.has_rope()),
          layers_(static_cast<std::size_t>(c.num_layers), Layer{KVRows(policy.storage), {}, KVRows(policy.storage), {}, true, {}, {}, {}, {}}),
          rope_memo_(c.rope.size()) {
        if (batch < 1) throw Error("KV cache: batch size " + std::to_string(batch) + " must be at least 1");
        if (policy.sinks < 0 || policy.window < 0)
            throw Error("KV cache: sinks (" + std::to_string(policy.sinks) + ") and window (" +
                        std::to_string(policy.window) + ") must not be negative");
        if (policy.sinks > 0 && policy.window == 0)
            throw Error("KV cache: " + std::to_string(policy.sinks) + " sink tokens need a window (W >= 1) to evict from");
        check_quant(c);
        for (int l = 0; l < c.num_layers; ++l) {
            if (c.layer_attention(l)) continue;
            Layer& L = layers_[static_cast<std::size_t>(l)];
            L.attention = false;
            L.conv.assign(static_cast<std::size_t>(batch * c.conv_history_size(l)), 0.0f);
            L.state.assign(static_cast<std::size_t>(batch * c.recurrent_state_size(l)), 0.0f);
            L.conv_next = L.conv;
            L.state_next = L.state;
        }
    }

    Index batch() const { return batch_; }
    /// Tokens held per sequence.
    Index size() const { return size_; }
    /// Tokens appended since the cache was created or cleared.
    Index seen() const { return seen_; }
    const CachePolicy& policy() const { return policy_; }
    /// The held tokens' indices in the stream (the same for every sequence of the batch).
    const std::vector<Index>& held() const { return held_; }
    /// The position the model gives held token j.
    Index position(Index j) const {
        return policy_.positions == CachePolicy::Positions::CacheIndex ? j : held_[static_cast<std::size_t>(j)];
    }
    int num_layers() const { return static_cast<int>(layers_.size()); }
    /// Floats per held token and layer in k (and in v, unless latent()).
    Index kv_width() const { return width_; }
    /// Whether the attention layers hold MLA's compressed KV (CachePolicy::latent) rather than per-head keys and values.
    bool latent() const { return latent_; }
    /// Whether a model with config c and a cache with `policy` hold the latent: MLA, and a policy that neither moves
    /// positions nor quantizes (both work on per-head keys).
    static bool holds_latent(const ModelConfig& c, const CachePolicy& policy) {
        return policy.latent && c.has_mla() && policy.positions == CachePolicy::Positions::Absolute && !policy.quant.active() &&
               c.qk_norm == QKNorm::None && c.clip_qkv <= 0;
    }
    /// Whether the keys before RoPE are kept (they are needed only when held tokens change position).
    bool keeps_raw_keys() const {
        return rope_ && (policy_.positions == CachePolicy::Positions::CacheIndex || (policy_.quant.key_bits > 0 && policy_.quant.keys_before_rope));
    }
    /// Bytes held by keys and values (all layers, the capacity allocated so far).
    std::size_t bytes() const {
        std::size_t n = 0;
        for (const auto& L : layers_)
            n += static_cast<std::size_t>(L.k.rows() * L.k.cols() + L.v.rows() * L.v.cols()) * (policy_.storage == kernels::KVFormat::F32 ? 4 : 2) +
                 static_cast<std::size_t>(L.k_raw.size()) * 4 + (L.conv.size() + L.state.size()) * 4;
        return n;
    }

    /// Empty when this cache can continue `batch` sequences of a model with config `c` (the same layer count, key
    /// and value heads, head width, RoPE and RoPE specs as the model it was made for); else what differs.
    std::string mismatch(const ModelConfig& c, Index batch) const {
        auto differs = [](const char* what, Index mine, Index theirs) {
            return std::string(what) + " " + std::to_string(mine) + " (the model has " + std::to_string(theirs) + ")";
        };
        if (batch != batch_) return "it holds " + std::to_string(batch_) + " sequences, not " + std::to_string(batch);
        if (c.num_layers != num_layers()) return differs("it was made for layers:", num_layers(), c.num_layers);
        if (c.num_kv_heads != kv_heads_) return differs("it was made for key/value heads:", kv_heads_, c.num_kv_heads);
        if (c.head_dim != head_dim_) return differs("it was made for head width:", head_dim_, c.head_dim);
        if (holds_latent(c, policy_) != latent_ || (latent_ && c.mla.qk_rope + c.mla.kv_lora_rank != width_))
            return latent_ ? "it holds a latent of " + std::to_string(width_) + " per token, which this model does not have"
                           : std::string("it holds per-head keys and values, this model's cache holds its latent");
        if (c.has_rope() != rope_) return std::string("it was made for a model ") + (rope_ ? "with" : "without") + " RoPE";
        for (int l = 0; l < c.num_layers; ++l) {
            const Layer& L = layers_[static_cast<std::size_t>(l)];
            if (c.layer_attention(l) != L.attention)
                return "layer " + std::to_string(l) + (c.layer_attention(l) ? " is an attention layer" : " is a recurrent layer") +
                       " in the model, not in the cache";
            if (!L.attention && (static_cast<std::int64_t>(L.state.size()) != batch_ * c.recurrent_state_size(l) ||
                                 static_cast<std::int64_t>(L.conv.size()) != batch_ * c.conv_history_size(l)))
                return "layer " + std::to_string(l) + "'s recurrent state has another size in the model";
        }
        if (c.rope.size() != rope_memo_.size())
            return differs("it was made for RoPE specs:", static_cast<Index>(rope_memo_.size()), static_cast<Index>(c.rope.size()));
        return {};
    }

    void clear() {
        size_ = seen_ = 0;
        held_.clear();
        for (auto& L : layers_) {
            L.k_pos.clear();
            for (auto* v : {&L.conv, &L.state, &L.conv_next, &L.state_next}) std::fill(v->begin(), v->end(), 0.0f);
        }
    }

    // ---- for the forward (model/transformer.hpp) ----

    /// Make room for T new tokens (evicting as the policy says) and append their stream indices.
    /// Returns the number of tokens held before them. Their keys and values are written by each layer.
    Index begin_step(Index T) {
        if (T < 1) throw Error("KV cache: a step needs at least one token");
        if (policy_.evicts() && size_ + T > policy_.capacity()) {
            if (T > policy_.window)
                throw Error("KV cache: a step of " + std::to_string(T) + " tokens does not fit the window of " +
                            std::to_string(policy_.window) + " once the cache is full (feed at most W tokens at a time)");
            evict(size_ + T - policy_.capacity());
        }
        const Index past = size_;
        reserve(past + T);
        for (Index t = 0; t < T; ++t) held_.push_back(seen_ + t);
        for (auto& L : layers_) L.k_pos.resize(static_cast<std::size_t>(past + T), -1);
        size_ = past + T;
        seen_ += T;
        return past;
    }

    /// Make the recurrent states the step wrote current (after the whole forward succeeded).
    void commit_step() {
        for (auto& L : layers_) {
            L.conv.swap(L.conv_next);
            L.state.swap(L.state_next);
        }
    }

    /// Undo begin_step after a failed forward (the evicted tokens stay evicted; recurrent states stay as they were).
    void abort_step(Index past, Index T) {
        size_ = past;
        seen_ -= T;
        held_.resize(static_cast<std::size_t>(past));
        for (auto& L : layers_) L.k_pos.resize(static_cast<std::size_t>(past));
    }

    Layer& layer(int l) { return layers_[static_cast<std::size_t>(l)]; }
    const Layer& layer(int l) const { return layers_[static_cast<std::size_t>(l)]; }
    Index row(Index b, Index j) const { return b * rows_ + j; }
    std::vector<RopeMemo>& rope_memo() { return rope_memo_; }

private:
    /// The KV quantization of the policy, for a model with config c (refused with the reason where it cannot hold).
    void check_quant(const ModelConfig& c) const {
        const KVQuant& q = policy_.quant;
        if (!q.active()) return;
        for (int bits : {q.key_bits, q.value_bits})
            if (bits != 0 && bits != 2 && bits != 3 && bits != 4 && bits != 8)
                throw Error("KV cache: quantization to " + std::to_string(bits) + " bits: expected 2, 3, 4 or 8");
        if (policy_.storage != kernels::KVFormat::F32)
            throw Error(std::string("KV cache: a quantized cache holds the decoded values in f32, not ") + kernels::kv_format_name(policy_.storage));
        if (q.token_group < 1 || q.channel_group < 0 || q.keep_first < 0)
            throw Error("KV cache: quantization groups of " + std::to_string(q.token_group) + " tokens / " + std::to_string(q.channel_group) +
                        " channels and keep_first " + std::to_string(q.keep_first) + ": expected >= 1, >= 0 (0: a head), >= 0");
        if (q.key_bits > 0 && !q.keys_before_rope && rope_ && policy_.positions == CachePolicy::Positions::CacheIndex)
            throw Error("KV cache: keys quantized after RoPE cannot be rotated to the new positions StreamingLLM's cache gives them "
                        "(it rotates them again from the keys before RoPE): quantize the keys before RoPE (pre-rope)");
        if (!c.has_attention())
            throw Error("KV cache: this " + c.model_type + " model has no attention layer: there are no keys or values to quantize");
    }

    /// Drop `n` tokens after the first S (the oldest of the window), moving the rest down.
    void evict(Index n) {
        const Index from = std::min(policy_.sinks, size_);
        n = std::min(n, size_ - from);
        const Index keep = size_ - from - n;  // tokens moved from [from + n, size) to [from, from + keep)
        for (auto& L : layers_) {
            L.k_pos.erase(L.k_pos.begin() + from, L.k_pos.begin() + from + n);
            if (!L.attention) continue;
            for (KVRows* m : {&L.k, &L.v})
                for (Index b = 0; b < batch_; ++b)
                    for (Index j = 0; j < keep; ++j) m->move_row(row(b, from + j), row(b, from + n + j));
            if (L.k_raw.size() > 0)
                for (Index b = 0; b < batch_; ++b)
                    for (Index j = 0; j < keep; ++j) L.k_raw.row(row(b, from + j)) = L.k_raw.row(row(b, from + n + j));
        }
        held_.erase(held_.begin() + from, held_.begin() + from + n);
        size_ -= n;
    }

    /// Room for `rows` tokens per sequence (the layout changes only when the capacity grows).
    void reserve(Index rows) {
        if (rows <= rows_) return;
        const Index grown = policy_.evicts() ? policy_.capacity() : std::max(rows, 2 * rows_);
        for (auto& L : layers_) {
            if (!L.attention) continue;
            L.k.regrow(batch_, grown, size_, width_);
            L.v.regrow(batch_, grown, size_, latent_ ? 0 : width_);
            if (!keeps_raw_keys()) continue;
            RowMatrixF bigger(batch_ * grown, width_);
            for (Index b = 0; b < batch_; ++b)
                if (size_ > 0) bigger.middleRows(b * grown, size_) = L.k_raw.middleRows(b * rows_, size_);
            L.k_raw.swap(bigger);
        }
        rows_ = grown;
    }

    CachePolicy policy_;
    Index batch_;
    bool latent_;
    Index width_;
    Index kv_heads_, head_dim_;  // the model it was made for (mismatch)
    bool rope_;
    Index size_ = 0, seen_ = 0, rows_ = 0;
    std::vector<Index> held_;
    std::vector<Layer> layers_;
    std::vector<RopeMemo> rope_memo_;
};

}  // namespace massact

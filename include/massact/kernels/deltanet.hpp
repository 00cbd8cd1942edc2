// massact/kernels/deltanet.hpp - the sequence kernels of the recurrent mixers: a depthwise causal convolution with
// SiLU, the gated delta rule of Gated DeltaNet linear attention (Yang, Kautz and Hatamizadeh 2025; Qwen3-Next,
// Qwen3.5), and Mamba-2's scan (SSD with a scalar decay per head; Dao and Gu 2024).
//
// Match Hugging Face's torch fallbacks (transformers' modeling_qwen3_next.py: torch_causal_conv1d_update,
// torch_recurrent_gated_delta_rule; its chunked form computes the same recurrence in another order):
//   conv:  y[t, c] = silu(sum_j w[c, j] x[t - (taps - 1) + j, c]), rows before the first the history (zeros at start)
//   rule:  per value head, state S [k_dim, v_dim]:  S = decay_t S;  S += k_t (beta_t (v_t - S^T k_t))^T;
//          o_t = S^T q_t / sqrt(k_dim)
//   ssd:   per head, state S [head_dim, state]:  S = exp(dt_t A) S + dt_t x_t B_t^T;  y_t = S C_t + D x_t
//          (transformers' modeling_mamba2.py torch_forward; its chunked form is the same recurrence in another order)
// No model knowledge: buffers in, buffers out. States are read from one buffer and written to another (they may be
// the same), so a caller can keep the old state until a whole step has succeeded.
#pragma once

#include "massact/core/eigen.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace massact::kernels {

/// The depthwise causal convolution of one sequence, then SiLU: x [T, channels] (row stride x_stride), w [channels,
/// taps], bias [channels] (nullptr: none); y [T, channels] (stride y_stride). history_in: the taps - 1 input rows before
/// x, oldest first ([taps - 1, channels]; nullptr: zeros); history_out (may be nullptr or equal history_in): the last
/// taps - 1 input rows after x. (Mamba-2's convolution too.)
inline void causal_conv1d_silu(const float* x, Index x_stride, Index T, Index channels, const float* w, Index taps,
                               const float* history_in, float* history_out, float* y, Index y_stride, const float* bias = nullptr) {
    const Index h = taps - 1;
    // window [h + T, channels]: the history rows, then x
    std::vector<float> win(static_cast<std::size_t>((h + T) * channels), 0.0f);
    if (history_in) std::copy_n(history_in, h * channels, win.begin());
    for (Index t = 0; t < T; ++t) std::copy_n(x + t * x_stride, channels, win.begin() + (h + t) * channels);
    for (Index t = 0; t < T; ++t) {
        float* out = y + t * y_stride;
        for (Index c = 0; c < channels; ++c) {
            float s = 0.0f;
            for (Index j = 0; j < taps; ++j) s += w[c * taps + j] * win[static_cast<std::size_t>((t + j) * channels + c)];
            if (bias) s += bias[c];
            out[c] = s / (1.0f + std::exp(-s));
        }
    }
    if (history_out) std::copy_n(win.begin() + T * channels, h * channels, history_out);
}

/// Each of `rows` rows of `width` values (row stride `stride`) times rsqrt(sum x^2 + eps) (FLA's l2norm), in place.
inline void l2_normalize_rows(float* x, Index rows, Index width, Index stride, float eps = 1e-6f) {
    for (Index r = 0; r < rows; ++r) {
        float* row = x + r * stride;
        float ss = 0.0f;
        for (Index i = 0; i < width; ++i) ss += row[i] * row[i];
        const float s = 1.0f / std::sqrt(ss + eps);
        for (Index i = 0; i < width; ++i) row[i] *= s;
    }
}

/// Heads and widths of a gated delta rule: value head h reads key head h / (v_heads / k_heads).
struct DeltaRuleShape {
    Index k_heads = 0, v_heads = 0, k_dim = 0, v_dim = 0;
    Index state_size() const { return v_heads * k_dim * v_dim; }
};

/// The gated delta rule over one sequence of T tokens: q, k [T, k_heads * k_dim] (row strides qs, ks; L2-normalised by
/// the caller), v [T, v_heads * v_dim], beta and decay [T, v_heads] (decay in (0, 1]); o [T, v_heads * v_dim] (stride
/// os). state_in [v_heads, k_dim, v_dim] (nullptr: zeros) is read, state_out written (they may be one buffer).
inline void gated_delta_rule(const DeltaRuleShape& s, const float* q, Index qs, const float* k, Index ks, const float* v,
                             Index vs, const float* beta, Index bs, const float* decay, Index ds, const float* state_in,
                             float* state_out, float* o, Index os, Index T) {
    const Index dk = s.k_dim, dv = s.v_dim, per = s.v_heads / s.k_heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
    if (state_in && state_in != state_out) std::copy_n(state_in, s.state_size(), state_out);
    if (!state_in) std::fill_n(state_out, s.state_size(), 0.0f);
    std::vector<float> mem(static_cast<std::size_t>(dv));
    for (Index h = 0; h < s.v_heads; ++h) {
        float* S = state_out + h * dk * dv;
        const Index kh = h / per;
        for (Index t = 0; t < T; ++t) {
            const float* qt = q + t * qs + kh * dk;
            const float* kt = k + t * ks + kh * dk;
            const float* vt = v + t * vs + h * dv;
            const float g = decay[t * ds + h], b = beta[t * bs + h];
            // mem = (g S)^T k;  delta = beta (v - mem)
            std::fill(mem.begin(), mem.end(), 0.0f);
            for (Index i = 0; i < dk; ++i) {
                const float ki = kt[i];
                const float* Si = S + i * dv;
                for (Index j = 0; j < dv; ++j) mem[static_cast<std::size_t>(j)] += Si[j] * ki;
            }
            for (Index j = 0; j < dv; ++j) mem[static_cast<std::size_t>(j)] = (vt[j] - g * mem[static_cast<std::size_t>(j)]) * b;
            // S = g S + k delta^T;  o = S^T q scale
            float* ot = o + t * os + h * dv;
            std::fill_n(ot, dv, 0.0f);
            for (Index i = 0; i < dk; ++i) {
                const float ki = kt[i], qi = qt[i] * scale;
                float* Si = S + i * dv;
                for (Index j = 0; j < dv; ++j) {
                    Si[j] = g * Si[j] + ki * mem[static_cast<std::size_t>(j)];
                    ot[j] += Si[j] * qi;
                }
            }
        }
    }
}

/// Heads and widths of a Mamba-2 scan: head h reads B and C of group h / (heads / groups).
struct SsdShape {
    Index heads = 0, head_dim = 0, groups = 1, state = 0;
    Index state_size() const { return heads * head_dim * state; }
};

/// Mamba-2's recurrence (SSD with a scalar decay per head) over one sequence of T tokens: x [T, heads * head_dim],
/// B and C [T, groups * state], dt [T, heads] (after softplus and clamping), A and D [heads]; per head h, state
/// S [head_dim, state]: S = exp(dt A) S + dt x_h B^T;  y_h = S C + D x_h. y [T, heads * head_dim]. state_in (nullptr:
/// zeros) is read, state_out written (they may be one buffer). Row strides xs, bs, cs, ds, ys.
inline void ssd_scan(const SsdShape& s, const float* x, Index xs, const float* B, Index bs, const float* C, Index cs, const float* dt,
                     Index ds, const float* A, const float* D, const float* state_in, float* state_out, float* y, Index ys, Index T) {
    const Index P = s.head_dim, N = s.state, per = s.heads / s.groups;
    if (state_in && state_in != state_out) std::copy_n(state_in, s.state_size(), state_out);
    if (!state_in) std::fill_n(state_out, s.state_size(), 0.0f);
    for (Index h = 0; h < s.heads; ++h) {
        float* S = state_out + h * P * N;
        const Index g = h / per;
        for (Index t = 0; t < T; ++t) {
            const float d = dt[t * ds + h], decay = std::exp(d * A[h]);
            const float* xt = x + t * xs + h * P;
            const float* Bt = B + t * bs + g * N;
            const float* Ct = C + t * cs + g * N;
            float* yt = y + t * ys + h * P;
            for (Index p = 0; p < P; ++p) {
                float* Sp = S + p * N;
                const float dx = d * xt[p];
                float acc = 0.0f;
                for (Index n = 0; n < N; ++n) {
                    Sp[n] = decay * Sp[n] + dx * Bt[n];
                    acc += Sp[n] * Ct[n];
                }
                yt[p] = acc + D[h] * xt[p];
            }
        }
    }
}

}  // namespace massact::kernels

"""Held-out checkpoints of the recurrent families (Qwen3-Next / Qwen3.5 Gated DeltaNet, Mamba-2) with sizes, head
ratios, kernel widths, groups, biases, limits and seeds the Hugging Face fixtures do not have: random weights written
here, massact against a float64 NumPy forward written in this file from transformers' modeling files
(modeling_qwen3_next.py: torch_recurrent_gated_delta_rule, Qwen3NextRMSNormGated, the sparse MoE block;
modeling_mamba2.py: torch_forward). Hidden states within 2e-4 of max |h|, attention 2e-5, logits 2e-4 of max |logit|;
decoding through a KV cache equals the full forward."""
import json
import os

import numpy as np
import pytest

import massact

T = 13


def silu(x):
    return x / (1 + np.exp(-x))


def softplus(x):
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def rms(x, w, eps, one_plus):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * ((1 + w) if one_plus else w)


def conv(xbc, w, b=None):  # depthwise causal convolution, then SiLU: xbc [T, C], w [C, K]
    K = w.shape[1]
    pad = np.concatenate([np.zeros((K - 1, xbc.shape[1])), xbc], 0)
    out = np.stack([(pad[t:t + K] * w.T).sum(0) for t in range(xbc.shape[0])])
    return silu(out + (0 if b is None else b))


class Weights(dict):
    def __init__(self, seed):
        super().__init__()
        self.rng = np.random.default_rng(seed)

    def add(self, name, shape, scale=0.3, offset=0.0):
        self[name] = (self.rng.standard_normal(shape) * scale + offset).astype(np.float32)
        return self[name].astype(np.float64)


# ---- Qwen3-Next / Qwen3.5 ------------------------------------------------------------------------------------

def qwen_config(kind):
    c = dict(vocab_size=90, hidden_size=24, intermediate_size=40, num_hidden_layers=4, num_attention_heads=6,
             num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-5, partial_rotary_factor=0.5,
             rope_parameters={"rope_type": "default", "rope_theta": 1000.0, "partial_rotary_factor": 0.5},
             layer_types=["linear_attention", "linear_attention", "full_attention", "linear_attention"],
             linear_num_key_heads=1, linear_num_value_heads=3, linear_key_head_dim=8, linear_value_head_dim=12,
             linear_conv_kernel_dim=3, hidden_act="silu", tie_word_embeddings=False, model_type=kind)
    if kind == "qwen3_next":  # experts on layers 0, 2, 3 (top-1, not renormalised), a dense layer 1
        c.update(num_experts=3, num_experts_per_tok=1, norm_topk_prob=False, moe_intermediate_size=16,
                 shared_expert_intermediate_size=12, mlp_only_layers=[1], decoder_sparse_step=1)
    else:  # separate projections, 2 key heads for 2 value heads, 5 taps, a tied embedding
        c.update(linear_num_key_heads=2, linear_num_value_heads=2, linear_key_head_dim=6, linear_value_head_dim=10,
                 linear_conv_kernel_dim=5, tie_word_embeddings=True, num_hidden_layers=3,
                 layer_types=["linear_attention", "full_attention", "linear_attention"])
    return c


def qwen_weights(c, seed):
    W = Weights(seed)
    d, Hk, Hv, dk, dv = c["hidden_size"], c["linear_num_key_heads"], c["linear_num_value_heads"], c["linear_key_head_dim"], \
        c["linear_value_head_dim"]
    H, KV, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    W.add("model.embed_tokens.weight", (c["vocab_size"], d), 1.0)
    for l, t in enumerate(c["layer_types"]):
        p = f"model.layers.{l}."
        W.add(p + "input_layernorm.weight", (d,), 0.1)
        W.add(p + "post_attention_layernorm.weight", (d,), 0.1)
        if t == "linear_attention":
            a = p + "linear_attn."
            if c["model_type"] == "qwen3_next":
                W.add(a + "in_proj_qkvz.weight", (2 * Hk * dk + 2 * Hv * dv, d))
                W.add(a + "in_proj_ba.weight", (2 * Hv, d))
            else:
                W.add(a + "in_proj_qkv.weight", (2 * Hk * dk + Hv * dv, d))
                W.add(a + "in_proj_z.weight", (Hv * dv, d))
                W.add(a + "in_proj_b.weight", (Hv, d))
                W.add(a + "in_proj_a.weight", (Hv, d))
            W.add(a + "conv1d.weight", (2 * Hk * dk + Hv * dv, 1, c["linear_conv_kernel_dim"]), 0.5)
            W.add(a + "A_log", (Hv,), 0.5)
            W.add(a + "dt_bias", (Hv,), 0.5)
            W.add(a + "norm.weight", (dv,), 0.1, 1.0)
            W.add(a + "out_proj.weight", (d, Hv * dv))
        else:
            a = p + "self_attn."
            W.add(a + "q_proj.weight", (2 * H * hd, d))
            W.add(a + "k_proj.weight", (KV * hd, d))
            W.add(a + "v_proj.weight", (KV * hd, d))
            W.add(a + "o_proj.weight", (d, H * hd))
            W.add(a + "q_norm.weight", (hd,), 0.1)
            W.add(a + "k_norm.weight", (hd,), 0.1)
        moe = c.get("num_experts", 0) and l not in c.get("mlp_only_layers", [])
        if moe:
            I, S = c["moe_intermediate_size"], c["shared_expert_intermediate_size"]
            W.add(p + "mlp.gate.weight", (c["num_experts"], d))
            for e in range(c["num_experts"]):
                W.add(p + f"mlp.experts.{e}.gate_proj.weight", (I, d))
                W.add(p + f"mlp.experts.{e}.up_proj.weight", (I, d))
                W.add(p + f"mlp.experts.{e}.down_proj.weight", (d, I))
            W.add(p + "mlp.shared_expert.gate_proj.weight", (S, d))
            W.add(p + "mlp.shared_expert.up_proj.weight", (S, d))
            W.add(p + "mlp.shared_expert.down_proj.weight", (d, S))
            W.add(p + "mlp.shared_expert_gate.weight", (1, d))
        else:
            I = c["intermediate_size"]
            W.add(p + "mlp.gate_proj.weight", (I, d))
            W.add(p + "mlp.up_proj.weight", (I, d))
            W.add(p + "mlp.down_proj.weight", (d, I))
    W.add("model.norm.weight", (d,), 0.1)
    if not c["tie_word_embeddings"]:
        W.add("lm_head.weight", (c["vocab_size"], d))
    return W


def qwen_forward(c, W, ids):
    """hidden states [L + 1] (the last after the final norm), attention patterns {layer: [H, T, T]}, logits."""
    w = {k: v.astype(np.float64) for k, v in W.items()}
    eps, d = c["rms_norm_eps"], c["hidden_size"]
    Hk, Hv, dk, dv = c["linear_num_key_heads"], c["linear_num_value_heads"], c["linear_key_head_dim"], c["linear_value_head_dim"]
    H, KV, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    rot = int(hd * c["partial_rotary_factor"])
    n = len(ids)

    def gdn(x, a):
        if c["model_type"] == "qwen3_next":  # per key head: [q, k, v of its value heads, z of its value heads]; [b, a]
            per = Hv // Hk
            g = (x @ w[a + "in_proj_qkvz.weight"].T).reshape(n, Hk, -1)
            q, k = g[:, :, :dk].reshape(n, -1), g[:, :, dk:2 * dk].reshape(n, -1)
            v, z = g[:, :, 2 * dk:2 * dk + per * dv].reshape(n, -1), g[:, :, 2 * dk + per * dv:].reshape(n, -1)
            ba = (x @ w[a + "in_proj_ba.weight"].T).reshape(n, Hk, -1)
            b, al = ba[:, :, :per].reshape(n, -1), ba[:, :, per:].reshape(n, -1)
            mixed = np.concatenate([q, k, v], -1)
        else:
            mixed, z = x @ w[a + "in_proj_qkv.weight"].T, x @ w[a + "in_proj_z.weight"].T
            b, al = x @ w[a + "in_proj_b.weight"].T, x @ w[a + "in_proj_a.weight"].T
        m = conv(mixed, w[a + "conv1d.weight"][:, 0, :])
        q = m[:, :Hk * dk].reshape(n, Hk, dk)
        k = m[:, Hk * dk:2 * Hk * dk].reshape(n, Hk, dk)
        v = m[:, 2 * Hk * dk:].reshape(n, Hv, dv)
        q = q / np.sqrt((q * q).sum(-1, keepdims=True) + 1e-6)
        k = k / np.sqrt((k * k).sum(-1, keepdims=True) + 1e-6)
        beta, g = 1 / (1 + np.exp(-b)), -np.exp(w[a + "A_log"]) * softplus(al + w[a + "dt_bias"])
        o = np.zeros((n, Hv, dv))
        for h in range(Hv):
            S, kh = np.zeros((dk, dv)), h // (Hv // Hk)
            for t in range(n):
                S = S * np.exp(g[t, h])
                S = S + np.outer(k[t, kh], (v[t, h] - S.T @ k[t, kh]) * beta[t, h])
                o[t, h] = S.T @ q[t, kh] / np.sqrt(dk)
        o = rms(o, w[a + "norm.weight"], eps, False) * silu(z.reshape(n, Hv, dv))
        return o.reshape(n, -1) @ w[a + "out_proj.weight"].T

    def attention(x, a):
        qg = (x @ w[a + "q_proj.weight"].T).reshape(n, H, 2 * hd)
        q, gate = qg[:, :, :hd], qg[:, :, hd:]
        k = (x @ w[a + "k_proj.weight"].T).reshape(n, KV, hd)
        v = (x @ w[a + "v_proj.weight"].T).reshape(n, KV, hd)
        q, k = rms(q, w[a + "q_norm.weight"], eps, True), rms(k, w[a + "k_norm.weight"], eps, True)
        inv = 1.0 / c["rope_parameters"]["rope_theta"] ** (np.arange(0, rot, 2) / rot)
        ang = np.arange(n)[:, None] * inv[None]
        cos, sin = np.cos(np.concatenate([ang, ang], -1))[:, None], np.sin(np.concatenate([ang, ang], -1))[:, None]

        def rope(u):
            r, rest, h2 = u[..., :rot], u[..., rot:], rot // 2
            return np.concatenate([r * cos + np.concatenate([-r[..., h2:], r[..., :h2]], -1) * sin, rest], -1)

        q, k = rope(q), np.repeat(rope(k), H // KV, 1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + np.triu(np.full((n, n), -np.inf), 1)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        z = np.einsum("hts,shd->thd", p, np.repeat(v, H // KV, 1)).reshape(n, -1) / (1 + np.exp(-gate.reshape(n, -1)))
        return z @ w[a + "o_proj.weight"].T, p

    def mlp(x, p):
        def swiglu(x, q):
            return (silu(x @ w[q + "gate_proj.weight"].T) * (x @ w[q + "up_proj.weight"].T)) @ w[q + "down_proj.weight"].T
        if p + "mlp.gate_proj.weight" in w:
            return swiglu(x, p + "mlp.")
        logits = x @ w[p + "mlp.gate.weight"].T
        pr = np.exp(logits - logits.max(-1, keepdims=True))
        pr /= pr.sum(-1, keepdims=True)
        out = np.zeros_like(x)
        for t in range(n):
            top = np.argsort(-pr[t], kind="stable")[:c["num_experts_per_tok"]]
            wt = pr[t, top] / (pr[t, top].sum() if c["norm_topk_prob"] else 1.0)
            for e, we in zip(top, wt):
                out[t] += we * swiglu(x[t:t + 1], p + f"mlp.experts.{e}.")[0]
        sh = swiglu(x, p + "mlp.shared_expert.")
        return out + sh / (1 + np.exp(-(x @ w[p + "mlp.shared_expert_gate.weight"].T)))

    x = w["model.embed_tokens.weight"][ids]
    hidden, patterns = [x], {}
    for l, t in enumerate(c["layer_types"]):
        p = f"model.layers.{l}."
        u = rms(x, w[p + "input_layernorm.weight"], eps, True)
        if t == "linear_attention":
            x = x + gdn(u, p + "linear_attn.")
        else:
            o, patterns[l] = attention(u, p + "self_attn.")
            x = x + o
        x = x + mlp(rms(x, w[p + "post_attention_layernorm.weight"], eps, True), p)
        hidden.append(x)
    hidden[-1] = rms(x, w["model.norm.weight"], eps, True)
    head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]
    return hidden, patterns, hidden[-1] @ head.T


# ---- Mamba-2 ---------------------------------------------------------------------------------------------------

def mamba_config():
    # 2 groups of B/C over 6 heads, state 5, 3 taps, biases on in_proj / out_proj, dt clamped to [0.05, 0.6], tied
    return dict(model_type="mamba2", vocab_size=90, hidden_size=24, num_hidden_layers=2, num_heads=6, head_dim=8, expand=2,
                n_groups=2, state_size=5, conv_kernel=3, use_bias=True, use_conv_bias=True, time_step_limit=[0.05, 0.6],
                layer_norm_epsilon=1e-5, tie_word_embeddings=True, hidden_act="silu")


def mamba_weights(c, seed):
    W = Weights(seed)
    d, H, P, G, N = c["hidden_size"], c["num_heads"], c["head_dim"], c["n_groups"], c["state_size"]
    I, C = H * P, H * P + 2 * G * N
    W.add("backbone.embeddings.weight", (c["vocab_size"], d), 1.0)
    for l in range(c["num_hidden_layers"]):
        p = f"backbone.layers.{l}."
        W.add(p + "norm.weight", (d,), 0.1, 1.0)
        W.add(p + "mixer.in_proj.weight", (I + C + H, d))
        W.add(p + "mixer.in_proj.bias", (I + C + H,), 0.2)
        W.add(p + "mixer.conv1d.weight", (C, 1, c["conv_kernel"]), 0.5)
        W.add(p + "mixer.conv1d.bias", (C,), 0.2)
        W.add(p + "mixer.dt_bias", (H,), 0.5)
        W.add(p + "mixer.A_log", (H,), 0.5)
        W.add(p + "mixer.D", (H,), 0.5, 1.0)
        W.add(p + "mixer.norm.weight", (I,), 0.1, 1.0)
        W.add(p + "mixer.out_proj.weight", (d, I))
        W.add(p + "mixer.out_proj.bias", (d,), 0.2)
    W.add("backbone.norm_f.weight", (d,), 0.1, 1.0)
    return W


def mamba_forward(c, W, ids):
    w = {k: v.astype(np.float64) for k, v in W.items()}
    eps, H, P, G, N = c["layer_norm_epsilon"], c["num_heads"], c["head_dim"], c["n_groups"], c["state_size"]
    I, n = H * P, len(ids)
    x = w["backbone.embeddings.weight"][ids]
    hidden = [x]
    for l in range(c["num_hidden_layers"]):
        p = f"backbone.layers.{l}.mixer."
        u = rms(x, w[f"backbone.layers.{l}.norm.weight"], eps, False)
        proj = u @ w[p + "in_proj.weight"].T + w[p + "in_proj.bias"]
        z, xbc, dt = proj[:, :I], proj[:, I:-H], proj[:, -H:]
        xbc = conv(xbc, w[p + "conv1d.weight"][:, 0, :], w[p + "conv1d.bias"])
        xs, B, Cm = xbc[:, :I].reshape(n, H, P), xbc[:, I:I + G * N].reshape(n, G, N), xbc[:, I + G * N:].reshape(n, G, N)
        dt = np.clip(softplus(dt + w[p + "dt_bias"]), *c["time_step_limit"])
        A = -np.exp(w[p + "A_log"])
        y = np.zeros((n, H, P))
        for h in range(H):
            S, g = np.zeros((P, N)), h // (H // G)
            for t in range(n):
                S = np.exp(dt[t, h] * A[h]) * S + dt[t, h] * np.outer(xs[t, h], B[t, g])
                y[t, h] = S @ Cm[t, g] + w[p + "D"][h] * xs[t, h]
        y = rms(y.reshape(n, I) * silu(z), w[p + "norm.weight"], eps, False)
        x = x + y @ w[p + "out_proj.weight"].T + w[p + "out_proj.bias"]
        hidden.append(x)
    hidden[-1] = rms(x, w["backbone.norm_f.weight"], eps, False)
    return hidden, {}, hidden[-1] @ w["backbone.embeddings.weight"].T


CASES = {
    "qwen3_next": (lambda: qwen_config("qwen3_next"), qwen_weights, qwen_forward, 21),
    "qwen3_5_text": (lambda: qwen_config("qwen3_5_text"), qwen_weights, qwen_forward, 22),
    "mamba2": (mamba_config, mamba_weights, mamba_forward, 23),
}


def rel(got, want):
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


@pytest.mark.parametrize("family", sorted(CASES))
def test_heldout_recurrent_family_matches_float64_forward(family, tmp_path):
    make_config, make_weights, forward, seed = CASES[family]
    c = make_config()
    W = make_weights(c, seed)
    d = str(tmp_path / family)
    os.makedirs(d)
    json.dump(c, open(os.path.join(d, "config.json"), "w"))
    massact.write_safetensors(os.path.join(d, "model.safetensors"), dict(W))
    ids = np.random.default_rng(seed).integers(0, c["vocab_size"], (2, T))
    m = massact.load(d)
    L = c["num_hidden_layers"]

    def sites(n):
        return n == "blocks.0.hook_resid_pre" or n.endswith(("hook_resid_post", "attn.hook_pattern")) or n == "ln_final.hook_normalized"

    logits, cache = m.run_with_cache(ids, names_filter=sites)
    for b in range(2):
        hidden, patterns, want_logits = forward(c, W, ids[b])
        assert rel(logits[b], want_logits) < 2e-4
        for i in range(L + 1):
            site = "blocks.0.hook_resid_pre" if i == 0 else "ln_final.hook_normalized" if i == L else f"blocks.{i - 1}.hook_resid_post"
            assert rel(cache[site][b], hidden[i]) < 2e-4, (site, b)
        for l in range(L):
            assert (l in patterns) == (f"blocks.{l}.attn.hook_pattern" in cache)
            if l in patterns:
                assert np.abs(cache["pattern", l][b] - patterns[l]).max() < 2e-5, l
    # decoding through the cache (the recurrent states and convolution histories) equals the full forward
    kv = m.make_cache(batch=2)
    parts = [m(ids[:, :5], past_kv_cache=kv), m(ids[:, 5:6], past_kv_cache=kv), m(ids[:, 6:], past_kv_cache=kv)]
    stepped = np.concatenate(parts, axis=1)
    assert rel(stepped, logits) < 2e-5

#!/usr/bin/env python3
"""torch_forward.py MODEL_DIR TOKENS THREADS REPEATS float32|bfloat16 -- prefill speed of a Llama-shaped
checkpoint (bench/make_checkpoint) in PyTorch on the CPU, the peer of `massact bench` in bench/peers.sh.

transformers is not a Debian package, so this is the Llama forward written out in PyTorch (RMSNorm,
rotate-half RoPE, grouped-query causal attention, SwiGLU, all logits), with the same weights read from
model.safetensors. Prints one JSON line: {"engine": "pytorch", "dtype": ..., "tokens_per_s": ...}."""
import json
import struct
import sys
import time

import numpy as np
import torch


def load(path, dtype):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        if e["dtype"] == "BF16":
            t = torch.from_numpy(np.array(raw[b:end]).view(np.int16)).view(torch.bfloat16)
        elif e["dtype"] == "F32":
            t = torch.from_numpy(np.array(raw[b:end]).view(np.float32))
        else:
            sys.exit(f"torch_forward: tensor {name}: dtype {e['dtype']}, expected BF16 or F32")
        out[name] = t.reshape(e["shape"]).to(dtype)
    return out


def main():
    if len(sys.argv) != 6 or sys.argv[5] not in ("float32", "bfloat16"):
        sys.exit("usage: torch_forward.py MODEL_DIR TOKENS THREADS REPEATS float32|bfloat16")
    src, T, threads, repeats, dname = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    torch.set_num_threads(threads)
    dtype = getattr(torch, dname)
    cfg = json.load(open(f"{src}/config.json"))
    W = load(f"{src}/model.safetensors", dtype)
    d, H, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    KV = cfg.get("num_key_value_heads", H)
    hd, eps = d // H, cfg.get("rms_norm_eps", 1e-5)
    inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)
    cos, sin = torch.cat([ang.cos()] * 2, -1).to(dtype), torch.cat([ang.sin()] * 2, -1).to(dtype)

    def rms(x, w):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(dtype) * w

    def rot(x):
        h = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin

    mask = torch.full((T, T), float("-inf")).triu(1).to(dtype)

    def attention(q, k, v):  # torch >= 2 has scaled_dot_product_attention; Debian 12's 1.13 does not
        if hasattr(torch.nn.functional, "scaled_dot_product_attention"):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        s = (q @ k.transpose(-1, -2)) * hd ** -0.5 + mask
        return torch.softmax(s.float(), -1).to(dtype) @ v

    ids = (torch.arange(T) * 7919 + 1) % cfg["vocab_size"]

    @torch.inference_mode()
    def forward():
        x = W["model.embed_tokens.weight"][ids]
        for l in range(L):
            p = f"model.layers.{l}."
            n = rms(x, W[p + "input_layernorm.weight"])
            q = (n @ W[p + "self_attn.q_proj.weight"].T).view(T, H, hd).transpose(0, 1)
            k = (n @ W[p + "self_attn.k_proj.weight"].T).view(T, KV, hd).transpose(0, 1)
            v = (n @ W[p + "self_attn.v_proj.weight"].T).view(T, KV, hd).transpose(0, 1)
            q, k = rot(q), rot(k)
            k, v = k.repeat_interleave(H // KV, 0), v.repeat_interleave(H // KV, 0)
            z = attention(q, k, v)
            x = x + z.transpose(0, 1).reshape(T, d) @ W[p + "self_attn.o_proj.weight"].T
            n = rms(x, W[p + "post_attention_layernorm.weight"])
            g = torch.nn.functional.silu(n @ W[p + "mlp.gate_proj.weight"].T) * (n @ W[p + "mlp.up_proj.weight"].T)
            x = x + g @ W[p + "mlp.down_proj.weight"].T
        return rms(x, W["model.norm.weight"]) @ W["lm_head.weight"].T

    forward()  # warm-up
    best = 1e300
    for _ in range(repeats):
        t0 = time.perf_counter()
        forward()
        best = min(best, time.perf_counter() - t0)
    print(json.dumps({"engine": "pytorch", "version": torch.__version__, "dtype": dname, "threads": threads,
                      "tokens": T, "tokens_per_s": T / best}))


if __name__ == "__main__":
    main()

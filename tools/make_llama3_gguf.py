#!/usr/bin/env python3
"""Write the Llama 3 RoPE test pair: a small random-weight Hugging Face llama checkpoint with llama3 RoPE scaling
(OUT/llama3/config.json, model.safetensors, F32) and the same weights as a GGUF file in llama.cpp's layout
(OUT/tiny-llama3-F32.gguf, by bench/to_gguf.py with llama.cpp's gguf-py): Q and K rows permuted for interleaved
rotary pairs, and the llama3 scaling stored only as the per-pair frequency factors of rope_freqs.weight.

Usage: PYTHONPATH=<llama.cpp>/gguf-py /usr/bin/python3 tools/make_llama3_gguf.py OUT
(numpy from Debian's python3-numpy; gguf-py from the llama.cpp source bundled with node-llama-cpp@3.21.1)."""
import json
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import to_gguf  # noqa: E402

D, L, H, KV, HD, I, V = 64, 2, 4, 2, 16, 96, 320
SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 32}


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name, t in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for t in tensors.values():
            f.write(np.ascontiguousarray(t, dtype="<f4").tobytes())


def main():
    out = Path(sys.argv[1])
    rng = np.random.default_rng(20261202)

    def rand(*shape, scale=0.2):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    hf = {"model.embed_tokens.weight": rand(V, D, scale=1.0), "model.norm.weight": 1 + rand(D), "lm_head.weight": rand(V, D)}
    for l in range(L):
        p = f"model.layers.{l}."
        hf.update({p + "input_layernorm.weight": 1 + rand(D), p + "post_attention_layernorm.weight": 1 + rand(D),
                   p + "self_attn.q_proj.weight": rand(H * HD, D), p + "self_attn.k_proj.weight": rand(KV * HD, D),
                   p + "self_attn.v_proj.weight": rand(KV * HD, D), p + "self_attn.o_proj.weight": rand(D, H * HD),
                   p + "mlp.gate_proj.weight": rand(I, D), p + "mlp.up_proj.weight": rand(I, D),
                   p + "mlp.down_proj.weight": rand(D, I)})
    src = out / "llama3"
    src.mkdir(parents=True, exist_ok=True)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": D, "intermediate_size": I,
              "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": KV, "head_dim": HD,
              "vocab_size": V, "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "hidden_act": "silu",
              "tie_word_embeddings": False, "rope_theta": 10000.0, "rope_scaling": SCALING}
    (src / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    write_safetensors(src / "model.safetensors", hf)
    to_gguf.convert(str(src), str(out / "tiny-llama3-F32.gguf"), "f32")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""to_gguf.py MODEL_DIR OUT.gguf f32|bf16 -- write a Llama-shaped safetensors checkpoint (config.json +
model.safetensors, as bench/make_checkpoint writes) as a llama.cpp GGUF file with llama.cpp's own gguf-py
(PYTHONPATH=<llama.cpp>/gguf-py), for the speed comparison in bench/peers.sh.

The weights are the same values: F32 holds the BF16 values exactly, BF16 copies them. Q and K are permuted
to llama.cpp's interleaved rotary layout as convert_hf_to_gguf.py does. The random checkpoint has no
tokenizer, so the file gets a SentencePiece-style vocabulary of the model's size (byte tokens and
placeholders): llama-bench needs one to load the model and never looks at its strings. A llama3-scaled
model gets llama.cpp's rope_freqs.weight (the scaling as per-pair frequency factors), as convert_hf_to_gguf.py
writes it; tools/make_llama3_gguf.py uses that for the Llama 3 GGUF test file."""
import json
import math
import struct
import sys

import numpy as np
import gguf


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if e["dtype"] not in ("BF16", "F32"):
            sys.exit(f"to_gguf: tensor {name}: dtype {e['dtype']}, expected BF16 or F32")
        b, end = e["data_offsets"]
        raw = data[b:end]
        if e["dtype"] == "BF16":
            bits = raw.view(np.uint16).astype(np.uint32) << 16
            yield name, bits.view(np.float32).reshape(e["shape"])
        else:
            yield name, raw.view(np.float32).reshape(e["shape"])


def permute(w, heads):  # HF rotate-half rows -> llama.cpp interleaved pairs (convert_hf_to_gguf's permute)
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_factors(cfg, head_dim):
    """rope_freqs.weight of a llama3-scaled model: the factor llama.cpp divides each rotary pair's angle by (1 for
    the fast pairs, `factor` for the slow ones, a blend between), from the scaling's definition."""
    s = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    if s.get("rope_type", s.get("type")) != "llama3":
        return None
    theta = s.get("rope_theta", cfg.get("rope_theta", 10000.0))
    old, lo, hi = s.get("original_max_position_embeddings", 8192), s.get("low_freq_factor", 1.0), s.get("high_freq_factor", 4.0)
    factor = s.get("factor", 8.0)
    out = []
    for j in range(head_dim // 2):
        wavelen = 2 * math.pi * theta ** (2.0 * j / head_dim)
        if wavelen < old / hi:
            out.append(1.0)
        elif wavelen > old / lo:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def convert(src, out, kind):
    cfg = json.load(open(f"{src}/config.json"))
    H, KV = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // H
    w = gguf.GGUFWriter(out, "llama")
    w.add_name("massact random " + src.rstrip("/").split("/")[-1])
    w.add_context_length(cfg.get("max_position_embeddings", 4096))
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-5))
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if kind == "f32" else gguf.LlamaFileType.MOSTLY_BF16)
    V = cfg["vocab_size"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    tokens += [f"\u2581t{i}" for i in range(V - len(tokens))]
    types += [gguf.TokenType.NORMAL] * (V - len(types))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * V)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    factors = llama3_factors(cfg, head_dim)
    if factors is not None:  # llama.cpp keeps llama3 scaling only as these factors
        w.add_tensor("rope_freqs.weight", factors)
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg["num_hidden_layers"])
    for name, t in read_safetensors(f"{src}/model.safetensors"):
        if name.endswith("q_proj.weight"):
            t = permute(t, H)
        elif name.endswith("k_proj.weight"):
            t = permute(t, KV)
        new = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            sys.exit(f"to_gguf: no GGUF name for tensor {name}")
        t = np.ascontiguousarray(t, dtype=np.float32)
        if kind == "bf16" and t.ndim == 2:  # norms stay F32, as in llama.cpp's conversions
            w.add_tensor(new, gguf.quants.quantize(t, gguf.GGMLQuantizationType.BF16), raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            w.add_tensor(new, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in ("f32", "bf16"):
        sys.exit("usage: to_gguf.py MODEL_DIR OUT.gguf f32|bf16")
    convert(*sys.argv[1:])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Random blocks of every GGUF block type massact reads, and llama.cpp's gguf-py dequantization of them:
tests/data/gguf/blocks.safetensors ("<TYPE>.blocks" U8 [n, bytes per block], "<TYPE>.values" F32 [n * block]).

    PYTHONPATH=<llama.cpp>/gguf-py /usr/bin/python3 tools/make_block_refs.py tests/data/gguf/blocks.safetensors

The bytes are uniform except the scales, which are set to finite values of a few units (f16 scales) or to
exponents 118..136 (MXFP4's E8M0), so no element overflows. gguf-py is llama.cpp's own reader
(node-llama-cpp@3.21.1's llama.cpp); test_gguf requires massact's dequantization to equal it bit for bit for the
types added with it and within float rounding for the older ones."""
import json
import struct
import sys

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as Q, quants

N = 24  # blocks per type
# type -> byte offsets of its f16 scales
F16_SCALES = {
    Q.Q8_0: [0], Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q2_K: [80, 82], Q.Q3_K: [108],
    Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208], Q.IQ4_NL: [0], Q.IQ4_XS: [0], Q.TQ1_0: [52], Q.TQ2_0: [64],
    Q.MXFP4: [],
}


def blocks_of(t, rng):
    block, size = GGML_QUANT_SIZES[t]
    raw = rng.integers(0, 256, size=(N, size), dtype=np.uint8)
    for off in F16_SCALES[t]:
        d = rng.uniform(-3, 3, size=N).astype(np.float16)
        raw[:, off:off + 2] = d.view(np.uint8).reshape(N, 2)
    if t == Q.MXFP4:
        raw[:, 0] = rng.integers(118, 137, size=N, dtype=np.uint8)
    return raw, block


def write_safetensors(path, tensors):
    header, chunks, offset = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": {np.dtype(np.uint8): "U8", np.dtype(np.float32): "F32"}[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        chunks.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


def main():
    rng = np.random.default_rng(35)
    out = {}
    for t in F16_SCALES:
        raw, block = blocks_of(t, rng)
        values = quants.dequantize(raw.reshape(-1), t).astype(np.float32).reshape(-1)
        assert values.size == N * block and np.isfinite(values).all()
        out[t.name + ".blocks"] = raw
        out[t.name + ".values"] = values
    write_safetensors(sys.argv[1], out)


if __name__ == "__main__":
    main()

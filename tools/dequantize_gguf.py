#!/usr/bin/env python3
"""dequantize_gguf.py IN.gguf OUT.gguf -- the same GGUF with every tensor as F32, dequantized by llama.cpp's own gguf-py
(PYTHONPATH=<llama.cpp>/gguf-py): every metadata field copied, tensors in the same order and layout (llama.cpp's
Q/K row permutation kept). test_gguf compares massact's forward of a quantized file with its forward of this copy,
so the dequantization is checked against llama.cpp's at the model level."""
import sys

import numpy as np
import gguf
from gguf import quants


def main(src, dst):
    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for t in reader.tensors:
        values = quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        writer.add_tensor(t.name, values.reshape(tuple(int(d) for d in reversed(t.shape))))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

#!/usr/bin/env python3
"""Write small GGUF files as seeds for the fuzz_gguf corpus (fuzz/corpus/fuzz_gguf): a vocabulary-only
file of each tokenizer kind and a one-layer llama model with F32, F16, BF16, Q8_0, Q4_0 and Q5_1
tensors (random bytes, finite scales). Standard library only."""
import random
import struct
import sys

def s(x):
    b = x.encode()
    return struct.pack('<Q', len(b)) + b

def kv(key, t, payload):
    return s(key) + struct.pack('<I', t) + payload

def arr(et, items, fmt=None):
    body = b''.join(s(i) if et == 8 else struct.pack('<' + fmt, i) for i in items)
    return struct.pack('<IQ', et, len(items)) + body

def gguf(kvs, tensors, align=32):
    head = b'GGUF' + struct.pack('<IQQ', 3, len(tensors), len(kvs)) + b''.join(kvs)
    infos, data, off = b'', b'', 0
    for name, ne, typ, raw in tensors:
        infos += s(name) + struct.pack('<I', len(ne)) + b''.join(struct.pack('<Q', n) for n in ne) + struct.pack('<IQ', typ, off)
        pad = (-len(raw)) % align
        data += raw + b'\0' * pad
        off += len(raw) + pad
    body = head + infos
    body += b'\0' * ((-len(body)) % align)
    return body + data

def f16(x):
    return struct.pack('<e', x)

def block(typ, rng):
    if typ == 8:  # Q8_0
        return f16(rng.uniform(-1, 1)) + bytes(rng.randrange(256) for _ in range(32))
    if typ == 2:  # Q4_0
        return f16(rng.uniform(-1, 1)) + bytes(rng.randrange(256) for _ in range(16))
    if typ == 7:  # Q5_1
        return f16(rng.uniform(-1, 1)) + f16(rng.uniform(-1, 1)) + bytes(rng.randrange(256) for _ in range(20))
    if typ == 20:  # IQ4_NL
        return f16(rng.uniform(-1, 1)) + bytes(rng.randrange(256) for _ in range(16))
    if typ == 39:  # MXFP4: E8M0 exponent, 16 bytes of e2m1 pairs
        return bytes([rng.randrange(120, 130)]) + bytes(rng.randrange(256) for _ in range(16))
    raise ValueError(typ)

def matrix(typ, rows, cols, rng):
    if typ == 0:
        return b''.join(struct.pack('<f', rng.uniform(-1, 1)) for _ in range(rows * cols))
    if typ == 1:
        return b''.join(f16(rng.uniform(-1, 1)) for _ in range(rows * cols))
    if typ == 30:
        return b''.join(struct.pack('<f', rng.uniform(-1, 1))[2:] for _ in range(rows * cols))
    return b''.join(block(typ, rng) for _ in range(rows * cols // 32))

def main(out):
    rng = random.Random(7)
    tokens = ['<unk>', '<s>', '</s>', 'a', 'b', 'ab', '\u0120a', 'c']
    vocab_gpt2 = [kv('tokenizer.ggml.model', 8, s('gpt2')), kv('tokenizer.ggml.pre', 8, s('llama-bpe')),
                  kv('tokenizer.ggml.tokens', 9, arr(8, tokens)), kv('tokenizer.ggml.merges', 9, arr(8, ['a b'])),
                  kv('tokenizer.ggml.token_type', 9, arr(5, [2, 3, 3, 1, 1, 1, 1, 1], 'i')),
                  kv('tokenizer.ggml.bos_token_id', 4, struct.pack('<I', 1))]
    spm = ['<unk>', '<s>', '</s>', '\u2581', 'a', 'b', 'ab', '<0x41>']
    vocab_spm = [kv('tokenizer.ggml.model', 8, s('llama')), kv('tokenizer.ggml.tokens', 9, arr(8, spm)),
                 kv('tokenizer.ggml.scores', 9, arr(6, [0, 0, 0, -5, -5, -5, -1, 0], 'f')),
                 kv('tokenizer.ggml.token_type', 9, arr(5, [2, 3, 3, 1, 1, 1, 1, 6], 'i'))]
    open(out + '/vocab_gpt2.gguf', 'wb').write(gguf(vocab_gpt2, []))
    open(out + '/vocab_spm.gguf', 'wb').write(gguf(vocab_spm, []))
    d, ff, heads, V = 32, 64, 4, 8
    meta = [kv('general.architecture', 8, s('llama')), kv('llama.embedding_length', 4, struct.pack('<I', d)),
            kv('llama.feed_forward_length', 4, struct.pack('<I', ff)), kv('llama.block_count', 4, struct.pack('<I', 1)),
            kv('llama.attention.head_count', 4, struct.pack('<I', heads)), kv('llama.attention.head_count_kv', 4, struct.pack('<I', 2)),
            kv('llama.attention.layer_norm_rms_epsilon', 6, struct.pack('<f', 1e-5)), kv('llama.context_length', 4, struct.pack('<I', 64))]
    for name, types in [('model_q8.gguf', (8, 8)), ('model_mixed.gguf', (2, 7)), ('model_half.gguf', (1, 30)), ('model_iq4.gguf', (20, 39))]:
        a, b = types
        t = [('token_embd.weight', [d, V], 0, matrix(0, V, d, rng)), ('output_norm.weight', [d], 0, matrix(0, 1, d, rng)),
             ('blk.0.attn_norm.weight', [d], 0, matrix(0, 1, d, rng)), ('blk.0.ffn_norm.weight', [d], 0, matrix(0, 1, d, rng)),
             ('blk.0.attn_q.weight', [d, d], a, matrix(a, d, d, rng)), ('blk.0.attn_k.weight', [d, d // 2], b, matrix(b, d // 2, d, rng)),
             ('blk.0.attn_v.weight', [d, d // 2], a, matrix(a, d // 2, d, rng)), ('blk.0.attn_output.weight', [d, d], b, matrix(b, d, d, rng)),
             ('blk.0.ffn_gate.weight', [d, ff], a, matrix(a, ff, d, rng)), ('blk.0.ffn_up.weight', [d, ff], b, matrix(b, ff, d, rng)),
             ('blk.0.ffn_down.weight', [ff, d], a, matrix(a, d, ff, rng))]
        open(out + '/' + name, 'wb').write(gguf(meta + vocab_gpt2, t))

if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'fuzz/corpus/fuzz_gguf')

#!/usr/bin/env python3
"""GGUF files of the random-weight family checkpoints, written by llama.cpp's own convert_hf_to_gguf.py.

    PYTHONPATH=<llama.cpp> python3 tools/make_family_ggufs.py tests/data/families OUT_DIR [f32|f16 ...] [-- name ...]

For every family directory (or the names after --) it runs the converter's model class exactly as
convert_hf_to_gguf.py does (hyperparameters, tensor renaming, permutations, fusions, norm offsets: all the
converter's), writing OUT_DIR/<name>-<TYPE>.gguf. The checkpoints have no tokenizer, so one step is replaced:
the vocabulary. Every class's set_vocab becomes a stand-in byte-level BPE of the model's vocab_size tokens
(GPT-2's 256 byte symbols, then the merges of pairs of common letters, the last two ids <s> and </s>;
tokenizer.ggml.pre "gpt-2"), so llama.cpp's tokenizer and massact's read the same vocabulary. Needs PyTorch,
transformers and llama.cpp's conversion package and gguf-py (from the llama.cpp of node-llama-cpp@3.21.1);
massact never runs it. A family the converter refuses is reported; the script exits 1 if any was."""
import json
import logging
import os
import sys
import traceback
from pathlib import Path


def byte_symbols():
    """GPT-2's printable stand-ins of the 256 bytes (the byte-level alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def standin_vocab(n):
    """(tokens, merges): 256 byte symbols, merges of common letter pairs (and space + letter) up to n - 2
    tokens, then <s>, </s>."""
    tokens = byte_symbols()
    space = tokens[ord(" ")]
    letters = "etaoinshrdlucmfwypvbgkqjxz"
    pairs = [(space, c) for c in letters] + [(a, b) for a in letters for b in letters]
    merges = []
    for a, b in pairs:
        if len(tokens) >= n - 2:
            break
        tokens.append(a + b)
        merges.append(a + " " + b)
    tokens += ["<s>", "</s>"]
    return tokens, merges


def main():
    import torch
    # Debian 12's PyTorch (1.13) has no float8 dtypes, which the converter only names for FP8 checkpoints
    for name in ("float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu", "float8_e4m3fnuz", "float8_e5m2fnuz"):
        if not hasattr(torch, name):
            setattr(torch, name, object())
    import convert_hf_to_gguf as cv
    gguf = cv.gguf

    args = sys.argv[1:]
    names = []
    if "--" in args:
        names = args[args.index("--") + 1:]
        args = args[:args.index("--")]
    src, out = Path(args[0]), Path(args[1])
    types = args[2:] or ["f32", "f16"]
    ftypes = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}
    out.mkdir(parents=True, exist_ok=True)

    def set_vocab(self):
        n = self.hparams.get("vocab_size") or self.hparams["text_config"]["vocab_size"]
        tokens, merges = standin_vocab(n)
        self.gguf_writer.add_tokenizer_model("gpt2")
        self.gguf_writer.add_tokenizer_pre("gpt-2")
        self.gguf_writer.add_token_list(tokens)
        types_ = [gguf.TokenType.NORMAL] * (len(tokens) - 2) + [gguf.TokenType.CONTROL] * 2
        self.gguf_writer.add_token_types(types_)
        self.gguf_writer.add_token_merges(merges)
        self.gguf_writer.add_bos_token_id(n - 2)
        self.gguf_writer.add_eos_token_id(n - 1)
        self.gguf_writer.add_add_bos_token(False)

    logging.basicConfig(level=logging.WARNING)
    failed = []
    for d in sorted(src.iterdir()):
        if names and d.name not in names:
            continue
        if not (d / "config.json").exists():
            continue
        hparams = json.loads((d / "config.json").read_text())
        arch = (hparams.get("architectures") or ["?"])[0]
        for t in types:
            target = out / f"{d.name}-{t.upper()}.gguf"
            try:
                with torch.inference_mode():
                    hp = cv.ModelBase.load_hparams(d, False)
                    cls = cv.get_model_class(cv.get_model_architecture(hp, cv.ModelType.TEXT))
                    own = cls.__dict__.get("set_vocab")
                    cls.set_vocab = set_vocab
                    m = cls(d, ftypes[t], target, is_big_endian=False, use_temp_file=False, eager=True,
                                metadata_override=None, model_name=d.name, split_max_tensors=0, split_max_size=0,
                                dry_run=False, small_first_shard=False, remote_hf_model_id=None)
                    try:
                        m.write()
                    finally:
                        if own is None:
                            del cls.set_vocab
                        else:
                            cls.set_vocab = own
                print(f"{d.name} {arch} {t}: ok {os.path.getsize(target)} bytes", flush=True)
            except BaseException as e:  # noqa: BLE001 - report every family
                if os.path.exists(target):
                    os.remove(target)
                print(f"{d.name} {arch} {t}: FAILED {type(e).__name__}: {e}", flush=True)
                traceback.print_exc(limit=3)
                failed.append(f"{d.name}:{t}")
    print("failed:", failed)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

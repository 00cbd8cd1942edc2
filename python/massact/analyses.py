"""The tool's commands as functions: massact.scan(model, data=..., seq_len=64) runs `massact scan MODEL --data ...
--seq-len 64 --json OUT` in this process (the tool's own code path, its options as keyword arguments: seq_len ->
--seq-len, True -> a flag, a list -> comma-separated) and returns the JSON it writes as Python objects.

Long commands draw a progress bar on stderr when it is a terminal; progress=True draws it anyway (a notebook shows
the kernel's stderr under the cell), progress=False never."""

import contextlib
import json
import os
import sys
import tempfile

import numpy as np

from . import _massact
from ._massact import Error


def _flags(options):
    argv = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, ",".join(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def _model_path(model, what="model"):
    from .model import HookedModel

    if isinstance(model, HookedModel):
        return model.path
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    raise Error(f"{what}: expected a loaded model or a path, got {type(model).__name__}")


def _data(data, tmp):
    """--data FILE for a path or a list of texts; --ids-file for token ids ([T] or [N, T])."""
    if data is None:
        return []
    if isinstance(data, (str, os.PathLike)):
        return ["--data", os.fspath(data)]
    if isinstance(data, (list, tuple)) and data and all(isinstance(t, str) for t in data):
        path = os.path.join(tmp, "data.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n\x1e\n".join(data) + "\n")  # (documents separated by lines holding only 0x1E)
        return ["--data", path]
    a = np.asarray(data)
    if a.dtype.kind not in "iu" or a.ndim not in (1, 2) or a.size == 0:
        raise Error("data: expected a path, a list of texts, or integer token ids [T] or [N, T]")
    path = os.path.join(tmp, "ids.json")
    with open(path, "w") as f:
        json.dump(a.tolist(), f)
    return ["--ids-file", path]


@contextlib.contextmanager
def _quiet(verbose):
    """The tool's tables go to stdout; unless verbose, they are dropped for the call (fd 1 to /dev/null)."""
    if verbose:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def tool(*args, verbose=True):
    """Run a massact command line in this process: massact.tool("info", path). Raises massact.Error on failure."""
    argv = [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args]
    with _quiet(verbose):
        _massact.tool(argv)


def _progress(progress):
    if progress is None:
        return []
    if not isinstance(progress, bool):
        raise Error(f"progress: expected None, True or False, got {progress!r}")
    return ["--progress", "always" if progress else "never"]


# The commands that take --precision: a model loaded with precision="q8" (or "bf16", "auto") runs them at it
# unless the call says otherwise; likewise --softmax for a model loaded with softmax="softpick" (or another).
_PRECISION_COMMANDS = {"scan", "stream", "eval"}
_SOFTMAX_COMMANDS = {"scan", "eval", "bos", "qk"}


def _run(command, model, data=None, verbose=False, progress=None, extra=(), **options):
    from .model import HookedModel

    if command in _PRECISION_COMMANDS and isinstance(model, HookedModel) and "precision" not in options:
        options["precision"] = model.cfg.get("precision", "f32")
    if command in _SOFTMAX_COMMANDS and isinstance(model, HookedModel) and "softmax" not in options:
        if model.cfg.get("softmax", "standard") != "standard":
            options["softmax"] = model.cfg["softmax"]
    with tempfile.TemporaryDirectory(prefix="massact-") as tmp:
        out = os.path.join(tmp, "out.json")
        argv = _progress(progress) + [command, _model_path(model)] + list(extra) + _data(data, tmp) + ["--json", out] + _flags(options)
        with _quiet(verbose):
            _massact.tool(argv)
        with open(out, encoding="utf-8") as f:
            return json.load(f)


def scan(model, data=None, **options):
    """massact scan: per-layer statistics, the massive-activation detector and attention-sink metrics."""
    return _run("scan", model, data, **options)


def ablate(model, data=None, **options):
    """massact ablate: zero / mean / scale / add activations (e.g. dims=[215], mode="zero"); perplexity and attention shift."""
    return _run("ablate", model, data, **options)


def inject(model, data=None, **options):
    """massact inject: copy a token's massive activation into another token; the attention it gains."""
    return _run("inject", model, data, **options)


def superweight(model, data=None, **options):
    """massact superweight: down_proj super weights (Yu et al. 2024) and the effect of zeroing them."""
    return _run("superweight", model, data, **options)


def compare(model_a, model_b, *more, data=None, **options):
    """massact compare: two or more models side by side on the same data: per model perplexity, massive activations
    and sink rate, per layer top-1 / median, attention on the first token and sink rate (JSON "models"; with two
    models also the pair keys "layers", "model_a", ...). sink_random_tokens=N adds Gu et al.'s random-token sink rate."""
    extra = [_model_path(m, "model") for m in (model_b,) + more]
    return _run("compare", model_a, data, extra=extra, **options)


def swap(model, data=None, **options):
    """massact swap: a different attention softmax at inference time, and its effect."""
    return _run("swap", model, data, **options)


def stream(model, data=None, **options):
    """massact stream: per-token loss of a long stream under a KV-cache policy (sinks=4, window=252, ...)."""
    return _run("stream", model, data, **options)


def quant(model, data=None, **options):
    """massact quant: fake quantization with and without outlier protections; perplexity and KL per setting."""
    return _run("quant", model, data, **options)


def perplexity(model, data=None, **options):
    """massact eval: perplexity of each sequence and overall ({ppl, nll, seq_nll, tokens, ...})."""
    return _run("eval", model, data, **options)


def qk(model, data=None, **options):
    """massact qk: massive values in Q and K (Jin et al. 2025) per layer, head and dim against RoPE's frequencies, and
    the top-m against random-m intervention."""
    return _run("qk", model, data, **options)


def superexpert(model, data=None, **options):
    """massact superexpert: the experts of a mixture-of-experts model that write its massive activations (Su et al.)."""
    return _run("superexpert", model, data, **options)


def bos(model, data=None, **options):
    """massact bos: the sink with and without the BOS token on the same content (Barbero et al. 2025): both scans
    ("models": "with BOS", "without BOS") and the perplexity on the targets both score."""
    return _run("bos", model, data, **options)


def registers(model, pixels=None, **options):
    """massact registers: test-time registers (Jiang et al. 2025) for a vision model without trained registers.
    pixels: float32 [N, 3, H, W] (an array, or a safetensors path as FILE[:TENSOR]); or images=DIR|FILES."""
    with tempfile.TemporaryDirectory(prefix="massact-") as tmp:
        if pixels is not None and not isinstance(pixels, (str, os.PathLike)):
            a = np.asarray(pixels, dtype=np.float32)
            if a.ndim != 4:
                raise Error(f"pixels: expected float [N, 3, H, W], got shape {list(a.shape)}")
            path = os.path.join(tmp, "pixels.safetensors")
            _massact.write_safetensors(path, {"pixel_values": a})
            pixels = path
        if pixels is not None:
            options["pixels"] = os.fspath(pixels)
        return _run("registers", model, None, **options)

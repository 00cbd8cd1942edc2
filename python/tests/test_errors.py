"""Bad input gives a Python exception with a message (massact.Error is a ValueError), never a crash."""
import os

import numpy as np
import pytest

import massact
from conftest import data, model_dir


@pytest.fixture(scope="module")
def m():
    return massact.load(model_dir("tiny-llama"))


def corrupt_dir(tmp_path, config=None, weights=b"not safetensors"):
    d = tmp_path / "corrupt"
    d.mkdir()
    (d / "config.json").write_text(config or open(os.path.join(model_dir("tiny-llama"), "config.json")).read())
    (d / "model.safetensors").write_bytes(weights)
    return str(d)


def hook_returning(value):
    return lambda act, hook: value


CASES = [
    # (what, function of (model, tmp_path), exception type, words the message must hold)
    ("missing path", lambda m, t: massact.load("/nonexistent/model"), massact.Error, "/nonexistent/model"),
    ("corrupt weights", lambda m, t: massact.load(corrupt_dir(t)), massact.Error, "model.safetensors"),
    ("corrupt config", lambda m, t: massact.load(corrupt_dir(t, config="{")), massact.Error, "config.json"),
    ("truncated gguf", lambda m, t: massact.load(trunc_gguf(t)), massact.Error, "cut.gguf"),
    ("bad precision", lambda m, t: massact.load(model_dir("tiny-llama"), precision="fp8"), massact.Error, "precision"),
    ("bad threads", lambda m, t: massact.load(model_dir("tiny-llama"), threads=0), massact.Error, "threads"),
    ("float tokens", lambda m, t: m(np.array([1.0, 2.0])), massact.Error, "integers"),
    ("3-D tokens", lambda m, t: m(np.zeros((1, 2, 3), dtype=np.int64)), massact.Error, "dimensions"),
    ("empty tokens", lambda m, t: m(np.zeros((1, 0), dtype=np.int64)), massact.Error, "empty"),
    ("token out of vocab", lambda m, t: m(np.array([1, 99999])), massact.Error, "outside the vocabulary"),
    ("negative token", lambda m, t: m(np.array([1, -3])), massact.Error, "outside the vocabulary"),
    ("too long", lambda m, t: m(np.ones(600, dtype=np.int64), stop_at_layer=None) if False else massact.load(data("families", "opt"))(np.ones((1, 5000), dtype=np.int64)), massact.Error, "positions"),
    ("string list of non-strings", lambda m, t: m.to_tokens([1, 2]), massact.Error, "strings"),
    ("unknown hook name", lambda m, t: m.run_with_hooks(np.array([1, 2]), fwd_hooks=[("blocks.99.hook_x", hook_returning(None))]), massact.Error, "matches no hook site"),
    ("unknown names_filter", lambda m, t: m.run_with_cache(np.array([1, 2]), names_filter="nope"), massact.Error, "matches no hook site"),
    ("hook entry not a pair", lambda m, t: m.run_with_hooks(np.array([1, 2]), fwd_hooks=["hook_embed"]), massact.Error, "fwd_hooks"),
    ("hook returns wrong shape", lambda m, t: m.run_with_hooks(np.array([1, 2]), fwd_hooks=[("hook_embed", hook_returning(np.zeros((1, 2, 3))))]), massact.Error, "expected [1, 2, 256]"),
    ("hook returns a string", lambda m, t: m.run_with_hooks(np.array([1, 2]), fwd_hooks=[("hook_embed", hook_returning("x"))]), (massact.Error, ValueError), "hook"),
    ("hook raises", lambda m, t: m.run_with_hooks(np.array([1, 2]), fwd_hooks=[("hook_embed", lambda a, h: 1 / 0)]), ZeroDivisionError, "division"),
    ("bad return_type", lambda m, t: m(np.array([1, 2]), return_type="probs"), massact.Error, "return_type"),
    ("loss of one token", lambda m, t: m(np.array([1]), return_type="loss"), massact.Error, "2 tokens"),
    ("bad stop_at_layer", lambda m, t: m(np.array([1, 2]), stop_at_layer=99), massact.Error, "stop_at_layer"),
    ("pixels to a language model", lambda m, t: m(pixel_values=np.zeros((1, 3, 8, 8), np.float32)), massact.Error, "reads tokens"),
    ("tokens to a vision model", lambda m, t: massact.load(data("families", "vit"))(np.array([1, 2])), massact.Error, "reads images"),
    ("integer pixels", lambda m, t: massact.load(data("families", "vit"))(pixel_values=np.zeros((1, 3, 32, 32), np.int64)), massact.Error, "floats"),
    ("2-D pixels", lambda m, t: massact.load(data("families", "vit"))(pixel_values=np.zeros((32, 32), np.float32)), massact.Error, "[N, C, H, W]"),
    ("NaN pixels", lambda m, t: massact.load(data("families", "vit"))(pixel_values=np.full((1, 3, 32, 32), np.nan, np.float32)), massact.Error, "not finite"),
    ("KV cache of another batch", lambda m, t: m(np.ones((2, 3), np.int64), past_kv_cache=m.make_cache(batch=1)), massact.Error, "KV cache"),
    ("sinks without window", lambda m, t: m.make_cache(sinks=4), massact.Error, "window"),
    ("unknown KV cache dtype", lambda m, t: m.make_cache(dtype="q4"), massact.Error, "f32, f16 or bf16"),
    ("unknown generate kv_cache", lambda m, t: m.generate("a", max_new_tokens=1, kv_cache="int8"), massact.Error, "kv_cache"),
    ("negative max_new_tokens", lambda m, t: m.generate("a", max_new_tokens=-1), massact.Error, "max_new_tokens"),
    ("generate on a batch", lambda m, t: m.generate(np.ones((2, 3), np.int64)), massact.Error, "one sequence"),
    ("decode out of vocab", lambda m, t: m.to_string(np.array([5, 70000])), massact.Error, "outside the vocabulary"),
    ("to_string of floats", lambda m, t: m.to_string(np.array([1.5])), massact.Error, "integers"),
    ("analysis: unknown option", lambda m, t: massact.scan(m, data=np.array([[1, 2, 3]]), no_such_option=3), massact.Error, "no-such-option"),
    ("analysis: bad option value", lambda m, t: massact.ablate(m, data=np.array([[1, 2, 3, 4]]), layer=99, dims=[1], tokens=0, mode="zero"), massact.Error, "layer"),
    ("analysis: bad data", lambda m, t: massact.scan(m, data=np.array([0.5])), massact.Error, "data"),
    ("analysis: not a model", lambda m, t: massact.scan(42), massact.Error, "model"),
    ("read_safetensors of a missing file", lambda m, t: massact.read_safetensors("/nonexistent.safetensors"), massact.Error, "/nonexistent.safetensors"),
]


def trunc_gguf(tmp_path):
    b = open(data("gguf", "tiny-llama-Q8_0.gguf"), "rb").read()
    p = tmp_path / "cut.gguf"
    p.write_bytes(b[: len(b) // 3])
    return str(p)


@pytest.mark.parametrize("what,fn,exc,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_with_a_message(m, tmp_path, what, fn, exc, words):
    with pytest.raises(exc) as e:
        fn(m, tmp_path)
    assert words in str(e.value), str(e.value)


def test_thirty_cases_and_error_is_a_value_error():
    assert len(CASES) >= 30
    assert issubclass(massact.Error, ValueError)

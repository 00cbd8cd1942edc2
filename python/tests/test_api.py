"""The TransformerLens-style interface: hooks on live buffers, the ablation of the massive activation, the tool's
analyses as functions (the same JSON as the tool), KV caches, generation, tokens."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import massact
from conftest import SOURCE, data, model_dir

DIMS = [86, 170, 177, 215, 243]


def ppl(model, ids, hooks=(), batch=8):
    total, count = 0.0, 0
    for i in range(0, len(ids), batch):
        chunk = ids[i:i + batch]
        logits = model.run_with_hooks(chunk, fwd_hooks=hooks)
        nll = model.loss(logits, chunk, per_token=True)
        total += float(nll.sum())
        count += nll.size
    return float(np.exp(total / count))


def test_zeroing_the_massive_activation_gives_the_cpp_perplexity_and_the_ablate_json(tiny_llama, ref):
    ids = ref["ppl.input_ids"]
    stats = json.load(open(data("tiny-llama.stats.json")))["intervention"]
    seen = []

    def zero(act, hook):
        seen.append((hook.name, hook.layer, act.shape, act.flags.writeable, act.flags.owndata))
        act[:, 0, DIMS] = 0.0

    got = ppl(tiny_llama, ids, [("blocks.2.hook_resid_post", zero)])
    assert abs(got / 16.058 - 1) < 1e-3
    assert abs(got / stats["ppl_zero"] - 1) < 1e-3
    assert seen[0][:2] == ("blocks.2.hook_resid_post", 2)
    assert seen[0][2] == (8, 256, 256) and seen[0][3] and not seen[0][4]  # a writable view, not a copy
    j = massact.ablate(tiny_llama, data=ids, layer=2, dims=DIMS, tokens=0, mode="zero", no_decomposition=True)
    assert abs(j["ppl_intervened"] / got - 1) < 1e-5
    assert abs(j["ppl_original"] / stats["ppl_original"] - 1) < 5e-4

    # returning a replacement equals editing in place
    def replace(act, hook):
        out = act.copy()
        out[:, 0, DIMS] = 0.0
        return out

    sub = ids[:8]
    a = tiny_llama.run_with_hooks(sub, fwd_hooks=[("blocks.2.hook_resid_post", zero)])
    b = tiny_llama.run_with_hooks(sub, fwd_hooks=[("blocks.2.hook_resid_post", replace)])
    assert np.array_equal(a, b)
    assert not np.array_equal(a, tiny_llama(sub))


def test_scan_returns_what_the_tool_writes(tiny_llama, tmp_path):
    val = os.path.join(SOURCE, "examples", "data", "val.txt")
    got = massact.scan(tiny_llama, data=val, max_seqs=8, seq_len=64)
    out = tmp_path / "scan.json"
    tool = os.path.join(os.environ.get("MASSACT_BUILD_DIR", os.path.join(SOURCE, "build")), "bin", "massact")
    subprocess.run([tool, "scan", model_dir("tiny-llama"), "--data", val, "--max-seqs", "8", "--seq-len", "64", "--json", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    assert got == json.load(open(out))
    assert got["massive_activations"]
    # the same scan on texts and on token arrays
    texts = open(val).read().split("\n\n")[:4]
    assert massact.scan(tiny_llama, data=texts, seq_len=32, max_seqs=4)["layers"]
    ids = tiny_llama.to_tokens(["Summer is warm.", "Winter is cold."])
    assert massact.perplexity(tiny_llama, data=ids)["ppl"] > 1


def test_hooks_see_every_site_in_order_and_names_filter_selects(tiny_llama):
    ids = tiny_llama.to_tokens("The cat sat on the mat.")
    order = []
    tiny_llama.run_with_hooks(ids, fwd_hooks=[("*", lambda a, h: order.append(h.name))])
    assert order == tiny_llama.hook_names
    _, c = tiny_llama.run_with_cache(ids, names_filter="blocks.1.*")
    assert set(c) == {n for n in tiny_llama.hook_names if n.startswith("blocks.1.")}
    _, c = tiny_llama.run_with_cache(ids, names_filter=["hook_embed", ("resid_post", 3)])
    assert sorted(c) == ["blocks.3.hook_resid_post", "hook_embed"]
    assert c["resid_post", 3].flags.owndata or c["resid_post", 3].base is not None
    _, c = tiny_llama.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_pattern"))
    assert len(c) == 8 and c["pattern", 0].shape == (1, 8, ids.shape[1], ids.shape[1])
    assert c["blocks.0.attn.hook_pattern"] is c["pattern", 0]
    logits, c = tiny_llama.run_with_cache(ids)
    assert len(c) == len(tiny_llama.hook_names)
    assert np.array_equal(c["logits"], logits)
    assert c["q", 0].shape == (1, ids.shape[1], 8, 32)
    assert np.abs(c["resid_post", 2][0, 0]).argmax() == 215  # the massive activation
    # cached arrays are owned: a later forward does not change them
    keep = c["resid_post", 2].copy()
    tiny_llama(ids[:, :3])
    assert np.array_equal(keep, c["resid_post", 2])


def test_the_kv_cache_appends_exactly_and_generate_continues(tiny_llama):
    ids = tiny_llama.to_tokens("Summer is warm. Winter is cold. The cat sat")
    full = tiny_llama(ids)
    kv = tiny_llama.make_cache()
    a = tiny_llama(ids[:, :5], past_kv_cache=kv)
    b = tiny_llama(ids[:, 5:], past_kv_cache=kv)
    assert kv.size == ids.shape[1]
    np.testing.assert_allclose(np.concatenate([a, b], axis=1), full, atol=2e-4 * np.abs(full).max())
    text = tiny_llama.generate("Summer is", max_new_tokens=6)
    assert text.startswith("<s>Summer is") and len(tiny_llama.to_tokens(text, prepend_bos=False)[0]) > 3
    toks = tiny_llama.generate(tiny_llama.to_tokens("Summer is"), max_new_tokens=6)
    assert toks.shape == (1, tiny_llama.to_tokens("Summer is").shape[1] + 6)
    # greedy: each new token is the argmax of the full forward on what came before
    logits = tiny_llama(toks[:, :-1])
    assert np.array_equal(logits[0, -6:].argmax(-1), toks[0, -6:])
    # the same with StreamingLLM's cache (4 sinks + 8 recent) runs and differs only once the window is full
    s = tiny_llama.generate(toks[0, :4], max_new_tokens=4, sinks=4, window=8)
    assert np.array_equal(s[0, :8], toks[0, :8]) or s.shape == (1, 8)


def test_a_16_bit_kv_cache_halves_the_memory_and_stays_close(tiny_llama):
    ids = tiny_llama.to_tokens("Summer is warm. Winter is cold. The cat sat")
    full = tiny_llama(ids)
    sizes = {}
    for dtype, tol in (("f32", 2e-4), ("f16", 2e-3), ("bf16", 1.5e-2)):
        kv = tiny_llama.make_cache(dtype=dtype)
        assert kv.dtype == dtype
        out = np.concatenate([tiny_llama(ids[:, :4], past_kv_cache=kv), tiny_llama(ids[:, 4:], past_kv_cache=kv)], axis=1)
        err = np.abs(out - full).max() / np.abs(full).max()
        assert err < tol, (dtype, err)
        if dtype != "f32":
            assert err > 0  # the keys and values really are rounded
        sizes[dtype] = kv.nbytes
    assert sizes["f16"] == sizes["bf16"] == sizes["f32"] // 2
    toks = tiny_llama.generate(ids, max_new_tokens=3, kv_cache="f16")
    assert toks.shape == (1, ids.shape[1] + 3)


def test_a_latent_attention_model_caches_its_latent():
    m = massact.load(data("families", "deepseek_v3"))
    ids = np.random.default_rng(5).integers(0, m.cfg["d_vocab"], size=(1, 10))
    full = m(ids)
    sizes = {}
    for latent in (True, False):
        kv = m.make_cache(latent=latent)
        assert kv.latent == latent
        out = np.concatenate([m(ids[:, :1], past_kv_cache=kv), m(ids[:, 1:4], past_kv_cache=kv), m(ids[:, 4:], past_kv_cache=kv)], axis=1)
        np.testing.assert_allclose(out, full, atol=2e-5 * np.abs(full).max())
        sizes[latent] = kv.nbytes
    assert sizes[True] < sizes[False] / 2
    assert not m.make_cache(sinks=1, window=4).latent  # (StreamingLLM moves positions: the heads' keys)
    with pytest.raises(massact.Error, match="latent"):
        m.run_with_hooks(ids, fwd_hooks=[("blocks.0.attn.hook_k", lambda x, hook: x)], past_kv_cache=m.make_cache())
    _, cache = m.run_with_cache(ids, past_kv_cache=m.make_cache())  # (reading the heads' keys is fine)
    assert cache["blocks.0.attn.hook_k"].shape[1] == ids.shape[1]


def test_kv_cache_quantization_keys_per_channel_values_per_token(tiny_llama):
    ids = tiny_llama.to_tokens("The sun rises in the east and sets in the west, every single day of the year.")
    full = tiny_llama(ids)
    errs = {}
    for spec in ("kv8", "kv4,group-tokens=4", "kv2,group-tokens=4"):
        kv = tiny_llama.make_cache(kv_quant=spec)
        assert kv.kv_quant.startswith("k" + spec[2]) and "k-per-channel" in kv.kv_quant and "v-per-token" in kv.kv_quant
        out = np.concatenate([tiny_llama(ids[:, :6], past_kv_cache=kv), tiny_llama(ids[:, 6:], past_kv_cache=kv)], axis=1)
        errs[spec] = float(np.abs(out - full).max() / np.abs(full).max())
    assert 0 < errs["kv8"] < errs["kv4,group-tokens=4"] < errs["kv2,group-tokens=4"], errs
    assert tiny_llama.make_cache().kv_quant == "none"
    # the first tokens' keys and values in float (IntactKV) leave the logits of those tokens exact
    kv = tiny_llama.make_cache(kv_quant="kv2,group-channels=8,k-per-token,keep-first=3")
    np.testing.assert_array_equal(tiny_llama(ids[:, :3], past_kv_cache=kv), tiny_llama(ids[:, :3], past_kv_cache=tiny_llama.make_cache()))
    assert not np.array_equal(tiny_llama(ids[:, 3:], past_kv_cache=kv), full[:, 3:])
    with pytest.raises(massact.Error, match="not a KV quantization setting"):
        tiny_llama.make_cache(kv_quant="kv4,fast")
    with pytest.raises(massact.Error, match="pre-rope"):
        tiny_llama.make_cache(sinks=4, window=8, kv_quant="kv4")
    toks = tiny_llama.generate(ids, max_new_tokens=3, kv_quant="kv8")
    assert toks.shape == (1, ids.shape[1] + 3)


def test_tokens_and_strings(tiny_llama):
    t = tiny_llama.to_tokens("Summer is warm.")
    assert t.dtype == np.int64 and t.ndim == 2 and t[0, 0] == 1
    assert tiny_llama.to_tokens("Summer is warm.", prepend_bos=False)[0, 0] != 1
    assert tiny_llama.to_string(t[0]) == "<s>Summer is warm."
    assert tiny_llama.to_string(t) == ["<s>Summer is warm."]
    s = tiny_llama.to_str_tokens("Summer is warm.")
    assert s[0] == "<s>" and "".join(s[1:]) == "Summer is warm."
    two = tiny_llama.to_tokens(["a", "Summer is warm."])
    assert two.shape[0] == 2
    tok = tiny_llama.tokenizer
    assert tok.encode("Summer", False) == list(tiny_llama.to_tokens("Summer", prepend_bos=False)[0])
    assert tok.vocab_size == 4096


def test_gguf_and_vision_models_load_with_their_cfg():
    g = massact.load(data("gguf", "tiny-llama-Q8_0.gguf"))
    assert g.cfg["model_type"] == "llama" and g.cfg["n_layers"] == 8
    assert g.to_tokens("Summer")[0, 0] == 1  # the GGUF vocabulary is the tokenizer
    v = massact.load(data("families", "vit"))
    assert v.cfg["is_vision"] and "logits" not in v.hook_names
    px = massact.read_safetensors(data("families", "vit", "ref.safetensors"))["pixel_values"]
    out = v(pixel_values=px)
    assert out.shape[0] == px.shape[0] and out.shape[2] == v.cfg["d_model"]


def test_q8_precision_decodes_a_quantized_gguf_close_to_the_float_path():
    path = data("gguf", "tiny-llama-Q4_K_M.gguf")
    f, q = massact.load(path), massact.load(path, precision="q8")
    assert q.cfg["precision"] == "q8" and f.cfg["precision"] == "f32"
    ids = f.to_tokens("The summer was long and the river ran low")[0]
    kf, kq = f.make_cache(), q.make_cache()
    worst = 0.0
    for t in range(len(ids)):  # token by token: the few-row products where q8 multiplies in integers
        a, b = f(ids[t:t + 1], past_kv_cache=kf), q(ids[t:t + 1], past_kv_cache=kq)
        worst = max(worst, float(np.abs(a - b).max() / np.abs(a).max()))
    assert 0.0 < worst < 0.05  # 8-bit activations: close, not equal
    # prefill (many rows) takes the float path
    assert np.array_equal(f(ids), q(ids))


def test_auto_precision_keeps_the_weights_own_precision_and_the_analyses_run_at_it():
    q = massact.load(data("gguf", "tiny-llama-Q8_0.gguf"), precision="auto")
    assert q.cfg["precision"] == "q8"  # a quantized GGUF: llama.cpp's integer path
    assert massact.load(data("gguf", "tiny-llama3-F32.gguf"), precision="auto").cfg["precision"] == "f32"
    assert massact.load(model_dir("tiny-llama"), precision="auto").cfg["precision"] == "bf16"  # BF16 safetensors
    with pytest.raises(massact.Error, match="expected f32, bf16, q8 or auto"):
        massact.load(model_dir("tiny-llama"), precision="fp8")
    # stream decodes token by token, so the q8 model's loss differs from the float path's (a little)
    text = ["The summer was long and the river ran low. " * 4]
    a = massact.stream(q, text, tokens=40, window=32, sinks=4)
    b = massact.stream(q, text, tokens=40, window=32, sinks=4, precision="f32")
    assert a["ppl"] != b["ppl"] and abs(a["ppl"] / b["ppl"] - 1) < 0.02


def test_softmax_swaps_the_attention_function_of_every_forward_and_of_the_analyses():
    ids = np.array([[1, 200, 31, 7, 900, 44, 12]])
    own = massact.load(model_dir("tiny-llama-softpick"))
    assert own.cfg["attention_fn"] == "softpick" and own.cfg["softmax"] == "standard"
    plain = massact.load(model_dir("tiny-llama-softpick"), softmax="softmax")
    assert plain.cfg["attention_fn"] == "softmax"
    _, a = own.run_with_cache(ids, names_filter="blocks.3.attn.hook_pattern")
    _, b = plain.run_with_cache(ids, names_filter="blocks.3.attn.hook_pattern")
    rows_a, rows_b = a["pattern", 3].sum(-1), b["pattern", 3].sum(-1)
    assert np.allclose(rows_b, 1.0, atol=1e-5) and rows_a.min() < 0.9  # softmax rows sum to 1, softpick rows need not
    sig = massact.load(model_dir("tiny-llama-softmax"), softmax="sigmoid:-3")
    _, c = sig.run_with_cache(ids, names_filter=["blocks.0.attn.hook_attn_scores", "blocks.0.attn.hook_pattern"])
    s, p = c["blocks.0.attn.hook_attn_scores"], c["pattern", 0]
    mask = np.isfinite(s)
    assert np.abs(p[mask] - 1 / (1 + np.exp(-(s[mask].astype(np.float64) - 3)))).max() < 1e-6 and (p[~mask] == 0).all()
    # the analyses of a loaded model run with its function unless told otherwise
    e1 = massact.perplexity(plain, ids)
    e2 = massact.perplexity(model_dir("tiny-llama-softpick"), ids, softmax="softmax")
    e3 = massact.perplexity(model_dir("tiny-llama-softpick"), ids)
    assert e1["ppl"] == e2["ppl"] != e3["ppl"]
    with pytest.raises(massact.Error, match="load: softmax: unknown variant"):
        massact.load(model_dir("tiny-llama"), softmax="softmin")
    with pytest.raises(massact.Error, match="is not a number"):
        massact.load(model_dir("tiny-llama"), softmax="sigmoid:low")


def test_a_hook_that_raises_stops_the_forward_and_the_exception_is_unchanged(tiny_llama):
    class Mine(Exception):
        pass

    calls = []

    def boom(act, hook):
        calls.append(hook.name)
        raise Mine("from the hook")

    with pytest.raises(Mine, match="from the hook"):
        tiny_llama.run_with_hooks(tiny_llama.to_tokens("x"), fwd_hooks=[("blocks.*.hook_resid_post", boom)])
    assert calls == ["blocks.0.hook_resid_post"]
    # the model is still usable, and a cache's tokens are taken out again
    kv = tiny_llama.make_cache()
    with pytest.raises(Mine):
        tiny_llama.run_with_hooks(np.array([1, 5, 6]), fwd_hooks=[("hook_embed", boom)], past_kv_cache=kv)
    assert kv.size == 0
    assert tiny_llama(np.array([1, 5, 6])).shape == (1, 3, 4096)


def test_ctrl_c_stops_a_long_analysis_with_keyboard_interrupt(tiny_llama, capfd):
    import signal
    import threading

    val = os.path.join(SOURCE, "examples", "data", "val.txt")
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            massact.scan(tiny_llama, data=val, seq_len=64, max_seqs=2000, batch=1)
    finally:
        timer.cancel()
    # the command itself stopped early (at a progress update), not after finishing
    assert "massact: error: interrupted" in capfd.readouterr().err
    assert massact.perplexity(tiny_llama, data=np.array([[1, 5, 6, 7]]))["ppl"] > 1  # and the next call runs


def test_progress_bars_are_drawn_when_asked_and_never_otherwise(tiny_llama, capfd):
    val = os.path.join(SOURCE, "examples", "data", "val.txt")
    opts = dict(layer=2, dims=DIMS, tokens=0, mode="zero", max_seqs=4, seq_len=32)
    massact.ablate(tiny_llama, data=val, **opts)  # stderr is not a terminal here: no bar (as in a notebook)
    assert "ablate" not in capfd.readouterr().err
    a = massact.ablate(tiny_llama, data=val, progress=True, **opts)
    err = capfd.readouterr().err
    assert "ablate" in err and "[" in err and err.endswith("\n")  # drawn, and its line ended (no terminal to erase)
    assert a == massact.ablate(tiny_llama, data=val, progress=False, **opts)
    assert capfd.readouterr().err == ""
    with pytest.raises(massact.Error, match="progress"):
        massact.ablate(tiny_llama, data=val, progress="yes", **opts)


def test_the_sink_with_and_without_bos_and_test_time_registers_from_python():
    m = massact.load(model_dir("tiny-llama-softmax"))
    ids = massact.read_safetensors(data("tiny-llama-softmax.ref.safetensors"))["ppl.input_ids"][:2]
    j = massact.bos(m, data=ids)
    assert j["data_had_bos"] and j["bos_token_id"] == 1
    assert [s["name"] for s in j["models"]] == ["with BOS", "without BOS"]
    # the shared targets (content tokens after the first), from Python forwards
    with_bos = m.loss(m(ids), ids, per_token=True)[:, 1:]
    content = ids[:, 1:]
    without = m.loss(m(content), content, per_token=True)
    assert with_bos.shape == without.shape
    assert abs(j["ppl_shared_with_bos"] / np.exp(with_bos.mean()) - 1) < 1e-5
    assert abs(j["ppl_shared_without_bos"] / np.exp(without.mean()) - 1) < 1e-5

    # test-time registers: pixels as an array; the random-weight DINOv2 has no high-norm patch at the default ratio
    path = data("families", "dinov2")
    px = massact.read_safetensors(data("families", "dinov2", "ref.safetensors"))["pixel_values"]
    r = massact.registers(path, pixels=px)
    assert r["layer"] == -1 and "no high-norm patches" in r["note"]
    # at ratio 1.01 every block qualifies: the first is the detection layer; its patch-norm maps are the cache's norms
    r = massact.registers(path, pixels=px, outlier_ratio=1.01, neurons=3)
    assert r["layer"] == 0 and len(r["register_neurons"]) == 3
    _, cache = massact.load(path).run_with_cache(pixel_values=px)
    norms = np.linalg.norm(cache["resid_post", 0][:, 1:, :].astype(np.float64), axis=-1).reshape(len(px), 4, 4)
    assert np.allclose(np.array([im["patches"] for im in r["before"]["images"]]), norms, rtol=1e-6)
    with pytest.raises(massact.Error, match="pixels: expected float"):
        massact.registers(path, pixels=px[0])

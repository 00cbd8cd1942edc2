"""run_with_cache against Hugging Face: every family of tests/data/families and the bundled models, with the C++
suites' tolerances (hidden states 2e-4 of max |h|, attention 2e-5, logits 2e-4 of max |logit|); GGUF files against
their float64 references."""
import json
import os

import numpy as np
import pytest

import massact
from conftest import data, model_dir

FAMILIES = sorted(os.listdir(data("families")))


def tolerances(path):
    """hidden, attention, logits: the suites' defaults, or the family's tolerance.json (references of families III carry
    a noise no float32 forward of their stored weights reproduces: tests/data/README.md)."""
    f = os.path.join(path, "tolerance.json")
    if not os.path.exists(f):
        return 2e-4, 2e-5, 2e-4
    t = json.load(open(f))
    assert t["why"]
    return t["hidden"], t["attention"], t["logits"]


def rel(got, want):
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


@pytest.mark.parametrize("family", FAMILIES)
def test_family_matches_hugging_face(family):
    path = data("families", family)
    m = massact.load(path)
    ref = massact.read_safetensors(os.path.join(path, "ref.safetensors"))
    tol_hidden, tol_attention, tol_logits = tolerances(path)
    L = m.cfg["n_layers"]
    def names(n):  # (a predicate: a model without attention, Mamba-2, has no hook_pattern to match)
        return n in ("blocks.0.hook_resid_pre", "ln_final.hook_normalized") or n.endswith(("hook_resid_post", "attn.hook_pattern"))
    if m.cfg["is_vision"]:
        out, cache = m.run_with_cache(pixel_values=ref["pixel_values"], names_filter=names)
        assert rel(out, ref["last_hidden_state"]) < tol_hidden
    else:
        out, cache = m.run_with_cache(ref["input_ids"], names_filter=names)
        assert out.shape == ref["logits"].shape
        assert rel(out, ref["logits"]) < tol_logits
    shift = 0 if family.startswith("mamba") else 1  # (transformers' Mamba-2 records each block's output, not the embedding)
    for i in range(L + 1):
        site = ("ln_final.hook_normalized" if i == L and not m.cfg["is_vision"] else
                "blocks.0.hook_resid_pre" if i == 0 and shift else f"blocks.{i - shift}.hook_resid_post")
        assert cache[site].shape == ref[f"hidden_states.{i}"].shape, site
        assert rel(cache[site], ref[f"hidden_states.{i}"]) < tol_hidden, site
    for l in range(L):  # (a Gated DeltaNet layer has no pattern, in either)
        assert (f"attentions.{l}" in ref) == (f"blocks.{l}.attn.hook_pattern" in cache), l
        if f"attentions.{l}" not in ref:
            continue
        got, want = cache["pattern", l], ref[f"attentions.{l}"]
        assert got.shape == want.shape
        assert np.abs(got - want).max() < tol_attention, l


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-llama-baseline", "tiny-llama-kvbias", "tiny-llama-sinklogit"])
def test_bundled_models_match_their_references(name):
    m = massact.load(model_dir(name))
    ref = massact.read_safetensors(data(f"{name}.ref.safetensors"))
    prompts = sorted({k.split(".")[0] for k in ref if k.endswith(".input_ids") and not k.startswith("ppl")})
    assert len(prompts) >= 2
    checked = 0
    for p in prompts:
        ids = ref[f"{p}.input_ids"]
        logits, cache = m.run_with_cache(ids, names_filter=lambda n: n.endswith(("hook_resid_pre", "hook_resid_post", "hook_pattern",
                                                                                "ln_final.hook_normalized")))
        assert logits.shape == (1, ids.shape[0], m.cfg["d_vocab"])
        hs = ref[f"{p}.hidden_states"]
        L = m.cfg["n_layers"]
        for i in range(L + 1):
            site = "blocks.0.hook_resid_pre" if i == 0 else "ln_final.hook_normalized" if i == L else f"blocks.{i - 1}.hook_resid_post"
            assert rel(cache[site][0], hs[i]) < 2e-4, (p, site)
        for l in range(L):
            assert np.abs(cache["pattern", l][0] - ref[f"{p}.attentions"][l]).max() < 2e-5
        if f"{p}.logits" in ref:
            assert rel(logits[0], ref[f"{p}.logits"]) < 2e-4
        # log-probabilities of the next tokens (the loss per token)
        lp = -m.loss(logits, ids[None, :], per_token=True)[0]
        assert np.abs(lp - ref[f"{p}.token_logprob"]).max() < 2e-4 * max(1.0, np.abs(ref[f"{p}.token_logprob"]).max())
        assert (logits[0].argmax(-1) == ref[f"{p}.argmax"]).mean() > 0.99
        checked += 1
    assert checked == len(prompts)


@pytest.mark.parametrize("name", ["tiny-llama-softmax", "tiny-llama-softpick", "tiny-llama-sigmoid", "tiny-qwen3next-gated",
                                  "tiny-qwen3next-gateoff"])
def test_models_trained_for_attention_functions_match_their_references(name):
    """softpick / sigmoid / gated attention declared by the config: the weights applied, logits and perplexity."""
    m = massact.load(model_dir(name))
    ref = massact.read_safetensors(data(f"{name}.ref.safetensors"))
    ids = ref["p0.input_ids"]
    logits, cache = m.run_with_cache(ids, names_filter=lambda n: n.endswith(("hook_resid_post", "hook_pattern")))
    L = m.cfg["n_layers"]
    for i in range(1, L):
        assert rel(cache[f"blocks.{i - 1}.hook_resid_post"][0], ref["p0.hidden_states"][i]) < 2e-4
    pattern = np.stack([cache["pattern", l][0] for l in range(L)])
    assert np.abs(pattern - ref["p0.attentions"]).max() < 2e-5
    assert rel(logits[0], ref["p0.logits"]) < 2e-4
    if name == "tiny-llama-softpick":  # rows need not sum to 1, and hook_pattern shows it
        assert pattern.sum(-1).min() < 0.5
    batch = ref["ppl.input_ids"][:8]
    nll = m.loss(m(batch), batch, per_token=True).mean(-1)
    assert np.abs(np.exp(nll.mean()) / np.exp(ref["ppl.seq_nll"][:8].mean()) - 1) < 1e-4


def test_gguf_files_match_their_float64_references(ref):
    want = json.load(open(data("gguf", "reference.json")))
    ids = ref["ppl.input_ids"][:16]
    for name in ("tiny-llama-Q8_0.gguf", "tiny-llama-Q4_K_M.gguf"):
        m = massact.load(data("gguf", name))
        nll = np.concatenate([m.loss(m(ids[i:i + 8]), ids[i:i + 8], per_token=True).mean(axis=1) for i in range(0, 16, 8)])
        np.testing.assert_allclose(nll, want[name]["seq_nll"][:16], rtol=5e-4)
    # Llama 3's rope_freqs.weight: the GGUF file gives the Hugging Face llama3-scaled model's logits
    hf, gg = massact.load(data("gguf", "llama3")), massact.load(data("gguf", "tiny-llama3-F32.gguf"))
    ids = (7 * np.arange(48) + 3) % 128
    a, b = hf(ids), gg(ids)
    assert rel(b, a) < 2e-4


def test_bf16_is_close_to_f32(ref):
    ids = ref["p0.input_ids"]
    a = massact.load(model_dir("tiny-llama"))(ids)
    b = massact.load(model_dir("tiny-llama"), precision="bf16")(ids)
    r = rel(b, a)
    assert 0 < r < 0.05

#!/usr/bin/env python3
"""Writes massive_activations.ipynb (the notebook's source of truth: edit here, run this, commit both).
    python3 examples/notebooks/make_notebook.py"""
import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell("""# Massive activations in a tiny Llama, from Python

Sun et al. (2024) found a handful of activations 10^3-10^5 times larger than the rest in large language models:
at fixed dimensions of the first token, from an early layer on, acting as implicit bias terms that attention
piles onto (the *attention sink*). `examples/models/tiny-llama` (8 layers, d = 256, trained on TinyStories-like
text) has one. This notebook tells the story of `massact report` with `import massact` and TransformerLens's
names: find the activation, plot it, ablate it (zero vs mean), watch attention on the sink, and compare the
models trained with and without an explicit attention bias (the kv-bias pair)."""),
    new_code_cell("""import os
import numpy as np
import matplotlib.pyplot as plt
%matplotlib inline
import massact

ROOT = os.environ.get("MASSACT_SOURCE_DIR", os.path.abspath(os.path.join(os.getcwd(), "..", "..")))
MODELS = os.path.join(ROOT, "examples", "models")
VAL = os.path.join(ROOT, "examples", "data", "val.txt")
model = massact.load(os.path.join(MODELS, "tiny-llama"))
model"""),
    new_code_cell("""model.cfg"""),
    new_markdown_cell("## Tokens and a forward with every activation cached"),
    new_code_cell("""text = "Summer is warm. Winter is cold. The cat sat on the mat and looked at the birds."
tokens = model.to_tokens(text)
print(tokens.shape, model.to_str_tokens(text)[:8])
logits, cache = model.run_with_cache(tokens)
print(len(cache), "sites cached; logits", logits.shape)"""),
    new_markdown_cell("## Where is the massive activation?\nThe largest |activation| of each block's output, against the median."),
    new_code_cell("""L = model.cfg["n_layers"]
top = [np.abs(cache["resid_post", l][0]).max() for l in range(L)]
med = [np.median(np.abs(cache["resid_post", l][0])) for l in range(L)]
where = np.unravel_index(np.abs(cache["resid_post", 2][0]).argmax(), cache["resid_post", 2][0].shape)
print("layer 2: largest |x| = %.1f at token %d, dim %d; median %.3f" % (top[2], where[0], where[1], med[2]))
assert where == (0, 215)"""),
    new_code_cell("""fig, ax = plt.subplots(figsize=(6, 3))
ax.semilogy(range(L), top, "o-", label="top |x|")
ax.semilogy(range(L), med, "s-", label="median |x|")
ax.set_xlabel("block"); ax.set_ylabel("|activation|"); ax.legend(); ax.set_title("block outputs of tiny-llama")
fig.tight_layout()"""),
    new_code_cell("""x = np.abs(cache["resid_post", 2][0])          # [T, d]
dims = [int(d) for d in np.argsort(x[0])[::-1][:5]]
print("the five largest dims of token 0:", sorted(dims), x[0, sorted(dims)].round(1))
fig, ax = plt.subplots(figsize=(7, 3))
ax.imshow(x[:12].T, aspect="auto", cmap="magma", interpolation="nearest")
ax.set_xlabel("token"); ax.set_ylabel("dim"); ax.set_title("|h| after block 2: the first token's few dims")
fig.tight_layout()"""),
    new_markdown_cell("## Zero it, or set it to its mean\nA hook gets a writable view of the live buffer (no copy); editing it in place changes the forward."),
    new_code_cell("""ref = massact.read_safetensors(os.path.join(ROOT, "tests", "data", "tiny-llama.ref.safetensors"))
batch = ref["ppl.input_ids"][:24]                 # 24 windows of 256 tokens of the validation text

def perplexity(hooks=()):
    nll = np.concatenate([model.loss(model.run_with_hooks(batch[i:i + 8], fwd_hooks=hooks), batch[i:i + 8], per_token=True).ravel()
                          for i in range(0, len(batch), 8)])
    return float(np.exp(nll.mean()))

DIMS = sorted(dims)
def zero(act, hook):
    act[:, 0, DIMS] = 0.0

print("original %.3f, zeroed %.3f" % (perplexity(), perplexity([("blocks.2.hook_resid_post", zero)])))"""),
    new_code_cell("""_, c = model.run_with_cache(batch[:8], names_filter="blocks.2.hook_resid_post")
mean = c["resid_post", 2][:, 0, DIMS].mean(axis=0)
print("mean values of the five dims at token 0:", mean.round(1))
def to_mean(act, hook):
    act[:, 0, DIMS] = mean
print("set to their mean: %.3f" % perplexity([("blocks.2.hook_resid_post", to_mean)]))"""),
    new_markdown_cell("The same measurement through the tool's code path (`massact ablate`), as a dict:"),
    new_code_cell("""j = massact.ablate(model, data=batch, layer=2, dims=DIMS, tokens=0, mode="zero", no_decomposition=True)
{k: j[k] for k in ("ppl_original", "ppl_intervened", "kl_mean")}"""),
    new_markdown_cell("## Attention on the sink\nThe share of attention each layer puts on token 0, before and after zeroing."),
    new_code_cell("""def sink_share(hooks=()):
    _, c = model.run_with_cache(batch[:4], names_filter="*hook_pattern") if not hooks else (None, None)
    if hooks:
        out = {}
        def keep(act, hook):
            out[hook.name] = act[:, :, 1:, 0].mean()
        model.run_with_hooks(batch[:4], fwd_hooks=list(hooks) + [("*hook_pattern", keep)])
        return [out[f"blocks.{l}.attn.hook_pattern"] for l in range(L)]
    return [c["pattern", l][:, :, 1:, 0].mean() for l in range(L)]

before, after = sink_share(), sink_share([("blocks.2.hook_resid_post", zero)])
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(range(L), before, "o-", label="original"); ax.plot(range(L), after, "s-", label="massive dims zeroed")
ax.set_xlabel("layer"); ax.set_ylabel("attention on token 0"); ax.legend(); fig.tight_layout()
print(np.round(before, 3))"""),
    new_markdown_cell("## The kv-bias pair\n`tiny-llama-baseline` and `tiny-llama-kvbias` were trained alike, the second with an explicit key/value bias (Sun et al. §5): the bias takes the sink's job, and the massive activation should shrink."),
    new_code_cell("""def top_ratio(name):
    m = massact.load(os.path.join(MODELS, name))
    _, c = m.run_with_cache(batch[:4], names_filter="*hook_resid_post")
    return max(np.abs(c["resid_post", l]).max() / np.median(np.abs(c["resid_post", l])) for l in range(m.cfg["n_layers"]))

ratios = {name: top_ratio(name) for name in ("tiny-llama-baseline", "tiny-llama-kvbias")}
print({k: round(float(v), 1) for k, v in ratios.items()})"""),
    new_code_cell("""fig, ax = plt.subplots(figsize=(4, 3))
ax.bar(list(ratios), list(ratios.values())); ax.set_yscale("log"); ax.set_ylabel("max |x| / median |x|")
fig.tight_layout()"""),
    new_markdown_cell("## The whole scan in one call\n`massact.scan` returns exactly what `massact scan --json` writes."),
    new_code_cell("""s = massact.scan(model, data=VAL, max_seqs=8, seq_len=128)
s["massive_activations"][:3] if isinstance(s["massive_activations"], list) else s["massive_activations"]"""),
    new_code_cell("""print(model.generate("Once upon a time", max_new_tokens=20))"""),
]
nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbformat.write(nb, os.path.join(os.path.dirname(os.path.abspath(__file__)), "massive_activations.ipynb"))

"""HookedModel: a massact model with TransformerLens's interface (run_with_cache, run_with_hooks, to_tokens, ...)."""

import fnmatch
from collections.abc import Mapping

import numpy as np

from . import _massact
from ._massact import Error

_ATTN = {"k", "v", "q", "z", "rot_k", "rot_q", "result", "pattern", "attn_scores", "sink_pattern", "pattern_columns"}
_LINEAR_ATTN = {"beta", "decay"}
_MLP = {"pre", "post", "mid", "pre_linear"}
_ALIASES = {"a": "attn", "m": "mlp", "b": "", "block": "", "blocks": "", "attention": "attn"}


def get_act_name(name, layer=None, layer_type=None):
    """TransformerLens's utils.get_act_name: ("resid_post", 2) -> "blocks.2.hook_resid_post"."""
    if "." in name or name.startswith("hook_"):
        return name
    layer_type = _ALIASES.get(layer_type, layer_type)
    if layer_type is None and name in _ATTN:
        layer_type = "attn"
    elif layer_type is None and name in _LINEAR_ATTN:
        layer_type = "linear_attn"  # (q, k, v, z, gate of a Gated DeltaNet layer: layer_type="linear_attn")
    elif layer_type is None and name in _MLP:
        layer_type = "mlp"
    if name in ("scale", "normalized") and layer is None:
        return f"ln_final.hook_{name}"
    if name == "logits":
        return "logits"
    if layer is None:
        return f"hook_{name}"
    full = f"blocks.{layer}."
    if layer_type:
        full += f"{layer_type}."
    return full + f"hook_{name}"


class HookPoint:
    """What a hook function gets as its second argument: the site's name and block (-1 outside blocks)."""

    __slots__ = ("name", "layer")

    def __init__(self, name, layer):
        self.name = name
        self.layer = layer

    def layer_idx(self):
        return self.layer

    def __repr__(self):
        return f"HookPoint({self.name!r}, layer={self.layer})"


class ActivationCache(Mapping):
    """The activations of one forward, by site name: owned numpy arrays ([N, T, d]; patterns [N, H, T, K]).
    cache["resid_post", 2] is TransformerLens's shorthand for cache["blocks.2.hook_resid_post"]."""

    def __init__(self, arrays, model=None):
        self._d = dict(arrays)
        self.model = model

    def _name(self, key):
        if isinstance(key, tuple):
            return get_act_name(*key)
        if key in self._d:
            return key
        return get_act_name(key)

    def __getitem__(self, key):
        name = self._name(key)
        try:
            return self._d[name]
        except KeyError:
            raise KeyError(f"{name!r} is not in this cache (it holds {len(self._d)} sites; names_filter decides which)") from None

    def __contains__(self, key):
        return self._name(key) in self._d

    def __iter__(self):
        return iter(self._d)

    def __len__(self):
        return len(self._d)

    def __repr__(self):
        return f"ActivationCache({len(self._d)} sites)"


def _pad_id(tok):
    for name in ("<pad>", "<|pad|>", "[PAD]", "<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>"):
        i = tok.token_to_id(name)
        if i is not None:
            return i
    return 0


class HookedModel:
    """A loaded model. The forward is massact's C++ (the GIL released); hooks see live buffers."""

    def __init__(self, core):
        self._core = core
        self.cfg = core.cfg
        self.hook_names = list(core.hook_names)
        self._sites = set(self.hook_names)
        self._globs = {}

    # --- description -------------------------------------------------------------------------------------
    @property
    def path(self):
        return self._core.path

    @property
    def tokenizer(self):
        """The model's tokenizer (tokenizer.json or the GGUF vocabulary): encode, decode, id_to_token, ..."""
        return self._core.tokenizer

    def __repr__(self):
        c = self.cfg
        return f"HookedModel({c['model_type']}, {c['n_layers']} layers, d_model {c['d_model']}, from {self.path!r})"

    # --- tokens ------------------------------------------------------------------------------------------
    def to_tokens(self, input, prepend_bos=True, padding_side="right"):
        """Text (or a list of texts) -> int64 [N, T]. prepend_bos adds the tokenizer's special tokens (its
        post-processor: BOS where the model has one); shorter texts are padded on padding_side."""
        texts = [input] if isinstance(input, str) else list(input)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise Error("to_tokens: expected a string or a non-empty list of strings")
        if padding_side not in ("right", "left"):
            raise Error(f"to_tokens: padding_side {padding_side!r} (expected 'right' or 'left')")
        tok = self.tokenizer
        rows = [tok.encode(t, bool(prepend_bos)) for t in texts]
        if any(len(r) == 0 for r in rows):
            raise Error("to_tokens: a text gives no tokens")
        T = max(len(r) for r in rows)
        out = np.full((len(rows), T), _pad_id(tok), dtype=np.int64)
        for i, r in enumerate(rows):
            if padding_side == "right":
                out[i, : len(r)] = r
            else:
                out[i, T - len(r):] = r
        return out

    def _ids(self, tokens):
        a = np.asarray(tokens)
        if a.dtype.kind not in "iu":
            raise Error(f"tokens must be integers, got dtype {a.dtype}")
        return a

    def to_string(self, tokens):
        """Token ids -> text: [T] gives a string, [N, T] a list of strings."""
        a = self._ids(tokens)
        if a.ndim == 0:
            a = a.reshape(1)
        if a.ndim == 1:
            return self.tokenizer.decode(a.tolist()).decode("utf-8", "replace")
        if a.ndim == 2:
            return [self.tokenizer.decode(r.tolist()).decode("utf-8", "replace") for r in a]
        raise Error(f"to_string: expected [T] or [N, T] token ids, got {a.ndim} dimensions")

    def to_str_tokens(self, input, prepend_bos=True):
        """Each token as text: a string is tokenized first; [T] ids give a list, [N, T] a list of lists."""
        if isinstance(input, str):
            input = self.to_tokens(input, prepend_bos=prepend_bos)[0]
        a = self._ids(input)
        tok = self.tokenizer
        one = lambda row: [tok.decode([int(i)]).decode("utf-8", "replace") for i in row]
        if a.ndim == 1:
            return one(a)
        if a.ndim == 2:
            return [one(r) for r in a]
        raise Error(f"to_str_tokens: expected [T] or [N, T] token ids, got {a.ndim} dimensions")

    def to_single_token(self, string):
        ids = self.tokenizer.encode(string, False)
        if len(ids) != 1:
            raise Error(f"to_single_token: {string!r} is {len(ids)} tokens")
        return ids[0]

    # --- hook names --------------------------------------------------------------------------------------
    def _resolve(self, spec, what):
        """A site name, glob, list of them or a predicate -> the matching site names (in execution order)."""
        if spec is None:
            return list(self.hook_names)
        if callable(spec):
            return [n for n in self.hook_names if spec(n)]
        specs = [spec] if isinstance(spec, str) else list(spec)
        hits = []
        for s in specs:
            if isinstance(s, tuple):
                s = get_act_name(*s)
            if not isinstance(s, str):
                raise Error(f"{what}: {s!r} is not a hook name")
            hit = self._glob(s)
            if not hit:
                raise Error(f"{what}: {s!r} matches no hook site of this {self.cfg['model_type']} model "
                            f"(model.hook_names lists {len(self.hook_names)})")
            hits.append(hit)
        if len(hits) == 1:
            return list(hits[0])
        chosen = set().union(*hits)
        return [n for n in self.hook_names if n in chosen]

    def _glob(self, s):
        """The sites one name or glob matches, in execution order (a glob's answer is kept: hooks on "*" are
        resolved once per model, not once per forward)."""
        if not any(c in s for c in "*?["):
            return (s,) if s in self._sites else ()
        hit = self._globs.get(s)
        if hit is None:
            hit = self._globs[s] = tuple(n for n in self.hook_names if fnmatch.fnmatchcase(n, s))
        return hit

    def _hooks(self, fwd_hooks):
        pairs = []
        for entry in fwd_hooks or []:
            if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and callable(entry[1])):
                raise Error("fwd_hooks: each entry must be (name | glob | predicate, function)")
            pairs.append((self._resolve(entry[0], "fwd_hooks"), entry[1]))  # (one C++ entry for all its sites)
        return pairs

    # --- forwards ----------------------------------------------------------------------------------------
    def _input(self, input, pixel_values):
        if pixel_values is not None:
            if input is not None:
                raise Error("give tokens or pixel_values, not both")
            if not self.cfg["is_vision"]:
                raise Error(f"pixel_values: this {self.cfg['model_type']} model reads tokens")
            return np.asarray(pixel_values), True
        if input is None:
            raise Error("no input: give tokens, text or pixel_values=")
        if self.cfg["is_vision"]:
            raise Error(f"this {self.cfg['model_type']} model reads images: give pixel_values=")
        if isinstance(input, str) or (isinstance(input, (list, tuple)) and input and all(isinstance(t, str) for t in input)):
            return self.to_tokens(input), False
        a = np.asarray(input)
        if a.dtype.kind not in "iu":
            raise Error(f"tokens must be integers, got dtype {a.dtype}")
        if a.ndim not in (1, 2):
            raise Error(f"tokens must be [T] or [N, T], got {a.ndim} dimensions")
        return a, False

    def _forward(self, input, pixel_values, return_type, hooks=(), cache_sites=(), past_kv_cache=None, stop_at_layer=None):
        if return_type not in ("logits", "loss", "both", None):
            raise Error(f"return_type {return_type!r} (expected 'logits', 'loss', 'both' or None)")
        x, pixels = self._input(input, pixel_values)
        if pixels and return_type in ("loss", "both"):
            raise Error("a vision model has no loss: return_type='logits' (its last hidden state) or None")
        last = -1 if stop_at_layer is None else int(stop_at_layer) - 1
        if stop_at_layer is not None and not 1 <= int(stop_at_layer) <= self.cfg["n_layers"]:
            raise Error(f"stop_at_layer {stop_at_layer} (expected 1 .. {self.cfg['n_layers']})")
        want = return_type is not None
        logits, cache = self._core.forward(x, pixels, list(hooks), list(cache_sites), want, past_kv_cache, HookPoint, last)
        if not pixels and x.ndim == 1 and logits is not None:
            pass  # ([T] in: logits stay [1, T, V], as TransformerLens returns for one text)
        if return_type in (None, "logits"):
            return (logits if return_type else None), cache
        loss = self.loss(logits, x)
        return (loss if return_type == "loss" else (logits, loss)), cache

    @staticmethod
    def loss(logits, tokens, per_token=False):
        """Mean next-token cross-entropy (TransformerLens's loss): logits [N, T, V] against tokens [N, T]."""
        t = np.asarray(tokens).reshape(logits.shape[0], -1)
        if t.shape[1] < 2:
            raise Error("loss: needs at least 2 tokens per sequence")
        z = logits[:, :-1, :].astype(np.float64)
        z = z - z.max(axis=-1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=-1))
        nll = lse - np.take_along_axis(z, t[:, 1:, None], axis=-1)[..., 0]
        return nll if per_token else float(nll.mean())

    def __call__(self, input=None, return_type="logits", pixel_values=None, past_kv_cache=None, stop_at_layer=None):
        """Logits float32 [N, T, V] (a vision model: its last hidden state [N, T, d]), the loss, both or None."""
        return self._forward(input, pixel_values, return_type, past_kv_cache=past_kv_cache, stop_at_layer=stop_at_layer)[0]

    forward = __call__

    def run_with_cache(self, input=None, names_filter=None, return_type="logits", pixel_values=None, past_kv_cache=None,
                       stop_at_layer=None):
        """(output, ActivationCache): every site (or those names_filter selects: a name, glob, list or predicate)
        copied out as an owned numpy array."""
        # (every site: one "*" pattern, not one per site)
        sites = ["*"] if names_filter is None else self._resolve(names_filter, "names_filter")
        out, cache = self._forward(input, pixel_values, return_type, cache_sites=sites, past_kv_cache=past_kv_cache,
                                   stop_at_layer=stop_at_layer)
        return out, ActivationCache(cache, self)

    def run_with_hooks(self, input=None, fwd_hooks=(), return_type="logits", pixel_values=None, past_kv_cache=None,
                       stop_at_layer=None):
        """The forward with fwd_hooks [(name | glob | predicate, fn)]: fn(activation, hook) gets a writable view of
        the live buffer (valid during the call only) and edits it in place or returns a replacement array."""
        return self._forward(input, pixel_values, return_type, hooks=self._hooks(fwd_hooks), past_kv_cache=past_kv_cache,
                             stop_at_layer=stop_at_layer)[0]

    # --- KV cache and generation -------------------------------------------------------------------------
    def make_cache(self, sinks=None, window=None, batch=1, dtype="f32", kv_quant=None, latent=True):
        """A KV cache for model(new_tokens, past_kv_cache=kv): dense, or StreamingLLM (sinks + window); keys and
        values held in dtype "f32" (exact), "f16" or "bf16" (half the memory, each value rounded once).
        kv_quant: quantize the held keys and values, a spec as massact stream's --kv-quant ("kv4", "k2,v2,group-tokens=32",
        "k4,pre-rope,keep-first=1", ...): KIVI, KVQuant, IntactKV; see docs/python.md.
        latent: a multi-head latent attention model (DeepSeek-V2/V3) holds its compressed KV per token, not the heads'
        keys and values (where the cache neither moves positions nor quantizes; kv.latent says); False: the heads'."""
        return self._core.make_cache(int(batch), int(sinks or 0), int(window or 0), str(dtype), str(kv_quant or ""), bool(latent))

    def generate(self, input, max_new_tokens=64, temperature=0.0, seed=0, sinks=None, window=None, stop_at_eos=False,
                 return_type=None, kv_cache="f32", kv_quant=None):
        """Continue a text or [T] / [1, T] tokens; greedy at temperature 0. A text gives text (prompt and
        continuation) unless return_type="tokens"; tokens give int64 [1, T + new]. kv_cache: the KV cache's
        precision, "f32", "f16" or "bf16"; kv_quant: its quantization (make_cache)."""
        text_in = isinstance(input, str)
        ids = self.to_tokens(input)[0] if text_in else np.asarray(input)
        if ids.dtype.kind not in "iu":
            raise Error(f"generate: tokens must be integers, got dtype {ids.dtype}")
        if ids.ndim == 2 and ids.shape[0] == 1:
            ids = ids[0]
        if ids.ndim != 1:
            raise Error("generate: one sequence ([T] or [1, T] tokens, or a text)")
        stop = []
        if stop_at_eos:
            for name in ("</s>", "<|endoftext|>", "<eos>", "<|end_of_text|>", "<|eot_id|>", "<|im_end|>"):
                i = self.tokenizer.token_to_id(name)
                if i is not None:
                    stop.append(i)
        new = self._core.generate([int(i) for i in ids], int(max_new_tokens), float(temperature), int(seed), int(sinks or 0),
                                  int(window or 0), stop, str(kv_cache), str(kv_quant or ""))
        out = np.concatenate([ids.astype(np.int64), np.asarray(new, dtype=np.int64)])[None, :]
        if (return_type or ("str" if text_in else "tokens")) == "str":
            return self.to_string(out[0])
        return out


def load(path, precision="f32", threads=None, softmax="standard"):
    """A Hugging Face model directory or a .gguf file, every family massact loads; precision "f32" (exact)
    or "bf16" (bfloat16 products, float32 sums) or "q8" (a quantized GGUF decoded in integers with 8-bit
    activations, llama.cpp's path) or "auto" (the fastest that keeps the weights' own precision: q8 for a
    quantized GGUF, bf16 for BF16 weights, else f32; cfg["precision"] says which); scan, stream and perplexity
    run at it too. threads: OpenMP threads per call (None: the default). softmax: the attention function of every
    forward ("standard": the model's own; "softmax", "softmax1", "clipped[:zeta,gamma]", "sink=X", "softpick",
    "sigmoid[:B]"); cfg["attention_fn"] says which function runs."""
    import os

    path = os.fspath(path)
    if threads is not None and int(threads) < 1:
        raise Error(f"load: threads {threads} (expected None or at least 1)")
    return HookedModel(_massact.Model(path, precision, int(threads or 0), str(softmax)))

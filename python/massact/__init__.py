"""massact: massive activations and attention sinks, from Python.

    import massact
    model = massact.load("examples/models/tiny-llama")          # a Hugging Face directory or a .gguf file
    logits, cache = model.run_with_cache("Summer is warm.")
    cache["resid_post", 2][0, 0, 215]                           # the massive activation

TransformerLens's names and semantics where it has them (HookedTransformer.run_with_cache, run_with_hooks,
to_tokens, ...); the work is done by massact's C++ library (the compiled _massact module). docs/python.md
lists every function.
"""

from ._massact import Error, KVCache, Tokenizer, __version__, read_safetensors, write_safetensors  # noqa: F401
from ._massact import Model as _Model
from .model import HookedModel, HookPoint, ActivationCache, load  # noqa: F401
from .analyses import (scan, ablate, inject, superweight, compare, swap, stream, quant, perplexity, qk, superexpert, bos,  # noqa: F401
                       registers, tool)

__all__ = [
    "Error", "KVCache", "read_safetensors", "write_safetensors", "Tokenizer", "HookedModel", "HookPoint", "ActivationCache", "load",
    "scan", "ablate", "inject", "superweight", "compare", "swap", "stream", "quant", "perplexity", "qk", "superexpert", "bos",
    "registers", "tool",
]

#!/usr/bin/env python3
"""The cost of Python around massact's C++ forward, measured in one run (best of REPEATS each, the Python call and its C++ peer alternating):
  model(tokens) against Transformer::forward in C++; run_with_cache (every site) against C++ run_with_cache;
  a no-op Python hook on every site against a no-op C++ hook on every site (both materialise attention).
    PYTHONPATH=build/python python3 bench/python_overhead.py [MODEL] [T] [REPEATS]
(MODEL: default examples/models/tiny-llama; T: 256 tokens; REPEATS: 40.)"""
import os
import sys
import time

import numpy as np

import massact
from massact import _massact

here = os.path.dirname(os.path.abspath(__file__))
path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "examples", "models", "tiny-llama")
T = int(sys.argv[2]) if len(sys.argv) > 2 else 256
R = int(sys.argv[3]) if len(sys.argv) > 3 else 40
m = massact.load(path)
ids = ((np.arange(T) * 7919 + 1) % m.cfg["d_vocab"]).astype(np.int64)[None, :]


def pair(py, mode):
    """The Python call and its C++ peer, alternating call by call R times (so that a slow stretch of the machine
    hits both): the best time of each, and the median of the R ratios of neighbouring calls (the figure the
    machine's drift disturbs least)."""
    t_py, t_cpp = [], []
    for _ in range(R):
        t0 = time.perf_counter()
        py()
        t_py.append(time.perf_counter() - t0)
        t_cpp.append(_massact._bench_cpp_forward(m._core, ids, 1, mode))
    return min(t_py), min(t_cpp), float(np.median(np.array(t_py) / np.array(t_cpp)))


noop = lambda act, hook: None
rows = []
for _ in range(2):  # (a warm-up round, then the measured one)
    rows = [
        ("model(tokens)", *pair(lambda: m(ids), "forward"), "C++ forward"),
        ("run_with_cache (all sites)", *pair(lambda: m.run_with_cache(ids), "cache"), "C++ run_with_cache"),
        ("no-op Python hook on every site", *pair(lambda: m.run_with_hooks(ids, fwd_hooks=[("*", noop)]), "noop"),
         "C++ no-op hook"),
    ]
print(f"{m.cfg['model_type']} {path}, T = {T}, best of {R}; ratio: the median of {R} neighbouring pairs")
for name, py, base, ratio, peer in rows:
    print(f"{name:34s} {py * 1e3:8.2f} ms   {peer:20s} {base * 1e3:8.2f} ms   ratio {ratio:.3f}")

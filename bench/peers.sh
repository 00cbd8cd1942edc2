#!/usr/bin/env bash
# bench/peers.sh [BUILD_DIR] -- massact's prefill speed beside llama.cpp and PyTorch on the same machine,
# the same weights (a random TinyLlama-1.1B-shaped BF16 checkpoint) and the same thread count, measured
# interleaved in one run; prints each engine's best tokens/s and massact's ratio to each peer.
#
#   BUILD_DIR  a Release build of massact (default: build), with bin/massact and bin/make_checkpoint
#   env:  PEERS_DIR (default /tmp/massact-peers: llama.cpp, checkpoint, GGUF files; reused by later runs)
#         TOKENS (256), THREADS (2), ROUNDS (3: interleaved rounds; each engine reports its best),
#         PYTHON (/usr/bin/python3: Debian's, with python3-numpy and optionally python3-torch)
#
# llama.cpp comes from the source npm's node-llama-cpp@3.21.1 ships (llama/gitRelease.bundle, a git
# bundle), built with -DGGML_NATIVE=ON. The checkpoint is converted to GGUF F32 and BF16 with llama.cpp's
# own gguf-py (bench/to_gguf.py). PyTorch is Debian's python3-torch (with libopenblas0-pthread); it is
# skipped, with a message, when not installed. Needs: npm, git, cmake, python3-numpy.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
work=${PEERS_DIR:-/tmp/massact-peers}
tokens=${TOKENS:-256}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
py=${PYTHON:-/usr/bin/python3}  # Debian's python3 (python3-numpy, python3-torch), not a pyenv one
mkdir -p "$work"
for tool in massact make_checkpoint; do
  [[ -x $build/bin/$tool ]] || { echo "peers.sh: $build/bin/$tool not found: build massact (Release) first" >&2; exit 1; }
done

# ---- llama.cpp from npm's node-llama-cpp bundle ---------------------------------------------------------
llama=$work/llama.cpp
bench_bin=$llama/build/bin/llama-bench
if [[ ! -x $bench_bin ]]; then
  echo "== building llama.cpp (node-llama-cpp@3.21.1's bundle, GGML_NATIVE=ON) in $llama"
  (cd "$work" && rm -rf package node-llama-cpp-*.tgz && npm pack --silent node-llama-cpp@3.21.1 >/dev/null &&
   tar xzf node-llama-cpp-3.21.1.tgz package/llama/gitRelease.bundle)
  rm -rf "$llama"
  git clone -q "$work/package/llama/gitRelease.bundle" "$llama"
  cmake -S "$llama" -B "$llama/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  cmake --build "$llama/build" -j "$(nproc)" --target llama-bench >/dev/null
fi

# ---- one checkpoint, three files (safetensors BF16, GGUF F32 and BF16) ----------------------------------------------------------------------
model=$work/tinyllama-1.1b
[[ -f $model/model.safetensors ]] || "$build/bin/make_checkpoint" "$model" tinyllama-1.1b
for kind in f32 bf16; do  # (the bundled tiny-llama too: bench_forward's peer files)
  [[ -f $work/tinyllama-1.1b-$kind.gguf ]] ||
    PYTHONPATH=$llama/gguf-py "$py" "$src/bench/to_gguf.py" "$model" "$work/tinyllama-1.1b-$kind.gguf" "$kind"
  [[ -f $work/tiny-llama-$kind.gguf ]] ||
    PYTHONPATH=$llama/gguf-py "$py" "$src/bench/to_gguf.py" "$src/examples/models/tiny-llama" "$work/tiny-llama-$kind.gguf" "$kind"
done
have_torch=0
if "$py" -c "import torch" 2>/dev/null; then have_torch=1; else
  echo "(PyTorch not installed: apt-get install python3-torch libopenblas0-pthread to include it)"; fi

# ---- interleaved rounds -------------------------------------------------------------------------------
results=$work/results.jsonl
: > "$results"
echo "== $rounds rounds of prefill $tokens tokens, $threads threads ($(lscpu | sed -n 's/^Model name: *//p'))"
for round in $(seq "$rounds"); do
  for kind in f32 bf16; do
    "$bench_bin" -m "$work/tinyllama-1.1b-$kind.gguf" -p "$tokens" -n 0 -t "$threads" -r 1 -o json 2>/dev/null |
      "$py" -c "import json,sys; r=json.load(sys.stdin)[0]; print(json.dumps({'engine':'llama.cpp','precision':'$kind','tokens_per_s':r['avg_ts']}))" >> "$results"
    "$build/bin/massact" bench "$model" -p "$tokens" -t "$threads" -r 1 --precision "$kind" --json |
      "$py" -c "import json,sys; t=sys.stdin.read(); r=json.loads(t[t.index('{'):]); print(json.dumps({'engine':'massact','precision':'$kind','tokens_per_s':r['prefill_tokens_per_s'],'stages':r['prefill_stages']}))" >> "$results"
    if (( have_torch )); then
      dtype=$([[ $kind == f32 ]] && echo float32 || echo bfloat16)
      "$py" "$src/bench/torch_forward.py" "$model" "$tokens" "$threads" 1 "$dtype" |
        "$py" -c "import json,sys; r=json.load(sys.stdin); print(json.dumps({'engine':'pytorch','precision':'$kind','tokens_per_s':r['tokens_per_s']}))" >> "$results"
    fi
  done
  echo "   round $round done"
done

"$py" - "$results" <<'EOF'
import json, sys
best = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    k = (r["engine"], r["precision"])
    if k not in best or r["tokens_per_s"] > best[k]["tokens_per_s"]:
        best[k] = r
print(f"\n{'engine':<10} {'precision':<9} {'tokens/s':>9}   massact / engine")
for (engine, prec), r in sorted(best.items()):
    ratio = best[("massact", prec)]["tokens_per_s"] / r["tokens_per_s"] if ("massact", prec) in best else float("nan")
    print(f"{engine:<10} {prec:<9} {r['tokens_per_s']:9.1f}   {ratio:.2f}x")
for prec in ("f32", "bf16"):
    st = best.get(("massact", prec), {}).get("stages")
    if st:
        print(f"massact {prec} time per stage: " + ", ".join(f"{k} {100 * v['fraction']:.1f}%" for k, v in st.items()))
EOF

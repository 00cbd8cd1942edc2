#!/usr/bin/env bash
# bench/peers.sh [BUILD_DIR] -- massact's prefill and decode speed beside llama.cpp (and PyTorch's prefill) on
# the same machine, the same weights (a random TinyLlama-1.1B-shaped BF16 checkpoint, as GGUF F32, BF16, Q8_0 and
# Q4_K_M and as safetensors) and the same thread count, measured interleaved in one run; prints each engine's
# best tokens/s per format and massact's ratio to the peer.
#
#   BUILD_DIR  a Release build of massact (default: build), with bin/massact and bin/make_checkpoint
#   env:  PEERS_DIR (default /tmp/massact-peers: llama.cpp, checkpoint, GGUF files; reused by later runs)
#         TOKENS (256: prefill), DECODE (64: tokens decoded from an empty cache), DEPTH (2048: decoding again
#         after a cache of that many tokens; 0: not), THREADS (2),
#         ROUNDS (3: interleaved rounds; each engine reports its best), FORMATS (default: all, e.g. "f32 q8_0"),
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
decode=${DECODE:-64}
depth=${DEPTH:-2048}
formats=${FORMATS:-f32 bf16 q8_0 q4_k_m st-bf16}
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
  cmake --build "$llama/build" -j "$(nproc)" --target llama-bench llama-quantize >/dev/null
fi
quantize_bin=$llama/build/bin/llama-quantize
[[ -x $quantize_bin ]] || cmake --build "$llama/build" -j "$(nproc)" --target llama-quantize >/dev/null

# ---- one checkpoint, three files (safetensors BF16, GGUF F32 and BF16) ----------------------------------------------------------------------
model=$work/tinyllama-1.1b
[[ -f $model/model.safetensors ]] || "$build/bin/make_checkpoint" "$model" tinyllama-1.1b
for kind in f32 bf16; do  # (the bundled tiny-llama too: bench_forward's peer files)
  [[ -f $work/tinyllama-1.1b-$kind.gguf ]] ||
    PYTHONPATH=$llama/gguf-py "$py" "$src/bench/to_gguf.py" "$model" "$work/tinyllama-1.1b-$kind.gguf" "$kind"
  [[ -f $work/tiny-llama-$kind.gguf ]] ||
    PYTHONPATH=$llama/gguf-py "$py" "$src/bench/to_gguf.py" "$src/examples/models/tiny-llama" "$work/tiny-llama-$kind.gguf" "$kind"
done
# the quantized files by llama.cpp's own llama-quantize, from the F32 GGUF
for q in Q8_0 Q4_K_M; do
  lower=$(tr 'A-Z' 'a-z' <<< "$q")
  [[ -f $work/tinyllama-1.1b-$lower.gguf ]] || "$quantize_bin" "$work/tinyllama-1.1b-f32.gguf" "$work/tinyllama-1.1b-$lower.gguf" "$q" >/dev/null 2>&1
done
have_torch=0
if "$py" -c "import torch" 2>/dev/null; then have_torch=1; else
  echo "(PyTorch not installed: apt-get install python3-torch libopenblas0-pthread to include it)"; fi

# ---- interleaved rounds -------------------------------------------------------------------------------
# Each format: llama.cpp's llama-bench on the GGUF file and massact bench on the same file (st-bf16: the
# safetensors checkpoint, against llama.cpp's BF16 GGUF), massact at its float32 path and, for BF16, at
# --precision bf16 too, for Q8_0 and Q4_K_M at --precision q8 (integer decoding). Decoding starts from an empty cache (llama-bench's tg, massact bench -d 0).
results=$work/results.jsonl
: > "$results"
echo "== $rounds rounds: prefill $tokens, decode $decode tokens (from 0 and $depth cached), $threads threads ($(lscpu | sed -n 's/^Model name: *//p'))"
emit() {  # emit ENGINE FORMAT PRECISION: bench JSON on stdin -> result lines
  "$py" -c "
import json, sys
t = sys.stdin.read()
engine, fmt, prec = sys.argv[1:4]
def named(kind, depth):
    return kind if not depth else f'{kind}@{depth}'
if engine == 'llama.cpp':
    for r in json.loads(t):
        kind = 'decode' if r['n_gen'] > 0 else 'prefill'
        print(json.dumps({'engine': engine, 'format': fmt, 'precision': prec, 'kind': named(kind, r.get('n_depth', 0)), 'tokens_per_s': r['avg_ts']}))
else:
    r = json.loads(t[t.index('{'):])
    for kind in ('prefill', 'decode'):
        if kind + '_tokens_per_s' in r:
            print(json.dumps({'engine': engine, 'format': fmt, 'precision': prec,
                              'kind': named(kind, r.get('decode_depth', 0) if kind == 'decode' else 0), 'tokens_per_s': r[kind + '_tokens_per_s'],
                              'stages': r.get('prefill_stages') if kind == 'prefill' else None,
                              'limit': r.get('decode_bandwidth_limit_tokens_per_s'), 'bandwidth': r.get('read_bandwidth_gbps')}))
" "$@" >> "$results"
}
for round in $(seq "$rounds"); do
  for fmt in $formats; do
    case $fmt in
      st-bf16) gguf=$work/tinyllama-1.1b-bf16.gguf; file=$model; precisions="f32 bf16" ;;
      bf16) gguf=$work/tinyllama-1.1b-bf16.gguf; file=$gguf; precisions="f32 bf16" ;;
      *) gguf=$work/tinyllama-1.1b-$fmt.gguf; file=$gguf; precisions="f32"; case $fmt in q8_0|q4_k_m) precisions="f32 q8" ;; esac ;;
    esac
    if [[ $fmt != st-bf16 ]]; then
      "$bench_bin" -m "$gguf" -p "$tokens" -n "$decode" -t "$threads" -r 1 -o json 2>/dev/null | emit llama.cpp "$fmt" native
      (( depth == 0 )) || "$bench_bin" -m "$gguf" -p 0 -n "$decode" -d "$depth" -t "$threads" -r 1 -o json 2>/dev/null | emit llama.cpp "$fmt" native
    fi
    for prec in $precisions; do
      "$build/bin/massact" bench "$file" -p "$tokens" -n "$decode" -d 0 -t "$threads" -r 1 --precision "$prec" --bandwidth --json | emit massact "$fmt" "$prec"
      (( depth == 0 )) || "$build/bin/massact" bench "$file" -p 0 -n "$decode" -d "$depth" -t "$threads" -r 1 --precision "$prec" --json | emit massact "$fmt" "$prec"
    done
    if (( have_torch )) && [[ $fmt == f32 || $fmt == st-bf16 ]]; then
      dtype=$([[ $fmt == f32 ]] && echo float32 || echo bfloat16)
      "$py" "$src/bench/torch_forward.py" "$model" "$tokens" "$threads" 1 "$dtype" |
        "$py" -c "import json,sys; r=json.load(sys.stdin); print(json.dumps({'engine':'pytorch','format':'$fmt','precision':'native','kind':'prefill','tokens_per_s':r['tokens_per_s']}))" >> "$results"
    fi
  done
  echo "   round $round done"
done

"$py" - "$results" <<'EOF2'
import json, sys
best = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    k = (r["format"], r["kind"], r["engine"], r["precision"])
    if k not in best or r["tokens_per_s"] > best[k]["tokens_per_s"]:
        best[k] = r
peer_of = {}
for (fmt, kind, engine, prec), r in best.items():
    if engine != "massact":
        peer_of.setdefault((fmt if fmt != "st-bf16" else "bf16", kind), {})[engine] = r["tokens_per_s"]
print(f"\n{'format':<8} {'kind':<12} {'massact precision':<18} {'tokens/s':>9}   {'llama.cpp':>9} {'ratio':>6}   {'pytorch':>8} {'ratio':>6}   {'of bandwidth limit':>18}")
for (fmt, kind, engine, prec), r in sorted(best.items()):
    if engine != "massact":
        continue
    peers = peer_of.get((fmt if fmt != "st-bf16" else "bf16", kind), {})
    ll, pt = peers.get("llama.cpp"), best.get((fmt, kind, "pytorch", "native"), {}).get("tokens_per_s")
    cells = [f"{ll:9.1f} {r['tokens_per_s'] / ll:5.2f}x" if ll else f"{'-':>9} {'-':>6}", f"{pt:8.1f} {r['tokens_per_s'] / pt:5.2f}x" if pt else f"{'':>8} {'':>6}"]
    limit = r.get("limit") if kind == "decode" else None  # (the weights read per token over the read bandwidth)
    bw = f"{r['tokens_per_s'] / limit:5.2f} of {limit:.1f} ({r['bandwidth']:.1f} GB/s)" if limit else ""
    print(f"{fmt:<8} {kind:<12} {prec:<18} {r['tokens_per_s']:9.1f}   " + "   ".join(cells) + "   " + bw)
EOF2

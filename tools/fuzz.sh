#!/usr/bin/env bash
# Build the libFuzzer targets with clang and run each for SECONDS (default 30) on its corpus in
# fuzz/corpus/<target> (seeded from the bundled files; new interesting inputs are added there).
# Prints executions and time per target; exits non-zero on the first crash (the input is kept in
# <build folder>/crash-*).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
# FUZZ_BUILD_DIR: a clang tree already configured with -DMASSACT_FUZZ=ON (CI's sanitizer tree builds the targets
# beside the test suites); otherwise build-fuzz, configured here.
dir=${FUZZ_BUILD_DIR:-build-fuzz}
if [ -z "${FUZZ_BUILD_DIR:-}" ]; then
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DMASSACT_FUZZ=ON -DMASSACT_BUILD_TESTS=OFF \
        -DMASSACT_BUILD_BENCH=OFF -DMASSACT_BUILD_EXAMPLES=OFF -DMASSACT_OPENMP=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only -DNDEBUG" > /dev/null
fi
dir=$(cd "$dir" && pwd)
# Two targets at a time (each is one process on one core).
targets=${FUZZ_TARGETS:-fuzz_safetensors fuzz_config fuzz_tokenizer fuzz_encode fuzz_gguf fuzz_gguf_vocab fuzz_preprocessor fuzz_image fuzz_cli}
cmake --build "$dir" -j2 --target $targets > /dev/null
one() {
  local t=$1 log="$dir/$1.log" corpus=$PWD/fuzz/corpus/$1
  mkdir -p "$corpus"
  if ! (cd "$dir" && "./fuzz/$t" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
      -print_final_stats=1 -artifact_prefix="$dir/" "$corpus" > "$t.log" 2>&1); then
    tail -40 "$log"
    echo "$t: CRASH"
    return 1
  fi
  echo "$t: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') executions in $seconds s, no crash"
}
set -- $targets
status=0
while [ $# -gt 0 ]; do
  one "$1" & a=$!
  b=""
  if [ $# -gt 1 ]; then one "$2" & b=$!; fi
  wait $a || status=1
  if [ -n "$b" ]; then wait $b || status=1; fi
  shift $(( $# > 1 ? 2 : 1 ))
  [ $status = 0 ] || exit 1
done

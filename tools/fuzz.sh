#!/usr/bin/env bash
# Build the libFuzzer targets with clang and run each for SECONDS (default 30) on its corpus in
# fuzz/corpus/<target> (seeded from the bundled files; new interesting inputs are added there).
# Prints executions and time per target; exits non-zero on the first crash (the input is kept in
# build-fuzz/crash-*).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DMASSACT_FUZZ=ON -DMASSACT_BUILD_TESTS=OFF \
      -DMASSACT_BUILD_BENCH=OFF -DMASSACT_BUILD_EXAMPLES=OFF -DMASSACT_OPENMP=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
# (fuzz_image and fuzz_cli are built and run by hand: FUZZ_TARGETS="fuzz_image fuzz_cli" tools/fuzz.sh 600.
# fuzz_image finds a crash inside Debian's libstb JPEG decoder: fuzz/findings/stb_jpeg_segv.jpg.)
targets=${FUZZ_TARGETS:-fuzz_safetensors fuzz_config fuzz_tokenizer fuzz_encode fuzz_gguf fuzz_gguf_vocab fuzz_preprocessor}
cmake --build build-fuzz -j2 --target $targets > /dev/null
for t in $targets; do
  mkdir -p "fuzz/corpus/$t"
  log="build-fuzz/$t.log"
  (cd build-fuzz && "./fuzz/$t" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
      -print_final_stats=1 -artifact_prefix="$PWD/" "$PWD/../fuzz/corpus/$t" > "$t.log" 2>&1) || { tail -40 "$log"; echo "$t: CRASH"; exit 1; }
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  echo "$t: $runs executions in $seconds s, no crash"
done

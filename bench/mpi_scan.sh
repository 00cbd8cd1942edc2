#!/usr/bin/env bash
# bench/mpi_scan.sh [BUILD_DIR] [WINDOWS] -- scan throughput with 1 process x 2 threads and with 2 MPI ranks x
# 1 thread (the same 2 cores), measured in one run on the bundled tiny-llama over val.txt; prints windows/s
# and the ratio 2 ranks / 1 process. Needs massact built with MPI (libopenmpi-dev openmpi-bin).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
windows=${2:-64}
tool=$build/bin/massact
args=(scan "$src/examples/models/tiny-llama" --data "$src/examples/data/val.txt" --max-seqs "$windows")
mpi=(mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1)
best() {  # best wall time of 3 runs of "$@", in seconds
  local b=1e9
  for _ in 1 2 3; do
    local t0 t1
    t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N)
    b=$(echo "$t1 - $t0" | bc -l | awk -v b="$b" '{print ($1 < b) ? $1 : b}')
  done
  echo "$b"
}
one=$(OMP_NUM_THREADS=2 best "$tool" "${args[@]}")
two=$(best "${mpi[@]}" "$tool" "${args[@]}")
awk -v w="$windows" -v a="$one" -v b="$two" 'BEGIN {
  printf "1 process x 2 threads: %.2f s, %.1f windows/s\n", a, w / a
  printf "2 ranks x 1 thread:    %.2f s, %.1f windows/s\n", b, w / b
  printf "ratio (2 ranks / 1 process): %.2f\n", a / b }'

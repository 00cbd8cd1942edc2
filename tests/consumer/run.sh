#!/usr/bin/env bash
# Build and run the consumer three ways: find_package after install, add_subdirectory, plain -Iinclude.
# The two CMake builds are unoptimised (they check how massact is consumed, in a third of the time); the plain
# one is -O2, where GCC warns about more (-Wmaybe-uninitialized, ...). The three builds run side by side (each
# compile is one process; ctest runs this test alone), each with its own log, shown when it fails.
set -euo pipefail
src=$1
work=$2
model=$src/examples/models/tiny-llama
rm -rf "$work" && mkdir -p "$work"
version=$(sed -n 's/^#define MASSACT_VERSION_STRING "\(.*\)"/\1/p' "$src/include/massact/core/version.hpp")

installed() {
  cmake -S "$src" -B "$work/lib" -DMASSACT_BUILD_TESTS=OFF -DMASSACT_BUILD_BENCH=OFF -DMASSACT_BUILD_EXAMPLES=OFF \
        -DCMAKE_INSTALL_PREFIX="$work/prefix" &&
  cmake --install "$work/lib" &&
  cmake -S "$src/tests/consumer" -B "$work/installed" -DCMAKE_PREFIX_PATH="$work/prefix" &&
  cmake --build "$work/installed" &&
  "$work/installed/consumer" "$model" || return 1
  grep -q "found massact $version" "$work/installed.log" || { echo "consumer: find_package did not report the headers' version"; return 1; }
  # a version the package does not provide is refused (SameMinorVersion: 0.2.x satisfies 0.2 only)
  if cmake -S "$src/tests/consumer" -B "$work/too-new" -DCMAKE_PREFIX_PATH="$work/prefix" -DMASSACT_WANT=0.3; then
    echo "consumer: find_package(massact 0.3) succeeded against massact $version"; return 1
  fi
}
subdir() {
  cmake -S "$src/tests/consumer" -B "$work/subdir" -DMASSACT_SOURCE="$src" &&
  cmake --build "$work/subdir" &&
  "$work/subdir/consumer" "$model"
}
plain() {
  ${CXX:-c++} -std=c++17 -O2 -Wall -Wextra -Werror -I"$src/include" -I/usr/include/eigen3 "$src/tests/consumer/main.cpp" \
    -o "$work/plain" -lpcre2-8 -lutf8proc &&
  "$work/plain" "$model"
}
pids=()
for way in installed subdir plain; do
  ( $way > "$work/$way.log" 2>&1 ) & pids+=($!)
done
status=0
i=0
for way in installed subdir plain; do
  if ! wait "${pids[$i]}"; then
    echo "consumer: the $way build failed:"; cat "$work/$way.log"; status=1
  fi
  i=$((i + 1))
done
[ $status = 0 ] || exit 1
echo "consumer: find_package, add_subdirectory and -Iinclude builds ran"

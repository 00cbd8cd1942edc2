#!/usr/bin/env bash
# Build and run the consumer three ways: find_package after install, add_subdirectory, plain -Iinclude.
# The two CMake builds are unoptimised (they check how massact is consumed, in a third of the time); the plain
# one is -O2, where GCC warns about more (-Wmaybe-uninitialized, ...).
set -euo pipefail
src=$1
work=$2
model=$src/examples/models/tiny-llama
rm -rf "$work" && mkdir -p "$work"
cmake -S "$src" -B "$work/lib" -DMASSACT_BUILD_TESTS=OFF -DMASSACT_BUILD_BENCH=OFF -DMASSACT_BUILD_EXAMPLES=OFF \
      -DCMAKE_INSTALL_PREFIX="$work/prefix" > "$work/log" 2>&1
cmake --install "$work/lib" >> "$work/log" 2>&1
cmake -S "$src/tests/consumer" -B "$work/installed" -DCMAKE_PREFIX_PATH="$work/prefix" >> "$work/log" 2>&1
cmake --build "$work/installed" >> "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
"$work/installed/consumer" "$model"
grep -q "found massact $(sed -n 's/^#define MASSACT_VERSION_STRING "\(.*\)"/\1/p' "$src/include/massact/core/version.hpp")" "$work/log" ||
  { echo "consumer: find_package did not report the headers' version"; exit 1; }
# a version the package does not provide is refused (SameMinorVersion: 0.2.x satisfies 0.2 only)
if cmake -S "$src/tests/consumer" -B "$work/too-new" -DCMAKE_PREFIX_PATH="$work/prefix" -DMASSACT_WANT=0.3 >> "$work/log" 2>&1; then
  echo "consumer: find_package(massact 0.3) succeeded against massact $(grep -o 'found massact [0-9.]*' "$work/log" | head -1)"; exit 1
fi
cmake -S "$src/tests/consumer" -B "$work/subdir" -DMASSACT_SOURCE="$src" >> "$work/log" 2>&1
cmake --build "$work/subdir" >> "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
"$work/subdir/consumer" "$model"
${CXX:-c++} -std=c++17 -O2 -Wall -Wextra -Werror -I"$src/include" -I/usr/include/eigen3 "$src/tests/consumer/main.cpp" -o "$work/plain" -lpcre2-8 -lutf8proc
"$work/plain" "$model"
echo "consumer: find_package, add_subdirectory and -Iinclude builds ran"

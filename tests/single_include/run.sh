#!/usr/bin/env bash
# The single header: the checked-in single_include/massact/massact.hpp must equal a fresh amalgamation of
# include/ (tools/amalgamate.sh), and compile alone (no include/ on the path) with -Wall -Wextra -Werror.
set -euo pipefail
src=$1
work=$2
rm -rf "$work" && mkdir -p "$work"
"$src/tools/amalgamate.sh" "$work/massact.hpp"
if ! cmp -s "$work/massact.hpp" "$src/single_include/massact/massact.hpp"; then
  diff -u "$src/single_include/massact/massact.hpp" "$work/massact.hpp" | head -40 || true
  echo "single_include/massact/massact.hpp is stale: run tools/amalgamate.sh and commit it" >&2
  exit 1
fi
${CXX:-c++} -std=c++17 -O0 -Wall -Wextra -Werror -I"$src/single_include" -isystem /usr/include/eigen3 \
  "$src/tests/single_include/main.cpp" -o "$work/single" -lpcre2-8 -lutf8proc
"$work/single" "$src/examples/models/tiny-llama"
echo "single header: equal to a fresh amalgamation, compiled alone, ran"

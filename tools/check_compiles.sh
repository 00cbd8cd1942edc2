#!/usr/bin/env bash
# CI's check of the programs no test runs (the figure programs, the benchmarks): each compiled -fsyntax-only with
# exactly its flags from BUILD/compile_commands.json (configure with -DCMAKE_EXPORT_COMPILE_COMMANDS=ON), two at
# a time; any error or warning (-Werror) fails. A fifth of a full compile: CI builds the tests' targets at full
# optimisation and checks these; the README's build compiles everything.
#   tools/check_compiles.sh BUILD
set -euo pipefail
build=${1:?usage: check_compiles.sh BUILD}
cd "$(dirname "$0")/.."
/usr/bin/python3 - "$build/compile_commands.json" "$PWD" <<'PY' | xargs -0 -n 1 -P 2 bash -c 'eval "$0" || { echo "check_compiles: failed: $0" >&2; exit 255; }'
import json, shlex, sys
root = sys.argv[2]
n = 0
for e in json.load(open(sys.argv[1])):
    if not (e["file"].startswith(root + "/examples/figures/") or e["file"].startswith(root + "/bench/")):
        continue
    args = shlex.split(e["command"])
    out, skip = [], 0
    for a in args:
        if skip:
            skip -= 1
            continue
        if a in ("-o", "-MF", "-MT"):
            skip = 1
            continue
        if a in ("-MD", "-MMD"):
            continue
        out.append(a)
    cmd = "cd " + shlex.quote(e["directory"]) + " && " + " ".join(shlex.quote(a) for a in out) + " -fsyntax-only"
    sys.stdout.write(cmd + "\0")
    n += 1
if n == 0:
    sys.exit("check_compiles: no figure or benchmark sources in " + sys.argv[1])
print(f"check_compiles: {n} sources", file=sys.stderr)
PY
echo "check_compiles: the figure programs and benchmarks compile"

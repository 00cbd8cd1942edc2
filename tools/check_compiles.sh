#!/usr/bin/env bash
# CI's check of the programs no test runs (the figure programs, the benchmarks): compiled -fsyntax-only with
# exactly their flags from BUILD/compile_commands.json (configure with -DCMAKE_EXPORT_COMPILE_COMMANDS=ON), two at
# a time; any error or warning (-Werror) fails. Sources that share their flags are checked together, as one
# translation unit including each in turn (its main renamed): every translation unit with the library's header costs
# about 25 s of template instantiation whatever it uses, thirteen of them four minutes. Where that unit fails (two
# sources may define the same name), each source is checked alone, and only those results count. A fifth of a full
# compile: CI builds the tests' targets at full optimisation and checks these; the README's build compiles everything.
#   tools/check_compiles.sh BUILD
set -euo pipefail
build=${1:?usage: check_compiles.sh BUILD}
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/massact-check-compiles-XXXXXX)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 - "$build/compile_commands.json" "$PWD" "$work" <<'PY' | xargs -0 -n 1 -P 2 bash -c 'eval "$0" || { echo "check_compiles: failed: $0" >&2; exit 255; }'
import json, os, shlex, sys
db, root, work = sys.argv[1:4]
groups = {}  # the flags but the source -> [(directory, source)]
for e in json.load(open(db)):
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
        if a in ("-MD", "-MMD", "-c") or os.path.join(e["directory"], a) == e["file"]:
            continue
        out.append(a)
    groups.setdefault(tuple(out), []).append((e["directory"], e["file"]))
if not groups:
    sys.exit("check_compiles: no figure or benchmark sources in " + db)
n = 0
for k, (flags, sources) in enumerate(groups.items()):
    q = " ".join(shlex.quote(a) for a in flags)
    alone = [f"(cd {shlex.quote(d)} && {q} -fsyntax-only {shlex.quote(s)})" for d, s in sources]
    n += len(sources)
    if len(sources) == 1:
        sys.stdout.write(alone[0] + "\0")
        continue
    unity = os.path.join(work, f"group{k}.cpp")
    with open(unity, "w") as f:
        for i, (d, s) in enumerate(sources):
            f.write(f"#define main massact_check_main_{i}\n#include \"{s}\"\n#undef main\n")
    names = " ".join(os.path.basename(s) for d, s in sources)
    sys.stdout.write(f"(cd {shlex.quote(sources[0][0])} && {q} -fsyntax-only {shlex.quote(unity)} 2> {shlex.quote(unity)}.log) || "
                     f"{{ echo 'check_compiles: {names} together failed; one by one:' >&2; {' && '.join(alone)}; }}\0")
print(f"check_compiles: {n} sources in {len(groups)} translation units", file=sys.stderr)
PY
echo "check_compiles: the figure programs and benchmarks compile"

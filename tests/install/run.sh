#!/usr/bin/env bash
# The installed tool works on its own: cmake --install into a temporary prefix, the prefix moved elsewhere
# (nothing may point back into the build or source tree), run from another directory: --version,
# info --paths, info and report on the installed tiny-llama; $MASSACT_DATA for a binary without its share
# folder; the man page and the bash completion; no source path in the binaries.
#   run.sh SOURCE_DIR BUILD_DIR [WORK_DIR]   (default: a new folder under /tmp, outside both trees, removed after a pass)
set -euo pipefail
src=$1
build=$2
work=${3:-$(mktemp -d /tmp/massact-install-XXXXXX)}
version=$(sed -n 's/^#define MASSACT_VERSION_STRING "\(.*\)"/\1/p' "$src/include/massact/core/version.hpp")
fail() { echo "install: $*" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work/run"
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
mv "$work/prefix" "$work/moved"
p=$work/moved
cd "$work/run"

# no path of the source or build tree is compiled into the tool
for bin in "$build/bin/massact" "$p/bin/massact"; do
  if strings "$bin" | grep -F -e "$src" -e "$build"; then fail "$bin holds a path of the source or build tree"; fi
done

"$p/bin/massact" --version | tee "$work/version.txt"
grep -qx "massact $version" "$work/version.txt" || fail "--version does not print 'massact $version'"
grep -q "^data: $p/share/massact, next to the executable" "$work/version.txt" || fail "--version: data not found next to the executable"
"$p/bin/massact" info --paths | tee "$work/paths.txt"
grep -q "^data  *$p/share/massact$" "$work/paths.txt" || fail "info --paths: data is not $p/share/massact"
grep -q "^default model  *$p/share/massact/models/tiny-llama$" "$work/paths.txt" || fail "info --paths: default model"
"$p/bin/massact" info | tee "$work/info.txt"
grep -q "^model_type  *llama" "$work/info.txt" || fail "info on the installed tiny-llama"
"$p/bin/massact" report --out "$work/report" > "$work/report.log"
for f in report.md report.json; do [[ -s $work/report/$f ]] || fail "report: no $f"; done
grep -q '"dim": 215' "$work/report/report.json" || fail "report: the massive activation at dim 215 is missing"
if command -v gnuplot > /dev/null; then
  n=$(ls "$work/report"/*.png | wc -l)
  (( n >= 5 )) || fail "report: $n figures, expected at least 5"
fi
[[ -f $p/share/doc/massact/README.md && -f $p/share/doc/massact/formats.md ]] || fail "README and docs not installed"
[[ -f $p/include/massact/massact.hpp && -f $p/lib/cmake/massact/massactConfigVersion.cmake ]] ||
  [[ -f $p/include/massact/massact.hpp && -n $(ls "$p"/lib*/cmake/massact/massactConfigVersion.cmake 2>/dev/null) ]] || fail "headers or CMake package not installed"

# a binary moved away from its share folder: found through $MASSACT_DATA, or a clear message
mkdir -p "$work/lonely/bin" && cp "$p/bin/massact" "$work/lonely/bin/"
MASSACT_DATA=$p/share/massact "$work/lonely/bin/massact" info --paths | grep -q "^found  *\$MASSACT_DATA" ||
  fail "\$MASSACT_DATA not used by a binary without share/massact"
MASSACT_DATA=$p/share/massact "$work/lonely/bin/massact" info > /dev/null || fail "info with \$MASSACT_DATA"
if env -u MASSACT_DATA "$work/lonely/bin/massact" info --paths > "$work/none.txt"; then fail "info --paths succeeded without data"; fi
grep -q "not found (looked in $work/lonely/share/massact" "$work/none.txt" || fail "info --paths does not say where it looked"
if env -u MASSACT_DATA "$work/lonely/bin/massact" info 2> "$work/none.err"; then fail "info without data succeeded"; fi
grep -q "massact data not found: install massact or set MASSACT_DATA" "$work/none.err" || fail "no clear message without data: $(cat "$work/none.err")"

# man page and bash completion
man=$p/share/man/man1/massact.1
[[ -s $man ]] || fail "no man page"
grep -q "^\.TH MASSACT 1 .*massact $version" "$man" || fail "man page: no .TH line with the version"
for cmd in scan ablate report quant stream; do grep -q "^\.SS \"massact $cmd\"" "$man" || fail "man page: no section for $cmd"; done
if grep -F -e "$src" -e "$build" "$man"; then fail "man page names the source or build tree"; fi
comp=$p/share/bash-completion/completions/massact
[[ -s $comp ]] || fail "no bash completion"
got=$(bash -c "source '$comp'; COMP_WORDS=(massact sc); COMP_CWORD=1; _massact; echo \${COMPREPLY[*]}")
[[ $got == scan ]] || fail "completion of 'massact sc': '$got'"
got=$(bash -c "source '$comp'; COMP_WORDS=(massact scan --js); COMP_CWORD=2; _massact; echo \${COMPREPLY[*]}")
[[ $got == --json ]] || fail "completion of 'massact scan --js': '$got'"
# the Python package, where the build has it: importable from the prefix's dist-packages, away from the trees
if [[ -n $(ls "$build"/python/massact/_massact*.so 2>/dev/null) ]]; then
  site=$(ls -d "$p"/lib/python3*/dist-packages)
  [[ -f $site/massact/__init__.py && -n $(ls "$site"/massact/_massact*.so) ]] || fail "the Python package is not installed in $site"
  where=$(cd "$work/run" && env -u PYTHONPATH PYTHONPATH="$site" /usr/bin/python3 -c "import massact; m = massact.load('$p/share/massact/models/tiny-llama'); print(massact.__file__, m.cfg['n_layers'])")
  [[ $where == "$site/massact/__init__.py 8" ]] || fail "import massact from the prefix: '$where'"
fi
[[ -n ${3:-} ]] || rm -rf "$work"
echo "install: the relocated prefix works from $work/run; no source path in the tool; man page and completion installed"

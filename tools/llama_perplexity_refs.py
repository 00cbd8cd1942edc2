#!/usr/bin/env python3
"""llama.cpp's perplexity of each family's F16 GGUF: the reference test_gguf compares massact with.

    python3 tools/llama_perplexity_refs.py LLAMA_PERPLEXITY TEXT CTX OUT.json GGUF...

Runs llama.cpp's llama-perplexity (from node-llama-cpp@3.21.1's llama.cpp) on each file with the same text, context
CTX and one thread; llama-perplexity cuts the tokens into windows of CTX and scores the second half of each (the
first half is context). Writes {file name: {"ppl": ..., "ctx": CTX, "chunks": ...}}; exits 1 if any run fails."""
import json
import os
import re
import subprocess
import sys


def main():
    exe, text, ctx, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(os.path.abspath(exe)))
    refs, failed = {}, []
    for path in sys.argv[5:]:
        for _ in range(10):  # (llama.cpp logs from a thread of its own, which at times loses the last line at exit)
            r = subprocess.run([exe, "-m", path, "-f", text, "-c", str(ctx), "-b", str(ctx), "-t", "1"], env=env,
                               capture_output=True, text=True)
            log = r.stdout + r.stderr
            ppl = re.search(r"Final estimate: PPL = ([0-9.]+)", log)
            chunks = re.search(r"calculating perplexity over (\d+) chunks", log)
            if r.returncode != 0 or (ppl and chunks):
                break
        name = os.path.basename(path)
        if r.returncode != 0 or not ppl or not chunks:
            print(f"{name}: llama-perplexity failed (exit {r.returncode})\n{log[-2000:]}")
            failed.append(name)
            continue
        refs[name] = {"ppl": float(ppl.group(1)), "ctx": ctx, "chunks": int(chunks.group(1))}
        print(f"{name}: PPL {refs[name]['ppl']} over {refs[name]['chunks']} windows of {ctx}")
    with open(out, "w") as f:
        json.dump(refs, f, indent=1, sort_keys=True)
        f.write("\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

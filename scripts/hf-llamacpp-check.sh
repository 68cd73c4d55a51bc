#!/usr/bin/env bash
# Dev check (not in CI: it needs llama.cpp's tools): the GGUF files `apr import` writes load in
# llama.cpp and score about the original's perplexity, and `apr import --type q8_0` writes the
# bytes llama-quantize writes for the same f32 weights.
#   scripts/hf-llamacpp-check.sh [MODEL.gguf] [WORKDIR]
# Tools from ../shared/tools/llamacpp-peer.sh (default ~/.cache/apr/peer/llama.cpp/build/bin).
set -euo pipefail
MODEL=${1:-$HOME/.cache/apr/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf}
WORK=${2:-$(mktemp -d)}
BIN=${LLAMA_BIN:-$HOME/.cache/apr/peer/llama.cpp/build/bin}
APR=${APR:-target/release/apr}
DATA=${DATA:-../shared/data/code-ppl.py.txt}
THREADS=${THREADS:-2}

"$APR" export "$MODEL" "$WORK/hf" --format safetensors --type f32
"$APR" import "$WORK/hf" "$WORK/re-f32.gguf" --type f32
"$APR" import "$WORK/hf" "$WORK/re-q8_0.gguf" --type q8_0
"$BIN/llama-quantize" "$WORK/re-f32.gguf" "$WORK/llama-q8_0.gguf" Q8_0 "$THREADS" >/dev/null 2>&1

for m in "$MODEL" "$WORK/re-f32.gguf" "$WORK/re-q8_0.gguf"; do
  printf '%s: ' "$(basename "$m")"
  "$BIN/llama-perplexity" -m "$m" -f "$DATA" --chunks 4 -t "$THREADS" 2>&1 | grep 'Final estimate'
done

# Tensor bytes of our Q8_0 against llama-quantize's (offsets from apr inspect --json).
"$APR" inspect "$WORK/llama-q8_0.gguf" --json 2>/dev/null >"$WORK/a.json"
"$APR" inspect "$WORK/re-q8_0.gguf" --json 2>/dev/null >"$WORK/b.json"
python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
def tensors(j):
    return {t["name"]: t for t in json.load(open(f"{w}/{j}"))["tensors"]}
a, b = tensors("a.json"), tensors("b.json")
fa, fb = open(f"{w}/llama-q8_0.gguf", "rb"), open(f"{w}/re-q8_0.gguf", "rb")
bad = []
for n, ta in a.items():
    tb = b.get(n)
    fa.seek(ta["offset"])
    if tb is None or ta["type"] != tb["type"]:
        bad.append(n)
        continue
    fb.seek(tb["offset"])
    if fa.read(ta["bytes"]) != fb.read(tb["bytes"]):
        bad.append(n)
print(f"q8_0 tensors differing from llama-quantize: {len(bad)} of {len(a)}", bad[:5])
sys.exit(1 if bad or len(a) != len(b) else 0)
PY

#!/usr/bin/env bash
# Dev script (not run by CI): the reference importance matrix for apr-ops' calibration test,
# made by the peer's llama-imatrix on the real 0.5B model: the calibration text, 2 chunks of
# 128 tokens, 2 threads. Needs ../shared/tools/llamacpp-peer.sh's build.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${LLAMA_BIN:-$HOME/.cache/apr/peer/llama.cpp/build/bin}
model=${APR_MODELS_DIR:-$HOME/.cache/apr/models}/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
"$bin/llama-imatrix" -m "$model" -f ../shared/data/calib-code.py.txt \
  -o crates/apr-ops/tests/fixtures/llama-imatrix-qwen05-c128x2.gguf --chunks 2 -c 128 -t 2

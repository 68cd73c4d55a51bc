#!/usr/bin/env bash
# Measures docs/quantization.md's quality table: the 1.5B model exported to f16 is the
# source; `apr quantize` and `llama-quantize` each make every type from it; llama.cpp's
# `llama-perplexity` measures perplexity on ../shared/data/code-ppl.py.txt and the KL
# divergence against the f16 source's logits. The imatrix is `apr imatrix` on the
# calibration text (never the evaluation text). Resumable: a step whose output exists is
# skipped. Where the two tools' tensor data are equal (the tensors are compared with gguf-py),
# llama-quantize's file is not measured again. Needs the peer llama.cpp build; takes hours on 2 cores (not in CI).
#   scripts/quant-quality.sh [WORKDIR]     (CHUNKS=N limits the perplexity chunks)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEER=${LLAMA_CPP:-$HOME/.cache/apr/peer/llama.cpp}
BIN=$PEER/build/bin
APR=${APR:-$ROOT/target/release/apr}
SRC=${SRC:-$HOME/.cache/apr/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}
DATA=$ROOT/../shared/data
W=${1:-$HOME/.cache/apr/quality}
CHUNKS=${CHUNKS:--1}
T=${THREADS:-2}
TYPES=${TYPES:-"Q8_0 Q6_K Q5_K_M Q4_K_M Q4_0 Q3_K_M Q2_K"}
ITYPES=${ITYPES:-"Q4_K_M Q3_K_M Q2_K Q4_0 Q6_K Q5_K_M Q8_0"}
mkdir -p "$W"
log() { echo "[$(date +%T)] $*" | tee -a "$W/progress.log"; }

if [ ! -f "$W/f16.gguf" ]; then
    log "export f16"
    "$APR" export "$SRC" "$W/f16.gguf" --format gguf --type f16
fi
ppl() { # ppl NAME MODEL [extra args]
    local name=$1 model=$2
    shift 2
    [ -f "$W/$name.ppl.log" ] && return 0
    log "perplexity $name"
    "$BIN/llama-perplexity" -m "$model" -t "$T" -c 512 -b 512 --chunks "$CHUNKS" "$@" \
        >"$W/$name.ppl.tmp" 2>&1 || { tail -20 "$W/$name.ppl.tmp"; exit 1; }
    mv "$W/$name.ppl.tmp" "$W/$name.ppl.log"
    log "done $name: $(grep -E 'Final estimate|Mean +KLD' "$W/$name.ppl.log" | tr -s ' ' | tr '\n' ' ')"
}
ppl f16 "$W/f16.gguf" -f "$DATA/code-ppl.py.txt" --kl-divergence-base "$W/f16.kld"
kld() { ppl "$1" "$2" --kl-divergence-base "$W/f16.kld" --kl-divergence; }

# Tensor data of two GGUF files equal? (metadata differs: provenance keys)
same_data() {
    PYTHONPATH=$PEER/gguf-py python3 - "$1" "$2" <<'PY'
import sys, gguf
a, b = (gguf.GGUFReader(p) for p in sys.argv[1:3])
ta = {t.name: (t.tensor_type, t.data.tobytes()) for t in a.tensors}
tb = {t.name: (t.tensor_type, t.data.tobytes()) for t in b.tensors}
diff = [n for n in ta if ta[n] != tb.get(n)]
print(f"{len(ta)} tensors, {len(diff)} differ" + (f": {diff[:5]}" if diff else ""))
sys.exit(1 if diff or set(ta) != set(tb) else 0)
PY
}

for t in $TYPES; do
    [ -f "$W/apr-$t.gguf" ] || { log "apr quantize $t"; "$APR" quantize "$W/f16.gguf" "$W/apr-$t.gguf" --type "$t" -t "$T" >/dev/null 2>&1; }
    [ -f "$W/llama-$t.gguf" ] || { log "llama-quantize $t"; "$BIN/llama-quantize" "$W/f16.gguf" "$W/llama-$t.gguf" "$t" "$T" >"$W/llama-$t.qlog" 2>&1; }
    [ -f "$W/same-$t.txt" ] || { same_data "$W/apr-$t.gguf" "$W/llama-$t.gguf" >"$W/same-$t.txt" || true; log "same data $t: $(cat "$W/same-$t.txt")"; }
    kld "apr-$t" "$W/apr-$t.gguf"
    # Equal tensor data give equal figures: llama's file is measured where the data differ.
    if ! grep -q " 0 differ" "$W/same-$t.txt"; then
        kld "llama-$t" "$W/llama-$t.gguf"
    fi
done

if [ ! -f "$W/imatrix.gguf" ]; then
    log "apr imatrix"
    # docs/quantization.md's first imatrix: the Q8_0 file, 32 chunks of 512 tokens of the
    # calibration text. Its second: IMATRIX_SRC=f16 IMATRIX_CHUNKS=0 (the f16 source, the
    # whole text).
    src=$W/apr-${IMATRIX_SRC:-Q8_0}.gguf
    [ "${IMATRIX_SRC:-}" = f16 ] && src=$W/f16.gguf
    chunks=()
    [ "${IMATRIX_CHUNKS:-32}" != 0 ] && chunks=(--chunks "${IMATRIX_CHUNKS:-32}")
    "$APR" imatrix "$src" --data "$DATA/calib-code.py.txt" "$W/imatrix.gguf" \
        "${chunks[@]}" -t "$T" >"$W/imatrix.log" 2>&1
fi
# IFLAGS: more `apr quantize` flags for the imatrix files, and TAG a name for them (e.g.
# IFLAGS="--allocate error" TAG=alloc, docs/quantization.md's `--allocate error` rows).
IFLAGS=${IFLAGS:-}
TAG=${TAG:-imat}
for t in $ITYPES; do
    # shellcheck disable=SC2086
    [ -f "$W/apr-$t-$TAG.gguf" ] || { log "apr quantize --imatrix $IFLAGS $t"; "$APR" quantize "$W/f16.gguf" "$W/apr-$t-$TAG.gguf" --type "$t" --imatrix "$W/imatrix.gguf" $IFLAGS -t "$T" >"$W/apr-$t-$TAG.qlog" 2>&1; }
    # The same chunks as the plain files (llama-perplexity takes them from the base logits).
    kld "apr-$t-$TAG" "$W/apr-$t-$TAG.gguf"
done
log "all done"

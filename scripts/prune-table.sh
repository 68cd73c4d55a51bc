#!/usr/bin/env bash
# Measures docs/merge-prune.md's 1.5B pruning table: the 1.5B model exported to f16 is the
# source; each method prunes it (calibrated on ../shared/data/calib-code.py.txt, defaults:
# 32 samples of 512 tokens) into an f16 GGUF, and `apr eval perplexity` scores the source
# and every output on ../shared/data/code-ppl.py.txt (512-token chunks). Resumable: a step
# whose result exists is skipped. Hours on 2 cores; minutes on a 16-core machine.
#   scripts/prune-table.sh [WORKDIR] [STEP...]   (steps: base magnitude50 wanda50 wanda24
#                                                 sparsegpt50 blocks4; default all)
#   PRUNE_ARGS="--type q8_0" writes Q8_0 outputs (faster to score than f16).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
APR=${APR:-$ROOT/target/release/apr}
SRC=${SRC:-$HOME/.cache/apr/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}
DATA=${DATA:-$ROOT/../shared/data}
W=${1:-$HOME/.cache/apr/prune}
shift || true
STEPS=${*:-base magnitude50 wanda50 wanda24 sparsegpt50 blocks4}
T=${THREADS:-$(nproc)}
mkdir -p "$W"
log() { echo "[$(date +%T)] $*" | tee -a "$W/progress.log"; }

[ -f "$W/f16.gguf" ] || { log "export f16"; "$APR" export "$SRC" "$W/f16.gguf" --format gguf --type f16 >/dev/null; }
ppl() { # ppl NAME MODEL
    [ -f "$W/$1.ppl.json" ] && return 0
    log "perplexity $1"
    "$APR" eval perplexity "$2" --data "$DATA/code-ppl.py.txt" -t "$T" --json >"$W/$1.ppl.tmp"
    mv "$W/$1.ppl.tmp" "$W/$1.ppl.json"
    log "done $1: $(cat "$W/$1.ppl.json")"
}
prune() { # prune NAME ARGS...
    local name=$1
    shift
    if [ ! -f "$W/$name.gguf" ]; then
        log "prune $name: $*"
        /usr/bin/time -v "$APR" prune "$W/f16.gguf" "$W/$name.gguf" --calib "$DATA/calib-code.py.txt" \
            -t "$T" --json ${PRUNE_ARGS:-} "$@" >"$W/$name.prune.json" 2>"$W/$name.prune.log"
        log "pruned $name: $(grep -E 'Elapsed|Maximum resident' "$W/$name.prune.log" | tr -s ' ' | tr '\n' ' ')"
    fi
    ppl "$name" "$W/$name.gguf"
}
for s in $STEPS; do
    case $s in
        base) ppl base "$W/f16.gguf" ;;
        magnitude50) prune magnitude50 --method magnitude --sparsity 0.5 ;;
        wanda50) prune wanda50 --method wanda --sparsity 0.5 ;;
        wanda24) prune wanda24 --method wanda --pattern 2:4 ;;
        sparsegpt50) prune sparsegpt50 --method sparsegpt --sparsity 0.5 ;;
        blocks4) prune blocks4 --method blocks --drop 4 ;;
        *) echo "unknown step $s" >&2; exit 2 ;;
    esac
done
log "steps done: $STEPS"

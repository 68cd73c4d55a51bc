#!/usr/bin/env bash
# Makes crates/apr-ops/tests/fixtures/quant-llamacpp.json, the reference the quantization
# parity test compares against: the tiny f32 model and imatrix (written by the test code
# itself, deterministic from a seed) quantized by llama.cpp's llama-quantize to every type
# `apr quantize` accepts, with and without the imatrix; per tensor the output type and the
# sha256 of its data, read back with llama.cpp's gguf-py. Needs the peer llama.cpp build
# (not in CI: the JSON it writes is committed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEER=${LLAMA_CPP:-$HOME/.cache/apr/peer/llama.cpp}
BIN=$PEER/build/bin
OUT=$ROOT/crates/apr-ops/tests/fixtures/quant-llamacpp.json
TYPES="F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cd "$ROOT"
APR_QUANT_FIXTURE_DIR=$WORK nice -n 10 cargo test -q -p apr-ops --test quant_parity \
    write_fixture_inputs -- --ignored --exact >/dev/null
for t in $TYPES; do
    "$BIN/llama-quantize" "$WORK/tiny-f32.gguf" "$WORK/$t-plain.gguf" "$t" 2 >"$WORK/$t-plain.log" 2>&1 ||
        { cat "$WORK/$t-plain.log"; exit 1; }
    "$BIN/llama-quantize" --imatrix "$WORK/tiny-imatrix.gguf" "$WORK/tiny-f32.gguf" \
        "$WORK/$t-imatrix.gguf" "$t" 2 >"$WORK/$t-imatrix.log" 2>&1 ||
        { cat "$WORK/$t-imatrix.log"; exit 1; }
done
# The current llama-quantize's type choice for the real 0.5B model (a dry run: types only).
REAL=$HOME/.cache/apr/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
REAL_OUT=$ROOT/crates/apr-ops/tests/fixtures/real-0.5b-q4_k_m-dryrun.json
if [ -f "$REAL" ]; then
    "$BIN/llama-quantize" --dry-run --allow-requantize "$REAL" "$WORK/dry.gguf" Q4_K_M 2 2>&1 |
        python3 -c '
import json, re, sys
types, n_fallback = {}, 0
for line in sys.stdin:
    f = re.search(r"WARNING: (\d+) of \d+ tensor\(s\) required fallback", line)
    if f:
        n_fallback = int(f.group(1))
    m = re.match(r"\[\s*\d+/\s*\d+\]\s+(\S+)\s+- \[.*\], type =\s+(\S+),.*?(?:\((\S+)\))?\s*$", line)
    if m:
        types[m.group(1)] = (m.group(3) or m.group(2)).upper()
json.dump({"made_by": "llama-quantize --dry-run --allow-requantize REAL Q4_K_M (scripts/quant-fixtures.sh)",
           "n_fallback": n_fallback, "types": types}, open(sys.argv[1], "w"), indent=1, sort_keys=True)
' "$REAL_OUT"
fi
VERSION=$("$BIN/llama-cli" --version 2>&1 | grep -m1 -i version || true)

PYTHONPATH=$PEER/gguf-py python3 - "$WORK" "$OUT" "$TYPES" "$VERSION" <<'PY'
import hashlib, json, sys
import gguf

work, out, types, version = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4]
def sha_file(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()
res = {
    "made_by": "scripts/quant-fixtures.sh (llama-quantize of the tiny model, read with gguf-py)",
    "llama_cpp": version,
    "source_sha256": sha_file(f"{work}/tiny-f32.gguf"),
    "imatrix_sha256": sha_file(f"{work}/tiny-imatrix.gguf"),
    "types": {},
}
for t in types:
    res["types"][t] = {}
    for mode in ("plain", "imatrix"):
        r = gguf.GGUFReader(f"{work}/{t}-{mode}.gguf")
        res["types"][t][mode] = {
            x.name: [x.tensor_type.name, hashlib.sha256(x.data.tobytes()).hexdigest()]
            for x in r.tensors
        }
json.dump(res, open(out, "w"), indent=1, sort_keys=True)
print(f"wrote {out}")
PY

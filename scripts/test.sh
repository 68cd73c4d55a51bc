#!/usr/bin/env bash
# The test command: provisions the real 0.5B model, then builds once (optimized: the tests run
# the real model) and runs every test, the slow ones on the real model included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-models.sh 0.5b
cargo test --release --workspace -- --include-ignored

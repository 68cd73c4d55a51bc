#!/usr/bin/env python3
"""A copy of a float GGUF model with seeded Gaussian noise added to every 2-D weight, as a
stand-in for a finetuned variant in merge tests (issue: merge the 1.5B with a perturbed
copy). Noise per tensor: N(0, (scale * std(W))^2). Needs numpy and llama.cpp's gguf-py
(PYTHONPATH=$HOME/.cache/apr/peer/llama.cpp/gguf-py). Dev tool only: nothing in apr's model
path uses Python.

    scripts/perturb-gguf.py IN.gguf OUT.gguf [--seed 0] [--scale 0.02]
"""
import argparse
import shutil
import sys

import numpy as np

import gguf


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=0.02)
    a = ap.parse_args()
    shutil.copyfile(a.src, a.out)
    r = gguf.GGUFReader(a.out, "r+")
    rng = np.random.Generator(np.random.PCG64(a.seed))
    n = 0
    for t in r.tensors:
        if len(t.shape) < 2 or t.tensor_type not in (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32):
            continue
        w = t.data
        x = w.astype(np.float32)
        x += rng.standard_normal(x.shape, dtype=np.float32) * (a.scale * float(x.std()))
        w[...] = x.astype(w.dtype)
        n += 1
    r.data.flush()
    print(f"{a.out}: {n} tensors perturbed (seed {a.seed}, scale {a.scale})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

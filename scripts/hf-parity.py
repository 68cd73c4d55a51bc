#!/usr/bin/python3
"""Hugging Face transformers parity of `apr` on an HF directory (dev script, not in CI).

Checks, on an f32 HF directory (e.g. one written by
`apr export MODEL DIR --format safetensors --type f32`):
  1. transformers loads the directory (config.json, safetensors, tokenizer files);
  2. transformers' tokenizer encodes each prompt to the ids `apr` uses;
  3. the logits at every prompt position agree: max |apr - hf| / max |hf| < 1e-3, with apr
     run f32 end to end (`--kv-type f32`; f32 weights take f32 activations).

Usage: scripts/hf-parity.py DIR [--apr target/release/apr] [--tol 1e-3]

Environment (CPU torch without CUDA libraries): PyPI's torch wheel needs CUDA libraries, so
this runs on Debian's torch under the system interpreter:
    apt-get install python3-torch            # torch 1.13.1 (Debian bookworm)
    /usr/bin/python3 -m pip install --break-system-packages transformers==4.46.3
(transformers 4.46 is a recent release that still supports torch 1.13.)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = [
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "<|im_start|>user\nWrite a quicksort in Python.<|im_end|>\n<|im_start|>assistant\n",
    "The quick brown fox jumps over the lazy dog. 1234567 + 89 = ",
]


def apr_logits(apr, model_dir, prompt, workdir):
    out = os.path.join(workdir, "logits.f32")
    cmd = [apr, "run", model_dir, "--raw", "--prompt", prompt, "--kv-type", "f32",
           "--temperature", "0", "--max-tokens", "1", "--logits-out", out, "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"apr failed ({res.returncode}): {res.stderr}")
    j = json.loads(res.stdout)
    ids, n_vocab = j["prompt_ids"], j["n_vocab"]
    logits = np.fromfile(out, dtype="<f4").reshape(len(ids), n_vocab)
    return ids, logits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--apr", default="target/release/apr")
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args()
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(a.dir)
    model = AutoModelForCausalLM.from_pretrained(a.dir, torch_dtype=torch.float32)
    model.eval()
    worst, ok = 0.0, True
    rows = []
    with tempfile.TemporaryDirectory() as td:
        for p in PROMPTS:
            ids, ours = apr_logits(a.apr, a.dir, p, td)
            hf_ids = tok(p, add_special_tokens=True)["input_ids"]
            with torch.no_grad():
                ref = model(torch.tensor([ids])).logits[0].float().numpy()
            ours = ours[:, : ref.shape[1]]
            rel = np.abs(ours - ref).max(axis=1) / np.abs(ref).max(axis=1)
            same_argmax = bool((ours.argmax(1) == ref.argmax(1)).all())
            row = {
                "prompt": p[:40],
                "tokens": len(ids),
                "tokenizer_ids_equal": hf_ids == ids,
                "max_rel_diff": float(rel.max()),
                "argmax_equal_every_position": same_argmax,
            }
            rows.append(row)
            worst = max(worst, float(rel.max()))
            ok &= row["tokenizer_ids_equal"] and rel.max() < a.tol
    print(json.dumps({"transformers": __import__("transformers").__version__,
                      "torch": torch.__version__, "tol": a.tol, "worst": worst,
                      "pass": bool(ok), "prompts": rows}, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The quality table of docs/quantization.md from scripts/quant-quality.sh's work folder:
per type the file size, llama-perplexity's PPL(Q), its ratio to the f16 source's, the mean
KL divergence and the share of positions with the same top token, for `apr quantize` (and
`--imatrix`), and whether llama-quantize's tensor data are the same bytes.

    scripts/quant-quality-table.py [WORKDIR]
"""
import os
import re
import sys

W = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/apr/quality")
TYPES = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K"]


def stats(name):
    p = os.path.join(W, f"{name}.ppl.log")
    if not os.path.exists(p):
        return None
    t = open(p).read()
    def g(pat):
        m = re.search(pat, t)
        return float(m.group(1)) if m else None
    return {
        "ppl": g(r"Mean PPL\(Q\)\s*:\s*([\d.]+)") or g(r"Final estimate: PPL = ([\d.]+)"),
        "ppl_sd": g(r"Mean PPL\(Q\)\s*:\s*[\d.]+\s*±\s*([\d.]+)"),
        "ratio": g(r"Mean PPL\(Q\)/PPL\(base\)\s*:\s*([\d.]+)"),
        "kld": g(r"Mean\s+KLD:\s*([-\d.]+)"),
        "top": g(r"Same top p:\s*([\d.]+)"),
    }


def chunk_row(name, k):
    """The running figures after chunk k of a KL-divergence log: (PPL, mean KLD, same top %)."""
    p = os.path.join(W, f"{name}.ppl.log")
    for line in open(p):
        f = line.split()
        if f and f[0] == str(k) and len(f) >= 15:
            return float(f[1]), float(f[7]), float(f[14])
    return None


def size(name):
    p = os.path.join(W, f"{name}.gguf")
    return os.path.getsize(p) / 2**30 if os.path.exists(p) else None


base = stats("f16")
print(f"f16 source: {size('f16'):.2f} GiB, PPL {base['ppl']:.4f}\n")
print("| type | size GiB | PPL | vs f16 | mean KLD | same top | llama-quantize's tensors |")
print("|---|---|---|---|---|---|---|")
for t in TYPES:
    a = stats(f"apr-{t}")
    if a is None:
        continue
    sp = os.path.join(W, f"same-{t}.txt")
    same = open(sp).read().strip() if os.path.exists(sp) else "?"
    print(f"| {t} | {size('apr-' + t):.3f} | {a['ppl']:.4f} | {(a['ratio'] - 1) * 100:+.2f}% | "
          f"{a['kld']:.5f} | {a['top']:.2f}% | {same} |")

def last_chunk(name):
    k = 0
    for line in open(os.path.join(W, f"{name}.ppl.log")):
        f = line.split()
        if len(f) >= 15 and f[0].isdigit():
            k = int(f[0])
    return k


print("\nWith `--imatrix` (each row over the chunks its run measured):\n")
print("| type | without: PPL | mean KLD | same top | with: PPL | mean KLD | same top | PPL change |")
print("|---|---|---|---|---|---|---|---|")
for t in TYPES:
    i = stats(f"apr-{t}-imat")
    if i is None:
        continue
    k = last_chunk(f"apr-{t}-imat")
    p, kl, top = chunk_row(f"apr-{t}", k)
    print(f"| {t} ({k} chunks) | {p:.4f} | {kl:.5f} | {top:.2f}% | {i['ppl']:.4f} | {i['kld']:.5f} | "
          f"{i['top']:.2f}% | {(i['ppl'] / p - 1) * 100:+.2f}% |")

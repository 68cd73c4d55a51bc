#!/usr/bin/env python3
"""HumanEval generation by the peer (llama.cpp's llama-server), for side-by-side wall time
and per-task comparison with `apr eval humaneval`.

It feeds llama-server exactly the prompts an apr run used (the `prompt` field of that run's
samples.jsonl, so both engines see the same text) with the method of ../shared/models.md:
`/completion`, temperature 0, top_k 1, n_predict 768, stop on "```", "<|im_end|>",
"<|endoftext|>". It writes EvalPlus-format samples (`task_id`, `completion`), scored the
OpenAI human-eval way (prompt + completion) by:

  apr eval humaneval --samples OUT.jsonl --out DIR

  scripts/llamacpp-humaneval.py --model ~/.cache/apr/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \\
      --prompts results/qwen2.5-coder-1.5b-instruct/humaneval/samples.jsonl --limit 40 \\
      --out /tmp/llamacpp-he15.jsonl

The wall time printed covers generation only (server start and model load excluded), as
apr's generation wall time does not include its own model load either.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

STOPS = ["```", "<|im_end|>", "<|endoftext|>"]


def peer_bin():
    here = os.path.dirname(os.path.abspath(__file__))
    tool = os.path.join(here, "..", "..", "shared", "tools", "llamacpp-peer.sh")
    out = subprocess.run(["bash", tool], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout=600):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True, help="an apr humaneval samples.jsonl (its prompt field)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="only the first N tasks")
    ap.add_argument("--bin", default=None, help="llama.cpp bin directory (default: built by llamacpp-peer.sh)")
    args = ap.parse_args()

    prompts = []
    with open(args.prompts) as f:
        for line in f:
            r = json.loads(line)
            if r.get("sample", 0) == 0:
                prompts.append((r["task_id"], r["prompt"]))
    prompts.sort(key=lambda p: int(p[0].split("/")[1]))
    prompts = prompts[: args.limit]

    port = free_port()
    server = os.path.join(args.bin or peer_bin(), "llama-server")
    log = open(args.out + ".server.log", "w")
    proc = subprocess.Popen([server, "-m", args.model, "-t", str(args.threads), "-c", "4096", "-np", "1",
                             "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                sys.exit(f"llama-server exited with {proc.returncode}; see {args.out}.server.log")
            time.sleep(0.5)
        t0 = time.time()
        n_tokens = 0
        with open(args.out, "w") as out:
            for i, (tid, prompt) in enumerate(prompts):
                r = post(base + "/completion", {"prompt": prompt, "temperature": 0, "top_k": 1, "n_predict": 768,
                                                "stop": STOPS, "cache_prompt": False})
                n_tokens += r.get("tokens_predicted", 0)
                out.write(json.dumps({"task_id": tid, "completion": r["content"]}) + "\n")
                out.flush()
                el = time.time() - t0
                print(f"\r{i + 1}/{len(prompts)} {el:.0f}s {n_tokens / el:.1f} tok/s", end="", file=sys.stderr, flush=True)
        wall = time.time() - t0
        print(file=sys.stderr)
        print(json.dumps({"tasks": len(prompts), "wall_s": round(wall, 1), "gen_tokens": n_tokens,
                          "gen_tok_s": round(n_tokens / wall, 2)}))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()

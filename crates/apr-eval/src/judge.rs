//! Judges: one verdict per sample, from Python judge programs run in the [`Sandbox`].
//! HumanEval / MBPP follow OpenAI human-eval's `execution.py` (the program with its tests runs
//! to its end within the timeout); HumanEval+ / MBPP+ follow EvalPlus 0.3.1
//! (`evalplus/evaluate.py`, `evalplus/eval/__init__.py`: differential testing against the
//! canonical solution's outputs on `base_input` and `plus_input`).
//! References: <https://github.com/openai/human-eval>, <https://github.com/evalplus/evalplus/tree/v0.3.1>.
//!
//! # How a verdict is decided
//! Each run is `python3 main.py` in the sandbox, the judge program (`judge/*.py`, embedded)
//! as main.py and everything it needs on stdin: a JSON header with a fresh random nonce, the
//! solution, the task record and (plus) the ground-truth pickle. The judge writes
//! `APR-STARTED-<nonce>` before candidate code runs and `APR-VERDICT-<nonce> ...` after the
//! tests ran to their end, on a private copy of stdout; the candidate's own stdout/stderr go
//! to /dev/null. Only a verdict line with the nonce can pass a sample: exit status 0, or
//! output that looks like a pass, never does.
//!
//! # EvalPlus 0.3.1 behaviour reproduced, quirks included
//! 1. Ground truth: prompt + canonical_solution exec'd in a fresh dict once per split, each
//!    input deep-copied and timed with `time.time()`, sequentially in one process; for the
//!    MBPP "not None" tasks the expected outputs are `out is not None` booleans.
//! 2. Per-input limit max(min_time_limit 1.0, 4.0 x canonical time); process deadline
//!    min(60, sum of limits) + 1, joined with one more second (+1 again without fast_check).
//! 3. base and plus are separate runs; the plus run tests `plus_input` only (the "plus"
//!    pass@k asks both to pass). fast_check: the run stops at the first failing input.
//! 4. A per-input time limit that fires is a **fail**, not a timeout; EvalPlus says
//!    "timeout" only when the process had to be killed (here: the watchdog or the sandbox
//!    deadline).
//! 5. HumanEval/32 (`find_zero`) can never pass: its oracle checks |poly(x)| <= atol and then
//!    `continue`s past the bookkeeping, so no input is ever recorded as done (verdict kind
//!    `unrecorded`).
//! 6. atol: a task's atol 0 becomes 1e-6 at the first float expected output (a float, a
//!    non-empty list/tuple of only floats, a float ndarray) and stays 1e-6 for the rest of the
//!    run, so later int outputs are compared with a tolerance too. The tolerance path asserts
//!    `type(out) == type(exp)` and equal lengths, then `numpy.allclose(rtol=1e-7)`; the exact
//!    path is plain `==` (so 1 == 1.0 == True passes there).
//! 7. Special oracles are keyed by entry-point name: `are_equivalent` (Mbpp/164) passes
//!    whatever it returns, `sum_div` (Mbpp/295) may return 0, `surface_Area` (Mbpp/581) may
//!    use the apex-height reading (rounded, within atol), `digit_distance_nums` (Mbpp/558,
//!    missing from the data README's list) may use the zero-padded reading; the
//!    MBPP_OUTPUT_SET_EQ tasks compare `set(out) == set(exp)` (replacing, not or-ing, the
//!    exact match); the MBPP_OUTPUT_NOT_NONE tasks accept any non-None output, or a bool
//!    equal to the stored flag.
//! 8. MBPP+ inputs are deserialized per task (`mbpp_deserialize_inputs`); its quirks stay:
//!    tasks 75/413/444/753, 106/750 and 250/405/446/617/720/763/808 drop arguments past the
//!    second, Mbpp/115 turns an empty list into `{}` (a dict).
//! 9. Candidate inputs are not deep-copied (ground-truth ones are): a solution that mutates
//!    its arguments changes what the surface_Area / find_zero oracles see afterwards.
//! 10. exec of the solution's top level and the `==` comparisons run outside any per-input
//!     limit (only the process deadline bounds them); the entry point missing from the
//!     solution's globals is a fail; the globals dict is `{}`, so `__name__` is "builtins" and
//!     `if __name__ == "__main__":` blocks do not run.
//! 11. Recursion room: EvalPlus calls the entry point deep inside a pool worker's stack
//!     (969 more nested calls fit on CPython 3.11 when started as the `evalplus.evaluate`
//!     console script; `python -m evalplus.evaluate` leaves a few less); the judge pads its
//!     stack to the console script's room.
//! 12. The reference child has numpy, pandas and much of the standard library imported
//!     before its guard; the judge imports the common standard modules (and numpy/pandas when
//!     the solution names them) before its guard.
//! 13. HumanEval+'s `contract` field is not used when evaluating.
//!
//! The ground truth is computed outside the sandbox (the canonical solutions come with the
//! dataset and are trusted, as in EvalPlus), by the sandbox's interpreter with its environment.
//!
//! # Where apr differs on purpose
//! - A run that ends without a verdict and was not killed at the deadline (`os._exit`,
//!   a signal, the memory limit) is a **fail** (`no-verdict` / `killed`); both references call
//!   it "timed out"/"timeout" because they cannot tell.
//! - The 4 GiB RLIMIT_AS is the candidate's own: the judge is a fresh interpreter (about
//!   28 MB mapped when candidate code starts). The reference sets the same limit in a child
//!   forked from its evaluator, which already maps every task's inputs and expected outputs
//!   (3.07 GiB measured on MBPP+), so memory-heavy candidates fail there, by an amount that
//!   depends on the evaluator process; results/parity/README.md lists the tasks.
//! - PYTHONHASHSEED is 0 for the ground truth and every run (the reference uses one random
//!   seed per invocation, shared by its ground truth only when that was computed in the same
//!   invocation), so str-set iteration order is the same for canonical and candidate code.
//! - The deadline counts from when candidate code starts (a forked watchdog enforces it); the
//!   interpreter start and loading the ground truth come on top, as the reference's forked
//!   worker does not pay them.
//! - Float comparison uses numpy where it is importable; otherwise `allclose_py` (same
//!   results on nested lists/tuples of numbers, checked against numpy in tests), and
//!   [`Judge::float_compare`] says which ran.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::datasets::{hex, Benchmark, Dataset, Task};
use crate::sandbox::{self, Job, Outcome, Sandbox, SandboxError};

/// human-eval / MBPP wall-clock limit per program (the brief's default; human-eval uses 3 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// EvalPlus `DEFAULT_MIN_TIME_LIMIT`.
pub const DEFAULT_MIN_TIME_LIMIT: f64 = 1.0;
/// EvalPlus `DEFAULT_GT_TIME_LIMIT_FACTOR`.
pub const DEFAULT_GT_TIME_LIMIT_FACTOR: f64 = 4.0;
/// EvalPlus `EVALPLUS_TIMEOUT_PER_TASK` default: the cap on the summed per-input limits.
pub const EVALPLUS_TASK_TIMEOUT_CAP: f64 = 60.0;
/// Nested calls that fit inside the entry point under EvalPlus 0.3.1 on CPython 3.11
/// (measured: a candidate recursing from its entry point gets 969 frames deep).
pub const EVALPLUS_RECURSION_ROOM: u32 = 969;
/// Bumped when the ground-truth files change layout.
const GT_FORMAT: u32 = 2;
/// Sandbox time for the interpreter start and the judge's setup, before the deadline counts.
const SETUP_SLACK: Duration = Duration::from_secs(10);
/// ... plus this much per MiB of ground truth to unpickle (MBPP+ has an 800 MB one).
const SETUP_SLACK_PER_MIB: Duration = Duration::from_millis(100);
/// Verdict messages are cut to this many bytes.
const MESSAGE_CAP: usize = 400;
/// Stderr kept in judge errors.
const STDERR_TAIL: usize = 600;

const RUNTIME_PY: &str = include_str!("judge/runtime.py");
const PROGRAM_PY: &str = include_str!("judge/program.py");
const EVALPLUS_DATA_PY: &str = include_str!("judge/evalplus_data.py");
const EVALPLUS_PY: &str = include_str!("judge/evalplus.py");
const GROUNDTRUTH_PY: &str = include_str!("judge/groundtruth.py");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Timeout,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Timeout => "timeout",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub status: Status,
    /// Exception class ("AssertionError", "SyntaxError", ...), or one of "wrong-output",
    /// "timeout", "killed", "no-verdict", "unrecorded"; None on a pass.
    pub error_kind: Option<String>,
    /// Short: the exception's last traceback line, the failing input, capped.
    pub message: String,
    pub wall_s: f64,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.status == Status::Pass
    }
}

/// For HumanEval / MBPP only `base` is set; for the plus benchmarks `plus` too unless
/// base-only was asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlusVerdict {
    pub base: Verdict,
    pub plus: Option<Verdict>,
}

impl PlusVerdict {
    /// EvalPlus's "+" figure: base and plus both pass (base alone without plus).
    pub fn passed(&self) -> bool {
        self.base.passed() && self.plus.as_ref().is_none_or(Verdict::passed)
    }
}

#[derive(Debug, Clone)]
pub struct JudgeOptions {
    /// HumanEval / MBPP: wall-clock limit of the whole program.
    pub timeout: Duration,
    /// Plus: floor of the per-input limit.
    pub min_time_limit: f64,
    /// Plus: per-input limit = factor x canonical time.
    pub gt_time_limit_factor: f64,
    /// Plus: judge base_input only.
    pub base_only: bool,
    /// Plus: stop at the first failing input (EvalPlus `evaluate` default).
    pub fast_check: bool,
    /// Plus: pad the stack to EvalPlus's recursion room (None: as deep as it comes).
    pub recursion_room: Option<u32>,
    /// Plus: where ground truth is cached (None: [`cache_dir`]).
    pub cache_dir: Option<PathBuf>,
    /// RLIMIT_AS the judge sets for itself (EvalPlus: 4 GiB, capped at physical memory).
    pub mem_bytes: Option<u64>,
    /// Plus: compare floats with numpy.allclose when numpy is importable (false: always the
    /// pure-Python stand-in).
    pub use_numpy: bool,
}

impl Default for JudgeOptions {
    fn default() -> Self {
        JudgeOptions {
            timeout: DEFAULT_TIMEOUT,
            min_time_limit: DEFAULT_MIN_TIME_LIMIT,
            gt_time_limit_factor: DEFAULT_GT_TIME_LIMIT_FACTOR,
            base_only: false,
            fast_check: true,
            recursion_room: Some(EVALPLUS_RECURSION_ROOM),
            cache_dir: None,
            mem_bytes: None,
            use_numpy: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("task {0} is not in the dataset this judge was made for")]
    UnknownTask(String),
    #[error("ground truth for {task} is missing: call Judge::prepare first")]
    NotPrepared { task: String },
    #[error("ground truth: {0}")]
    GroundTruth(String),
    #[error("ground truth cache {}: {source}", path.display())]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {judge} judge failed to start for {task} ({status}): {detail}")]
    Crashed {
        judge: &'static str,
        task: String,
        status: String,
        detail: String,
    },
}

/// How the plus judges compared floats: the numpy found (if any) and how many runs took
/// the tolerance path with numpy and with the pure-Python stand-in.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FloatCompare {
    pub numpy_version: Option<String>,
    pub numpy_runs: u64,
    pub python_runs: u64,
}

/// Where EvalPlus ground truth is cached: `$APR_CACHE_DIR/evalplus`, else next to the model
/// cache (`~/.cache/apr/evalplus`).
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("APR_CACHE_DIR") {
        return PathBuf::from(d).join("evalplus");
    }
    let models = apr_engine::resolve::models_dir();
    models
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(models)
        .join("evalplus")
}

/// One split's ground truth: canonical seconds per input (the outputs stay on disk).
#[derive(Debug, Clone, Deserialize)]
struct Times {
    base: Vec<f64>,
    plus: Vec<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Split {
    Base,
    Plus,
}

impl Split {
    fn name(self) -> &'static str {
        match self {
            Split::Base => "base",
            Split::Plus => "plus",
        }
    }
}

pub struct Judge<'a> {
    dataset: &'a Dataset,
    sandbox: &'a Sandbox,
    opts: JudgeOptions,
    program_script: String,
    plus_script: String,
    /// Plus: the prepared ground-truth directory and per-task times.
    gt_dir: Option<PathBuf>,
    times: HashMap<String, Times>,
    gt_note: String,
    numpy_version: Option<String>,
    numpy_runs: AtomicU64,
    python_runs: AtomicU64,
}

impl<'a> Judge<'a> {
    pub fn new(dataset: &'a Dataset, sandbox: &'a Sandbox, opts: JudgeOptions) -> Judge<'a> {
        Judge {
            dataset,
            sandbox,
            opts,
            program_script: format!("{RUNTIME_PY}\n{PROGRAM_PY}"),
            plus_script: format!("{RUNTIME_PY}\n{EVALPLUS_DATA_PY}\n{EVALPLUS_PY}"),
            gt_dir: None,
            times: HashMap::new(),
            gt_note: String::new(),
            numpy_version: None,
            numpy_runs: AtomicU64::new(0),
            python_runs: AtomicU64::new(0),
        }
    }

    pub fn options(&self) -> &JudgeOptions {
        &self.opts
    }

    /// Plus benchmarks: load the ground truth of this dataset from the cache, computing it
    /// first when missing (sequentially, with one progress line per task), and find out
    /// whether numpy is importable in the sandbox. A no-op for HumanEval / MBPP.
    pub fn prepare(&mut self, progress: &dyn Fn(&str)) -> Result<(), JudgeError> {
        if !self.dataset.benchmark.is_plus() {
            return Ok(());
        }
        self.numpy_version = if self.opts.use_numpy {
            self.probe_numpy()?
        } else {
            None
        };
        let root = self.opts.cache_dir.clone().unwrap_or_else(cache_dir);
        let dir = root.join(&self.dataset.sha256);
        let t0 = Instant::now();
        if complete(&dir, self.dataset.tasks.len()) {
            self.gt_note = format!("cached in {}", dir.display());
        } else {
            self.compute_ground_truth(&root, &dir, progress)?;
            self.gt_note = format!(
                "computed in {:.1}s into {}",
                t0.elapsed().as_secs_f64(),
                dir.display()
            );
        }
        let mut times = HashMap::with_capacity(self.dataset.tasks.len());
        for t in &self.dataset.tasks {
            let path = dir.join(format!("{}.times.json", safe_name(&t.task_id)));
            let text = std::fs::read_to_string(&path).map_err(|e| JudgeError::Cache {
                path: path.clone(),
                source: e,
            })?;
            let v: Times = serde_json::from_str(&text)
                .map_err(|e| JudgeError::GroundTruth(format!("{}: {e}", path.display())))?;
            times.insert(t.task_id.clone(), v);
        }
        self.times = times;
        self.gt_dir = Some(dir);
        Ok(())
    }

    /// One line for reports: the rules, the float comparison, the ground truth.
    pub fn describe(&self) -> String {
        let o = &self.opts;
        match self.dataset.benchmark {
            Benchmark::HumanEval | Benchmark::Mbpp => format!(
                "human-eval execution rules (program + tests run to the end), timeout {}s",
                o.timeout.as_secs_f64()
            ),
            _ => {
                let f = self.float_compare();
                let floats = match &f.numpy_version {
                    Some(v) => format!("numpy {v} allclose"),
                    None if !o.use_numpy => "pure-Python allclose (numpy off)".into(),
                    None => "pure-Python allclose (numpy not importable)".into(),
                };
                format!(
                    "evalplus 0.3.1 rules ({}, fast_check {}, min_time_limit {}s, gt factor {}); \
                     float comparison: {floats} ({} runs numpy, {} pure-Python); ground truth {}",
                    if o.base_only {
                        "base only"
                    } else {
                        "base + plus"
                    },
                    o.fast_check,
                    o.min_time_limit,
                    o.gt_time_limit_factor,
                    f.numpy_runs,
                    f.python_runs,
                    self.gt_note
                )
            }
        }
    }

    pub fn float_compare(&self) -> FloatCompare {
        FloatCompare {
            numpy_version: self.numpy_version.clone(),
            numpy_runs: self.numpy_runs.load(Ordering::Relaxed),
            python_runs: self.python_runs.load(Ordering::Relaxed),
        }
    }

    /// Judge one sample. `solution` is the whole program (for HumanEval, prompt and
    /// completion already joined: what EvalPlus calls `solution`). Err only when the judge
    /// itself cannot work; anything the solution does ends in a verdict.
    pub fn check(&self, task: &Task, solution: &str) -> Result<PlusVerdict, JudgeError> {
        match self.dataset.benchmark {
            Benchmark::HumanEval => {
                let program = format!(
                    "{solution}\n{}\n\ncheck({})\n",
                    task.test_code, task.entry_point
                );
                Ok(PlusVerdict {
                    base: self.run_program(task, &program)?,
                    plus: None,
                })
            }
            Benchmark::Mbpp => {
                let program = format!(
                    "{solution}\n{}\n{}\n",
                    task.test_code,
                    task.tests.join("\n")
                );
                Ok(PlusVerdict {
                    base: self.run_program(task, &program)?,
                    plus: None,
                })
            }
            Benchmark::HumanEvalPlus | Benchmark::MbppPlus => {
                let base = self.run_plus(task, solution, Split::Base)?;
                let plus = if self.opts.base_only {
                    None
                } else {
                    Some(self.run_plus(task, solution, Split::Plus)?)
                };
                Ok(PlusVerdict { base, plus })
            }
        }
    }

    fn run_program(&self, task: &Task, program: &str) -> Result<Verdict, JudgeError> {
        let timeout = self.opts.timeout.as_secs_f64();
        // human-eval joins its worker for timeout + 1 s.
        let deadline = timeout + 1.0;
        let header = json!({
            "timeout": timeout,
            "deadline": deadline,
            "mem_bytes": self.opts.mem_bytes,
        });
        let nonce = nonce();
        let stdin = request(&nonce, header, &[program.as_bytes()], &[]);
        let out = self.sandbox.run(&Job {
            script: &self.program_script,
            stdin: &stdin,
            timeout: Some(Duration::from_secs_f64(deadline) + SETUP_SLACK),
        })?;
        let (v, _) = read_verdict("program", task, &nonce, &out, deadline)?;
        Ok(v)
    }

    fn run_plus(&self, task: &Task, solution: &str, split: Split) -> Result<Verdict, JudgeError> {
        let times = self.times.get(&task.task_id).ok_or_else(|| {
            match self.dataset.task(&task.task_id) {
                None => JudgeError::UnknownTask(task.task_id.clone()),
                Some(_) => JudgeError::NotPrepared {
                    task: task.task_id.clone(),
                },
            }
        })?;
        let secs = match split {
            Split::Base => &times.base,
            Split::Plus => &times.plus,
        };
        let o = &self.opts;
        let limits: f64 = secs
            .iter()
            .map(|t| o.min_time_limit.max(o.gt_time_limit_factor * t))
            .sum();
        // untrusted_check: min(cap, sum) + 1 (+1 without fast_check), then join(timeout + 1).
        let deadline =
            EVALPLUS_TASK_TIMEOUT_CAP.min(limits) + 2.0 + if o.fast_check { 0.0 } else { 1.0 };
        let header = json!({
            "dataset": if self.dataset.benchmark == Benchmark::HumanEvalPlus { "humaneval" } else { "mbpp" },
            "split": split.name(),
            "min_time_limit": o.min_time_limit,
            "gt_time_limit_factor": o.gt_time_limit_factor,
            "fast_check": o.fast_check,
            "recursion_room": o.recursion_room,
            "use_numpy": o.use_numpy,
            "deadline": deadline,
            "mem_bytes": o.mem_bytes,
        });
        let nonce = nonce();
        let dir = self
            .gt_dir
            .as_ref()
            .ok_or_else(|| JudgeError::NotPrepared {
                task: task.task_id.clone(),
            })?;
        let path = dir.join(format!("{}.{}.pkl", safe_name(&task.task_id), split.name()));
        // The pickle is read straight into the request (MBPP+ has an 800 MB one).
        let mut stdin = request(
            &nonce,
            header,
            &[solution.as_bytes(), task.raw.as_bytes()],
            &[],
        );
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut stdin))
            .map_err(|e| JudgeError::Cache { path, source: e })?;
        let slack = SETUP_SLACK + SETUP_SLACK_PER_MIB * (stdin.len() >> 20) as u32;
        let out = self.sandbox.run(&Job {
            script: &self.plus_script,
            stdin: &stdin,
            timeout: Some(Duration::from_secs_f64(deadline) + slack),
        })?;
        let (v, floats) = read_verdict("evalplus", task, &nonce, &out, deadline)?;
        match floats.as_str() {
            "numpy" => self.numpy_runs.fetch_add(1, Ordering::Relaxed),
            "python" => self.python_runs.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        Ok(v)
    }

    fn probe_numpy(&self) -> Result<Option<String>, JudgeError> {
        let out = self.sandbox.run(&Job {
            script: "import numpy\nprint(numpy.__version__)\n",
            stdin: &[],
            timeout: Some(Duration::from_secs(30)),
        })?;
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok((out.success() && !v.is_empty()).then_some(v))
    }

    /// Run groundtruth.py (trusted, outside the sandbox, with the sandbox's interpreter and
    /// environment) into a fresh directory, then move it into place.
    fn compute_ground_truth(
        &self,
        root: &Path,
        dir: &Path,
        progress: &dyn Fn(&str),
    ) -> Result<(), JudgeError> {
        let cache_err = |path: &Path| {
            let path = path.to_path_buf();
            move |e| JudgeError::Cache { path, source: e }
        };
        std::fs::create_dir_all(root).map_err(cache_err(root))?;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = root.join(format!(
            "{}.tmp-{}-{}",
            self.dataset.sha256,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(cache_err(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(cache_err(&tmp))?;
        let dataset = if self.dataset.benchmark == Benchmark::HumanEvalPlus {
            "humaneval"
        } else {
            "mbpp"
        };
        let mut input =
            serde_json::to_vec(&json!({"dataset": dataset, "out_dir": tmp})).unwrap_or_default();
        for t in &self.dataset.tasks {
            input.push(b'\n');
            input.extend_from_slice(t.raw.as_bytes());
        }
        input.push(b'\n');
        let script = format!("{EVALPLUS_DATA_PY}\n{GROUNDTRUTH_PY}");
        let python = self.sandbox.python();
        let mut cmd = Command::new(python);
        cmd.arg("-s").arg("-B").arg("-c").arg(&script).env_clear();
        for (k, v) in sandbox::ENV {
            cmd.env(k, v);
        }
        let mut child = cmd
            .current_dir(&tmp)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                JudgeError::GroundTruth(format!("cannot start {}: {e}", python.display()))
            })?;
        let mut stdin = child.stdin.take();
        let feeder = std::thread::spawn(move || {
            if let Some(s) = stdin.as_mut() {
                let _ = s.write_all(&input);
            }
        });
        let mut last_error = String::new();
        let mut tail = Vec::new();
        if let Some(err) = child.stderr.take() {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("gt ") {
                    let mut f = rest.split(' ');
                    if let (Some(n), Some(task)) = (f.next(), f.next()) {
                        progress(&format!("ground truth {n} {task}"));
                    }
                } else if let Some(rest) = line.strip_prefix("gt-error ") {
                    last_error = rest.to_string();
                } else {
                    tail.push(line);
                }
            }
        }
        let _ = feeder.join();
        let status = child
            .wait()
            .map_err(|e| JudgeError::GroundTruth(e.to_string()))?;
        if !status.success() {
            let _ = std::fs::remove_dir_all(&tmp);
            let detail = if last_error.is_empty() {
                tail.join("\n")
            } else {
                last_error
            };
            return Err(JudgeError::GroundTruth(format!(
                "{} exited with {status}: {}",
                python.display(),
                cut(&detail, STDERR_TAIL)
            )));
        }
        let stamp = json!({"format": GT_FORMAT, "tasks": self.dataset.tasks.len(), "source": self.dataset.source});
        std::fs::write(tmp.join("complete.json"), stamp.to_string()).map_err(cache_err(&tmp))?;
        if dir.exists() {
            // A stale or partial copy (or one another process just finished): replace it.
            if complete(dir, self.dataset.tasks.len()) {
                let _ = std::fs::remove_dir_all(&tmp);
                return Ok(());
            }
            std::fs::remove_dir_all(dir).map_err(cache_err(dir))?;
        }
        std::fs::rename(&tmp, dir).map_err(cache_err(dir))?;
        Ok(())
    }
}

fn complete(dir: &Path, n_tasks: usize) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("complete.json")) else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    v["format"] == GT_FORMAT && v["tasks"] == n_tasks
}

/// Task id as a file name ("HumanEval/0" -> "HumanEval_0"), as groundtruth.py writes it.
fn safe_name(task_id: &str) -> String {
    task_id.replace('/', "_")
}

/// A fresh 128-bit nonce, hex.
fn nonce() -> String {
    let mut b = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !ok {
        // No /dev/urandom: std's per-process random SipHash keys, a clock and a counter.
        use std::hash::{BuildHasher, Hasher};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        for chunk in b.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos(),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
        }
    }
    hex(&b)
}

/// stdin of a judge: header line (with the nonce and section lengths), sections, tail.
fn request(nonce: &str, mut header: serde_json::Value, sections: &[&[u8]], tail: &[u8]) -> Vec<u8> {
    header["nonce"] = json!(nonce);
    header["sections"] = json!(sections.iter().map(|s| s.len()).collect::<Vec<_>>());
    let mut out = serde_json::to_vec(&header).unwrap_or_default();
    out.push(b'\n');
    let total: usize = sections.iter().map(|s| s.len()).sum::<usize>() + tail.len();
    out.reserve(total);
    for s in sections {
        out.extend_from_slice(s);
    }
    out.extend_from_slice(tail);
    out
}

/// The verdict of one run (and how floats were compared: "numpy", "python" or "-").
fn read_verdict(
    judge: &'static str,
    task: &Task,
    nonce: &str,
    out: &Outcome,
    deadline: f64,
) -> Result<(Verdict, String), JudgeError> {
    let wall_s = out.wall.as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let started_tag = format!("APR-STARTED-{nonce}");
    let deadline_tag = format!("APR-DEADLINE-{nonce}");
    let verdict_tag = format!("APR-VERDICT-{nonce} ");
    let (mut started, mut killed_at_deadline, mut fields) = (false, false, None);
    for line in stdout.lines() {
        if line == started_tag {
            started = true;
        } else if line == deadline_tag {
            killed_at_deadline = true;
        } else if let Some(rest) = line.strip_prefix(&verdict_tag) {
            fields = Some(rest.split(' ').map(str::to_string).collect::<Vec<_>>());
        }
    }
    let verdict = |status, kind: &str, message: String| Verdict {
        status,
        error_kind: Some(kind.to_string()),
        message: cut(&message, MESSAGE_CAP),
        wall_s,
    };
    if let Some(f) = fields.filter(|f| f.len() >= 5) {
        let text = |s: &str| decode_hex(s).unwrap_or_default();
        let status = match f[0].as_str() {
            "pass" => Status::Pass,
            "fail" => Status::Fail,
            "timeout" => Status::Timeout,
            _ => {
                return Err(JudgeError::Crashed {
                    judge,
                    task: task.task_id.clone(),
                    status: "setup error".into(),
                    detail: text(&f[2]),
                })
            }
        };
        let kind = text(&f[1]);
        let v = Verdict {
            status,
            error_kind: (status != Status::Pass).then_some(kind),
            message: cut(&text(&f[2]), MESSAGE_CAP),
            wall_s,
        };
        return Ok((v, f[4].clone()));
    }
    let v = if killed_at_deadline {
        verdict(
            Status::Timeout,
            "timeout",
            format!("killed at the {deadline:.1}s deadline"),
        )
    } else if !started {
        return Err(JudgeError::Crashed {
            judge,
            task: task.task_id.clone(),
            status: format!("{:?}", out.status),
            detail: cut(String::from_utf8_lossy(&out.stderr).trim(), STDERR_TAIL),
        });
    } else {
        match out.status {
            sandbox::Status::TimedOut => verdict(
                Status::Timeout,
                "timeout",
                format!("killed by the sandbox after {wall_s:.1}s"),
            ),
            sandbox::Status::Signaled(sig) => verdict(
                Status::Fail,
                "killed",
                format!("killed by signal {sig} before the tests finished"),
            ),
            sandbox::Status::Exited(code) => verdict(
                Status::Fail,
                "no-verdict",
                format!("exited with status {code} before the tests finished"),
            ),
        }
    };
    Ok((v, "-".into()))
}

fn decode_hex(s: &str) -> Option<String> {
    if s == "-" {
        return Some(String::new());
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    bytes.map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// At most `cap` bytes, cut on a char boundary.
fn cut(s: &str, cap: usize) -> String {
    if s.len() <= cap {
        return s.to_string();
    }
    let mut end = cap;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_cut() {
        assert_eq!(decode_hex("68c3a9").as_deref(), Some("hé"));
        assert_eq!(decode_hex("-").as_deref(), Some(""));
        assert_eq!(decode_hex("6"), None);
        assert_eq!(cut("héllo", 2), "h...");
        assert_eq!(nonce().len(), 32);
        assert_ne!(nonce(), nonce());
    }

    #[test]
    fn request_layout() {
        let r = request("abc", json!({"x": 1}), &[b"ab", b"c"], b"TAIL");
        let text = String::from_utf8(r).unwrap();
        let (head, rest) = text.split_once('\n').unwrap();
        let h: serde_json::Value = serde_json::from_str(head).unwrap();
        assert_eq!(h["nonce"], "abc");
        assert_eq!(h["sections"], json!([2, 1]));
        assert_eq!(rest, "abcTAIL");
    }
}

//! The examples a task shows in its prompt (MBPP's assertions, HumanEval's doctest examples),
//! run against a candidate in the sandbox: the signal for self-test reranking and reflexion.
//! Never used for scoring.

use crate::datasets::{Benchmark, Task};
use crate::sandbox::{Job, Sandbox};

const SCRIPT: &str = include_str!("visible/visible.py");

/// What running the visible examples said.
#[derive(Debug, Clone, PartialEq)]
pub enum Visible {
    Pass,
    Fail(String),
    /// The task shows no runnable example.
    NoExamples,
}

/// The assertions a prompt strategy shows for `task` (MBPP: all of them; MBPP+: the ones in
/// its prompt); HumanEval's are its doctest examples, run from the prompt text.
fn shown_tests(bench: Benchmark, task: &Task) -> Vec<String> {
    match bench {
        Benchmark::Mbpp => task.tests.clone(),
        Benchmark::MbppPlus => task
            .prompt
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("assert"))
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Runs `program` against the examples `task` shows.
pub fn run(sandbox: &Sandbox, bench: Benchmark, task: &Task, program: &str) -> Visible {
    let tests = shown_tests(bench, task);
    let doctest = match bench {
        Benchmark::HumanEval | Benchmark::HumanEvalPlus if task.prompt.contains(">>>") => {
            Some(task.prompt.as_str())
        }
        _ => None,
    };
    if tests.is_empty() && doctest.is_none() {
        return Visible::NoExamples;
    }
    let nonce = nonce();
    let job = serde_json::json!({
        "nonce": nonce, "program": program, "tests": tests,
        "doctest": doctest, "entry_point": task.entry_point,
    });
    let mut stdin = job.to_string().into_bytes();
    stdin.push(b'\n');
    let out = match sandbox.run(&Job {
        script: SCRIPT,
        stdin: &stdin,
        timeout: None,
    }) {
        Ok(o) => o,
        Err(e) => return Visible::Fail(format!("sandbox: {e}")),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(line) = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{nonce} ")))
    else {
        let err = String::from_utf8_lossy(&out.stderr);
        return Visible::Fail(format!(
            "did not finish ({:?}): {}",
            out.status,
            tail(&err, 800)
        ));
    };
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    match v["status"].as_str() {
        Some("pass") => Visible::Pass,
        _ => Visible::Fail(
            v["message"]
                .as_str()
                .unwrap_or("unreadable verdict")
                .to_string(),
        ),
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// A per-run marker the program cannot guess.
pub fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let a = h.finish();
    let b = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("apr-{a:016x}{b:016x}")
}

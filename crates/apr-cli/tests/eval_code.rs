//! `apr eval humaneval|humanevalplus|mbpp|mbppplus` end to end: samples files scored in the
//! real sandbox (canonical solutions from the datasets must pass, broken ones fail), the
//! results folder and its resume, bad input, and a short generation run on the real 0.5B
//! model.

mod common;

use common::{apr, qwen05, stderr, stdout_json};
use std::io::Write;
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apr-eval-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The first `n` HumanEval tasks from the built-in dataset file (read independently of apr).
fn humaneval_tasks(n: usize) -> Vec<serde_json::Value> {
    let gz = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../apr-eval/data/HumanEval.jsonl.gz"),
    )
    .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    text.lines()
        .take(n)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_samples(dir: &std::path::Path, lines: &[serde_json::Value]) -> PathBuf {
    let p = dir.join("samples.in.jsonl");
    let mut f = std::fs::File::create(&p).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    p
}

#[test]
fn samples_file_scores_canonical_and_broken_solutions() {
    let d = tmp("samples");
    let tasks = humaneval_tasks(6);
    let mut lines = Vec::new();
    for t in &tasks {
        // The dataset's canonical solution, given as a completion (appended to the prompt).
        lines.push(
            serde_json::json!({"task_id": t["task_id"], "completion": t["canonical_solution"]}),
        );
        // The same function with its body replaced by `pass`, given as a whole solution.
        let broken = format!("{}    pass\n", t["prompt"].as_str().unwrap());
        lines.push(serde_json::json!({"task_id": t["task_id"], "solution": broken}));
    }
    let samples = write_samples(&d, &lines);
    let out = d.join("out");
    let args = [
        "eval",
        "humaneval",
        "--samples",
        samples.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--limit",
        "6",
        "--json",
    ];
    let s = stdout_json(&apr(&args));
    assert_eq!(s["n_tasks"], 6);
    assert_eq!(s["n_samples"], 12);
    // One of two samples passes on every task.
    assert!((s["pass@1"].as_f64().unwrap() - 0.5).abs() < 1e-12, "{s}");
    assert_eq!(s["tasks_solved"], 6);
    assert!(s["pass@10"].is_null());
    assert_eq!(s["dataset_sha256"].as_str().unwrap().len(), 64);
    assert!(s["model_sha256"].is_null());
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(out.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 12);
    for r in &recs {
        let want = if r["sample"] == 0 { "pass" } else { "fail" };
        assert_eq!(r["status"], want, "{r}");
    }
    assert!(out.join("summary.json").is_file());
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("HumanEval/5"), "{report}");
    // A rerun resumes: nothing new is scored, the same figures come back.
    let again = stdout_json(&apr(&args));
    assert_eq!(again["pass@1"], s["pass@1"]);
    assert_eq!(again["n_samples"], 12);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bad_eval_input_is_a_clear_error() {
    let d = tmp("bad");
    let fails = |args: &[&str], needle: &str| {
        let o = apr(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    };
    let out = d.join("o");
    let out = out.to_str().unwrap();
    let bad_json = write_samples(&d, &[]);
    std::fs::write(
        &bad_json,
        "{\"task_id\": \"HumanEval/0\", \"completion\": \n",
    )
    .unwrap();
    fails(
        &[
            "eval",
            "humaneval",
            "--samples",
            bad_json.to_str().unwrap(),
            "--out",
            out,
        ],
        "line 1",
    );
    let unknown = d.join("unknown.jsonl");
    std::fs::write(
        &unknown,
        "{\"task_id\": \"HumanEval/999\", \"completion\": \"\"}\n",
    )
    .unwrap();
    fails(
        &[
            "eval",
            "humaneval",
            "--samples",
            unknown.to_str().unwrap(),
            "--out",
            out,
        ],
        "HumanEval/999",
    );
    fails(
        &[
            "eval",
            "humaneval",
            "--samples",
            "/nonexistent.jsonl",
            "--out",
            out,
        ],
        "nonexistent",
    );
    fails(&["eval", "humaneval"], "--samples");
    fails(
        &[
            "eval",
            "humaneval",
            "--subset",
            "full",
            "--samples",
            unknown.to_str().unwrap(),
        ],
        "mbpp only",
    );
    fails(
        &[
            "eval",
            "mbpp",
            "--subset",
            "bogus",
            "--samples",
            unknown.to_str().unwrap(),
        ],
        "bogus",
    );
    fails(
        &[
            "eval",
            "humaneval",
            "--data",
            "/nonexistent.jsonl",
            "--samples",
            unknown.to_str().unwrap(),
            "--out",
            out,
        ],
        "nonexistent",
    );
    let q = qwen05();
    fails(
        &[
            "eval",
            "humaneval",
            q.to_str().unwrap(),
            "--prompt-strategy",
            "nope",
            "--out",
            out,
        ],
        "unknown prompt strategy",
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn generates_scores_and_resumes_on_the_real_model() {
    let d = tmp("gen");
    let out = d.join("out");
    let q = qwen05();
    let args = [
        "eval",
        "humaneval",
        q.to_str().unwrap(),
        "--limit",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    let s = stdout_json(&apr(&args));
    assert_eq!(s["n_tasks"], 2);
    assert_eq!(s["n_samples"], 2);
    assert_eq!(s["model_sha256"].as_str().unwrap().len(), 64);
    assert!(s["gen_tokens"].as_u64().unwrap() > 0);
    let text = std::fs::read_to_string(out.join("samples.jsonl")).unwrap();
    let recs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for r in &recs {
        // The reference prompt: ChatML with the pre-filled fence.
        let p = r["prompt"].as_str().unwrap();
        assert!(
            p.starts_with("<|im_start|>system\nYou are an intelligent programming assistant"),
            "{p}"
        );
        assert!(p.ends_with("<|im_start|>assistant\n```python\n"), "{p}");
        assert!(r["program"].as_str().unwrap().contains("def "), "{r}");
        assert!(["pass", "fail", "timeout"].contains(&r["status"].as_str().unwrap()));
    }
    // Greedy and resumed: a third task is added, the first two are kept as they were.
    let more = [
        "eval",
        "humaneval",
        q.to_str().unwrap(),
        "--limit",
        "3",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    let s3 = stdout_json(&apr(&more));
    assert_eq!(s3["n_samples"], 3);
    let text3 = std::fs::read_to_string(out.join("samples.jsonl")).unwrap();
    assert!(text3.starts_with(&text));
    // Other settings in the same folder are refused.
    let o = apr(&[
        "eval",
        "humaneval",
        q.to_str().unwrap(),
        "--limit",
        "2",
        "--seed",
        "9",
        "--temperature",
        "0.7",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("other settings"), "{}", stderr(&o));
    std::fs::remove_dir_all(&d).unwrap();
}

//! Shared helpers for the CLI end-to-end tests: the real 0.5B model and the golden files.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

pub const QWEN05: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// The real 0.5B model; CI provisions it (scripts/fetch-models.sh).
pub fn qwen05() -> PathBuf {
    let p = apr_engine::resolve::models_dir().join(QWEN05);
    assert!(
        p.is_file(),
        "{} missing: run scripts/fetch-models.sh 0.5b",
        p.display()
    );
    p
}

/// ../shared next to the repository (the golden files and data).
pub fn shared() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        p.join("golden").is_dir(),
        "{} missing: the shared folder must sit beside the repo",
        p.display()
    );
    p
}

pub fn golden(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(shared().join("golden").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn apr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_apr"))
        .args(args)
        .output()
        .expect("running apr")
}

pub fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "apr failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

//! Shared helpers for the real-model tests: model lookup and golden files.
#![allow(dead_code)]

use std::path::PathBuf;

pub const QWEN05: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub const QWEN15: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";

/// `$APR_MODELS_DIR` or `~/.cache/apr/models`.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("APR_MODELS_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".cache/apr/models")
}

/// Path of a model the test needs; fails with instructions when it is missing.
pub fn require_model(file: &str) -> PathBuf {
    let p = models_dir().join(file);
    assert!(
        p.exists(),
        "model {} not found; run ../shared/tools/fetch-models.sh (or set APR_MODELS_DIR)",
        p.display()
    );
    p
}

/// Path of a model that may be absent (the test prints a note and skips that part).
pub fn optional_model(file: &str) -> Option<PathBuf> {
    let p = models_dir().join(file);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "note: {} not found, skipping its part of the test",
            p.display()
        );
        None
    }
}

/// A golden JSON file from ../shared/golden (the workspace's sibling `shared` checkout).
pub fn golden(name: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/golden")
        .join(name);
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("cannot read golden file {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("golden file {}: {e}", p.display()))
}

//! `apr pull`: the real binary against a local stand-in for the Hub (apr-hub's mock server,
//! real sockets), with HF_ENDPOINT, HF_TOKEN and APR_MODELS_DIR in its environment.

#[path = "../../apr-hub/tests/support/mock_hub.rs"]
mod mock_hub;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use apr_formats::gguf::write::to_bytes;
use apr_formats::Value;
use mock_hub::{content, sha256_hex, MockHub, COMMIT};

const REPO: &str = "Qwen/Tiny-GGUF";
const FILE: &str = "tiny-q4_k_m.gguf";

fn cache(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apr-pull-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn apr(hub: &MockHub, cache: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_apr"));
    c.args(args)
        .env("HF_ENDPOINT", &hub.url)
        .env("APR_MODELS_DIR", cache)
        .env("HF_HUB_DOWNLOAD_TIMEOUT", "5")
        .env_remove("HF_TOKEN");
    if let Some(t) = token {
        c.env("HF_TOKEN", t);
    }
    c.output().expect("running apr")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "apr failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn fails(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty());
}

fn tiny_gguf() -> Vec<u8> {
    to_bytes(
        &[
            ("general.architecture", Value::String("qwen2".into())),
            ("general.name", Value::String("tiny".into())),
        ],
        &[],
    )
}

#[test]
fn pull_one_file_then_find_it_by_name() {
    let hub = MockHub::start();
    let gguf = tiny_gguf();
    hub.add_file(REPO, FILE, gguf.clone(), true);
    hub.set(|b| b.require_token = Some("hf_abc".into()));
    let dir = cache("file");
    let target = format!("{REPO}/{FILE}");

    let out = apr(&hub, &dir, None, &["pull", &target, "--json"]);
    fails(&out, "HF_TOKEN");

    let v = json(&apr(
        &hub,
        &dir,
        Some("hf_abc"),
        &["pull", &target, "--json"],
    ));
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["repo", "revision", "commit", "files", "dir"]);
    assert_eq!(v["repo"], REPO);
    assert_eq!(v["revision"], "main");
    assert_eq!(v["commit"], COMMIT);
    assert_eq!(v["dir"], dir.to_str().unwrap());
    assert_eq!(v["files"][0]["path"], FILE);
    assert_eq!(v["files"][0]["bytes"], gguf.len());
    assert_eq!(v["files"][0]["sha256"], sha256_hex(&gguf));
    assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), gguf);
    let cdn = hub
        .log()
        .into_iter()
        .filter(|l| l.server == "cdn")
        .collect::<Vec<_>>();
    assert!(
        !cdn.is_empty() && cdn.iter().all(|l| l.authorization.is_none()),
        "{cdn:?}"
    );

    // Other commands find it in the cache by name.
    let out = Command::new(env!("CARGO_BIN_EXE_apr"))
        .args(["inspect", "tiny-q4_k_m", "--json"])
        .env("APR_MODELS_DIR", &dir)
        .output()
        .unwrap();
    let info = json(&out);
    assert_eq!(info["file"], dir.join(FILE).to_str().unwrap());
    assert_eq!(info["metadata"]["general.name"], "tiny", "{info}");

    // A re-run verifies and downloads nothing.
    hub.clear_log();
    let again = apr(&hub, &dir, Some("hf_abc"), &["pull", &target]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("up to date"));
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        dir.join(FILE).to_str().unwrap()
    );
    assert!(
        hub.log().iter().all(|l| l.method == "HEAD"),
        "{:?}",
        hub.log()
    );
}

#[test]
fn pull_a_snapshot_resuming_after_a_dropped_connection() {
    let hub = MockHub::start();
    let repo = "Qwen/Tiny";
    let weights = content(200_000, 9);
    hub.add_file(
        repo,
        "config.json",
        b"{\"model_type\":\"qwen2\"}".to_vec(),
        false,
    );
    hub.add_file(repo, "model.safetensors", weights.clone(), true);
    hub.add_file(repo, "tokenizer.json", b"{}".to_vec(), false);
    hub.add_file(repo, "README.md", b"hi".to_vec(), false);
    hub.set(|b| {
        b.drops = 1;
        b.drop_after = 60_000;
    });
    let dir = cache("snapshot");
    let v = json(&apr(&hub, &dir, None, &["pull", repo, "--json"]));
    let snap = dir.join("Qwen--Tiny");
    assert_eq!(v["dir"], snap.to_str().unwrap());
    let paths: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["config.json", "model.safetensors", "tokenizer.json"]
    );
    assert_eq!(
        std::fs::read(snap.join("model.safetensors")).unwrap(),
        weights
    );
    assert!(
        hub.log()
            .iter()
            .any(|l| l.range.as_deref() == Some("bytes=60000-")),
        "{:?}",
        hub.log()
    );

    let v = json(&apr(
        &hub,
        &dir,
        None,
        &["pull", repo, "--include", "*.md", "--json"],
    ));
    assert_eq!(v["files"][0]["path"], "README.md");
}

#[test]
fn bad_targets_and_missing_files_are_clear_errors() {
    let hub = MockHub::start();
    hub.add_file(REPO, FILE, tiny_gguf(), true);
    let dir = cache("errors");
    fails(
        &apr(&hub, &dir, None, &["pull", "gpt2"]),
        "not a Hugging Face repo id",
    );
    fails(
        &apr(&hub, &dir, None, &["pull", &format!("{REPO}/../x")]),
        "unsafe",
    );
    fails(
        &apr(&hub, &dir, None, &["pull", &format!("{REPO}/nope.gguf")]),
        "not found",
    );
    fails(
        &apr(
            &hub,
            &dir,
            None,
            &["pull", &format!("{REPO}/{FILE}"), "--revision", "v2"],
        ),
        "revision v2",
    );
    fails(
        &apr(
            &hub,
            &dir,
            None,
            &["pull", &format!("{REPO}/{FILE}"), "--include", "*"],
        ),
        "--include",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_apr"))
        .args(["pull", REPO])
        .env("HF_ENDPOINT", "ftp://nowhere")
        .output()
        .unwrap();
    fails(&out, "HF_ENDPOINT");
    let out = apr(&hub, &dir, None, &["pull"]);
    assert_eq!(out.status.code(), Some(2));
}

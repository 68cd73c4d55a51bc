//! CLI behaviour on the real 0.5B model: generation options, chat, bench, inspect, and clear
//! errors with a non-zero exit on bad input.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use apr_formats::gguf::write::{to_bytes, TensorOut};
use apr_formats::Value;
use common::*;

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("apr-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn fails_with(args: &[&str], needle: &str) {
    let out = apr(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "args {args:?}: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains(needle),
        "args {args:?}: stderr {err:?} lacks {needle:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty() || !err.is_empty());
}

#[test]
fn run_json_contract_and_seeded_sampling() {
    let m = qwen05();
    let m = m.to_str().unwrap();
    let args = [
        "run",
        m,
        "--prompt",
        "Write a haiku about Rust.",
        "--max-tokens",
        "12",
        "--temperature",
        "0.9",
        "--seed",
        "7",
        "--json",
    ];
    let a = stdout_json(&apr(&args));
    let b = stdout_json(&apr(&args));
    assert_eq!(a["tokens"], b["tokens"], "same seed, same tokens");
    let keys: Vec<_> = a.as_object().unwrap().keys().cloned().collect();
    for k in ["text", "tokens", "prompt_tokens", "tok_s", "stop"] {
        assert!(keys.contains(&k.to_string()), "missing {k} in {keys:?}");
    }
    assert_eq!(a["stop"], "length");
    assert_eq!(a["tokens"].as_array().unwrap().len(), 12);
    // The chat template wrapped the prompt: far more tokens than the 7 of the bare text.
    assert!(a["prompt_tokens"].as_u64().unwrap() > 20);
}

#[test]
fn stop_strings_and_eos_end_generation() {
    let m = qwen05();
    let m = m.to_str().unwrap();
    // Greedy: the model writes a fenced code block; stop at the fence's end.
    let out = stdout_json(&apr(&[
        "run",
        m,
        "--prompt",
        "Write a Python function that adds two numbers.",
        "--temperature",
        "0",
        "--max-tokens",
        "200",
        "--stop",
        "def ",
        "--json",
    ]));
    assert_eq!(out["stop"], "stop_string");
    assert!(!out["text"].as_str().unwrap().contains("def "));
    let out = stdout_json(&apr(&[
        "run",
        m,
        "--prompt",
        "Reply with just the word yes.",
        "--temperature",
        "0",
        "--json",
    ]));
    assert_eq!(out["stop"], "eos");
    let last = out["tokens"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_u64()
        .unwrap();
    assert_eq!(last, 151645, "ends on <|im_end|>");
    assert!(!out["text"].as_str().unwrap().contains("<|im_end|>"));
}

#[test]
fn run_streams_plain_text() {
    let m = qwen05();
    let out = apr(&[
        "run",
        m.to_str().unwrap(),
        "--prompt",
        "Say hello.",
        "--temperature",
        "0",
        "--max-tokens",
        "8",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.trim().is_empty());
    assert!(!text.trim_start().starts_with('{'), "plain text, not JSON");
}

#[test]
fn chat_keeps_the_conversation() {
    let m = qwen05();
    let mut child = Command::new(env!("CARGO_BIN_EXE_apr"))
        .args([
            "chat",
            m.to_str().unwrap(),
            "--temperature",
            "0",
            "--max-tokens",
            "40",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"My name is Ferris. Just say ok.\nWhat is my name? Answer with the name only.\n/exit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Ferris"),
        "second turn remembers the first: {text:?}"
    );
}

#[test]
fn bench_json_has_the_contract_keys() {
    let m = qwen05();
    let out = stdout_json(&apr(&[
        "bench",
        m.to_str().unwrap(),
        "--reps",
        "1",
        "--threads",
        "2",
        "--json",
    ]));
    for k in [
        "pp512_tok_s",
        "pp512_sd",
        "tg128_tok_s",
        "tg128_sd",
        "tg128_x4_tok_s",
        "tg128_x4_sd",
    ] {
        assert!(out[k].as_f64().unwrap() >= 0.0, "{k}");
    }
    for k in [
        "pp512_tok_s",
        "tg128_x4_tok_s",
        "read_gbs",
        "decode_bw_frac",
    ] {
        assert!(out[k].as_f64().unwrap() > 0.0, "{k}");
    }
    assert_eq!(out["threads"], 2);
    assert!(out["kernel"].is_string());
}

#[test]
fn inspect_reports_the_model() {
    let m = qwen05();
    let out = stdout_json(&apr(&["inspect", m.to_str().unwrap(), "--json"]));
    assert_eq!(out["architecture"]["name"], "qwen2");
    assert_eq!(out["architecture"]["layers"], 24);
    assert_eq!(out["architecture"]["kv_heads"], 2);
    assert_eq!(out["tokenizer"]["tokens"], 151936);
    assert_eq!(out["tokenizer"]["merges"], 151387);
    assert_eq!(out["quant_mix"]["Q5_0"]["tensors"], 133);
    assert_eq!(out["tensors"].as_array().unwrap().len(), 291);
    assert!(out["chat_template"]
        .as_str()
        .unwrap()
        .contains("<|im_start|>"));
}

#[test]
fn bad_files_are_clear_errors() {
    fails_with(
        &["run", "no-such-model-anywhere", "--prompt", "x"],
        "not found",
    );
    let txt = tmp("notes.gguf");
    std::fs::write(&txt, "just some text, not a model").unwrap();
    fails_with(&["inspect", txt.to_str().unwrap()], "not a GGUF file");
    fails_with(
        &["run", txt.to_str().unwrap(), "--prompt", "x"],
        "not a GGUF file",
    );
    // Truncated inside the metadata, and inside the tensor data.
    let real = std::fs::read(qwen05()).unwrap();
    for (name, len) in [("trunc-meta.gguf", 1 << 20), ("trunc-data.gguf", 64 << 20)] {
        let p = tmp(name);
        std::fs::write(&p, &real[..len]).unwrap();
        fails_with(
            &["run", p.to_str().unwrap(), "--prompt", "x"],
            "truncated GGUF file",
        );
    }
    // A well-formed GGUF of an architecture we do not know.
    let p = tmp("mamba.gguf");
    std::fs::write(
        &p,
        to_bytes(
            &[("general.architecture", Value::String("mamba".into()))],
            &[],
        ),
    )
    .unwrap();
    fails_with(
        &["run", p.to_str().unwrap(), "--prompt", "x"],
        "unknown architecture",
    );
    // A qwen2 file whose blocks are missing.
    let emb = vec![0u8; 32 * 4 * 4];
    let meta = [
        ("general.architecture", Value::String("qwen2".into())),
        ("qwen2.block_count", Value::U32(1)),
        ("qwen2.embedding_length", Value::U32(32)),
        ("qwen2.feed_forward_length", Value::U32(64)),
        ("qwen2.attention.head_count", Value::U32(4)),
    ];
    let t = [TensorOut {
        name: "token_embd.weight",
        dims: &[32, 4],
        type_id: 0,
        data: &emb,
    }];
    let p = tmp("hollow.gguf");
    std::fs::write(&p, to_bytes(&meta, &t)).unwrap();
    fails_with(
        &["run", p.to_str().unwrap(), "--prompt", "x"],
        "missing tensor blk.0.attn_norm.weight",
    );
}

#[test]
fn bad_flags_and_overlong_prompts_are_clear_errors() {
    let m = qwen05();
    let m = m.to_str().unwrap();
    let out = apr(&["run", m, "--prompt", "x", "--temperature", "warm"]);
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    assert!(stderr(&out).contains("--temperature"));
    let out = apr(&["run", m]);
    assert_eq!(out.status.code(), Some(2), "missing --prompt");
    fails_with(&["run", m, "--prompt", "x", "--top-p", "1.5"], "--top-p");
    let long = "word ".repeat(100);
    fails_with(
        &["run", m, "--raw", "--prompt", &long, "--ctx", "32"],
        "context",
    );
    let data = tmp("short.txt");
    std::fs::write(&data, "tiny").unwrap();
    fails_with(
        &["eval", "perplexity", m, "--data", data.to_str().unwrap()],
        "tokens",
    );
    fails_with(
        &["eval", "perplexity", m, "--data", "/no/such/file.txt"],
        "cannot read",
    );
}

//! `apr check` on the real 0.5B model and on broken copies of it: a NaN planted in one
//! tensor, a truncated file, a tokenizer with one merge removed. Each must fail with a message
//! that names the problem; the intact file must pass.

mod common;

use apr_formats::{Gguf, GgufWriter, TensorSpec, Value};
use common::*;

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("apr-check-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// `apr check --json` on `path`: (exit code, report).
fn check(path: &std::path::Path) -> (Option<i32>, serde_json::Value) {
    let out = apr(&["check", path.to_str().unwrap(), "--json"]);
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    let j = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
    (out.status.code(), j)
}

fn messages(j: &serde_json::Value) -> Vec<String> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap().to_string();
            format!("{} [{}] {}", s("severity"), s("check"), s("message"))
        })
        .collect()
}

#[test]
fn intact_model_passes_every_check() {
    let (code, j) = check(&qwen05());
    assert_eq!(code, Some(0), "{:?}", messages(&j));
    assert_eq!(j["ok"], true);
    assert_eq!(j["errors"], 0);
    let checks: Vec<&str> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        ["metadata", "shapes", "values", "tokenizer", "chat_template"]
    );
    assert!(j["values_scanned"].as_u64().unwrap() > 400_000_000);
}

#[test]
fn planted_nans_are_found_where_they_are() {
    let src = qwen05();
    let g = Gguf::open(&src).unwrap();
    let mut bytes = std::fs::read(&src).unwrap();
    // One f32 value of a norm vector, and the f16 scale of one block of a quantized matrix.
    let norm = g.tensor_info("blk.2.attn_norm.weight").unwrap();
    assert_eq!(norm.dtype, apr_core::GgmlType::F32);
    let at = norm.offset as usize + 4 * 5;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let q = g.tensor_info("blk.7.ffn_down.weight").unwrap();
    assert_eq!(q.dtype, apr_core::GgmlType::Q6K);
    // Row 3, second super-block: d (f16) is the last two of the block's 210 bytes.
    let rb = q.dtype.bytes_for(q.dims[0] as usize).unwrap();
    let at = q.offset as usize + 3 * rb + q.dtype.block_bytes() + 208;
    bytes[at..at + 2].copy_from_slice(&half::f16::NAN.to_le_bytes());
    let p = tmp("nan.gguf");
    std::fs::write(&p, &bytes).unwrap();
    drop(bytes);
    let (code, j) = check(&p);
    assert_eq!(code, Some(1));
    let m = messages(&j);
    assert_eq!(j["errors"], 2, "{m:?}");
    assert!(
        m.iter().any(|s| s.contains(
            "blk.2.attn_norm.weight (F32): 1 NaN/Inf value(s), the first at row 0, column 5"
        )),
        "{m:?}"
    );
    // A NaN scale poisons the 256 values of its block (row 3, columns 256..512).
    assert!(
        m.iter().any(|s| s.contains(
            "blk.7.ffn_down.weight (Q6_K): 256 NaN/Inf value(s), the first at row 3, column 256"
        )),
        "{m:?}"
    );
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn truncated_file_is_reported_as_truncated() {
    let src = qwen05();
    let bytes = std::fs::read(&src).unwrap();
    let p = tmp("truncated.gguf");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let (code, j) = check(&p);
    assert_eq!(code, Some(1));
    let m = messages(&j);
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].contains("[file]") && m[0].contains("truncated GGUF file"),
        "{m:?}"
    );
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn a_missing_merge_names_the_token_it_made() {
    let src = qwen05();
    let g = Gguf::open(&src).unwrap();
    let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap();
    let merges = g.get_str_array("tokenizer.ggml.merges").unwrap();
    const DROP: usize = 5000;
    let (a, b) = merges[DROP].split_once(' ').unwrap();
    let made = format!("{a}{b}");
    let id = tokens.iter().position(|t| *t == made).unwrap();
    let kept: Vec<Value> = merges
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != DROP)
        .map(|(_, m)| Value::String(m.to_string()))
        .collect();
    let meta: Vec<(String, Value)> = g
        .metadata
        .iter()
        .map(|(k, v)| {
            let v = if k == "tokenizer.ggml.merges" {
                Value::Array(kept.clone())
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    let specs = g
        .tensors
        .iter()
        .map(|t| TensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            dtype: t.dtype,
        })
        .collect();
    let p = tmp("merge.gguf");
    let mut w = GgufWriter::create(&p, &meta, specs).unwrap();
    for t in &g.tensors {
        w.write(&t.name, g.tensor_data(t)).unwrap();
    }
    w.finish().unwrap();
    let (code, j) = check(&p);
    assert_eq!(code, Some(1));
    let m = messages(&j);
    let want = format!("token {id} {made:?} is made by no merge");
    assert!(
        m.iter()
            .any(|s| s.contains("[tokenizer]") && s.contains(&want)),
        "{want} not in {m:?}"
    );
    std::fs::remove_file(&p).unwrap();
}

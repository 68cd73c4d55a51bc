//! `apr export` / `apr import` / an HF directory as MODEL, on the real 0.5B model (slow tests
//! are ignored by default; CI runs them with --include-ignored). References: the original
//! GGUF (llama.cpp's conversion) run by apr, and Hugging Face `tokenizers` on the exported
//! tokenizer.json.

mod common;

use std::path::{Path, PathBuf};

use apr_formats::hf_names::hf_to_gguf;
use apr_formats::safetensors::{checkpoint_files, SafetensorsFile};
use apr_formats::Gguf;
use common::{apr, qwen05, stdout_json};

/// The GGUF run quantizes activations (Q8_K / Q8_0) and the directory's are f32: logits
/// agree to this fraction of the largest logit, not bit for bit.
const LOGIT_TOL: f32 = 0.05;
const PROMPT: &str = "def quicksort(arr):\n    \"\"\"Sort a list.\"\"\"\n";
const SAMPLE: &str = "import numpy as np\nx = np.arange(12).reshape(3, 4)  # Ünïcödé 数字 123456\n<|im_start|>user\nhi<|im_end|>";

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apr-hf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Greedy tokens and the prompt's logits `[n, n_vocab]` of a model.
fn run_logits(model: &Path, out: &Path) -> (Vec<u64>, Vec<f32>, usize) {
    let j = stdout_json(&apr(&[
        "run",
        s(model),
        "--raw",
        "--prompt",
        PROMPT,
        "--temperature",
        "0",
        "--max-tokens",
        "12",
        "--json",
        "--logits-out",
        s(out),
    ]));
    let toks = j["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let bytes = std::fs::read(out).unwrap();
    let logits = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (toks, logits, j["n_vocab"].as_u64().unwrap() as usize)
}

fn tokenize(model: &Path, text: &str) -> Vec<u64> {
    let j = stdout_json(&apr(&["tokenize", s(model), "--text", text, "--json"]));
    let ids = j
        .get("ids")
        .or(j.get("tokens"))
        .expect("ids in tokenize --json");
    ids.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
#[ignore = "slow: exports and re-imports the real 0.5B model at f32 (run by CI with --include-ignored)"]
fn export_run_import_roundtrip() {
    let gguf = qwen05();
    let work = tmp("rt");
    let dir = work.join("hf");
    let out = apr(&[
        "export",
        s(&gguf),
        s(&dir),
        "--format",
        "safetensors",
        "--type",
        "f32",
        "--json",
    ]);
    stdout_json(&out);

    // The directory as MODEL: same greedy tokens, close logits at every prompt position.
    let (t_dir, l_dir, nv) = run_logits(&dir, &work.join("dir.f32"));
    let (t_gguf, l_gguf, nv2) = run_logits(&gguf, &work.join("gguf.f32"));
    assert_eq!(nv, nv2);
    assert_eq!(t_dir, t_gguf, "greedy tokens of the directory and the GGUF");
    assert_eq!(l_dir.len(), l_gguf.len());
    for (pos, (a, b)) in l_dir
        .chunks_exact(nv)
        .zip(l_gguf.chunks_exact(nv))
        .enumerate()
    {
        let max = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff / max < LOGIT_TOL, "position {pos}: {diff} / {max}");
    }

    // Re-import: tensors equal to the exported ones, tokenizer equal to the original's.
    let re = work.join("re.gguf");
    stdout_json(&apr(&[
        "import",
        s(&dir),
        s(&re),
        "--type",
        "f32",
        "--json",
    ]));
    let g = Gguf::open(&re).unwrap();
    let mut n = 0;
    for p in checkpoint_files(&dir).unwrap() {
        let f = SafetensorsFile::open(&p).unwrap();
        for t in &f.tensors {
            let name = hf_to_gguf(&t.name).unwrap();
            let info = g
                .tensor_info(&name)
                .unwrap_or_else(|| panic!("{name} missing"));
            let dims: Vec<u64> = t.shape.iter().rev().copied().collect();
            assert_eq!(info.dims, dims, "{name}");
            assert!(g.tensor_data(info) == f.data(t), "{name}: bytes differ");
            n += 1;
        }
    }
    assert_eq!(n, g.tensors.len());
    assert!(g
        .get("apr.history")
        .and_then(|h| h.as_array())
        .is_some_and(|h| h.len() == 2));
    let want = tokenize(&gguf, SAMPLE);
    assert_eq!(tokenize(&re, SAMPLE), want, "re-imported GGUF tokenizer");
    assert_eq!(tokenize(&dir, SAMPLE), want, "directory tokenizer");
    // Hugging Face's own tokenizer on the exported tokenizer.json.
    let hf = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let ids: Vec<u64> = hf
        .encode(SAMPLE, true)
        .unwrap()
        .get_ids()
        .iter()
        .map(|&i| i as u64)
        .collect();
    assert_eq!(ids, want, "tokenizers crate on the exported tokenizer.json");
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn bad_directories_are_errors() {
    let work = tmp("bad");
    let no_cfg = work.join("empty");
    std::fs::create_dir_all(&no_cfg).unwrap();
    let bad_json = work.join("badjson");
    std::fs::create_dir_all(&bad_json).unwrap();
    std::fs::write(bad_json.join("config.json"), "{\"model_type\": ").unwrap();
    let bad_arch = work.join("arch");
    std::fs::create_dir_all(&bad_arch).unwrap();
    std::fs::write(
        bad_arch.join("config.json"),
        r#"{"model_type": "gpt_neox"}"#,
    )
    .unwrap();
    for (d, want) in [
        (&no_cfg, "config.json"),
        (&bad_json, "not JSON"),
        (&bad_arch, "not supported"),
    ] {
        let out = apr(&["inspect", s(d)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "{err}");
        let out = apr(&["import", s(d), s(&work.join("o.gguf"))]);
        assert_eq!(out.status.code(), Some(1));
    }
    let out = apr(&["export", s(&no_cfg), s(&work.join("x")), "--type", "q4_k"]);
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(&work).unwrap();
}

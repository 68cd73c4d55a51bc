//! `apr merge` on the real 0.5B model: a linear merge of the model with itself gives back its
//! weights (dequantized, then rounded to the output type), a passthrough frankenmerge takes
//! the layers its slices name and still runs, and bad configurations fail with a message.

mod common;

use apr_formats::Gguf;
use common::*;

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("apr-merge-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn f32s(g: &Gguf, name: &str) -> Vec<f32> {
    let t = g.tensor_info(name).unwrap_or_else(|| panic!("no {name}"));
    let mut v = vec![0f32; t.n_elements() as usize];
    apr_core::quant::dequantize(t.dtype, g.tensor_data(t), &mut v).unwrap();
    v
}

fn merge(yaml: &str, out: &std::path::Path) -> std::process::Output {
    let cfg = out.with_extension("yaml");
    std::fs::write(&cfg, yaml).unwrap();
    apr(&[
        "merge",
        "--config",
        cfg.to_str().unwrap(),
        out.to_str().unwrap(),
        "--json",
    ])
}

#[test]
fn linear_self_merge_returns_the_model_and_passthrough_takes_the_slices() {
    let m = qwen05();
    let m = m.to_str().unwrap();
    let src = Gguf::open(m).unwrap();
    let out = tmp("self.gguf");
    let yaml = format!(
        "models:\n  - model: {m}\n    parameters: {{weight: 0.3}}\n  - model: {m}\n    parameters: {{weight: 0.7}}\nmerge_method: linear\ndtype: float16\n"
    );
    let j = stdout_json(&merge(&yaml, &out));
    assert_eq!(j["method"], "linear");
    assert_eq!(j["layers"], 24);
    let g = Gguf::open(&out).unwrap();
    assert_eq!(g.tensors.len(), src.tensors.len());
    for name in [
        "token_embd.weight",
        "blk.5.ffn_down.weight",
        "blk.23.attn_v.weight",
        "blk.0.attn_q.bias",
        "output_norm.weight",
    ] {
        let (a, b) = (f32s(&src, name), f32s(&g, name));
        let two_d = src.tensor_info(name).unwrap().dims.len() == 2;
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            // (0.3 x + 0.7 x) / 1 = x, then f16 for matrices and f32 for vectors.
            let want = if two_d {
                half::f16::from_f32(*x).to_f32()
            } else {
                *x
            };
            assert!(
                (want - y).abs() <= 1e-6 * want.abs(),
                "{name}[{i}]: {y} vs {want}"
            );
        }
    }
    assert!(g
        .get("apr.command")
        .and_then(|v| v.as_str())
        .unwrap()
        .contains("merge"));
    let check = apr(&["check", out.to_str().unwrap()]);
    assert!(check.status.success(), "{}", stderr(&check));
    std::fs::remove_file(&out).unwrap();

    // Layers 0..10 and 14..24: 20 layers, output layer 10 is source layer 14.
    let out = tmp("drop.gguf");
    let yaml = format!(
        "slices:\n  - sources: [{{model: {m}, layer_range: [0, 10]}}]\n  - sources: [{{model: {m}, layer_range: [14, 24]}}]\nmerge_method: passthrough\ndtype: float32\n"
    );
    let j = stdout_json(&merge(&yaml, &out));
    assert_eq!(j["layers"], 20);
    let g = Gguf::open(&out).unwrap();
    assert_eq!(g.get_u64("qwen2.block_count").unwrap(), 20);
    assert_eq!(
        f32s(&g, "blk.10.ffn_up.weight"),
        f32s(&src, "blk.14.ffn_up.weight")
    );
    assert_eq!(
        f32s(&g, "blk.9.attn_k.bias"),
        f32s(&src, "blk.9.attn_k.bias")
    );
    assert!(g.tensor_info("blk.20.attn_q.weight").is_none());
    let run = apr(&[
        "run",
        out.to_str().unwrap(),
        "--prompt",
        "def add(a, b):",
        "--raw",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        "--json",
    ]);
    let j = stdout_json(&run);
    assert_eq!(j["tokens"].as_array().unwrap().len(), 8);
    std::fs::remove_file(&out).unwrap();
}

#[test]
fn bad_merge_configurations_fail_with_a_message() {
    let m = qwen05();
    let m = m.to_str().unwrap();
    let out = tmp("bad.gguf");
    for (yaml, needle) in [
        (format!("merge_method: slerp\nbase_model: {m}\nmodels: [{{model: {m}}}, {{model: a.gguf}}, {{model: b.gguf}}]\nparameters: {{t: 0.5}}\n"), "exactly two models"),
        (format!("merge_method: ties\nmodels: [{{model: {m}}}]\n"), "needs base_model"),
        ("merge_method: linear\nmodels: [{model: /nonexistent/x.gguf, parameters: {weight: 1}}]\n".to_string(), "x.gguf"),
        (format!("merge_method: linear\nmodels: [{{model: {m}}}]\n"), "no weight"),
        ("models: 3\n".to_string(), "not a valid merge configuration"),
    ] {
        let o = merge(&yaml, &out);
        assert_eq!(o.status.code(), Some(1), "{yaml}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(needle), "{yaml}: {e:?} lacks {needle:?}");
        assert!(!e.contains("panicked"), "{e}");
        assert!(!out.exists(), "no output after a failure");
    }
}

#[test]
fn safetensors_out_and_in() {
    let m = qwen05();
    let m = m.to_str().unwrap();
    let src = Gguf::open(m).unwrap();
    // The model merged with itself into a Hugging Face directory...
    let dir = tmp("self-hf");
    let cfg = tmp("self-hf.yaml");
    std::fs::write(
        &cfg,
        format!("models:\n  - model: {m}\n    parameters: {{weight: 1.0}}\nmerge_method: linear\ndtype: float16\n"),
    )
    .unwrap();
    let o = apr(&[
        "merge",
        "--config",
        cfg.to_str().unwrap(),
        dir.to_str().unwrap(),
        "--format",
        "safetensors",
        "--json",
    ]);
    let j = stdout_json(&o);
    assert_eq!(j["out"], dir.to_str().unwrap());
    assert!(dir.join("config.json").is_file() && dir.join("tokenizer.json").is_file());
    // ...is an input like any other: merged with the GGUF at 0.5 / 0.5 it gives the model
    // back (f16-rounded).
    let out = tmp("from-hf.gguf");
    let d = dir.to_str().unwrap();
    let yaml = format!(
        "models:\n  - model: {d}\n    parameters: {{weight: 0.5}}\n  - model: {m}\n    parameters: {{weight: 0.5}}\nmerge_method: linear\ndtype: float32\n"
    );
    stdout_json(&merge(&yaml, &out));
    let g = Gguf::open(&out).unwrap();
    let (a, b) = (
        f32s(&src, "blk.5.ffn_down.weight"),
        f32s(&g, "blk.5.ffn_down.weight"),
    );
    for (x, y) in a.iter().zip(&b) {
        let want = 0.5 * half::f16::from_f32(*x).to_f32() + 0.5 * x;
        assert!(
            (want - y).abs() <= 1e-6 * want.abs().max(1e-3),
            "{y} vs {want}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_file(&out).unwrap();
}

/// mergekit's documented examples (examples/ties.yml and gradient-slerp.yml in its
/// repository), every model path replaced by a link to the real 0.5B (distinct paths: a path
/// named twice is one model, for us as for mergekit): they run, and since every model is the
/// same one, give the model back (f16-rounded).
#[test]
fn mergekit_examples_run() {
    let real = qwen05();
    let src = Gguf::open(&real).unwrap();
    let link = |n: &str| {
        let p = tmp(&format!("{n}.gguf"));
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(&real, &p).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (a, b, c, m) = (link("a"), link("b"), link("c"), link("base"));
    let ties = format!(
        "models:\n  - model: {a}\n    parameters:\n      density: [1, 0.7, 0.1]\n      weight: 1.0\n  - model: {b}\n    parameters:\n      density: 0.5\n      weight: [0, 0.3, 0.7, 1]\n  - model: {c}\n    parameters:\n      density: 0.33\n      weight:\n        - filter: mlp\n          value: 0.5\n        - value: 0\nmerge_method: ties\nbase_model: {m}\nparameters:\n  normalize: true\n  int8_mask: true\ndtype: float16\n"
    );
    let slerp = format!(
        "slices:\n  - sources:\n      - model: {m}\n        layer_range: [0, 24]\n      - model: {a}\n        layer_range: [0, 24]\nmerge_method: slerp\nbase_model: {m}\nparameters:\n  t:\n    - filter: self_attn\n      value: [0, 0.5, 0.3, 0.7, 1]\n    - filter: mlp\n      value: [1, 0.5, 0.7, 0.3, 0]\n    - value: 0.5\ndtype: float16\n"
    );
    for (name, yaml) in [("ties", ties), ("slerp", slerp)] {
        let out = tmp(&format!("example-{name}.gguf"));
        let j = stdout_json(&merge(&yaml, &out));
        assert_eq!(j["layers"], 24, "{name}");
        let g = Gguf::open(&out).unwrap();
        for t in ["blk.3.attn_q.weight", "blk.20.ffn_down.weight"] {
            let (a, b) = (f32s(&src, t), f32s(&g, t));
            for (x, y) in a.iter().zip(&b) {
                let want = half::f16::from_f32(*x).to_f32();
                assert!(
                    (want - y).abs() <= 1e-3 * want.abs().max(1e-4),
                    "{name} {t}: {y} vs {want}"
                );
            }
        }
        std::fs::remove_file(&out).unwrap();
    }
}

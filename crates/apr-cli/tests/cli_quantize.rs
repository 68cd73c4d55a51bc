//! `apr quantize` as a subprocess: the --json contract on a small model, and clear errors with
//! exit status 1 on bad input (unknown type, a file that is not GGUF, a bad imatrix).

mod common;

use apr_formats::gguf::write::{to_bytes, TensorOut};
use apr_formats::{Gguf, Value};
use common::*;

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("apr-cli-quant-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A small llama-like GGUF in f32: one 2-D weight of 256 x 8 and one norm.
fn small_model() -> std::path::PathBuf {
    let w: Vec<u8> = (0..256 * 8)
        .flat_map(|i| ((i as f32 * 0.37).sin() * 0.1).to_le_bytes())
        .collect();
    let n: Vec<u8> = (0..256).flat_map(|_| 1f32.to_le_bytes()).collect();
    let bytes = to_bytes(
        &[("general.architecture", Value::String("llama".into()))],
        &[
            TensorOut {
                name: "blk.0.attn_q.weight",
                dims: &[256, 8],
                type_id: 0,
                data: &w,
            },
            TensorOut {
                name: "blk.0.attn_norm.weight",
                dims: &[256],
                type_id: 0,
                data: &n,
            },
        ],
    );
    let p = tmp("small-f32.gguf");
    write_replacing(&p, &bytes);
    p
}

/// Writes `bytes` to `p` through a temporary file renamed into place: the tests run in
/// parallel and share these inputs, and rewriting a file in place under a process that has it
/// mapped would cut its mapping short.
fn write_replacing(p: &std::path::Path, bytes: &[u8]) {
    let t = p.with_extension(format!("tmp-{:?}", std::thread::current().id()));
    std::fs::write(&t, bytes).unwrap();
    std::fs::rename(&t, p).unwrap();
}

fn fails_with(args: &[&str], needle: &str) {
    let out = apr(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "args {args:?}: {err}");
    assert!(
        err.contains(needle),
        "args {args:?}: stderr {err:?} lacks {needle:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn quantize_json_contract() {
    let src = small_model();
    let out = tmp("small-q4_k_m.gguf");
    let (s, o) = (src.to_str().unwrap(), out.to_str().unwrap());
    let j = stdout_json(&apr(&[
        "quantize", s, o, "--type", "q4_k_m", "--json", "-t", "2",
    ]));
    assert_eq!(j["type"], "Q4_K_M");
    assert_eq!(j["out"], o);
    assert_eq!(j["tensors"]["Q4_K"], 1);
    assert_eq!(j["tensors"]["F32"], 1);
    assert_eq!(j["fallbacks"], 0);
    assert_eq!(j["allocation"], serde_json::json!([]));
    assert!(j["seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        j["bytes"].as_u64().unwrap(),
        std::fs::metadata(&out).unwrap().len()
    );
    let g = Gguf::open(&out).unwrap();
    assert_eq!(g.get_u64("general.file_type").unwrap(), 15);
    assert!(g.get_str("apr.command").unwrap().contains("quantize"));
}

#[test]
fn quantize_bad_inputs_are_clear_errors() {
    let src = small_model();
    let s = src.to_str().unwrap();
    let o = tmp("o.gguf");
    let o = o.to_str().unwrap();
    fails_with(
        &["quantize", s, o, "--type", "q4_k_x"],
        "unknown quantization type",
    );
    let junk = tmp("junk.gguf");
    std::fs::write(&junk, b"definitely not a model").unwrap();
    fails_with(
        &["quantize", junk.to_str().unwrap(), o, "--type", "q8_0"],
        "not a GGUF",
    );
    let bad_im = tmp("bad.imatrix");
    std::fs::write(&bad_im, [0u8, 1]).unwrap();
    fails_with(
        &[
            "quantize",
            s,
            o,
            "--type",
            "q4_0",
            "--imatrix",
            bad_im.to_str().unwrap(),
        ],
        "imatrix",
    );
    assert!(!std::path::Path::new(o).exists(), "no output on failure");
}

/// An imatrix GGUF for `small_model`'s weight: uneven column weights, one chunk.
fn small_imatrix() -> std::path::PathBuf {
    let sums: Vec<u8> = (0..256)
        .flat_map(|i| (1.0 + (i % 7) as f32 * 3.0).to_le_bytes())
        .collect();
    let counts = 1f32.to_le_bytes();
    let bytes = to_bytes(
        &[
            (
                "imatrix.datasets",
                Value::Array(vec![Value::String("calib.txt".into())]),
            ),
            ("imatrix.chunk_count", Value::U32(1)),
            ("imatrix.chunk_size", Value::U32(512)),
        ],
        &[
            TensorOut {
                name: "blk.0.attn_q.weight.in_sum2",
                dims: &[256, 1],
                type_id: 0,
                data: &sums,
            },
            TensorOut {
                name: "blk.0.attn_q.weight.counts",
                dims: &[1, 1],
                type_id: 0,
                data: &counts,
            },
        ],
    );
    let p = tmp("small.imatrix.gguf");
    write_replacing(&p, &bytes);
    p
}

#[test]
fn quantize_energy_weighting_is_recorded_and_changes_only_weighted_tensors() {
    let src = small_model();
    let im = small_imatrix();
    let (s, i) = (src.to_str().unwrap(), im.to_str().unwrap());
    let run = |name: &str, extra: &[&str]| {
        let out = tmp(name);
        let o = out.to_str().unwrap().to_string();
        let mut args = vec!["quantize", s, &o, "--type", "q3_k_m", "--imatrix", i];
        args.extend_from_slice(extra);
        let r = apr(&args);
        assert!(r.status.success(), "{args:?}: {}", stderr(&r));
        Gguf::open(&out).unwrap()
    };
    let ggml = run("w-ggml.gguf", &[]);
    let energy = run(
        "w-energy.gguf",
        &["--weighting", "energy", "--energy-power", "2"],
    );
    assert!(ggml.get("apr.quantize.imatrix_weighting").is_none());
    assert_eq!(
        energy.get_str("apr.quantize.imatrix_weighting").unwrap(),
        "energy p=2"
    );
    let data = |g: &Gguf, name: &str| g.tensor_data(g.tensor_info(name).unwrap()).to_vec();
    let q = "blk.0.attn_q.weight";
    assert_ne!(data(&ggml, q), data(&energy, q), "the weighted tensor");
    let norm = "blk.0.attn_norm.weight";
    assert_eq!(data(&ggml, norm), data(&energy, norm));
}

#[test]
fn quantize_weighting_flags_are_checked() {
    let src = small_model();
    let im = small_imatrix();
    let (s, i) = (src.to_str().unwrap(), im.to_str().unwrap());
    let o = tmp("wf.gguf");
    let o = o.to_str().unwrap();
    let q = ["quantize", s, o, "--type", "q4_k_m"];
    fn with<'a>(q: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [q, extra].concat()
    }
    let out = apr(&with(&q, &["--weighting", "energy"]));
    assert_eq!(out.status.code(), Some(2), "no imatrix: a usage error");
    assert!(stderr(&out).contains("--imatrix"), "{}", stderr(&out));
    fails_with(
        &with(&q, &["--imatrix", i, "--energy-power", "2"]),
        "needs --weighting energy",
    );
    for p in ["0", "-1", "9", "NaN"] {
        fails_with(
            &with(
                &q,
                &["--imatrix", i, "--weighting", "energy", "--energy-power", p],
            ),
            "energy power",
        );
    }
    let out = apr(&with(&q, &["--allocate", "layers"]));
    assert_eq!(
        out.status.code(),
        Some(2),
        "unknown allocation: a usage error"
    );
    assert!(stderr(&out).contains("--allocate"), "{}", stderr(&out));
    assert!(!std::path::Path::new(o).exists(), "no output on failure");
}

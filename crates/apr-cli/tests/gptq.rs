//! `apr quantize --gptq` on the real 0.5B model: the file has llama.cpp's mix of types (the
//! plain quantization's, tensor for tensor), GPTQ changes the levels of the decoder matrices
//! only, the result scores a lower perplexity than round to nearest on a held-out text, an
//! interrupted run resumes to the same bytes, and bad option combinations fail with a message.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use apr_formats::Gguf;
use common::*;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apr-gptq-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Removes its paths (files or directories) when dropped, also when a test fails.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p).or_else(|_| std::fs::remove_dir_all(p));
        }
    }
}

/// Each tensor's type and bytes.
fn tensors(p: &Path) -> BTreeMap<String, (String, Vec<u8>)> {
    let g = Gguf::open(p).unwrap();
    g.tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                (t.dtype.name().to_string(), g.tensor_data(t).to_vec()),
            )
        })
        .collect()
}

fn ppl(model: &Path) -> f64 {
    let e = tmp("eval.txt");
    let text = std::fs::read_to_string(shared().join("data/code-ppl.py.txt")).unwrap();
    std::fs::write(&e, &text[..12_000]).unwrap();
    let j = stdout_json(&apr(&[
        "eval",
        "perplexity",
        model.to_str().unwrap(),
        "--data",
        e.to_str().unwrap(),
        "--ctx",
        "256",
        "--json",
    ]));
    j["ppl"].as_f64().unwrap()
}

fn args(out: &Path, gptq: bool) -> Vec<String> {
    let m = qwen05();
    let calib = shared().join("data/calib-code.py.txt");
    let mut a: Vec<String> = ["quantize", m.to_str().unwrap(), out.to_str().unwrap()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(["--type", "q4_0", "-t", "2"].map(String::from));
    if gptq {
        a.extend(
            [
                "--gptq",
                "--calib",
                calib.to_str().unwrap(),
                "--calib-samples",
                "8",
                "--calib-len",
                "256",
            ]
            .map(String::from),
        );
    }
    a
}

fn run(a: &[String]) -> std::process::Output {
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    apr(&a)
}

#[test]
fn gptq_keeps_the_mix_beats_round_to_nearest_and_resumes() {
    let plain = tmp("plain.gguf");
    let whole = tmp("gptq.gguf");
    let cut = tmp("cut.gguf");
    let partial = tmp("cut.gguf.gptq-partial");
    let _clean = Cleanup(vec![
        plain.clone(),
        whole.clone(),
        cut.clone(),
        partial.clone(),
    ]);
    let out = run(&args(&plain, false));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&args(&whole, true));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !tmp("gptq.gguf.gptq-partial").exists(),
        "the checkpoint goes once the output is written"
    );

    // The same types everywhere; the decoder matrices' levels changed, nothing else.
    let (p, g) = (tensors(&plain), tensors(&whole));
    assert_eq!(p.len(), g.len());
    let decoder = [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ];
    let mut changed = 0;
    for (name, (ty, bytes)) in &p {
        let (gty, gbytes) = &g[name];
        assert_eq!(ty, gty, "{name}");
        let is_decoder = name.starts_with("blk.")
            && decoder
                .iter()
                .any(|d| name.contains(&format!(".{d}.weight")));
        if is_decoder {
            assert_ne!(bytes, gbytes, "{name}: GPTQ left the levels as they were");
            changed += 1;
        } else {
            assert_eq!(bytes, gbytes, "{name}: not a decoder matrix, yet changed");
        }
    }
    assert_eq!(changed, 24 * 7);

    // Closer to the source than round to nearest on text it did not calibrate on.
    let (pp, pg, src) = (ppl(&plain), ppl(&whole), ppl(&qwen05()));
    eprintln!("perplexity: source {src:.4}, round to nearest {pp:.4}, GPTQ {pg:.4}");
    assert!(
        pg < pp,
        "GPTQ {pg} is not below round to nearest {pp} (source {src})"
    );

    // Stop a run once its checkpoint says three layers are done, then run it again.
    let _ = std::fs::remove_dir_all(&partial);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_apr"))
        .args(args(&cut, true))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = partial.join("state.json");
    let t0 = std::time::Instant::now();
    loop {
        let done = std::fs::read_to_string(&state)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|j| j["layers_done"].as_u64())
            .unwrap_or(0);
        if done >= 3 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before layer 3"
        );
        assert!(
            t0.elapsed().as_secs() < 600,
            "no checkpoint after 10 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!cut.exists(), "an interrupted run leaves no output");
    let out = run(&args(&cut, true));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("gptq: resuming after"),
        "{}",
        stderr(&out)
    );
    let c = tensors(&cut);
    for (name, (_, bytes)) in &g {
        assert!(
            &c[name].1 == bytes,
            "{name}: the resumed run wrote other bytes"
        );
    }
}

#[test]
fn gptq_options_are_checked() {
    let m = qwen05();
    let out = tmp("bad.gguf");
    let o = out.to_str().unwrap();
    let base = ["quantize", m.to_str().unwrap(), o, "--type", "q4_0"];
    let fails = |extra: &[&str], needle: &str| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        let r = apr(&a);
        let err = stderr(&r);
        assert_ne!(r.status.code(), Some(0), "{a:?}");
        assert!(err.contains(needle), "{a:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "{a:?} wrote an output");
    };
    fails(&["--calib", "x.txt"], "--gptq");
    fails(
        &["--gptq", "--calib", "/nonexistent/calib.txt"],
        "cannot read the calibration text",
    );
    let calib = shared().join("data/calib-code.py.txt");
    let c = calib.to_str().unwrap();
    fails(
        &["--gptq", "--calib", c, "--calib-samples", "0"],
        "--calib-samples",
    );
    fails(
        &["--gptq", "--calib", c, "--calib-samples", "100000"],
        "calibration text holds",
    );
}

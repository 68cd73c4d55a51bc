//! `apr prune` on the real 0.5B model: Wanda zeroes half of every decoder row (and two of
//! every four with 2:4) and the result still runs, well ahead of magnitude pruning on the
//! evaluation text as in the paper; `blocks --drop 2` removes and renumbers two blocks;
//! safetensors output holds the same model as GGUF output; bad options fail with a message.

mod common;

use apr_formats::Gguf;
use common::*;

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("apr-prune-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Removes its paths (files or directories) when dropped, also when a test fails: the
/// pruned 0.5B outputs are about 1 GB each.
struct Cleanup(Vec<std::path::PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p).or_else(|_| std::fs::remove_dir_all(p));
        }
    }
}

fn f32s(g: &Gguf, name: &str) -> (Vec<f32>, usize) {
    let t = g.tensor_info(name).unwrap_or_else(|| panic!("no {name}"));
    let mut v = vec![0f32; t.n_elements() as usize];
    apr_core::quant::dequantize(t.dtype, g.tensor_data(t), &mut v).unwrap();
    (v, t.dims[0] as usize)
}

/// A short evaluation text (the first 12 KB of the perplexity text).
fn eval_text() -> std::path::PathBuf {
    let p = tmp("eval.txt");
    let text = std::fs::read_to_string(shared().join("data/code-ppl.py.txt")).unwrap();
    std::fs::write(&p, &text[..12_000]).unwrap();
    p
}

fn ppl(model: &std::path::Path) -> f64 {
    let e = eval_text();
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

fn prune(args: &[&str]) -> serde_json::Value {
    let m = qwen05();
    let calib = shared().join("data/calib-code.py.txt");
    let mut a = vec!["prune", m.to_str().unwrap()];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--calib", calib.to_str().unwrap(), "--json"]);
    stdout_json(&apr(&a))
}

#[test]
fn wanda_beats_magnitude_and_holds_its_pattern() {
    let wanda = tmp("wanda.gguf");
    let two4 = tmp("wanda24.gguf");
    let mag = tmp("magnitude.gguf");
    let _clean = Cleanup(vec![wanda.clone(), two4.clone(), mag.clone()]);
    let w = wanda.to_str().unwrap();
    let j = prune(&[
        w,
        "--method",
        "wanda",
        "--sparsity",
        "0.5",
        "--calib-samples",
        "4",
        "--calib-len",
        "128",
        "--type",
        "q8_0",
    ]);
    assert_eq!(j["matrices_pruned"], 24 * 7);
    assert_eq!(j["calib_tokens"], 512);
    let g = Gguf::open(&wanda).unwrap();
    for name in [
        "blk.0.attn_q.weight",
        "blk.11.ffn_down.weight",
        "blk.23.ffn_up.weight",
    ] {
        let (v, cols) = f32s(&g, name);
        for row in v.chunks_exact(cols) {
            let zeros = row.iter().filter(|&&x| x == 0.0).count();
            assert!(zeros >= cols / 2, "{name}: {zeros} zeros of {cols}");
        }
    }
    // The embedding (the LM head too: it is tied) is left whole: no more zeros than the
    // source's quantized table already has.
    let zeros = |v: &[f32]| v.iter().filter(|&&x| x == 0.0).count();
    let (emb, _) = f32s(&g, "token_embd.weight");
    let (src_emb, _) = f32s(&Gguf::open(qwen05()).unwrap(), "token_embd.weight");
    assert!(zeros(&emb) <= zeros(&src_emb) + emb.len() / 1000);

    let j = prune(&[
        two4.to_str().unwrap(),
        "--method",
        "wanda",
        "--pattern",
        "2:4",
        "--calib-samples",
        "2",
        "--calib-len",
        "64",
        "--type",
        "q8_0",
    ]);
    assert!(j["sparsity"].as_f64().unwrap() >= 0.5);
    let g = Gguf::open(&two4).unwrap();
    let (v, _) = f32s(&g, "blk.7.ffn_gate.weight");
    for grp in v.chunks_exact(4) {
        assert!(grp.iter().filter(|&&x| x == 0.0).count() >= 2);
    }

    prune(&[
        mag.to_str().unwrap(),
        "--method",
        "magnitude",
        "--sparsity",
        "0.5",
        "--type",
        "q8_0",
    ]);
    let (base, pw, pm) = (ppl(&qwen05()), ppl(&wanda), ppl(&mag));
    assert!(
        base < pw && pw < pm,
        "base {base}, wanda {pw}, magnitude {pm}"
    );
    assert!(
        pw < 2.0 * base,
        "wanda 50% should stay near the model: {pw} vs {base}"
    );
}

#[test]
fn blocks_drop_two_and_renumber() {
    let out = tmp("blocks.gguf");
    let _clean = Cleanup(vec![out.clone()]);
    let j = prune(&[
        out.to_str().unwrap(),
        "--method",
        "blocks",
        "--drop",
        "2",
        "--calib-samples",
        "2",
        "--calib-len",
        "128",
    ]);
    let dropped: Vec<u64> = j["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(dropped.len(), 2);
    assert_eq!(dropped[1], dropped[0] + 1);
    assert_eq!(j["distances"].as_array().unwrap().len(), 23);
    let src = Gguf::open(qwen05()).unwrap();
    let g = Gguf::open(&out).unwrap();
    assert_eq!(g.get_u64("qwen2.block_count").unwrap(), 22);
    assert!(g.tensor_info("blk.21.ffn_down.weight").is_some());
    assert!(g.tensor_info("blk.22.attn_q.weight").is_none());
    // Types are kept; a block after the span is the source's block two further on.
    let d0 = dropped[0] as usize;
    let (a, b) = (
        src.tensor_info(&format!("blk.{}.attn_v.weight", d0 + 2))
            .unwrap(),
        g.tensor_info(&format!("blk.{d0}.attn_v.weight")).unwrap(),
    );
    assert_eq!(a.dtype, b.dtype);
    assert_eq!(src.tensor_data(a), g.tensor_data(b));
    assert!(ppl(&out).is_finite());
}

#[test]
fn safetensors_output_is_the_same_model() {
    let gguf = tmp("mag16.gguf");
    let dir = tmp("mag16-hf");
    let _clean = Cleanup(vec![gguf.clone(), dir.clone()]);
    for (out, fmt) in [(&gguf, "gguf"), (&dir, "safetensors")] {
        prune(&[
            out.to_str().unwrap(),
            "--method",
            "magnitude",
            "--pattern",
            "4:8",
            "--format",
            fmt,
        ]);
    }
    assert!(dir.join("config.json").is_file());
    let (a, b) = (ppl(&gguf), ppl(&dir));
    assert!((a - b).abs() < 1e-3 * a, "gguf {a} vs safetensors {b}");
}

#[test]
fn bad_options_fail_with_a_message() {
    let m = qwen05();
    let m = m.to_str().unwrap();
    let out = tmp("bad.gguf");
    let _clean = Cleanup(vec![out.clone()]);
    let o = out.to_str().unwrap();
    for (args, msg) in [
        (
            vec!["--method", "obs", "--sparsity", "0.5"],
            "unknown prune method",
        ),
        (
            vec!["--method", "magnitude", "--sparsity", "1.5"],
            "between 0 and 1",
        ),
        (vec!["--method", "magnitude"], "--sparsity"),
        (vec!["--method", "blocks"], "--drop"),
        (vec!["--method", "wanda", "--pattern", "4:2"], "N:M"),
        (
            vec![
                "--method",
                "wanda",
                "--sparsity",
                "0.5",
                "--calib",
                "/nonexistent",
            ],
            "calibration text",
        ),
        (
            vec![
                "--method",
                "magnitude",
                "--sparsity",
                "0.5",
                "--type",
                "q4_k",
            ],
            "--type",
        ),
    ] {
        let mut a = vec!["prune", m, o];
        a.extend(args);
        let r = apr(&a);
        assert!(!r.status.success(), "{a:?} succeeded");
        assert!(stderr(&r).contains(msg), "{a:?}: {}", stderr(&r));
    }
    assert!(!out.exists());
}

/// The tensor bytes of a GGUF file by name (metadata differs between runs: provenance).
fn tensor_bytes(p: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let g = Gguf::open(p).unwrap();
    g.tensors
        .iter()
        .map(|t| (t.name.clone(), g.tensor_data(t).to_vec()))
        .collect()
}

#[test]
fn an_interrupted_run_resumes_to_the_same_model() {
    let whole = tmp("resume-whole.gguf");
    let cut = tmp("resume-cut.gguf");
    let partial = tmp("resume-cut.gguf.prune-partial");
    let _clean = Cleanup(vec![whole.clone(), cut.clone(), partial.clone()]);
    let _ = std::fs::remove_dir_all(&partial);
    let m = qwen05();
    let calib = shared().join("data/calib-code.py.txt");
    let args = |out: &std::path::Path, sparsity: &str| -> Vec<String> {
        [
            "prune",
            m.to_str().unwrap(),
            out.to_str().unwrap(),
            "--method",
            "wanda",
            "--sparsity",
            sparsity,
            "--calib",
            calib.to_str().unwrap(),
            "--calib-samples",
            "4",
            "--calib-len",
            "128",
            "-t",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |a: &[String]| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        apr(&a)
    };
    let out = run(&args(&whole, "0.5"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !tmp("resume-whole.gguf.prune-partial").exists(),
        "the checkpoint goes once the output is written"
    );

    // Stop a run once its checkpoint says three layers are done.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_apr"))
        .args(args(&cut, "0.5"))
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

    // Another job does not take the checkpoint...
    let other = tmp("resume-other.gguf");
    let _clean2 = Cleanup(vec![other.clone()]);
    std::fs::create_dir_all(tmp("resume-other.gguf.prune-partial")).unwrap();
    std::fs::copy(&state, tmp("resume-other.gguf.prune-partial/state.json")).unwrap();
    let out = run(&args(&other, "0.4"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("belongs to another job"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("resuming"));

    // ...the same job does, and ends with the model an uninterrupted run writes.
    let out = run(&args(&cut, "0.5"));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("prune: resuming after "), "{err}");
    assert!(!partial.exists());
    let (a, b) = (tensor_bytes(&whole), tensor_bytes(&cut));
    assert_eq!(a.len(), b.len());
    for (name, bytes) in &a {
        assert!(b[name] == *bytes, "{name} differs after resuming");
    }
}

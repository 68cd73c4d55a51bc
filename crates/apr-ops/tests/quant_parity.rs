//! Bit-compatibility with llama-quantize: our quantization of the tiny model gives, tensor by
//! tensor, the types and data (sha256) that llama-quantize gave for every type, with and
//! without an imatrix (fixture made by scripts/quant-fixtures.sh with llama.cpp's tools).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use apr_formats::Gguf;
use apr_ops::quantize::plan_file;
use apr_ops::{
    quantize_file, Allocation, FileType, Imatrix, QuantizeError, QuantizeOptions, Weighting,
};
use sha2::{Digest, Sha256};

const FIXTURE: &str = "tests/fixtures/quant-llamacpp.json";

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apr-quant-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes the fixture inputs into $APR_QUANT_FIXTURE_DIR (scripts/quant-fixtures.sh runs it
/// for llama-quantize). Without the variable (CI runs ignored tests too) it writes them to a
/// temporary directory and checks they are the bytes the fixture was made from.
#[test]
#[ignore = "writes the inputs of scripts/quant-fixtures.sh"]
fn write_fixture_inputs() {
    let given = std::env::var("APR_QUANT_FIXTURE_DIR").ok();
    let dir = given
        .clone()
        .map_or_else(|| tmp_dir("inputs"), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    common::write_source(&dir.join("tiny-f32.gguf"));
    common::imatrix()
        .write(&dir.join("tiny-imatrix.gguf"))
        .unwrap();
    if given.is_none() {
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
        for (file, key) in [
            ("tiny-f32.gguf", "source_sha256"),
            ("tiny-imatrix.gguf", "imatrix_sha256"),
        ] {
            let got = sha(&std::fs::read(dir.join(file)).unwrap());
            assert_eq!(got, fixture[key].as_str().unwrap(), "{file}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// name -> (type, sha256 of the data) of a GGUF.
fn tensor_table(path: &Path) -> BTreeMap<String, (String, String)> {
    let g = Gguf::open(path).unwrap();
    g.tensors
        .iter()
        .map(|t| {
            let d = g.tensor_data(t);
            (t.name.clone(), (t.dtype.name().to_string(), sha(d)))
        })
        .collect()
}

fn options(ftype: &str, imatrix: Option<(Imatrix, PathBuf)>) -> QuantizeOptions {
    QuantizeOptions {
        ftype: FileType::from_name(ftype).unwrap(),
        imatrix,
        weighting: Weighting::Ggml,
        threads: 2,
        command: format!("apr quantize --type {ftype}"),
        gptq: None,
        allocation: Allocation::Position,
    }
}

#[test]
fn every_type_matches_llama_quantize_bit_for_bit() {
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    let dir = tmp_dir("parity");
    let src = dir.join("tiny-f32.gguf");
    let imx = dir.join("tiny-imatrix.gguf");
    common::write_source(&src);
    common::imatrix().write(&imx).unwrap();
    // The regenerated inputs are the ones llama-quantize saw.
    assert_eq!(
        sha(&std::fs::read(&src).unwrap()),
        fixture["source_sha256"].as_str().unwrap(),
        "the tiny source model changed: rerun scripts/quant-fixtures.sh"
    );
    assert_eq!(
        sha(&std::fs::read(&imx).unwrap()),
        fixture["imatrix_sha256"].as_str().unwrap()
    );
    let types = fixture["types"].as_object().unwrap();
    assert_eq!(
        types.len(),
        apr_ops::mix::FILE_TYPES.len(),
        "a type is missing"
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for (ftype, modes) in types {
        for (mode, want) in modes.as_object().unwrap() {
            let im = (mode == "imatrix").then(|| (Imatrix::read(&imx).unwrap(), imx.clone()));
            let out = dir.join(format!("{ftype}-{mode}.gguf"));
            let report = quantize_file(&src, &out, &options(ftype, im), &mut |_| {}).unwrap();
            let got = tensor_table(&out);
            let want = want.as_object().unwrap();
            assert_eq!(got.len(), want.len(), "{ftype} {mode}: tensor count");
            for (name, w) in want {
                let (wt, wh) = (w[0].as_str().unwrap(), w[1].as_str().unwrap());
                match got.get(name) {
                    Some((t, h)) if t == wt && h == wh => checked += 1,
                    Some((t, h)) => failures.push(format!(
                        "{ftype} {mode} {name}: ours {t} {}, llama.cpp {wt} {}",
                        &h[..12],
                        &wh[..12]
                    )),
                    None => failures.push(format!("{ftype} {mode} {name}: missing")),
                }
            }
            let g = Gguf::open(&out).unwrap();
            assert_eq!(
                g.get_u64("general.file_type").unwrap(),
                FileType::from_name(ftype).unwrap().id as u64
            );
            assert_eq!(g.get_u64("general.quantization_version").unwrap(), 2);
            assert!(g.get("apr.source_sha256").is_some());
            assert_eq!(report.tensors.values().sum::<usize>(), want.len());
            let _ = std::fs::remove_file(&out);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} tensors differ from llama-quantize:\n{}",
        failures.len(),
        failures.len() + checked,
        failures.join("\n")
    );
}

#[test]
fn fallbacks_are_counted_as_llama_quantize_counts_them() {
    let dir = tmp_dir("fallback");
    let src = dir.join("tiny-f32.gguf");
    common::write_source(&src);
    let g = Gguf::open(&src).unwrap();
    // ffn_down rows are 384 wide: one fallback per layer for every k-quant mix.
    for ftype in ["Q4_K_M", "Q2_K", "Q6_K"] {
        let (_, plan) = plan_file(&g, FileType::from_name(ftype).unwrap(), false);
        assert_eq!(plan.n_fallback, common::N_LAYER as usize, "{ftype}");
    }
    let (_, plan) = plan_file(&g, FileType::from_name("Q8_0").unwrap(), false);
    assert_eq!(plan.n_fallback, 0);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tmp_dir("bad");
    let src = dir.join("tiny-f32.gguf");
    common::write_source(&src);
    assert!(FileType::from_name("Q4_K_X").is_none());
    // Not a GGUF file.
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"this is not a model").unwrap();
    let e = quantize_file(
        &junk,
        &dir.join("o.gguf"),
        &options("Q8_0", None),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(e, QuantizeError::Input { .. }), "{e}");
    assert!(!dir.join("o.gguf").exists(), "no output on failure");
    // An imatrix made for other shapes.
    let mut m = common::imatrix();
    m.entries
        .get_mut("blk.0.attn_q.weight")
        .unwrap()
        .in_sum2
        .truncate(100);
    let e = quantize_file(
        &src,
        &dir.join("o.gguf"),
        &options("Q4_K_M", Some((m, dir.join("m.gguf")))),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(&e, QuantizeError::ImatrixShape { name, got: 100, want: 256 } if name == "blk.0.attn_q.weight"),
        "{e}"
    );
    assert!(!dir.join("o.gguf").exists(), "no output on failure");
    // An imatrix file that is neither GGUF nor legacy.
    std::fs::write(dir.join("m.dat"), [1u8, 0]).unwrap();
    assert!(Imatrix::read(&dir.join("m.dat")).is_err());
}

/// Re-quantization: a quantized input is dequantized and encoded again; tensors already of
/// the chosen type are copied unchanged.
#[test]
fn requantizing_a_quantized_file_works() {
    let dir = tmp_dir("requant");
    let src = dir.join("tiny-f32.gguf");
    common::write_source(&src);
    let q8 = dir.join("q8.gguf");
    quantize_file(&src, &q8, &options("Q8_0", None), &mut |_| {}).unwrap();
    let q4 = dir.join("q4.gguf");
    let r = quantize_file(&q8, &q4, &options("Q4_K_M", None), &mut |_| {}).unwrap();
    assert!(r.tensors.contains_key("Q4_K"));
    let again = dir.join("q8b.gguf");
    quantize_file(&q8, &again, &options("Q8_0", None), &mut |_| {}).unwrap();
    let (a, b) = (tensor_table(&q8), tensor_table(&again));
    assert_eq!(a, b, "Q8_0 -> Q8_0 copies every tensor");
}

/// The per-tensor types for the real 0.5B model in Q4_K_M: (1) in llama.cpp's current tensor
/// order they equal what the current llama-quantize picks (its dry run, recorded by
/// scripts/quant-fixtures.sh); (2) walked in the published file's own tensor order (blk.0,
/// blk.1, blk.10, ...: the order the llama.cpp that made it counted layers in) they equal the
/// types of the published Q4_K_M file, made by llama-quantize.
#[test]
#[ignore]
fn real_model_q4_k_m_types_equal_the_published_file() {
    let home = std::env::var("HOME").unwrap();
    let path =
        PathBuf::from(home).join(".cache/apr/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    let g = Gguf::open(&path).unwrap();
    let q4km = FileType::from_name("Q4_K_M").unwrap();
    let (descs, plan) = plan_file(&g, q4km, false);
    assert_eq!(descs.len(), g.tensors.len());
    let dry: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/real-0.5b-q4_k_m-dryrun.json").unwrap(),
    )
    .unwrap();
    assert_eq!(plan.n_fallback as u64, dry["n_fallback"].as_u64().unwrap());
    let dry = dry["types"].as_object().unwrap();
    assert_eq!(dry.len(), descs.len());
    let mut diffs = Vec::new();
    for (d, ty) in descs.iter().zip(&plan.types) {
        let want = dry[&d.name].as_str().unwrap();
        if ty.name() != want {
            diffs.push(format!("{}: ours {ty}, llama-quantize {want}", d.name));
        }
    }
    assert!(
        diffs.is_empty(),
        "vs the current llama-quantize:\n{}",
        diffs.join("\n")
    );
    // Walked in the file's order, the counters see the layers as the maker of the file did.
    let file_order: Vec<_> = g
        .tensors
        .iter()
        .map(|t| apr_ops::mix::TensorDesc {
            name: t.name.clone(),
            dims: t.dims.clone(),
            dtype: t.dtype,
        })
        .collect();
    let plan = apr_ops::mix::plan(
        &apr_ops::quantize::model_facts(&g),
        &file_order,
        q4km,
        false,
    );
    let mut diffs = Vec::new();
    for (d, ty) in file_order.iter().zip(&plan.types) {
        if *ty != d.dtype {
            diffs.push(format!("{}: ours {ty}, file {}", d.name, d.dtype));
        }
    }
    assert!(
        diffs.is_empty(),
        "vs the published file:\n{}",
        diffs.join("\n")
    );
}

/// `--allocate error` on the real 0.5B Q4_K_M file, quantized again to Q4_K_M: the published
/// file bumped other layers than today's llama.cpp does (its maker counted layers in file
/// order), so llama.cpp's positions change the type of some `attn_v` / `ffn_down` tensors.
/// A tensor already of a type costs no error there, so allocating by error must pick the
/// published file's own layers, and every tensor comes back with the published type and
/// bytes.
#[test]
#[ignore]
fn real_model_error_allocation_gives_back_the_published_file() {
    let home = std::env::var("HOME").unwrap();
    let src = PathBuf::from(home).join(".cache/apr/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    let dir = tmp_dir("real-allocate");
    let by_position = dir.join("position.gguf");
    let by_error = dir.join("error.gguf");
    let mut o = options("Q4_K_M", None);
    quantize_file(&src, &by_position, &o, &mut |_| {}).unwrap();
    o.allocation = Allocation::Error;
    let r = quantize_file(&src, &by_error, &o, &mut |_| {}).unwrap();
    let (published, p, e) = (
        tensor_table(&src),
        tensor_table(&by_position),
        tensor_table(&by_error),
    );
    let moved: Vec<&String> = published
        .keys()
        .filter(|n| p[*n] != published[*n])
        .collect();
    assert!(
        moved.len() >= 2,
        "llama.cpp's positions differ from the published file's: {moved:?}"
    );
    let differ: Vec<&String> = published
        .keys()
        .filter(|n| e[*n] != published[*n])
        .collect();
    assert!(
        differ.is_empty(),
        "by error, differing from the published file: {differ:?}"
    );
    let kinds: Vec<&str> = r.allocation.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, ["attn_v.weight", "ffn_down.weight"]);
    for a in &r.allocation {
        assert_eq!(a.error_error, 0.0, "{}: every tensor copied", a.kind);
        assert!(a.position_error > 0.0, "{}", a.kind);
    }
    eprintln!(
        "{} tensors moved by llama.cpp's positions, 0 by error: {:?}",
        moved.len(),
        r.allocation
            .iter()
            .map(|a| (&a.kind, &a.error_layers))
            .collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

//! `apr quantize --allocate error` on a source whose layers were quantized before with other
//! layers bumped (as when a published Q4_K_M file, made by a llama.cpp that counted layers
//! in another order, is exported to f16 and quantized again): the tiny model's `attn_v` and
//! `ffn_down` of layers 0 and 1 are put on the grid of the mix's larger type, those of layers
//! 2 and 3 on the grid of its smaller type. llama.cpp's positions give the larger type to
//! layers 2 and 3; the error allocation must give it back to layers 0 and 1, keep the type
//! counts and the file size, and write a file whose weighted error, measured here from the
//! files' own bytes, is lower.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use apr_core::quant::{dequantize, quantize_rows};
use apr_core::GgmlType;
use apr_formats::{Gguf, GgufWriter, TensorSpec, Value};
use apr_ops::allocate::KindAllocation;
use apr_ops::{quantize_file, Allocation, FileType, Imatrix, QuantizeOptions, Weighting};

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apr-allocate-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// `x` (rows of `n_per_row`) as `ty` stores it.
fn on_grid(ty: GgmlType, x: &[f32], n_per_row: usize) -> Vec<f32> {
    let mut bytes = vec![0u8; x.len() / n_per_row * ty.bytes_for(n_per_row).unwrap()];
    quantize_rows(ty, x, n_per_row, None, &mut bytes).unwrap();
    let mut out = vec![0f32; x.len()];
    dequantize(ty, &bytes, &mut out).unwrap();
    out
}

/// The tiny f32 model with `attn_v` / `ffn_down` of layers 0-1 on the larger type's grid and
/// of layers 2-3 on the smaller's (Q4_K_M: attn_v Q6_K / Q4_K; ffn_down's 384-wide rows take
/// the fallbacks Q8_0 / Q5_0).
fn write_requantized_source(path: &Path) {
    let plain = path.with_extension("plain.gguf");
    common::write_source(&plain);
    let g = Gguf::open(&plain).unwrap();
    let meta: Vec<(String, Value)> = g
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let specs = g
        .tensors
        .iter()
        .map(|t| TensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            dtype: GgmlType::F32,
        })
        .collect();
    let mut w = GgufWriter::create(path, &meta, specs).unwrap();
    for t in &g.tensors {
        let mut x = f32s(g.tensor_data(t));
        let early = t.name.starts_with("blk.0.") || t.name.starts_with("blk.1.");
        let grid = if t.name.ends_with("attn_v.weight") {
            Some(if early { GgmlType::Q6K } else { GgmlType::Q4K })
        } else if t.name.ends_with("ffn_down.weight") {
            Some(if early {
                GgmlType::Q8_0
            } else {
                GgmlType::Q5_0
            })
        } else {
            None
        };
        if let Some(ty) = grid {
            x = on_grid(ty, &x, t.dims[0] as usize);
        }
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.write(&t.name, &bytes).unwrap();
    }
    w.finish().unwrap();
    std::fs::remove_file(plain).unwrap();
}

fn options(allocation: Allocation, imatrix: Option<(Imatrix, PathBuf)>) -> QuantizeOptions {
    QuantizeOptions {
        ftype: FileType::from_name("Q4_K_M").unwrap(),
        imatrix,
        weighting: Weighting::Ggml,
        threads: 2,
        command: "apr quantize --type Q4_K_M".into(),
        gptq: None,
        allocation,
    }
}

/// name -> (type, values as f32).
fn tensors(path: &Path) -> BTreeMap<String, (GgmlType, Vec<f32>)> {
    let g = Gguf::open(path).unwrap();
    g.tensors
        .iter()
        .map(|t| {
            let n: u64 = t.dims.iter().product();
            let mut v = vec![0f32; n as usize];
            dequantize(t.dtype, g.tensor_data(t), &mut v).unwrap();
            (t.name.clone(), (t.dtype, v))
        })
        .collect()
}

/// `sum_ij a_j (x_ij - q_ij)^2` of one kind's tensors of `out` against `src`.
fn weighted_error(
    src: &BTreeMap<String, (GgmlType, Vec<f32>)>,
    out: &BTreeMap<String, (GgmlType, Vec<f32>)>,
    kind: &str,
    imatrix: Option<&Imatrix>,
) -> f64 {
    let mut sum = 0f64;
    for (name, (_, x)) in src.iter().filter(|(n, _)| n.ends_with(kind)) {
        let q = &out[name].1;
        let a = imatrix.and_then(|m| m.weights(name));
        let n_per_row = a.as_ref().map_or(1, |a| a.len());
        for (i, (&xv, &qv)) in x.iter().zip(q).enumerate() {
            let w = a.as_ref().map_or(1.0, |a| a[i % n_per_row] as f64);
            sum += w * ((xv - qv) as f64).powi(2);
        }
    }
    sum
}

fn data_bytes(path: &Path) -> usize {
    let g = Gguf::open(path).unwrap();
    g.tensors.iter().map(|t| g.tensor_data(t).len()).sum()
}

fn layers_of(out: &BTreeMap<String, (GgmlType, Vec<f32>)>, kind: &str, ty: GgmlType) -> Vec<usize> {
    (0..common::N_LAYER as usize)
        .filter(|l| out[&format!("blk.{l}.{kind}")].0 == ty)
        .collect()
}

#[test]
fn error_allocation_gives_the_larger_type_back_to_the_layers_on_its_grid() {
    let dir = tmp_dir("grid");
    let src_path = dir.join("requantized-f32.gguf");
    write_requantized_source(&src_path);
    let src = tensors(&src_path);
    let m = common::imatrix();
    for imatrix in [None, Some(&m)] {
        let run = |allocation: Allocation, out: &Path| {
            let m = imatrix.map(|m| (m.clone(), dir.join("m.gguf")));
            quantize_file(&src_path, out, &options(allocation, m), &mut |_| {}).unwrap()
        };
        let (by_position, by_error) = (dir.join("position.gguf"), dir.join("error.gguf"));
        let (rp, re) = (
            run(Allocation::Position, &by_position),
            run(Allocation::Error, &by_error),
        );
        let (p, e) = (tensors(&by_position), tensors(&by_error));
        let tag = if imatrix.is_some() {
            "imatrix"
        } else {
            "plain"
        };

        // llama.cpp's positions: use_more_bits(i, 4) holds for layers 2 and 3.
        assert_eq!(
            layers_of(&p, "attn_v.weight", GgmlType::Q6K),
            [2, 3],
            "{tag}"
        );
        assert_eq!(
            layers_of(&p, "ffn_down.weight", GgmlType::Q8_0),
            [2, 3],
            "{tag}"
        );
        // By error: the layers already on the larger type's grid.
        assert_eq!(
            layers_of(&e, "attn_v.weight", GgmlType::Q6K),
            [0, 1],
            "{tag}"
        );
        assert_eq!(
            layers_of(&e, "attn_v.weight", GgmlType::Q4K),
            [2, 3],
            "{tag}"
        );
        assert_eq!(
            layers_of(&e, "ffn_down.weight", GgmlType::Q8_0),
            [0, 1],
            "{tag}"
        );
        assert_eq!(
            layers_of(&e, "ffn_down.weight", GgmlType::Q5_0),
            [2, 3],
            "{tag}"
        );

        // Same type counts, same tensor bytes (the files differ by the provenance key);
        // every other tensor the same type.
        assert_eq!(rp.tensors, re.tensors, "{tag}");
        assert_eq!(data_bytes(&by_position), data_bytes(&by_error), "{tag}");
        for (name, (ty, _)) in &p {
            if !name.ends_with("attn_v.weight") && !name.ends_with("ffn_down.weight") {
                assert_eq!(*ty, e[name].0, "{tag} {name}");
            }
        }

        // The files' own weighted error: lower for both kinds, by a wide margin here (the
        // moved layers come back almost exactly).
        for kind in ["attn_v.weight", "ffn_down.weight"] {
            let ep = weighted_error(&src, &p, kind, imatrix);
            let ee = weighted_error(&src, &e, kind, imatrix);
            eprintln!("{tag} {kind}: weighted error {ep:.4e} by position, {ee:.4e} by error");
            assert!(ee < 0.5 * ep, "{tag} {kind}: {ee} vs {ep}");
        }

        // The report and the provenance key say where the larger types went.
        let kinds: BTreeMap<&str, &KindAllocation> =
            re.allocation.iter().map(|a| (a.kind.as_str(), a)).collect();
        assert_eq!(
            kinds.keys().copied().collect::<Vec<_>>(),
            ["attn_v.weight", "ffn_down.weight"],
            "{tag}: only the kinds with two types"
        );
        for a in kinds.values() {
            assert_eq!(a.position_layers, [2, 3]);
            assert_eq!(a.error_layers, [0, 1]);
            assert_eq!(a.moved(), 4);
            assert!(a.error_error < a.position_error);
        }
        assert!(rp.allocation.is_empty());
        let key = Gguf::open(&by_error).unwrap().metadata["apr.quantize.allocation"].clone();
        assert_eq!(
            key.as_str(),
            Some(
                "error: attn_v.weight Q6_K in layers [0, 1]; ffn_down.weight Q8_0 in layers [0, 1]"
            ),
            "{tag}"
        );
        assert!(!Gguf::open(&by_position)
            .unwrap()
            .metadata
            .contains_key("apr.quantize.allocation"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A mix that gives each kind one type has nothing to allocate: the bytes are the positions'.
#[test]
fn error_allocation_leaves_single_type_kinds_alone() {
    let dir = tmp_dir("single");
    let src = dir.join("tiny-f32.gguf");
    common::write_source(&src);
    let mut o = options(Allocation::Error, None);
    o.ftype = FileType::from_name("Q5_0").unwrap();
    let r = quantize_file(&src, &dir.join("e.gguf"), &o, &mut |_| {}).unwrap();
    assert!(r.allocation.is_empty());
    o.allocation = Allocation::Position;
    quantize_file(&src, &dir.join("p.gguf"), &o, &mut |_| {}).unwrap();
    let (a, b) = (tensors(&dir.join("e.gguf")), tensors(&dir.join("p.gguf")));
    assert_eq!(a.len(), b.len());
    for (name, (ty, v)) in &a {
        assert_eq!((ty, v), (&b[name].0, &b[name].1), "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

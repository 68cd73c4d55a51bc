//! Checks dequantization and activation quantization against fixtures written by gguf-py
//! (tests/fixtures/gen_fixtures.py); no Python at test time.

use apr_core::quant::{dequantize, quantize_activation, GgmlType};
use std::path::PathBuf;

/// (n_elems, first part, second part) of a fixture file; see gen_fixtures.py for the layout.
fn load(name: &str, first_is_f32: bool) -> (usize, Vec<u8>, Vec<u8>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
    let nbytes = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    let first = if first_is_f32 { 4 * n } else { nbytes };
    let second = if first_is_f32 { nbytes } else { 4 * n };
    assert_eq!(b.len(), 8 + first + second, "{name}: size");
    (n, b[8..8 + first].to_vec(), b[8 + first..].to_vec())
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn dequantize_matches_gguf_py() {
    let names = [
        "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
        "Q6_K",
    ];
    for name in names {
        let ty = GgmlType::from_name(name).unwrap();
        let (n, raw, want) = load(&format!("dequant_{name}.bin"), false);
        let want = f32s(&want);
        let mut got = vec![0f32; n];
        dequantize(ty, &raw, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // numpy may order d*sc*q differently from ggml; allow an ulp-scale difference.
            let tol = 4.0 * f32::EPSILON * w.abs().max(1e-30);
            assert!((g - w).abs() <= tol, "{name}[{i}]: {g} vs gguf-py {w}");
        }
    }
}

#[test]
fn activation_quantizers_are_bit_exact() {
    for (name, ty) in [
        ("Q8_0", GgmlType::Q8_0),
        ("Q8_1", GgmlType::Q8_1),
        ("Q8_K", GgmlType::Q8K),
    ] {
        let (n, x, want) = load(&format!("quant_{name}.bin"), true);
        let x = f32s(&x);
        assert_eq!(x.len(), n);
        let mut got = vec![0u8; want.len()];
        quantize_activation(ty, &x, &mut got).unwrap();
        let block = ty.block_bytes();
        for (i, (g, w)) in got.chunks(block).zip(want.chunks(block)).enumerate() {
            assert_eq!(g, w, "{name} block {i}");
        }
    }
}

//! Tests of the dot kernels: the reference against f64 dots of dequantized rows, the dispatched
//! (AVX2) kernels against the reference, and the multi-column form against the single one.

use super::blocks::*;
use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// f16 and f32 fields (offset, is_f32, min, max) to overwrite with sane scales in a random block.
pub(crate) fn scale_fields(ty: GgmlType) -> &'static [(usize, bool, f32, f32)] {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 => &[(0, false, -0.05, 0.05)],
        Q4_1 | Q5_1 | Q8_1 => &[(0, false, -0.05, 0.05), (2, false, -0.5, 0.5)],
        Q2K => &[(Q2K_D, false, 0.001, 0.05), (Q2K_DMIN, false, 0.001, 0.05)],
        Q3K => &[(Q3K_D, false, -0.02, 0.02)],
        Q4K | Q5K => &[(0, false, 0.001, 0.02), (2, false, 0.001, 0.02)],
        Q6K => &[(Q6K_D, false, -0.005, 0.005)],
        Q8K => &[(0, true, -0.05, 0.05)],
        F32 | F16 | BF16 => &[],
    }
}

/// A random row of `n` elements of `ty`: random quant bits, finite scales, never all zero.
pub(crate) fn random_row(ty: GgmlType, n: usize, rng: &mut StdRng) -> Vec<u8> {
    let mut out = vec![0u8; ty.bytes_for(n).unwrap()];
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            let vals: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect();
            for (o, v) in out.chunks_exact_mut(ty.block_bytes()).zip(vals) {
                match ty {
                    GgmlType::F32 => o.copy_from_slice(&v.to_le_bytes()),
                    GgmlType::F16 => o.copy_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                    _ => o.copy_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                }
            }
        }
        _ => {
            rng.fill(&mut out[..]);
            for b in out.chunks_exact_mut(ty.block_bytes()) {
                for &(off, is_f32, lo, hi) in scale_fields(ty) {
                    let v = rng.random_range(lo..hi);
                    if is_f32 {
                        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
                    } else {
                        b[off..off + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
                    }
                }
            }
        }
    }
    out
}

/// A random activation row quantized to `vec_dot_type(w)`, plus its f32 source.
pub(crate) fn random_act(w: GgmlType, n: usize, rng: &mut StdRng) -> (Vec<f32>, Vec<u8>) {
    let x: Vec<f32> = (0..n).map(|_| rng.random_range(-4.0f32..4.0)).collect();
    let at = vec_dot_type(w);
    let mut q = vec![0u8; at.bytes_for(n).unwrap()];
    quantize_activation(at, &x, &mut q).unwrap();
    (x, q)
}

fn dequant(ty: GgmlType, b: &[u8], n: usize) -> Vec<f32> {
    let mut y = vec![0f32; n];
    dequantize(ty, b, &mut y).unwrap();
    y
}

pub(crate) const ALL: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Q8K,
];

/// Element counts to try for `ty`: several block counts (and ragged ones for float types).
fn lengths(ty: GgmlType) -> Vec<usize> {
    match ty.block_elems() {
        1 => vec![1, 7, 16, 33, 100, 1536],
        b => [1, 2, 3, 5, 8].iter().map(|k| k * b).collect(),
    }
}

/// Σ|w_i x_i| in f64 and the exact dot in f64 of the dequantized rows.
fn exact(ty: GgmlType, n: usize, w: &[u8], x: &[u8]) -> (f64, f64) {
    let wf = dequant(ty, w, n);
    let xf = dequant(vec_dot_type(ty), x, n);
    let dot = wf.iter().zip(&xf).map(|(a, b)| *a as f64 * *b as f64).sum();
    let mag = wf
        .iter()
        .zip(&xf)
        .map(|(a, b)| (*a as f64 * *b as f64).abs())
        .sum();
    (dot, mag)
}

#[test]
fn reference_matches_dequantized_dot() {
    let mut rng = StdRng::seed_from_u64(11);
    for ty in ALL {
        // Q4_1/Q5_1 use the activation's f16 s = d*sum(q), good to f16 precision only.
        let rel = if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
            2e-3
        } else {
            1e-5
        };
        for n in lengths(ty) {
            let w = random_row(ty, n, &mut rng);
            let (_, x) = random_act(ty, n, &mut rng);
            let got = super::dot::reference_fn(ty)(n, &w, &x) as f64;
            let (want, mag) = exact(ty, n, &w, &x);
            assert!(mag > 0.0, "{ty}: zero test data");
            assert!(
                (got - want).abs() <= rel * mag + 1e-6,
                "{ty} n={n}: ref {got} vs exact {want} (mag {mag})"
            );
        }
    }
}

#[test]
fn dispatched_kernels_match_reference() {
    let mut rng = StdRng::seed_from_u64(12);
    eprintln!("kernel: {}", kernel_name());
    for ty in ALL {
        for n in lengths(ty) {
            for _ in 0..4 {
                let w = random_row(ty, n, &mut rng);
                let (_, x) = random_act(ty, n, &mut rng);
                let fast = vec_dot(ty, n, &w, &x) as f64;
                let slow = super::dot::reference_fn(ty)(n, &w, &x) as f64;
                let (_, mag) = exact(ty, n, &w, &x);
                assert!(
                    (fast - slow).abs() <= 1e-5 * mag + 1e-6,
                    "{ty} n={n}: fast {fast} vs ref {slow}"
                );
                assert_eq!(vec_dot_checked(ty, n, &w, &x), Ok(fast as f32));
            }
        }
    }
}

#[test]
fn multi_column_matches_single() {
    let mut rng = StdRng::seed_from_u64(13);
    for ty in ALL {
        let n = lengths(ty)[2];
        let w = random_row(ty, n, &mut rng);
        let acts: Vec<Vec<u8>> = (0..9).map(|_| random_act(ty, n, &mut rng).1).collect();
        for cols in 1..=acts.len() {
            let xs: Vec<&[u8]> = acts[..cols].iter().map(|a| a.as_slice()).collect();
            let mut out = vec![f32::NAN; cols];
            vec_dot_multi(ty, n, &w, &xs, &mut out);
            for (c, x) in xs.iter().enumerate() {
                // Same kernel, same order per column: bit-identical to the single form.
                assert_eq!(
                    out[c].to_bits(),
                    vec_dot(ty, n, &w, x).to_bits(),
                    "{ty} cols={cols} c={c}"
                );
            }
        }
    }
}

#[test]
fn quantized_dot_close_to_float_dot() {
    // End to end: the dot with a quantized activation tracks the dot with the f32 activation.
    let mut rng = StdRng::seed_from_u64(14);
    for ty in ALL {
        let n = 1024;
        let w = random_row(ty, n, &mut rng);
        let (xf, xq) = random_act(ty, n, &mut rng);
        let wf = dequant(ty, &w, n);
        let want: f64 = wf.iter().zip(&xf).map(|(a, b)| *a as f64 * *b as f64).sum();
        let mag: f64 = wf
            .iter()
            .zip(&xf)
            .map(|(a, b)| (*a as f64 * *b as f64).abs())
            .sum();
        let got = vec_dot(ty, n, &w, &xq) as f64;
        assert!(
            (got - want).abs() <= 0.02 * mag,
            "{ty}: {got} vs {want} (mag {mag})"
        );
    }
}

#[test]
fn short_rows_never_panic_or_overread() {
    let mut rng = StdRng::seed_from_u64(15);
    for ty in ALL {
        let n = lengths(ty)[3];
        let w = random_row(ty, n, &mut rng);
        let (_, x) = random_act(ty, n, &mut rng);
        assert!(vec_dot_checked(ty, n, &w[..w.len() - 1], &x).is_err());
        assert!(vec_dot_checked(ty, n, &w, &x[..x.len() - 1]).is_err());
        if ty.block_elems() > 1 {
            assert!(vec_dot_checked(ty, n + 1, &w, &x).is_err());
        }
        // Release builds clamp to the whole blocks present (debug builds assert instead).
        if !cfg!(debug_assertions) {
            let _ = vec_dot(ty, n, &w[..w.len() / 2], &x);
        }
    }
}

#[test]
fn gemv_matches_vec_dot_and_checks_lengths() {
    let mut rng = StdRng::seed_from_u64(16);
    for ty in ALL {
        let n = lengths(ty)[1];
        let rows = 5;
        let w: Vec<u8> = (0..rows)
            .flat_map(|_| random_row(ty, n, &mut rng))
            .collect();
        let (_, x) = random_act(ty, n, &mut rng);
        let mut out = vec![f32::NAN; rows];
        gemv(ty, n, &w, &x, &mut out).unwrap();
        let rb = w.len() / rows;
        for (r, o) in out.iter().enumerate() {
            let want = vec_dot(ty, n, &w[r * rb..(r + 1) * rb], &x);
            assert_eq!(o.to_bits(), want.to_bits(), "{ty} row {r}");
        }
        assert!(gemv(ty, n, &w[1..], &x, &mut out).is_err());
        assert!(gemv(ty, n, &w, &x[1..], &mut out).is_err());
        assert!(gemv(ty, n, &w, &x, &mut out[1..]).is_err());
    }
}

/// The AVX-512 kernels give the AVX2 kernels' results bit for bit (same integer lanes, same
/// float steps), on one and on several activation rows.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx512_kernels_bit_equal_avx2() {
    if !super::dot::has_avx512() {
        eprintln!("no AVX-512 VNNI on this CPU: skipped");
        return;
    }
    use super::{dot_avx2 as a2, dot_avx512 as a5};
    type K<const N: usize> = unsafe fn(usize, *const u8, [*const u8; N]) -> [f32; N];
    let kernels: [(GgmlType, K<1>, K<1>, K<3>, K<3>); 3] = [
        (
            GgmlType::Q4_0,
            a2::dot_q4_0_q8_0::<1>,
            a5::dot_q4_0_q8_0::<1>,
            a2::dot_q4_0_q8_0::<3>,
            a5::dot_q4_0_q8_0::<3>,
        ),
        (
            GgmlType::Q5_0,
            a2::dot_q5_0_q8_0::<1>,
            a5::dot_q5_0_q8_0::<1>,
            a2::dot_q5_0_q8_0::<3>,
            a5::dot_q5_0_q8_0::<3>,
        ),
        (
            GgmlType::Q8_0,
            a2::dot_q8_0_q8_0::<1>,
            a5::dot_q8_0_q8_0::<1>,
            a2::dot_q8_0_q8_0::<3>,
            a5::dot_q8_0_q8_0::<3>,
        ),
    ];
    let mut rng = StdRng::seed_from_u64(17);
    for (ty, k2, k5, k2x3, k5x3) in kernels {
        for n in lengths(ty) {
            let nb = n / ty.block_elems().max(vec_dot_type(ty).block_elems());
            let w = random_row(ty, n, &mut rng);
            let acts: Vec<Vec<u8>> = (0..3).map(|_| random_act(ty, n, &mut rng).1).collect();
            let p = |c: usize| acts[c].as_ptr();
            // SAFETY: AVX-512 VNNI (and so AVX2) was detected; every row holds nb blocks.
            let (one2, one5, three2, three5) = unsafe {
                (
                    k2(nb, w.as_ptr(), [p(0)]),
                    k5(nb, w.as_ptr(), [p(0)]),
                    k2x3(nb, w.as_ptr(), [p(0), p(1), p(2)]),
                    k5x3(nb, w.as_ptr(), [p(0), p(1), p(2)]),
                )
            };
            assert_ne!(one2[0], 0.0, "{ty}: zero test data");
            assert_eq!(one2[0].to_bits(), one5[0].to_bits(), "{ty} n={n}");
            for c in 0..3 {
                assert_eq!(
                    three2[c].to_bits(),
                    three5[c].to_bits(),
                    "{ty} n={n} col {c}"
                );
            }
        }
    }
}

//! Tests of [`gemm`]: every element against `vec_dot` and the scalar reference, on random
//! rows, on rows at the extremes of every integer range (i16 partial sums must not saturate),
//! with partial panels, odd token counts and a padded output stride. Q4_K and Q6_K must match
//! `vec_dot` bit for bit on AVX2.

use super::dot_tests::{random_act, random_row, scale_fields, ALL};
use super::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Checks `gemm` on `m` weight rows and `n` activation rows against vec_dot and the reference.
fn check(ty: GgmlType, k: usize, w: &[u8], acts: &[Vec<u8>], m: usize) {
    let n = acts.len();
    let ldo = m + 3;
    let x: Vec<u8> = acts.concat();
    let mut out = vec![f32::NAN; n * ldo];
    gemm(ty, k, w, m, &x, n, &mut out, ldo).unwrap();
    let rb = w.len() / m;
    for t in 0..n {
        for r in 0..m {
            let wr = &w[r * rb..(r + 1) * rb];
            let fast = vec_dot(ty, k, wr, &acts[t]) as f64;
            let slow = reference_fn(ty)(k, wr, &acts[t]) as f64;
            let got = out[t * ldo + r] as f64;
            // Float-order tolerance, relative to the sum of |terms| of the reference.
            let tol = 1e-5 * (fast.abs() + slow.abs() + 1.0) * (k as f64).sqrt();
            if super::dot::has_avx2() && matches!(ty, GgmlType::Q4K | GgmlType::Q6K) {
                // Both kernels follow llama.cpp's AVX2 float order for these types.
                assert_eq!(
                    got.to_bits(),
                    fast.to_bits(),
                    "{ty} k={k} t={t} r={r}: gemm {got} vec_dot {fast}"
                );
            }
            assert!(
                (got - fast).abs() <= tol && (got - slow).abs() <= tol,
                "{ty} k={k} t={t} r={r}: gemm {got} vec_dot {fast} ref {slow}"
            );
        }
        for pad in m..ldo {
            if t + 1 < n {
                assert!(out[t * ldo + pad].is_nan(), "{ty}: wrote padding");
            }
        }
    }
}

#[test]
fn gemm_matches_vec_dot_random() {
    let mut rng = StdRng::seed_from_u64(21);
    for ty in ALL {
        let k = 3 * ty.block_elems().max(vec_dot_type(ty).block_elems()).max(32);
        let m = 19; // two whole panels and a partial one
        let w: Vec<u8> = (0..m).flat_map(|_| random_row(ty, k, &mut rng)).collect();
        let acts: Vec<Vec<u8>> = (0..11).map(|_| random_act(ty, k, &mut rng).1).collect();
        for n in [1, 2, 3, 4, 5, 11] {
            check(ty, k, &w, &acts[..n], m);
        }
    }
}

#[test]
fn gemm_float_rows_longer_than_a_column_block() {
    // Float panels run in blocks of 256 columns that accumulate into `out`; 603 columns is
    // two whole blocks and a ragged one (not a multiple of 8). 27 rows: a 16-row pair of
    // panels (AVX-512), a single 8-row panel and 3 rows outside any panel.
    let mut rng = StdRng::seed_from_u64(24);
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        let (k, m) = (603, 27);
        let w: Vec<u8> = (0..m).flat_map(|_| random_row(ty, k, &mut rng)).collect();
        let acts: Vec<Vec<u8>> = (0..19).map(|_| random_act(ty, k, &mut rng).1).collect();
        for n in [1, 8, 9, 16, 19] {
            check(ty, k, &w, &acts[..n], m);
        }
    }
}

#[test]
fn gemm_extreme_values_do_not_saturate() {
    let mut rng = StdRng::seed_from_u64(22);
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q6K,
    ] {
        let k = 512;
        let m = 8;
        for fill in [0x00u8, 0xFF, 0x80, 0x7F] {
            let mut w = random_row(ty, k * m, &mut rng);
            // Every quant byte at `fill`, scales kept sane and the k-quant sub-scales at max.
            for b in w.chunks_exact_mut(ty.block_bytes()) {
                let saved: Vec<(usize, [u8; 2])> = scale_fields(ty)
                    .iter()
                    .map(|&(off, _, _, _)| (off, [b[off], b[off + 1]]))
                    .collect();
                b.fill(fill);
                for (off, v) in saved {
                    b[off..off + 2].copy_from_slice(&v);
                }
            }
            for sign in [1.0f32, -1.0] {
                let acts: Vec<Vec<u8>> = (0..5)
                    .map(|_| {
                        let xf = vec![4.0 * sign; k];
                        let at = vec_dot_type(ty);
                        let mut q = vec![0u8; at.bytes_for(k).unwrap()];
                        quantize_activation(at, &xf, &mut q).unwrap();
                        q
                    })
                    .collect();
                check(ty, k, &w, &acts, m);
            }
        }
    }
}

#[test]
fn gemm_checks_lengths() {
    let mut rng = StdRng::seed_from_u64(23);
    let ty = GgmlType::Q5_0;
    let (k, m, n) = (64, 8, 3);
    let w: Vec<u8> = (0..m).flat_map(|_| random_row(ty, k, &mut rng)).collect();
    let x: Vec<u8> = (0..n).flat_map(|_| random_act(ty, k, &mut rng).1).collect();
    let mut out = vec![0f32; n * m];
    assert!(gemm(ty, k, &w, m, &x, n, &mut out, m).is_ok());
    assert!(gemm(ty, k, &w[1..], m, &x, n, &mut out, m).is_err());
    assert!(gemm(ty, k, &w, m, &x[1..], n, &mut out, m).is_err());
    assert!(gemm(ty, k, &w, m, &x, n, &mut out[1..], m).is_err());
    assert!(gemm(ty, k, &w, m, &x, n, &mut out, m - 1).is_err());
    assert!(gemm(ty, k + 1, &w, m, &x, n, &mut out, m).is_err());
}

//! The refined importance-weighted search (`Search::Refine`) for Q3_K, Q4_K and Q5_K.
//!
//! ggml's weighted searches fit each sub-block's scale on its own and then round the scales
//! to their integer grid; nothing looks at the error of the block as finally stored. Here
//! three starting encodings of a super-block (ggml's weighted search, its unweighted one, and
//! its weighted one driven by the importance alone) are each improved by a local search over
//! the stored numbers themselves: the super-block scale(s) a few f16 steps around the start
//! and, for each of them, every sub-block's integer scale (and min) next to its rescaled
//! start, with levels rounded to the nearest. The encoding with the least importance-weighted
//! squared error `sum qw_i (x_i - q_i)^2` (the diagonal estimate of the output error the
//! imatrix stands for) is kept. Blocks stay ordinary ggml blocks: only the choice differs.

// Index loops over sub-blocks read most plainly as in the encoders beside this file.
#![allow(clippy::needless_range_loop)]

use super::blocks::*;
use super::encode_k::{
    block_q3_k, block_q4_k, block_q5_k, k4_levels, pack_k4_scales, q3k_levels, q3k_put_scale,
    q4k_pack, q5k_pack,
};
use super::encode_search::nearest_int;
use super::{dequantize, GgmlType};

/// Relative steps of the super-block scale(s) tried around the start.
const Q3_D_STEPS: [f32; 7] = [-0.03, -0.02, -0.01, 0.0, 0.01, 0.02, 0.03];
const K4_D_STEPS: [f32; 3] = [-0.015, 0.0, 0.015];

fn f16_round(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

/// Whether `ty` has a refined search.
pub(crate) fn has_refine(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K)
}

/// Encodes one super-block of `ty` (Q3_K, Q4_K or Q5_K) with importance weights `qw`.
pub(crate) fn refine_block(ty: GgmlType, x: &[f32], qw: &[f32], y: &mut [u8]) {
    let encode: fn(&[f32], Option<&[f32]>, &mut [u8]) = match ty {
        GgmlType::Q3K => block_q3_k,
        GgmlType::Q4K => block_q4_k,
        _ => block_q5_k,
    };
    // The weights that make ggml's weighted search (which multiplies them by
    // sqrt(sigma2 + x^2)) fit the importance alone.
    let sigma2 = 2.0 * x.iter().fold(0f32, |s, &v| s + v * v) / QK_K as f32;
    let mut pure = [0f32; QK_K];
    for i in 0..QK_K {
        let s = (sigma2 + x[i] * x[i]).sqrt();
        pure[i] = if s > 0.0 { qw[i] / s } else { qw[i] };
    }
    let bb = ty.block_bytes();
    let mut cand = [0u8; 256];
    let mut best_err = f32::INFINITY;
    // EXPERIMENT (temporary): APR_REFINE_OBJ=composite scores by ggml's composite weights.
    let mut comp = [0f32; QK_K];
    let obj: &[f32] = if std::env::var("APR_REFINE_OBJ").as_deref() == Ok("composite") {
        for i in 0..QK_K {
            comp[i] = qw[i] * (sigma2 + x[i] * x[i]).sqrt();
        }
        &comp
    } else {
        qw
    };
    let qw_start = qw;
    let qw = obj;
    for start in [Some(qw_start), None, Some(&pure[..])] {
        let c = &mut cand[..bb];
        encode(x, start, c);
        match ty {
            GgmlType::Q3K => q3k_search(x, qw, c),
            GgmlType::Q4K => k4_search(15, x, qw, c),
            _ => k4_search(31, x, qw, c),
        }
        let e = block_err(ty, x, qw, c);
        if e < best_err {
            best_err = e;
            y.copy_from_slice(c);
        }
    }
}

/// The importance-weighted squared error of block `y` against `x`.
fn block_err(ty: GgmlType, x: &[f32], qw: &[f32], y: &[u8]) -> f32 {
    let mut q = [0f32; QK_K];
    if dequantize(ty, y, &mut q).is_err() {
        return f32::INFINITY;
    }
    let mut e = 0f32;
    for i in 0..QK_K {
        let d = x[i] - q[i];
        e += qw[i] * d * d;
    }
    if e.is_finite() {
        e
    } else {
        f32::INFINITY
    }
}

/// Q3_K: the error of 16 values `x` at scale `dj` (levels -4..=3).
fn q3_err(x: &[f32], w: &[f32], dj: f32) -> f32 {
    let mut e = 0f32;
    if dj == 0.0 {
        for i in 0..x.len() {
            e += w[i] * x[i] * x[i];
        }
        return e;
    }
    let inv = 1.0 / dj;
    for i in 0..x.len() {
        let l = nearest_int(x[i] * inv).clamp(-4, 3) as f32;
        let d = x[i] - dj * l;
        e += w[i] * d * d;
    }
    e
}

/// Q3_K local search over d (f16) and the 16 signed 6-bit sub-block scales.
fn q3k_search(x: &[f32], w: &[f32], y: &mut [u8]) {
    let d0 = f16_at(y, Q3K_D);
    if d0 == 0.0 || !d0.is_finite() {
        return;
    }
    let s0 = q3k_scales(&y[Q3K_SCALES..Q3K_SCALES + 12]);
    let mut best: Option<(f32, f32, [i8; 16])> = None;
    for t in Q3_D_STEPS {
        let d = f16_round(d0 * (1.0 + t));
        if d == 0.0 || !d.is_finite() {
            continue;
        }
        let mut total = 0f32;
        let mut sc = [0i8; 16];
        for j in 0..16 {
            let (xs, ws) = (&x[16 * j..16 * j + 16], &w[16 * j..16 * j + 16]);
            let c = nearest_int(s0[j] as f32 * d0 / d);
            let mut bj = (f32::INFINITY, 0i32);
            for s in (c - 2).max(-32)..=(c + 2).min(31) {
                let e = q3_err(xs, ws, d * s as f32);
                if e < bj.0 {
                    bj = (e, s);
                }
            }
            sc[j] = bj.1 as i8;
            total += bj.0;
        }
        if best.is_none_or(|b| total < b.0) {
            best = Some((total, d, sc));
        }
    }
    let Some((_, d, sc)) = best else { return };
    y[Q3K_SCALES..Q3K_SCALES + 12].fill(0);
    for j in 0..16 {
        q3k_put_scale(y, j, (sc[j] + 32) as u8);
    }
    y[Q3K_D..Q3K_D + 2].copy_from_slice(&f16_bytes(d));
    q3k_levels(x, y);
}

/// Q4_K / Q5_K: the error of 32 values at scale `dj` and offset `m` (levels 0..=nmax).
fn k4_err(nmax: i32, x: &[f32], w: &[f32], dj: f32, m: f32) -> f32 {
    let mut e = 0f32;
    if dj == 0.0 {
        for i in 0..x.len() {
            let d = x[i] + m;
            e += w[i] * d * d;
        }
        return e;
    }
    let inv = 1.0 / dj;
    for i in 0..x.len() {
        let l = nearest_int((x[i] + m) * inv).clamp(0, nmax) as f32;
        let d = x[i] - (dj * l - m);
        e += w[i] * d * d;
    }
    e
}

/// Q4_K / Q5_K local search over (d, dmin) (f16) and the 8 (scale, min) 6-bit pairs.
fn k4_search(nmax: i32, x: &[f32], w: &[f32], y: &mut [u8]) {
    let (d0, m0) = (f16_at(y, Q4K_D), f16_at(y, Q4K_DMIN));
    if !d0.is_finite() || !m0.is_finite() || d0 == 0.0 {
        return;
    }
    let sm = k4_unpack(&y[Q4K_SCALES..Q4K_SCALES + 12]);
    // (error, d, dmin, scale levels, min levels)
    type K4Best = (f32, f32, f32, [u8; 8], [u8; 8]);
    let mut best: Option<K4Best> = None;
    for td in K4_D_STEPS {
        let d = f16_round(d0 * (1.0 + td));
        if d == 0.0 || !d.is_finite() {
            continue;
        }
        for tm in K4_D_STEPS {
            if m0 == 0.0 && tm != 0.0 {
                continue;
            }
            let m = f16_round(m0 * (1.0 + tm));
            if !m.is_finite() {
                continue;
            }
            let mut total = 0f32;
            let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
            for j in 0..8 {
                let (xs, ws) = (&x[32 * j..32 * j + 32], &w[32 * j..32 * j + 32]);
                let cs = nearest_int(sm[j] as f32 * d0 / d);
                let cm = if m != 0.0 {
                    nearest_int(sm[8 + j] as f32 * m0 / m)
                } else {
                    0
                };
                let mut bj = (f32::INFINITY, 0i32, 0i32);
                for s in (cs - 1).max(0)..=(cs + 1).min(63) {
                    for mm in (cm - 1).max(0)..=(cm + 1).min(63) {
                        let e = k4_err(nmax, xs, ws, d * s as f32, m * mm as f32);
                        if e < bj.0 {
                            bj = (e, s, mm);
                        }
                    }
                }
                ls[j] = bj.1 as u8;
                lm[j] = bj.2 as u8;
                total += bj.0;
            }
            if best.is_none_or(|b| total < b.0) {
                best = Some((total, d, m, ls, lm));
            }
        }
    }
    let Some((_, d, m, ls, lm)) = best else {
        return;
    };
    let q = &mut y[Q4K_SCALES..Q4K_SCALES + 12];
    q.fill(0);
    pack_k4_scales(&ls, &lm, q);
    y[Q4K_D..Q4K_D + 2].copy_from_slice(&f16_bytes(d));
    y[Q4K_DMIN..Q4K_DMIN + 2].copy_from_slice(&f16_bytes(m));
    let mut l = [0u8; QK_K];
    k4_levels(nmax, x, y, &mut l);
    if nmax == 15 {
        q4k_pack(&l, y);
    } else {
        q5k_pack(&l, y);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{quantize_rows_with, Search};
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Rows shaped like trained weights (Gaussian-ish with a few outliers) and importance
    /// weights spread over three orders of magnitude, as real imatrix columns are.
    fn data(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let x = (0..n)
            .map(|_| {
                let g: f32 = (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum();
                if rng.random_range(0..64) == 0 {
                    4.0 * g
                } else {
                    g
                }
            })
            .collect();
        let w = (0..QK_K)
            .map(|_| 10f32.powf(rng.random_range(-1.5f32..1.5)))
            .collect();
        (x, w)
    }

    fn weighted_err(ty: GgmlType, x: &[f32], w: &[f32], q: &[u8]) -> Vec<f32> {
        let mut y = vec![0f32; x.len()];
        dequantize(ty, q, &mut y).unwrap();
        x.chunks_exact(QK_K)
            .zip(y.chunks_exact(QK_K))
            .map(|(a, b)| (0..QK_K).map(|i| w[i] * (a[i] - b[i]).powi(2)).sum())
            .collect()
    }

    #[test]
    fn refine_never_loses_to_ggml_and_wins_on_average() {
        for ty in [GgmlType::Q3K, GgmlType::Q4K, GgmlType::Q5K] {
            let (x, w) = data(64 * QK_K, 7);
            let mut errs = Vec::new();
            for search in [Search::Ggml, Search::Refine] {
                let mut q = vec![0u8; ty.bytes_for(x.len()).unwrap()];
                quantize_rows_with(ty, &x, QK_K, Some(&w), search, &mut q).unwrap();
                errs.push(weighted_err(ty, &x, &w, &q));
            }
            let (g, r) = (&errs[0], &errs[1]);
            for (b, (eg, er)) in g.iter().zip(r).enumerate() {
                assert!(er <= eg, "{ty} block {b}: refined error {er} > ggml's {eg}");
            }
            let (sg, sr): (f32, f32) = (g.iter().sum(), r.iter().sum());
            assert!(
                sr < 0.97 * sg,
                "{ty}: refined total {sr} not below ggml's {sg}"
            );
        }
    }

    #[test]
    fn refine_handles_flat_and_zero_blocks() {
        let w = vec![1f32; QK_K];
        for ty in [GgmlType::Q3K, GgmlType::Q4K, GgmlType::Q5K] {
            for v in [0.0f32, 0.25, -3.0] {
                let x = vec![v; QK_K];
                let mut q = vec![0u8; ty.block_bytes()];
                quantize_rows_with(ty, &x, QK_K, Some(&w), Search::Refine, &mut q).unwrap();
                let mut y = vec![0f32; QK_K];
                dequantize(ty, &q, &mut y).unwrap();
                let e = y.iter().map(|&b| (b - v).abs()).fold(0f32, f32::max);
                assert!(e <= 0.05 * v.abs() + 1e-6, "{ty} flat {v}: max error {e}");
            }
        }
    }

    #[test]
    fn refine_is_ggml_for_the_other_types_and_without_an_imatrix() {
        let (x, w) = data(4 * QK_K, 9);
        for ty in [GgmlType::Q2K, GgmlType::Q6K, GgmlType::Q4_0, GgmlType::Q4K] {
            for imatrix in [None, Some(&w[..])] {
                if imatrix.is_some() && has_refine(ty) {
                    continue;
                }
                let mut a = vec![0u8; ty.bytes_for(x.len()).unwrap()];
                let mut b = a.clone();
                quantize_rows_with(ty, &x, QK_K, imatrix, Search::Ggml, &mut a).unwrap();
                quantize_rows_with(ty, &x, QK_K, imatrix, Search::Refine, &mut b).unwrap();
                assert_eq!(a, b, "{ty} imatrix={}", imatrix.is_some());
            }
        }
    }
}

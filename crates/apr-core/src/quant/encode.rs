//! Weight encoders: f32 rows to ggml blocks, bit-identical to what `ggml_quantize_chunk`
//! produces (the path llama-quantize takes): without importance weights the
//! `quantize_row_*_ref` functions, with them (one weight per column of the row) the weighted
//! searches. One registry table maps each type to its encoder.
//! Reference: ggml/src/ggml-quants.c and ggml_quantize_chunk in ggml/src/ggml.c.

// Index loops mirror ggml's, so the float order can be checked line by line against it.
#![allow(clippy::needless_range_loop)]

use super::blocks::*;
use super::encode_k::{block_q2_k, block_q3_k, block_q4_k, block_q5_k, block_q6_k};
use super::encode_search::{make_qkx_quants, make_qx_quants, MinSearch};
use super::error::{bytes_for, check_len};
use super::{quantize_row_q8_0, GgmlType, QuantError};

/// Encodes one block of `ty.block_elems()` values; `qw` are the block's importance weights
/// and `sigma2` the row statistic the legacy weighted paths use (unused elsewhere).
type BlockFn = fn(x: &[f32], qw: Option<&[f32]>, sigma2: f32, y: &mut [u8]);

/// One row per type we can encode: (type, block encoder, takes importance weights,
/// needs importance weights to give usable output).
const ENCODERS: &[(GgmlType, BlockFn, bool, bool)] = &[
    (GgmlType::F32, enc_f32, false, false),
    (GgmlType::F16, enc_f16, false, false),
    (GgmlType::BF16, enc_bf16, false, false),
    (GgmlType::Q8_0, enc_q8_0, false, false),
    (GgmlType::Q4_0, enc_q4_0, true, false),
    (GgmlType::Q4_1, enc_q4_1, true, false),
    (GgmlType::Q5_0, enc_q5_0, true, false),
    (GgmlType::Q5_1, enc_q5_1, true, false),
    (GgmlType::Q2K, |x, w, _, y| block_q2_k(x, w, y), true, false),
    (GgmlType::Q3K, |x, w, _, y| block_q3_k(x, w, y), true, false),
    (GgmlType::Q4K, |x, w, _, y| block_q4_k(x, w, y), true, false),
    (GgmlType::Q5K, |x, w, _, y| block_q5_k(x, w, y), true, false),
    (GgmlType::Q6K, |x, w, _, y| block_q6_k(x, w, y), true, false),
];

/// Whether `ty` can be encoded (a weight type of the table above).
pub fn can_encode(ty: GgmlType) -> bool {
    ENCODERS.iter().any(|r| r.0 == ty)
}

/// Whether `ty`'s encoder uses importance weights when given (the others ignore them).
pub fn uses_imatrix(ty: GgmlType) -> bool {
    ENCODERS.iter().any(|r| r.0 == ty && r.2)
}

/// Whether `ty` needs importance weights to give usable output (none of ours; the i-quants do).
pub fn requires_imatrix(ty: GgmlType) -> bool {
    ENCODERS.iter().any(|r| r.0 == ty && r.3)
}

/// How importance weights steer the weighted searches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Weighting {
    /// ggml's: the weighted searches of `ggml_quantize_chunk`, the bytes llama-quantize writes.
    Ggml,
    /// apr's: ggml's searches, except that Q6_K weights each value by `qw * (s2 + x^2)` (ggml
    /// by `qw` alone; `s2` twice the super-block's mean square), then each K-quant row's `d`
    /// and `dmin` are multiplied by `c = (sum a x^2 / sum a q^2)^(p / 2)` (`a` the importance
    /// weights, `q` the row as encoded). The weighted least-squares fit shrinks rows; this
    /// undoes the shrink, taking the weighted energy ratio `sum a q^2 / sum a x^2` from `e`
    /// to `e^(1 - p)` (p = 1 restores the source's energy, p > 1 overshoots it).
    Energy { p: f32 },
}

impl Weighting {
    /// The powers `Energy` accepts: finite and in (0, 8].
    pub fn check(self) -> Result<Self, String> {
        match self {
            Weighting::Energy { p } if !(p.is_finite() && p > 0.0 && p <= 8.0) => {
                Err(format!("the energy power must be in (0, 8], got {p}"))
            }
            w => Ok(w),
        }
    }
}

/// Quantizes `src` (rows of `n_per_row` values) to `ty` in `dst`, as ggml_quantize_chunk does;
/// `imatrix` (one weight per column, `n_per_row` long) switches to the weighted search for the
/// types that have one. Returns the bytes written.
pub fn quantize_rows(
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) -> Result<usize, QuantError> {
    quantize_rows_with(ty, src, n_per_row, imatrix, Weighting::Ggml, dst)
}

/// `quantize_rows` with a choice of how the importance weights are used (`Weighting::Ggml`
/// is `quantize_rows`; without `imatrix` the weighting changes nothing).
pub fn quantize_rows_with(
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    weighting: Weighting,
    dst: &mut [u8],
) -> Result<usize, QuantError> {
    const OP: &str = "quantize_rows";
    let Some(&(_, block, weighted, _)) = ENCODERS.iter().find(|r| r.0 == ty) else {
        return Err(QuantError::Unsupported { op: OP, ty });
    };
    let row_bytes = bytes_for(OP, ty, n_per_row)?;
    if n_per_row == 0 || !src.len().is_multiple_of(n_per_row) {
        return Err(QuantError::Len {
            op: OP,
            ty,
            what: "src (whole rows)",
            got: src.len(),
            expected: n_per_row.max(1) * (src.len() / n_per_row.max(1)),
        });
    }
    let nrows = src.len() / n_per_row;
    check_len(OP, ty, "dst", dst.len(), nrows * row_bytes)?;
    if let Some(w) = imatrix {
        check_len(OP, ty, "imatrix", w.len(), n_per_row)?;
    }
    let be = ty.block_elems();
    let bb = ty.block_bytes();
    let qw = imatrix.filter(|_| weighted);
    let energy = match weighting {
        Weighting::Energy { p } if qw.is_some() => Some(p),
        _ => None,
    };
    let scale_offsets = k_scale_offsets(ty);
    let mut block_w = vec![
        0f32;
        if energy.is_some() && ty == GgmlType::Q6K {
            be
        } else {
            0
        }
    ];
    let mut q = vec![0f32; if energy.is_some() { n_per_row } else { 0 }];
    for (x, y) in src
        .chunks_exact(n_per_row)
        .zip(dst.chunks_exact_mut(row_bytes))
    {
        // The legacy weighted paths scale weights by the row's mean square.
        let sigma2 = match qw {
            Some(_) => x.iter().fold(0f32, |s, &v| s + v * v) / n_per_row as f32,
            None => 0.0,
        };
        for (b, (xb, yb)) in x.chunks_exact(be).zip(y.chunks_exact_mut(bb)).enumerate() {
            let w = qw.map(|w| &w[b * be..(b + 1) * be]);
            let w = match w {
                Some(w) if energy.is_some() && ty == GgmlType::Q6K => {
                    magnitude_weights(xb, w, &mut block_w);
                    Some(&block_w[..])
                }
                w => w,
            };
            block(xb, w, sigma2, yb);
        }
        if let (Some(p), Some(a), false) = (energy, qw, scale_offsets.is_empty()) {
            super::dequantize(ty, y, &mut q)?;
            rescale_energy(x, &q, a, p, bb, scale_offsets, y);
        }
    }
    Ok(nrows * row_bytes)
}

/// Encodes one block of `ty` (`ty.block_elems()` values) with ggml's encoder, as
/// `quantize_rows` encodes each block of a row: `qw` the block's importance weights (ignored by
/// the types that take none), `sigma2` the row's mean square (the legacy weighted paths use
/// it).
pub fn encode_block(
    ty: GgmlType,
    x: &[f32],
    qw: Option<&[f32]>,
    sigma2: f32,
    y: &mut [u8],
) -> Result<(), QuantError> {
    const OP: &str = "encode_block";
    let Some(&(_, block, weighted, _)) = ENCODERS.iter().find(|r| r.0 == ty) else {
        return Err(QuantError::Unsupported { op: OP, ty });
    };
    check_len(OP, ty, "x", x.len(), ty.block_elems())?;
    check_len(OP, ty, "y", y.len(), ty.block_bytes())?;
    if let Some(w) = qw {
        check_len(OP, ty, "qw", w.len(), ty.block_elems())?;
    }
    block(x, qw.filter(|_| weighted), sigma2, y);
    Ok(())
}

/// The byte offsets of a K-quant block's f16 super-block scales (`d`, and `dmin` where the
/// type has one); empty for the other types.
fn k_scale_offsets(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q2K => &[Q2K_D, Q2K_DMIN],
        GgmlType::Q3K => &[Q3K_D],
        GgmlType::Q4K => &[Q4K_D, Q4K_DMIN],
        GgmlType::Q5K => &[Q5K_D, Q5K_DMIN],
        GgmlType::Q6K => &[Q6K_D],
        _ => &[],
    }
}

/// apr's Q6_K weights: `qw * (s2 + x^2)`, `s2` twice the block's mean square.
fn magnitude_weights(x: &[f32], qw: &[f32], out: &mut [f32]) {
    let s2 = 2.0 * x.iter().fold(0f32, |s, &v| s + v * v) / x.len() as f32;
    for ((o, &w), &v) in out.iter_mut().zip(qw).zip(x) {
        *o = w * (s2 + v * v);
    }
}

/// Multiplies the super-block scales of the encoded row `y` (blocks of `bb` bytes, scales at
/// `offsets`) by `(sum a x^2 / sum a q^2)^(p / 2)`, `q` the row `y` decodes to.
fn rescale_energy(
    x: &[f32],
    q: &[f32],
    a: &[f32],
    p: f32,
    bb: usize,
    offsets: &[usize],
    y: &mut [u8],
) {
    let (mut ex, mut eq) = (0f64, 0f64);
    for ((&xi, &qi), &ai) in x.iter().zip(q).zip(a) {
        ex += ai as f64 * (xi as f64).powi(2);
        eq += ai as f64 * (qi as f64).powi(2);
    }
    if !(ex > 0.0 && eq > 0.0) {
        return;
    }
    let c = (ex / eq).powf(p as f64 / 2.0) as f32;
    for yb in y.chunks_exact_mut(bb) {
        for &o in offsets {
            let d = half::f16::from_le_bytes([yb[o], yb[o + 1]]).to_f32();
            yb[o..o + 2].copy_from_slice(&half::f16::from_f32(d * c).to_le_bytes());
        }
    }
}

fn enc_f32(x: &[f32], _: Option<&[f32]>, _: f32, y: &mut [u8]) {
    y.copy_from_slice(&x[0].to_le_bytes());
}

fn enc_f16(x: &[f32], _: Option<&[f32]>, _: f32, y: &mut [u8]) {
    y.copy_from_slice(&half::f16::from_f32(x[0]).to_le_bytes());
}

/// ggml's `ggml_compute_fp32_to_bf16`: round to nearest even, NaN forced quiet.
fn enc_bf16(x: &[f32], _: Option<&[f32]>, _: f32, y: &mut [u8]) {
    let u = x[0].to_bits();
    let h = if (u & 0x7fff_ffff) > 0x7f80_0000 {
        ((u >> 16) | 64) as u16
    } else {
        (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
    };
    y.copy_from_slice(&h.to_le_bytes());
}

fn enc_q8_0(x: &[f32], _: Option<&[f32]>, _: f32, y: &mut [u8]) {
    quantize_row_q8_0(x, y).expect("one whole block");
}

/// Weights of a legacy block: qw * sqrt(sigma2 + x^2).
fn legacy_weights(x: &[f32], qw: &[f32], sigma2: f32) -> [f32; QK] {
    let mut w = [0f32; QK];
    for j in 0..QK {
        w[j] = qw[j] * (sigma2 + x[j] * x[j]).sqrt();
    }
    w
}

/// The value of largest magnitude (the first one on ties), as the symmetric refs pick it.
fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// Min and max as the asymmetric refs compute them.
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// C's `(int8_t)(v)` after a float to int conversion (truncation toward zero).
fn trunc_i8(v: f32) -> i8 {
    v as i32 as i8
}

/// Packs 32 levels (nibbles) as the legacy `qs` and returns the 5th bits as `qh`.
fn pack_legacy(l: &[u8; QK], qs: &mut [u8]) -> u32 {
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let (a, b) = (l[j], l[j + QK / 2]);
        qs[j] = (a & 0x0F) | ((b & 0x0F) << 4);
        qh |= (((a & 0x10) >> 4) as u32) << j;
        qh |= (((b & 0x10) >> 4) as u32) << (j + QK / 2);
    }
    qh
}

fn put_f16(y: &mut [u8], off: usize, v: f32) {
    y[off..off + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
}

/// Symmetric legacy types (Q4_0, Q5_0): `half` = 8 or 16 levels each side.
fn enc_symmetric(x: &[f32], qw: Option<&[f32]>, sigma2: f32, half: i32) -> (f32, [u8; QK]) {
    let mut l = [0u8; QK];
    match qw {
        None => {
            let d = signed_absmax(x) / -(half as f32);
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let bias = half as f32 + 0.5;
            let top = (2 * half - 1) as i8;
            for j in 0..QK {
                l[j] = trunc_i8(x[j] * id + bias).min(top) as u8;
            }
            (d, l)
        }
        Some(qw) => {
            let w = legacy_weights(x, qw, sigma2);
            let mut li = [0i8; QK];
            let d = make_qx_quants(half, x, &mut li, Some(&w));
            for j in 0..QK {
                l[j] = li[j] as u8;
            }
            (d, l)
        }
    }
}

/// Asymmetric legacy types (Q4_1, Q5_1): levels 0..=nmax; returns (d, m, levels).
fn enc_asymmetric(x: &[f32], qw: Option<&[f32]>, sigma2: f32, nmax: i32) -> (f32, f32, [u8; QK]) {
    let mut l = [0u8; QK];
    match qw {
        None => {
            let (min, max) = min_max(x);
            let d = (max - min) / nmax as f32;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for j in 0..QK {
                let v = (x[j] - min) * id + 0.5;
                // Q4_1's ref clamps at 15 through int8; Q5_1's converts straight to uint8.
                l[j] = if nmax == 15 {
                    trunc_i8(v).min(15) as u8
                } else {
                    v as i32 as u8
                };
            }
            (d, min, l)
        }
        Some(qw) => {
            let w = legacy_weights(x, qw, sigma2);
            let p = MinSearch {
                nmax,
                rmin: -0.9,
                rdelta: 0.05,
                nstep: 36,
                use_mad: false,
            };
            let (d, neg_min) = make_qkx_quants(p, x, &w, &mut l, true);
            (d, -neg_min, l)
        }
    }
}

fn enc_q4_0(x: &[f32], qw: Option<&[f32]>, sigma2: f32, y: &mut [u8]) {
    let (d, l) = enc_symmetric(x, qw, sigma2, 8);
    put_f16(y, 0, d);
    for j in 0..QK / 2 {
        y[Q4_0_QS + j] = l[j] | (l[j + QK / 2] << 4);
    }
}

fn enc_q5_0(x: &[f32], qw: Option<&[f32]>, sigma2: f32, y: &mut [u8]) {
    let (d, l) = enc_symmetric(x, qw, sigma2, 16);
    put_f16(y, 0, d);
    let qh = pack_legacy(&l, &mut y[Q5_0_QS..Q5_0_QS + QK / 2]);
    y[Q5_0_QH..Q5_0_QH + 4].copy_from_slice(&qh.to_le_bytes());
}

fn enc_q4_1(x: &[f32], qw: Option<&[f32]>, sigma2: f32, y: &mut [u8]) {
    let (d, m, l) = enc_asymmetric(x, qw, sigma2, 15);
    put_f16(y, 0, d);
    put_f16(y, Q4_1_M, m);
    for j in 0..QK / 2 {
        y[Q4_1_QS + j] = l[j] | (l[j + QK / 2] << 4);
    }
}

fn enc_q5_1(x: &[f32], qw: Option<&[f32]>, sigma2: f32, y: &mut [u8]) {
    let (d, m, l) = enc_asymmetric(x, qw, sigma2, 31);
    put_f16(y, 0, d);
    put_f16(y, Q5_1_M, m);
    let qh = pack_legacy(&l, &mut y[Q5_1_QS..Q5_1_QS + QK / 2]);
    y[Q5_1_QH..Q5_1_QH + 4].copy_from_slice(&qh.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::super::dequantize;
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// Relative RMS error bound per type (of the block-wise range), loose enough for
    /// uniform random rows and tight enough to catch a wrong layout.
    const BOUNDS: &[(GgmlType, f32)] = &[
        (GgmlType::F32, 0.0),
        (GgmlType::F16, 1e-3),
        (GgmlType::BF16, 8e-3),
        (GgmlType::Q8_0, 0.01),
        (GgmlType::Q6K, 0.03),
        (GgmlType::Q5_0, 0.04),
        (GgmlType::Q5_1, 0.04),
        (GgmlType::Q5K, 0.04),
        (GgmlType::Q4_0, 0.08),
        (GgmlType::Q4_1, 0.08),
        (GgmlType::Q4K, 0.08),
        (GgmlType::Q3K, 0.16),
        (GgmlType::Q2K, 0.35),
    ];

    #[test]
    fn every_encoder_round_trips_within_its_error_bound() {
        let n = 512;
        let x = random(4 * n, 11);
        let w: Vec<f32> = random(n, 12).iter().map(|v| v.abs() + 0.1).collect();
        for &(ty, bound) in BOUNDS {
            for imatrix in [None, Some(&w[..])] {
                let mut q = vec![0u8; ty.bytes_for(x.len()).unwrap()];
                quantize_rows(ty, &x, n, imatrix, &mut q).unwrap();
                let mut y = vec![0f32; x.len()];
                dequantize(ty, &q, &mut y).unwrap();
                let se: f32 = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum();
                let rms = (se / x.len() as f32).sqrt();
                // Values are uniform in [-1, 1): the RMS of x is 1/sqrt(3).
                let rel = rms * 3f32.sqrt();
                assert!(
                    rel <= bound,
                    "{ty} imatrix={}: relative RMS error {rel} > {bound}",
                    imatrix.is_some()
                );
                if ty != GgmlType::F32 {
                    assert!(rel > 0.0, "{ty}: lossy type gave an exact copy");
                }
            }
        }
    }

    #[test]
    fn imatrix_changes_the_weighted_types_only() {
        let n = 256;
        let x = random(2 * n, 3);
        let w: Vec<f32> = (0..n)
            .map(|i| if i % 2 == 0 { 10.0 } else { 0.01 })
            .collect();
        for &(ty, _) in BOUNDS {
            let mut a = vec![0u8; ty.bytes_for(x.len()).unwrap()];
            let mut b = a.clone();
            quantize_rows(ty, &x, n, None, &mut a).unwrap();
            quantize_rows(ty, &x, n, Some(&w), &mut b).unwrap();
            assert_eq!(a != b, uses_imatrix(ty), "{ty}");
        }
    }

    /// `sum a q^2 / sum a x^2` of the rows `x` encoded as `q` (bytes of `ty`).
    fn weighted_energy(ty: GgmlType, x: &[f32], q: &[u8], a: &[f32]) -> f64 {
        let mut y = vec![0f32; x.len()];
        dequantize(ty, q, &mut y).unwrap();
        let n = a.len();
        let (mut ex, mut eq) = (0f64, 0f64);
        for (i, (&xi, &yi)) in x.iter().zip(&y).enumerate() {
            ex += a[i % n] as f64 * (xi as f64).powi(2);
            eq += a[i % n] as f64 * (yi as f64).powi(2);
        }
        eq / ex
    }

    const K_TYPES: [GgmlType; 5] = [
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ];

    #[test]
    fn energy_weighting_moves_the_weighted_energy_by_the_power_law() {
        let n = 1024;
        // One row: the per-row rescale is then one factor for all of `x`.
        let x: Vec<f32> = random(n, 21).iter().map(|v| v * v * v).collect();
        let a: Vec<f32> = random(n, 22)
            .iter()
            .map(|v| v.abs().powi(4) + 0.01)
            .collect();
        let enc = |ty: GgmlType, w: Weighting| {
            let mut q = vec![0u8; ty.bytes_for(n).unwrap()];
            quantize_rows_with(ty, &x, n, Some(&a), w, &mut q).unwrap();
            q
        };
        for ty in K_TYPES {
            let ggml = enc(ty, Weighting::Ggml);
            let e_ggml = weighted_energy(ty, &x, &ggml, &a);
            // p = 1 brings the weighted energy back to the source's (f16 rounding of d).
            let e1 = weighted_energy(ty, &x, &enc(ty, Weighting::Energy { p: 1.0 }), &a);
            assert!((e1 - 1.0).abs() < 2e-3, "{ty}: p=1 energy {e1}");
            if ty == GgmlType::Q6K {
                // Q6_K also changes its search weights, so only p = 1 has a fixed target.
                continue;
            }
            assert!(
                (e_ggml - 1.0).abs() > 1e-3,
                "{ty}: no shrink to undo ({e_ggml})"
            );
            // Otherwise the same codes, scaled: energy ratio (e_ggml)^(1 - p).
            let e3 = enc(ty, Weighting::Energy { p: 3.0 });
            let want = e_ggml.ln() * (1.0 - 3.0);
            let got = weighted_energy(ty, &x, &e3, &a).ln();
            assert!(
                (got - want).abs() < 1e-3,
                "{ty}: ln energy {got}, want {want}"
            );
            let offs = k_scale_offsets(ty);
            for (b, (g, e)) in ggml
                .chunks_exact(ty.block_bytes())
                .zip(e3.chunks_exact(ty.block_bytes()))
                .enumerate()
            {
                for i in 0..g.len() {
                    let scale = offs.iter().any(|&o| i == o || i == o + 1);
                    assert!(scale || g[i] == e[i], "{ty} block {b}: byte {i} changed");
                }
            }
        }
    }

    #[test]
    fn energy_weighting_leaves_unweighted_and_non_k_encodings_alone() {
        let n = 512;
        let x = random(3 * n, 31);
        let a: Vec<f32> = random(n, 32).iter().map(|v| v.abs() + 0.1).collect();
        let w = Weighting::Energy { p: 3.0 };
        for &(ty, _) in BOUNDS {
            let mut plain = vec![0u8; ty.bytes_for(x.len()).unwrap()];
            let mut other = plain.clone();
            quantize_rows(ty, &x, n, None, &mut plain).unwrap();
            quantize_rows_with(ty, &x, n, None, w, &mut other).unwrap();
            assert_eq!(plain, other, "{ty}: without an imatrix");
            if !K_TYPES.contains(&ty) {
                quantize_rows(ty, &x, n, Some(&a), &mut plain).unwrap();
                quantize_rows_with(ty, &x, n, Some(&a), w, &mut other).unwrap();
                assert_eq!(plain, other, "{ty}: not a K type");
            }
        }
    }

    #[test]
    fn energy_powers_outside_the_range_are_errors() {
        for p in [0.0, -1.0, 8.5, f32::NAN, f32::INFINITY] {
            assert!(Weighting::Energy { p }.check().is_err(), "{p}");
        }
        for p in [0.5, 3.0, 8.0] {
            assert_eq!(Weighting::Energy { p }.check(), Ok(Weighting::Energy { p }));
        }
        assert_eq!(Weighting::Ggml.check(), Ok(Weighting::Ggml));
    }

    #[test]
    fn bf16_rounds_to_nearest_even_and_keeps_nan_quiet() {
        let mut y = [0u8; 2];
        enc_bf16(&[f32::from_bits(0x3f80_8000)], None, 0.0, &mut y);
        assert_eq!(u16::from_le_bytes(y), 0x3f80, "tie to even (down)");
        enc_bf16(&[f32::from_bits(0x3f81_8000)], None, 0.0, &mut y);
        assert_eq!(u16::from_le_bytes(y), 0x3f82, "tie to even (up)");
        enc_bf16(&[f32::from_bits(0x7f80_0001)], None, 0.0, &mut y);
        assert_eq!(u16::from_le_bytes(y), 0x7fc0, "signalling NaN made quiet");
    }

    #[test]
    fn bad_lengths_and_types_are_errors() {
        let x = vec![0.5f32; 512];
        let mut q = vec![0u8; GgmlType::Q4K.bytes_for(512).unwrap()];
        // Row length not a whole number of blocks.
        assert!(quantize_rows(GgmlType::Q4K, &x[..384], 384, None, &mut q).is_err());
        // Source not whole rows.
        assert!(quantize_rows(GgmlType::Q4K, &x[..300], 256, None, &mut q).is_err());
        // Destination too short.
        assert!(quantize_rows(GgmlType::Q4K, &x, 256, None, &mut q[..100]).is_err());
        // imatrix of the wrong length.
        let w = vec![1f32; 100];
        assert!(quantize_rows(GgmlType::Q4K, &x, 256, Some(&w), &mut q).is_err());
        // Not an encodable type.
        assert!(quantize_rows(GgmlType::Q8K, &x, 256, None, &mut q).is_err());
        assert!(quantize_rows(GgmlType::Q4K, &x, 0, None, &mut q).is_err());
    }
}

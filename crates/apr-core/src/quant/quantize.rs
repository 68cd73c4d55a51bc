//! Activation quantization (Q8_0, Q8_1, Q8_K), bit-identical to ggml's `quantize_row_*_ref`.
//! Reference: ggml/src/ggml-quants.c.

use super::blocks::*;
use super::error::{bytes_for, check_len};
use super::{GgmlType, QuantError};

/// ggml's `nearest_int`: round half to even via the 1.5 * 2^23 trick (valid for |x| < 2^22).
#[inline(always)]
fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

fn check(op: &'static str, ty: GgmlType, src: &[f32], dst: &[u8]) -> Result<(), QuantError> {
    let want = bytes_for(op, ty, src.len())?;
    check_len(op, ty, "dst", dst.len(), want)
}

/// Max |x| of a block, as ggml computes it.
#[inline(always)]
fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// Quantizes `src` (a whole number of 32-blocks) to Q8_0 blocks in `dst`.
pub fn quantize_row_q8_0(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check("quantize_row_q8_0", GgmlType::Q8_0, src, dst)?;
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(2 + QK)) {
        let d = amax(x) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y[..2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
        for (q, &v) in y[Q8_0_QS..].iter_mut().zip(x) {
            // f32::round is C roundf: half away from zero.
            *q = (v * id).round() as i8 as u8;
        }
    }
    Ok(())
}

/// Quantizes activations to Q8_0 the way ggml's x86 SIMD path does (the one llama.cpp runs
/// on AVX/AVX2 machines): multiplier 127 / amax and round half to even. It differs from
/// [`quantize_row_q8_0`] (ggml's reference) only on values that land on or next to a
/// rounding tie, but mirroring it keeps greedy outputs equal to llama.cpp's.
pub fn quantize_row_q8_0_act(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check("quantize_row_q8_0_act", GgmlType::Q8_0, src, dst)?;
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(2 + QK)) {
        let amax = amax(x);
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        y[..2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
        for (q, &v) in y[Q8_0_QS..].iter_mut().zip(x) {
            *q = (v * id).round_ties_even() as i8 as u8;
        }
    }
    Ok(())
}

/// Quantizes `src` to Q8_1 blocks (Q8_0 plus s = d * sum(qs)), the activation type of Q4_1/Q5_1.
pub fn quantize_row_q8_1(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check("quantize_row_q8_1", GgmlType::Q8_1, src, dst)?;
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(4 + QK)) {
        let d = amax(x) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in y[Q8_1_QS..].iter_mut().zip(x) {
            let qi = (v * id).round() as i8;
            sum += qi as i32;
            *q = qi as u8;
        }
        y[..2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
        let s = half::f16::from_f32(sum as f32 * d);
        y[Q8_1_S..Q8_1_S + 2].copy_from_slice(&s.to_le_bytes());
    }
    Ok(())
}

/// Quantizes `src` (a whole number of 256-blocks) to ggml's Q8_K blocks: f32 d, 256 i8, and
/// 16 i16 sums of 16 values each. The scale is -127 / (the signed value of largest magnitude).
pub fn quantize_row_q8_k(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check("quantize_row_q8_k", GgmlType::Q8K, src, dst)?;
    for (x, y) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(GgmlType::Q8K.block_bytes()))
    {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            y.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        let mut qs = [0i8; QK_K];
        for (q, &v) in qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        y[Q8K_D..Q8K_D + 4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
        for (o, &q) in y[Q8K_QS..Q8K_QS + QK_K].iter_mut().zip(&qs) {
            *o = q as u8;
        }
        for (j, s) in qs.chunks_exact(16).enumerate() {
            let sum: i16 = s.iter().map(|&q| q as i16).sum();
            let off = Q8K_BSUMS + 2 * j;
            y[off..off + 2].copy_from_slice(&sum.to_le_bytes());
        }
    }
    Ok(())
}

/// Quantizes one activation row to `act_ty` (one of F32, Q8_0, Q8_1, Q8_K; see
/// [`super::vec_dot_type`]). F32 copies the little-endian bytes.
pub fn quantize_activation(
    act_ty: GgmlType,
    src: &[f32],
    dst: &mut [u8],
) -> Result<(), QuantError> {
    match act_ty {
        GgmlType::F32 => {
            check("quantize_activation", act_ty, src, dst)?;
            for (o, v) in dst.chunks_exact_mut(4).zip(src) {
                o.copy_from_slice(&v.to_le_bytes());
            }
            Ok(())
        }
        GgmlType::Q8_0 => quantize_row_q8_0_act(src, dst),
        GgmlType::Q8_1 => quantize_row_q8_1(src, dst),
        GgmlType::Q8K => quantize_row_q8_k(src, dst),
        ty => Err(QuantError::Unsupported {
            op: "quantize_activation",
            ty,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::dequantize;
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn activation_q8_0_rounds_ties_to_even_like_ggml_x86() {
        // amax 127 makes the multiplier exactly 1: 2.5 -> 2 (x86 SIMD), 3 (reference roundf).
        let mut x = vec![0.0f32; QK];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -3.5;
        x[3] = 1.25;
        let (mut a, mut r) = (vec![0u8; 2 + QK], vec![0u8; 2 + QK]);
        quantize_row_q8_0_act(&x, &mut a).unwrap();
        quantize_row_q8_0(&x, &mut r).unwrap();
        assert_eq!(&a[..2], &r[..2], "same scale");
        assert_eq!(
            [a[2] as i8, a[3] as i8, a[4] as i8, a[5] as i8],
            [127, 2, -4, 1]
        );
        assert_eq!([r[3] as i8, r[4] as i8], [3, -4]);
        // Elsewhere the two agree to within one step.
        let x = random(4 * QK, 5);
        let (mut a, mut r) = (vec![0u8; 4 * (2 + QK)], vec![0u8; 4 * (2 + QK)]);
        quantize_row_q8_0_act(&x, &mut a).unwrap();
        quantize_row_q8_0(&x, &mut r).unwrap();
        assert!(a
            .iter()
            .zip(&r)
            .all(|(p, q)| ((*p as i8) as i32 - (*q as i8) as i32).abs() <= 1));
    }

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect()
    }

    #[test]
    fn nearest_int_is_round_half_even() {
        for x in [0.5f32, 1.5, 2.5, -0.5, -1.5, 126.5, -127.49, 3.7, -3.7] {
            assert_eq!(nearest_int(x), x.round_ties_even() as i32, "{x}");
        }
    }

    /// Round trip: each element is within half a quantization step of the input.
    fn round_trip(ty: GgmlType, block: usize) {
        for (blocks, seed) in [(1usize, 1u64), (3, 2), (8, 3)] {
            let x = random(blocks * block, seed);
            let mut q = vec![0u8; ty.bytes_for(x.len()).unwrap()];
            quantize_activation(ty, &x, &mut q).unwrap();
            let mut y = vec![0f32; x.len()];
            dequantize(ty, &q, &mut y).unwrap();
            for (xb, yb) in x.chunks(block).zip(y.chunks(block)) {
                let amax = amax(xb);
                // Half a step of amax/127, plus slack for the f16 rounding of d.
                let tol = amax / 127.0 * 0.5 + amax * 2e-3;
                for (a, b) in xb.iter().zip(yb) {
                    assert!((a - b).abs() <= tol, "{ty}: {a} vs {b} (tol {tol})");
                }
            }
        }
    }

    #[test]
    fn q8_round_trips() {
        round_trip(GgmlType::Q8_0, QK);
        round_trip(GgmlType::Q8_1, QK);
        round_trip(GgmlType::Q8K, QK_K);
        round_trip(GgmlType::F32, 1);
    }

    #[test]
    fn q8_k_bsums_and_zero_block() {
        let mut x = random(2 * QK_K, 9);
        x[QK_K..].fill(0.0);
        let mut q = vec![0u8; 2 * 292];
        quantize_row_q8_k(&x, &mut q).unwrap();
        for j in 0..16 {
            let s: i32 = (0..16).map(|l| q[4 + 16 * j + l] as i8 as i32).sum();
            assert_eq!(s, i16_at(&q, Q8K_BSUMS + 2 * j) as i32);
        }
        assert!(q[292..].iter().all(|&b| b == 0));
        // The largest-magnitude element maps to exactly -127.
        let (imax, _) = x[..QK_K]
            .iter()
            .enumerate()
            .fold((0, 0f32), |(bi, bv), (i, v)| {
                if v.abs() > bv {
                    (i, v.abs())
                } else {
                    (bi, bv)
                }
            });
        assert_eq!(q[4 + imax] as i8, -127);
    }

    #[test]
    fn q8_1_sum_field() {
        let x = random(QK, 5);
        let mut q = vec![0u8; 36];
        quantize_row_q8_1(&x, &mut q).unwrap();
        let d = f16_at(&q, 0);
        let sum: i32 = q[4..].iter().map(|&b| b as i8 as i32).sum();
        assert_eq!(f16_at(&q, 2), half::f16::from_f32(sum as f32 * d).to_f32());
    }

    #[test]
    fn bad_lengths_are_errors() {
        let x = [1f32; 32];
        assert!(quantize_row_q8_0(&x, &mut [0u8; 33]).is_err());
        assert!(quantize_row_q8_0(&x[..31], &mut [0u8; 34]).is_err());
        assert!(quantize_row_q8_k(&x, &mut [0u8; 292]).is_err());
        assert!(quantize_activation(GgmlType::Q4K, &x, &mut [0u8; 144]).is_err());
        assert!(quantize_activation(GgmlType::F32, &x, &mut [0u8; 127]).is_err());
    }
}

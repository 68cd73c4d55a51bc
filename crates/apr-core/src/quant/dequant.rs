//! Dequantization of every table type to f32, one block at a time, in ggml's element order.
//! Reference: `dequantize_row_*` in ggml/src/ggml-quants.c.

use super::blocks::*;
use super::error::{bytes_for, check_len};
use super::{GgmlType, QuantError};

/// Dequantizes `dst.len()` elements of type `ty` from the raw bytes `src`.
///
/// `dst.len()` must be a whole number of blocks and `src.len()` exactly the bytes they take.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    const OP: &str = "dequantize";
    let want = bytes_for(OP, ty, dst.len())?;
    check_len(OP, ty, "src", src.len(), want)?;
    let bb = ty.block_bytes();
    let be = ty.block_elems();
    let block_fn: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => |b, y| y[0] = f32_at(b, 0),
        GgmlType::F16 => |b, y| y[0] = f16_at(b, 0),
        GgmlType::BF16 => {
            |b, y| y[0] = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)
        }
        GgmlType::Q4_0 => block_q4_0,
        GgmlType::Q4_1 => block_q4_1,
        GgmlType::Q5_0 => block_q5_0,
        GgmlType::Q5_1 => block_q5_1,
        GgmlType::Q8_0 => block_q8_0,
        GgmlType::Q8_1 => block_q8_1,
        GgmlType::Q2K => block_q2_k,
        GgmlType::Q3K => block_q3_k,
        GgmlType::Q4K => block_q4_k,
        GgmlType::Q5K => block_q5_k,
        GgmlType::Q6K => block_q6_k,
        GgmlType::Q8K => block_q8_k,
    };
    for (b, y) in src.chunks_exact(bb).zip(dst.chunks_exact_mut(be)) {
        block_fn(b, y);
    }
    Ok(())
}

fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, &q) in b[Q4_0_QS..Q4_0_QS + QK / 2].iter().enumerate() {
        y[j] = ((q & 0xF) as i32 - 8) as f32 * d;
        y[j + QK / 2] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, Q4_1_M));
    for (j, &q) in b[Q4_1_QS..Q4_1_QS + QK / 2].iter().enumerate() {
        y[j] = (q & 0xF) as f32 * d + m;
        y[j + QK / 2] = (q >> 4) as f32 * d + m;
    }
}

fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32_at(b, Q5_0_QH);
    for (j, &q) in b[Q5_0_QS..Q5_0_QS + QK / 2].iter().enumerate() {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        y[j] = (((q & 0xF) | h0) as i32 - 16) as f32 * d;
        y[j + QK / 2] = (((q >> 4) | h1) as i32 - 16) as f32 * d;
    }
}

fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, Q5_1_M));
    let qh = u32_at(b, Q5_1_QH);
    for (j, &q) in b[Q5_1_QS..Q5_1_QS + QK / 2].iter().enumerate() {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        y[j] = ((q & 0xF) | h0) as f32 * d + m;
        y[j + QK / 2] = ((q >> 4) | h1) as f32 * d + m;
    }
}

fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (yj, &q) in y.iter_mut().zip(&b[Q8_0_QS..Q8_0_QS + QK]) {
        *yj = q as i8 as f32 * d;
    }
}

fn block_q8_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (yj, &q) in y.iter_mut().zip(&b[Q8_1_QS..Q8_1_QS + QK]) {
        *yj = q as i8 as f32 * d;
    }
}

fn block_q2_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, Q2K_D), f16_at(b, Q2K_DMIN));
    let scales = &b[Q2K_SCALES..Q2K_SCALES + 16];
    // Two halves of 128; in each, 32 bytes of qs hold 4 x 2-bit planes; 16 elements per scale.
    for half in 0..2 {
        let q = &b[Q2K_QS + 32 * half..Q2K_QS + 32 * half + 32];
        for plane in 0..4 {
            for sub in 0..2 {
                let sc = scales[8 * half + 2 * plane + sub];
                let dl = d * (sc & 0xF) as f32;
                let ml = dmin * (sc >> 4) as f32;
                let out = 128 * half + 32 * plane + 16 * sub;
                for l in 0..16 {
                    let v = (q[16 * sub + l] >> (2 * plane)) & 3;
                    y[out + l] = dl * v as f32 - ml;
                }
            }
        }
    }
}

fn block_q3_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, Q3K_D);
    let scales = q3k_scales(&b[Q3K_SCALES..Q3K_SCALES + 12]);
    let hm = &b[Q3K_HMASK..Q3K_HMASK + 32];
    for half in 0..2 {
        let q = &b[Q3K_QS + 32 * half..Q3K_QS + 32 * half + 32];
        for plane in 0..4 {
            // The high bit of element (half, plane) lives in hmask bit 4*half + plane.
            let m = 1u8 << (4 * half + plane);
            for sub in 0..2 {
                let dl = d * scales[8 * half + 2 * plane + sub] as f32;
                let out = 128 * half + 32 * plane + 16 * sub;
                for l in 0..16 {
                    let i = 16 * sub + l;
                    let lo = ((q[i] >> (2 * plane)) & 3) as i32;
                    let v = lo - if hm[i] & m != 0 { 0 } else { 4 };
                    y[out + l] = dl * v as f32;
                }
            }
        }
    }
}

fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, Q4K_D), f16_at(b, Q4K_DMIN));
    let sm = k4_unpack(&b[Q4K_SCALES..Q4K_SCALES + 12]);
    // Four chunks of 64: low nibbles of 32 bytes then high nibbles, each with its own scale.
    for c in 0..4 {
        let q = &b[Q4K_QS + 32 * c..Q4K_QS + 32 * c + 32];
        let (d1, m1) = (d * sm[2 * c] as f32, dmin * sm[8 + 2 * c] as f32);
        let (d2, m2) = (d * sm[2 * c + 1] as f32, dmin * sm[8 + 2 * c + 1] as f32);
        for l in 0..32 {
            y[64 * c + l] = d1 * (q[l] & 0xF) as f32 - m1;
            y[64 * c + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, Q5K_D), f16_at(b, Q5K_DMIN));
    let sm = k4_unpack(&b[Q5K_SCALES..Q5K_SCALES + 12]);
    let qh = &b[Q5K_QH..Q5K_QH + 32];
    for c in 0..4 {
        let q = &b[Q5K_QS + 32 * c..Q5K_QS + 32 * c + 32];
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        let (d1, m1) = (d * sm[2 * c] as f32, dmin * sm[8 + 2 * c] as f32);
        let (d2, m2) = (d * sm[2 * c + 1] as f32, dmin * sm[8 + 2 * c + 1] as f32);
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[64 * c + l] = d1 * ((q[l] & 0xF) + h1) as f32 - m1;
            y[64 * c + 32 + l] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
        }
    }
}

fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, Q6K_D);
    for half in 0..2 {
        let ql = &b[Q6K_QL + 64 * half..Q6K_QL + 64 * half + 64];
        let qh = &b[Q6K_QH + 32 * half..Q6K_QH + 32 * half + 32];
        let sc = &b[Q6K_SCALES + 8 * half..Q6K_SCALES + 8 * half + 8];
        let out = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            out[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            out[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            out[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            out[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

fn block_q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32_at(b, Q8K_D);
    for (yj, &q) in y.iter_mut().zip(&b[Q8K_QS..Q8K_QS + QK_K]) {
        *yj = d * q as i8 as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lengths_are_errors() {
        let mut y = [0f32; 32];
        let e = dequantize(GgmlType::Q4_0, &[0u8; 17], &mut y).unwrap_err();
        assert!(
            matches!(
                e,
                QuantError::Len {
                    got: 17,
                    expected: 18,
                    ..
                }
            ),
            "{e}"
        );
        let mut y = [0f32; 33];
        let e = dequantize(GgmlType::Q8_0, &[0u8; 34], &mut y).unwrap_err();
        assert!(matches!(e, QuantError::NotWholeBlocks { n: 33, .. }), "{e}");
        let mut y = [0f32; 100];
        assert!(dequantize(GgmlType::Q6K, &[0u8; 210], &mut y).is_err());
    }

    #[test]
    fn simple_values() {
        // Q8_0 block with d = 0.5 and qs = -16..16.
        let mut b = vec![0u8; 34];
        b[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
        for j in 0..32 {
            b[2 + j] = (j as i8 - 16) as u8;
        }
        let mut y = [0f32; 32];
        dequantize(GgmlType::Q8_0, &b, &mut y).unwrap();
        assert_eq!(y[0], -8.0);
        assert_eq!(y[31], 7.5);
        let mut y = [0f32; 2];
        dequantize(GgmlType::BF16, &[0x80, 0x3f, 0x00, 0xc0], &mut y).unwrap();
        assert_eq!(y, [1.0, -2.0]);
    }
}

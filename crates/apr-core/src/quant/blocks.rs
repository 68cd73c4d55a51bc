//! Byte layouts of ggml blocks (offsets inside one block) and the small unpack helpers
//! shared by dequantization and dot kernels (the helpers index fixed-size blocks and stay
//! crate-private). Reference: ggml/src/ggml-common.h.

/// Legacy block: 32 elements.
pub const QK: usize = super::QK;
/// k-quant super-block: 256 elements.
pub const QK_K: usize = super::QK_K;

// Legacy blocks: offsets of d (f16), m (f16), qh (u32 LE) and qs.
pub const Q4_0_QS: usize = 2;
pub const Q4_1_M: usize = 2;
pub const Q4_1_QS: usize = 4;
pub const Q5_0_QH: usize = 2;
pub const Q5_0_QS: usize = 6;
pub const Q5_1_M: usize = 2;
pub const Q5_1_QH: usize = 4;
pub const Q5_1_QS: usize = 8;
pub const Q8_0_QS: usize = 2;
/// Q8_1: d (f16), s = d * sum(qs) (f16), qs.
pub const Q8_1_S: usize = 2;
pub const Q8_1_QS: usize = 4;

// Q2_K (84 bytes): scales[16] (lo nibble scale, hi nibble min), qs[64], d, dmin.
pub const Q2K_SCALES: usize = 0;
pub const Q2K_QS: usize = 16;
pub const Q2K_D: usize = 80;
pub const Q2K_DMIN: usize = 82;

// Q3_K (110 bytes): hmask[32], qs[64], scales[12] (16 x 6-bit), d.
pub const Q3K_HMASK: usize = 0;
pub const Q3K_QS: usize = 32;
pub const Q3K_SCALES: usize = 96;
pub const Q3K_D: usize = 108;

// Q4_K (144 bytes): d, dmin, scales[12] (8 x 6-bit scale + 8 x 6-bit min), qs[128].
pub const Q4K_D: usize = 0;
pub const Q4K_DMIN: usize = 2;
pub const Q4K_SCALES: usize = 4;
pub const Q4K_QS: usize = 16;

// Q5_K (176 bytes): d, dmin, scales[12], qh[32], qs[128].
pub const Q5K_D: usize = 0;
pub const Q5K_DMIN: usize = 2;
pub const Q5K_SCALES: usize = 4;
pub const Q5K_QH: usize = 16;
pub const Q5K_QS: usize = 48;

// Q6_K (210 bytes): ql[128], qh[64], scales[16] (i8), d.
pub const Q6K_QL: usize = 0;
pub const Q6K_QH: usize = 128;
pub const Q6K_SCALES: usize = 192;
pub const Q6K_D: usize = 208;

// Q8_K (292 bytes): d (f32), qs[256] (i8), bsums[16] (i16 sums of 16 qs each).
pub const Q8K_D: usize = 0;
pub const Q8K_QS: usize = 4;
pub const Q8K_BSUMS: usize = 260;

/// Reads the little-endian f16 at `off` as f32.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], off: usize) -> f32 {
    half::f16::from_le_bytes([b[off], b[off + 1]]).to_f32()
}

/// Reads the little-endian f32 at `off`.
#[inline(always)]
pub(crate) fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Reads the little-endian u32 at `off`.
#[inline(always)]
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Reads the little-endian i16 at `off`.
#[cfg(test)]
pub(crate) fn i16_at(b: &[u8], off: usize) -> i16 {
    i16::from_le_bytes([b[off], b[off + 1]])
}

/// Q4_K / Q5_K: the 6-bit (scale, min) pair of sub-block `j` (0..8) from the 12 packed bytes
/// (ggml's `get_scale_min_k4`).
#[inline(always)]
pub(crate) fn k4_scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K / Q5_K: all 8 scales and 8 mins as one 16-byte array `[scales.., mins..]`.
#[inline(always)]
pub(crate) fn k4_unpack(q: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for j in 0..8 {
        let (s, m) = k4_scale_min(j, q);
        out[j] = s;
        out[8 + j] = m;
    }
    out
}

/// Q4_K / Q5_K: the same `[scales.., mins..]` as [`k4_unpack`] by four word operations
/// (the form the fast kernels use; tested equal to the byte-wise one).
#[inline(always)]
pub(crate) fn k4_unpack_words(q: &[u8]) -> [u8; 16] {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let (a, b, c) = (u32_at(q, 0), u32_at(q, 4), u32_at(q, 8));
    let words = [
        a & KMASK1,
        (c & KMASK2) | (((a >> 6) & KMASK3) << 4),
        b & KMASK1,
        ((c >> 4) & KMASK2) | (((b >> 6) & KMASK3) << 4),
    ];
    let mut out = [0u8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(words) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// Q3_K: the 16 signed 6-bit scales (already minus 32) from the 12 packed bytes.
#[inline(always)]
pub(crate) fn q3k_scales(q: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        // Low 4 bits: bytes 0..8 (nibble j/8); high 2 bits: bytes 8..12 (pair (j%4)).
        let lo = (q[j % 8] >> (4 * (j / 8))) & 0xF;
        let hi = (q[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = ((lo | (hi << 4)) as i8) - 32;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml's word-wise unpack of Q3_K scales, written out to check the byte-wise one above.
    fn q3k_scales_ggml(q: &[u8]) -> [i8; 16] {
        const KMASK1: u32 = 0x0303_0303;
        const KMASK2: u32 = 0x0f0f_0f0f;
        let mut aux = [u32_at(q, 0), u32_at(q, 4), u32_at(q, 8), 0];
        let tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4);
        aux[3] = ((aux[1] >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4);
        aux[0] = (aux[0] & KMASK2) | ((tmp & KMASK1) << 4);
        aux[1] = (aux[1] & KMASK2) | (((tmp >> 2) & KMASK1) << 4);
        let mut out = [0i8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = ((aux[i / 4] >> (8 * (i % 4))) as u8 as i8) - 32;
        }
        out
    }

    #[test]
    fn k4_unpack_forms_agree() {
        let mut state = 0x9e37_79b9u32;
        for _ in 0..200 {
            let mut q = [0u8; 12];
            for b in q.iter_mut() {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *b = (state >> 24) as u8;
            }
            assert_eq!(k4_unpack(&q), k4_unpack_words(&q));
        }
    }

    #[test]
    fn q3k_scale_unpack_matches_ggml_wordwise() {
        let mut state = 0x1234_5678u32;
        for _ in 0..200 {
            let mut q = [0u8; 12];
            for b in q.iter_mut() {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *b = (state >> 24) as u8;
            }
            assert_eq!(q3k_scales(&q), q3k_scales_ggml(&q));
        }
    }
}

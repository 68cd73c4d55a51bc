//! The value grid of one element of an encoded block: once a block's scales are chosen, the
//! element `j` can take the values `scale * level + offset` for the integer levels
//! `lo..=hi`, and [`set_level`] stores one. GPTQ-style quantizers fix a block's scales, then
//! round its elements one at a time to this grid. The scale and offset are the products the
//! dequantizer forms, so `scale * level + offset` is the value `dequantize` gives, bit for bit.
//! Reference: `dequantize_row_*` in ggml/src/ggml-quants.c (the layouts).

use super::blocks::*;
use super::GgmlType;

/// The values element `j` of a block can take: `scale * level + offset`, `level` in
/// `lo..=hi`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub scale: f32,
    /// Added to `scale * level` only where the type has an offset (a symmetric type's levels
    /// are products, signed zeros included).
    pub offset: f32,
    pub affine: bool,
    pub lo: i32,
    pub hi: i32,
}

impl Grid {
    /// The level nearest to `v` (ties to even, as ggml's `nearest_int`), clamped to the grid.
    pub fn nearest(&self, v: f32) -> i32 {
        if self.scale == 0.0 {
            return self.lo.max(0).min(self.hi);
        }
        let l = ((v - self.offset) / self.scale).round_ties_even();
        (l.clamp(self.lo as f32, self.hi as f32)) as i32
    }

    /// The value of `level`.
    pub fn value(&self, level: i32) -> f32 {
        let v = self.scale * level as f32;
        if self.affine {
            v + self.offset
        } else {
            v
        }
    }
}

/// Whether [`grid`] and [`set_level`] know `ty`'s layout.
pub fn has_grid(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
            | GgmlType::Q2K
            | GgmlType::Q3K
            | GgmlType::Q4K
            | GgmlType::Q5K
            | GgmlType::Q6K
    )
}

/// Position of element `j` of a K block in the 2-bit plane layout of Q2_K and Q3_K: (the
/// byte of its low bits within the 64 bytes of levels, the bit shift, the scale index, the
/// plane within its half).
fn plane_pos(j: usize) -> (usize, u32, usize, usize) {
    let (half, r) = (j / 128, j % 128);
    let (plane, sub, l) = (r / 32, (r % 32) / 16, r % 16);
    (
        32 * half + 16 * sub + l,
        2 * plane as u32,
        8 * half + 2 * plane + sub,
        4 * half + plane,
    )
}

/// Position of element `j` in the Q4_K / Q5_K nibble layout: (byte, high nibble, chunk of 64).
fn nibble_pos(j: usize) -> (usize, bool, usize) {
    let (c, r) = (j / 64, j % 64);
    (32 * c + r % 32, r >= 32, c)
}

/// Position of element `j` in Q6_K: (ql byte, high nibble, qh byte, qh shift, scale index).
fn q6_pos(j: usize) -> (usize, bool, usize, u32, usize) {
    let (half, r) = (j / 128, j % 128);
    let (quarter, l) = (r / 32, r % 32);
    let ql = 64 * half + l + if quarter % 2 == 1 { 32 } else { 0 };
    (
        ql,
        quarter >= 2,
        32 * half + l,
        2 * quarter as u32,
        8 * half + l / 16 + 2 * quarter,
    )
}

fn set_nibble(b: &mut u8, high: bool, v: u8) {
    if high {
        *b = (*b & 0x0F) | (v << 4);
    } else {
        *b = (*b & 0xF0) | (v & 0x0F);
    }
}

/// The grid of element `j` of the encoded block `b` of type `ty` (`None` for a type without
/// one: see [`has_grid`]).
pub fn grid(ty: GgmlType, b: &[u8], j: usize) -> Option<Grid> {
    let g = |scale, offset, lo, hi| {
        Some(Grid {
            scale,
            offset,
            affine: !matches!(
                ty,
                GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::Q3K | GgmlType::Q6K
            ),
            lo,
            hi,
        })
    };
    match ty {
        GgmlType::Q4_0 => g(f16_at(b, 0), 0.0, -8, 7),
        GgmlType::Q5_0 => g(f16_at(b, 0), 0.0, -16, 15),
        GgmlType::Q4_1 => g(f16_at(b, 0), f16_at(b, Q4_1_M), 0, 15),
        GgmlType::Q5_1 => g(f16_at(b, 0), f16_at(b, Q5_1_M), 0, 31),
        GgmlType::Q8_0 => g(f16_at(b, 0), 0.0, -128, 127),
        GgmlType::Q2K => {
            let (_, _, s, _) = plane_pos(j);
            let sc = b[Q2K_SCALES + s];
            let dl = f16_at(b, Q2K_D) * (sc & 0xF) as f32;
            let ml = f16_at(b, Q2K_DMIN) * (sc >> 4) as f32;
            g(dl, -ml, 0, 3)
        }
        GgmlType::Q3K => {
            let (_, _, s, _) = plane_pos(j);
            let scales = q3k_scales(&b[Q3K_SCALES..Q3K_SCALES + 12]);
            g(f16_at(b, Q3K_D) * scales[s] as f32, 0.0, -4, 3)
        }
        GgmlType::Q4K | GgmlType::Q5K => {
            let (d_at, m_at, s_at) = if ty == GgmlType::Q4K {
                (Q4K_D, Q4K_DMIN, Q4K_SCALES)
            } else {
                (Q5K_D, Q5K_DMIN, Q5K_SCALES)
            };
            let sm = k4_unpack(&b[s_at..s_at + 12]);
            let sub = j / 32;
            let d1 = f16_at(b, d_at) * sm[sub] as f32;
            let m1 = f16_at(b, m_at) * sm[8 + sub] as f32;
            g(d1, -m1, 0, if ty == GgmlType::Q4K { 15 } else { 31 })
        }
        GgmlType::Q6K => {
            let (_, _, _, _, s) = q6_pos(j);
            let sc = b[Q6K_SCALES + s] as i8;
            g(f16_at(b, Q6K_D) * sc as f32, 0.0, -32, 31)
        }
        _ => None,
    }
}

/// Stores `level` (within the grid's `lo..=hi`) as element `j` of the block `b`; false for a
/// type without a grid.
pub fn set_level(ty: GgmlType, b: &mut [u8], j: usize, level: i32) -> bool {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let at = if ty == GgmlType::Q4_0 {
                Q4_0_QS
            } else {
                Q4_1_QS
            };
            let v = if ty == GgmlType::Q4_0 {
                level + 8
            } else {
                level
            } as u8;
            set_nibble(&mut b[at + j % 16], j >= 16, v);
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let (qh_at, qs_at) = if ty == GgmlType::Q5_0 {
                (Q5_0_QH, Q5_0_QS)
            } else {
                (Q5_1_QH, Q5_1_QS)
            };
            let v = if ty == GgmlType::Q5_0 {
                level + 16
            } else {
                level
            } as u32;
            set_nibble(&mut b[qs_at + j % 16], j >= 16, v as u8);
            let qh = u32_at(b, qh_at) & !(1 << j) | ((v >> 4) & 1) << j;
            b[qh_at..qh_at + 4].copy_from_slice(&qh.to_le_bytes());
        }
        GgmlType::Q8_0 => b[Q8_0_QS + j] = level as i8 as u8,
        GgmlType::Q2K => {
            let (byte, shift, _, _) = plane_pos(j);
            let q = &mut b[Q2K_QS + byte];
            *q = (*q & !(3 << shift)) | ((level as u8 & 3) << shift);
        }
        GgmlType::Q3K => {
            let (byte, shift, _, bit) = plane_pos(j);
            let c = (level + 4) as u8;
            let q = &mut b[Q3K_QS + byte];
            *q = (*q & !(3 << shift)) | ((c & 3) << shift);
            let h = &mut b[Q3K_HMASK + byte % 32];
            *h = (*h & !(1 << bit)) | ((c >> 2) << bit);
        }
        GgmlType::Q4K => {
            let (byte, high, _) = nibble_pos(j);
            set_nibble(&mut b[Q4K_QS + byte], high, level as u8);
        }
        GgmlType::Q5K => {
            let (byte, high, c) = nibble_pos(j);
            set_nibble(&mut b[Q5K_QS + byte], high, level as u8 & 0xF);
            let bit = 2 * c + high as usize;
            let h = &mut b[Q5K_QH + byte % 32];
            *h = (*h & !(1 << bit)) | (((level as u8 >> 4) & 1) << bit);
        }
        GgmlType::Q6K => {
            let (ql, high, qh, shift, _) = q6_pos(j);
            let c = (level + 32) as u8;
            set_nibble(&mut b[Q6K_QL + ql], high, c & 0xF);
            let h = &mut b[Q6K_QH + qh];
            *h = (*h & !(3 << shift)) | ((c >> 4) << shift);
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{dequantize, quantize_rows};

    const TYPES: [GgmlType; 10] = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ];

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
            })
            .collect()
    }

    /// The grid's value of every level the element holds is what the dequantizer gives, and
    /// setting every level of every element in turn reads back through the dequantizer.
    #[test]
    fn grids_agree_with_the_dequantizer() {
        for ty in TYPES {
            let be = ty.block_elems();
            let x = random(be, ty as u64 + 7);
            let mut b = vec![0u8; ty.block_bytes()];
            quantize_rows(ty, &x, be, None, &mut b).unwrap();
            let mut y = vec![0f32; be];
            for j in 0..be {
                let g = grid(ty, &b, j).unwrap();
                for level in [g.lo, g.hi, (g.lo + g.hi) / 2, g.lo + 1] {
                    let mut c = b.clone();
                    assert!(set_level(ty, &mut c, j, level));
                    dequantize(ty, &c, &mut y).unwrap();
                    assert_eq!(
                        y[j].to_bits(),
                        g.value(level).to_bits(),
                        "{ty} j {j} {level}"
                    );
                    // The other elements are untouched.
                    let mut y0 = vec![0f32; be];
                    dequantize(ty, &b, &mut y0).unwrap();
                    for k in (0..be).filter(|&k| k != j) {
                        assert_eq!(y[k].to_bits(), y0[k].to_bits(), "{ty} j {j} k {k}");
                    }
                }
            }
        }
    }

    /// ggml's K encoders end by rounding each element to the nearest level of the scales they
    /// chose, so the grid's nearest level of the source value is the level they stored.
    #[test]
    fn nearest_levels_are_the_k_encoders_levels() {
        for ty in [
            GgmlType::Q2K,
            GgmlType::Q3K,
            GgmlType::Q4K,
            GgmlType::Q5K,
            GgmlType::Q6K,
        ] {
            let x = random(4 * QK_K, ty as u64);
            let mut b = vec![0u8; 4 * ty.block_bytes()];
            quantize_rows(ty, &x, QK_K, None, &mut b).unwrap();
            let mut y = vec![0f32; x.len()];
            dequantize(ty, &b, &mut y).unwrap();
            for (bi, blk) in b.chunks_exact(ty.block_bytes()).enumerate() {
                for j in 0..QK_K {
                    let g = grid(ty, blk, j).unwrap();
                    let v = g.value(g.nearest(x[bi * QK_K + j]));
                    assert_eq!(v.to_bits(), y[bi * QK_K + j].to_bits(), "{ty} {bi} {j}");
                }
            }
        }
    }

    #[test]
    fn types_without_a_grid_say_so() {
        let mut b = vec![0u8; 64];
        assert!(!has_grid(GgmlType::F16));
        assert!(grid(GgmlType::F16, &b, 0).is_none());
        assert!(!set_level(GgmlType::F16, &mut b, 0, 0));
        for ty in TYPES {
            assert!(has_grid(ty), "{ty}");
        }
    }
}

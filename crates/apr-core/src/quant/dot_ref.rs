//! Scalar reference dot products of one weight row with one activation row, written for
//! clarity; the fast kernels are tested against these. Reference: `ggml_vec_dot_*_generic`.
//!
//! Every function takes `n` elements and reads `n / block` blocks from each row; rows shorter
//! than that are read only as far as they go (no panic), which the dispatch layer rules out.

use super::blocks::*;

/// Bytes of one Q8_K block.
const Q8K_BYTES: usize = 292;

/// Weight F32 · activation F32 (little-endian bytes).
pub fn dot_f32_f32(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let w = w.chunks_exact(4).take(n).map(|b| f32_at(b, 0));
    let x = x.chunks_exact(4).map(|b| f32_at(b, 0));
    w.zip(x).map(|(a, b)| a * b).sum()
}

/// Weight F16 · activation F32.
pub fn dot_f16_f32(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let w = w.chunks_exact(2).take(n).map(|b| f16_at(b, 0));
    let x = x.chunks_exact(4).map(|b| f32_at(b, 0));
    w.zip(x).map(|(a, b)| a * b).sum()
}

/// Weight BF16 · activation F32.
pub fn dot_bf16_f32(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let w = w
        .chunks_exact(2)
        .take(n)
        .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16));
    let x = x.chunks_exact(4).map(|b| f32_at(b, 0));
    w.zip(x).map(|(a, b)| a * b).sum()
}

/// The 32 signed values of a Q8_0/Q8_1 activation block starting at `qs`.
fn q8(x: &[u8], qs: usize) -> impl Iterator<Item = i32> + '_ {
    x[qs..qs + QK].iter().map(|&q| q as i8 as i32)
}

/// The 32 signed values of a Q8_0/Q8_1 block as an array (no allocation).
fn q8_arr(b: &[u8], qs: usize) -> [i32; QK] {
    let mut v = [0i32; QK];
    for (o, q) in v.iter_mut().zip(q8(b, qs)) {
        *o = q;
    }
    v
}

/// Integer values of a legacy 32-block: low nibbles give elements 0..16, high 16..32,
/// with bit 4 from `qh` when present.
fn legacy_vals(qs: &[u8], qh: Option<u32>) -> [i32; QK] {
    let mut v = [0i32; QK];
    for j in 0..QK / 2 {
        let (h0, h1) = match qh {
            Some(h) => (
                (((h >> j) << 4) & 0x10) as i32,
                ((h >> (j + 12)) & 0x10) as i32,
            ),
            None => (0, 0),
        };
        v[j] = (qs[j] & 0xF) as i32 | h0;
        v[j + QK / 2] = (qs[j] >> 4) as i32 | h1;
    }
    v
}

fn isum(a: &[i32], b: impl Iterator<Item = i32>) -> i32 {
    a.iter().zip(b).map(|(p, q)| p * q).sum()
}

/// Q4_0 · Q8_0.
pub fn dot_q4_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (bw, bx) in w.chunks_exact(18).zip(x.chunks_exact(34)).take(n / QK) {
        let v = legacy_vals(&bw[Q4_0_QS..], None).map(|q| q - 8);
        sum += isum(&v, q8(bx, Q8_0_QS)) as f32 * (f16_at(bw, 0) * f16_at(bx, 0));
    }
    sum
}

/// Q4_1 · Q8_1: d_w d_x Σ q_w q_x + m_w s_x.
pub fn dot_q4_1_q8_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (bw, bx) in w.chunks_exact(20).zip(x.chunks_exact(36)).take(n / QK) {
        let v = legacy_vals(&bw[Q4_1_QS..], None);
        let s = isum(&v, q8(bx, Q8_1_QS)) as f32;
        sum += s * (f16_at(bw, 0) * f16_at(bx, 0)) + f16_at(bw, Q4_1_M) * f16_at(bx, Q8_1_S);
    }
    sum
}

/// Q5_0 · Q8_0.
pub fn dot_q5_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (bw, bx) in w.chunks_exact(22).zip(x.chunks_exact(34)).take(n / QK) {
        let v = legacy_vals(&bw[Q5_0_QS..], Some(u32_at(bw, Q5_0_QH))).map(|q| q - 16);
        sum += isum(&v, q8(bx, Q8_0_QS)) as f32 * (f16_at(bw, 0) * f16_at(bx, 0));
    }
    sum
}

/// Q5_1 · Q8_1.
pub fn dot_q5_1_q8_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (bw, bx) in w.chunks_exact(24).zip(x.chunks_exact(36)).take(n / QK) {
        let v = legacy_vals(&bw[Q5_1_QS..], Some(u32_at(bw, Q5_1_QH)));
        let s = isum(&v, q8(bx, Q8_1_QS)) as f32;
        sum += s * (f16_at(bw, 0) * f16_at(bx, 0)) + f16_at(bw, Q5_1_M) * f16_at(bx, Q8_1_S);
    }
    sum
}

/// Q8_0 · Q8_0.
pub fn dot_q8_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (bw, bx) in w.chunks_exact(34).zip(x.chunks_exact(34)).take(n / QK) {
        let v = q8_arr(bw, Q8_0_QS);
        sum += isum(&v, q8(bx, Q8_0_QS)) as f32 * (f16_at(bw, 0) * f16_at(bx, 0));
    }
    sum
}

/// The 256 signed values and d of a Q8_K block.
fn q8k(bx: &[u8]) -> (f32, [i32; QK_K]) {
    let mut v = [0i32; QK_K];
    for (o, &q) in v.iter_mut().zip(&bx[Q8K_QS..Q8K_QS + QK_K]) {
        *o = q as i8 as i32;
    }
    (f32_at(bx, Q8K_D), v)
}

/// A k-quant super-block as integers: `vals[i]` for each element, and per sub-block of
/// `sub` elements an integer scale and an integer min (y = d*scale*val - dmin*min).
struct KBlock {
    vals: [i32; QK_K],
    scales: [i32; 16],
    mins: [i32; 16],
    sub: usize,
    d: f32,
    dmin: f32,
}

impl KBlock {
    /// Σ over sub-blocks of (d*scale*Σ val*q8 - dmin*min*Σ q8), times the activation's d.
    fn dot(&self, bx: &[u8]) -> f32 {
        let (dx, q) = q8k(bx);
        let (mut si, mut sm) = (0i32, 0i32);
        for s in 0..QK_K / self.sub {
            let r = s * self.sub..(s + 1) * self.sub;
            let dot: i32 = self.vals[r.clone()]
                .iter()
                .zip(&q[r.clone()])
                .map(|(a, b)| a * b)
                .sum();
            si += self.scales[s] * dot;
            sm += self.mins[s] * q[r].iter().sum::<i32>();
        }
        dx * (self.d * si as f32 - self.dmin * sm as f32)
    }
}

fn q2k_block(b: &[u8]) -> KBlock {
    let mut k = KBlock {
        vals: [0; QK_K],
        scales: [0; 16],
        mins: [0; 16],
        sub: 16,
        d: f16_at(b, Q2K_D),
        dmin: f16_at(b, Q2K_DMIN),
    };
    for (i, &sc) in b[Q2K_SCALES..Q2K_SCALES + 16].iter().enumerate() {
        k.scales[i] = (sc & 0xF) as i32;
        k.mins[i] = (sc >> 4) as i32;
    }
    for i in 0..QK_K {
        let (half, plane, l) = (i / 128, (i / 32) % 4, i % 32);
        k.vals[i] = ((b[Q2K_QS + 32 * half + l] >> (2 * plane)) & 3) as i32;
    }
    k
}

fn q3k_block(b: &[u8]) -> KBlock {
    let sc = q3k_scales(&b[Q3K_SCALES..Q3K_SCALES + 12]);
    let mut k = KBlock {
        vals: [0; QK_K],
        scales: sc.map(|s| s as i32),
        mins: [0; 16],
        sub: 16,
        d: f16_at(b, Q3K_D),
        dmin: 0.0,
    };
    for i in 0..QK_K {
        let (half, plane, l) = (i / 128, (i / 32) % 4, i % 32);
        let lo = ((b[Q3K_QS + 32 * half + l] >> (2 * plane)) & 3) as i32;
        let hi = b[Q3K_HMASK + l] & (1 << (4 * half + plane)) != 0;
        k.vals[i] = lo - if hi { 0 } else { 4 };
    }
    k
}

/// Q4_K and Q5_K share scales; `qh` is the Q5_K high-bit plane offset when present.
fn q45k_block(b: &[u8], scales: usize, qs: usize, qh: Option<usize>) -> KBlock {
    let sm = k4_unpack(&b[scales..scales + 12]);
    let mut k = KBlock {
        vals: [0; QK_K],
        scales: [0; 16],
        mins: [0; 16],
        sub: 32,
        d: f16_at(b, 0),
        dmin: f16_at(b, 2),
    };
    for j in 0..8 {
        k.scales[j] = sm[j] as i32;
        k.mins[j] = sm[8 + j] as i32;
    }
    for i in 0..QK_K {
        let (c, hi_nib, l) = (i / 64, (i / 32) % 2, i % 32);
        let byte = b[qs + 32 * c + l];
        let mut v = if hi_nib == 1 { byte >> 4 } else { byte & 0xF } as i32;
        if let Some(qh) = qh {
            v |= (((b[qh + l] >> (2 * c + hi_nib)) & 1) as i32) << 4;
        }
        k.vals[i] = v;
    }
    k
}

fn q6k_block(b: &[u8]) -> KBlock {
    let mut k = KBlock {
        vals: [0; QK_K],
        scales: [0; 16],
        mins: [0; 16],
        sub: 16,
        d: f16_at(b, Q6K_D),
        dmin: 0.0,
    };
    for (i, s) in k.scales.iter_mut().enumerate() {
        *s = b[Q6K_SCALES + i] as i8 as i32;
    }
    for i in 0..QK_K {
        let (half, quarter, l) = (i / 128, (i / 32) % 4, i % 32);
        let ql = b[Q6K_QL + 64 * half + 32 * (quarter % 2) + l];
        let lo = if quarter >= 2 { ql >> 4 } else { ql & 0xF };
        let hi = (b[Q6K_QH + 32 * half + l] >> (2 * quarter)) & 3;
        k.vals[i] = (lo | (hi << 4)) as i32 - 32;
    }
    k
}

fn dot_k(n: usize, w: &[u8], x: &[u8], wb: usize, unpack: fn(&[u8]) -> KBlock) -> f32 {
    let blocks = w
        .chunks_exact(wb)
        .zip(x.chunks_exact(Q8K_BYTES))
        .take(n / QK_K);
    blocks.map(|(bw, bx)| unpack(bw).dot(bx)).sum()
}

/// Q2_K · Q8_K.
pub fn dot_q2_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_k(n, w, x, 84, q2k_block)
}

/// Q3_K · Q8_K.
pub fn dot_q3_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_k(n, w, x, 110, q3k_block)
}

/// Q4_K · Q8_K.
pub fn dot_q4_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_k(n, w, x, 144, |b| q45k_block(b, Q4K_SCALES, Q4K_QS, None))
}

/// Q5_K · Q8_K.
pub fn dot_q5_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_k(n, w, x, 176, |b| {
        q45k_block(b, Q5K_SCALES, Q5K_QS, Some(Q5K_QH))
    })
}

/// Q6_K · Q8_K.
pub fn dot_q6_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_k(n, w, x, 210, q6k_block)
}

/// Q8_1 (as a weight) · Q8_0: the s field is not needed.
pub fn dot_q8_1_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (bw, bx) in w.chunks_exact(36).zip(x.chunks_exact(34)).take(n / QK) {
        let v = q8_arr(bw, Q8_1_QS);
        sum += isum(&v, q8(bx, Q8_0_QS)) as f32 * (f16_at(bw, 0) * f16_at(bx, 0));
    }
    sum
}

/// Q8_K (as a weight) · Q8_K.
pub fn dot_q8_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let blocks = w
        .chunks_exact(Q8K_BYTES)
        .zip(x.chunks_exact(Q8K_BYTES))
        .take(n / QK_K);
    blocks
        .map(|(bw, bx)| {
            let ((dw, a), (dx, b)) = (q8k(bw), q8k(bx));
            isum(&a, b.into_iter()) as f32 * (dw * dx)
        })
        .sum()
}

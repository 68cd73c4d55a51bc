//! k-quant encoders (Q2_K .. Q6_K): f32 super-blocks of 256 to ggml's blocks, bit-identical
//! to `quantize_row_qN_K_ref` (no importance weights) and `quantize_row_qN_K_impl` (with).
//! Reference: ggml/src/ggml-quants.c.

// Index loops mirror ggml's, so the float order can be checked line by line against it.
#![allow(clippy::needless_range_loop)]

use super::blocks::*;
use super::encode_search::{
    make_q3_quants, make_qkx_quants, make_qp_quants, make_qx_quants, nearest_int, MinSearch,
    GROUP_MAX_EPS,
};

/// Q2_K / Q4_K: the 4-bit scale range of Q2_K's sub-block scales and mins.
const Q2_SCALE_MAX: f32 = 15.0;
/// Q4_K / Q5_K: 6-bit sub-block scales and mins.
const K4_SCALE_MAX: f32 = 63.0;

fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

fn f16_round(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// Sum of squares of a slice, in order.
fn sum_sq(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |s, &v| s + v * v)
}

/// Packs 2-bit levels (256) as ggml's Q2_K / Q3_K `qs`: 4 levels 32 apart per byte.
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8]) {
    for j in (0..QK_K).step_by(128) {
        for i in 0..32 {
            qs[j / 4 + i] =
                l[j + i] | (l[j + i + 32] << 2) | (l[j + i + 64] << 4) | (l[j + i + 96] << 6);
        }
    }
}

/// Q2_K, one super-block; `qw` the importance weights of its 256 columns, if any.
pub(crate) fn block_q2_k(x: &[f32], qw: Option<&[f32]>, y: &mut [u8]) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 16];
    let mut mins = [0f32; 16];
    match qw {
        None => {
            let p = MinSearch {
                nmax: 3,
                rmin: -0.5,
                rdelta: 0.1,
                nstep: 15,
                use_mad: true,
            };
            let (mut max_scale, mut max_min) = (0f32, 0f32);
            for j in 0..16 {
                let xs = &x[16 * j..16 * j + 16];
                let w: Vec<f32> = xs.iter().map(|v| v.abs()).collect();
                (scales[j], mins[j]) = make_qkx_quants(p, xs, &w, &mut l[16 * j..], false);
                if scales[j] > max_scale {
                    max_scale = scales[j];
                }
                if mins[j] > max_min {
                    max_min = mins[j];
                }
            }
            let sc = &mut y[Q2K_SCALES..Q2K_SCALES + 16];
            if max_scale > 0.0 {
                let iscale = Q2_SCALE_MAX / max_scale;
                for j in 0..16 {
                    sc[j] = nearest_int(iscale * scales[j]) as u8;
                }
            } else {
                sc.fill(0);
            }
            let d = if max_scale > 0.0 {
                max_scale / Q2_SCALE_MAX
            } else {
                0.0
            };
            if max_min > 0.0 {
                let iscale = Q2_SCALE_MAX / max_min;
                for j in 0..16 {
                    sc[j] |= (nearest_int(iscale * mins[j]) as u8) << 4;
                }
            }
            let dmin = if max_min > 0.0 {
                max_min / Q2_SCALE_MAX
            } else {
                0.0
            };
            y[Q2K_D..Q2K_D + 2].copy_from_slice(&f16_bytes(d));
            y[Q2K_DMIN..Q2K_DMIN + 2].copy_from_slice(&f16_bytes(dmin));
        }
        Some(qw) => {
            let p = MinSearch {
                nmax: 3,
                rmin: -0.9,
                rdelta: 0.05,
                nstep: 36,
                use_mad: false,
            };
            let sigma2 = sum_sq(x) / QK_K as f32;
            let mut sw = [0f32; 16];
            let mut w = [0f32; 16];
            for j in 0..16 {
                let xs = &x[16 * j..16 * j + 16];
                for i in 0..16 {
                    w[i] = qw[16 * j + i] * (sigma2 + xs[i] * xs[i]).sqrt();
                }
                sw[j] = w.iter().fold(0f32, |s, &v| s + v);
                (scales[j], mins[j]) = make_qkx_quants(p, xs, &w, &mut l[16 * j..], true);
            }
            let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
            let dm = make_qp_quants(15, &scales, &mut ls, &sw);
            let mm = make_qp_quants(15, &mins, &mut lm, &sw);
            y[Q2K_D..Q2K_D + 2].copy_from_slice(&f16_bytes(dm));
            y[Q2K_DMIN..Q2K_DMIN + 2].copy_from_slice(&f16_bytes(mm));
            for j in 0..16 {
                y[Q2K_SCALES + j] = ls[j] | (lm[j] << 4);
            }
        }
    }
    let d = f16_at(y, Q2K_D);
    let dmin = f16_at(y, Q2K_DMIN);
    for j in 0..16 {
        let s = y[Q2K_SCALES + j];
        let dj = d * (s & 0xF) as f32;
        if dj == 0.0 {
            continue;
        }
        let mj = dmin * (s >> 4) as f32;
        for i in 0..16 {
            l[16 * j + i] = nearest_int((x[16 * j + i] + mj) / dj).clamp(0, 3) as u8;
        }
    }
    pack_2bit(&l, &mut y[Q2K_QS..Q2K_QS + 64]);
}

/// Q3_K, one super-block.
pub(crate) fn block_q3_k(x: &[f32], qw: Option<&[f32]>, y: &mut [u8]) {
    let mut l8 = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let sc = Q3K_SCALES;
    y[sc..sc + 12].fill(0);
    // Stores 6-bit level `l` (0..64) of sub-block j in ggml's split layout.
    let put = |y: &mut [u8], j: usize, l: u8| {
        if j < 8 {
            y[sc + j] = l & 0xF;
        } else {
            y[sc + j - 8] |= (l & 0xF) << 4;
        }
        y[sc + 8 + j % 4] |= (l >> 4) << (2 * (j / 4));
    };
    match qw {
        None => {
            let (mut max_scale, mut amax) = (0f32, 0f32);
            for j in 0..16 {
                scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l8[16 * j..]);
                let s = scales[j].abs();
                if s > amax {
                    amax = s;
                    max_scale = scales[j];
                }
            }
            if max_scale != 0.0 {
                let iscale = -32.0 / max_scale;
                for j in 0..16 {
                    let l = nearest_int(iscale * scales[j]) as i8;
                    put(y, j, (l.clamp(-32, 31) + 32) as u8);
                }
                y[Q3K_D..Q3K_D + 2].copy_from_slice(&f16_bytes(1.0 / iscale));
            } else {
                y[Q3K_D..Q3K_D + 2].copy_from_slice(&f16_bytes(0.0));
            }
        }
        Some(qw) => {
            let sigma2 = 2.0 * sum_sq(&x[..QK_K]) / QK_K as f32;
            let mut sw = [0f32; 16];
            let mut w = [0f32; 16];
            for j in 0..16 {
                let xs = &x[16 * j..16 * j + 16];
                for i in 0..16 {
                    w[i] = qw[16 * j + i] * (sigma2 + xs[i] * xs[i]).sqrt();
                }
                sw[j] = w.iter().fold(0f32, |s, &v| s + v);
                scales[j] = make_qx_quants(4, xs, &mut l8[16 * j..16 * j + 16], Some(&w));
            }
            let mut ls = [0i8; 16];
            let d_block = make_qx_quants(32, &scales, &mut ls, Some(&sw));
            for (j, &l) in ls.iter().enumerate() {
                put(y, j, l as u8);
            }
            y[Q3K_D..Q3K_D + 2].copy_from_slice(&f16_bytes(d_block));
        }
    }
    let d = f16_at(y, Q3K_D);
    let scs = q3k_scales(&y[sc..sc + 12]);
    for j in 0..16 {
        let dj = d * scs[j] as f32;
        if dj == 0.0 {
            continue;
        }
        for i in 0..16 {
            l8[16 * j + i] = (nearest_int(x[16 * j + i] / dj).clamp(-4, 3) + 4) as i8;
        }
    }
    let hmask = &mut y[Q3K_HMASK..Q3K_HMASK + 32];
    hmask.fill(0);
    let mut l = [0u8; QK_K];
    for j in 0..QK_K {
        let mut v = l8[j] as u8;
        if l8[j] > 3 {
            hmask[j % 32] |= 1 << (j / 32);
            v -= 4;
        }
        l[j] = v;
    }
    pack_2bit(&l, &mut y[Q3K_QS..Q3K_QS + 64]);
}

/// Packs 8 sub-block (scale, min) 6-bit levels as Q4_K / Q5_K's 12 scale bytes.
fn pack_k4_scales(ls: &[u8; 8], lm: &[u8; 8], q: &mut [u8]) {
    for j in 0..8 {
        let (s, m) = (ls[j], lm[j]);
        if j < 4 {
            q[j] = s;
            q[j + 4] = m;
        } else {
            q[j + 4] = (s & 0xF) | ((m & 0xF) << 4);
            q[j - 4] |= (s >> 4) << 6;
            q[j] |= (m >> 4) << 6;
        }
    }
}

/// Q4_K / Q5_K common part: sub-block scales, mins and the 32-element levels `l`, written
/// (d, dmin, scales) at `d_off`, `d_off + 2`, `d_off + 4`; `nmax` is 15 or 31.
fn k4_scales_and_levels(
    nmax: i32,
    x: &[f32],
    qw: Option<&[f32]>,
    y: &mut [u8],
    l: &mut [u8; QK_K],
) {
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    let (d, dmin) = match qw {
        None => {
            let p = if nmax == 15 {
                MinSearch {
                    nmax,
                    rmin: -1.0,
                    rdelta: 0.1,
                    nstep: 20,
                    use_mad: false,
                }
            } else {
                MinSearch {
                    nmax,
                    rmin: -0.5,
                    rdelta: 0.1,
                    nstep: 15,
                    use_mad: false,
                }
            };
            let (mut max_scale, mut max_min) = (0f32, 0f32);
            let mut w = [0f32; 32];
            for j in 0..8 {
                let xs = &x[32 * j..32 * j + 32];
                let av_x = (sum_sq(xs) / 32.0).sqrt();
                for i in 0..32 {
                    w[i] = av_x + xs[i].abs();
                }
                (scales[j], mins[j]) = make_qkx_quants(p, xs, &w, &mut l[32 * j..], false);
                if scales[j] > max_scale {
                    max_scale = scales[j];
                }
                if mins[j] > max_min {
                    max_min = mins[j];
                }
            }
            let inv_scale = if max_scale > 0.0 {
                K4_SCALE_MAX / max_scale
            } else {
                0.0
            };
            let inv_min = if max_min > 0.0 {
                K4_SCALE_MAX / max_min
            } else {
                0.0
            };
            for j in 0..8 {
                ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
                lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
            }
            (max_scale / K4_SCALE_MAX, max_min / K4_SCALE_MAX)
        }
        Some(qw) => {
            let p = MinSearch {
                nmax,
                rmin: -0.9,
                rdelta: 0.05,
                nstep: 36,
                use_mad: false,
            };
            let sigma2 = 2.0 * sum_sq(&x[..QK_K]) / QK_K as f32;
            let mut sw = [0f32; 8];
            let mut w = [0f32; 32];
            for j in 0..8 {
                let xs = &x[32 * j..32 * j + 32];
                for i in 0..32 {
                    w[i] = qw[32 * j + i] * (sigma2 + xs[i] * xs[i]).sqrt();
                }
                sw[j] = w.iter().fold(0f32, |s, &v| s + v);
                (scales[j], mins[j]) = make_qkx_quants(p, xs, &w, &mut l[32 * j..], true);
            }
            let d = make_qp_quants(63, &scales, &mut ls, &sw);
            let m = make_qp_quants(63, &mins, &mut lm, &sw);
            if nmax == 31 {
                // Q5_K's weighted path clamps the levels; Q4_K's does not.
                for j in 0..8 {
                    ls[j] = ls[j].min(63);
                    lm[j] = lm[j].min(63);
                }
            }
            (d, m)
        }
    };
    let q = &mut y[Q4K_SCALES..Q4K_SCALES + 12];
    q.fill(0);
    pack_k4_scales(&ls, &lm, q);
    y[Q4K_D..Q4K_D + 2].copy_from_slice(&f16_bytes(d));
    y[Q4K_DMIN..Q4K_DMIN + 2].copy_from_slice(&f16_bytes(dmin));
    let (d, dmin) = (f16_at(y, Q4K_D), f16_at(y, Q4K_DMIN));
    for j in 0..8 {
        let (sc, m) = k4_scale_min(j, &y[Q4K_SCALES..Q4K_SCALES + 12]);
        let dj = d * sc as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for i in 0..32 {
            l[32 * j + i] = nearest_int((x[32 * j + i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
}

/// Q4_K, one super-block.
pub(crate) fn block_q4_k(x: &[f32], qw: Option<&[f32]>, y: &mut [u8]) {
    let mut l = [0u8; QK_K];
    k4_scales_and_levels(15, x, qw, y, &mut l);
    let q = &mut y[Q4K_QS..Q4K_QS + 128];
    for (c, j) in (0..QK_K).step_by(64).enumerate() {
        for i in 0..32 {
            q[32 * c + i] = l[j + i] | (l[j + i + 32] << 4);
        }
    }
}

/// Q5_K, one super-block.
pub(crate) fn block_q5_k(x: &[f32], qw: Option<&[f32]>, y: &mut [u8]) {
    let mut l = [0u8; QK_K];
    k4_scales_and_levels(31, x, qw, y, &mut l);
    let mut qh = [0u8; 32];
    let (mut m1, mut m2) = (1u8, 2u8);
    for (c, n) in (0..QK_K).step_by(64).enumerate() {
        for j in 0..32 {
            let mut l1 = l[n + j];
            if l1 > 15 {
                l1 -= 16;
                qh[j] |= m1;
            }
            let mut l2 = l[n + j + 32];
            if l2 > 15 {
                l2 -= 16;
                qh[j] |= m2;
            }
            y[Q5K_QS + 32 * c + j] = l1 | (l2 << 4);
        }
        m1 <<= 2;
        m2 <<= 2;
    }
    y[Q5K_QH..Q5K_QH + 32].copy_from_slice(&qh);
}

/// Q6_K, one super-block (the weighted path uses the importance weights as they are).
pub(crate) fn block_q6_k(x: &[f32], qw: Option<&[f32]>, y: &mut [u8]) {
    let mut l8 = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs) = (0f32, 0f32);
    for ib in 0..16 {
        let w = qw.map(|q| &q[16 * ib..16 * ib + 16]);
        let s = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l8[16 * ib..], w);
        scales[ib] = s;
        if s.abs() > max_abs {
            max_abs = s.abs();
            max_scale = s;
        }
    }
    if max_abs < GROUP_MAX_EPS {
        y.fill(0);
        return;
    }
    let iscale = -128.0 / max_scale;
    y[Q6K_D..Q6K_D + 2].copy_from_slice(&f16_bytes(1.0 / iscale));
    for ib in 0..16 {
        y[Q6K_SCALES + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
    }
    let d = f16_round(1.0 / iscale);
    for j in 0..16 {
        let dj = d * (y[Q6K_SCALES + j] as i8) as f32;
        if dj == 0.0 {
            continue;
        }
        for i in 0..16 {
            l8[16 * j + i] = (nearest_int(x[16 * j + i] / dj).clamp(-32, 31) + 32) as i8;
        }
    }
    let l: Vec<u8> = l8.iter().map(|&v| v as u8).collect();
    for (c, j) in (0..QK_K).step_by(128).enumerate() {
        let (ql, qh) = (Q6K_QL + 64 * c, Q6K_QH + 32 * c);
        for i in 0..32 {
            let (a, b, cc, e) = (l[j + i], l[j + i + 32], l[j + i + 64], l[j + i + 96]);
            y[ql + i] = (a & 0xF) | ((cc & 0xF) << 4);
            y[ql + 32 + i] = (b & 0xF) | ((e & 0xF) << 4);
            y[qh + i] = (a >> 4) | ((b >> 4) << 2) | ((cc >> 4) << 4) | ((e >> 4) << 6);
        }
    }
}

//! AVX2 GEMM kernels for prefill: a panel of 8 weight rows against RN (1..=4) token rows.
//! The panel is unpacked once into an interleaved i8 layout (4 elements of row 0, 4 of row 1,
//! .., 4 of row 7, then the next 4 elements), so one broadcast 4-byte activation load feeds all
//! 8 rows and i32 lane r holds row r's dot: no horizontal sums, one scale multiply per 8 rows.
//! Integer dots per block are those of ggml's kernels (sums kept in i16 only where they cannot
//! overflow); only the float summation order differs from `vec_dot`.
//!
//! Safety contract of every `unsafe fn` here: the CPU supports avx2, fma and f16c, the panel
//! holds `nb` packed units, every `xs[j]` holds `nb` activation units and every `out[j]` has
//! room for 8 floats.

use super::blocks::*;
use super::dot_avx2::f16_at_ptr;
use std::arch::x86_64::*;

/// Weight rows per panel (the 8 i32 lanes of a ymm register).
pub const PANEL: usize = 8;
/// Bytes of one Q8_0 / Q8_K activation block.
const Q8_0_BYTES: usize = 34;
const Q8K_BYTES: usize = 292;

/// Packed bytes per unit (block of 32, or super-block of 256) of an 8-row panel.
/// Legacy: q [8 groups x 32] | d [8 f32].
pub const LEGACY_UNIT: usize = 256 + 32;
/// Q4_K: q [64 x 32] | scales [8 x 16 i16] | mins [8 x 16 i16] | d [8 f32] | dmin [8 f32].
pub const Q4K_UNIT: usize = 2048 + 256 + 256 + 32 + 32;
/// Q6_K: q [64 x 32] | scales [16 x 16 i16] | scale pairs [8 x 16 i16] | d [8 f32].
pub const Q6K_UNIT: usize = 2048 + 512 + 256 + 32;

/// 8x8 transpose of 32-bit lanes: `out[g]` lane r = `v[r]` lane g.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn transpose8(v: [__m256i; 8]) -> [__m256i; 8] {
    let t0 = _mm256_unpacklo_epi32(v[0], v[1]);
    let t1 = _mm256_unpackhi_epi32(v[0], v[1]);
    let t2 = _mm256_unpacklo_epi32(v[2], v[3]);
    let t3 = _mm256_unpackhi_epi32(v[2], v[3]);
    let t4 = _mm256_unpacklo_epi32(v[4], v[5]);
    let t5 = _mm256_unpackhi_epi32(v[4], v[5]);
    let t6 = _mm256_unpacklo_epi32(v[6], v[7]);
    let t7 = _mm256_unpackhi_epi32(v[6], v[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256(u0, u4, 0x20),
        _mm256_permute2x128_si256(u1, u5, 0x20),
        _mm256_permute2x128_si256(u2, u6, 0x20),
        _mm256_permute2x128_si256(u3, u7, 0x20),
        _mm256_permute2x128_si256(u0, u4, 0x31),
        _mm256_permute2x128_si256(u1, u5, 0x31),
        _mm256_permute2x128_si256(u2, u6, 0x31),
        _mm256_permute2x128_si256(u3, u7, 0x31),
    ]
}

/// Stores the 8 rows' 32-element chunks `v` interleaved as 8 groups of 32 bytes at `dst`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store_interleaved(v: [__m256i; 8], dst: *mut u8) {
    for (g, t) in transpose8(v).iter().enumerate() {
        _mm256_storeu_si256(dst.add(32 * g) as *mut __m256i, *t);
    }
}

/// Writes the i16 `v` to both lanes of row `r` in the 16-lane vector at `dst`.
#[inline(always)]
unsafe fn put_pair(dst: *mut u8, r: usize, a: i16, b: i16) {
    (dst.add(4 * r) as *mut i16).write_unaligned(a);
    (dst.add(4 * r + 2) as *mut i16).write_unaligned(b);
}

/// Packs `nb` blocks of 8 legacy rows (`rb` bytes apart from `w`); `$unpack` turns the block
/// at `$p` into 32 signed i8.
macro_rules! legacy_pack {
    ($name:ident, $wb:expr, |$p:ident| $unpack:expr) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $name(nb: usize, w: *const u8, rb: usize, dst: *mut u8) {
            for b in 0..nb {
                let d = dst.add(b * LEGACY_UNIT);
                let v: [__m256i; 8] = std::array::from_fn(|r| {
                    let $p = w.add(r * rb + b * $wb);
                    $unpack
                });
                store_interleaved(v, d);
                for r in 0..PANEL {
                    let s = f16_at_ptr(w.add(r * rb + b * $wb));
                    (d.add(256 + 4 * r) as *mut f32).write_unaligned(s);
                }
            }
        }
    };
}

legacy_pack!(pack_q8_0, 34, |p| _mm256_loadu_si256(
    p.add(Q8_0_QS) as *const __m256i
));
legacy_pack!(pack_q4_0, 18, |p| _mm256_sub_epi8(
    super::dot_avx2::nibbles_32(p.add(Q4_0_QS)),
    _mm256_set1_epi8(8)
));
legacy_pack!(pack_q5_0, 22, |p| {
    let hb = super::dot_avx2::bits_to_bytes_32(p.add(Q5_0_QH));
    let neg = _mm256_andnot_si256(hb, _mm256_set1_epi8(0xF0u8 as i8));
    _mm256_or_si256(super::dot_avx2::nibbles_32(p.add(Q5_0_QS)), neg)
});

/// Legacy weights (packed by `pack_*`) against Q8_0 activations. `I16`: the 8 group products
/// of a block sum in i16 (exact when |w| <= 16: 8 * 2 * 16 * 127 < 2^15), one madd per block.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_legacy<const RN: usize, const I16: bool>(
    nb: usize,
    panel: *const u8,
    xs: [*const u8; RN],
    out: [*mut f32; RN],
) {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); RN];
    for b in 0..nb {
        let pw = panel.add(b * LEGACY_UNIT);
        let mut s = [_mm256_setzero_si256(); RN];
        for g in 0..8 {
            let wv = _mm256_loadu_si256(pw.add(32 * g) as *const __m256i);
            let aw = _mm256_sign_epi8(wv, wv);
            for j in 0..RN {
                let x4 =
                    (xs[j].add(b * Q8_0_BYTES + Q8_0_QS + 4 * g) as *const i32).read_unaligned();
                let p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(_mm256_set1_epi32(x4), wv));
                s[j] = if I16 {
                    _mm256_add_epi16(s[j], p)
                } else {
                    _mm256_add_epi32(s[j], _mm256_madd_epi16(p, ones))
                };
            }
        }
        let dw = _mm256_loadu_ps(pw.add(256) as *const f32);
        for j in 0..RN {
            let dot = if I16 {
                _mm256_madd_epi16(s[j], ones)
            } else {
                s[j]
            };
            let d = _mm256_mul_ps(dw, _mm256_set1_ps(f16_at_ptr(xs[j].add(b * Q8_0_BYTES))));
            acc[j] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc[j]);
        }
    }
    for j in 0..RN {
        _mm256_storeu_ps(out[j], acc[j]);
    }
}

/// Packs `nb` Q4_K super-blocks of 8 rows: nibbles as u8 in element order, scales and mins
/// as i16 pairs per row, d and dmin as f32.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn pack_q4_k(nb: usize, w: *const u8, rb: usize, dst: *mut u8) {
    let m4 = _mm256_set1_epi8(0x0F);
    for i in 0..nb {
        let d = dst.add(i * Q4K_UNIT);
        let blk = |r: usize| w.add(r * rb + i * 144);
        for c in 0..8 {
            // Chunk c (elements 32c..32c+32): low (even c) or high nibbles of qs[32 (c/2)..].
            let v: [__m256i; 8] = std::array::from_fn(|r| {
                let q = _mm256_loadu_si256(blk(r).add(Q4K_QS + 32 * (c / 2)) as *const __m256i);
                let q = if c % 2 == 0 {
                    q
                } else {
                    _mm256_srli_epi16(q, 4)
                };
                _mm256_and_si256(q, m4)
            });
            store_interleaved(v, d.add(256 * c));
        }
        for r in 0..PANEL {
            let sm = k4_unpack_words(std::slice::from_raw_parts(blk(r).add(Q4K_SCALES), 12));
            for s in 0..8 {
                put_pair(d.add(2048 + 32 * s), r, sm[s] as i16, sm[s] as i16);
                put_pair(d.add(2304 + 32 * s), r, sm[8 + s] as i16, sm[8 + s] as i16);
            }
            (d.add(2560 + 4 * r) as *mut f32).write_unaligned(f16_at_ptr(blk(r).add(Q4K_D)));
            (d.add(2592 + 4 * r) as *mut f32).write_unaligned(f16_at_ptr(blk(r).add(Q4K_DMIN)));
        }
    }
}

/// Q4_K panel against Q8_K activations: d·dx·Σ_s sc_s (q·x)_s - dmin·dx·Σ_s m_s bsum_s, the two
/// terms in separate accumulators as ggml's repacked kernels keep them (bit-equal to
/// [`super::dot_avx2::dot_q4_k_q8_k`]). The 8 group products of a sub-block sum in i16
/// (8 * 2 * 15 * 127 < 2^15).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q4_k<const RN: usize>(
    nb: usize,
    panel: *const u8,
    xs: [*const u8; RN],
    out: [*mut f32; RN],
) {
    let mut acc = [_mm256_setzero_ps(); RN];
    let mut acc_m = [_mm256_setzero_ps(); RN];
    for i in 0..nb {
        let pw = panel.add(i * Q4K_UNIT);
        let mut sumi = [_mm256_setzero_si256(); RN];
        for s in 0..8 {
            let mut s16 = [_mm256_setzero_si256(); RN];
            for g in 0..8 {
                let wv = _mm256_loadu_si256(pw.add(256 * s + 32 * g) as *const __m256i);
                for j in 0..RN {
                    let px = xs[j].add(i * Q8K_BYTES + Q8K_QS + 32 * s + 4 * g);
                    let x = _mm256_set1_epi32((px as *const i32).read_unaligned());
                    s16[j] = _mm256_add_epi16(s16[j], _mm256_maddubs_epi16(wv, x));
                }
            }
            let sc = _mm256_loadu_si256(pw.add(2048 + 32 * s) as *const __m256i);
            for j in 0..RN {
                sumi[j] = _mm256_add_epi32(sumi[j], _mm256_madd_epi16(s16[j], sc));
            }
        }
        let d = _mm256_loadu_ps(pw.add(2560) as *const f32);
        let dmin = _mm256_loadu_ps(pw.add(2592) as *const f32);
        for j in 0..RN {
            let px = xs[j].add(i * Q8K_BYTES);
            let mut ms = _mm256_setzero_si256();
            for q in 0..8 {
                let m = _mm256_loadu_si256(pw.add(2304 + 32 * q) as *const __m256i);
                let bs = (px.add(Q8K_BSUMS + 4 * q) as *const i32).read_unaligned();
                ms = _mm256_add_epi32(ms, _mm256_madd_epi16(m, _mm256_set1_epi32(bs)));
            }
            let dx = _mm256_set1_ps((px.add(Q8K_D) as *const f32).read_unaligned());
            acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
            acc_m[j] = _mm256_fmadd_ps(_mm256_mul_ps(dmin, dx), _mm256_cvtepi32_ps(ms), acc_m[j]);
        }
    }
    for j in 0..RN {
        _mm256_storeu_ps(out[j], _mm256_sub_ps(acc[j], acc_m[j]));
    }
}

/// Packs `nb` Q6_K super-blocks of 8 rows: 6-bit values (0..63) as u8 in element order,
/// scales as i16 pairs per row (one per sub-block, and in sub-block pairs), d as f32.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn pack_q6_k(nb: usize, w: *const u8, rb: usize, dst: *mut u8) {
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(0x03);
    for i in 0..nb {
        let d = dst.add(i * Q6K_UNIT);
        let blk = |r: usize| w.add(r * rb + i * 210);
        for c in 0..8 {
            // Chunk c = 4h + k: low (k < 2) or high nibbles of ql[64h + 32 (k % 2)..], with
            // bits 2k..2k+2 of qh[32h..] on top.
            let (h, k) = (c / 4, c % 4);
            let v: [__m256i; 8] = std::array::from_fn(|r| {
                let p = blk(r);
                let ql =
                    _mm256_loadu_si256(p.add(Q6K_QL + 64 * h + 32 * (k % 2)) as *const __m256i);
                let ql = if k < 2 { ql } else { _mm256_srli_epi16(ql, 4) };
                let qh = _mm256_loadu_si256(p.add(Q6K_QH + 32 * h) as *const __m256i);
                let qh = match k {
                    0 => qh,
                    1 => _mm256_srli_epi16(qh, 2),
                    2 => _mm256_srli_epi16(qh, 4),
                    _ => _mm256_srli_epi16(qh, 6),
                };
                let hi = _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4);
                _mm256_or_si256(_mm256_and_si256(ql, m4), hi)
            });
            store_interleaved(v, d.add(256 * c));
        }
        for r in 0..PANEL {
            let sc = blk(r).add(Q6K_SCALES) as *const i8;
            for s in 0..16 {
                let v = *sc.add(s) as i16;
                put_pair(d.add(2048 + 32 * s), r, v, v);
            }
            for q in 0..8 {
                let (a, b) = (*sc.add(2 * q) as i16, *sc.add(2 * q + 1) as i16);
                put_pair(d.add(2560 + 32 * q), r, a, b);
            }
            (d.add(2816 + 4 * r) as *mut f32).write_unaligned(f16_at_ptr(blk(r).add(Q6K_D)));
        }
    }
}

/// Q6_K panel against Q8_K activations: d·dx·(Σ_s sc_s (q·x)_s - 32 Σ_s sc_s bsum_s), with
/// q in 0..63, in the float order of ggml's AVX2 `vec_dot_q6_K_q8_K` (which llama.cpp uses
/// for Q6_K on AVX2, unpacked), so bit-equal to [`super::dot_avx2::dot_q6_k_q8_k`]: that kernel
/// keeps eight partial sums per row, partial g holding bytes 4g..4g+4 of every 32-byte chunk
/// (and bsum pair g of the correction), each with its own float accumulator across
/// super-blocks, summed at the end as `hsum_float_8` does. Here partial g is panel group g.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q6_k<const RN: usize>(
    nb: usize,
    panel: *const u8,
    xs: [*const u8; RN],
    out: [*mut f32; RN],
) {
    let mut acc = [[_mm256_setzero_ps(); RN]; 8];
    for (g, acc_g) in acc.iter_mut().enumerate() {
        for i in 0..nb {
            let pw = panel.add(i * Q6K_UNIT);
            let mut sumi = [_mm256_setzero_si256(); RN];
            for c in 0..8 {
                let wv = _mm256_loadu_si256(pw.add(256 * c + 32 * g) as *const __m256i);
                // Bytes 0..16 of chunk c take scale 2c, bytes 16..32 scale 2c + 1.
                let sc = _mm256_loadu_si256(pw.add(2048 + 32 * (2 * c + g / 4)) as *const __m256i);
                for j in 0..RN {
                    let px = xs[j].add(i * Q8K_BYTES + Q8K_QS + 32 * c + 4 * g) as *const i32;
                    let x = _mm256_set1_epi32(px.read_unaligned());
                    let p = _mm256_maddubs_epi16(wv, x);
                    sumi[j] = _mm256_add_epi32(sumi[j], _mm256_madd_epi16(p, sc));
                }
            }
            let d = _mm256_loadu_ps(pw.add(2816) as *const f32);
            let sp = _mm256_loadu_si256(pw.add(2560 + 32 * g) as *const __m256i);
            for j in 0..RN {
                let px = xs[j].add(i * Q8K_BYTES);
                let bs = (px.add(Q8K_BSUMS + 4 * g) as *const i32).read_unaligned();
                let corr = _mm256_slli_epi32(_mm256_madd_epi16(sp, _mm256_set1_epi32(bs)), 5);
                let dot = _mm256_sub_epi32(sumi[j], corr);
                let dx = _mm256_set1_ps((px.add(Q8K_D) as *const f32).read_unaligned());
                acc_g[j] = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(dot), acc_g[j]);
            }
        }
    }
    for j in 0..RN {
        // hsum_float_8's order: (a0 + a4) + (a2 + a6), (a1 + a5) + (a3 + a7), then those two.
        let t: [__m256; 4] = std::array::from_fn(|l| _mm256_add_ps(acc[l + 4][j], acc[l][j]));
        let u0 = _mm256_add_ps(t[0], t[2]);
        let u1 = _mm256_add_ps(t[1], t[3]);
        _mm256_storeu_ps(out[j], _mm256_add_ps(u0, u1));
    }
}

/// The float weight types [`pack_float`] reads.
#[derive(Clone, Copy)]
pub enum FloatWeights {
    F32,
    F16,
    Bf16,
}

impl FloatWeights {
    fn elem_bytes(self) -> usize {
        match self {
            FloatWeights::F32 => 4,
            FloatWeights::F16 | FloatWeights::Bf16 => 2,
        }
    }
}

/// 8 float weights at `p` as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_float8(ty: FloatWeights, p: *const u8) -> __m256 {
    match ty {
        FloatWeights::F32 => _mm256_loadu_ps(p as *const f32),
        FloatWeights::F16 => _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
        FloatWeights::Bf16 => _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)),
            16,
        )),
    }
}

/// One float weight at `p` as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_float1(ty: FloatWeights, p: *const u8) -> f32 {
    match ty {
        FloatWeights::F32 => (p as *const f32).read_unaligned(),
        FloatWeights::F16 => f16_at_ptr(p),
        FloatWeights::Bf16 => f32::from_bits(((p as *const u16).read_unaligned() as u32) << 16),
    }
}

/// Packs columns `c0..c0 + kc` of 8 float rows (`rb` bytes apart from `w`) as f32, column by
/// column: `dst[stride c + r]` = row r, column `c0 + c` (`stride` 8 for an AVX2 panel, 16 for
/// two panels side by side for [`gemm_float16`]).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn pack_float(
    ty: FloatWeights,
    w: *const u8,
    rb: usize,
    c0: usize,
    kc: usize,
    dst: *mut f32,
    stride: usize,
) {
    let eb = ty.elem_bytes();
    let k8 = kc / 8 * 8;
    for c in (0..k8).step_by(8) {
        let v: [__m256i; 8] = std::array::from_fn(|r| {
            _mm256_castps_si256(load_float8(ty, w.add(r * rb + (c0 + c) * eb)))
        });
        for (g, t) in transpose8(v).iter().enumerate() {
            _mm256_storeu_si256(dst.add(stride * (c + g)) as *mut __m256i, *t);
        }
    }
    for c in k8..kc {
        for r in 0..PANEL {
            *dst.add(stride * c + r) = load_float1(ty, w.add(r * rb + (c0 + c) * eb));
        }
    }
}

/// A float panel (packed by [`pack_float`], `kc` columns) against RN (1..=8) f32 activation
/// rows: `out[j][r] (+)= Σ_c panel[c][r] · xs[j][c]`, one broadcast per activation element
/// feeding all 8 rows. `first`: start from zero rather than from `out` (the column blocks of
/// a long row accumulate into `out`).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_float<const RN: usize>(
    kc: usize,
    panel: *const f32,
    xs: [*const f32; RN],
    out: [*mut f32; RN],
    first: bool,
) {
    let mut acc = [_mm256_setzero_ps(); RN];
    if !first {
        for j in 0..RN {
            acc[j] = _mm256_loadu_ps(out[j]);
        }
    }
    for c in 0..kc {
        let wv = _mm256_loadu_ps(panel.add(8 * c));
        for j in 0..RN {
            let x = _mm256_set1_ps(xs[j].add(c).read_unaligned());
            acc[j] = _mm256_fmadd_ps(wv, x, acc[j]);
        }
    }
    for j in 0..RN {
        _mm256_storeu_ps(out[j], acc[j]);
    }
}

/// [`gemm_float`] for 16 rows (two panels packed with stride 16) on 512-bit registers: twice
/// the rows per broadcast. Needs avx512f besides this module's features; `out[j]` has room for
/// 16 floats.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub unsafe fn gemm_float16<const RN: usize>(
    kc: usize,
    panel: *const f32,
    xs: [*const f32; RN],
    out: [*mut f32; RN],
    first: bool,
) {
    let mut acc = [_mm512_setzero_ps(); RN];
    if !first {
        for j in 0..RN {
            acc[j] = _mm512_loadu_ps(out[j]);
        }
    }
    for c in 0..kc {
        let wv = _mm512_loadu_ps(panel.add(16 * c));
        for j in 0..RN {
            let x = _mm512_set1_ps(xs[j].add(c).read_unaligned());
            acc[j] = _mm512_fmadd_ps(wv, x, acc[j]);
        }
    }
    for j in 0..RN {
        _mm512_storeu_ps(out[j], acc[j]);
    }
}

//! AVX-512 VNNI kernels over weights repacked at load into 8-row panels (see
//! [`super::packed`]): i32 lane r of every register is weight row r, so one broadcast 4-byte
//! activation load feeds 8 rows through one `vpdpbusd`, scales of 8 rows convert in one
//! instruction and no horizontal sums are needed. The same kernel serves decode (one token)
//! and prefill (tiles of up to four tokens). Integer sums are exact and the float steps are
//! those of the per-row kernels, so results equal [`super::vec_dot`]'s bit for bit.
//!
//! Safety contract of every `unsafe fn` here: the CPU supports avx2, fma, f16c, avx512f,
//! avx512bw, avx512vl and avx512vnni, the panel holds `nb` packed units, every `xs[j]` holds
//! `nb` activation units and every `out[j]` has room for 8 floats.

use super::blocks::*;
use std::arch::x86_64::*;

/// Bytes of one Q8_K block.
const Q8K_BYTES: usize = 292;

/// Q4_K unit (one super-block of 8 rows): qs [4 chunks x 8 groups x 8 rows x 4 bytes] |
/// scales [8 sub-blocks x 8 rows] u8 | mins [4 pairs x 8 rows x 2] u8 | d [8] f16 | dmin [8] f16.
pub const Q4K_UNIT: usize = 1024 + 64 + 64 + 16 + 16;
const Q4K_SC: usize = 1024;
const Q4K_MN: usize = 1088;
const Q4K_DD: usize = 1152;
const Q4K_DM: usize = 1168;

/// Repacks `nb` Q4_K super-blocks of 8 rows (`rb` bytes apart from `w`) into `dst`
/// (`nb * Q4K_UNIT` bytes). Plain byte moves: no CPU feature needed.
pub fn pack_q4_k(nb: usize, w: &[u8], rb: usize, dst: &mut [u8]) {
    for i in 0..nb {
        let d = &mut dst[i * Q4K_UNIT..(i + 1) * Q4K_UNIT];
        for r in 0..8 {
            let b = &w[r * rb + i * 144..r * rb + (i + 1) * 144];
            for j in 0..4 {
                for g in 0..8 {
                    let src = Q4K_QS + 32 * j + 4 * g;
                    let o = 256 * j + 32 * g + 4 * r;
                    d[o..o + 4].copy_from_slice(&b[src..src + 4]);
                }
            }
            let sm = k4_unpack(&b[Q4K_SCALES..Q4K_SCALES + 12]);
            for s in 0..8 {
                d[Q4K_SC + 8 * s + r] = sm[s];
            }
            for q in 0..4 {
                d[Q4K_MN + 16 * q + 2 * r] = sm[8 + 2 * q];
                d[Q4K_MN + 16 * q + 2 * r + 1] = sm[8 + 2 * q + 1];
            }
            d[Q4K_DD + 2 * r..Q4K_DD + 2 * r + 2].copy_from_slice(&b[Q4K_D..Q4K_D + 2]);
            d[Q4K_DM + 2 * r..Q4K_DM + 2 * r + 2].copy_from_slice(&b[Q4K_DMIN..Q4K_DMIN + 2]);
        }
    }
}

/// The 4 bytes at `p` broadcast to all 8 i32 lanes.
#[inline(always)]
unsafe fn bcast4(p: *const u8) -> __m256i {
    _mm256_set1_epi32((p as *const i32).read_unaligned())
}

/// Q4_K panel against RN Q8_K activation rows: for each row r,
/// d_r·dx·Σ_s sc_rs (q·x)_s - dmin_r·dx·Σ_s m_rs bsum_s, the two terms in separate float
/// accumulators with one FMA per super-block each (the order of
/// [`super::dot_avx2::dot_q4_k_q8_k`], so bit-equal to it).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn gemm_q4_k<const RN: usize>(
    nb: usize,
    panel: *const u8,
    xs: [*const u8; RN],
    out: [*mut f32; RN],
) {
    let m4 = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); RN];
    let mut acc_m = [_mm256_setzero_ps(); RN];
    for i in 0..nb {
        let pw = panel.add(i * Q4K_UNIT);
        let mut sumi = [_mm256_setzero_si256(); RN];
        for j in 0..4 {
            let mut sl = [_mm256_setzero_si256(); RN];
            let mut sh = [_mm256_setzero_si256(); RN];
            for g in 0..8 {
                let wv = _mm256_loadu_si256(pw.add(256 * j + 32 * g) as *const __m256i);
                let lo = _mm256_and_si256(wv, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), m4);
                for t in 0..RN {
                    let px = xs[t].add(i * Q8K_BYTES + Q8K_QS + 64 * j + 4 * g);
                    sl[t] = _mm256_dpbusd_epi32(sl[t], lo, bcast4(px));
                    sh[t] = _mm256_dpbusd_epi32(sh[t], hi, bcast4(px.add(32)));
                }
            }
            let sc_lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(pw.add(Q4K_SC + 16 * j) as *const _));
            let sc_hi =
                _mm256_cvtepu8_epi32(_mm_loadl_epi64(pw.add(Q4K_SC + 16 * j + 8) as *const _));
            for t in 0..RN {
                let a = _mm256_mullo_epi32(sl[t], sc_lo);
                let b = _mm256_mullo_epi32(sh[t], sc_hi);
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(a, b));
            }
        }
        let d = _mm256_cvtph_ps(_mm_loadu_si128(pw.add(Q4K_DD) as *const __m128i));
        let dmin = _mm256_cvtph_ps(_mm_loadu_si128(pw.add(Q4K_DM) as *const __m128i));
        let mut mins = [_mm256_setzero_si256(); 4];
        for (q, m) in mins.iter_mut().enumerate() {
            *m = _mm256_cvtepu8_epi16(_mm_loadu_si128(pw.add(Q4K_MN + 16 * q) as *const __m128i));
        }
        for t in 0..RN {
            let px = xs[t].add(i * Q8K_BYTES);
            // The 8 sub-block sums (pairs of the 16 bsums), each pair q as one i32 word.
            let bs = _mm256_loadu_si256(px.add(Q8K_BSUMS) as *const __m256i);
            let b8 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
            let b8 = _mm256_castsi128_si256(b8);
            let mut ms = _mm256_setzero_si256();
            for (q, m) in mins.iter().enumerate() {
                let pair = _mm256_permutevar8x32_epi32(b8, _mm256_set1_epi32(q as i32));
                ms = _mm256_dpwssd_epi32(ms, *m, pair);
            }
            let dx = _mm256_set1_ps((px.add(Q8K_D) as *const f32).read_unaligned());
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
            acc_m[t] = _mm256_fmadd_ps(_mm256_mul_ps(dmin, dx), _mm256_cvtepi32_ps(ms), acc_m[t]);
        }
    }
    for t in 0..RN {
        _mm256_storeu_ps(out[t], _mm256_sub_ps(acc[t], acc_m[t]));
    }
}

/// Q6_K unit (one super-block of 8 rows), in the order the kernel reads it (the prefetcher
/// sees one forward stream): scales [16 sub-blocks x 8 rows] i8 | d [8] f16 | per group g and
/// half h, three planes of 8 rows x 4 bytes, P0/P1/P2, holding quarters 0/1/2's 6-bit values
/// with quarter 3's value spread over their top two bits [8 x 2 x 96].
pub const Q6K_UNIT: usize = 128 + 16 + 1536;
const Q6K_SC: usize = 0;
const Q6K_DD: usize = 128;
const Q6K_PL: usize = 144;

/// Repacks `nb` Q6_K super-blocks of 8 rows (`rb` bytes apart from `w`) into `dst`.
pub fn pack_q6_k(nb: usize, w: &[u8], rb: usize, dst: &mut [u8]) {
    for i in 0..nb {
        let d = &mut dst[i * Q6K_UNIT..(i + 1) * Q6K_UNIT];
        for r in 0..8 {
            let b = &w[r * rb + i * 210..r * rb + (i + 1) * 210];
            // Value of element e (0..32) of quarter k of half h (ggml's layout).
            let val = |h: usize, k: usize, e: usize| -> u8 {
                let ql = b[Q6K_QL + 64 * h + 32 * (k % 2) + e];
                let ql = if k < 2 { ql & 0xF } else { ql >> 4 };
                let qh = (b[Q6K_QH + 32 * h + e] >> (2 * k)) & 3;
                ql | (qh << 4)
            };
            for h in 0..2 {
                for g in 0..8 {
                    for e in 0..4 {
                        let el = 4 * g + e;
                        let v3 = val(h, 3, el);
                        for (p, k) in (0..3).enumerate() {
                            let o = Q6K_PL + 192 * g + 96 * h + 32 * p + 4 * r + e;
                            d[o] = val(h, k, el) | (((v3 >> (2 * p)) & 3) << 6);
                        }
                    }
                }
            }
            for s in 0..16 {
                d[Q6K_SC + 8 * s + r] = b[Q6K_SCALES + s];
            }
            d[Q6K_DD + 2 * r..Q6K_DD + 2 * r + 2].copy_from_slice(&b[Q6K_D..Q6K_D + 2]);
        }
    }
}

/// Eight i8 at `p` as the i16 pairs (v, v) of 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dup_pairs(p: *const u8) -> __m256i {
    let v = _mm_loadl_epi64(p as *const __m128i);
    _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(v, v))
}

/// Q6_K panel against RN Q8_K activation rows: d·dx·(Σ_s sc_s (q·x)_s - 32 Σ_s sc_s bsum_s)
/// per row, in the lanes and float order of [`super::dot_avx2::dot_q6_k_q8_k`] (ggml's AVX2
/// `vec_dot_q6_K_q8_K`): partial g holds bytes 4g..4g+4 of every 32-byte chunk and bsum pair g
/// of the correction, with its own float accumulator, the eight summed as `hsum_float_8` does.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn gemm_q6_k<const RN: usize>(
    nb: usize,
    panel: *const u8,
    xs: [*const u8; RN],
    out: [*mut f32; RN],
) {
    let m6 = _mm256_set1_epi8(0x3F);
    let m2 = _mm256_set1_epi8(0x03);
    let m4 = _mm256_set1_epi8(0x0F);
    let mut acc = [[_mm256_setzero_ps(); RN]; 8];
    for i in 0..nb {
        let pw = panel.add(i * Q6K_UNIT);
        let d = _mm256_cvtph_ps(_mm_loadu_si128(pw.add(Q6K_DD) as *const __m128i));
        let mut dd = [_mm256_setzero_ps(); RN];
        for t in 0..RN {
            let dx = (xs[t].add(i * Q8K_BYTES + Q8K_D) as *const f32).read_unaligned();
            dd[t] = _mm256_mul_ps(d, _mm256_set1_ps(dx));
        }
        let mut scv = [_mm256_setzero_si256(); 16];
        for (s, v) in scv.iter_mut().enumerate() {
            *v = dup_pairs(pw.add(Q6K_SC + 8 * s));
        }
        for (g, acc_g) in acc.iter_mut().enumerate() {
            // Correction: pair g of the scales against pair g of the bsums.
            let cp = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(
                _mm_loadl_epi64(pw.add(Q6K_SC + 16 * g) as *const __m128i),
                _mm_loadl_epi64(pw.add(Q6K_SC + 16 * g + 8) as *const __m128i),
            ));
            let mut sumi = [_mm256_setzero_si256(); RN];
            for t in 0..RN {
                let bs = xs[t].add(i * Q8K_BYTES + Q8K_BSUMS + 4 * g);
                let corr = _mm256_madd_epi16(cp, bcast4(bs));
                sumi[t] = _mm256_sub_epi32(sumi[t], _mm256_slli_epi32(corr, 5));
            }
            for h in 0..2 {
                let pp = pw.add(Q6K_PL + 192 * g + 96 * h);
                let p0 = _mm256_loadu_si256(pp as *const __m256i);
                let p1 = _mm256_loadu_si256(pp.add(32) as *const __m256i);
                let p2 = _mm256_loadu_si256(pp.add(64) as *const __m256i);
                // Quarter 3: bits 6-7 of P0, P1, P2 as its bits 0-1, 2-3, 4-5 (0xD8: c ? b : a).
                let a = _mm256_ternarylogic_epi32::<0xD8>(
                    _mm256_srli_epi16(p1, 4),
                    _mm256_srli_epi16(p0, 6),
                    m2,
                );
                let v3 = _mm256_and_si256(
                    _mm256_ternarylogic_epi32::<0xD8>(_mm256_srli_epi16(p2, 2), a, m4),
                    m6,
                );
                let v = [
                    _mm256_and_si256(p0, m6),
                    _mm256_and_si256(p1, m6),
                    _mm256_and_si256(p2, m6),
                    v3,
                ];
                for (k, vk) in v.iter().enumerate() {
                    // Chunk c = 4h + k; bytes 0..16 take scale 2c, bytes 16..32 scale 2c + 1.
                    let sc = scv[8 * h + 2 * k + g / 4];
                    for t in 0..RN {
                        let px = xs[t].add(i * Q8K_BYTES + Q8K_QS + 128 * h + 32 * k + 4 * g);
                        let p = _mm256_maddubs_epi16(*vk, bcast4(px));
                        sumi[t] = _mm256_dpwssd_epi32(sumi[t], p, sc);
                    }
                }
            }
            for t in 0..RN {
                acc_g[t] = _mm256_fmadd_ps(dd[t], _mm256_cvtepi32_ps(sumi[t]), acc_g[t]);
            }
        }
    }
    for t in 0..RN {
        // hsum_float_8's order: (a0 + a4) + (a2 + a6), (a1 + a5) + (a3 + a7), then those two.
        let mut s = [_mm256_setzero_ps(); 4];
        for (l, sl) in s.iter_mut().enumerate() {
            *sl = _mm256_add_ps(acc[l + 4][t], acc[l][t]);
        }
        let u0 = _mm256_add_ps(s[0], s[2]);
        let u1 = _mm256_add_ps(s[1], s[3]);
        _mm256_storeu_ps(out[t], _mm256_add_ps(u0, u1));
    }
}

//! AVX-512 VNNI kernels over weights repacked at load into 8-row panels (see
//! [`super::packed`]): i32 lane r of every register is weight row r, so one broadcast 4-byte
//! activation load feeds 8 rows through one `vpdpbusd`, scales of 8 rows convert in one
//! instruction and no horizontal sums are needed. These kernels serve decode (one token) and
//! tiles of up to four tokens; prefill's K-type kernels (`gemm_q4_k16`, `gemm_q6_k16`) take
//! two panels expanded side by side on 512-bit registers, lane r + 8 being row r of the
//! second panel. Integer sums are exact and every lane's float steps are those of the per-row
//! kernels, so results equal [`super::vec_dot`]'s bit for bit.
//!
//! Safety contract of every `unsafe fn` here: the CPU supports avx2, fma, f16c, avx512f,
//! avx512bw, avx512vl and avx512vnni, the panel holds `nb` packed units, every `xs[j]` holds
//! `nb` activation units and every `out[j]` has room for 8 floats.

use super::blocks::*;
use std::arch::x86_64::*;

/// Bytes of one Q8_K block.
const Q8K_BYTES: usize = 292;

/// Q4_K unit (one super-block of 8 rows), in the order the kernel reads it (one forward stream
/// for the prefetcher): the 12 packed scale bytes as ggml stores them, byte k of row r at
/// `8k + r` [12 x 8 rows] | d [8] f16 | dmin [8] f16 | qs [4 chunks x 8 groups x 8 rows x 4
/// bytes]. The same 1152 bytes as the 8 rows' blocks: the kernel unpacks the 6-bit scales of
/// 8 rows in a few byte operations, so decode reads no more bytes than the file holds.
pub const Q4K_UNIT: usize = 96 + 16 + 16 + 1024;
const Q4K_SR: usize = 0;
const Q4K_DD: usize = 96;
const Q4K_DM: usize = 112;
const Q4K_QSO: usize = 128;

/// Bytes of one Q4_K unit expanded for prefill: qs as packed | scales [8 sub-blocks x 8 rows]
/// u8 | mins [4 pairs x 8 rows x 2] u8 | d [8] f16 | dmin [8] f16, so prefill's token tiles
/// skip the 6-bit unpacking.
pub const Q4K_WIDE_UNIT: usize = 1024 + 64 + 64 + 16 + 16;
const Q4K_WIDE_SC: usize = 1024;
const Q4K_WIDE_MN: usize = 1088;
const Q4K_WIDE_DD: usize = 1152;

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
                    let o = Q4K_QSO + 256 * j + 32 * g + 4 * r;
                    d[o..o + 4].copy_from_slice(&b[src..src + 4]);
                }
            }
            for k in 0..12 {
                d[Q4K_SR + 8 * k + r] = b[Q4K_SCALES + k];
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

/// The 6-bit scales and mins of a unit's 8 rows from their 12 packed bytes (byte k of row r
/// at `8k + r`), ggml's `get_scale_min_k4` on 32 bytes at once: entry j of the scales holds
/// sub-blocks 2j (bytes 0..8, one per row) and 2j + 1 (bytes 8..16); entry q of the mins holds
/// pair q of every row (the mins of sub-blocks 2q and 2q + 1, interleaved). Plain statements:
/// closures and `array::map` over vectors do not inline into the kernels.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q4_k_scales_mins(p: *const u8) -> ([__m128i; 4], [__m128i; 4]) {
    let a = _mm256_loadu_si256(p as *const __m256i); // bytes 0..4: sub-blocks 0..4 (low 6 bits)
    let b = _mm256_loadu_si256(p.add(32) as *const __m256i); // bytes 4..8: mins 0..4
    let c = _mm256_loadu_si256(p.add(64) as *const __m256i); // bytes 8..12: low nibbles of 4..8
    let m6 = _mm256_set1_epi8(63);
    let m4 = _mm256_set1_epi8(0x0F);
    let top = _mm256_set1_epi8(0x30);
    // (x >> 6) << 4 per byte: a 16-bit shift by 2 moves the neighbour's bits only into bits
    // 6 and 7, which the mask drops.
    let a2 = _mm256_and_si256(_mm256_srli_epi16(a, 2), top);
    let b2 = _mm256_and_si256(_mm256_srli_epi16(b, 2), top);
    let sc03 = _mm256_and_si256(a, m6);
    let mn03 = _mm256_and_si256(b, m6);
    let sc47 = _mm256_or_si256(_mm256_and_si256(c, m4), a2);
    let mn47 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(c, 4), m4), b2);
    let n0 = _mm256_castsi256_si128(mn03);
    let n1 = _mm256_extracti128_si256(mn03, 1);
    let n2 = _mm256_castsi256_si128(mn47);
    let n3 = _mm256_extracti128_si256(mn47, 1);
    (
        [
            _mm256_castsi256_si128(sc03),
            _mm256_extracti128_si256(sc03, 1),
            _mm256_castsi256_si128(sc47),
            _mm256_extracti128_si256(sc47, 1),
        ],
        [
            _mm_unpacklo_epi8(n0, _mm_srli_si128(n0, 8)),
            _mm_unpacklo_epi8(n1, _mm_srli_si128(n1, 8)),
            _mm_unpacklo_epi8(n2, _mm_srli_si128(n2, 8)),
            _mm_unpacklo_epi8(n3, _mm_srli_si128(n3, 8)),
        ],
    )
}

/// Expands `nb` packed Q4_K units into the wide layout (once per panel and call).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn expand_q4_k(nb: usize, panel: *const u8, dst: *mut u8) {
    for i in 0..nb {
        let pw = panel.add(i * Q4K_UNIT);
        let o = dst.add(i * Q4K_WIDE_UNIT);
        std::ptr::copy_nonoverlapping(pw.add(Q4K_QSO), o, 1024);
        let (sc, mn) = q4_k_scales_mins(pw.add(Q4K_SR));
        for (j, v) in sc.iter().enumerate() {
            _mm_storeu_si128(o.add(Q4K_WIDE_SC + 16 * j) as *mut __m128i, *v);
        }
        for (q, m) in mn.iter().enumerate() {
            _mm_storeu_si128(o.add(Q4K_WIDE_MN + 16 * q) as *mut __m128i, *m);
        }
        std::ptr::copy_nonoverlapping(pw.add(Q4K_DD), o.add(Q4K_WIDE_DD), 32);
    }
}

/// One 64-element chunk (sub-blocks 2j and 2j + 1, whose scales are bytes 0..8 and 8..16 of
/// `scj`) of a Q4_K unit's 8 rows against RN activation rows (`xo` bytes into each).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q4_k_chunk<const RN: usize>(
    qs: *const u8,
    xs: [*const u8; RN],
    xo: usize,
    scj: __m128i,
    sumi: &mut [__m256i; RN],
) {
    let m4 = _mm256_set1_epi8(0x0F);
    let mut sl = [_mm256_setzero_si256(); RN];
    let mut sh = [_mm256_setzero_si256(); RN];
    for g in 0..8 {
        let wv = _mm256_loadu_si256(qs.add(32 * g) as *const __m256i);
        let lo = _mm256_and_si256(wv, m4);
        let hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), m4);
        for t in 0..RN {
            let px = xs[t].add(xo + 4 * g);
            sl[t] = _mm256_dpbusd_epi32(sl[t], lo, bcast4(px));
            sh[t] = _mm256_dpbusd_epi32(sh[t], hi, bcast4(px.add(32)));
        }
    }
    let sc_lo = _mm256_cvtepu8_epi32(scj);
    let sc_hi = _mm256_cvtepu8_epi32(_mm_srli_si128(scj, 8));
    for t in 0..RN {
        let a = _mm256_mullo_epi32(sl[t], sc_lo);
        let b = _mm256_mullo_epi32(sh[t], sc_hi);
        sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(a, b));
    }
}

/// Q4_K panel against RN Q8_K activation rows: for each row r,
/// d_r·dx·Σ_s sc_rs (q·x)_s - dmin_r·dx·Σ_s m_rs bsum_s, the two terms in separate float
/// accumulators with one FMA per super-block each (the order of
/// [`super::dot_avx2::dot_q4_k_q8_k`], so bit-equal to it).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn gemm_q4_k<const RN: usize, const WIDE: bool>(
    nb: usize,
    panel: *const u8,
    xs: [*const u8; RN],
    out: [*mut f32; RN],
) {
    let mut acc = [_mm256_setzero_ps(); RN];
    let mut acc_m = [_mm256_setzero_ps(); RN];
    let (unit, dd) = if WIDE {
        (Q4K_WIDE_UNIT, Q4K_WIDE_DD)
    } else {
        (Q4K_UNIT, Q4K_DD)
    };
    for i in 0..nb {
        let pw = panel.add(i * unit);
        // The unpacked scales [8 sub-blocks x 8 rows] and min pairs [4 x 8 rows x 2]: loaded
        // from the wide unit as they are used, or unpacked here into registers.
        let (sc, mn) = if WIDE {
            ([_mm_setzero_si128(); 4], [_mm_setzero_si128(); 4])
        } else {
            q4_k_scales_mins(pw.add(Q4K_SR))
        };
        let mut sumi = [_mm256_setzero_si256(); RN];
        let xo = i * Q8K_BYTES + Q8K_QS;
        if WIDE {
            for j in 0..4 {
                let scj = _mm_loadu_si128(pw.add(Q4K_WIDE_SC + 16 * j) as *const __m128i);
                q4_k_chunk(pw.add(256 * j), xs, xo + 64 * j, scj, &mut sumi); // qs at 0
            }
        } else {
            // Four calls, not a loop: indexed by a loop counter, the scales would go through
            // the stack (a quarter slower per token).
            let q = pw.add(Q4K_QSO);
            q4_k_chunk(q, xs, xo, sc[0], &mut sumi);
            q4_k_chunk(q.add(256), xs, xo + 64, sc[1], &mut sumi);
            q4_k_chunk(q.add(512), xs, xo + 128, sc[2], &mut sumi);
            q4_k_chunk(q.add(768), xs, xo + 192, sc[3], &mut sumi);
        }
        let d = _mm256_cvtph_ps(_mm_loadu_si128(pw.add(dd) as *const __m128i));
        let dmin = _mm256_cvtph_ps(_mm_loadu_si128(pw.add(dd + 16) as *const __m128i));
        // Pair q of every row as one i32 lane, widened to i16.
        let mut mins = [_mm256_setzero_si256(); 4];
        for (q, m) in mins.iter_mut().enumerate() {
            *m = _mm256_cvtepu8_epi16(if WIDE {
                _mm_loadu_si128(pw.add(Q4K_WIDE_MN + 16 * q) as *const __m128i)
            } else {
                mn[q]
            });
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

/// Bytes of one Q4_K unit of two panels (16 rows) expanded for prefill's 512-bit kernel:
/// qs [4 chunks x 8 groups x (8 rows of panel A x 4 | 8 rows of panel B x 4)] | scales
/// [4 chunks x (A's sub-block 2j | B's 2j | A's 2j + 1 | B's 2j + 1) x 8 rows] u8 | mins
/// [4 pairs x (A | B) x 8 rows x 2] u8 | d [A 8 | B 8] f16 | dmin [A 8 | B 8] f16.
pub const Q4K_W16_UNIT: usize = 2 * Q4K_WIDE_UNIT;
const Q4K_W16_SC: usize = 2048;
const Q4K_W16_MN: usize = 2176;
const Q4K_W16_DD: usize = 2304;

/// Expands `nb` packed Q4_K units of two panels `a` and `b` into the 16-row wide layout.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn expand_q4_k16(nb: usize, a: *const u8, b: *const u8, dst: *mut u8) {
    for i in 0..nb {
        let o = dst.add(i * Q4K_W16_UNIT);
        for (half, pw) in [a.add(i * Q4K_UNIT), b.add(i * Q4K_UNIT)]
            .into_iter()
            .enumerate()
        {
            for jg in 0..32 {
                let from = pw.add(Q4K_QSO + 32 * jg);
                std::ptr::copy_nonoverlapping(from, o.add(64 * jg + 32 * half), 32);
            }
            let (sc, mn) = q4_k_scales_mins(pw.add(Q4K_SR));
            for j in 0..4 {
                let at = o.add(Q4K_W16_SC + 32 * j + 8 * half);
                _mm_storel_epi64(at as *mut __m128i, sc[j]);
                _mm_storel_epi64(at.add(16) as *mut __m128i, _mm_srli_si128(sc[j], 8));
                let at = o.add(Q4K_W16_MN + 32 * j + 16 * half);
                _mm_storeu_si128(at as *mut __m128i, mn[j]);
            }
            std::ptr::copy_nonoverlapping(pw.add(Q4K_DD), o.add(Q4K_W16_DD + 16 * half), 16);
            let dm = o.add(Q4K_W16_DD + 32 + 16 * half);
            std::ptr::copy_nonoverlapping(pw.add(Q4K_DM), dm, 16);
        }
    }
}

/// 16 rows (two panels, [`expand_q4_k16`]) against RN Q8_K activation rows on 512-bit
/// registers: each lane does what [`gemm_q4_k`]'s lane does for its row, so the results are
/// the same bits; one instruction covers twice the rows. `out[j]` has room for 16 floats.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn gemm_q4_k16<const RN: usize>(
    nb: usize,
    panel: *const u8,
    xs: [*const u8; RN],
    out: [*mut f32; RN],
) {
    let m4 = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); RN];
    let mut acc_m = [_mm512_setzero_ps(); RN];
    for i in 0..nb {
        let pw = panel.add(i * Q4K_W16_UNIT);
        let xo = i * Q8K_BYTES + Q8K_QS;
        let mut sumi = [_mm512_setzero_si512(); RN];
        for j in 0..4 {
            let mut sl = [_mm512_setzero_si512(); RN];
            let mut sh = [_mm512_setzero_si512(); RN];
            for g in 0..8 {
                let wv = _mm512_loadu_si512(pw.add(512 * j + 64 * g) as *const __m512i);
                let lo = _mm512_and_si512(wv, m4);
                let hi = _mm512_and_si512(_mm512_srli_epi16(wv, 4), m4);
                for t in 0..RN {
                    let px = xs[t].add(xo + 64 * j + 4 * g);
                    let xl = _mm512_set1_epi32((px as *const i32).read_unaligned());
                    let xh = _mm512_set1_epi32((px.add(32) as *const i32).read_unaligned());
                    sl[t] = _mm512_dpbusd_epi32(sl[t], lo, xl);
                    sh[t] = _mm512_dpbusd_epi32(sh[t], hi, xh);
                }
            }
            let scp = pw.add(Q4K_W16_SC + 32 * j);
            let sc_lo = _mm512_cvtepu8_epi32(_mm_loadu_si128(scp as *const __m128i));
            let sc_hi = _mm512_cvtepu8_epi32(_mm_loadu_si128(scp.add(16) as *const __m128i));
            for t in 0..RN {
                let a = _mm512_mullo_epi32(sl[t], sc_lo);
                let b = _mm512_mullo_epi32(sh[t], sc_hi);
                sumi[t] = _mm512_add_epi32(sumi[t], _mm512_add_epi32(a, b));
            }
        }
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(pw.add(Q4K_W16_DD) as *const __m256i));
        let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(pw.add(Q4K_W16_DD + 32) as *const __m256i));
        let mut mins = [_mm512_setzero_si512(); 4];
        for (q, m) in mins.iter_mut().enumerate() {
            let mp = pw.add(Q4K_W16_MN + 32 * q);
            *m = _mm512_cvtepu8_epi16(_mm256_loadu_si256(mp as *const __m256i));
        }
        for t in 0..RN {
            let px = xs[t].add(i * Q8K_BYTES);
            let bs = _mm256_loadu_si256(px.add(Q8K_BSUMS) as *const __m256i);
            let b8 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
            let b8 = _mm512_castsi128_si512(b8);
            let mut ms = _mm512_setzero_si512();
            for (q, m) in mins.iter().enumerate() {
                let pair = _mm512_permutexvar_epi32(_mm512_set1_epi32(q as i32), b8);
                ms = _mm512_dpwssd_epi32(ms, *m, pair);
            }
            let dx = _mm512_set1_ps((px.add(Q8K_D) as *const f32).read_unaligned());
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(sumi[t]), acc[t]);
            acc_m[t] = _mm512_fmadd_ps(_mm512_mul_ps(dmin, dx), _mm512_cvtepi32_ps(ms), acc_m[t]);
        }
    }
    for t in 0..RN {
        _mm512_storeu_ps(out[t], _mm512_sub_ps(acc[t], acc_m[t]));
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

/// The four quarters' 6-bit values (as u8) of one group and half from its planes P0/P1/P2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q6_values(pp: *const u8) -> [__m256i; 4] {
    let m6 = _mm256_set1_epi8(0x3F);
    let p0 = _mm256_loadu_si256(pp as *const __m256i);
    let p1 = _mm256_loadu_si256(pp.add(32) as *const __m256i);
    let p2 = _mm256_loadu_si256(pp.add(64) as *const __m256i);
    // Quarter 3: bits 6-7 of P0, P1, P2 as its bits 0-1, 2-3, 4-5 (0xD8: c ? b : a).
    let a = _mm256_ternarylogic_epi32::<0xD8>(
        _mm256_srli_epi16(p1, 4),
        _mm256_srli_epi16(p0, 6),
        _mm256_set1_epi8(0x03),
    );
    let v3 = _mm256_and_si256(
        _mm256_ternarylogic_epi32::<0xD8>(_mm256_srli_epi16(p2, 2), a, _mm256_set1_epi8(0x0F)),
        m6,
    );
    [
        _mm256_and_si256(p0, m6),
        _mm256_and_si256(p1, m6),
        _mm256_and_si256(p2, m6),
        v3,
    ]
}

/// Bytes of one Q6_K unit of two panels (16 rows) expanded for prefill's 512-bit kernel:
/// scales [16 sub-blocks x (A 8 rows | B 8 rows)] i8 | d [A 8 | B 8] f16 | values [8 groups x
/// 2 halves x 4 quarters x (A 8 rows x 4 | B 8 rows x 4)] u8.
pub const Q6K_W16_UNIT: usize = 2 * (Q6K_PL + 2048);
const Q6K_W16_DD: usize = 256;
const Q6K_W16_PL: usize = 288;

/// Expands `nb` packed Q6_K units of two panels `a` and `b` into the 16-row wide layout
/// (once per pair of panels and call, so prefill's token tiles skip the 6-bit unpacking).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn expand_q6_k16(nb: usize, a: *const u8, b: *const u8, dst: *mut u8) {
    for i in 0..nb {
        let o = dst.add(i * Q6K_W16_UNIT);
        for (half, pw) in [a.add(i * Q6K_UNIT), b.add(i * Q6K_UNIT)]
            .into_iter()
            .enumerate()
        {
            for s in 0..16 {
                let from = pw.add(Q6K_SC + 8 * s);
                std::ptr::copy_nonoverlapping(from, o.add(16 * s + 8 * half), 8);
            }
            let dd = o.add(Q6K_W16_DD + 16 * half);
            std::ptr::copy_nonoverlapping(pw.add(Q6K_DD), dd, 16);
            for g in 0..8 {
                for h in 0..2 {
                    let v = q6_values(pw.add(Q6K_PL + 192 * g + 96 * h));
                    for (k, vk) in v.iter().enumerate() {
                        let at = Q6K_W16_PL + 512 * g + 256 * h + 64 * k + 32 * half;
                        _mm256_storeu_si256(o.add(at) as *mut __m256i, *vk);
                    }
                }
            }
        }
    }
}

/// Sixteen i8 at `p` (8 rows of panel A, then 8 of B) as the i16 pairs (v, v) of 16 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dup_pairs16(p: *const u8) -> __m512i {
    let v = _mm_loadu_si128(p as *const __m128i);
    let d = _mm256_set_m128i(_mm_unpackhi_epi8(v, v), _mm_unpacklo_epi8(v, v));
    _mm512_cvtepi8_epi16(d)
}

/// 16 rows (two panels, [`expand_q6_k16`]) against RN Q8_K activation rows on 512-bit
/// registers: each lane does what [`gemm_q6_k`]'s lane does for its row (ggml's eight float
/// partials), so the results are the same bits; one instruction covers twice the rows.
/// `out[j]` has room for 16 floats.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn gemm_q6_k16<const RN: usize>(
    nb: usize,
    panel: *const u8,
    xs: [*const u8; RN],
    out: [*mut f32; RN],
) {
    let mut acc = [[_mm512_setzero_ps(); RN]; 8];
    for i in 0..nb {
        let pw = panel.add(i * Q6K_W16_UNIT);
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(pw.add(Q6K_W16_DD) as *const __m256i));
        let mut dd = [_mm512_setzero_ps(); RN];
        for t in 0..RN {
            let dx = (xs[t].add(i * Q8K_BYTES + Q8K_D) as *const f32).read_unaligned();
            dd[t] = _mm512_mul_ps(d, _mm512_set1_ps(dx));
        }
        let mut scv = [_mm512_setzero_si512(); 16];
        for (s, v) in scv.iter_mut().enumerate() {
            *v = dup_pairs16(pw.add(16 * s));
        }
        for (g, acc_g) in acc.iter_mut().enumerate() {
            // Correction: pair g of the scales (sub-blocks 2g, 2g + 1) against pair g of the
            // bsums.
            let s0 = _mm_loadu_si128(pw.add(32 * g) as *const __m128i);
            let s1 = _mm_loadu_si128(pw.add(32 * g + 16) as *const __m128i);
            let cp = _mm512_cvtepi8_epi16(_mm256_set_m128i(
                _mm_unpackhi_epi8(s0, s1),
                _mm_unpacklo_epi8(s0, s1),
            ));
            let mut sumi = [_mm512_setzero_si512(); RN];
            for t in 0..RN {
                let bs = xs[t].add(i * Q8K_BYTES + Q8K_BSUMS + 4 * g);
                let bs = _mm512_set1_epi32((bs as *const i32).read_unaligned());
                let corr = _mm512_madd_epi16(cp, bs);
                sumi[t] = _mm512_sub_epi32(sumi[t], _mm512_slli_epi32(corr, 5));
            }
            for h in 0..2 {
                for k in 0..4 {
                    let at = Q6K_W16_PL + 512 * g + 256 * h + 64 * k;
                    let vk = _mm512_loadu_si512(pw.add(at) as *const __m512i);
                    let sc = scv[8 * h + 2 * k + g / 4];
                    for t in 0..RN {
                        let px = xs[t].add(i * Q8K_BYTES + Q8K_QS + 128 * h + 32 * k + 4 * g);
                        let x = _mm512_set1_epi32((px as *const i32).read_unaligned());
                        let p = _mm512_maddubs_epi16(vk, x);
                        sumi[t] = _mm512_dpwssd_epi32(sumi[t], p, sc);
                    }
                }
            }
            for t in 0..RN {
                acc_g[t] = _mm512_fmadd_ps(dd[t], _mm512_cvtepi32_ps(sumi[t]), acc_g[t]);
            }
        }
    }
    for t in 0..RN {
        // hsum_float_8's order, as in gemm_q6_k.
        let mut s = [_mm512_setzero_ps(); 4];
        for (l, sl) in s.iter_mut().enumerate() {
            *sl = _mm512_add_ps(acc[l + 4][t], acc[l][t]);
        }
        let u0 = _mm512_add_ps(s[0], s[2]);
        let u1 = _mm512_add_ps(s[1], s[3]);
        _mm512_storeu_ps(out[t], _mm512_add_ps(u0, u1));
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
    let unit = Q6K_UNIT;
    let mut acc = [[_mm256_setzero_ps(); RN]; 8];
    for i in 0..nb {
        let pw = panel.add(i * unit);
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
                let v = q6_values(pw.add(Q6K_PL + 192 * g + 96 * h));
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

/// Legacy unit (one block of 32 of 8 rows): d [8] f16 | then per kind: Q8_0 values
/// [8 groups x 8 rows x 4] i8; Q4_0 nibbles [4 x 8 rows x 4] (low nibbles group g, high
/// nibbles group g + 4); Q5_0 the same nibbles after masks [8 groups] u32 whose bit 4r + e is
/// set where element 4g + e of row r has its fifth bit clear.
pub const Q8_0_UNIT: usize = 16 + 256;
pub const Q4_0_UNIT: usize = 16 + 128;
pub const Q5_0_UNIT: usize = 16 + 32 + 128;
/// Which legacy layout a kernel reads.
pub const KIND_Q8_0: u8 = 0;
pub const KIND_Q4_0: u8 = 1;
pub const KIND_Q5_0: u8 = 2;

/// Repacks `nb` legacy blocks of 8 rows of `kind` (`rb` bytes apart from `w`) into `dst`.
pub fn pack_legacy(kind: u8, nb: usize, w: &[u8], rb: usize, dst: &mut [u8]) {
    let (unit, wb) = match kind {
        KIND_Q8_0 => (Q8_0_UNIT, 34),
        KIND_Q4_0 => (Q4_0_UNIT, 18),
        _ => (Q5_0_UNIT, 22),
    };
    for i in 0..nb {
        let d = &mut dst[i * unit..(i + 1) * unit];
        for r in 0..8 {
            let b = &w[r * rb + i * wb..r * rb + (i + 1) * wb];
            d[2 * r..2 * r + 2].copy_from_slice(&b[..2]);
            match kind {
                KIND_Q8_0 => {
                    for g in 0..8 {
                        let o = 16 + 32 * g + 4 * r;
                        d[o..o + 4].copy_from_slice(&b[Q8_0_QS + 4 * g..Q8_0_QS + 4 * g + 4]);
                    }
                }
                _ => {
                    let (qs, nib) = if kind == KIND_Q4_0 {
                        (Q4_0_QS, 16)
                    } else {
                        (Q5_0_QS, 48)
                    };
                    for g in 0..4 {
                        let o = nib + 32 * g + 4 * r;
                        d[o..o + 4].copy_from_slice(&b[qs + 4 * g..qs + 4 * g + 4]);
                    }
                    if kind == KIND_Q5_0 {
                        let qh = u32_at(b, Q5_0_QH);
                        for g in 0..8 {
                            let o = 16 + 4 * g;
                            let mut m = u32::from_le_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]]);
                            for e in 0..4 {
                                if qh >> (4 * g + e) & 1 == 0 {
                                    m |= 1 << (4 * r + e);
                                }
                            }
                            d[o..o + 4].copy_from_slice(&m.to_le_bytes());
                        }
                    }
                }
            }
        }
    }
}

/// Legacy panel against RN Q8_0 activation rows, in the lanes and float order of ggml's AVX2
/// `vec_dot_q*_0_q8_0` (and so of [`super::dot_avx2`]): the i32 sum of each group of 4
/// elements is its own partial with its own float accumulator (FMA by d·dx per block), the
/// eight summed as `hsum_float_8` does. Signs move onto the activations (`vpsignb`) so the
/// u8 x i8 `vpdpbusd` applies, exactly.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn gemm_legacy<const RN: usize, const KIND: u8>(
    nb: usize,
    panel: *const u8,
    xs: [*const u8; RN],
    out: [*mut f32; RN],
) {
    let unit = match KIND {
        KIND_Q8_0 => Q8_0_UNIT,
        KIND_Q4_0 => Q4_0_UNIT,
        _ => Q5_0_UNIT,
    };
    let m4 = _mm256_set1_epi8(0x0F);
    // Up to two tokens: one pass over the blocks with all eight partials live; more tokens:
    // one pass per group pair (g, g + 4), the panel re-read from L1.
    let passes = if RN <= 2 { 1 } else { 4 };
    let per = 4 / passes;
    let mut acc = [[_mm256_setzero_ps(); RN]; 8];
    for pass in 0..passes {
        let mut a = [[_mm256_setzero_ps(); RN]; 8];
        for b in 0..nb {
            let pw = panel.add(b * unit);
            let d = _mm256_cvtph_ps(_mm_loadu_si128(pw as *const __m128i));
            let mut dd = [_mm256_setzero_ps(); RN];
            for t in 0..RN {
                let dx = _mm256_set1_ps(super::dot_avx2::f16_at_ptr(xs[t].add(b * 34)));
                dd[t] = _mm256_mul_ps(d, dx);
            }
            for q in 0..per {
                let gp = pass * per + q;
                // Groups gp and gp + 4 of 8 rows, as signed i8.
                let (wl, wh) = match KIND {
                    KIND_Q8_0 => (
                        _mm256_loadu_si256(pw.add(16 + 32 * gp) as *const __m256i),
                        _mm256_loadu_si256(pw.add(16 + 32 * (gp + 4)) as *const __m256i),
                    ),
                    KIND_Q4_0 => {
                        let v = _mm256_loadu_si256(pw.add(16 + 32 * gp) as *const __m256i);
                        let eight = _mm256_set1_epi8(8);
                        (
                            _mm256_sub_epi8(_mm256_and_si256(v, m4), eight),
                            _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), eight),
                        )
                    }
                    _ => {
                        let v = _mm256_loadu_si256(pw.add(48 + 32 * gp) as *const __m256i);
                        let kl = (pw.add(16 + 4 * gp) as *const u32).read_unaligned();
                        let kh = (pw.add(16 + 4 * (gp + 4)) as *const u32).read_unaligned();
                        let sixteen = _mm256_set1_epi8(16);
                        let nl = _mm256_and_si256(v, m4);
                        let nh = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                        (
                            _mm256_mask_sub_epi8(nl, kl, nl, sixteen),
                            _mm256_mask_sub_epi8(nh, kh, nh, sixteen),
                        )
                    }
                };
                let (al, ah) = (_mm256_abs_epi8(wl), _mm256_abs_epi8(wh));
                for t in 0..RN {
                    let px = xs[t].add(b * 34 + Q8_0_QS);
                    let yl = bcast4(px.add(4 * gp));
                    let yh = bcast4(px.add(4 * (gp + 4)));
                    let z = _mm256_setzero_si256();
                    let sl = _mm256_dpbusd_epi32(z, al, _mm256_sign_epi8(yl, wl));
                    let sh = _mm256_dpbusd_epi32(z, ah, _mm256_sign_epi8(yh, wh));
                    a[2 * q][t] = _mm256_fmadd_ps(dd[t], _mm256_cvtepi32_ps(sl), a[2 * q][t]);
                    a[2 * q + 1][t] =
                        _mm256_fmadd_ps(dd[t], _mm256_cvtepi32_ps(sh), a[2 * q + 1][t]);
                }
            }
        }
        for q in 0..per {
            acc[pass * per + q] = a[2 * q];
            acc[pass * per + q + 4] = a[2 * q + 1];
        }
    }
    for t in 0..RN {
        // hsum_float_8's order: (a0 + a4) + (a2 + a6), (a1 + a5) + (a3 + a7), then those two.
        let s0 = _mm256_add_ps(acc[4][t], acc[0][t]);
        let s1 = _mm256_add_ps(acc[5][t], acc[1][t]);
        let s2 = _mm256_add_ps(acc[6][t], acc[2][t]);
        let s3 = _mm256_add_ps(acc[7][t], acc[3][t]);
        let u0 = _mm256_add_ps(s0, s2);
        let u1 = _mm256_add_ps(s1, s3);
        _mm256_storeu_ps(out[t], _mm256_add_ps(u0, u1));
    }
}

/// Per-block activation sums times the legacy kind's bias (128 for Q8_0 stored as w ^ 0x80,
/// 8 for Q4_0, 16 for Q5_0): `sums[t * nb + b] = bias * Σ x[t] block b`, for the prefill kernel.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn block_sums(kind: u8, nb: usize, x: *const u8, xb: usize, n: usize, sums: *mut i32) {
    let bias = match kind {
        KIND_Q8_0 => 128,
        KIND_Q4_0 => 8,
        _ => 16,
    };
    let flip = _mm256_set1_epi8(-128);
    for t in 0..n {
        for b in 0..nb {
            let y = _mm256_loadu_si256(x.add(t * xb + b * 34 + Q8_0_QS) as *const __m256i);
            // Σ (y + 128) over 32 bytes as four u64, minus 32 * 128.
            let s4 = _mm256_sad_epu8(_mm256_xor_si256(y, flip), _mm256_setzero_si256());
            let s2 = _mm_add_epi64(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
            let s = _mm_cvtsi128_si64(_mm_add_epi64(s2, _mm_unpackhi_epi64(s2, s2))) as i32 - 4096;
            *sums.add(t * nb + b) = bias * s;
        }
    }
}

/// Bytes of one expanded legacy unit for the prefill kernel: d [8] f16 | values as u8 (the
/// weight plus its kind's bias) [8 groups x 8 rows x 4].
pub const EXPANDED_UNIT: usize = 16 + 256;

/// Expands `nb` packed legacy units of `KIND` into the prefill kernel's unsigned layout (once
/// per panel and call; the kernel then runs every token tile on it).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn expand_legacy<const KIND: u8>(nb: usize, panel: *const u8, dst: *mut u8) {
    let unit = match KIND {
        KIND_Q8_0 => Q8_0_UNIT,
        KIND_Q4_0 => Q4_0_UNIT,
        _ => Q5_0_UNIT,
    };
    let m4 = _mm256_set1_epi8(0x0F);
    for b in 0..nb {
        let pw = panel.add(b * unit);
        let o = dst.add(b * EXPANDED_UNIT);
        _mm_storeu_si128(o as *mut __m128i, _mm_loadu_si128(pw as *const __m128i));
        for gp in 0..4 {
            let (ul, uh) = match KIND {
                KIND_Q8_0 => {
                    let flip = _mm256_set1_epi8(-128);
                    let l = _mm256_loadu_si256(pw.add(16 + 32 * gp) as *const __m256i);
                    let h = _mm256_loadu_si256(pw.add(16 + 32 * (gp + 4)) as *const __m256i);
                    (_mm256_xor_si256(l, flip), _mm256_xor_si256(h, flip))
                }
                KIND_Q4_0 => {
                    let v = _mm256_loadu_si256(pw.add(16 + 32 * gp) as *const __m256i);
                    (
                        _mm256_and_si256(v, m4),
                        _mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
                    )
                }
                _ => {
                    let v = _mm256_loadu_si256(pw.add(48 + 32 * gp) as *const __m256i);
                    // The masks mark a clear fifth bit; the value gets 16 where it is set.
                    let kl = !(pw.add(16 + 4 * gp) as *const u32).read_unaligned();
                    let kh = !(pw.add(16 + 4 * (gp + 4)) as *const u32).read_unaligned();
                    let sixteen = _mm256_set1_epi8(16);
                    let nl = _mm256_and_si256(v, m4);
                    let nh = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                    (
                        _mm256_mask_add_epi8(nl, kl, nl, sixteen),
                        _mm256_mask_add_epi8(nh, kh, nh, sixteen),
                    )
                }
            };
            _mm256_storeu_si256(o.add(16 + 32 * gp) as *mut __m256i, ul);
            _mm256_storeu_si256(o.add(16 + 32 * (gp + 4)) as *mut __m256i, uh);
        }
    }
}

/// Legacy panel (expanded by [`expand_legacy`]) against RN Q8_0 activation rows for prefill:
/// the whole block's i32 sum per row (unsigned weights against signed activations in
/// `vpdpbusd`, the bias removed with the block sums of [`block_sums`]), one FMA by d·dx per
/// block. Exact integer sums; the float order is that of a block-wise GEMM (tinyBLAS-like),
/// not the per-row partials of decode.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn gemm_legacy_prefill<const RN: usize>(
    nb: usize,
    panel: *const u8,
    xs: [*const u8; RN],
    sums: [*const i32; RN],
    out: [*mut f32; RN],
) {
    let mut acc = [_mm256_setzero_ps(); RN];
    for b in 0..nb {
        let pw = panel.add(b * EXPANDED_UNIT);
        // Four independent i32 chains per token (group pairs by parity, low and high half), so
        // that `vpdpbusd` latency does not serialize a block.
        let mut s = [[_mm256_setzero_si256(); 4]; RN];
        for gp in 0..4 {
            let ul = _mm256_loadu_si256(pw.add(16 + 32 * gp) as *const __m256i);
            let uh = _mm256_loadu_si256(pw.add(16 + 32 * (gp + 4)) as *const __m256i);
            for t in 0..RN {
                let px = xs[t].add(b * 34 + Q8_0_QS);
                let c = 2 * (gp % 2);
                s[t][c] = _mm256_dpbusd_epi32(s[t][c], ul, bcast4(px.add(4 * gp)));
                s[t][c + 1] = _mm256_dpbusd_epi32(s[t][c + 1], uh, bcast4(px.add(4 * (gp + 4))));
            }
        }
        let d = _mm256_cvtph_ps(_mm_loadu_si128(pw as *const __m128i));
        for t in 0..RN {
            let dx = _mm256_set1_ps(super::dot_avx2::f16_at_ptr(xs[t].add(b * 34)));
            let corr = _mm256_set1_epi32(*sums[t].add(b));
            let st = _mm256_add_epi32(
                _mm256_add_epi32(s[t][0], s[t][1]),
                _mm256_add_epi32(s[t][2], s[t][3]),
            );
            let dot = _mm256_cvtepi32_ps(_mm256_sub_epi32(st, corr));
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), dot, acc[t]);
        }
    }
    for t in 0..RN {
        _mm256_storeu_ps(out[t], acc[t]);
    }
}

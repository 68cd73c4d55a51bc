//! AVX-512 (BW + VL + VNNI) dot kernels on 256-bit registers: one weight row against N (1..=4)
//! activation rows, as in [`super::dot_avx2`], with fewer instructions per block: `vpdpbusd`
//! / `vpdpwssd` fuse the byte products with their i32 accumulation, and Q5_0's fifth bits come
//! straight from a mask register. Every i32 lane holds the same integer as the AVX2 kernel's
//! lane (no saturation is possible on these value ranges) and the float steps are the same, so
//! the results are bit-identical to the AVX2 kernels (tested), and so to ggml's order.
//!
//! Safety contract of every `unsafe fn` here: the CPU supports avx2, fma, f16c, avx512f,
//! avx512bw, avx512vl and avx512vnni, `w` holds at least `nb` weight blocks and every `xs[c]`
//! at least `nb` activation blocks.

use super::blocks::*;
use super::dot_avx2::f16_at_ptr;
use std::arch::x86_64::*;

/// Bytes of one Q8_K block.
const Q8K_BYTES: usize = 292;

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Sum of the eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    hsum_epi32_128(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn hsum_epi32_128(v: __m128i) -> i32 {
    let s = _mm_add_epi32(v, _mm_unpackhi_epi64(v, v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    _mm_cvtsi128_si32(s)
}

/// 16 packed bytes of nibbles -> 32 bytes: low nibbles in lane 0, high nibbles in lane 1.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn nibbles_32(p: *const u8) -> __m256i {
    let b = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
    let shifted = _mm256_srlv_epi64(b, _mm256_set_epi64x(4, 4, 0, 0));
    _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F))
}

/// Q5_0's 32 signed values: the nibble, minus 16 where the element's fifth bit is clear.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn q5_0_values(p: *const u8) -> __m256i {
    let qh = (p.add(Q5_0_QH) as *const u32).read_unaligned();
    let n = nibbles_32(p.add(Q5_0_QS));
    _mm256_mask_sub_epi8(n, !qh, n, _mm256_set1_epi8(16))
}

/// Signed i8 x signed i8 over 32 lanes, summed in fours to 8 x i32 (the sign moves onto `y`
/// so the u8 x i8 `vpdpbusd` applies; |-128| is 128 as u8).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot_i8_signed(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_abs_epi8(x);
    let sy = _mm256_sign_epi8(y, x);
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy)
}

/// Legacy weights against Q8_0 activations: `$unpack` turns the block at `$p` into 32 signed
/// i8 values; `$wb` is the weight block size in bytes.
macro_rules! legacy_kernel {
    ($(#[$doc:meta])* $name:ident, $wb:expr, |$p:ident| $unpack:expr) => {
        $(#[$doc])*
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub unsafe fn $name<const N: usize>(nb: usize, w: *const u8, xs: [*const u8; N]) -> [f32; N] {
            let mut acc = [_mm256_setzero_ps(); N];
            for i in 0..nb {
                let $p = w.add(i * $wb);
                let bw: __m256i = $unpack;
                let dw = f16_at_ptr($p);
                for c in 0..N {
                    let px = xs[c].add(i * 34);
                    let by = _mm256_loadu_si256(px.add(Q8_0_QS) as *const __m256i);
                    let dot = _mm256_cvtepi32_ps(dot_i8_signed(bw, by));
                    let d = _mm256_set1_ps(dw * f16_at_ptr(px));
                    acc[c] = _mm256_fmadd_ps(d, dot, acc[c]);
                }
            }
            let mut out = [0f32; N];
            for c in 0..N {
                out[c] = hsum_ps(acc[c]);
            }
            out
        }
    };
}

legacy_kernel!(
    /// Q8_0 · Q8_0.
    dot_q8_0_q8_0,
    34,
    |p| _mm256_loadu_si256(p.add(Q8_0_QS) as *const __m256i)
);
legacy_kernel!(
    /// Q4_0 · Q8_0: nibbles minus 8.
    dot_q4_0_q8_0,
    18,
    |p| _mm256_sub_epi8(nibbles_32(p.add(Q4_0_QS)), _mm256_set1_epi8(8))
);
legacy_kernel!(
    /// Q5_0 · Q8_0.
    dot_q5_0_q8_0,
    22,
    |p| q5_0_values(p)
);

/// Q4_K · Q8_K, the float order of [`super::dot_avx2::dot_q4_k_q8_k`] (ggml's repacked
/// kernels): per super-block one FMA of the whole integer sum by d·dx and one of the min term
/// by dmin·dx into a second accumulator.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn dot_q4_k_q8_k<const N: usize>(
    nb: usize,
    w: *const u8,
    xs: [*const u8; N],
) -> [f32; N] {
    let m4 = _mm256_set1_epi8(0x0F);
    let mut acc = [0f32; N];
    let mut acc_m = [0f32; N];
    for i in 0..nb {
        let p = w.add(i * 144);
        let d = f16_at_ptr(p.add(Q4K_D));
        let dmin = f16_at_ptr(p.add(Q4K_DMIN));
        let sm = k4_unpack_words(std::slice::from_raw_parts(p.add(Q4K_SCALES), 12));
        // [8 scales | 8 mins] as i16.
        let sm16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(sm.as_ptr() as *const __m128i));
        let mins = _mm256_extracti128_si256(sm16, 1);
        let sc128 = _mm256_castsi256_si128(sm16);
        let scales = _mm256_set_m128i(sc128, sc128);

        let mut sumi = [_mm256_setzero_si256(); N];
        for j in 0..4 {
            let q4 = _mm256_loadu_si256(p.add(Q4K_QS + 32 * j) as *const __m256i);
            let q4l = _mm256_and_si256(q4, m4);
            let q4h = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            let sl =
                _mm256_shuffle_epi8(scales, _mm256_set1_epi16((0x0100 + 0x0202 * 2 * j) as i16));
            let sh =
                _mm256_shuffle_epi8(scales, _mm256_set1_epi16((0x0302 + 0x0202 * 2 * j) as i16));
            for c in 0..N {
                let q8 = xs[c].add(i * Q8K_BYTES + Q8K_QS + 64 * j);
                let q8l = _mm256_loadu_si256(q8 as *const __m256i);
                let q8h = _mm256_loadu_si256(q8.add(32) as *const __m256i);
                let s = _mm256_dpwssd_epi32(sumi[c], _mm256_maddubs_epi16(q4l, q8l), sl);
                sumi[c] = _mm256_dpwssd_epi32(s, _mm256_maddubs_epi16(q4h, q8h), sh);
            }
        }
        for c in 0..N {
            let px = xs[c].add(i * Q8K_BYTES);
            let dx = (px.add(Q8K_D) as *const f32).read_unaligned();
            let bs = _mm256_loadu_si256(px.add(Q8K_BSUMS) as *const __m256i);
            // Pair sums of the 16 bsums give the 8 sums of 32 that the mins multiply.
            let bs8 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
            let isum = hsum_epi32(sumi[c]);
            let imin = hsum_epi32_128(_mm_madd_epi16(mins, bs8));
            acc[c] = (isum as f32).mul_add(d * dx, acc[c]);
            acc_m[c] = (imin as f32).mul_add(dmin * dx, acc_m[c]);
        }
    }
    std::array::from_fn(|c| acc[c] - acc_m[c])
}

/// Q6_K · Q8_K, the lanes and float order of [`super::dot_avx2::dot_q6_k_q8_k`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn dot_q6_k_q8_k<const N: usize>(
    nb: usize,
    w: *const u8,
    xs: [*const u8; N],
) -> [f32; N] {
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(0x03);
    let mut acc = [_mm256_setzero_ps(); N];
    for i in 0..nb {
        let p = w.add(i * 210);
        let d = f16_at_ptr(p.add(Q6K_D));
        let sc8 = _mm_loadu_si128(p.add(Q6K_SCALES) as *const __m128i);
        let sc16 = _mm256_cvtepi8_epi16(sc8);
        let mut sumi = [_mm256_setzero_si256(); N];
        for c in 0..N {
            let bs = _mm256_loadu_si256(xs[c].add(i * Q8K_BYTES + Q8K_BSUMS) as *const __m256i);
            let corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5);
            sumi[c] = _mm256_sub_epi32(sumi[c], corr);
        }
        for h in 0..2 {
            let ql0 = _mm256_loadu_si256(p.add(Q6K_QL + 64 * h) as *const __m256i);
            let ql1 = _mm256_loadu_si256(p.add(Q6K_QL + 64 * h + 32) as *const __m256i);
            let qh = _mm256_loadu_si256(p.add(Q6K_QH + 32 * h) as *const __m256i);
            // Bits 2k..2k+2 of qh are bits 4..6 of quarter k.
            let h0 = _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4);
            let h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4);
            let h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4);
            let h3 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4);
            let q = [
                _mm256_or_si256(_mm256_and_si256(ql0, m4), h0),
                _mm256_or_si256(_mm256_and_si256(ql1, m4), h1),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), h2),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), h3),
            ];
            for (k, qk) in q.iter().enumerate() {
                // Quarter k covers scales s = 8h + 2k (first 16) and s + 1 (next 16).
                let s = (8 * h + 2 * k) as i16;
                let idx = _mm_set_epi16(s + 1, s + 1, s + 1, s + 1, s, s, s, s);
                let idx8 = _mm_or_si128(idx, _mm_slli_epi16(idx, 8));
                let scale = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, idx8));
                for c in 0..N {
                    let q8 = xs[c].add(i * Q8K_BYTES + Q8K_QS + 128 * h + 32 * k);
                    let y = _mm256_loadu_si256(q8 as *const __m256i);
                    sumi[c] = _mm256_dpwssd_epi32(sumi[c], _mm256_maddubs_epi16(*qk, y), scale);
                }
            }
        }
        for c in 0..N {
            let dd = _mm256_set1_ps(
                d * (xs[c].add(i * Q8K_BYTES + Q8K_D) as *const f32).read_unaligned(),
            );
            acc[c] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi[c]), acc[c]);
        }
    }
    let mut out = [0f32; N];
    for c in 0..N {
        out[c] = hsum_ps(acc[c]);
    }
    out
}

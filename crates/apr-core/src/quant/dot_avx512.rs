//! AVX-512 (BW + VL + VNNI) dot kernels for the legacy types on 256-bit registers: one weight
//! row against N (1..=4) activation rows, as in [`super::dot_avx2`], with fewer instructions
//! per block: `vpdpbusd` fuses the byte products with their i32 accumulation, and Q5_0's fifth
//! bits come straight from a mask register. (Matrices of whole 8-row panels run the packed
//! kernels of [`super::packed_avx512`] instead; Q4_K and Q6_K rows outside them take the AVX2
//! kernels, which AVX-512 did not speed up per row.) The kernel bodies are the AVX2 module's
//! `legacy_kernel`; every i32 lane holds the same integer as the AVX2 kernel's lane (no
//! saturation is possible on these value ranges), so the results are bit-identical to the
//! AVX2 kernels (tested), and so to ggml's order.
//!
//! Safety contract of every `unsafe fn` here: the CPU supports avx2, fma, f16c, avx512f,
//! avx512bw, avx512vl and avx512vnni, `w` holds at least `nb` weight blocks and every `xs[c]`
//! at least `nb` activation blocks.

use super::blocks::*;
use super::dot_avx2::{f16_at_ptr, legacy_kernel};
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
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

legacy_kernel!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", dot_i8_signed;
    /// Q8_0 · Q8_0.
    dot_q8_0_q8_0,
    34,
    |p| _mm256_loadu_si256(p.add(Q8_0_QS) as *const __m256i)
);
legacy_kernel!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", dot_i8_signed;
    /// Q4_0 · Q8_0: nibbles minus 8.
    dot_q4_0_q8_0,
    18,
    |p| _mm256_sub_epi8(nibbles_32(p.add(Q4_0_QS)), _mm256_set1_epi8(8))
);
legacy_kernel!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", dot_i8_signed;
    /// Q5_0 · Q8_0.
    dot_q5_0_q8_0,
    22,
    |p| q5_0_values(p)
);

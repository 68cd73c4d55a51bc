//! AVX2 + FMA + F16C dot kernels: one weight row against N (1..=4) activation rows, unpacking
//! each weight block once and reusing it for every column. Int8 products use the
//! maddubs/madd idiom of ggml/src/ggml-cpu/arch/x86/quants.c.
//!
//! Safety contract of every `unsafe fn` here: the CPU supports avx2, fma and f16c, `w` holds at
//! least `nb` weight blocks and every `xs[c]` at least `nb` activation blocks.

use super::blocks::*;
use std::arch::x86_64::*;

/// Bytes of one Q8_K block.
const Q8K_BYTES: usize = 292;

/// The f16 at `p` as f32. Written as asm because LLVM otherwise folds the 2-byte load into a
/// `vpinsrw` that merges into a live register (often an accumulator), a false dependency that
/// serializes whole kernels; `vmovd` from a GPR zeroes the rest of the register.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16_at_ptr(p: *const u8) -> f32 {
    let h = (p as *const u16).read_unaligned() as u32;
    let v: __m128;
    std::arch::asm!(
        "vmovd {v}, {h:e}",
        "vcvtph2ps {v}, {v}",
        h = in(reg) h,
        v = out(xmm_reg) v,
        options(pure, nomem, nostack, preserves_flags),
    );
    _mm_cvtss_f32(v)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f32_at_ptr(p: *const u8) -> f32 {
    (p as *const f32).read_unaligned()
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Sum of the eight i32 lanes (exact; wrapping as the hardware adds).
#[target_feature(enable = "avx2")]
unsafe fn hsum_epi32(v: __m256i) -> i32 {
    hsum_epi32_128(_mm_add_epi32(
        _mm256_castsi256_si128(v),
        _mm256_extracti128_si256(v, 1),
    ))
}

/// Sum of the four i32 lanes.
#[target_feature(enable = "avx2")]
unsafe fn hsum_epi32_128(v: __m128i) -> i32 {
    let s = _mm_add_epi32(v, _mm_unpackhi_epi64(v, v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    _mm_cvtsi128_si32(s)
}

/// 16 packed bytes of nibbles -> 32 bytes: low nibbles in lane 0, high nibbles in lane 1.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn nibbles_32(p: *const u8) -> __m256i {
    let q = _mm_loadu_si128(p as *const __m128i);
    let m4 = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(q, m4);
    let hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
    _mm256_set_m128i(hi, lo)
}

/// The 32 bits of the u32 at `p` as 32 bytes: 0xFF where the bit is set, else 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn bits_to_bytes_32(p: *const u8) -> __m256i {
    let x = (p as *const u32).read_unaligned() as i32;
    // Byte j takes source byte j/8, then keeps only bit j%8 via an all-but-that-bit OR mask.
    let spread = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x), spread);
    let all_but = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
    _mm256_cmpeq_epi8(_mm256_or_si256(bytes, all_but), _mm256_set1_epi8(-1))
}

/// Signed i8 x signed i8 over 32 lanes, summed in fours to 8 x i32 (ggml's
/// `mul_sum_i8_pairs`): the sign of the weights `x` moves onto `y` so maddubs (u8 x i8)
/// applies to |x|.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_i8_signed(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
}

/// Legacy weights against Q8_0 activations, for the CPU features `$feat`: `$unpack` turns the
/// block at `$p` into 32 signed i8 values; `$wb` is the weight block size in bytes; `$dot` is
/// the module's i8 x i8 -> 8 x i32 dot (same lanes in every module). `hsum_ps` and
/// `f16_at_ptr` are the expanding module's.
macro_rules! legacy_kernel {
    ($feat:literal, $dot:ident; $(#[$doc:meta])* $name:ident, $wb:expr, |$p:ident| $unpack:expr) => {
        $(#[$doc])*
        #[target_feature(enable = $feat)]
        pub unsafe fn $name<const N: usize>(nb: usize, w: *const u8, xs: [*const u8; N]) -> [f32; N] {
            let mut acc = [_mm256_setzero_ps(); N];
            for i in 0..nb {
                let $p = w.add(i * $wb);
                let bw: __m256i = $unpack;
                let dw = f16_at_ptr($p);
                for c in 0..N {
                    let px = xs[c].add(i * 34);
                    let by = _mm256_loadu_si256(px.add(Q8_0_QS) as *const __m256i);
                    let dot = _mm256_cvtepi32_ps($dot(bw, by));
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
pub(super) use legacy_kernel;

legacy_kernel!(
    "avx2,fma,f16c", dot_i8_signed;
    /// Q8_0 · Q8_0.
    dot_q8_0_q8_0,
    34,
    |p| _mm256_loadu_si256(p.add(Q8_0_QS) as *const __m256i)
);
legacy_kernel!(
    "avx2,fma,f16c", dot_i8_signed;
    /// Q4_0 · Q8_0: nibbles minus 8.
    dot_q4_0_q8_0,
    18,
    |p| _mm256_sub_epi8(nibbles_32(p.add(Q4_0_QS)), _mm256_set1_epi8(8))
);
legacy_kernel!(
    "avx2,fma,f16c", dot_i8_signed;
    /// Q5_0 · Q8_0: (nibble | hbit << 4) - 16, i.e. nibble, or nibble | 0xF0 where hbit is clear.
    dot_q5_0_q8_0,
    22,
    |p| {
        let hb = bits_to_bytes_32(p.add(Q5_0_QH));
        let neg = _mm256_andnot_si256(hb, _mm256_set1_epi8(0xF0u8 as i8));
        _mm256_or_si256(nibbles_32(p.add(Q5_0_QS)), neg)
    }
);

/// Q4_K · Q8_K in the float order of ggml's repacked AVX2 kernels (`gemv/gemm_q4_K_8x8_q8_K`,
/// which llama.cpp uses for every Q4_K matrix on AVX2): per super-block the whole integer sum
/// Σ_j sc_j (q4·q8)_j and the whole Σ_j m_j bsum_j, each added to its own float accumulator
/// with one FMA by d·dx (dmin·dx), the two subtracted at the end.
#[target_feature(enable = "avx2,fma,f16c")]
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
                let pl = _mm256_madd_epi16(sl, _mm256_maddubs_epi16(q4l, q8l));
                let ph = _mm256_madd_epi16(sh, _mm256_maddubs_epi16(q4h, q8h));
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(pl, ph));
            }
        }
        for c in 0..N {
            let px = xs[c].add(i * Q8K_BYTES);
            let dx = f32_at_ptr(px.add(Q8K_D));
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

/// Q6_K · Q8_K. Values are 6-bit (0..63) minus 32; the -32 is applied once per block through
/// the activation's bsums: Σ sc_s (q - 32)·q8 = Σ sc_s q·q8 - 32 Σ sc_s bsum_s.
#[target_feature(enable = "avx2,fma,f16c")]
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
                    let pr = _mm256_madd_epi16(scale, _mm256_maddubs_epi16(*qk, y));
                    sumi[c] = _mm256_add_epi32(sumi[c], pr);
                }
            }
        }
        for c in 0..N {
            let dd = _mm256_set1_ps(d * f32_at_ptr(xs[c].add(i * Q8K_BYTES + Q8K_D)));
            acc[c] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi[c]), acc[c]);
        }
    }
    let mut out = [0f32; N];
    for c in 0..N {
        out[c] = hsum_ps(acc[c]);
    }
    out
}

/// Float weights against F32 activations; `$load` reads 8 weights at element `$i`.
macro_rules! float_kernel {
    ($(#[$doc:meta])* $name:ident, $eb:expr, $scalar:path, |$p:ident| $load:expr) => {
        $(#[$doc])*
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $name<const N: usize>(n: usize, w: *const u8, xs: [*const u8; N]) -> [f32; N] {
            let mut acc0 = [_mm256_setzero_ps(); N];
            let mut acc1 = [_mm256_setzero_ps(); N];
            let n16 = n / 16 * 16;
            let mut i = 0;
            while i < n16 {
                let w0 = { let $p = w.add(i * $eb); $load };
                let w1 = { let $p = w.add((i + 8) * $eb); $load };
                for c in 0..N {
                    let x = xs[c].add(4 * i) as *const f32;
                    acc0[c] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x), acc0[c]);
                    acc1[c] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x.add(8)), acc1[c]);
                }
                i += 16;
            }
            let mut out = [0f32; N];
            for c in 0..N {
                let tail_w = std::slice::from_raw_parts(w.add(n16 * $eb), (n - n16) * $eb);
                let tail_x = std::slice::from_raw_parts(xs[c].add(4 * n16), 4 * (n - n16));
                out[c] = hsum_ps(_mm256_add_ps(acc0[c], acc1[c])) + $scalar(n - n16, tail_w, tail_x);
            }
            out
        }
    };
}

float_kernel!(
    /// F32 · F32.
    dot_f32_f32,
    4,
    super::dot_ref::dot_f32_f32,
    |p| _mm256_loadu_ps(p as *const f32)
);
float_kernel!(
    /// F16 · F32 (F16C conversion).
    dot_f16_f32,
    2,
    super::dot_ref::dot_f16_f32,
    |p| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
);
float_kernel!(
    /// BF16 · F32 (bf16 is the top half of an f32).
    dot_bf16_f32,
    2,
    super::dot_ref::dot_bf16_f32,
    |p| _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)),
        16
    ))
);

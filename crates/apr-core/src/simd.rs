//! Small vector kernels outside the quantized formats: f16 dot products for attention.

use half::f16;

/// Scalar reference for [`dot_f16`].
pub fn dot_f16_ref(a: &[f16], b: &[f16]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x.to_f32() * y.to_f32()).sum()
}

/// `sum(a[i] * b[i])` over f16 inputs with f32 accumulation (ggml_vec_dot_f16's numerics).
pub fn dot_f16(a: &[f16], b: &[f16]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_f16c() {
            // SAFETY: the features were detected at run time.
            return unsafe { avx2::dot_f16(a, b) };
        }
    }
    dot_f16_ref(a, b)
}

/// `y[i] = f16(x[i] * v + y[i])`, one rounding to f32 then to f16 (ggml_vec_mad_f16).
pub fn mad_f16(y: &mut [f16], x: &[f16], v: f32) {
    debug_assert_eq!(y.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_f16c() {
            // SAFETY: the features were detected at run time.
            return unsafe { avx2::mad_f16(y, x, v) };
        }
    }
    mad_f16_ref(y, x, v)
}

/// Scalar reference for [`mad_f16`].
pub fn mad_f16_ref(y: &mut [f16], x: &[f16], v: f32) {
    for (a, b) in y.iter_mut().zip(x) {
        *a = f16::from_f32(b.to_f32().mul_add(v, a.to_f32()));
    }
}

/// `y[i] = f16(y[i] * v)` (ggml_vec_scale_f16).
pub fn scale_f16(y: &mut [f16], v: f32) {
    for a in y.iter_mut() {
        *a = f16::from_f32(a.to_f32() * v);
    }
}

/// Convert f16 to f32 (exact), F16C when present.
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    debug_assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_f16c() {
            // SAFETY: the features were detected at run time.
            return unsafe { avx2::f16_to_f32(src, dst) };
        }
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s.to_f32();
    }
}

/// Scalar reference for [`dot_f32`].
pub fn dot_f32_ref(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `sum(a[i] * b[i])` in f32.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_f16c() {
            // SAFETY: the features were detected at run time.
            return unsafe { avx2::dot_f32(a, b) };
        }
    }
    dot_f32_ref(a, b)
}

/// `y[i] += a * x[i]`.
pub fn axpy_f32(y: &mut [f32], x: &[f32], a: f32) {
    debug_assert_eq!(y.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_f16c() {
            // SAFETY: the features were detected at run time.
            return unsafe { avx2::axpy_f32(y, x, a) };
        }
    }
    for (o, v) in y.iter_mut().zip(x) {
        *o = v.mul_add(a, *o);
    }
}

/// Whether AVX2, FMA and F16C are present (cached by std's detection).
#[cfg(target_arch = "x86_64")]
pub fn has_avx2_f16c() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use half::f16;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(a: &[f16], b: &[f16]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr() as *const __m128i, b.as_ptr() as *const __m128i);
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            let a0 = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i / 8)));
            let b0 = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i / 8)));
            let a1 = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i / 8 + 1)));
            let b1 = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i / 8 + 1)));
            acc0 = _mm256_fmadd_ps(a0, b0, acc0);
            acc1 = _mm256_fmadd_ps(a1, b1, acc1);
            i += 16;
        }
        if i + 8 <= n {
            let a0 = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i / 8)));
            let b0 = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i / 8)));
            acc0 = _mm256_fmadd_ps(a0, b0, acc0);
            i += 8;
        }
        let acc = _mm256_add_ps(acc0, acc1);
        let hi = _mm256_extractf128_ps(acc, 1);
        let s = _mm_add_ps(_mm256_castps256_ps128(acc), hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        let mut sum = _mm_cvtss_f32(s);
        while i < n {
            sum += a[i].to_f32() * b[i].to_f32();
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let ps = src.as_ptr() as *const __m128i;
        let mut i = 0;
        while i + 8 <= n {
            _mm256_storeu_ps(
                dst.as_mut_ptr().add(i),
                _mm256_cvtph_ps(_mm_loadu_si128(ps.add(i / 8))),
            );
            i += 8;
        }
        while i < n {
            dst[i] = src[i].to_f32();
            i += 1;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
            i += 16;
        }
        if i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
        let mut sum = hsum(_mm256_add_ps(acc0, acc1));
        while i < n {
            sum += a[i] * b[i];
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy_f32(y: &mut [f32], x: &[f32], a: f32) {
        let n = y.len().min(x.len());
        let va = _mm256_set1_ps(a);
        let (py, px) = (y.as_mut_ptr(), x.as_ptr());
        let mut i = 0;
        while i + 8 <= n {
            _mm256_storeu_ps(
                py.add(i),
                _mm256_fmadd_ps(_mm256_loadu_ps(px.add(i)), va, _mm256_loadu_ps(py.add(i))),
            );
            i += 8;
        }
        while i < n {
            y[i] = x[i].mul_add(a, y[i]);
            i += 1;
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn mad_f16(y: &mut [f16], x: &[f16], v: f32) {
        let n = y.len().min(x.len());
        let (py, px) = (y.as_mut_ptr() as *mut __m128i, x.as_ptr() as *const __m128i);
        let vv = _mm256_set1_ps(v);
        let mut i = 0;
        while i + 8 <= n {
            let a = _mm256_cvtph_ps(_mm_loadu_si128(py.add(i / 8)));
            let b = _mm256_cvtph_ps(_mm_loadu_si128(px.add(i / 8)));
            let r = _mm256_fmadd_ps(b, vv, a);
            _mm_storeu_si128(
                py.add(i / 8),
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(r),
            );
            i += 8;
        }
        while i < n {
            y[i] = f16::from_f32(x[i].to_f32().mul_add(v, y[i].to_f32()));
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn mad_f16_matches_reference_bit_for_bit() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for n in [1, 8, 13, 64] {
            let x: Vec<f16> = (0..n)
                .map(|_| f16::from_f32(rng.random_range(-2.0..2.0)))
                .collect();
            let y0: Vec<f16> = (0..n)
                .map(|_| f16::from_f32(rng.random_range(-2.0..2.0)))
                .collect();
            let v = rng.random_range(-1.5..1.5);
            let (mut a, mut b) = (y0.clone(), y0.clone());
            mad_f16(&mut a, &x, v);
            mad_f16_ref(&mut b, &x, v);
            assert_eq!(a, b, "n={n}");
        }
    }

    #[test]
    fn f32_kernels_match_reference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for n in [1, 7, 8, 16, 31, 64, 100] {
            let a: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
            let mag: f32 = a.iter().zip(&b).map(|(p, q)| (p * q).abs()).sum();
            assert!(
                (dot_f32(&a, &b) - dot_f32_ref(&a, &b)).abs() <= 1e-5 * mag.max(1.0),
                "n={n}"
            );
            let mut y = b.clone();
            axpy_f32(&mut y, &a, 0.7);
            for i in 0..n {
                assert!(
                    (y[i] - (b[i] + 0.7 * a[i])).abs() <= 1e-6 * (1.0 + b[i].abs() + a[i].abs())
                );
            }
            let h: Vec<f16> = a.iter().map(|&v| f16::from_f32(v)).collect();
            let mut f = vec![0f32; n];
            f16_to_f32(&h, &mut f);
            assert!(f.iter().zip(&h).all(|(x, y)| *x == y.to_f32()));
        }
    }

    #[test]
    fn dot_f16_matches_reference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for n in [1, 7, 8, 15, 16, 33, 64, 128, 1000] {
            let a: Vec<f16> = (0..n)
                .map(|_| f16::from_f32(rng.random_range(-2.0..2.0)))
                .collect();
            let b: Vec<f16> = (0..n)
                .map(|_| f16::from_f32(rng.random_range(-2.0..2.0)))
                .collect();
            let (x, y) = (dot_f16(&a, &b), dot_f16_ref(&a, &b));
            let mag: f32 = a
                .iter()
                .zip(&b)
                .map(|(p, q)| (p.to_f32() * q.to_f32()).abs())
                .sum();
            assert!((x - y).abs() <= 1e-5 * mag.max(1.0), "n={n}: {x} vs {y}");
        }
    }
}

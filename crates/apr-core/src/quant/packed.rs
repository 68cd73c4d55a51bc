//! Weight matrices repacked once at load into the layout the fastest kernel of this CPU reads:
//! 8-row panels interleaved 4 bytes at a time, scales unpacked (see [`super::packed_avx512`]).
//! One packed matrix serves every batch size, decode and prefill alike; results equal
//! [`super::vec_dot`]'s bit for bit. Reference: ggml's `block_q4_Kx8` repacking
//! (ggml-cpu/repack.cpp), which llama.cpp applies to Q4_K on AVX2 and up.

use super::dot::{has_avx512, vec_dot_type};
use super::error::{bytes_for, check_len};
use super::{GgmlType, QuantError};
use crate::hugebuf::HugeBuf;

/// Weight rows per panel.
pub const PANEL_ROWS: usize = 8;

/// A `[rows, cols]` weight matrix in packed panels.
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    /// On 2 MiB pages where the OS offers them (decode streams these bytes every token).
    data: HugeBuf,
}

/// Bytes of one packed unit (a block of every row of a panel); None when `ty` has no packed
/// kernel on this CPU.
fn unit_bytes(ty: GgmlType) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        use super::packed_avx512 as k;
        return match ty {
            GgmlType::Q4K => Some(k::Q4K_UNIT),
            GgmlType::Q6K => Some(k::Q6K_UNIT),
            GgmlType::Q8_0 => Some(k::Q8_0_UNIT),
            GgmlType::Q4_0 => Some(k::Q4_0_UNIT),
            GgmlType::Q5_0 => Some(k::Q5_0_UNIT),
            _ => None,
        };
    }
    let _ = ty;
    None
}

/// Runs packed kernel `$k::<RN>` over all `n` activation rows, four at a time.
#[cfg(target_arch = "x86_64")]
macro_rules! tiles {
    ($k:ident $(, $extra:expr)?; $nb:expr, $panel:expr, $x:expr, $xb:expr, $n:expr, $out:expr, $ldo:expr) => {{
        #[allow(unused_imports)]
        use super::packed_avx512::{$k as k, KIND_Q4_0, KIND_Q5_0, KIND_Q8_0};
        let (nb, panel, x, xb, n, out, ldo): (
            usize,
            *const u8,
            *const u8,
            usize,
            usize,
            *mut f32,
            usize,
        ) = ($nb, $panel, $x, $xb, $n, $out, $ldo);
        let xp = |t: usize| x.add(t * xb);
        let op = |t: usize| out.add(t * ldo);
        let mut t = 0;
        while t + 4 <= n {
            k::<4 $(, $extra)?>(
                nb,
                panel,
                [xp(t), xp(t + 1), xp(t + 2), xp(t + 3)],
                [op(t), op(t + 1), op(t + 2), op(t + 3)],
            );
            t += 4;
        }
        match n - t {
            3 => k::<3 $(, $extra)?>(
                nb,
                panel,
                [xp(t), xp(t + 1), xp(t + 2)],
                [op(t), op(t + 1), op(t + 2)],
            ),
            2 => k::<2 $(, $extra)?>(nb, panel, [xp(t), xp(t + 1)], [op(t), op(t + 1)]),
            1 => k::<1 $(, $extra)?>(nb, panel, [xp(t)], [op(t)]),
            _ => {}
        }
    }};
}

/// From this many activation rows on, legacy types take the prefill kernel (whole-block sums,
/// about twice as fast; a different float order from the per-row kernels, as llama.cpp's
/// batched path also has); fewer rows keep the per-row kernels' order bit for bit.
pub const PREFILL_MIN_TOKENS: usize = 16;

thread_local! {
    /// The legacy prefill kernel's per-block activation sums and expanded panel, reused across
    /// calls (no allocation once sized).
    static PREFILL_SCRATCH: std::cell::RefCell<(Vec<i32>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs the legacy prefill kernel over all `n` activation rows, four at a time.
#[cfg(target_arch = "x86_64")]
macro_rules! prefill_tiles {
    ($nb:expr, $panel:expr, $x:expr, $xb:expr, $sums:expr, $n:expr, $out:expr, $ldo:expr) => {{
        use super::packed_avx512::gemm_legacy_prefill as k;
        let (nb, panel, x, xb, sums, n, out, ldo): (
            usize,
            *const u8,
            *const u8,
            usize,
            *const i32,
            usize,
            *mut f32,
            usize,
        ) = ($nb, $panel, $x, $xb, $sums, $n, $out, $ldo);
        let xp = |t: usize| x.add(t * xb);
        let sp = |t: usize| sums.add(t * nb);
        let op = |t: usize| out.add(t * ldo);
        let mut t = 0;
        while t + 4 <= n {
            k::<4>(
                nb,
                panel,
                [xp(t), xp(t + 1), xp(t + 2), xp(t + 3)],
                [sp(t), sp(t + 1), sp(t + 2), sp(t + 3)],
                [op(t), op(t + 1), op(t + 2), op(t + 3)],
            );
            t += 4;
        }
        match n - t {
            3 => k::<3>(
                nb,
                panel,
                [xp(t), xp(t + 1), xp(t + 2)],
                [sp(t), sp(t + 1), sp(t + 2)],
                [op(t), op(t + 1), op(t + 2)],
            ),
            2 => k::<2>(
                nb,
                panel,
                [xp(t), xp(t + 1)],
                [sp(t), sp(t + 1)],
                [op(t), op(t + 1)],
            ),
            1 => k::<1>(nb, panel, [xp(t)], [sp(t)], [op(t)]),
            _ => {}
        }
    }};
}

/// The packed layout of a legacy type.
#[cfg(target_arch = "x86_64")]
fn legacy_kind(ty: GgmlType) -> u8 {
    use super::packed_avx512 as k;
    match ty {
        GgmlType::Q8_0 => k::KIND_Q8_0,
        GgmlType::Q4_0 => k::KIND_Q4_0,
        _ => k::KIND_Q5_0,
    }
}

impl PackedMatrix {
    /// Packs `w` (`rows` ggml rows of `cols` elements of `ty`); None when this CPU has no packed
    /// kernel for `ty` or `rows` is not a whole number of panels (the caller keeps `w` as it is).
    pub fn pack(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        w: &[u8],
    ) -> Result<Option<Self>, QuantError> {
        const OP: &str = "pack";
        let rb = bytes_for(OP, ty, cols)?;
        check_len(OP, ty, "w", w.len(), rb * rows)?;
        let Some(ub) = unit_bytes(ty) else {
            return Ok(None);
        };
        if rows == 0 || !rows.is_multiple_of(PANEL_ROWS) {
            return Ok(None);
        }
        let units = cols / ty.block_elems();
        let pb = units * ub;
        let mut data = HugeBuf::zeroed(rows / PANEL_ROWS * pb);
        for (p, dst) in data.chunks_exact_mut(pb).enumerate() {
            let src = &w[p * PANEL_ROWS * rb..(p + 1) * PANEL_ROWS * rb];
            match ty {
                #[cfg(target_arch = "x86_64")]
                GgmlType::Q4K => super::packed_avx512::pack_q4_k(units, src, rb, dst),
                #[cfg(target_arch = "x86_64")]
                GgmlType::Q6K => super::packed_avx512::pack_q6_k(units, src, rb, dst),
                #[cfg(target_arch = "x86_64")]
                GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0 => {
                    super::packed_avx512::pack_legacy(legacy_kind(ty), units, src, rb, dst)
                }
                _ => unreachable!("unit_bytes covers the same types"),
            }
        }
        Ok(Some(PackedMatrix {
            ty,
            rows,
            cols,
            data,
        }))
    }

    pub fn ty(&self) -> GgmlType {
        self.ty
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Bytes of the packed weights (what a product reads).
    pub fn bytes(&self) -> usize {
        self.data.len()
    }
    /// Panels in the matrix.
    pub fn panels(&self) -> usize {
        self.rows / PANEL_ROWS
    }

    /// `out[t * ldo + r - 8 * panels.start] = vec_dot(W[r], X[t])` for the rows of `panels` and
    /// the `n` activation rows (of `vec_dot_type(ty)`) in `x`. Lengths are checked once.
    pub fn gemm(
        &self,
        panels: std::ops::Range<usize>,
        x: &[u8],
        n: usize,
        out: &mut [f32],
        ldo: usize,
    ) -> Result<(), QuantError> {
        const OP: &str = "packed gemm";
        let x_ty = vec_dot_type(self.ty);
        let xb = bytes_for(OP, x_ty, self.cols)?;
        check_len(OP, x_ty, "x", x.len(), xb * n)?;
        let width = panels.len() * PANEL_ROWS;
        let need = if n == 0 { 0 } else { (n - 1) * ldo + width };
        if panels.end > self.panels() || ldo < width || out.len() < need {
            return Err(QuantError::Len {
                op: OP,
                ty: GgmlType::F32,
                what: "out",
                got: out.len(),
                expected: need,
            });
        }
        let units = self.cols / self.ty.block_elems();
        let pb = self.data.len() / self.panels();
        let (xp, op) = (x.as_ptr(), out.as_mut_ptr());
        #[cfg(target_arch = "x86_64")]
        if n >= PREFILL_MIN_TOKENS
            && matches!(self.ty, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0)
        {
            let kind = legacy_kind(self.ty);
            PREFILL_SCRATCH.with_borrow_mut(|(sums, wide)| {
                sums.resize(n * units, 0);
                wide.resize(units * super::packed_avx512::EXPANDED_UNIT, 0);
                let (sp, wp) = (sums.as_mut_ptr(), wide.as_mut_ptr());
                // SAFETY: as below; sums holds n * units entries and wide one expanded panel.
                unsafe {
                    use super::packed_avx512 as k;
                    k::block_sums(kind, units, xp, xb, n, sp);
                    for (i, p) in panels.enumerate() {
                        let panel = self.data[p * pb..].as_ptr();
                        match self.ty {
                            GgmlType::Q8_0 => {
                                k::expand_legacy::<{ k::KIND_Q8_0 }>(units, panel, wp)
                            }
                            GgmlType::Q4_0 => {
                                k::expand_legacy::<{ k::KIND_Q4_0 }>(units, panel, wp)
                            }
                            _ => k::expand_legacy::<{ k::KIND_Q5_0 }>(units, panel, wp),
                        }
                        let o = op.add(i * PANEL_ROWS);
                        prefill_tiles!(units, wp, xp, xb, sp, n, o, ldo);
                    }
                }
            });
            return Ok(());
        }
        #[cfg(target_arch = "x86_64")]
        if n >= PREFILL_MIN_TOKENS && matches!(self.ty, GgmlType::Q4K | GgmlType::Q6K) {
            // The K types' prefill expands two panels at a time (scales and values unpacked,
            // 16 rows on 512-bit registers), so the token tiles skip the unpacking; each lane
            // keeps the per-row kernel's float order. An odd last panel expands alone (Q4_K)
            // or runs the decode kernel on its packed bytes (Q6_K).
            use super::packed_avx512 as k;
            let q4 = self.ty == GgmlType::Q4K;
            let wide_unit = if q4 { k::Q4K_W16_UNIT } else { k::Q6K_W16_UNIT };
            PREFILL_SCRATCH.with_borrow_mut(|(_, wide)| {
                wide.resize(units * wide_unit, 0);
                let wp = wide.as_mut_ptr();
                let first = panels.start;
                let mut p = first;
                while p < panels.end {
                    let a = self.data[p * pb..].as_ptr();
                    // SAFETY: as below; wide holds one expanded pair of panels, and a pair
                    // writes columns 8(p - first)..8(p - first) + 16 of every token row.
                    unsafe {
                        let o = op.add((p - first) * PANEL_ROWS);
                        if p + 1 < panels.end {
                            let b = self.data[(p + 1) * pb..].as_ptr();
                            if q4 {
                                k::expand_q4_k16(units, a, b, wp);
                                tiles!(gemm_q4_k16; units, wp, xp, xb, n, o, ldo);
                            } else {
                                k::expand_q6_k16(units, a, b, wp);
                                tiles!(gemm_q6_k16; units, wp, xp, xb, n, o, ldo);
                            }
                            p += 2;
                            continue;
                        }
                        if q4 {
                            k::expand_q4_k(units, a, wp);
                            tiles!(gemm_q4_k, true; units, wp, xp, xb, n, o, ldo);
                        } else {
                            tiles!(gemm_q6_k; units, a, xp, xb, n, o, ldo);
                        }
                    }
                    p += 1;
                }
            });
            return Ok(());
        }
        for (i, p) in panels.enumerate() {
            let panel = self.data[p * pb..].as_ptr();
            // SAFETY: the packed kernels exist only where has_avx512 held at pack time (the
            // features do not change while the process runs); lengths were checked above: the
            // panel holds `units` units, x holds n rows of xb bytes and out (n-1)*ldo + width
            // floats, of which this panel writes columns 8i..8i+8 of every token row.
            unsafe {
                let o = op.add(i * PANEL_ROWS);
                match self.ty {
                    #[cfg(target_arch = "x86_64")]
                    GgmlType::Q4K => tiles!(gemm_q4_k, false; units, panel, xp, xb, n, o, ldo),
                    #[cfg(target_arch = "x86_64")]
                    GgmlType::Q6K => tiles!(gemm_q6_k; units, panel, xp, xb, n, o, ldo),
                    #[cfg(target_arch = "x86_64")]
                    GgmlType::Q8_0 => {
                        tiles!(gemm_legacy, KIND_Q8_0; units, panel, xp, xb, n, o, ldo)
                    }
                    #[cfg(target_arch = "x86_64")]
                    GgmlType::Q4_0 => {
                        tiles!(gemm_legacy, KIND_Q4_0; units, panel, xp, xb, n, o, ldo)
                    }
                    #[cfg(target_arch = "x86_64")]
                    GgmlType::Q5_0 => {
                        tiles!(gemm_legacy, KIND_Q5_0; units, panel, xp, xb, n, o, ldo)
                    }
                    _ => unreachable!("pack covers the same types"),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::dot_tests::{random_act, random_row};
    use super::super::vec_dot;
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn packed_prefill_matches_reference() {
        let mut rng = StdRng::seed_from_u64(32);
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q5_0,
            GgmlType::Q4K,
            GgmlType::Q6K,
        ] {
            let k_quant = matches!(ty, GgmlType::Q4K | GgmlType::Q6K);
            let (k, m, n) = (
                if k_quant { 512 } else { 7 * 32 },
                // Three panels: the K types' prefill takes a pair on 512-bit registers, then one.
                24,
                PREFILL_MIN_TOKENS + 3,
            );
            let w: Vec<u8> = (0..m).flat_map(|_| random_row(ty, k, &mut rng)).collect();
            let Some(p) = PackedMatrix::pack(ty, m, k, &w).unwrap() else {
                continue;
            };
            let acts: Vec<Vec<u8>> = (0..n).map(|_| random_act(ty, k, &mut rng).1).collect();
            let mut out = vec![f32::NAN; n * m];
            p.gemm(0..3, &acts.concat(), n, &mut out, m).unwrap();
            let rb = w.len() / m;
            for t in 0..n {
                for r in 0..m {
                    let want =
                        super::super::reference_fn(ty)(k, &w[r * rb..(r + 1) * rb], &acts[t]);
                    let got = out[t * m + r];
                    let tol = 1e-5 * (want.abs() + 1.0) * (k as f32).sqrt();
                    assert!(
                        (got - want).abs() <= tol,
                        "{ty} t={t} r={r}: {got} vs {want}"
                    );
                    if k_quant {
                        // The K types' prefill keeps the per-row kernels' float order.
                        let exact = vec_dot(ty, k, &w[r * rb..(r + 1) * rb], &acts[t]);
                        assert_eq!(got.to_bits(), exact.to_bits(), "{ty} t={t} r={r}");
                    }
                }
            }
        }
    }

    #[test]
    fn packed_gemm_bit_equal_vec_dot() {
        let mut rng = StdRng::seed_from_u64(31);
        for ty in [
            GgmlType::Q4K,
            GgmlType::Q6K,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q5_0,
        ] {
            let (k, m) = (3 * 256 + if ty.block_elems() == 32 { 32 } else { 0 }, 24);
            let w: Vec<u8> = (0..m).flat_map(|_| random_row(ty, k, &mut rng)).collect();
            let Some(p) = PackedMatrix::pack(ty, m, k, &w).unwrap() else {
                eprintln!("{ty}: no packed kernel on this CPU: skipped");
                continue;
            };
            assert!(
                PackedMatrix::pack(ty, m - 1, k, &w[..w.len() / m * (m - 1)])
                    .unwrap()
                    .is_none()
            );
            let acts: Vec<Vec<u8>> = (0..7).map(|_| random_act(ty, k, &mut rng).1).collect();
            let rb = w.len() / m;
            for n in [1, 2, 3, 4, 5, 7] {
                let x: Vec<u8> = acts[..n].concat();
                // Panels 1..3 (rows 8..24), output stride with padding.
                let ldo = 16 + 3;
                let mut out = vec![f32::NAN; n * ldo];
                p.gemm(1..3, &x, n, &mut out, ldo).unwrap();
                for t in 0..n {
                    for r in 8..24 {
                        let want = vec_dot(ty, k, &w[r * rb..(r + 1) * rb], &acts[t]);
                        let got = out[t * ldo + r - 8];
                        assert_ne!(want, 0.0);
                        assert_eq!(got.to_bits(), want.to_bits(), "{ty} n={n} t={t} r={r}");
                    }
                    if t + 1 < n {
                        assert!(out[t * ldo + 16..t * ldo + ldo].iter().all(|v| v.is_nan()));
                    }
                }
                assert!(p.gemm(2..4, &x, n, &mut out, ldo).is_err());
                assert!(p.gemm(0..1, &x[1..], n, &mut out, ldo).is_err());
            }
        }
    }
}

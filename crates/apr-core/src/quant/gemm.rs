//! Matrix-matrix product of quantized weights and quantized activations, the prefill hot
//! path. On AVX2 the weights are unpacked one 8-row panel at a time and every activation row
//! runs against the panel (see [`super::gemm_avx2`]); elsewhere, per-element reference dots.
//! Reference: llamafile's tinyBLAS and ggml's repacked `gemm_*_8x8` (ggml-cpu/repack.cpp).

use super::dot::{vec_dot, vec_dot_type};
use super::error::{bytes_for, check_len};
use super::{GgmlType, QuantError};

/// Matrix-matrix product: `out[t * ldo + r] = vec_dot(w_ty, k, W[r], X[t])` for the `m` weight
/// rows stored back to back in `w` and the `n` activation rows (of `vec_dot_type(w_ty)`) in
/// `x`. Results equal `vec_dot`'s up to float summation order. Lengths are checked once.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    w_ty: GgmlType,
    k: usize,
    w: &[u8],
    m: usize,
    x: &[u8],
    n: usize,
    out: &mut [f32],
    ldo: usize,
) -> Result<(), QuantError> {
    const OP: &str = "gemm";
    let x_ty = vec_dot_type(w_ty);
    let rb = bytes_for(OP, w_ty, k)?;
    let xb = bytes_for(OP, x_ty, k)?;
    check_len(OP, w_ty, "w", w.len(), rb * m)?;
    check_len(OP, x_ty, "x", x.len(), xb * n)?;
    let need = if n == 0 { 0 } else { (n - 1) * ldo + m };
    if ldo < m || out.len() < need {
        return Err(QuantError::Len {
            op: OP,
            ty: GgmlType::F32,
            what: "out",
            got: out.len(),
            expected: need.max(n * m),
        });
    }
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if super::dot::has_avx2() {
        done = avx2::gemm_panels(w_ty, k, w, rb, m, x, xb, n, out, ldo);
    }
    // Rows no panel kernel took (a partial panel, or a type without one).
    for r in done..m {
        let wr = &w[r * rb..(r + 1) * rb];
        for t in 0..n {
            out[t * ldo + r] = vec_dot(w_ty, k, wr, &x[t * xb..(t + 1) * xb]);
        }
    }
    Ok(())
}

/// Whether [`gemm`] has a panel kernel for `w_ty` on this CPU (otherwise it still works, one
/// dot at a time).
pub fn gemm_has_kernel(w_ty: GgmlType) -> bool {
    #[cfg(target_arch = "x86_64")]
    if super::dot::has_avx2() {
        return avx2::panel_bytes(w_ty, 0).is_some();
    }
    let _ = w_ty;
    false
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::gemm_avx2 as k;
    use super::GgmlType;

    /// Bytes of one packed 8-row panel of `cols` elements; None when `ty` has no panel kernel.
    pub fn panel_bytes(ty: GgmlType, cols: usize) -> Option<usize> {
        Some(match ty {
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => cols / 32 * k::LEGACY_UNIT,
            GgmlType::Q4K => cols / 256 * k::Q4K_UNIT,
            GgmlType::Q6K => cols / 256 * k::Q6K_UNIT,
            // Float panels are packed one column block at a time (see `float_panels`).
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => FLOAT_KC.min(cols) * 32,
            _ => return None,
        })
    }

    /// Runs `$kern::<RN>` over all `n` activation rows, up to four at a time.
    macro_rules! token_tiles {
        ($kern:ident $(, $extra:expr)?; $nb:expr, $panel:expr, $x:expr, $xb:expr, $n:expr, $out:expr, $ldo:expr) => {{
            let (nb, panel, x, xb, n, out, ldo): (usize, *const u8, *const u8, usize, usize, *mut f32, usize) =
                ($nb, $panel, $x, $xb, $n, $out, $ldo);
            let xp = |t: usize| x.add(t * xb);
            let op = |t: usize| out.add(t * ldo);
            let mut t = 0;
            while t + 4 <= n {
                k::$kern::<4 $(, $extra)?>(nb, panel, [xp(t), xp(t + 1), xp(t + 2), xp(t + 3)],
                    [op(t), op(t + 1), op(t + 2), op(t + 3)]);
                t += 4;
            }
            match n - t {
                3 => k::$kern::<3 $(, $extra)?>(nb, panel, [xp(t), xp(t + 1), xp(t + 2)], [op(t), op(t + 1), op(t + 2)]),
                2 => k::$kern::<2 $(, $extra)?>(nb, panel, [xp(t), xp(t + 1)], [op(t), op(t + 1)]),
                1 => k::$kern::<1 $(, $extra)?>(nb, panel, [xp(t)], [op(t)]),
                _ => {}
            }
        }};
    }

    /// Packs and runs every whole 8-row panel; returns the rows done (a multiple of 8, or 0
    /// when `ty` has no panel kernel).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_panels(
        ty: GgmlType,
        cols: usize,
        w: &[u8],
        rb: usize,
        m: usize,
        x: &[u8],
        xb: usize,
        n: usize,
        out: &mut [f32],
        ldo: usize,
    ) -> usize {
        let float = match ty {
            GgmlType::F32 => Some(k::FloatWeights::F32),
            GgmlType::F16 => Some(k::FloatWeights::F16),
            GgmlType::BF16 => Some(k::FloatWeights::Bf16),
            _ => None,
        };
        if let Some(fw) = float {
            return float_panels(fw, cols, w, rb, m, x, xb, n, out, ldo);
        }
        let Some(pb) = panel_bytes(ty, cols) else {
            return 0;
        };
        let mut panel = vec![0u8; pb];
        let panels = m / k::PANEL;
        let (pp, xp, op) = (panel.as_mut_ptr(), x.as_ptr(), out.as_mut_ptr());
        for p in 0..panels {
            let wp = w[p * k::PANEL * rb..].as_ptr();
            // SAFETY: avx2/fma/f16c are present (caller checked); gemm checked that w holds m
            // rows of rb bytes and x n rows of xb bytes; the panel buffer holds pb bytes; out
            // holds (n - 1) * ldo + m floats and this panel writes columns 8p..8p+8 < m.
            unsafe {
                let o = op.add(p * k::PANEL);
                match ty {
                    GgmlType::Q4_0 => {
                        k::pack_q4_0(cols / 32, wp, rb, pp);
                        token_tiles!(gemm_legacy, true; cols / 32, pp, xp, xb, n, o, ldo);
                    }
                    GgmlType::Q5_0 => {
                        k::pack_q5_0(cols / 32, wp, rb, pp);
                        token_tiles!(gemm_legacy, true; cols / 32, pp, xp, xb, n, o, ldo);
                    }
                    GgmlType::Q8_0 => {
                        k::pack_q8_0(cols / 32, wp, rb, pp);
                        token_tiles!(gemm_legacy, false; cols / 32, pp, xp, xb, n, o, ldo);
                    }
                    GgmlType::Q4K => {
                        k::pack_q4_k(cols / 256, wp, rb, pp);
                        token_tiles!(gemm_q4_k; cols / 256, pp, xp, xb, n, o, ldo);
                    }
                    GgmlType::Q6K => {
                        k::pack_q6_k(cols / 256, wp, rb, pp);
                        token_tiles!(gemm_q6_k; cols / 256, pp, xp, xb, n, o, ldo);
                    }
                    _ => unreachable!("panel_bytes covers the same types"),
                }
            }
        }
        panels * k::PANEL
    }

    /// The last `$rem` (< 8) tokens of [`float_tiles`], one kernel call of RN = `$rem`.
    macro_rules! float_tail {
        ($kern:ident; $kc:expr, $pp:expr, $xs:expr, $os:expr, $first:expr, $rem:expr; $($r:literal)*) => {
            match $rem {
                $($r => k::$kern::<$r>($kc, $pp, std::array::from_fn($xs), std::array::from_fn($os), $first),)*
                _ => {}
            }
        };
    }

    /// Runs the float kernel `$kern::<RN>` over all `n` tokens, 8 at a time: `$xr(t)` is token
    /// t's activations at the block's first column, `$or(t)` its output at the panel's column.
    macro_rules! float_tiles {
        ($kern:ident; $kc:expr, $pp:expr, $xr:expr, $or:expr, $n:expr, $first:expr) => {{
            let (xr, or) = ($xr, $or);
            let mut t = 0;
            while t + 8 <= $n {
                k::$kern::<8>(
                    $kc,
                    $pp,
                    std::array::from_fn(|j| xr(t + j)),
                    std::array::from_fn(|j| or(t + j)),
                    $first,
                );
                t += 8;
            }
            let (xs, os) = (|j: usize| xr(t + j), |j: usize| or(t + j));
            float_tail!($kern; $kc, $pp, xs, os, $first, $n - t; 1 2 3 4 5 6 7);
        }};
    }

    /// Columns per block of a float panel: the block's activations of every token (n x 256
    /// f32, 512 KiB at n = 512) stay in L2 while the panels run past them, and each 8-row
    /// panel block (8 KiB) in L1.
    pub const FLOAT_KC: usize = 256;

    /// Float weights (F32/F16/BF16) against F32 activations: for each column block, every
    /// 8-row panel is converted to f32 once and runs against all `n` tokens, up to 8 at a
    /// time; later blocks accumulate into `out`. Returns the rows done (whole panels).
    #[allow(clippy::too_many_arguments)]
    fn float_panels(
        ty: k::FloatWeights,
        cols: usize,
        w: &[u8],
        rb: usize,
        m: usize,
        x: &[u8],
        xb: usize,
        n: usize,
        out: &mut [f32],
        ldo: usize,
    ) -> usize {
        let panels = m / k::PANEL;
        // Pairs of panels run 16 rows at a time on 512-bit registers where the CPU has them.
        let pairs = if super::super::dot::has_avx512() {
            panels / 2
        } else {
            0
        };
        let mut panel = vec![0f32; FLOAT_KC * 2 * k::PANEL];
        let (pp, xp, op) = (panel.as_mut_ptr(), x.as_ptr(), out.as_mut_ptr());
        macro_rules! all_tokens {
            ($kern:ident, $col:expr, $kc:expr, $c0:expr, $first:expr) => {{
                let xr = |t: usize| (xp.add(t * xb) as *const f32).add($c0);
                let or = |t: usize| op.add(t * ldo + $col);
                float_tiles!($kern; $kc, pp, xr, or, n, $first);
            }};
        }
        for c0 in (0..cols).step_by(FLOAT_KC) {
            let kc = FLOAT_KC.min(cols - c0);
            let first = c0 == 0;
            let wp = |p: usize| w.as_ptr().wrapping_add(p * k::PANEL * rb);
            // SAFETY (both loops): avx2/fma/f16c are present (caller checked), and avx512f
            // where `pairs` > 0; gemm checked that w holds m rows of rb bytes (cols elements)
            // and x n rows of xb bytes (cols f32); the panel buffer holds FLOAT_KC * 16 floats
            // >= kc * 16; out holds (n - 1) * ldo + m floats and panel p writes columns
            // 8p..8p+8 <= m (a pair 16p'..16p'+16 <= m).
            for q in 0..pairs {
                unsafe {
                    k::pack_float(ty, wp(2 * q), rb, c0, kc, pp, 16);
                    k::pack_float(ty, wp(2 * q + 1), rb, c0, kc, pp.add(8), 16);
                    all_tokens!(gemm_float16, 2 * q * k::PANEL, kc, c0, first);
                }
            }
            for p in 2 * pairs..panels {
                unsafe {
                    k::pack_float(ty, wp(p), rb, c0, kc, pp, 8);
                    all_tokens!(gemm_float, p * k::PANEL, kc, c0, first);
                }
            }
        }
        panels * k::PANEL
    }
}

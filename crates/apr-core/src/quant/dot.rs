//! Dot-product dispatch: which activation type each weight type pairs with, and one entry
//! point that picks the AVX2 kernel when the CPU has it, else the scalar reference.
//! Reference: `type_traits_cpu[].vec_dot` / `vec_dot_type` in ggml/src/ggml-cpu/ggml-cpu.c.

use super::dot_ref as r;
use super::error::{bytes_for, check_len};
use super::{GgmlType, QuantError};
use std::sync::atomic::{AtomicU8, Ordering};

/// Activation rows are processed in groups of at most this many per weight-block unpack.
pub const MAX_COLS: usize = 4;

/// The type activations must be quantized to before [`vec_dot`] with weights of type `w`.
pub fn vec_dot_type(w: GgmlType) -> GgmlType {
    use GgmlType::*;
    match w {
        F32 | F16 | BF16 => F32,
        Q4_0 | Q5_0 | Q8_0 | Q8_1 => Q8_0,
        Q4_1 | Q5_1 => Q8_1,
        Q2K | Q3K | Q4K | Q5K | Q6K | Q8K => Q8K,
    }
}

/// A dot of `n` elements: `(n, w_row, x_row) -> f32`.
pub type RefFn = fn(usize, &[u8], &[u8]) -> f32;

/// The scalar reference dot for weights of type `w` (see [`super::dot_ref`]).
pub fn reference_fn(w: GgmlType) -> RefFn {
    use GgmlType::*;
    match w {
        F32 => r::dot_f32_f32,
        F16 => r::dot_f16_f32,
        BF16 => r::dot_bf16_f32,
        Q4_0 => r::dot_q4_0_q8_0,
        Q4_1 => r::dot_q4_1_q8_1,
        Q5_0 => r::dot_q5_0_q8_0,
        Q5_1 => r::dot_q5_1_q8_1,
        Q8_0 => r::dot_q8_0_q8_0,
        Q8_1 => r::dot_q8_1_q8_0,
        Q2K => r::dot_q2_k_q8_k,
        Q3K => r::dot_q3_k_q8_k,
        Q4K => r::dot_q4_k_q8_k,
        Q5K => r::dot_q5_k_q8_k,
        Q6K => r::dot_q6_k_q8_k,
        Q8K => r::dot_q8_k_q8_k,
    }
}

const ISA_UNKNOWN: u8 = 0;
const ISA_SCALAR: u8 = 1;
const ISA_AVX2: u8 = 2;
const ISA_AVX512: u8 = 3;
static ISA: AtomicU8 = AtomicU8::new(ISA_UNKNOWN);

/// The kernel families, best last: (level, name). `force_kernel` takes these names.
const ISAS: [(u8, &str); 3] = [
    (ISA_SCALAR, "scalar"),
    (ISA_AVX2, "avx2"),
    (ISA_AVX512, "avx512vnni"),
];

/// The best kernel family this CPU runs: AVX-512 needs avx512f/bw/vl/vnni (on 256-bit
/// registers), AVX2 needs avx2 + fma + f16c.
fn detect() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        let avx512 = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni");
        match (avx2, avx512) {
            (true, true) => ISA_AVX512,
            (true, false) => ISA_AVX2,
            _ => ISA_SCALAR,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        ISA_SCALAR
    }
}

#[inline]
fn isa() -> u8 {
    let mut isa = ISA.load(Ordering::Relaxed);
    if isa == ISA_UNKNOWN {
        isa = detect();
        ISA.store(isa, Ordering::Relaxed);
    }
    isa
}

/// Whether the AVX2 kernels may run (also true when the AVX-512 ones do: types without an
/// AVX-512 kernel use the AVX2 one).
pub(super) fn has_avx2() -> bool {
    isa() >= ISA_AVX2
}

/// Whether the AVX-512 VNNI kernels run.
pub(super) fn has_avx512() -> bool {
    isa() >= ISA_AVX512
}

/// Makes every later dot use the scalar reference (`true`) or the best detected kernels
/// (`false`), process-wide; for A/B checks of the fast kernels on real models.
pub fn force_scalar(on: bool) {
    ISA.store(if on { ISA_SCALAR } else { detect() }, Ordering::Relaxed);
}

/// Makes every later dot use the kernel family `name` ("scalar", "avx2", "avx512vnni"),
/// process-wide; an error names the families when `name` is unknown or this CPU lacks it.
pub fn force_kernel(name: &str) -> Result<(), String> {
    let best = detect();
    let usable: Vec<&str> = ISAS.iter().filter(|i| i.0 <= best).map(|i| i.1).collect();
    match ISAS.iter().find(|i| i.1.eq_ignore_ascii_case(name)) {
        Some(&(level, _)) if level <= best => {
            ISA.store(level, Ordering::Relaxed);
            Ok(())
        }
        _ => Err(format!(
            "kernel {name:?} is not available on this CPU (available: {})",
            usable.join(", ")
        )),
    }
}

/// The kernel family [`vec_dot`] uses on this CPU: `"avx512vnni"`, `"avx2"` or `"scalar"`.
pub fn kernel_name() -> &'static str {
    let level = isa();
    ISAS.iter().find(|i| i.0 == level).map_or("scalar", |i| i.1)
}

/// Dot of one weight row (`n` elements of `w_ty`) with one activation row of
/// `vec_dot_type(w_ty)`.
///
/// Preconditions (checked by `debug_assert`; see [`vec_dot_checked`] for the checked form):
/// `n` is a whole number of blocks and both rows hold at least the bytes of `n` elements.
/// If they do not, only the whole blocks present in both rows are used; never a panic or an
/// out-of-bounds read.
#[inline]
pub fn vec_dot(w_ty: GgmlType, n: usize, w_row: &[u8], x_row: &[u8]) -> f32 {
    let (units, be, wb) = whole_units(w_ty, n, w_row, &[x_row]);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        let mut out = [0f32];
        // One "row" of units * wb bytes (at least 1 so chunking is defined when units = 0).
        if avx2_rows(w_ty, units, w_row, (units * wb).max(1), x_row, &mut out) {
            return out[0];
        }
    }
    reference_fn(w_ty)(units * be, w_row, x_row)
}

/// Units (blocks, or elements for float types) that every row holds whole, capped at `n`'s;
/// also the elements and weight bytes per unit.
#[inline]
fn whole_units(w_ty: GgmlType, n: usize, w_row: &[u8], xs: &[&[u8]]) -> (usize, usize, usize) {
    let x_ty = vec_dot_type(w_ty);
    let be = w_ty.block_elems().max(x_ty.block_elems());
    let wb = w_ty.block_bytes() * be / w_ty.block_elems();
    let xb = x_ty.block_bytes() * be / x_ty.block_elems();
    debug_assert!(
        n.is_multiple_of(be),
        "vec_dot: n = {n} is not whole {w_ty} blocks"
    );
    let mut units = (n / be).min(w_row.len() / wb);
    for x in xs {
        units = units.min(x.len() / xb);
    }
    debug_assert_eq!(units, n / be, "vec_dot: rows shorter than n = {n} ({w_ty})");
    (units, be, wb)
}

/// [`vec_dot`] with every length checked, as a typed error.
pub fn vec_dot_checked(
    w_ty: GgmlType,
    n: usize,
    w_row: &[u8],
    x_row: &[u8],
) -> Result<f32, QuantError> {
    const OP: &str = "vec_dot";
    let x_ty = vec_dot_type(w_ty);
    check_len(OP, w_ty, "w_row", w_row.len(), bytes_for(OP, w_ty, n)?)?;
    check_len(OP, x_ty, "x_row", x_row.len(), bytes_for(OP, x_ty, n)?)?;
    Ok(vec_dot(w_ty, n, w_row, x_row))
}

/// Dots of one weight row with several activation rows: `out[c] = vec_dot(w_ty, n, w_row,
/// xs[c])`, unpacking each weight block once per group of [`MAX_COLS`] columns. This is the
/// prefill path. Same preconditions as [`vec_dot`]; also `out.len() == xs.len()` (extra
/// entries on either side are left alone). No allocation.
pub fn vec_dot_multi(w_ty: GgmlType, n: usize, w_row: &[u8], xs: &[&[u8]], out: &mut [f32]) {
    let cols = xs.len().min(out.len());
    debug_assert_eq!(xs.len(), out.len());
    let (xs, out) = (&xs[..cols], &mut out[..cols]);
    let (units, be, _) = whole_units(w_ty, n, w_row, xs);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && avx2_cols(w_ty, units, w_row, xs, out) {
        return;
    }
    let f = reference_fn(w_ty);
    for (o, x) in out.iter_mut().zip(xs) {
        *o = f(units * be, w_row, x);
    }
}

/// Matrix-vector product, the decode hot path: `out[r] = vec_dot(w_ty, n, row r, x_row)` for
/// the `out.len()` rows stored back to back in `w_rows` (each `w_ty.bytes_for(n)` bytes).
/// Lengths are checked once per call; the kernel is chosen once for all rows.
pub fn gemv(
    w_ty: GgmlType,
    n: usize,
    w_rows: &[u8],
    x_row: &[u8],
    out: &mut [f32],
) -> Result<(), QuantError> {
    const OP: &str = "gemv";
    let x_ty = vec_dot_type(w_ty);
    let rb = bytes_for(OP, w_ty, n)?;
    check_len(OP, w_ty, "w_rows", w_rows.len(), rb * out.len())?;
    check_len(OP, x_ty, "x_row", x_row.len(), bytes_for(OP, x_ty, n)?)?;
    let units = n / w_ty.block_elems().max(x_ty.block_elems());
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && avx2_rows(w_ty, units, w_rows, rb, x_row, out) {
        return Ok(());
    }
    let f = reference_fn(w_ty);
    for (o, w) in out.iter_mut().zip(w_rows.chunks_exact(rb)) {
        *o = f(n, w, x_row);
    }
    Ok(())
}

/// `gemv` rows with kernel `$k::<1>`.
#[cfg(target_arch = "x86_64")]
macro_rules! each_row {
    ($m:ident::$k:ident, $units:expr, $w:expr, $rb:expr, $x:expr, $out:expr) => {{
        let x = $x.as_ptr();
        for (o, w) in $out.iter_mut().zip($w.chunks_exact($rb)) {
            // SAFETY: the module's CPU features are present (dispatch checked) and gemv checked
            // both rows hold `units` blocks.
            *o = unsafe { super::$m::$k::<1>($units, w.as_ptr(), [x]) }[0];
        }
        true
    }};
}

/// The AVX2 `gemv` loop; false when `w_ty` has no AVX2 kernel.
#[cfg(target_arch = "x86_64")]
fn avx2_rows(w_ty: GgmlType, units: usize, w: &[u8], rb: usize, x: &[u8], out: &mut [f32]) -> bool {
    if has_avx512() {
        match w_ty {
            GgmlType::Q4_0 => return each_row!(dot_avx512::dot_q4_0_q8_0, units, w, rb, x, out),
            GgmlType::Q5_0 => return each_row!(dot_avx512::dot_q5_0_q8_0, units, w, rb, x, out),
            GgmlType::Q8_0 => return each_row!(dot_avx512::dot_q8_0_q8_0, units, w, rb, x, out),
            _ => {}
        }
    }
    match w_ty {
        GgmlType::F32 => each_row!(dot_avx2::dot_f32_f32, units, w, rb, x, out),
        GgmlType::F16 => each_row!(dot_avx2::dot_f16_f32, units, w, rb, x, out),
        GgmlType::BF16 => each_row!(dot_avx2::dot_bf16_f32, units, w, rb, x, out),
        GgmlType::Q4_0 => each_row!(dot_avx2::dot_q4_0_q8_0, units, w, rb, x, out),
        GgmlType::Q5_0 => each_row!(dot_avx2::dot_q5_0_q8_0, units, w, rb, x, out),
        GgmlType::Q8_0 => each_row!(dot_avx2::dot_q8_0_q8_0, units, w, rb, x, out),
        GgmlType::Q4K => each_row!(dot_avx2::dot_q4_k_q8_k, units, w, rb, x, out),
        GgmlType::Q6K => each_row!(dot_avx2::dot_q6_k_q8_k, units, w, rb, x, out),
        _ => false,
    }
}

/// Runs `$k::<C>` over the columns in groups of up to four.
#[cfg(target_arch = "x86_64")]
macro_rules! in_groups {
    ($m:ident::$k:ident, $units:expr, $w:expr, $xs:expr, $out:expr) => {{
        use super::$m as k;
        let (units, w, xs, out): (usize, *const u8, &[&[u8]], &mut [f32]) =
            ($units, $w.as_ptr(), $xs, $out);
        let mut c = 0;
        while c < out.len() {
            let p = |i: usize| xs[c + i].as_ptr();
            // SAFETY: the module's CPU features are present (dispatch checked) and every row holds
            // `units` blocks.
            let taken = unsafe {
                match out.len() - c {
                    1 => {
                        out[c] = k::$k::<1>(units, w, [p(0)])[0];
                        1
                    }
                    2 => {
                        out[c..c + 2].copy_from_slice(&k::$k::<2>(units, w, [p(0), p(1)]));
                        2
                    }
                    3 => {
                        out[c..c + 3].copy_from_slice(&k::$k::<3>(units, w, [p(0), p(1), p(2)]));
                        3
                    }
                    _ => {
                        out[c..c + 4].copy_from_slice(&k::$k::<4>(
                            units,
                            w,
                            [p(0), p(1), p(2), p(3)],
                        ));
                        4
                    }
                }
            };
            c += taken;
        }
        true
    }};
}

/// The AVX2 kernels; false when `w_ty` has none (the caller then runs the reference).
#[cfg(target_arch = "x86_64")]
fn avx2_cols(w_ty: GgmlType, units: usize, w: &[u8], xs: &[&[u8]], out: &mut [f32]) -> bool {
    if has_avx512() {
        match w_ty {
            GgmlType::Q4_0 => return in_groups!(dot_avx512::dot_q4_0_q8_0, units, w, xs, out),
            GgmlType::Q5_0 => return in_groups!(dot_avx512::dot_q5_0_q8_0, units, w, xs, out),
            GgmlType::Q8_0 => return in_groups!(dot_avx512::dot_q8_0_q8_0, units, w, xs, out),
            _ => {}
        }
    }
    match w_ty {
        GgmlType::F32 => in_groups!(dot_avx2::dot_f32_f32, units, w, xs, out),
        GgmlType::F16 => in_groups!(dot_avx2::dot_f16_f32, units, w, xs, out),
        GgmlType::BF16 => in_groups!(dot_avx2::dot_bf16_f32, units, w, xs, out),
        GgmlType::Q4_0 => in_groups!(dot_avx2::dot_q4_0_q8_0, units, w, xs, out),
        GgmlType::Q5_0 => in_groups!(dot_avx2::dot_q5_0_q8_0, units, w, xs, out),
        GgmlType::Q8_0 => in_groups!(dot_avx2::dot_q8_0_q8_0, units, w, xs, out),
        GgmlType::Q4K => in_groups!(dot_avx2::dot_q4_k_q8_k, units, w, xs, out),
        GgmlType::Q6K => in_groups!(dot_avx2::dot_q6_k_q8_k, units, w, xs, out),
        _ => false,
    }
}

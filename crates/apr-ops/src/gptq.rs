//! GPTQ (Frantar et al. 2023, "GPTQ: Accurate Post-Training Quantization for Generative
//! Pre-trained Transformers") on ggml's block types, for `apr quantize --gptq`. Each decoder
//! matrix is quantized to the type llama.cpp's mix gives it, in ggml's own blocks, so the file
//! is an ordinary GGUF that llama.cpp runs; only the levels stored differ from round to
//! nearest.
//!
//! Per matrix, with `H = 2/n X^T X` of its calibration inputs (damped, inverted, its upper
//! Cholesky factor `U`, all from [`crate::prune::sparsegpt::hessian_inverse`]), columns are
//! taken in lazy blocks of 256 (128 for the 32-element types). When a row reaches a block of its
//! type, ggml's encoder chooses the block's scales from the row's current values (weighted by
//! the imatrix when one is given, else by the inputs' mean squares); then column by column each
//! value is rounded to the nearest level of those scales ([`apr_core::quant::grid`]) and its
//! error `(w - q) / U_jj` is spread over the row's later columns by row `j` of `U`, within the
//! lazy block at once and beyond it by one matrix product per block. With `U` diagonal no error
//! moves and the bytes are round to nearest's.
//!
//! The model is quantized layer by layer, as the paper's code does: a layer's inputs come from
//! the calibration samples passed through the layers before it already quantized. Every layer
//! is checkpointed (`OUT.gptq-partial/`), so an interrupted run resumes.

use std::collections::BTreeMap;

use apr_core::quant::{self, grid, GgmlType};
use apr_engine::Engine;
use apr_models::{ActivationStats, KvCache, Linear, Scratch};

use crate::prune::resume::Checkpoint;
#[cfg(test)]
use crate::prune::sparsegpt::hessian_inverse;
use crate::prune::sparsegpt::{hessian_inverse_damped, spread_block_errors, HessianInverse};
use crate::prune::{self, PruneError, Result};

/// Whether GPTQ can write `ty` (a block type whose levels [`grid`] can set).
pub fn supports(ty: GgmlType) -> bool {
    grid::has_grid(ty) && quant::can_encode(ty)
}

/// Quantizes `w: [rows, cols]` (row-major, changed in place into the values written) to `ty`
/// with the inverse Hessian of its inputs; `qw` (one per column) weights the scale searches.
/// Returns the encoded rows.
pub fn quantize_matrix(
    w: &mut [f32],
    cols: usize,
    ty: GgmlType,
    hinv: &HessianInverse,
    qw: Option<&[f32]>,
    threads: usize,
) -> Result<Vec<u8>> {
    let (be, bb) = (ty.block_elems(), ty.block_bytes());
    if !supports(ty) {
        return Err(PruneError::Invalid(format!("GPTQ cannot write {ty}")));
    }
    if cols == 0 || !cols.is_multiple_of(be) || !w.len().is_multiple_of(cols) {
        return Err(PruneError::Invalid(format!(
            "GPTQ: rows of {cols} are not whole {ty} blocks"
        )));
    }
    if hinv.u.len() != cols * cols || qw.is_some_and(|q| q.len() != cols) {
        return Err(PruneError::Invalid(
            "GPTQ: Hessian or weights of the wrong size".into(),
        ));
    }
    let rows = w.len() / cols;
    let row_bytes = cols / be * bb;
    for row in w.chunks_exact_mut(cols) {
        for (v, &d) in row.iter_mut().zip(&hinv.dead) {
            if d {
                *v = 0.0;
            }
        }
    }
    // The legacy weighted searches take the row's mean square.
    let sigma2: Vec<f32> = w
        .chunks_exact(cols)
        .map(|r| r.iter().fold(0f32, |s, &v| s + v * v) / cols as f32)
        .collect();
    let lazy = if be >= 128 { be } else { be * (128 / be) };
    let u = &hinv.u;
    let mut out = vec![0u8; rows * row_bytes];
    let mut w1 = Vec::new();
    let mut err1 = Vec::new();
    for i1 in (0..cols).step_by(lazy) {
        let i2 = (i1 + lazy).min(cols);
        let cnt = i2 - i1;
        w1.clear();
        for row in w.chunks_exact(cols) {
            w1.extend_from_slice(&row[i1..i2]);
        }
        err1.clear();
        err1.resize(rows * cnt, 0f32);
        let run_row = |r: usize, w1r: &mut [f32], e1r: &mut [f32], out_r: &mut [u8]| {
            for b0 in (0..cnt).step_by(be) {
                let blk = (i1 + b0) / be;
                let yb = &mut out_r[blk * bb..(blk + 1) * bb];
                let q = qw.map(|q| &q[i1 + b0..i1 + b0 + be]);
                quant::encode_block(ty, &w1r[b0..b0 + be], q, sigma2[r], yb)
                    .expect("lengths checked above");
                for j in b0..b0 + be {
                    let g = grid::grid(ty, yb, j - b0).expect("a type with a grid");
                    let v = w1r[j];
                    let level = g.nearest(v);
                    grid::set_level(ty, yb, j - b0, level);
                    let qv = g.value(level);
                    let c = i1 + j;
                    let e = (v - qv) / u[c * cols + c];
                    w1r[j] = qv;
                    e1r[j] = e;
                    let urow = &u[c * cols + i1..c * cols + i2];
                    for (x, &uu) in w1r[j + 1..].iter_mut().zip(&urow[j + 1..]) {
                        *x -= e * uu;
                    }
                }
            }
        };
        par_rows(
            threads, &mut w1, &mut err1, &mut out, cnt, row_bytes, &run_row,
        );
        for (row, b) in w.chunks_exact_mut(cols).zip(w1.chunks_exact(cnt)) {
            row[i1..i2].copy_from_slice(b);
        }
        spread_block_errors(w, cols, &err1, u, i1, i2, threads);
    }
    Ok(out)
}

/// One row of a lazy block: its index, values, errors and encoded row.
type RowFn<'a> = dyn Fn(usize, &mut [f32], &mut [f32], &mut [u8]) + Sync + 'a;

/// Runs `f` on every row (`w1`, `e1` in rows of `cnt`, `out` in rows of `row_bytes`), the
/// rows split over `threads` scoped threads.
fn par_rows(
    threads: usize,
    w1: &mut [f32],
    e1: &mut [f32],
    out: &mut [u8],
    cnt: usize,
    row_bytes: usize,
    f: &RowFn<'_>,
) {
    let rows = w1.len() / cnt;
    let per = rows.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for (t, ((w, e), o)) in w1
            .chunks_mut(per * cnt)
            .zip(e1.chunks_mut(per * cnt))
            .zip(out.chunks_mut(per * row_bytes))
            .enumerate()
        {
            s.spawn(move || {
                for (k, ((wr, er), or)) in w
                    .chunks_exact_mut(cnt)
                    .zip(e.chunks_exact_mut(cnt))
                    .zip(o.chunks_exact_mut(row_bytes))
                    .enumerate()
                {
                    f(t * per + k, wr, er, or);
                }
            });
        }
    });
}

/// The calibration of a GPTQ run.
#[derive(Debug, Clone)]
pub struct GptqOptions {
    /// The calibration text (never the evaluation text).
    pub calib: String,
    /// Samples of `len` tokens taken from its start.
    pub samples: usize,
    pub len: usize,
    /// The Hessian's damping, a fraction of its mean diagonal (the paper's 0.01).
    pub damp: f64,
}

/// The paper's damping: 1% of the Hessian's mean diagonal.
pub const DEFAULT_DAMP: f64 = 0.01;

/// The decoder matrices of `engine`'s model quantized by GPTQ, layer by layer: `types` gives
/// each matrix's type (from the mix), `weights` its imatrix weights (`None`: the mean squares
/// of its calibration inputs). A matrix of a type GPTQ cannot write is rounded to nearest, as
/// `apr quantize` does without `--gptq`; one already of its type is kept as it is.
/// `progress(layer, layers)` after each layer. Returns each matrix's type and bytes.
#[allow(clippy::too_many_arguments)]
pub fn quantize_layers(
    engine: &mut Engine,
    types: &BTreeMap<String, GgmlType>,
    weights: &dyn Fn(&str) -> Option<Vec<f32>>,
    o: &GptqOptions,
    threads: usize,
    ckpt: &Checkpoint,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<BTreeMap<String, (GgmlType, Vec<u8>)>> {
    let samples = prune::text_samples(engine, &o.calib, o.samples, o.len)?;
    let n_layer = engine.model.layers.len();
    let lens: Vec<usize> = samples.iter().map(Vec::len).collect();
    let mut done = BTreeMap::new();
    let mut start = 0;
    let mut xs = Vec::new();
    if let Some(r) = ckpt.restore(&lens, engine.model.cfg.hidden)? {
        if r.layers_done <= n_layer && (r.layers_done == n_layer || r.hidden.is_some()) {
            eprintln!(
                "gptq: resuming after {} of {n_layer} layers ({})",
                r.layers_done,
                ckpt.dir().display()
            );
            let mut saved: BTreeMap<String, (GgmlType, Vec<u8>)> = r
                .matrices
                .into_iter()
                .map(|(n, t, b)| (n, (t, b)))
                .collect();
            for layer in &mut engine.model.layers[..r.layers_done] {
                for (lin, _) in prune::layer_weights(layer) {
                    let (t, bytes) = saved.remove(&lin.name).ok_or_else(|| {
                        PruneError::Invalid(format!("the checkpoint lacks {}", lin.name))
                    })?;
                    replace(lin, t, bytes.clone())?;
                    done.insert(lin.name.clone(), (t, bytes));
                }
            }
            start = r.layers_done;
            xs = r.hidden.unwrap_or_default();
        } else {
            ckpt.remove();
        }
    }
    if start == 0 {
        xs = samples
            .iter()
            .map(|s| prune::embed(engine, s))
            .collect::<Result<Vec<_>>>()?;
    }
    let ctx = lens.iter().copied().max().unwrap_or(1);
    let mut cache = KvCache::with_type(&engine.model.cfg, ctx, engine.kv_type);
    let mut scratch = Scratch::default();
    for li in start..n_layer {
        progress(li, n_layer);
        let mut st = ActivationStats::new(false);
        let l = &engine.model.layers[li];
        for p in [&l.q_proj, &l.o_proj, &l.gate_proj, &l.down_proj] {
            st.keep.insert(p.name.clone());
        }
        scratch.stats = Some(st);
        for x in &xs {
            let mut h = x.clone();
            engine
                .model
                .forward_layer(&engine.pool, &mut cache, &mut scratch, li, &mut h)?;
        }
        let stats = scratch.stats.take().unwrap_or_default();
        let mut hinv: BTreeMap<String, HessianInverse> = BTreeMap::new();
        let mut layer_done = Vec::new();
        for (lin, input) in prune::layer_weights(&mut engine.model.layers[li]) {
            let ty = *types.get(&lin.name).ok_or_else(|| {
                PruneError::Invalid(format!("the quantization plan lacks {}", lin.name))
            })?;
            let bytes = if ty == lin.ty {
                lin.data.bytes().to_vec()
            } else {
                let (rows, cols) = (lin.rows, lin.cols);
                let mut w = vec![0f32; rows * cols];
                quant::dequantize(lin.ty, lin.data.bytes(), &mut w)?;
                let x = stats.inputs.get(&input).ok_or_else(|| {
                    PruneError::Invalid(format!("no calibration inputs of {input}"))
                })?;
                let qw = match weights(&lin.name) {
                    Some(w) => w,
                    None => input_mean_squares(&stats, &lin.name)?,
                };
                if supports(ty) && cols.is_multiple_of(ty.block_elems()) {
                    if !hinv.contains_key(&input) {
                        hinv.insert(
                            input.clone(),
                            hessian_inverse_damped(x, cols, threads, &input, o.damp)?,
                        );
                    }
                    quantize_matrix(&mut w, cols, ty, &hinv[&input], Some(&qw), threads)?
                } else {
                    let row_bytes = ty.bytes_for(cols).ok_or_else(|| {
                        PruneError::Invalid(format!(
                            "{}: rows of {cols} are not {ty} blocks",
                            lin.name
                        ))
                    })?;
                    let mut out = vec![0u8; rows * row_bytes];
                    quant::quantize_rows(
                        ty,
                        &w,
                        cols,
                        quant::uses_imatrix(ty).then_some(&qw[..]),
                        &mut out,
                    )?;
                    out
                }
            };
            replace(lin, ty, bytes.clone())?;
            layer_done.push((lin.name.clone(), ty, bytes));
        }
        drop(hinv);
        drop(stats);
        let forward = li + 1 < n_layer;
        if forward {
            for x in xs.iter_mut() {
                engine
                    .model
                    .forward_layer(&engine.pool, &mut cache, &mut scratch, li, x)?;
            }
        }
        let views: Vec<(&str, GgmlType, &[u8])> = layer_done
            .iter()
            .map(|(n, t, b)| (n.as_str(), *t, b.as_slice()))
            .collect();
        ckpt.save_layer(li, &views, forward.then_some(xs.as_slice()), 0, 0, 0)?;
        for (n, t, b) in layer_done {
            done.insert(n, (t, b));
        }
    }
    progress(n_layer, n_layer);
    Ok(done)
}

/// Puts the quantized matrix in the model, so that the next layer calibrates on it. A type
/// without a prefill kernel (Q2_K, Q3_K, Q5_K, Q4_1, Q5_1) goes in as the f32 values it
/// holds: the reference dot products would take minutes per layer over the samples.
fn replace(lin: &mut Linear, ty: GgmlType, bytes: Vec<u8>) -> Result<()> {
    let (ty, bytes) = if quant::gemm_has_kernel(ty) {
        (ty, bytes)
    } else {
        let mut v = vec![0f32; lin.rows * lin.cols];
        quant::dequantize(ty, &bytes, &mut v)?;
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        (GgmlType::F32, b)
    };
    *lin = Linear::from_bytes(
        &lin.name,
        ty,
        lin.rows,
        lin.cols,
        std::sync::Arc::new(bytes),
        lin.bias.take(),
    )?;
    Ok(())
}

/// The sha256 of `b` in hex (the calibration text's, in the output's metadata and the
/// checkpoint's key).
pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The mean square of each input column of the weight `name` over the calibration tokens
/// (what an imatrix of these inputs holds).
fn input_mean_squares(stats: &ActivationStats, name: &str) -> Result<Vec<f32>> {
    let e = stats
        .entries
        .get(name)
        .ok_or_else(|| PruneError::Invalid(format!("no calibration statistics of {name}")))?;
    let n = e.count.max(1) as f64;
    Ok(e.sum2.iter().map(|&v| (v / n) as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mean square of each input column of `x: [n, cols]` (an imatrix of these inputs).
    fn mean_squares(x: &[f32], cols: usize) -> Vec<f32> {
        let mut s = vec![0f64; cols];
        for row in x.chunks_exact(cols) {
            for (a, &v) in s.iter_mut().zip(row) {
                *a += (v as f64) * (v as f64);
            }
        }
        let n = (x.len() / cols).max(1) as f64;
        s.iter().map(|&v| (v / n) as f32).collect()
    }

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
            })
            .collect()
    }

    /// Inputs with correlated columns: `x = z A`, `A` random with a strong diagonal.
    fn correlated_inputs(n: usize, cols: usize, seed: u64) -> Vec<f32> {
        let z = random(n * cols, seed);
        let a: Vec<f32> = random(cols * cols, seed + 1)
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if i / cols == i % cols {
                    1.0 + v.abs()
                } else {
                    0.6 * v
                }
            })
            .collect();
        let mut x = vec![0f32; n * cols];
        for t in 0..n {
            for k in 0..cols {
                let zk = z[t * cols + k];
                for j in 0..cols {
                    x[t * cols + j] += zk * a[k * cols + j];
                }
            }
        }
        x
    }

    /// `sum over rows of (w - q) H (w - q)^T` with `H = X^T X`: the output's squared error.
    fn output_error(w: &[f32], q: &[f32], x: &[f32], cols: usize) -> f64 {
        let mut total = 0f64;
        for (wr, qr) in w.chunks_exact(cols).zip(q.chunks_exact(cols)) {
            for xr in x.chunks_exact(cols) {
                let e: f64 = wr
                    .iter()
                    .zip(qr)
                    .zip(xr)
                    .map(|((&a, &b), &v)| ((a - b) * v) as f64)
                    .sum();
                total += e * e;
            }
        }
        total
    }

    const TYPES: [GgmlType; 7] = [
        GgmlType::Q4_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ];

    /// With a diagonal Hessian no error moves: the bytes are the encoder's own, for the K
    /// types (whose encoders end with round to nearest) bit for bit.
    #[test]
    fn a_diagonal_hessian_gives_round_to_nearest() {
        let (rows, cols) = (6, 512);
        let hinv = HessianInverse {
            u: (0..cols * cols)
                .map(|i| if i / cols == i % cols { 0.5 } else { 0.0 })
                .collect(),
            dead: vec![false; cols],
        };
        for ty in [
            GgmlType::Q2K,
            GgmlType::Q3K,
            GgmlType::Q4K,
            GgmlType::Q5K,
            GgmlType::Q6K,
        ] {
            let w0 = random(rows * cols, ty as u64);
            let qw: Vec<f32> = random(cols, 9).iter().map(|v| v.abs() + 0.1).collect();
            let mut w = w0.clone();
            let got = quantize_matrix(&mut w, cols, ty, &hinv, Some(&qw), 2).unwrap();
            let mut want = vec![0u8; got.len()];
            quant::quantize_rows(ty, &w0, cols, Some(&qw), &mut want).unwrap();
            assert_eq!(got, want, "{ty}");
        }
    }

    /// On correlated inputs GPTQ's output error is well below round to nearest's with the
    /// same types and imatrix weights, and the values it returns are the ones it wrote.
    #[test]
    fn gptq_lowers_the_output_error() {
        let (rows, cols, n) = (16, 256, 1024);
        let x = correlated_inputs(n, cols, 3);
        let hinv = hessian_inverse(&x, cols, 2, "test").unwrap();
        let qw = mean_squares(&x, cols);
        for ty in TYPES {
            let w0 = random(rows * cols, 100 + ty as u64);
            let mut w = w0.clone();
            let bytes = quantize_matrix(&mut w, cols, ty, &hinv, Some(&qw), 2).unwrap();
            let mut q = vec![0f32; w0.len()];
            quant::dequantize(ty, &bytes, &mut q).unwrap();
            assert_eq!(q, w, "{ty}: the returned values are not the written ones");
            let mut rtn = vec![0u8; bytes.len()];
            quant::quantize_rows(ty, &w0, cols, Some(&qw), &mut rtn).unwrap();
            let mut qr = vec![0f32; w0.len()];
            quant::dequantize(ty, &rtn, &mut qr).unwrap();
            let (eg, er) = (
                output_error(&w0, &q, &x, cols),
                output_error(&w0, &qr, &x, cols),
            );
            assert!(
                eg < 0.8 * er,
                "{ty}: GPTQ {eg:.4e} vs round to nearest {er:.4e}"
            );
        }
    }

    #[test]
    fn bad_shapes_and_types_are_errors() {
        let hinv = HessianInverse {
            u: vec![1.0; 64 * 64],
            dead: vec![false; 64],
        };
        let mut w = vec![0.5f32; 2 * 64];
        assert!(quantize_matrix(&mut w, 64, GgmlType::Q4K, &hinv, None, 1).is_err());
        assert!(quantize_matrix(&mut w, 64, GgmlType::F16, &hinv, None, 1).is_err());
        assert!(quantize_matrix(&mut w, 32, GgmlType::Q8_0, &hinv, None, 1).is_err());
        assert!(quantize_matrix(&mut w, 64, GgmlType::Q8_0, &hinv, Some(&[1.0; 3]), 1).is_err());
        assert!(quantize_matrix(&mut w, 64, GgmlType::Q8_0, &hinv, None, 1).is_ok());
    }
}

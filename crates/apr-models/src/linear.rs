//! A linear layer over a weight matrix of any ggml type: `y = x W^T (+ b)`, threaded by rows.

use std::sync::Arc;

use apr_core::pool::{split_range, ThreadPool};
use apr_core::quant::packed::PANEL_ROWS;
use apr_core::quant::{self, GgmlType, PackedMatrix};
use apr_formats::{Gguf, TensorInfo};

use crate::{ModelError, Result};

/// Weight rows each thread takes at a time (keeps per-thread ranges cache-line apart).
const ROW_ALIGN: usize = 16;
/// Pool slots per thread for a product split by weight rows: threads that run claim more, so
/// uneven cores and descheduled threads cost little.
const SLOTS_PER_THREAD: usize = 4;
/// Packed panels each slot takes at a time.
const PANEL_ALIGN: usize = 2;
/// Activation rows dotted with one weight row per kernel call.
const TOKEN_TILE: usize = 4;
/// From this many activation rows on, threads split the rows of the batch and each runs the
/// panel GEMM over all weight rows (the weights stay in the shared L3; no output sharing).
const GEMM_MIN_TOKENS: usize = 16;

/// The bytes of a weight matrix: a view into the mapped file, or owned (repacked, converted).
#[derive(Clone)]
pub enum WeightData {
    Mapped {
        file: Arc<Gguf>,
        /// The file's byte source holding the tensor ([`TensorInfo::source`]).
        source: usize,
        offset: usize,
        len: usize,
    },
    Owned(Arc<Vec<u8>>),
}

impl WeightData {
    pub fn bytes(&self) -> &[u8] {
        match self {
            WeightData::Mapped {
                file,
                source,
                offset,
                len,
            } => &file.source_bytes(*source)[*offset..*offset + *len],
            WeightData::Owned(v) => v,
        }
    }
}

/// Raw pointer shared across pool threads that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr<T>(pub *mut T);
// SAFETY: every user writes disjoint index ranges and the pool joins before the buffer is read.
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The pointer (a method, so closures capture the Sync wrapper, not the raw field).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

#[derive(Clone)]
pub struct Linear {
    pub name: String,
    pub ty: GgmlType,
    /// Output features (rows of W).
    pub rows: usize,
    /// Input features (elements per row).
    pub cols: usize,
    pub data: WeightData,
    /// The weights repacked at load for this CPU's panel kernels, when it has them for `ty`;
    /// products then read these instead of `data` (which keeps serving row lookups).
    pub packed: Option<Arc<PackedMatrix>>,
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    /// A weight `[rows, cols]` of type `ty` from bytes held in memory (a pruned matrix,
    /// shared with the writer of the output file), repacked like a mapped one.
    pub fn from_bytes(
        name: &str,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        bytes: Arc<Vec<u8>>,
        bias: Option<Vec<f32>>,
    ) -> Result<Self> {
        let bad = |msg: String| ModelError::Tensor {
            name: name.to_string(),
            msg,
        };
        if ty.bytes_for(cols).map(|r| r * rows) != Some(bytes.len()) {
            return Err(bad(format!(
                "{} bytes for [{rows}, {cols}] of {ty}",
                bytes.len()
            )));
        }
        if let Some(b) = bias.as_ref().filter(|b| b.len() != rows) {
            return Err(bad(format!(
                "bias has {} elements for {rows} rows",
                b.len()
            )));
        }
        let packed = PackedMatrix::pack(ty, rows, cols, &bytes)
            .map_err(|e| bad(e.to_string()))?
            .map(Arc::new);
        Ok(Linear {
            name: name.to_string(),
            ty,
            rows,
            cols,
            data: WeightData::Owned(bytes),
            packed,
            bias,
        })
    }

    /// A 2-D tensor `[rows, cols]` (ggml dims `[cols, rows]`) from the file.
    pub fn from_gguf(file: &Arc<Gguf>, info: &TensorInfo, bias: Option<Vec<f32>>) -> Result<Self> {
        if info.dims.len() != 2 {
            return Err(ModelError::Tensor {
                name: info.name.clone(),
                msg: format!("expected 2 dimensions, found {:?}", info.dims),
            });
        }
        let (cols, rows) = (info.dims[0] as usize, info.dims[1] as usize);
        if let Some(b) = &bias {
            if b.len() != rows {
                return Err(ModelError::Tensor {
                    name: info.name.clone(),
                    msg: format!("bias has {} elements for {rows} rows", b.len()),
                });
            }
        }
        let data = WeightData::Mapped {
            file: file.clone(),
            source: info.source,
            offset: info.offset as usize,
            len: info.n_bytes as usize,
        };
        let packed = PackedMatrix::pack(info.dtype, rows, cols, data.bytes())
            .map_err(|e| ModelError::Tensor {
                name: info.name.clone(),
                msg: e.to_string(),
            })?
            .map(Arc::new);
        Ok(Linear {
            name: info.name.clone(),
            ty: info.dtype,
            rows,
            cols,
            data,
            packed,
            bias,
        })
    }

    /// Bytes a product reads: the packed copy when there is one, else the file's tensor.
    pub fn weight_bytes(&self) -> usize {
        self.packed
            .as_ref()
            .map_or(self.data.bytes().len(), |p| p.bytes())
    }

    pub fn row_bytes(&self) -> usize {
        self.data.bytes().len() / self.rows
    }

    /// The activation type the kernels pair with this weight type.
    pub fn act_type(&self) -> GgmlType {
        quant::vec_dot_type(self.ty)
    }

    /// Bytes of one quantized activation row.
    pub fn act_row_bytes(&self) -> usize {
        self.act_type()
            .bytes_for(self.cols)
            .expect("cols is a whole number of blocks")
    }

    /// One weight row dequantized into `out` (embedding lookup).
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) -> Result<()> {
        let rb = self.row_bytes();
        let bytes = &self.data.bytes()[row * rb..(row + 1) * rb];
        quant::dequantize(self.ty, bytes, out)?;
        Ok(())
    }

    /// Quantize `n` activation rows `x: [n, cols]` into `qx` for [`Linear::forward_quantized`].
    pub fn quantize_input(&self, pool: &ThreadPool, x: &[f32], n: usize, qx: &mut Vec<u8>) {
        let act = self.act_type();
        let arb = self.act_row_bytes();
        qx.resize(n * arb, 0);
        let cols = self.cols;
        if n == 1 {
            // One row: a pool dispatch would cost more than the work.
            let r = quant::quantize_activation(act, &x[..cols], &mut qx[..arb]);
            debug_assert!(r.is_ok(), "activation row sizes are fixed at load");
            return;
        }
        let dst = SyncPtr(qx.as_mut_ptr());
        pool.run(|i, nt| {
            for t in split_range(n, i, nt, 1) {
                // SAFETY: each thread writes its own rows of qx.
                let d = unsafe { std::slice::from_raw_parts_mut(dst.get().add(t * arb), arb) };
                let r = quant::quantize_activation(act, &x[t * cols..(t + 1) * cols], d);
                debug_assert!(r.is_ok(), "activation row sizes are fixed at load");
            }
        });
    }

    /// `out[t, r] = dot(W[r], x[t]) + b[r]` for pre-quantized inputs; `out: [n, rows]`.
    pub fn forward_quantized(&self, pool: &ThreadPool, qx: &[u8], n: usize, out: &mut [f32]) {
        debug_assert!(out.len() >= n * self.rows);
        let arb = self.act_row_bytes();
        let rb = self.row_bytes();
        let w = self.data.bytes();
        let (rows, cols, ty) = (self.rows, self.cols, self.ty);
        let dst = SyncPtr(out.as_mut_ptr());
        let bias = self.bias.as_deref();
        if let Some(p) = &self.packed {
            // Threads split the panels; each runs every token against its panels (a panel stays
            // in L1 while the activation rows stream past it).
            pool.run_slots(SLOTS_PER_THREAD * pool.n_threads(), |i, ns| {
                let pr = split_range(p.panels(), i, ns, PANEL_ALIGN);
                self.packed_part(p, pr, qx, n, dst);
            });
            return;
        }
        if n == 1 {
            // Decode: one matrix-vector product per thread over its rows.
            pool.run_slots(SLOTS_PER_THREAD * pool.n_threads(), |i, ns| {
                let rr = split_range(rows, i, ns, ROW_ALIGN);
                // SAFETY: each slot writes only its own rows.
                let o =
                    unsafe { std::slice::from_raw_parts_mut(dst.get().add(rr.start), rr.len()) };
                let r = quant::gemv(ty, cols, &w[rr.start * rb..rr.end * rb], &qx[..arb], o);
                debug_assert!(r.is_ok(), "weight and activation sizes are fixed at load");
                if let Some(b) = bias {
                    for (v, bb) in o.iter_mut().zip(&b[rr]) {
                        *v += bb;
                    }
                }
            });
            return;
        }
        if n >= GEMM_MIN_TOKENS && quant::gemm_has_kernel(ty) {
            pool.run(|i, nt| {
                let tr = split_range(n, i, nt, 1);
                // SAFETY: each thread writes only the output rows of its own tokens.
                let o = unsafe {
                    std::slice::from_raw_parts_mut(dst.get().add(tr.start * rows), tr.len() * rows)
                };
                let x = &qx[tr.start * arb..tr.end * arb];
                let r = quant::gemm(ty, cols, w, rows, x, tr.len(), o, rows);
                debug_assert!(r.is_ok(), "weight and activation sizes are fixed at load");
                if let Some(b) = bias {
                    for row in o.chunks_exact_mut(rows) {
                        for (v, bb) in row.iter_mut().zip(b) {
                            *v += bb;
                        }
                    }
                }
            });
            return;
        }
        pool.run_slots(SLOTS_PER_THREAD * pool.n_threads(), |i, ns| {
            let mut tile = [0f32; TOKEN_TILE];
            for r in split_range(rows, i, ns, ROW_ALIGN) {
                let wr = &w[r * rb..(r + 1) * rb];
                let b = bias.map_or(0.0, |b| b[r]);
                let mut t0 = 0;
                while t0 < n {
                    let m = (n - t0).min(TOKEN_TILE);
                    let xs: [&[u8]; TOKEN_TILE] = std::array::from_fn(|j| {
                        &qx[(t0 + j.min(m - 1)) * arb..(t0 + j.min(m - 1) + 1) * arb]
                    });
                    quant::vec_dot_multi(ty, cols, wr, &xs[..m], &mut tile[..m]);
                    for (j, v) in tile[..m].iter().enumerate() {
                        // SAFETY: slot i owns rows r of its range for every token.
                        unsafe { *dst.get().add((t0 + j) * rows + r) = v + b };
                    }
                    t0 += m;
                }
            }
        });
    }

    /// Panels `pr` of the packed product into `dst: [n, rows]` (its columns `8 * pr`).
    fn packed_part(
        &self,
        p: &PackedMatrix,
        pr: std::ops::Range<usize>,
        qx: &[u8],
        n: usize,
        dst: SyncPtr<f32>,
    ) {
        if pr.is_empty() {
            return;
        }
        let rows = self.rows;
        let (r0, r1) = (pr.start * PANEL_ROWS, pr.end * PANEL_ROWS);
        // SAFETY: the caller gives each panel range to one slot, which writes only columns
        // r0..r1 of every token row of an `[n, rows]` buffer.
        let o =
            unsafe { std::slice::from_raw_parts_mut(dst.get().add(r0), (n - 1) * rows + r1 - r0) };
        let r = p.gemm(pr, &qx[..n * self.act_row_bytes()], n, o, rows);
        debug_assert!(r.is_ok(), "weight and activation sizes are fixed at load");
        if let Some(b) = &self.bias {
            for t in 0..n {
                for (v, bb) in o[t * rows..t * rows + r1 - r0].iter_mut().zip(&b[r0..r1]) {
                    *v += bb;
                }
            }
        }
    }

    /// [`Linear::forward_quantized`] of several matrices with one input (q/k/v, gate/up) in one
    /// pool dispatch when all are packed: the slots split their panels end to end, so the
    /// small matrices cost no barrier of their own. `group[j].1: [n, rows_j]`.
    pub fn forward_quantized_group(
        pool: &ThreadPool,
        group: &mut [(&Linear, &mut [f32])],
        qx: &[u8],
        n: usize,
    ) {
        let packed: Option<Vec<&PackedMatrix>> =
            group.iter().map(|(l, _)| l.packed.as_deref()).collect();
        let Some(packed) = packed.filter(|_| n > 0) else {
            for (l, out) in group.iter_mut() {
                l.forward_quantized(pool, qx, n, out);
            }
            return;
        };
        // Each matrix's panels in chunks of PANEL_ALIGN, numbered across the group.
        let mut starts = Vec::with_capacity(group.len() + 1);
        starts.push(0);
        for p in &packed {
            starts.push(starts.last().unwrap() + p.panels().div_ceil(PANEL_ALIGN));
        }
        let total = *starts.last().unwrap();
        let parts: Vec<(&Linear, SyncPtr<f32>)> = group
            .iter_mut()
            .map(|(l, out)| {
                debug_assert!(out.len() >= n * l.rows);
                (*l, SyncPtr(out.as_mut_ptr()))
            })
            .collect();
        pool.run_slots(SLOTS_PER_THREAD * pool.n_threads(), |i, ns| {
            let u = split_range(total, i, ns, 1);
            for (j, &(l, dst)) in parts.iter().enumerate() {
                let (a, b) = (u.start.max(starts[j]), u.end.min(starts[j + 1]));
                if a < b {
                    let np = packed[j].panels();
                    let pr = ((a - starts[j]) * PANEL_ALIGN).min(np)
                        ..((b - starts[j]) * PANEL_ALIGN).min(np);
                    l.packed_part(packed[j], pr, qx, n, dst);
                }
            }
        });
    }

    /// Quantize and multiply: `out: [n, rows] = x: [n, cols] W^T + b`.
    pub fn forward(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        n: usize,
        qx: &mut Vec<u8>,
        out: &mut [f32],
    ) {
        self.quantize_input(pool, x, n, qx);
        self.forward_quantized(pool, qx, n, out);
    }
}

//! `apr quantize --allocate error`: where a mix gives some layers of one tensor kind a larger
//! type than the rest (Q4_K_M's `attn_v` and `ffn_down` in llama.cpp's `use_more_bits` layers,
//! Q3_K_M's first `attn_v` layers, ...), the larger type goes to the layers whose error it
//! lowers the most instead of to fixed layer positions. Each kind keeps llama.cpp's count of
//! each type, so the file has the same size and the same type counts; only which layers hold
//! the larger type changes.
//!
//! A tensor's error under a type is the weighted squared error of its encoding,
//! `E = sum_ij a_j (x_ij - q_ij)^2`, with `a_j` the imatrix's mean squared input of column `j`
//! (1 without an imatrix): for inputs with those mean squares and no correlation between
//! columns, the expected squared error the quantization adds to the layer's output. A tensor
//! already of the type is copied unchanged, so its error there is 0. With two types in a
//! kind, giving the `k` larger types to the `k` layers of largest `E(small) - E(large)`
//! minimizes the kind's summed error; a kind with more than two types, or layers of
//! different shapes, keeps llama.cpp's positions.

use std::collections::BTreeMap;

use apr_core::pool::ThreadPool;
use apr_core::quant::{dequantize, Weighting};
use apr_core::GgmlType;
use apr_formats::Gguf;

use crate::imatrix::Imatrix;
use crate::mix::TensorDesc;
use crate::quantize::{
    dequantize_tensor, encode_tensor, tensor_error, tensor_weights, QuantizeError,
};

/// Which layers of a kind get the kind's larger type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Allocation {
    /// llama.cpp's layer positions (`use_more_bits` and the like): llama-quantize's types.
    #[default]
    Position,
    /// The layers where the larger type lowers the weighted error the most.
    Error,
}

/// One kind whose larger type was allocated by error.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KindAllocation {
    /// The tensor name after `blk.N.` (`ffn_down.weight`).
    pub kind: String,
    pub larger: String,
    pub smaller: String,
    /// Layers holding the larger type under llama.cpp's positions, and now.
    pub position_layers: Vec<usize>,
    pub error_layers: Vec<usize>,
    /// The kind's summed error `sum E` under each allocation.
    pub position_error: f64,
    pub error_error: f64,
}

impl KindAllocation {
    /// Tensors whose type differs from llama.cpp's choice (each layer that gained the larger
    /// type took it from another).
    pub fn moved(&self) -> usize {
        self.error_layers
            .iter()
            .filter(|l| !self.position_layers.contains(l))
            .count()
            * 2
    }
}

/// `blk.N.rest` -> (N, rest).
fn layer_kind(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("blk.")?;
    let (n, kind) = rest.split_once('.')?;
    Some((n.parse().ok()?, kind))
}

/// Reassigns, kind by kind, the larger of the two types `types` gives the layers of that kind
/// (see the module docs). `types` is [`crate::mix::Plan::types`] for `descs`.
pub fn allocate_by_error(
    g: &Gguf,
    descs: &[TensorDesc],
    types: &mut [GgmlType],
    imatrix: Option<&Imatrix>,
    weighting: Weighting,
    pool: &ThreadPool,
    progress: &mut dyn FnMut(&KindAllocation),
) -> Result<Vec<KindAllocation>, QuantizeError> {
    let mut kinds: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for (i, d) in descs.iter().enumerate() {
        if let Some((layer, kind)) = layer_kind(&d.name) {
            kinds.entry(kind).or_default().push((layer, i));
        }
    }
    let mut out = Vec::new();
    for (kind, members) in kinds {
        let mut distinct: Vec<GgmlType> = Vec::new();
        for &(_, i) in &members {
            if !distinct.contains(&types[i]) {
                distinct.push(types[i]);
            }
        }
        let first = &descs[members[0].1];
        if distinct.len() != 2 || members.iter().any(|&(_, i)| descs[i].dims != first.dims) {
            continue;
        }
        let row_bytes = |t: GgmlType| t.bytes_for(first.dims[0] as usize).unwrap_or(0);
        let (larger, smaller) = if row_bytes(distinct[0]) >= row_bytes(distinct[1]) {
            (distinct[0], distinct[1])
        } else {
            (distinct[1], distinct[0])
        };
        // (layer, tensor index, E(smaller), E(larger)), in layer order.
        let mut errs = Vec::with_capacity(members.len());
        for &(layer, i) in &members {
            let d = &descs[i];
            let info = g
                .tensor_info(&d.name)
                .expect("the plan lists the file's own tensors");
            let x = dequantize_tensor(d, g.tensor_data(info))?;
            let w = match imatrix {
                Some(m) => tensor_weights(m, d)?,
                None => None,
            };
            let e_small = encoding_error(pool, d, &x, smaller, w.as_deref(), weighting)?;
            let e_large = encoding_error(pool, d, &x, larger, w.as_deref(), weighting)?;
            errs.push((layer, i, e_small, e_large));
        }
        errs.sort_by_key(|e| e.0);
        let k = members.iter().filter(|&&(_, i)| types[i] == larger).count();
        let position_layers: Vec<usize> = errs
            .iter()
            .filter(|e| types[e.1] == larger)
            .map(|e| e.0)
            .collect();
        let total = |larger_at: &dyn Fn(usize) -> bool| -> f64 {
            errs.iter()
                .map(|e| if larger_at(e.0) { e.3 } else { e.2 })
                .sum()
        };
        let position_error = total(&|l| position_layers.contains(&l));
        // Largest gain first; equal gains keep the lower layer (a stable sort).
        let mut by_gain: Vec<&(usize, usize, f64, f64)> = errs.iter().collect();
        by_gain.sort_by(|a, b| (b.2 - b.3).total_cmp(&(a.2 - a.3)));
        let mut error_layers: Vec<usize> = by_gain[..k].iter().map(|e| e.0).collect();
        error_layers.sort_unstable();
        let error_error = total(&|l| error_layers.contains(&l));
        for e in &errs {
            types[e.1] = if error_layers.contains(&e.0) {
                larger
            } else {
                smaller
            };
        }
        let a = KindAllocation {
            kind: kind.to_string(),
            larger: larger.name().to_string(),
            smaller: smaller.name().to_string(),
            position_layers,
            error_layers,
            position_error,
            error_error,
        };
        progress(&a);
        out.push(a);
    }
    Ok(out)
}

/// `sum_ij a_j (x_ij - q_ij)^2` of `x` (the tensor `d` as f32) encoded as `ty`; 0 when the
/// tensor already is of that type (it would be copied unchanged).
fn encoding_error(
    pool: &ThreadPool,
    d: &TensorDesc,
    x: &[f32],
    ty: GgmlType,
    weights: Option<&[f32]>,
    weighting: Weighting,
) -> Result<f64, QuantizeError> {
    if ty == d.dtype {
        return Ok(0.0);
    }
    let bytes = encode_tensor(pool, d, x, ty, weights, weighting)?;
    let mut q = vec![0f32; x.len()];
    dequantize(ty, &bytes, &mut q).map_err(|e| tensor_error(d, e.to_string()))?;
    let n_per_row = d.dims[0] as usize;
    let rows_per_mat = d.dims.get(1).copied().unwrap_or(1).max(1) as usize;
    let mut sum = 0f64;
    for (r, (xr, qr)) in x
        .chunks_exact(n_per_row)
        .zip(q.chunks_exact(n_per_row))
        .enumerate()
    {
        let mat = r / rows_per_mat;
        let a = weights.map(|w| &w[mat * n_per_row..(mat + 1) * n_per_row]);
        let mut row = 0f64;
        for (j, (&xv, &qv)) in xr.iter().zip(qr).enumerate() {
            let e = (xv - qv) as f64;
            row += a.map_or(1.0, |a| a[j] as f64) * e * e;
        }
        sum += row;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_kinds_are_parsed_from_block_names() {
        assert_eq!(
            layer_kind("blk.12.ffn_down.weight"),
            Some((12, "ffn_down.weight"))
        );
        assert_eq!(layer_kind("output.weight"), None);
        assert_eq!(layer_kind("blk.x.attn_v.weight"), None);
    }
}

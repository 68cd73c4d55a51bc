//! NuSLERP: spherical interpolation of two models (or of their task vectors against a base,
//! added back to it) with `t = w1 / (w0 + w1)` from their weights; over each tensor flattened
//! (`nuslerp_flatten`, the default), or per row, or per column (`nuslerp_row_wise`: vectors
//! along the first dimension). Nearly colinear vectors (|sin θ| < 1e-8) interpolate linearly.
//! Reference: mergekit merge_methods/nuslerp.py.

use super::{Inputs, MergeError, Method, Result};

/// Norms are clamped to at least this before normalizing.
const NORM_CLAMP: f64 = 1e-7;
/// |sin θ| below this counts as colinear.
const COLINEAR_EPS: f64 = 1e-8;

pub struct NuSlerp;

/// Coefficients of the two vectors from their squared norms and dot product.
fn coefficients(t: f64, aa: f64, bb: f64, ab: f64) -> (f64, f64) {
    let cos = (ab / (aa.sqrt().max(NORM_CLAMP) * bb.sqrt().max(NORM_CLAMP))).clamp(-1.0, 1.0);
    let theta = cos.acos();
    let s = theta.sin();
    if s.abs() < COLINEAR_EPS {
        return (1.0 - t, t);
    }
    (((1.0 - t) * theta).sin() / s, (t * theta).sin() / s)
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Flatten,
    Rows,
    Columns,
}

impl Method for NuSlerp {
    fn name(&self) -> &'static str {
        "nuslerp"
    }
    fn needs_base(&self) -> bool {
        false
    }
    fn takes_base(&self) -> bool {
        true
    }
    fn check_models(&self, n_models: usize, _: bool) -> Result<()> {
        if n_models != 2 {
            return Err(MergeError::Invalid {
                method: "nuslerp",
                msg: format!(
                    "takes exactly two models besides an optional base_model, got {n_models}"
                ),
            });
        }
        Ok(())
    }

    fn merge(&self, x: &Inputs<'_>, out: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()> {
        let w = x.weights("nuslerp")?;
        let t = if (w[0] + w[1]).abs() < 1e-6 {
            0.5
        } else {
            w[1] / (w[0] + w[1])
        };
        let mode = if x.params.nuslerp_flatten.unwrap_or(true) {
            Mode::Flatten
        } else if x.params.nuslerp_row_wise.unwrap_or(false) {
            Mode::Columns
        } else {
            Mode::Rows
        };
        let (_, cols) = x.shape();
        // The two vectors: the tensors, or their offsets from the base.
        let pair = |b: Option<&[f32]>, ms: &[Vec<f32>], e: usize| -> (f64, f64) {
            let o = b.map_or(0.0, |b| b[e] as f64);
            (ms[0][e] as f64 - o, ms[1][e] as f64 - o)
        };
        // Global or per-column statistics need a pass first: (aa, bb, ab) per group.
        let groups = match mode {
            Mode::Flatten => 1,
            Mode::Columns => cols,
            Mode::Rows => 0,
        };
        let mut stats = vec![(0f64, 0f64, 0f64); groups];
        if groups > 0 {
            x.for_each_chunk(|_, _, b, ms| {
                for e in 0..ms[0].len() {
                    let (u, v) = pair(b, ms, e);
                    let g = &mut stats[if mode == Mode::Columns { e % cols } else { 0 }];
                    g.0 += u * u;
                    g.1 += v * v;
                    g.2 += u * v;
                }
                Ok(())
            })?;
        }
        let coef: Vec<(f64, f64)> = stats
            .iter()
            .map(|&(aa, bb, ab)| coefficients(t, aa, bb, ab))
            .collect();
        let mut row = Vec::new();
        x.for_each_chunk(|_, n, b, ms| {
            row.clear();
            for r in 0..n {
                let c_row = (mode == Mode::Rows).then(|| {
                    let (mut aa, mut bb, mut ab) = (0f64, 0f64, 0f64);
                    for e in r * cols..(r + 1) * cols {
                        let (u, v) = pair(b, ms, e);
                        aa += u * u;
                        bb += v * v;
                        ab += u * v;
                    }
                    coefficients(t, aa, bb, ab)
                });
                for e in r * cols..(r + 1) * cols {
                    let (ca, cb) = c_row
                        .unwrap_or_else(|| coef[if mode == Mode::Columns { e % cols } else { 0 }]);
                    let (u, v) = pair(b, ms, e);
                    let o = b.map_or(0.0, |b| b[e] as f64);
                    row.push((o + ca * u + cb * v) as f32);
                }
            }
            out(&row)
        })
    }
}

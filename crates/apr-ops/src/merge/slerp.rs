//! SLERP between the base model and one other, over each tensor flattened: the angle from the
//! two tensors' normalized dot product, the result `sin((1-t)θ)/sin θ · a + sin(tθ)/sin θ · b`
//! of the unnormalized tensors, falling back to linear interpolation when they are nearly
//! colinear (|cos θ| > 0.9995). t = 0 gives the base, t = 1 the other model.
//! Reference: mergekit merge_methods/slerp.py.

use super::{Inputs, MergeError, Method, Result};

/// Colinearity cut-off (mergekit's DOT_THRESHOLD).
const DOT_THRESHOLD: f64 = 0.9995;
/// Norms at or below this are not normalized.
const NORM_EPS: f64 = 1e-8;

pub struct Slerp;

/// The two coefficients of `a` and `b` for interpolation factor `t`, from the tensors'
/// squared norms and dot product.
pub(crate) fn slerp_coefficients(t: f64, aa: f64, bb: f64, ab: f64) -> (f64, f64) {
    let na = if aa.sqrt() > NORM_EPS { aa.sqrt() } else { 1.0 };
    let nb = if bb.sqrt() > NORM_EPS { bb.sqrt() } else { 1.0 };
    let dot = ab / (na * nb);
    if dot.abs() > DOT_THRESHOLD {
        return (1.0 - t, t);
    }
    let theta = dot.acos();
    let s = theta.sin();
    (((1.0 - t) * theta).sin() / s, (t * theta).sin() / s)
}

impl Method for Slerp {
    fn name(&self) -> &'static str {
        "slerp"
    }
    fn needs_base(&self) -> bool {
        true
    }
    fn check_models(&self, n_models: usize, has_base: bool) -> Result<()> {
        if !has_base || n_models != 1 {
            return Err(MergeError::Invalid {
                method: "slerp",
                msg: format!(
                    "takes exactly two models, the base_model and one other (got {} besides {})",
                    n_models,
                    if has_base { "the base" } else { "no base" }
                ),
            });
        }
        Ok(())
    }

    fn merge(&self, x: &Inputs<'_>, out: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()> {
        let t = x.params.t.ok_or_else(|| MergeError::Invalid {
            method: "slerp",
            msg: format!("no t for {}", x.name),
        })?;
        let (mut aa, mut bb, mut ab) = (0f64, 0f64, 0f64);
        x.for_each_chunk(|_, _, a, ms| {
            for (&u, &v) in a.expect("base").iter().zip(&ms[0]) {
                let (u, v) = (u as f64, v as f64);
                aa += u * u;
                bb += v * v;
                ab += u * v;
            }
            Ok(())
        })?;
        let (ca, cb) = slerp_coefficients(t, aa, bb, ab);
        let mut row = Vec::new();
        x.for_each_chunk(|_, _, a, ms| {
            row.clear();
            row.extend(
                a.expect("base")
                    .iter()
                    .zip(&ms[0])
                    .map(|(&u, &v)| (ca * u as f64 + cb * v as f64) as f32),
            );
            out(&row)
        })
    }
}

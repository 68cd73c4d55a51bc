//! Model Stock: the average of two or more fine-tuned models pulled toward the base by the
//! angle between their task vectors: `t = N cos θ / (1 + (N - 1) cos θ)` with cos θ the mean
//! pairwise cosine of the offsets from the base, over the tensor flattened or per row
//! (`filter_wise`); result `t · mean(models) + (1 - t) · base`.
//! Reference: https://arxiv.org/abs/2403.19522, mergekit merge_methods/model_stock.py.

use super::{Inputs, MergeError, Method, Result};

/// Norm products are clamped to at least this (mergekit's).
const NORM_CLAMP: f64 = 1e-6;

pub struct ModelStock;

/// `t` from the offsets' pairwise dot products and squared norms (`dots[i][j]`, i < j).
fn ratio(n: usize, dots: &[Vec<f64>], norms2: &[f64]) -> Result<f64> {
    let (mut sum, mut pairs) = (0f64, 0usize);
    for i in 0..n {
        for j in i + 1..n {
            let np = (norms2[i].sqrt() * norms2[j].sqrt()).max(NORM_CLAMP);
            sum += (dots[i][j] / np).clamp(-1.0, 1.0);
            pairs += 1;
        }
    }
    let cos = sum / pairs as f64;
    let den = 1.0 + (n as f64 - 1.0) * cos;
    if den.abs() < 1e-12 {
        return Err(MergeError::Invalid {
            method: "model_stock",
            msg: format!(
                "the task vectors point apart (mean cosine {cos}): the ratio is undefined"
            ),
        });
    }
    Ok(n as f64 * cos / den)
}

impl Method for ModelStock {
    fn name(&self) -> &'static str {
        "model_stock"
    }
    fn needs_base(&self) -> bool {
        true
    }
    fn check_models(&self, n_models: usize, has_base: bool) -> Result<()> {
        if !has_base || n_models < 2 {
            return Err(MergeError::Invalid {
                method: "model_stock",
                msg: format!("needs a base_model and at least two other models, got {n_models}"),
            });
        }
        Ok(())
    }

    fn merge(&self, x: &Inputs<'_>, out: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()> {
        let n = x.models.len();
        let (_, cols) = x.shape();
        let filter_wise = x.params.filter_wise.unwrap_or(false);
        // Offsets' statistics over a range of elements of one chunk.
        let stats = |b: &[f32],
                     ms: &[Vec<f32>],
                     range: std::ops::Range<usize>,
                     dots: &mut [Vec<f64>],
                     norms2: &mut [f64]| {
            for e in range {
                for i in 0..n {
                    let oi = ms[i][e] as f64 - b[e] as f64;
                    norms2[i] += oi * oi;
                    for j in i + 1..n {
                        dots[i][j] += oi * (ms[j][e] as f64 - b[e] as f64);
                    }
                }
            }
        };
        let fresh = || (vec![vec![0f64; n]; n], vec![0f64; n]);
        let mut global_t = None;
        if !filter_wise {
            let (mut dots, mut norms2) = fresh();
            x.for_each_chunk(|_, _, b, ms| {
                let b = b.expect("base");
                stats(b, ms, 0..b.len(), &mut dots, &mut norms2);
                Ok(())
            })?;
            global_t = Some(ratio(n, &dots, &norms2)?);
        }
        let mut row = Vec::new();
        x.for_each_chunk(|_, rows, b, ms| {
            let b = b.expect("base");
            row.clear();
            for r in 0..rows {
                let range = r * cols..(r + 1) * cols;
                let t = match global_t {
                    Some(t) => t,
                    None => {
                        let (mut dots, mut norms2) = fresh();
                        stats(b, ms, range.clone(), &mut dots, &mut norms2);
                        ratio(n, &dots, &norms2)?
                    }
                };
                for e in range {
                    let avg = ms.iter().map(|m| m[e] as f64).sum::<f64>() / n as f64;
                    row.push((t * avg + (1.0 - t) * b[e] as f64) as f32);
                }
            }
            out(&row)
        })
    }
}

//! Linear: the weighted mean of the models' tensors (`normalize`, on by default, divides by
//! the sum of the weights). Reference: mergekit merge_methods/linear.py, model soups
//! (https://arxiv.org/abs/2203.05482).

use super::{Inputs, MergeError, Method, Result};

pub struct Linear;

impl Method for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }
    fn needs_base(&self) -> bool {
        false
    }
    fn check_models(&self, n_models: usize, _: bool) -> Result<()> {
        if n_models == 0 {
            return Err(MergeError::Invalid {
                method: "linear",
                msg: "needs at least one model".into(),
            });
        }
        Ok(())
    }

    fn merge(&self, x: &Inputs<'_>, out: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()> {
        let w = x.weights("linear")?;
        let normalize = x.params.normalize.unwrap_or(true);
        let total: f64 = w.iter().sum();
        if normalize && total.abs() < 1e-12 {
            return Err(MergeError::Invalid {
                method: "linear",
                msg: format!("the weights of {} sum to 0", x.name),
            });
        }
        let mut row = Vec::new();
        x.for_each_chunk(|_, _, _, ms| {
            row.clear();
            for e in 0..ms[0].len() {
                let mut s: f64 = ms.iter().zip(&w).map(|(m, &wi)| wi * m[e] as f64).sum();
                if normalize {
                    s /= total;
                }
                row.push(s as f32);
            }
            out(&row)
        })
    }
}

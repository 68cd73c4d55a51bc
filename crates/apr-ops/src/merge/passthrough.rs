//! Passthrough: the one input tensor unchanged (layer slices and frankenmerges choose which
//! model's layer lands where; this method only copies). Reference: mergekit passthrough.py.

use super::{Inputs, MergeError, Method, Result};

pub struct Passthrough;

impl Method for Passthrough {
    fn name(&self) -> &'static str {
        "passthrough"
    }
    fn needs_base(&self) -> bool {
        false
    }
    fn check_models(&self, n_models: usize, has_base: bool) -> Result<()> {
        if n_models + has_base as usize != 1 {
            return Err(MergeError::Invalid {
                method: "passthrough",
                msg: format!(
                    "takes exactly one model per tensor, got {}",
                    n_models + has_base as usize
                ),
            });
        }
        Ok(())
    }

    fn merge(&self, x: &Inputs<'_>, out: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()> {
        x.for_each_chunk(|_, _, b, ms| out(b.unwrap_or_else(|| &ms[0])))
    }
}

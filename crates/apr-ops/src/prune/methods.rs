//! The weight-pruning methods, each a function from one weight matrix (and, for the
//! calibrated ones, its layer's input statistics) to the same matrix with weights zeroed.
//! - magnitude: the lowest `|W|` of the whole matrix (the baseline of the Wanda paper).
//! - wanda: the lowest `|W_ij| * ||X_j||_2` of each output row (Sun et al. 2023, "A Simple
//!   and Effective Pruning Approach for Large Language Models").
//! - sparsegpt: [`super::sparsegpt`].

use super::mask::{select, Group};
use super::{PruneError, Result, WeightJob};

/// `|W|`, the lowest of the whole matrix zeroed.
pub fn magnitude(w: &mut [f32], cols: usize, job: &WeightJob) -> Result<()> {
    let scores: Vec<f32> = w.iter().map(|v| v.abs()).collect();
    let mask = select(&scores, cols, Group::Tensor, job.sparsity, job.pattern)?;
    apply(w, &mask);
    Ok(())
}

/// `|W_ij| * sqrt(sum_t x_tj^2)`, the lowest of each output row zeroed.
pub fn wanda(w: &mut [f32], cols: usize, job: &WeightJob) -> Result<()> {
    let stats = job
        .stats
        .ok_or_else(|| PruneError::Invalid("wanda needs calibration statistics".to_string()))?;
    let e = stats.entries.get(job.weight).ok_or_else(|| {
        PruneError::Invalid(format!("no calibration statistics for {}", job.weight))
    })?;
    if e.sum2.len() != cols {
        return Err(PruneError::Invalid(format!(
            "{}: statistics of {} inputs for rows of {cols}",
            job.weight,
            e.sum2.len()
        )));
    }
    let norms: Vec<f32> = e.sum2.iter().map(|&s| s.sqrt() as f32).collect();
    let scores: Vec<f32> = w
        .chunks_exact(cols)
        .flat_map(|row| row.iter().zip(&norms).map(|(v, n)| v.abs() * n))
        .collect();
    let mask = select(&scores, cols, Group::Row, job.sparsity, job.pattern)?;
    apply(w, &mask);
    Ok(())
}

/// Zeroes the masked weights.
pub fn apply(w: &mut [f32], mask: &[bool]) {
    for (v, &m) in w.iter_mut().zip(mask) {
        if m {
            *v = 0.0;
        }
    }
}

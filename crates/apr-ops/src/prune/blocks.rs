//! Dropping whole decoder blocks (Gromov et al. 2024, "The Unreasonable Ineffectiveness of
//! the Deeper Layers"): the `n` consecutive blocks whose input and output hidden states are
//! closest, by the angular distance `arccos(cos(x_l, x_{l+n})) / pi` averaged over every
//! calibration token (the paper uses the last token; all tokens is the same estimate with less
//! noise), are removed and the later blocks renumbered.

use std::collections::BTreeMap;

use apr_formats::{DerivedTensor, Gguf, Value};

use super::{PruneError, Result};

/// `arccos(a.b / (|a||b|)) / pi`, in [0, 1]; 0 for a zero vector.
pub fn angular_distance(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    (ab / (aa.sqrt() * bb.sqrt())).clamp(-1.0, 1.0).acos() / std::f64::consts::PI
}

/// Adds one sample's distances: `states[l]` is the input of block `l` (`states[L]` the last
/// block's output), each `[tokens, d]`; `sums[l]` gathers the distance between `states[l]` and
/// `states[l + n]` of every token. Returns the tokens added.
pub fn accumulate(states: &[Vec<f32>], d: usize, n: usize, sums: &mut [f64]) -> usize {
    let tokens = states.first().map_or(0, |s| s.len() / d.max(1));
    for (l, sum) in sums.iter_mut().enumerate() {
        let (a, b) = (&states[l], &states[l + n]);
        for t in 0..tokens {
            *sum += angular_distance(&a[t * d..(t + 1) * d], &b[t * d..(t + 1) * d]);
        }
    }
    tokens
}

/// The start of the closest span (the lowest mean distance; the earlier one on a tie).
pub fn closest(dist: &[f64]) -> usize {
    let mut best = 0;
    for (i, &d) in dist.iter().enumerate() {
        if d < dist[best] {
            best = i;
        }
    }
    best
}

/// The image of `src` without blocks `start .. start + n`: later blocks renumbered, the block
/// count lowered.
pub fn without_blocks(
    src: &Gguf,
    start: usize,
    n: usize,
) -> Result<(BTreeMap<String, Value>, Vec<DerivedTensor>)> {
    let arch = src
        .architecture()
        .map_err(|e| PruneError::Invalid(e.to_string()))?
        .to_string();
    let key = format!("{arch}.block_count");
    let n_layer = src
        .get_u64(&key)
        .map_err(|e| PruneError::Invalid(e.to_string()))? as usize;
    if n == 0 || n >= n_layer || start + n > n_layer {
        return Err(PruneError::Invalid(format!(
            "cannot drop blocks {start}..{} of a model of {n_layer}",
            start + n
        )));
    }
    let mut meta = src.metadata.clone();
    meta.insert(key, Value::U32((n_layer - n) as u32));
    let mut tensors = Vec::with_capacity(src.tensors.len());
    for t in &src.tensors {
        let name = match block_of(&t.name) {
            Some((b, _)) if (start..start + n).contains(&b) => continue,
            Some((b, rest)) if b >= start + n => format!("blk.{}.{rest}", b - n),
            _ => t.name.clone(),
        };
        tensors.push(DerivedTensor::Keep {
            from: t.name.clone(),
            name,
        });
    }
    Ok((meta, tensors))
}

/// `blk.N.rest` as `(N, rest)`.
fn block_of(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("blk.")?;
    let (n, rest) = rest.split_once('.')?;
    Some((n.parse().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angular_distance_of_known_angles() {
        assert!(angular_distance(&[1.0, 0.0], &[2.0, 0.0]).abs() < 1e-12);
        assert!((angular_distance(&[1.0, 0.0], &[0.0, 3.0]) - 0.5).abs() < 1e-12);
        assert!((angular_distance(&[1.0, 0.0], &[-1.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!((angular_distance(&[1.0, 0.0], &[1.0, 1.0]) - 0.25).abs() < 1e-12);
        assert_eq!(angular_distance(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }

    #[test]
    fn accumulates_per_span_and_picks_the_closest() {
        // Four states of one token, d = 2: 0 deg, 90 deg, 90 deg, 180 deg.
        let states = vec![
            vec![1.0, 0.0],
            vec![0.0, 1.0],
            vec![0.0, 2.0],
            vec![-1.0, 0.0],
        ];
        let mut sums = vec![0.0; 3];
        assert_eq!(accumulate(&states, 2, 1, &mut sums), 1);
        assert!((sums[0] - 0.5).abs() < 1e-12 && sums[1].abs() < 1e-12);
        assert!((sums[2] - 0.5).abs() < 1e-12);
        assert_eq!(closest(&sums), 1);
        let mut sums = vec![0.0; 2];
        accumulate(&states, 2, 2, &mut sums);
        assert!((sums[0] - 0.5).abs() < 1e-12 && (sums[1] - 0.5).abs() < 1e-12);
        assert_eq!(closest(&sums), 0);
    }

    #[test]
    fn block_names() {
        assert_eq!(
            block_of("blk.12.attn_q.weight"),
            Some((12, "attn_q.weight"))
        );
        assert_eq!(block_of("output.weight"), None);
        assert_eq!(block_of("blk.x.attn_q.weight"), None);
    }
}

//! Activation statistics for importance matrices: per input column of every linear layer, the
//! sum over tokens of the squared input and the number of tokens (llama-imatrix's statistic,
//! from which quantizers weight their rounding error). Collected during ordinary forward passes
//! when [`crate::Scratch::stats`] is set.

use std::collections::{BTreeMap, BTreeSet};

/// Sums of one linear layer's inputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActEntry {
    /// `sum2[j]`: sum over the tokens seen of `x[j]^2` (f64: millions of tokens add up).
    pub sum2: Vec<f64>,
    /// Tokens seen.
    pub count: u64,
}

/// Statistics of every linear layer, by weight tensor name (`blk.0.attn_q.weight`).
#[derive(Debug, Clone, Default)]
pub struct ActivationStats {
    pub entries: BTreeMap<String, ActEntry>,
    /// Also collect the LM head's input (llama-imatrix leaves `output.weight` out unless asked).
    pub include_output: bool,
    /// Weights whose input rows are also kept whole, in order (SparseGPT builds its Hessian
    /// from them), in [`ActivationStats::inputs`].
    pub keep: BTreeSet<String>,
    /// The kept input rows of each weight in `keep`, `[tokens, cols]`.
    pub inputs: BTreeMap<String, Vec<f32>>,
}

impl ActivationStats {
    pub fn new(include_output: bool) -> Self {
        ActivationStats {
            include_output,
            ..Default::default()
        }
    }

    /// Adds the `n` rows of `x: [n, cols]`, the input of the weight `name`.
    pub fn observe(&mut self, name: &str, x: &[f32], n: usize, cols: usize) {
        let e = self.entries.entry(name.to_string()).or_default();
        if e.sum2.len() != cols {
            e.sum2 = vec![0.0; cols];
            e.count = 0;
        }
        for row in x[..n * cols].chunks_exact(cols) {
            for (s, &v) in e.sum2.iter_mut().zip(row) {
                *s += (v as f64) * (v as f64);
            }
        }
        e.count += n as u64;
        if self.keep.contains(name) {
            let kept = self.inputs.entry(name.to_string()).or_default();
            kept.extend_from_slice(&x[..n * cols]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_squares_per_column_over_rows_and_calls() {
        let mut s = ActivationStats::new(false);
        s.observe("w", &[1.0, -2.0, 3.0, 0.5], 2, 2);
        s.observe("w", &[2.0, 0.0], 1, 2);
        let e = &s.entries["w"];
        assert_eq!(e.count, 3);
        assert_eq!(e.sum2, vec![1.0 + 9.0 + 4.0, 4.0 + 0.25]);
        assert!(s.inputs.is_empty());
    }

    #[test]
    fn keeps_the_rows_of_the_weights_asked_for() {
        let mut s = ActivationStats::new(false);
        s.keep.insert("a".into());
        s.observe("a", &[1.0, 2.0, 3.0, 4.0], 2, 2);
        s.observe("b", &[5.0, 6.0], 1, 2);
        s.observe("a", &[7.0, 8.0, 9.0, 9.0], 1, 2);
        assert_eq!(s.inputs["a"], vec![1.0, 2.0, 3.0, 4.0, 7.0, 8.0]);
        assert!(!s.inputs.contains_key("b"));
    }
}

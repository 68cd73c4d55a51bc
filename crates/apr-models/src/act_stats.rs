//! Activation statistics for importance matrices: per input column of every linear layer, the
//! sum over tokens of the squared input and the number of tokens (llama-imatrix's statistic,
//! from which quantizers weight their rounding error). Collected during ordinary forward passes
//! when [`crate::Scratch::stats`] is set.

use std::collections::BTreeMap;

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
}

impl ActivationStats {
    pub fn new(include_output: bool) -> Self {
        ActivationStats {
            entries: BTreeMap::new(),
            include_output,
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
    }
}

//! Sparsification of task vectors, as mergekit's sparsify.py defines it, over tensors read in
//! row chunks: magnitude (keep the largest |x|), magnitude with outliers (drop the largest
//! `gamma` share too), random (DARE: keep each value with probability `density`) and DELLA's
//! MAGPRUNE (keep probability rising with the value's magnitude rank in its row).
//! Magnitude ranks are exact: a two-pass radix selection over the f32 bit patterns (|x| orders
//! like its bits), ties broken by position, so no tensor has to be held or sorted whole.

/// Buckets of one radix pass (16 of the 32 bits).
const RADIX: usize = 1 << 16;

/// The `target`-th largest |x| of a stream, found in two passes: [`RankSelect::count_hi`] over
/// every value, [`RankSelect::finish_hi`], [`RankSelect::count_lo`] over every value again,
/// then [`RankSelect::threshold`].
pub struct RankSelect {
    target: u64,
    hi: Vec<u64>,
    lo: Vec<u64>,
    bucket: u32,
    /// Values in buckets above `bucket`.
    above: u64,
}

/// Membership in the top `target` by magnitude: values whose bits exceed `bits`, and the
/// first `equal` values (in stream order) whose bits equal it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub bits: u32,
    pub equal: u64,
}

fn mag_bits(v: f32) -> u32 {
    v.to_bits() & 0x7fff_ffff
}

impl RankSelect {
    /// Selects the `target` largest magnitudes (`target` >= 1).
    pub fn new(target: u64) -> Self {
        RankSelect {
            target,
            hi: vec![0; RADIX],
            lo: Vec::new(),
            bucket: 0,
            above: 0,
        }
    }

    pub fn count_hi(&mut self, v: &[f32]) {
        for &x in v {
            self.hi[(mag_bits(x) >> 16) as usize] += 1;
        }
    }

    pub fn finish_hi(&mut self) {
        let mut above = 0u64;
        for b in (0..RADIX).rev() {
            if above + self.hi[b] >= self.target {
                self.bucket = b as u32;
                self.above = above;
                break;
            }
            above += self.hi[b];
        }
        self.hi = Vec::new();
        self.lo = vec![0; RADIX];
    }

    pub fn count_lo(&mut self, v: &[f32]) {
        for &x in v {
            let m = mag_bits(x);
            if m >> 16 == self.bucket {
                self.lo[(m & 0xffff) as usize] += 1;
            }
        }
    }

    pub fn threshold(&self) -> Threshold {
        let mut above = self.above;
        for l in (0..RADIX).rev() {
            let c = self.lo[l];
            if above + c >= self.target {
                return Threshold {
                    bits: (self.bucket << 16) | l as u32,
                    equal: self.target - above,
                };
            }
            above += c;
        }
        // Fewer values than the target: every one is in.
        Threshold {
            bits: 0,
            equal: u64::MAX,
        }
    }
}

/// Walks a stream in order, answering whether each value is in the top set of a [`Threshold`].
#[derive(Debug, Clone, Copy)]
pub struct Keeper {
    t: Threshold,
    equal_seen: u64,
}

impl Keeper {
    pub fn new(t: Threshold) -> Self {
        Keeper { t, equal_seen: 0 }
    }

    pub fn keep(&mut self, v: f32) -> bool {
        let m = mag_bits(v);
        if m > self.t.bits {
            return true;
        }
        if m == self.t.bits && self.equal_seen < self.t.equal {
            self.equal_seen += 1;
            return true;
        }
        false
    }
}

/// A uniform draw in [0, 1) for element `index` of the stream `seed` (SplitMix64): masks are
/// the same however the tensor is chunked and on every pass.
pub fn uniform(seed: u64, index: u64) -> f64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// DELLA's keep probabilities of one row: `density - epsilon` for its smallest |x| rising
/// linearly with the magnitude rank to `density + epsilon` for its largest (ties by position).
pub fn magprune_probs(row: &[f32], density: f64, epsilon: f64, out: &mut Vec<f64>) {
    let n = row.len();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| row[a].abs().total_cmp(&row[b].abs()).then(a.cmp(&b)));
    out.clear();
    out.resize(n, 0.0);
    for (rank, &i) in idx.iter().enumerate() {
        let norm = if n > 1 {
            rank as f64 / (n - 1) as f64
        } else {
            0.0
        };
        out[i] = (density - epsilon) + norm * 2.0 * epsilon;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_select_finds_the_kth_magnitude_across_chunks_and_ties() {
        let v = [0.5f32, -3.0, 2.0, -2.0, 0.0, 7.0, 2.0, -0.25];
        // Sorted magnitudes: 7, 3, 2, 2, 2, 0.5, 0.25, 0.
        for (k, kept) in [
            (1, vec![5]),
            (2, vec![1, 5]),
            (3, vec![1, 2, 5]),
            (4, vec![1, 2, 3, 5]),
            (5, vec![1, 2, 3, 5, 6]),
            (8, vec![0, 1, 2, 3, 4, 5, 6, 7]),
            (9, vec![0, 1, 2, 3, 4, 5, 6, 7]),
        ] {
            let mut s = RankSelect::new(k);
            for c in v.chunks(3) {
                s.count_hi(c);
            }
            s.finish_hi();
            for c in v.chunks(3) {
                s.count_lo(c);
            }
            let mut keeper = Keeper::new(s.threshold());
            let got: Vec<usize> = (0..v.len()).filter(|&i| keeper.keep(v[i])).collect();
            assert_eq!(got, kept, "k = {k}");
        }
    }

    #[test]
    fn uniform_draws_are_reproducible_and_spread() {
        assert_eq!(uniform(7, 123), uniform(7, 123));
        assert_ne!(uniform(7, 123), uniform(8, 123));
        let n = 100_000;
        let kept = (0..n).filter(|&i| uniform(42, i) < 0.3).count();
        assert!((kept as f64 / n as f64 - 0.3).abs() < 0.01, "{kept}");
    }

    #[test]
    fn magprune_probabilities_follow_the_rank() {
        let mut p = Vec::new();
        magprune_probs(&[0.1, -5.0, 1.0], 0.5, 0.1, &mut p);
        for (got, want) in p.iter().zip([0.4, 0.6, 0.5]) {
            assert!((got - want).abs() < 1e-12, "{p:?}");
        }
    }
}

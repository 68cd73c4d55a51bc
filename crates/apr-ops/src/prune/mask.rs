//! Which weights to zero, given a score per weight (smaller: less important): the `k` lowest
//! of each comparison group. Groups are a whole tensor (magnitude pruning), one output row
//! (Wanda), or `m` consecutive inputs of one row (the N:M patterns). Ties fall to the lower
//! index, so the mask does not depend on the order a sort happens to leave equal scores in.

use super::{Pattern, PruneError, Result};

/// The group a score is ranked within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// All `rows x cols` scores together.
    Tensor,
    /// Each row of `cols` scores.
    Row,
}

/// `mask[i]` is true where weight `i` of `scores: [rows, cols]` is pruned: the lowest
/// `floor(n * sparsity)` of each group (`n` the group size), or with an N:M pattern the lowest
/// `n` of every `m` consecutive scores of a row (then `group` and `sparsity` do not apply).
pub fn select(
    scores: &[f32],
    cols: usize,
    group: Group,
    sparsity: f64,
    pattern: Option<Pattern>,
) -> Result<Vec<bool>> {
    let mut mask = vec![false; scores.len()];
    if cols == 0 || scores.is_empty() {
        return Ok(mask);
    }
    if let Some(p) = pattern {
        if !cols.is_multiple_of(p.m) {
            return Err(PruneError::Invalid(format!(
                "rows of {cols} are not whole groups of {} for the {}:{} pattern",
                p.m, p.n, p.m
            )));
        }
        for (s, m) in scores.chunks_exact(p.m).zip(mask.chunks_exact_mut(p.m)) {
            lowest(s, p.n, m);
        }
        return Ok(mask);
    }
    match group {
        Group::Tensor => {
            let k = (scores.len() as f64 * sparsity).floor() as usize;
            lowest(scores, k, &mut mask);
        }
        Group::Row => {
            let k = (cols as f64 * sparsity).floor() as usize;
            for (s, m) in scores.chunks_exact(cols).zip(mask.chunks_exact_mut(cols)) {
                lowest(s, k, m);
            }
        }
    }
    Ok(mask)
}

/// Marks the `k` lowest of `s` in `mask` (ties: the lower index first; NaN ranks highest).
pub fn lowest(s: &[f32], k: usize, mask: &mut [bool]) {
    let k = k.min(s.len());
    if k == 0 {
        return;
    }
    let key = |i: u32| {
        let v = s[i as usize];
        (if v.is_nan() { f32::INFINITY } else { v }, i)
    };
    let mut idx: Vec<u32> = (0..s.len() as u32).collect();
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, |&a, &b| key(a).partial_cmp(&key(b)).expect("no NaN"));
    }
    for &i in &idx[..k] {
        mask[i as usize] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_row_and_pattern_groups() {
        // [2, 4]
        let s = [4.0, 1.0, 3.0, 8.0, 2.0, 7.0, 6.0, 5.0];
        let m = select(&s, 4, Group::Tensor, 0.5, None).unwrap();
        // The four lowest overall: 1, 2, 3, 4.
        assert_eq!(m, [true, true, true, false, true, false, false, false]);
        let m = select(&s, 4, Group::Row, 0.5, None).unwrap();
        assert_eq!(m, [false, true, true, false, true, false, false, true]);
        let p = Pattern { n: 1, m: 2 };
        let m = select(&s, 4, Group::Row, 0.0, Some(p)).unwrap();
        assert_eq!(m, [false, true, true, false, true, false, false, true]);
        let p = Pattern { n: 2, m: 4 };
        let m = select(&s, 4, Group::Tensor, 0.0, Some(p)).unwrap();
        assert_eq!(m, [false, true, true, false, true, false, false, true]);
        assert!(select(&s, 4, Group::Row, 0.0, Some(Pattern { n: 1, m: 3 })).is_err());
    }

    #[test]
    fn ties_fall_to_the_lower_index_and_sparsity_floors() {
        let s = [1.0, 1.0, 1.0, 1.0, 1.0];
        let m = select(&s, 5, Group::Row, 0.5, None).unwrap();
        assert_eq!(m, [true, true, false, false, false]);
        let m = select(&s, 5, Group::Row, 0.0, None).unwrap();
        assert!(m.iter().all(|&x| !x));
        let m = select(&s, 5, Group::Row, 1.0, None).unwrap();
        assert!(m.iter().all(|&x| x));
    }
}

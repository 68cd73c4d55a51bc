//! Hand-computed results on small matrices for each weight method, and the checks of the
//! options.

use apr_models::ActivationStats;

use super::methods::{magnitude, wanda};
use super::sparsegpt::{hessian_inverse, prune as sparsegpt};
use super::*;

fn job<'a>(
    stats: Option<&'a ActivationStats>,
    sparsity: f64,
    pattern: Option<Pattern>,
) -> WeightJob<'a> {
    WeightJob {
        weight: "w",
        stats,
        sparsity,
        pattern,
        threads: 2,
    }
}

/// Statistics whose column sums of squares are `sum2`.
fn stats_with(sum2: &[f64]) -> ActivationStats {
    let mut s = ActivationStats::new(false);
    let x: Vec<f32> = sum2.iter().map(|&v| v.sqrt() as f32).collect();
    s.observe("w", &x, 1, x.len());
    s
}

#[test]
fn magnitude_zeroes_the_smallest_of_the_whole_matrix() {
    // [2, 3]: the three smallest |w| are 0.1, -0.2, 0.3, two of them in row 0.
    let mut w = vec![0.1, -0.2, 5.0, 0.3, -4.0, 6.0];
    magnitude(&mut w, 3, &job(None, 0.5, None)).unwrap();
    assert_eq!(w, vec![0.0, 0.0, 5.0, 0.0, -4.0, 6.0]);
}

#[test]
fn wanda_weighs_by_the_input_norm_per_row() {
    // Input norms 10, 1, 1: |w| x norm = row 0 [1.5, 1, 3], row 1 [30, 0.5, 4].
    let st = stats_with(&[100.0, 1.0, 1.0]);
    let mut w = vec![0.15, 1.0, -3.0, 3.0, 0.5, 4.0];
    wanda(&mut w, 3, &job(Some(&st), 0.34, None)).unwrap();
    // floor(3 x 0.34) = 1 per row: row 0 drops its second weight (score 1) and keeps the
    // smaller 0.15, whose input is ten times as large; row 1 drops its second (score 0.5).
    assert_eq!(w, vec![0.15, 0.0, -3.0, 3.0, 0.0, 4.0]);
    // Magnitude on the same matrix and sparsity drops the two smallest |w| overall.
    let mut m = vec![0.15, 1.0, -3.0, 3.0, 0.5, 4.0];
    magnitude(&mut m, 3, &job(None, 0.34, None)).unwrap();
    assert_eq!(m, vec![0.0, 1.0, -3.0, 3.0, 0.0, 4.0]);
}

#[test]
fn wanda_two_four_keeps_two_of_every_four() {
    let st = stats_with(&[1.0, 4.0, 1.0, 9.0, 1.0, 1.0, 1.0, 1.0]);
    let mut w = vec![1.0, 1.0, 1.5, 1.0, -1.0, 2.0, -3.0, 0.5];
    let p = Pattern::parse("2:4").unwrap();
    wanda(&mut w, 8, &job(Some(&st), 0.5, Some(p))).unwrap();
    // Group 0 scores [1, 2, 1.5, 3]: drop 0 and 2. Group 1 [1, 2, 3, 0.5]: drop 3 and 0.
    assert_eq!(w, vec![0.0, 1.0, 0.0, 1.0, 0.0, 2.0, -3.0, 0.0]);
}

/// `x: [n, cols]` with correlated columns, deterministic.
fn inputs(n: usize, cols: usize) -> Vec<f32> {
    let mut s = 0x2545f491u32;
    let mut rnd = || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s as f32 / u32::MAX as f32) - 0.5
    };
    let mut x = vec![0f32; n * cols];
    for t in 0..n {
        let common = rnd();
        for j in 0..cols {
            x[t * cols + j] = rnd() + 0.8 * common * (j % 3) as f32;
        }
    }
    x
}

#[test]
fn sparsegpt_two_columns_is_the_obs_update() {
    let x = inputs(64, 2);
    // H = 2/n X^T X, damped by 1% of its mean diagonal.
    let n = 64.0;
    let (mut h11, mut h12, mut h22) = (0f64, 0f64, 0f64);
    for t in 0..64 {
        let (a, b) = (x[2 * t] as f64, x[2 * t + 1] as f64);
        h11 += 2.0 * a * a / n;
        h12 += 2.0 * a * b / n;
        h22 += 2.0 * b * b / n;
    }
    let damp = 0.01 * (h11 + h22) / 2.0;
    let (h11, h22) = (h11 + damp, h22 + damp);
    // One row: w1 is small, so it is the one pruned; the best w2 given w1 = 0 is
    // w2 + w1 * H12 / H22 (optimal brain surgeon).
    let (w1, w2) = (0.05f32, 1.0f32);
    let hinv = hessian_inverse(&x, 2, 1, "x").unwrap();
    let mut w = vec![w1, w2];
    sparsegpt(&mut w, 2, &job(None, 0.5, None), &hinv).unwrap();
    let want = w2 as f64 + w1 as f64 * h12 / h22;
    assert_eq!(w[0], 0.0);
    assert!((w[1] as f64 - want).abs() < 1e-5, "{} vs {want}", w[1]);
    // U^T U is the inverse of the damped H.
    let det = h11 * h22 - h12 * h12;
    let (a, b) = (h22 / det, -h12 / det);
    assert!((hinv.u[0] as f64 - a.sqrt()).abs() < 1e-5);
    assert!((hinv.u[1] as f64 - b / a.sqrt()).abs() < 1e-5);
}

/// `|| (W - V) X^T ||^2`: the reconstruction error of the layer output.
fn output_error(w: &[f32], v: &[f32], x: &[f32], cols: usize) -> f64 {
    let n = x.len() / cols;
    let mut e = 0f64;
    for (wr, vr) in w.chunks_exact(cols).zip(v.chunks_exact(cols)) {
        for t in 0..n {
            let xt = &x[t * cols..(t + 1) * cols];
            let d: f64 = wr
                .iter()
                .zip(vr)
                .zip(xt)
                .map(|((a, b), c)| (a - b) as f64 * *c as f64)
                .sum();
            e += d * d;
        }
    }
    e
}

#[test]
fn sparsegpt_beats_zeroing_alone_and_holds_the_sparsity() {
    let (rows, cols) = (6, 160); // two blocks of columns, the second partial
    let x = inputs(400, cols);
    let w: Vec<f32> = inputs(rows, cols).iter().map(|v| v * 2.0).collect();
    let hinv = hessian_inverse(&x, cols, 2, "x").unwrap();
    for pattern in [None, Some(Pattern { n: 2, m: 4 })] {
        let mut v = w.clone();
        sparsegpt(&mut v, cols, &job(None, 0.5, pattern), &hinv).unwrap();
        let zeros = v.iter().filter(|&&a| a == 0.0).count();
        match pattern {
            // floor(rows x 128 x 0.5) in the first block, floor(rows x 32 x 0.5) in the second.
            None => assert_eq!(zeros, rows * cols / 2),
            Some(_) => {
                for g in v.chunks_exact(4) {
                    assert_eq!(g.iter().filter(|&&a| a == 0.0).count(), 2);
                }
            }
        }
        // The same mask without the updates does worse on the layer's output.
        let masked: Vec<f32> = w
            .iter()
            .zip(&v)
            .map(|(&a, &b)| if b == 0.0 { 0.0 } else { a })
            .collect();
        let (e_sgpt, e_mask) = (
            output_error(&w, &v, &x, cols),
            output_error(&w, &masked, &x, cols),
        );
        assert!(e_sgpt < 0.9 * e_mask, "{e_sgpt} vs {e_mask}");
    }
}

#[test]
fn sparsegpt_zeroes_dead_inputs() {
    let mut x = inputs(50, 4);
    for t in 0..50 {
        x[t * 4 + 2] = 0.0;
    }
    let hinv = hessian_inverse(&x, 4, 1, "x").unwrap();
    assert_eq!(hinv.dead, vec![false, false, true, false]);
    let mut w = vec![1.0, 2.0, 3.0, 4.0];
    sparsegpt(&mut w, 4, &job(None, 0.25, None), &hinv).unwrap();
    assert_eq!(w[2], 0.0);
}

fn opts(method: &str) -> PruneOptions {
    PruneOptions {
        method: method.into(),
        sparsity: None,
        pattern: None,
        drop: None,
        calib: None,
        calib_samples: 1,
        calib_len: 16,
        threads: 1,
        ty: None,
        format: "gguf".into(),
        shard_bytes: 1 << 30,
    }
}

#[test]
fn options_are_checked() {
    let m = |n| method(n).unwrap();
    let mut o = opts("wanda");
    assert!(check_options(m("wanda"), &o).is_err()); // neither sparsity nor pattern
    o.sparsity = Some(1.0);
    assert!(check_options(m("wanda"), &o).is_err());
    o.sparsity = Some(0.5);
    assert_eq!(check_options(m("wanda"), &o).unwrap(), (0.5, None));
    o.pattern = Some(Pattern { n: 1, m: 4 });
    assert!(check_options(m("wanda"), &o).is_err()); // 1:4 is 25%, not 50%
    o.sparsity = None;
    assert_eq!(check_options(m("wanda"), &o).unwrap(), (0.25, None));
    o.drop = Some(2);
    assert!(check_options(m("wanda"), &o).is_err());
    let mut b = opts("blocks");
    assert!(check_options(m("blocks"), &b).is_err());
    b.drop = Some(2);
    assert_eq!(check_options(m("blocks"), &b).unwrap(), (0.0, Some(2)));
    b.sparsity = Some(0.5);
    assert!(check_options(m("blocks"), &b).is_err());
    assert!(method("obs").is_err());
    for bad in ["2", "0:4", "4:4", "a:b", "3:2"] {
        assert!(Pattern::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(Pattern::parse("4:8").unwrap(), Pattern { n: 4, m: 8 });
}

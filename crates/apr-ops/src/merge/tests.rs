//! Merge methods against hand-computed results, identities (a model merged with itself, slerp's
//! endpoints) and chunking invariance.

use super::*;

fn params(w: f64) -> TensorParams {
    TensorParams {
        weight: Some(w),
        ..Default::default()
    }
}

/// Merges `models` (with `base`) by `method`, reading `chunk` rows at a time.
fn run(
    method: &str,
    base: Option<&[f32]>,
    models: &[(&[f32], TensorParams)],
    p: MethodParams,
    cols: usize,
    chunk: usize,
) -> Result<Vec<f32>> {
    let bs = base.map(|d| SliceSource { data: d, cols });
    let ms: Vec<SliceSource> = models
        .iter()
        .map(|(d, _)| SliceSource { data: d, cols })
        .collect();
    let x = Inputs {
        name: "blk.0.ffn_up.weight",
        base: bs.as_ref().map(|s| s as &dyn TensorSource),
        models: ms
            .iter()
            .zip(models)
            .map(|(s, (_, tp))| (s as &dyn TensorSource, *tp))
            .collect(),
        params: p,
        seed: 7,
        chunk_rows: chunk,
    };
    merge_to_vec(lookup(method)?, &x)
}

fn close(a: &[f32], b: &[f32], rel: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= rel * y.abs().max(1e-6),
            "element {i}: {x} vs {y}"
        );
    }
}

/// A deterministic pseudo-random tensor.
fn tensor(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| (sparsify::uniform(seed, i as u64) * 2.0 - 1.0) as f32)
        .collect()
}

#[test]
fn a_model_merged_with_itself_is_unchanged() {
    let a = tensor(64 * 48, 1);
    let t = |m: &str, tp: TensorParams, p: MethodParams| {
        let models: Vec<(&[f32], TensorParams)> = match m {
            "slerp" | "passthrough" => vec![(&a, tp)],
            _ => vec![(&a, tp), (&a, tp)],
        };
        let base = (m != "linear" && m != "passthrough" && m != "nuslerp").then_some(&a[..]);
        let base = if m == "passthrough" { None } else { base };
        let got = run(m, base, &models, p, 48, 7).unwrap_or_else(|e| panic!("{m}: {e}"));
        close(&got, &a, 1e-6);
    };
    let half = TensorParams {
        weight: Some(0.6),
        density: Some(0.5),
        ..Default::default()
    };
    t("linear", params(0.3), MethodParams::default());
    t(
        "slerp",
        params(1.0),
        MethodParams {
            t: Some(0.4),
            ..Default::default()
        },
    );
    t("nuslerp", params(1.0), MethodParams::default());
    t("task_arithmetic", params(0.7), MethodParams::default());
    t("ties", half, MethodParams::default());
    t(
        "dare_ties",
        TensorParams {
            density: Some(1.0),
            ..params(0.5)
        },
        MethodParams::default(),
    );
    t(
        "dare_linear",
        TensorParams {
            density: Some(1.0),
            ..params(0.5)
        },
        MethodParams::default(),
    );
    t("breadcrumbs", half, MethodParams::default());
    t("breadcrumbs_ties", half, MethodParams::default());
    t("della", half, MethodParams::default());
    t("della_linear", half, MethodParams::default());
    t("model_stock", params(1.0), MethodParams::default());
    t("passthrough", params(1.0), MethodParams::default());
}

#[test]
fn slerp_endpoints_are_the_two_models() {
    let (a, b) = (tensor(300, 2), tensor(300, 3));
    for (t, want) in [(0.0, &a), (1.0, &b)] {
        let got = run(
            "slerp",
            Some(&a),
            &[(&b, params(1.0))],
            MethodParams {
                t: Some(t),
                ..Default::default()
            },
            30,
            4,
        )
        .unwrap();
        close(&got, want, 1e-6);
    }
}

#[test]
fn hand_computed_results() {
    let none = MethodParams::default();
    // Linear: (1*1 + 3*3) / 4 and (1*2 + 3*6) / 4.
    let got = run(
        "linear",
        None,
        &[(&[1.0, 2.0], params(1.0)), (&[3.0, 6.0], params(3.0))],
        none,
        2,
        1,
    )
    .unwrap();
    assert_eq!(got, vec![2.5, 5.0]);
    // Task arithmetic: base + 1 * [1, -1, 0] + 0.5 * [0, 2, 0].
    let base = [1.0, 1.0, 1.0];
    let got = run(
        "task_arithmetic",
        Some(&base),
        &[
            (&[2.0, 0.0, 1.0], params(1.0)),
            (&[1.0, 3.0, 1.0], params(0.5)),
        ],
        none,
        3,
        1,
    )
    .unwrap();
    assert_eq!(got, vec![2.0, 1.0, 1.0]);
    // TIES without trimming: elected signs [+, -, +, +] from the sums [2, -3, 6, 1]; the agreeing
    // values averaged over the weights that agree.
    let zero = [0.0; 4];
    let (m1, m2) = ([3.0, -1.0, 2.0, 0.0], [-1.0, -2.0, 4.0, 1.0]);
    let got = run(
        "ties",
        Some(&zero),
        &[(&m1, params(1.0)), (&m2, params(1.0))],
        none,
        4,
        1,
    )
    .unwrap();
    assert_eq!(got, vec![3.0, -1.5, 3.0, 1.0]);
    // TIES at density 0.5: each keeps its two largest magnitudes, [3, 0, 2, 0] and [0, -2, 4, 0].
    let d = |w| TensorParams {
        density: Some(0.5),
        ..params(w)
    };
    let got = run(
        "ties",
        Some(&zero),
        &[(&m1, d(1.0)), (&m2, d(1.0))],
        none,
        2,
        1,
    )
    .unwrap();
    assert_eq!(got, vec![3.0, -2.0, 3.0, 0.0]);
    // Breadcrumbs, density 0.5, gamma 0.1 over 1..=10: the largest (10) and the four smallest go.
    let ten: Vec<f32> = (1..=10).map(|v| v as f32).collect();
    let z10 = [0.0; 10];
    let bc = TensorParams {
        density: Some(0.5),
        gamma: Some(0.1),
        ..params(1.0)
    };
    let got = run("breadcrumbs", Some(&z10), &[(&ten, bc)], none, 5, 1).unwrap();
    assert_eq!(got, vec![0.0, 0.0, 0.0, 0.0, 5.0, 6.0, 7.0, 8.0, 9.0, 0.0]);
    // Model stock: offsets [1, 0] and [1, 1], cos 1/sqrt(2), t = 2c / (1 + c).
    let c = std::f64::consts::FRAC_1_SQRT_2;
    let t = 2.0 * c / (1.0 + c);
    let got = run(
        "model_stock",
        Some(&[0.0, 0.0]),
        &[(&[1.0, 0.0], params(1.0)), (&[1.0, 1.0], params(1.0))],
        none,
        2,
        1,
    )
    .unwrap();
    close(&got, &[t as f32, (t * 0.5) as f32], 1e-6);
    // Slerp and NuSLERP halfway between orthogonal unit vectors: sin(pi/4) of each.
    let s = std::f32::consts::FRAC_1_SQRT_2;
    let got = run(
        "slerp",
        Some(&[1.0, 0.0]),
        &[(&[0.0, 1.0], params(1.0))],
        MethodParams {
            t: Some(0.5),
            ..none
        },
        2,
        1,
    )
    .unwrap();
    close(&got, &[s, s], 1e-6);
    let got = run(
        "nuslerp",
        None,
        &[(&[1.0, 0.0], params(1.0)), (&[0.0, 1.0], params(1.0))],
        none,
        2,
        1,
    )
    .unwrap();
    close(&got, &[s, s], 1e-6);
    // NuSLERP per row: the first row is colinear (linear mix), the second orthogonal.
    let got = run(
        "nuslerp",
        None,
        &[
            (&[1.0, 0.0, 1.0, 0.0], params(1.0)),
            (&[2.0, 0.0, 0.0, 1.0], params(3.0)),
        ],
        MethodParams {
            nuslerp_flatten: Some(false),
            ..none
        },
        2,
        1,
    )
    .unwrap();
    let t = 0.75f64 * std::f64::consts::FRAC_PI_2;
    close(
        &got,
        &[
            1.75,
            0.0,
            (std::f64::consts::FRAC_PI_2 - t).sin() as f32,
            t.sin() as f32,
        ],
        1e-6,
    );
}

#[test]
fn dare_keeps_about_density_rescales_to_the_l1_norm_and_ignores_chunking() {
    let base = tensor(100 * 100, 5);
    let m = tensor(100 * 100, 6);
    let p = TensorParams {
        density: Some(0.3),
        ..params(1.0)
    };
    let a = run(
        "dare_linear",
        Some(&base),
        &[(&m, p)],
        MethodParams::default(),
        100,
        1,
    )
    .unwrap();
    let b = run(
        "dare_linear",
        Some(&base),
        &[(&m, p)],
        MethodParams::default(),
        100,
        64,
    )
    .unwrap();
    assert_eq!(a, b, "masks do not depend on the chunk size");
    let kept = a.iter().zip(&base).filter(|(x, y)| x != y).count();
    assert!((kept as f64 / 10_000.0 - 0.3).abs() < 0.02, "{kept}");
    let l1 = |v: &[f32], w: &[f32]| {
        v.iter()
            .zip(w)
            .map(|(x, y)| (x - y).abs() as f64)
            .sum::<f64>()
    };
    let (got, want) = (l1(&a, &base), l1(&m, &base));
    assert!(
        (got / want - 1.0).abs() < 1e-4,
        "rescaled L1 {got} vs {want}"
    );
}

#[test]
fn magnitude_and_magprune_masks_ignore_chunking() {
    let base = tensor(50 * 40, 8);
    let (m1, m2) = (tensor(50 * 40, 9), tensor(50 * 40, 10));
    for method in ["ties", "breadcrumbs_ties", "della"] {
        let p = TensorParams {
            density: Some(0.4),
            ..params(0.5)
        };
        let a = run(
            method,
            Some(&base),
            &[(&m1, p), (&m2, p)],
            MethodParams::default(),
            40,
            1,
        )
        .unwrap();
        let b = run(
            method,
            Some(&base),
            &[(&m1, p), (&m2, p)],
            MethodParams::default(),
            40,
            50,
        )
        .unwrap();
        assert_eq!(a, b, "{method}");
    }
}

#[test]
fn invalid_inputs_are_clear_errors() {
    let a = [1.0f32, 2.0];
    let none = MethodParams::default();
    let e = run(
        "slerp",
        Some(&a),
        &[(&a, params(1.0)), (&a, params(1.0))],
        MethodParams {
            t: Some(0.5),
            ..none
        },
        2,
        1,
    )
    .unwrap_err();
    assert!(e.to_string().contains("exactly two models"), "{e}");
    let e = run("slerp", Some(&a), &[(&a, params(1.0))], none, 2, 1).unwrap_err();
    assert!(e.to_string().contains("no t"), "{e}");
    let e = run("model_stock", Some(&a), &[(&a, params(1.0))], none, 2, 1).unwrap_err();
    assert!(e.to_string().contains("at least two"), "{e}");
    let e = run("ties", None, &[(&a, params(1.0))], none, 2, 1).unwrap_err();
    assert!(e.to_string().contains("needs base_model"), "{e}");
    let e = run("linear", None, &[(&a, TensorParams::default())], none, 2, 1).unwrap_err();
    assert!(e.to_string().contains("no weight"), "{e}");
    let e = run(
        "della",
        Some(&a),
        &[(
            &a,
            TensorParams {
                density: Some(0.1),
                epsilon: Some(0.2),
                ..params(1.0)
            },
        )],
        none,
        2,
        1,
    )
    .unwrap_err();
    assert!(e.to_string().contains("epsilon"), "{e}");
    assert!(matches!(
        lookup("frankenstein"),
        Err(MergeError::UnknownMethod(..))
    ));
}

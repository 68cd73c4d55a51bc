//! Generalized task arithmetic, mergekit's family of eight methods in one file: task vectors
//! `tau_i = model_i - base`, each optionally sparsified (magnitude, random, magnitude with
//! outliers, DELLA's MAGPRUNE) and rescaled to its L1 norm, weighted, optionally reduced by
//! TIES sign consensus (the elected sign of each element is that of the summed weighted
//! values, and only the agreeing ones are added), optionally normalized by the sum of weights
//! that took part, scaled by `lambda` and added to the base.
//! References: task arithmetic https://arxiv.org/abs/2212.04089, TIES
//! https://arxiv.org/abs/2306.01708, DARE https://arxiv.org/abs/2311.03099, breadcrumbs
//! https://arxiv.org/abs/2312.06795, DELLA https://arxiv.org/abs/2406.11617.

use super::sparsify::{magprune_probs, uniform, Keeper, RankSelect, Threshold};
use super::{name_hash, Inputs, MergeError, Method, Result};

/// mergekit's defaults.
const DEFAULT_DENSITY: f64 = 1.0;
const DEFAULT_GAMMA: f64 = 0.01;
const DEFAULT_EPSILON: f64 = 0.15;
/// Norms below this are not rescaled (mergekit's `rescaled_masked_tensor`).
const RESCALE_EPS: f64 = 1e-7;
/// A weight sum this close to 0 divides by 1 instead.
const DIVISOR_EPS: f64 = 1e-8;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sparsify {
    Magnitude,
    Random,
    MagnitudeOutliers,
    DellaMagprune,
}

pub struct Gta {
    pub name: &'static str,
    pub consensus: bool,
    pub sparsify: Option<Sparsify>,
    pub default_normalize: bool,
    pub default_rescale: bool,
}

pub const TASK_ARITHMETIC: Gta = Gta {
    name: "task_arithmetic",
    consensus: false,
    sparsify: None,
    default_normalize: false,
    default_rescale: false,
};
pub const TIES: Gta = Gta {
    name: "ties",
    consensus: true,
    sparsify: Some(Sparsify::Magnitude),
    default_normalize: true,
    default_rescale: false,
};
pub const DARE_TIES: Gta = Gta {
    name: "dare_ties",
    consensus: true,
    sparsify: Some(Sparsify::Random),
    default_normalize: false,
    default_rescale: true,
};
pub const DARE_LINEAR: Gta = Gta {
    name: "dare_linear",
    consensus: false,
    sparsify: Some(Sparsify::Random),
    default_normalize: false,
    default_rescale: true,
};
pub const BREADCRUMBS: Gta = Gta {
    name: "breadcrumbs",
    consensus: false,
    sparsify: Some(Sparsify::MagnitudeOutliers),
    default_normalize: false,
    default_rescale: false,
};
pub const BREADCRUMBS_TIES: Gta = Gta {
    name: "breadcrumbs_ties",
    consensus: true,
    sparsify: Some(Sparsify::MagnitudeOutliers),
    default_normalize: false,
    default_rescale: false,
};
pub const DELLA: Gta = Gta {
    name: "della",
    consensus: true,
    sparsify: Some(Sparsify::DellaMagprune),
    default_normalize: true,
    default_rescale: true,
};
pub const DELLA_LINEAR: Gta = Gta {
    name: "della_linear",
    consensus: false,
    sparsify: Some(Sparsify::DellaMagprune),
    default_normalize: false,
    default_rescale: true,
};

/// How one model's task vector is masked, resolved for this tensor.
#[derive(Clone, Copy)]
enum Mask {
    All,
    /// The top set by magnitude (`upper` None), or the top of `lower` minus the top of `upper`.
    Rank {
        lower: Threshold,
        upper: Option<Threshold>,
    },
    Random {
        density: f64,
        seed: u64,
    },
    Magprune {
        density: f64,
        epsilon: f64,
        seed: u64,
    },
}

/// Walks one model's mask in element order (the rank masks keep state across chunks).
struct MaskWalk {
    mask: Mask,
    lower: Option<Keeper>,
    upper: Option<Keeper>,
    probs: Vec<f64>,
}

impl MaskWalk {
    fn new(mask: Mask) -> Self {
        let (lower, upper) = match mask {
            Mask::Rank { lower, upper } => (Some(Keeper::new(lower)), upper.map(Keeper::new)),
            _ => (None, None),
        };
        MaskWalk {
            mask,
            lower,
            upper,
            probs: Vec::new(),
        }
    }

    /// Zeroes the dropped values of `tau` (rows `r0..` of `cols` values each).
    fn apply(&mut self, r0: usize, cols: usize, tau: &mut [f32]) {
        match self.mask {
            Mask::All => {}
            Mask::Rank { .. } => {
                for v in tau.iter_mut() {
                    // Both walks see every value, so their tie counters stay in step.
                    let in_lower = self.lower.as_mut().is_some_and(|k| k.keep(*v));
                    let in_upper = self.upper.as_mut().is_some_and(|k| k.keep(*v));
                    if !in_lower || in_upper {
                        *v = 0.0;
                    }
                }
            }
            Mask::Random { density, seed } => {
                let base = (r0 * cols) as u64;
                for (i, v) in tau.iter_mut().enumerate() {
                    if uniform(seed, base + i as u64) >= density {
                        *v = 0.0;
                    }
                }
            }
            Mask::Magprune {
                density,
                epsilon,
                seed,
            } => {
                for (k, row) in tau.chunks_exact_mut(cols.max(1)).enumerate() {
                    magprune_probs(row, density, epsilon, &mut self.probs);
                    let base = ((r0 + k) * cols) as u64;
                    for (i, v) in row.iter_mut().enumerate() {
                        if uniform(seed, base + i as u64) >= self.probs[i] {
                            *v = 0.0;
                        }
                    }
                }
            }
        }
    }
}

/// `tau = model - base`, in place.
fn task_vector(model: &[f32], base: &[f32], tau: &mut Vec<f32>) {
    tau.clear();
    tau.extend(model.iter().zip(base).map(|(m, b)| m - b));
}

impl Gta {
    fn param(&self, v: Option<f64>, default: f64, what: &str, tensor: &str) -> Result<f64> {
        let v = v.unwrap_or(default);
        if !v.is_finite() {
            return Err(MergeError::Invalid {
                method: self.name,
                msg: format!("{what} {v} for {tensor}"),
            });
        }
        Ok(v)
    }

    /// Each model's mask for this tensor; the magnitude ones need two passes over the inputs.
    fn masks(&self, x: &Inputs<'_>) -> Result<Vec<Mask>> {
        let (rows, cols) = x.shape();
        let numel = (rows * cols) as u64;
        let mut masks = Vec::with_capacity(x.models.len());
        // Rank targets (from the top) per model: (lower, upper).
        let mut targets: Vec<Option<(u64, Option<u64>)>> = Vec::new();
        for (i, (_, p)) in x.models.iter().enumerate() {
            let density = self.param(p.density, DEFAULT_DENSITY, "density", x.name)?;
            let seed = x.seed ^ name_hash(x.name) ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
            let m = match self.sparsify {
                _ if density >= 1.0 => None,
                None => None,
                Some(Sparsify::Magnitude) => {
                    let k = (density * numel as f64) as u64;
                    if k == 0 {
                        return Err(MergeError::Invalid {
                            method: self.name,
                            msg: format!(
                                "density {density} keeps no value of {} ({numel} values)",
                                x.name
                            ),
                        });
                    }
                    targets.push(Some((k, None)));
                    masks.push(Mask::All);
                    continue;
                }
                Some(Sparsify::MagnitudeOutliers) => {
                    let gamma = self.param(p.gamma, DEFAULT_GAMMA, "gamma", x.name)?;
                    let keep = (density * numel as f64) as u64;
                    let mut n_top = (gamma * numel as f64) as u64;
                    n_top = n_top.min(numel - keep.min(numel));
                    targets.push(Some((n_top + keep, (n_top > 0).then_some(n_top))));
                    masks.push(Mask::All);
                    continue;
                }
                Some(Sparsify::Random) => Some(Mask::Random {
                    density: density.max(0.0),
                    seed,
                }),
                Some(Sparsify::DellaMagprune) => {
                    let epsilon = self.param(p.epsilon, DEFAULT_EPSILON, "epsilon", x.name)?;
                    if density <= 0.0 {
                        Some(Mask::Random { density: 0.0, seed })
                    } else if density + epsilon >= 1.0 || density - epsilon <= 0.0 {
                        return Err(MergeError::Invalid {
                            method: self.name,
                            msg: format!("epsilon {epsilon} must keep density {density} +/- epsilon inside (0, 1)"),
                        });
                    } else {
                        Some(Mask::Magprune {
                            density,
                            epsilon,
                            seed,
                        })
                    }
                }
            };
            targets.push(None);
            masks.push(m.unwrap_or(Mask::All));
        }
        if targets.iter().all(Option::is_none) {
            return Ok(masks);
        }
        let mut sel: Vec<Option<(RankSelect, Option<RankSelect>)>> = targets
            .iter()
            .map(|t| t.map(|(lo, up)| (RankSelect::new(lo), up.map(RankSelect::new))))
            .collect();
        let mut tau = Vec::new();
        for pass in 0..2 {
            x.for_each_chunk(|_, _, b, ms| {
                for (s, m) in sel.iter_mut().zip(ms) {
                    if let Some((lo, up)) = s {
                        task_vector(m, b.expect("base"), &mut tau);
                        for r in std::iter::once(lo).chain(up.as_mut()) {
                            if pass == 0 {
                                r.count_hi(&tau);
                            } else {
                                r.count_lo(&tau);
                            }
                        }
                    }
                }
                Ok(())
            })?;
            if pass == 0 {
                for (lo, up) in sel.iter_mut().flatten() {
                    lo.finish_hi();
                    if let Some(u) = up {
                        u.finish_hi();
                    }
                }
            }
        }
        for (m, s) in masks.iter_mut().zip(&sel) {
            if let Some((lo, up)) = s {
                *m = Mask::Rank {
                    lower: lo.threshold(),
                    upper: up.as_ref().map(RankSelect::threshold),
                };
            }
        }
        Ok(masks)
    }
}

impl Method for Gta {
    fn name(&self) -> &'static str {
        self.name
    }
    fn needs_base(&self) -> bool {
        true
    }
    fn check_models(&self, n_models: usize, has_base: bool) -> Result<()> {
        if !has_base {
            return Err(MergeError::Invalid {
                method: self.name,
                msg: "needs base_model".into(),
            });
        }
        if n_models == 0 {
            return Err(MergeError::Invalid {
                method: self.name,
                msg: "needs at least one model besides the base".into(),
            });
        }
        Ok(())
    }

    fn merge(&self, x: &Inputs<'_>, out: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()> {
        let (_, cols) = x.shape();
        let weights = x.weights(self.name)?;
        let normalize = x.params.normalize.unwrap_or(self.default_normalize);
        let rescale = x.params.rescale.unwrap_or(self.default_rescale);
        let lambda = x.params.lambda.unwrap_or(1.0);
        let masks = self.masks(x)?;
        let sparse: Vec<bool> = masks.iter().map(|m| !matches!(m, Mask::All)).collect();
        // L1 rescale factors: a pass over the masked task vectors first.
        let mut scale = vec![1f64; masks.len()];
        if rescale && sparse.iter().any(|&s| s) {
            let mut walks: Vec<MaskWalk> = masks.iter().map(|&m| MaskWalk::new(m)).collect();
            let (mut before, mut after) = (vec![0f64; masks.len()], vec![0f64; masks.len()]);
            let mut tau = Vec::new();
            x.for_each_chunk(|r0, _, b, ms| {
                for (i, m) in ms.iter().enumerate() {
                    if sparse[i] {
                        task_vector(m, b.expect("base"), &mut tau);
                        before[i] += tau.iter().map(|v| v.abs() as f64).sum::<f64>();
                        walks[i].apply(r0, cols, &mut tau);
                        after[i] += tau.iter().map(|v| v.abs() as f64).sum::<f64>();
                    }
                }
                Ok(())
            })?;
            for i in 0..scale.len() {
                if sparse[i] && before[i] >= RESCALE_EPS && after[i] >= RESCALE_EPS {
                    scale[i] = before[i] / after[i];
                }
            }
        }
        let mut walks: Vec<MaskWalk> = masks.iter().map(|&m| MaskWalk::new(m)).collect();
        let mut taus: Vec<Vec<f32>> = vec![Vec::new(); masks.len()];
        let mut row = Vec::new();
        x.for_each_chunk(|r0, _, b, ms| {
            let b = b.expect("base");
            for (i, m) in ms.iter().enumerate() {
                task_vector(m, b, &mut taus[i]);
                walks[i].apply(r0, cols, &mut taus[i]);
            }
            row.clear();
            for (e, &bv) in b.iter().enumerate() {
                // Weighted (and rescaled) deltas of this element, in f64.
                let wd = |i: usize| weights[i] * scale[i] * taus[i][e] as f64;
                let (mut mixed, mut divisor) = (0f64, 0f64);
                if self.consensus {
                    let sum: f64 = (0..taus.len()).map(wd).sum();
                    let majority = if sum >= 0.0 { 1.0 } else { -1.0 };
                    for (i, &w) in weights.iter().enumerate() {
                        let d = wd(i);
                        let sign = if d > 0.0 {
                            1.0
                        } else if d < 0.0 {
                            -1.0
                        } else {
                            0.0
                        };
                        if sign == majority {
                            mixed += d;
                            divisor += w;
                        }
                    }
                    if divisor == 0.0 {
                        divisor = 1.0;
                    }
                } else {
                    mixed = (0..taus.len()).map(wd).sum();
                    divisor = weights.iter().sum();
                    if divisor.abs() < DIVISOR_EPS {
                        divisor = 1.0;
                    }
                }
                if normalize {
                    mixed /= divisor;
                }
                row.push((bv as f64 + lambda * mixed) as f32);
            }
            out(&row)
        })
    }
}

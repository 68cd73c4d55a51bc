//! Token sampling: a chain of steps in llama.cpp's default order (penalties, top-k, top-p,
//! min-p, temperature, draw), greedy when the temperature is zero. Seeded and reproducible.

/// Tokens the repetition penalty looks back over (llama.cpp's `repeat_last_n`).
pub const REPEAT_LAST_N: usize = 64;

#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// 0 or below: greedy (argmax).
    pub temperature: f32,
    /// 0: off.
    pub top_k: usize,
    /// 1.0: off.
    pub top_p: f32,
    /// 0.0: off.
    pub min_p: f32,
    /// 1.0: off.
    pub repeat_penalty: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        // llama.cpp's defaults.
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            seed: 0,
        }
    }
}

/// A candidate token with its logit (later its probability).
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub id: u32,
    pub logit: f32,
}

type Step = fn(&SamplerConfig, &mut Vec<Candidate>, &[u32]);

/// The chain, one line per step, in order.
const STEPS: &[(&str, Step)] = &[
    ("repeat_penalty", repeat_penalty),
    ("top_k", top_k),
    ("top_p", top_p),
    ("min_p", min_p),
    ("temperature", temperature),
];

/// Penalize logits of recently seen tokens (divide positive, multiply negative).
// Every step has the registry's signature; some steps truncate, so it takes the Vec.
#[allow(clippy::ptr_arg)]
fn repeat_penalty(cfg: &SamplerConfig, c: &mut Vec<Candidate>, history: &[u32]) {
    if cfg.repeat_penalty == 1.0 || history.is_empty() {
        return;
    }
    let recent = &history[history.len().saturating_sub(REPEAT_LAST_N)..];
    for cand in c.iter_mut() {
        if recent.contains(&cand.id) {
            if cand.logit > 0.0 {
                cand.logit /= cfg.repeat_penalty;
            } else {
                cand.logit *= cfg.repeat_penalty;
            }
        }
    }
}

fn sort_desc(c: &mut [Candidate]) {
    c.sort_unstable_by(|a, b| b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id)));
}

fn top_k(cfg: &SamplerConfig, c: &mut Vec<Candidate>, _: &[u32]) {
    let k = if cfg.top_k == 0 {
        c.len()
    } else {
        cfg.top_k.min(c.len())
    };
    if k < c.len() {
        c.select_nth_unstable_by(k - 1, |a, b| {
            b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
        });
        c.truncate(k);
    }
    sort_desc(c);
}

/// Softmax probabilities of the (sorted) candidates.
fn probs(c: &[Candidate]) -> Vec<f32> {
    let max = c.first().map_or(0.0, |x| x.logit);
    let e: Vec<f32> = c.iter().map(|x| (x.logit - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// Keep the smallest prefix whose probability mass reaches `top_p`.
fn top_p(cfg: &SamplerConfig, c: &mut Vec<Candidate>, _: &[u32]) {
    if cfg.top_p >= 1.0 || c.is_empty() {
        return;
    }
    let p = probs(c);
    let mut cum = 0.0;
    let mut keep = c.len();
    for (i, pi) in p.iter().enumerate() {
        cum += pi;
        if cum >= cfg.top_p {
            keep = i + 1;
            break;
        }
    }
    c.truncate(keep.max(1));
}

/// Drop tokens whose probability is below `min_p` times the top token's.
fn min_p(cfg: &SamplerConfig, c: &mut Vec<Candidate>, _: &[u32]) {
    if cfg.min_p <= 0.0 || c.is_empty() {
        return;
    }
    let threshold = c[0].logit + cfg.min_p.ln();
    c.retain(|x| x.logit >= threshold);
}

#[allow(clippy::ptr_arg)]
fn temperature(cfg: &SamplerConfig, c: &mut Vec<Candidate>, _: &[u32]) {
    for x in c.iter_mut() {
        x.logit /= cfg.temperature;
    }
}

/// SplitMix64: a small, fast, seedable generator whose stream never changes across versions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

pub struct Sampler {
    pub cfg: SamplerConfig,
    rng: Rng,
    cands: Vec<Candidate>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Self {
        let rng = Rng::new(cfg.seed);
        Sampler {
            cfg,
            rng,
            cands: Vec::new(),
        }
    }

    /// Pick the next token from `logits` given the tokens so far.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        if self.cfg.temperature <= 0.0 {
            let mut c: Vec<Candidate> = Vec::new();
            if self.cfg.repeat_penalty != 1.0 {
                c.extend(logits.iter().enumerate().map(|(i, &l)| Candidate {
                    id: i as u32,
                    logit: l,
                }));
                repeat_penalty(&self.cfg, &mut c, history);
                return argmax(c.iter().map(|x| x.logit));
            }
            return argmax(logits.iter().copied());
        }
        self.cands.clear();
        self.cands
            .extend(logits.iter().enumerate().map(|(i, &l)| Candidate {
                id: i as u32,
                logit: l,
            }));
        for (_, step) in STEPS {
            step(&self.cfg, &mut self.cands, history);
        }
        sort_desc(&mut self.cands);
        let p = probs(&self.cands);
        let r = self.rng.next_f32();
        let mut cum = 0.0;
        for (cand, pi) in self.cands.iter().zip(&p) {
            cum += pi;
            if r < cum {
                return cand.id;
            }
        }
        self.cands.last().map_or(0, |c| c.id)
    }
}

/// Index of the largest value; the lowest index among equals (as llama.cpp's greedy).
pub fn argmax(v: impl Iterator<Item = f32>) -> u32 {
    let mut best = (0u32, f32::NEG_INFINITY);
    for (i, x) in v.enumerate() {
        if x > best.1 {
            best = (i as u32, x);
        }
    }
    best.0
}

/// Names of the chain's steps, in order (for `--help` and docs).
pub fn step_names() -> Vec<&'static str> {
    STEPS.iter().map(|s| s.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SamplerConfig {
        SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            seed: 1,
        }
    }

    #[test]
    fn greedy_takes_argmax() {
        let mut s = Sampler::new(SamplerConfig {
            temperature: 0.0,
            ..cfg()
        });
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9], &[]), 1);
    }

    #[test]
    fn same_seed_same_draws() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let draw = |seed| {
            let mut s = Sampler::new(SamplerConfig { seed, ..cfg() });
            (0..20).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    #[test]
    fn top_k_one_is_greedy_and_filters_hold() {
        let logits = [1.0, 5.0, 2.0, 4.9];
        let mut s = Sampler::new(SamplerConfig { top_k: 1, ..cfg() });
        for _ in 0..10 {
            assert_eq!(s.sample(&logits, &[]), 1);
        }
        // min_p 0.5 keeps tokens with p >= 0.5 p_max: ids 1 and 3 only.
        let mut s = Sampler::new(SamplerConfig {
            min_p: 0.5,
            ..cfg()
        });
        for _ in 0..50 {
            assert!([1, 3].contains(&s.sample(&logits, &[])));
        }
        // top_p 0.5: id 1 alone holds about half the mass (p = 0.51).
        let mut s = Sampler::new(SamplerConfig {
            top_p: 0.5,
            ..cfg()
        });
        for _ in 0..50 {
            assert_eq!(s.sample(&logits, &[]), 1);
        }
    }

    #[test]
    fn draws_follow_the_distribution() {
        // p = softmax([0, ln 3]) = [0.25, 0.75].
        let logits = [0.0, 3f32.ln()];
        let mut s = Sampler::new(cfg());
        let ones = (0..4000).filter(|_| s.sample(&logits, &[]) == 1).count();
        assert!((2850..3150).contains(&ones), "{ones}");
    }

    #[test]
    fn repeat_penalty_changes_greedy_choice() {
        let mut s = Sampler::new(SamplerConfig {
            temperature: 0.0,
            repeat_penalty: 2.0,
            ..cfg()
        });
        assert_eq!(s.sample(&[1.0, 1.5], &[1]), 0);
    }
}

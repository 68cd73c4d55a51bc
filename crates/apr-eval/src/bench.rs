//! llama-bench style speed: pp512 (one 512-token batch from an empty cache) and tg128 (128
//! single-token steps from an empty cache), a warm-up run, then mean and sd over repetitions.
//! Reference: llama.cpp tools/llama-bench/llama-bench.cpp (test_prompt, test_gen).

use std::time::Instant;

use apr_engine::sampling::Rng;
use apr_engine::{Engine, EngineError};
use serde::Serialize;

pub const PP_TOKENS: usize = 512;
pub const TG_TOKENS: usize = 128;

#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub pp512_tok_s: f64,
    pub pp512_sd: f64,
    pub tg128_tok_s: f64,
    pub tg128_sd: f64,
    pub threads: usize,
    pub kernel: String,
    pub reps: usize,
    pub model_bytes: u64,
    /// Weight bytes read per decoded token (all tensors but the embedding table).
    pub decode_weight_bytes: u64,
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Random token ids as llama-bench uses (any valid ids: speed does not depend on them).
fn random_tokens(n: usize, n_vocab: usize, rng: &mut Rng) -> Vec<u32> {
    (0..n)
        .map(|_| (rng.next_u64() % n_vocab as u64) as u32)
        .collect()
}

pub fn bench(
    engine: &Engine,
    reps: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchResult, EngineError> {
    let n_vocab = engine.model.cfg.n_vocab;
    let mut rng = Rng::new(42);
    let mut session = engine.session(PP_TOKENS + TG_TOKENS);
    let reps = reps.max(1);
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    // Run 0 warms caches and page-ins; it is not counted.
    for r in 0..=reps {
        let toks = random_tokens(PP_TOKENS, n_vocab, &mut rng);
        session.tokens.clear();
        let t = Instant::now();
        session.prefill(&toks)?;
        let pp_s = PP_TOKENS as f64 / t.elapsed().as_secs_f64();
        session.tokens.clear();
        let mut tok = toks[0];
        let t = Instant::now();
        for _ in 0..TG_TOKENS {
            session.step(tok)?;
            tok = (tok + 1) % n_vocab as u32;
        }
        let tg_s = TG_TOKENS as f64 / t.elapsed().as_secs_f64();
        if r > 0 {
            pp.push(pp_s);
            tg.push(tg_s);
            progress(&format!(
                "rep {r}/{reps}: pp512 {pp_s:.1} t/s, tg128 {tg_s:.1} t/s"
            ));
        }
    }
    let (pp_m, pp_sd) = mean_sd(&pp);
    let (tg_m, tg_sd) = mean_sd(&tg);
    Ok(BenchResult {
        pp512_tok_s: pp_m,
        pp512_sd: pp_sd,
        tg128_tok_s: tg_m,
        tg128_sd: tg_sd,
        threads: engine.pool.n_threads(),
        kernel: apr_core::quant::kernel_name().to_string(),
        reps,
        model_bytes: engine.file.raw_bytes().len() as u64,
        decode_weight_bytes: engine.model.decode_weight_bytes() as u64,
    })
}

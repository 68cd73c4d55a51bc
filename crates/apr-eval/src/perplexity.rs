//! Perplexity exactly as llama-perplexity computes it: the text tokenized whole, cut into
//! chunks of `ctx` tokens (tail dropped), each chunk run from an empty cache, and the NLL of
//! the tokens predicted by positions ctx/2 .. ctx-2 averaged over all chunks.
//! Reference: llama.cpp tools/perplexity/perplexity.cpp (`perplexity`).

use apr_engine::{Engine, EngineError};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct PerplexityResult {
    pub ppl: f64,
    pub ppl_sd: f64,
    pub chunks: usize,
    pub tokens_scored: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PerplexityError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the text has {n} tokens: at least 2 x ctx ({need}) are needed")]
    TooShort { n: usize, need: usize },
    #[error("--ctx must be at least 8, got {0}")]
    BadCtx(usize),
}

pub use apr_engine::log_prob;

/// Run the evaluation; `progress(done, total, running_ppl)` after each chunk.
pub fn perplexity(
    engine: &Engine,
    text: &str,
    ctx: usize,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<PerplexityResult, PerplexityError> {
    if ctx < 8 {
        return Err(PerplexityError::BadCtx(ctx));
    }
    let chunks = engine.text_chunks(text, ctx)?;
    // Two whole chunks at least, as llama-perplexity asks for 2 x ctx tokens.
    if chunks.len() < 2 {
        let n = engine
            .tokenizer
            .encode(text)
            .map_err(EngineError::from)?
            .len();
        return Err(PerplexityError::TooShort { n, need: 2 * ctx });
    }
    let n_chunks = chunks.len();
    let mut session = engine.session(ctx);
    let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0usize);
    for (c, chunk) in chunks.iter().enumerate() {
        for lp in session.chunk_nll(chunk)? {
            nll += lp;
            nll2 += lp * lp;
            count += 1;
        }
        progress(c + 1, n_chunks, (nll / count as f64).exp());
    }
    let mean = nll / count as f64;
    let var = nll2 / count as f64 - mean * mean;
    let ppl = mean.exp();
    let ppl_sd = if count > 1 && var > 0.0 {
        ppl * (var / (count - 1) as f64).sqrt()
    } else {
        0.0
    };
    Ok(PerplexityResult {
        ppl,
        ppl_sd,
        chunks: n_chunks,
        tokens_scored: count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_prob_is_log_softmax() {
        let l = [1.0f32, 2.0, 3.0];
        let z: f64 = l.iter().map(|&x| (x as f64).exp()).sum();
        for (i, &x) in l.iter().enumerate() {
            assert!((log_prob(&l, i) - ((x as f64) - z.ln())).abs() < 1e-6);
        }
    }
}

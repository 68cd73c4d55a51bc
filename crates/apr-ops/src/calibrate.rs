//! Calibration runs for importance matrices, as llama-imatrix makes them: the text tokenized
//! whole, cut into chunks of `ctx` tokens (the tail dropped), each chunk run from an empty
//! cache with BOS first when the model adds one, every linear layer's input squared and summed
//! per column over all tokens ([`ActivationStats`]). The perplexity of each chunk's second half
//! is reported along the way, as llama-imatrix prints it.
//! Reference: llama.cpp tools/imatrix/imatrix.cpp.

use apr_engine::{log_prob, Engine, EngineError};
use apr_models::ActivationStats;

/// The smallest chunk worth running.
const MIN_CTX: usize = 8;

#[derive(Debug, Clone)]
pub struct CalibOptions {
    /// Tokens per chunk (llama-imatrix's default context, 512).
    pub ctx: usize,
    /// Stop after this many chunks.
    pub max_chunks: Option<usize>,
    /// Also collect the LM head's input.
    pub include_output: bool,
}

impl Default for CalibOptions {
    fn default() -> Self {
        CalibOptions {
            ctx: 512,
            max_chunks: None,
            include_output: false,
        }
    }
}

#[derive(Debug)]
pub struct Calibration {
    pub stats: ActivationStats,
    /// Chunks run.
    pub chunks: usize,
    /// Perplexity over the second halves of the chunks run.
    pub ppl: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum CalibError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the calibration text has {n} tokens: at least one chunk of {ctx} is needed")]
    TooShort { n: usize, ctx: usize },
    #[error("--ctx must be at least {MIN_CTX}, got {0}")]
    BadCtx(usize),
}

/// Runs the calibration; `progress(done, total, running_ppl)` after each chunk.
pub fn collect(
    engine: &Engine,
    text: &str,
    opts: &CalibOptions,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<Calibration, CalibError> {
    let ctx = opts.ctx;
    if ctx < MIN_CTX {
        return Err(CalibError::BadCtx(ctx));
    }
    let ids = engine.tokenizer.encode(text).map_err(EngineError::from)?;
    let mut n_chunks = ids.len() / ctx;
    if let Some(m) = opts.max_chunks {
        n_chunks = n_chunks.min(m);
    }
    if n_chunks == 0 {
        return Err(CalibError::TooShort { n: ids.len(), ctx });
    }
    let first = ctx / 2;
    let n_vocab = engine.model.cfg.n_vocab;
    let mut session = engine.session(ctx);
    session.scratch.stats = Some(ActivationStats::new(opts.include_output));
    let (mut nll, mut count) = (0f64, 0usize);
    for c in 0..n_chunks {
        let mut chunk = ids[c * ctx..(c + 1) * ctx].to_vec();
        if engine.tokenizer.add_bos() {
            if let Some(b) = engine.tokenizer.bos_id() {
                chunk[0] = b;
            }
        }
        session.tokens.clear();
        let e = session.engine;
        e.model
            .forward(
                &e.pool,
                &mut session.cache,
                &mut session.scratch,
                &chunk,
                0,
                first,
            )
            .map_err(EngineError::from)?;
        // Rows hold positions first..ctx; position p predicts token p + 1.
        for p in first..ctx - 1 {
            let row = &session.scratch.logits[(p - first) * n_vocab..(p - first + 1) * n_vocab];
            nll -= log_prob(row, chunk[p + 1] as usize);
            count += 1;
        }
        progress(c + 1, n_chunks, (nll / count as f64).exp());
    }
    let stats = session.scratch.stats.take().unwrap_or_default();
    Ok(Calibration {
        stats,
        chunks: n_chunks,
        ppl: (nll / count as f64).exp(),
    })
}

impl Calibration {
    /// The statistics as an importance matrix file (llama-imatrix's layout: one matrix per
    /// weight, its token count as the count).
    pub fn to_imatrix(&self, dataset: &str, chunk_size: usize) -> crate::Imatrix {
        let entries = self
            .stats
            .entries
            .iter()
            .map(|(name, e)| {
                let entry = crate::ImatrixEntry {
                    in_sum2: e.sum2.iter().map(|&s| s as f32).collect(),
                    counts: vec![e.count as f32],
                };
                (name.clone(), entry)
            })
            .collect();
        crate::Imatrix {
            entries,
            datasets: vec![dataset.to_string()],
            chunk_count: self.chunks as u32,
            chunk_size: chunk_size as u32,
            legacy: false,
        }
    }
}

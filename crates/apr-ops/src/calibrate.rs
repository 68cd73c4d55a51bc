//! Calibration runs for importance matrices, as llama-imatrix makes them: the text tokenized
//! whole, cut into chunks of `ctx` tokens (the tail dropped), each chunk run from an empty
//! cache with BOS first when the model adds one, every linear layer's input squared and summed
//! per column over all tokens ([`ActivationStats`]). The perplexity of each chunk's second half
//! is reported along the way, as llama-imatrix prints it.
//! Reference: llama.cpp tools/imatrix/imatrix.cpp.

use apr_engine::{Engine, EngineError};
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
    let mut chunks = engine.text_chunks(text, ctx)?;
    if let Some(m) = opts.max_chunks {
        chunks.truncate(m);
    }
    if chunks.is_empty() {
        let n = engine
            .tokenizer
            .encode(text)
            .map_err(EngineError::from)?
            .len();
        return Err(CalibError::TooShort { n, ctx });
    }
    let n_chunks = chunks.len();
    let mut session = engine.session(ctx);
    session.scratch.stats = Some(ActivationStats::new(opts.include_output));
    let (mut nll, mut count) = (0f64, 0usize);
    for (c, chunk) in chunks.iter().enumerate() {
        let lp = session.chunk_nll(chunk)?;
        nll += lp.iter().sum::<f64>();
        count += lp.len();
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

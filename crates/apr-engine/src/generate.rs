//! The generation loop: batched prefill with prefix reuse, sampling, stop on end-of-generation
//! tokens, `--stop` strings and the token limit; text streamed as valid UTF-8.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use apr_core::pool::ThreadPool;
use apr_formats::chat_template::{ChatTemplate, Message};
use apr_formats::tokenizer::Tokenizer;
use apr_formats::Gguf;
use apr_models::{KvCache, KvType, Model, Scratch};

use crate::sampling::{Sampler, SamplerConfig};
use crate::{EngineError, Result};

/// Tokens per prefill batch (llama.cpp's default ubatch).
pub const PREFILL_BATCH: usize = 512;
/// Context when the caller does not choose one (llama.cpp's default `-c`).
pub const DEFAULT_CTX: usize = 4096;

/// A loaded model with its tokenizer, template and thread pool.
pub struct Engine {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
    pub pool: ThreadPool,
    pub file: Arc<Gguf>,
    /// Element type of the sessions' KV caches (f16 unless the caller asks for f32).
    pub kv_type: KvType,
}

impl Engine {
    /// Loads a GGUF file or a Hugging Face directory (config.json + safetensors).
    pub fn load(path: &Path, threads: usize) -> Result<Self> {
        let file = Arc::new(apr_formats::open_model(path)?);
        let model = Model::from_gguf(file.clone())?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let template = match file.get("tokenizer.chat_template") {
            Some(_) => Some(ChatTemplate::from_gguf(&file)?),
            None => None,
        };
        Ok(Engine {
            model,
            tokenizer,
            template,
            pool: ThreadPool::new(threads),
            file,
            kv_type: KvType::F16,
        })
    }

    /// A text cut as llama-perplexity and llama-imatrix cut it: tokenized whole (one BOS at
    /// the start when the model adds one), chunks of `ctx` tokens with the tail dropped, and
    /// BOS as the first token of every chunk when the model adds one.
    pub fn text_chunks(&self, text: &str, ctx: usize) -> Result<Vec<Vec<u32>>> {
        let ids = self.tokenizer.encode(text)?;
        let bos = self.tokenizer.bos_id().filter(|_| self.tokenizer.add_bos());
        Ok(ids
            .chunks_exact(ctx.max(1))
            .map(|c| {
                let mut c = c.to_vec();
                if let Some(b) = bos {
                    c[0] = b;
                }
                c
            })
            .collect())
    }

    /// A session with a context of `ctx` tokens (capped at the training context).
    pub fn session(&self, ctx: usize) -> Session<'_> {
        let ctx = ctx.min(self.model.cfg.ctx_train).max(1);
        Session {
            engine: self,
            cache: KvCache::with_type(&self.model.cfg, ctx, self.kv_type),
            scratch: Scratch::default(),
            tokens: Vec::new(),
        }
    }

    /// Append `ids[i]` to `sessions[i]` for every `i` in one batched forward pass (each weight
    /// matrix is read once for all rows) and return the logits `[sessions.len(), n_vocab]`,
    /// row `i` for session `i`, held in `scratch`.
    pub fn step_many<'s>(
        &self,
        sessions: &mut [&mut Session<'_>],
        ids: &[u32],
        scratch: &'s mut Scratch,
    ) -> Result<&'s [f32]> {
        if sessions.iter().any(|s| !std::ptr::eq(s.engine, self)) {
            return Err(EngineError::ForeignSession);
        }
        // Two small vectors per step; the forward pass itself allocates nothing once sized.
        let positions: Vec<usize> = sessions.iter().map(|s| s.tokens.len()).collect();
        let mut caches: Vec<&mut KvCache> = sessions.iter_mut().map(|s| &mut s.cache).collect();
        self.model
            .forward_multi(&self.pool, &mut caches, scratch, ids, &positions)?;
        for (s, &id) in sessions.iter_mut().zip(ids) {
            s.tokens.push(id);
        }
        Ok(&scratch.logits)
    }

    /// The chat template applied to one user turn, with the generation prompt.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<String> {
        let t = self.template.as_ref().ok_or(EngineError::NoTemplate)?;
        Ok(t.render(messages, true, None)?)
    }
}

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    pub stop: Vec<String>,
    /// Record the top-N log-probabilities at each step (0: none).
    pub logprobs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Eos,
    Length,
    StopString,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::Length => "length",
            StopReason::StopString => "stop_string",
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenOutput {
    pub text: String,
    /// Generated ids, the end-of-generation token included when generation stopped on one.
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    pub stop: StopReason,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    /// Per step, the top-N `(id, log-probability)` pairs when asked for.
    pub top_logprobs: Vec<Vec<(u32, f32)>>,
    /// Per step, the chosen token's log-probability (before sampling transforms), when
    /// log-probs were asked for.
    pub token_logprobs: Vec<f32>,
}

impl GenOutput {
    /// Decode speed over the tokens after the first (the first comes out of the prefill).
    pub fn tok_s(&self) -> f64 {
        let n = self.tokens.len().saturating_sub(1);
        if n == 0 || self.decode_secs <= 0.0 {
            0.0
        } else {
            n as f64 / self.decode_secs
        }
    }
}

/// A conversation's state: what is in the KV cache.
pub struct Session<'e> {
    pub engine: &'e Engine,
    pub cache: KvCache,
    pub scratch: Scratch,
    /// Tokens whose keys and values are in the cache, in order.
    pub tokens: Vec<u32>,
}

impl Session<'_> {
    pub fn ctx(&self) -> usize {
        self.cache.ctx
    }

    /// A prompt must hold at least one token and fit the context.
    fn check_prompt(&self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if ids.len() > self.ctx() {
            return Err(EngineError::PromptTooLong {
                n: ids.len(),
                ctx: self.ctx(),
            });
        }
        Ok(())
    }

    /// Runs one chunk of [`Engine::text_chunks`] from an empty cache and returns the negative
    /// log-likelihood of each token scored the way llama-perplexity scores a chunk: those
    /// predicted from positions `len/2 .. len-1` (the first half is context only).
    pub fn chunk_nll(&mut self, chunk: &[u32]) -> Result<Vec<f64>> {
        self.check_prompt(chunk)?;
        let first = chunk.len() / 2;
        let e = self.engine;
        let n_vocab = e.model.cfg.n_vocab;
        self.tokens.clear();
        e.model
            .forward(&e.pool, &mut self.cache, &mut self.scratch, chunk, 0, first)?;
        // Rows hold positions first..len; position p predicts token p + 1.
        let nll = (first..chunk.len() - 1)
            .map(|p| {
                let row = &self.scratch.logits[(p - first) * n_vocab..(p - first + 1) * n_vocab];
                -log_prob(row, chunk[p + 1] as usize)
            })
            .collect();
        self.tokens.extend_from_slice(chunk);
        Ok(nll)
    }

    /// Bring the cache to hold exactly `ids`, reusing the longest common prefix, and return the
    /// logits after the last id.
    pub fn prefill(&mut self, ids: &[u32]) -> Result<&[f32]> {
        self.check_prompt(ids)?;
        let common = self
            .tokens
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count();
        // At least the last prompt token runs again so that its logits exist.
        let keep = common.min(ids.len() - 1);
        self.tokens.truncate(keep);
        let mut start = keep;
        while start < ids.len() {
            let end = (start + PREFILL_BATCH).min(ids.len());
            let e = self.engine;
            let n = end - start;
            e.model.forward(
                &e.pool,
                &mut self.cache,
                &mut self.scratch,
                &ids[start..end],
                start,
                n - 1,
            )?;
            self.tokens.extend_from_slice(&ids[start..end]);
            start = end;
        }
        Ok(&self.scratch.logits)
    }

    /// The logits after every position of `ids`, `[ids.len(), n_vocab]`, from an empty cache
    /// (`apr run --logits-out`).
    pub fn prompt_logits(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        self.check_prompt(ids)?;
        self.tokens.clear();
        let mut out = Vec::with_capacity(ids.len() * self.engine.model.cfg.n_vocab);
        let mut start = 0;
        while start < ids.len() {
            let end = (start + PREFILL_BATCH).min(ids.len());
            let e = self.engine;
            let batch = &ids[start..end];
            e.model
                .forward(&e.pool, &mut self.cache, &mut self.scratch, batch, start, 0)?;
            out.extend_from_slice(&self.scratch.logits);
            self.tokens.extend_from_slice(batch);
            start = end;
        }
        Ok(out)
    }

    /// Append one token and return the logits after it.
    pub fn step(&mut self, id: u32) -> Result<&[f32]> {
        let e = self.engine;
        let pos = self.tokens.len();
        e.model
            .forward(&e.pool, &mut self.cache, &mut self.scratch, &[id], pos, 0)?;
        self.tokens.push(id);
        Ok(&self.scratch.logits)
    }

    /// Generate after `prompt`, calling `on_text` with each piece of decoded text.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        opts: &GenOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<GenOutput> {
        let tok = &self.engine.tokenizer;
        let t0 = Instant::now();
        let mut sampler = Sampler::new(opts.sampler.clone());
        let mut logits = self.prefill(prompt)?.to_vec();
        let prefill_secs = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut out = Vec::new();
        let mut text = String::new();
        let mut emitted = 0usize;
        let mut dec = tok.stream_decoder();
        let mut stop = StopReason::Length;
        let mut top_logprobs = Vec::new();
        let mut token_logprobs = Vec::new();
        let room = self.ctx() - self.tokens.len();
        let limit = opts.max_tokens.min(room + 1);
        while out.len() < limit {
            let id = sampler.sample(&logits, &self.tokens);
            out.push(id);
            if opts.logprobs > 0 {
                top_logprobs.push(top_log_probs(&logits, opts.logprobs));
                token_logprobs.push(logits[id as usize] - log_sum_exp(&logits));
            }
            if tok.is_eog(id) {
                stop = StopReason::Eos;
                break;
            }
            text.push_str(&dec.push(tok, id)?);
            if let Some(cut) = find_stop(&text, &opts.stop) {
                text.truncate(cut);
                stop = StopReason::StopString;
                break;
            }
            // Hold back a tail that could still grow into a stop string.
            let safe = safe_emit_len(&text, &opts.stop);
            if safe > emitted {
                on_text(&text[emitted..safe]);
                emitted = safe;
            }
            if out.len() >= limit || self.tokens.len() >= self.ctx() {
                break;
            }
            logits.copy_from_slice(self.step(id)?);
        }
        if stop != StopReason::StopString {
            text.push_str(&dec.finish());
        }
        if text.len() > emitted {
            on_text(&text[emitted..]);
        }
        Ok(GenOutput {
            text,
            tokens: out,
            prompt_tokens: prompt.len(),
            stop,
            prefill_secs,
            decode_secs: t1.elapsed().as_secs_f64(),
            top_logprobs,
            token_logprobs,
        })
    }
}

/// The `k` most likely tokens with their log-probabilities (log-sum-exp in f64).
pub fn top_log_probs(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let lse = log_sum_exp(logits);
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(idx.len());
    let cmp = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    if k < idx.len() {
        idx.select_nth_unstable_by(k, cmp);
        idx.truncate(k);
    }
    idx.sort_by(cmp);
    idx.into_iter()
        .map(|i| (i, logits[i as usize] - lse))
        .collect()
}

/// log Σ exp(logits), summed in f64 after subtracting the maximum.
pub fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (logits
        .iter()
        .map(|&l| ((l - max) as f64).exp())
        .sum::<f64>())
    .ln() as f32
        + max
}

/// log p(target) under `logits`, the log-sum-exp in f64 as llama.cpp's perplexity does.
pub fn log_prob(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    (logits[target] - max) as f64 - sum.ln()
}

/// Byte offset where the earliest stop string starts, if any occurs.
fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

/// Length of the prefix of `text` that no stop string can still match into.
fn safe_emit_len(text: &str, stops: &[String]) -> usize {
    let mut safe = text.len();
    for s in stops.iter().filter(|s| !s.is_empty()) {
        // The longest suffix of text that is a proper prefix of s.
        for k in (1..s.len().min(text.len() + 1)).rev() {
            if text.is_char_boundary(text.len() - k)
                && s.is_char_boundary(k)
                && text.ends_with(&s[..k])
            {
                safe = safe.min(text.len() - k);
                break;
            }
        }
    }
    safe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_hold_back_partial_matches() {
        let stops = vec!["```".to_string(), "END".to_string()];
        assert_eq!(safe_emit_len("abc`", &stops), 3);
        assert_eq!(safe_emit_len("abc``", &stops), 3);
        assert_eq!(safe_emit_len("abcEN", &stops), 3);
        assert_eq!(safe_emit_len("abc", &stops), 3);
        assert_eq!(find_stop("x = 1\n```\nmore", &stops), Some(6));
        assert_eq!(find_stop("no stop", &stops), None);
        assert_eq!(safe_emit_len("é", &["éa".to_string()]), 0);
    }
}

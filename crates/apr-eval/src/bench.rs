//! llama-bench style speed: pp512 (one 512-token batch from an empty cache), tg128 (128
//! single-token steps from an empty cache) and tg128 x4 (4 sequences decoded together, one
//! batched forward pass per step), a warm-up run, then mean and sd over repetitions; plus the
//! machine's streaming read bandwidth, the floor of batch-1 decode.
//! Reference: llama.cpp tools/llama-bench/llama-bench.cpp (test_prompt, test_gen).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use apr_core::pool::{split_range, ThreadPool};
use apr_engine::sampling::Rng;
use apr_engine::{Engine, EngineError, Session};
use apr_models::Scratch;
use serde::Serialize;

pub const PP_TOKENS: usize = 512;
pub const TG_TOKENS: usize = 128;
/// Sequences decoded together in tg128 x4.
pub const TG_SEQS: usize = 4;
/// Bytes read per bandwidth pass: 1 GiB, far beyond any last-level cache.
pub const BW_BYTES: usize = 1 << 30;
/// Timed bandwidth passes; the best counts.
pub const BW_PASSES: usize = 3;
/// Words per thread-share boundary of the bandwidth buffer (one 4 KiB page).
const BW_ALIGN_WORDS: usize = 512;

#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub pp512_tok_s: f64,
    pub pp512_sd: f64,
    pub tg128_tok_s: f64,
    pub tg128_sd: f64,
    /// Tokens per second over all 4 sequences of tg128 x4 (4 x 128 tokens per run).
    pub tg128_x4_tok_s: f64,
    pub tg128_x4_sd: f64,
    pub threads: usize,
    pub kernel: String,
    pub reps: usize,
    pub model_bytes: u64,
    /// Weight bytes read per decoded token (all tensors but the embedding table).
    pub decode_weight_bytes: u64,
    /// Streaming read bandwidth of the bench threads, GB/s (1e9 bytes).
    pub read_gbs: f64,
    /// `decode_weight_bytes * tg128_tok_s / read bandwidth`: how close tg128 is to its floor.
    pub decode_bw_frac: f64,
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

/// Seconds for tg128 x4: every session starts from an empty cache and all take 128 steps
/// together, `ids[i]` feeding session `i`.
fn tg_multi(
    engine: &Engine,
    sessions: &mut [&mut Session<'_>],
    scratch: &mut Scratch,
    ids: &mut [u32],
) -> Result<f64, EngineError> {
    let n_vocab = engine.model.cfg.n_vocab as u32;
    for s in sessions.iter_mut() {
        s.tokens.clear();
    }
    let t = Instant::now();
    for _ in 0..TG_TOKENS {
        engine.step_many(sessions, ids, scratch)?;
        ids.iter_mut().for_each(|id| *id = (*id + 1) % n_vocab);
    }
    Ok(t.elapsed().as_secs_f64())
}

pub fn bench(
    engine: &Engine,
    reps: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchResult, EngineError> {
    let n_vocab = engine.model.cfg.n_vocab;
    let mut rng = Rng::new(42);
    let mut session = engine.session(PP_TOKENS + TG_TOKENS);
    let mut multi: Vec<Session> = (0..TG_SEQS).map(|_| engine.session(TG_TOKENS)).collect();
    let mut multi: Vec<&mut Session> = multi.iter_mut().collect();
    let mut scratch = Scratch::default();
    let reps = reps.max(1);
    let (mut pp, mut tg, mut tg4) = (Vec::new(), Vec::new(), Vec::new());
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
        let mut ids = toks[1..=TG_SEQS].to_vec();
        let secs = tg_multi(engine, &mut multi, &mut scratch, &mut ids)?;
        let tg4_s = (TG_SEQS * TG_TOKENS) as f64 / secs;
        if r > 0 {
            pp.push(pp_s);
            tg.push(tg_s);
            tg4.push(tg4_s);
            progress(&format!(
                "rep {r}/{reps}: pp512 {pp_s:.1} t/s, tg128 {tg_s:.1} t/s, \
                 tg128 x{TG_SEQS} {tg4_s:.1} t/s"
            ));
        }
    }
    let (pp_m, pp_sd) = mean_sd(&pp);
    let (tg_m, tg_sd) = mean_sd(&tg);
    let (tg4_m, tg4_sd) = mean_sd(&tg4);
    let read_gbs = read_bandwidth(&engine.pool, BW_BYTES, BW_PASSES);
    progress(&format!("read bandwidth: {read_gbs:.2} GB/s"));
    let decode_weight_bytes = engine.model.decode_weight_bytes() as u64;
    let decode_bw_frac = if read_gbs > 0.0 {
        decode_weight_bytes as f64 * tg_m / (read_gbs * 1e9)
    } else {
        0.0
    };
    Ok(BenchResult {
        pp512_tok_s: pp_m,
        pp512_sd: pp_sd,
        tg128_tok_s: tg_m,
        tg128_sd: tg_sd,
        tg128_x4_tok_s: tg4_m,
        tg128_x4_sd: tg4_sd,
        threads: engine.pool.n_threads(),
        kernel: apr_core::quant::kernel_name().to_string(),
        reps,
        model_bytes: engine.file.total_bytes() as u64,
        decode_weight_bytes,
        read_gbs,
        decode_bw_frac,
    })
}

/// Streaming read bandwidth of `pool`'s threads in GB/s (1e9 bytes per GB): a buffer of
/// `bytes` is first written by the same threads (so its pages exist and are not the shared
/// zero page), then each pass has every thread sum its contiguous share as 64-bit words;
/// the best of `passes` timed passes counts. The sums are kept, so no load is optimized away.
pub fn read_bandwidth(pool: &ThreadPool, bytes: usize, passes: usize) -> f64 {
    let n = (bytes / 8).max(1);
    let nt = pool.n_threads();
    let mut buf = vec![0u64; n]; // [n] words, not yet backed by pages
    {
        let mut parts = Vec::with_capacity(nt);
        let mut rest = buf.as_mut_slice();
        for i in 0..nt {
            let (a, b) = rest.split_at_mut(split_range(n, i, nt, BW_ALIGN_WORDS).len());
            parts.push(Mutex::new(a));
            rest = b;
        }
        pool.run(|i, _| {
            let mut p = parts[i].lock().unwrap_or_else(|e| e.into_inner());
            for (j, w) in p.iter_mut().enumerate() {
                *w = j as u64 ^ 0x9e37_79b9_7f4a_7c15;
            }
        });
    }
    let sink = AtomicU64::new(0);
    let mut best = 0f64;
    for _ in 0..passes.max(1) {
        let t = Instant::now();
        pool.run(|i, nt| {
            let s = sum_words(&buf[split_range(n, i, nt, BW_ALIGN_WORDS)]);
            sink.fetch_xor(s, Ordering::Relaxed);
        });
        let secs = t.elapsed().as_secs_f64();
        if secs > 0.0 {
            best = best.max((n * 8) as f64 / secs / 1e9);
        }
    }
    std::hint::black_box(sink.load(Ordering::Relaxed));
    best
}

/// Wrapping sum of `w` over eight independent lanes (vectorized; the adds keep up with loads).
fn sum_words(w: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let chunks = w.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(0u64, |a, &x| a.wrapping_add(x));
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(x);
        }
    }
    acc.iter().fold(tail, |a, &x| a.wrapping_add(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_bandwidth_reads_a_small_buffer() {
        let pool = ThreadPool::new(2);
        let gbs = read_bandwidth(&pool, 1 << 20, 2);
        assert!(gbs.is_finite() && gbs > 0.0, "{gbs}");
        let w: Vec<u64> = (1..=19).collect();
        assert_eq!(sum_words(&w), 190);
    }
}

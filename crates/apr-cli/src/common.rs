//! Arguments and helpers shared by several subcommands.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use apr_engine::{resolve_model, Engine, SamplerConfig};
use clap::Args;

/// Seed value that asks for a fresh random seed.
pub const RANDOM_SEED: u64 = u64::MAX;

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// GGUF file, Hugging Face directory (config.json + safetensors), or a model name in the
    /// cache ($APR_MODELS_DIR, default ~/.cache/apr/models)
    pub model: String,
    /// Threads (default: all cores)
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// KV cache element type: f16 (llama.cpp's default) or f32 (f32 end to end, for parity)
    #[arg(long, default_value = "f16", value_parser = parse_kv_type)]
    pub kv_type: apr_models::KvType,
}

fn parse_kv_type(s: &str) -> std::result::Result<apr_models::KvType, String> {
    apr_models::KvType::from_name(s).ok_or_else(|| format!("{s:?} is not f16 or f32"))
}

impl ModelArgs {
    pub fn path(&self) -> Result<PathBuf> {
        Ok(resolve_model(&self.model)?)
    }

    pub fn threads(&self) -> usize {
        self.threads.filter(|&t| t > 0).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    pub fn load(&self) -> Result<Engine> {
        let path = self.path()?;
        // APR_KERNEL=scalar|avx2|avx512vnni picks a kernel family (A/B checks of the others).
        if let Ok(k) = std::env::var("APR_KERNEL") {
            apr_core::quant::force_kernel(&k)
                .map_err(anyhow::Error::msg)
                .context("APR_KERNEL is set to a kernel family this machine cannot run")?;
        }
        let t = std::time::Instant::now();
        let mut e = Engine::load(&path, self.threads())
            .with_context(|| format!("cannot load model {}", path.display()))?;
        e.kv_type = self.kv_type;
        eprintln!(
            "loaded {} ({} layers, {} threads, kernel {}) in {:.2}s",
            path.display(),
            e.model.cfg.n_layer,
            e.pool.n_threads(),
            apr_core::quant::kernel_name(),
            t.elapsed().as_secs_f64()
        );
        Ok(e)
    }
}

#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 = greedy
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep the K most likely tokens (0 = off)
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling mass (1.0 = off)
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens below this fraction of the top token's probability (0 = off)
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalty for tokens among the last 64 (1.0 = off)
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed (default: a fresh one, printed on stderr)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Most tokens to generate
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: usize,
    /// Stop when this text is generated (repeatable)
    #[arg(long)]
    pub stop: Vec<String>,
    /// Report the N most likely tokens with log-probabilities at each step (JSON "logprobs")
    #[arg(long, default_value_t = 0)]
    pub logprobs: usize,
    /// Context size in tokens
    #[arg(long, default_value_t = apr_engine::generate::DEFAULT_CTX)]
    pub ctx: usize,
}

impl SamplingArgs {
    pub fn validate(&self) -> Result<()> {
        anyhow::ensure!(
            self.temperature.is_finite() && self.temperature >= 0.0,
            "--temperature must be >= 0"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.top_p),
            "--top-p must be in [0, 1]"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.min_p),
            "--min-p must be in [0, 1]"
        );
        anyhow::ensure!(
            self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0,
            "--repeat-penalty must be > 0"
        );
        anyhow::ensure!(self.ctx >= 1, "--ctx must be at least 1");
        Ok(())
    }

    pub fn sampler(&self) -> SamplerConfig {
        let seed = match self.seed {
            Some(s) if s != RANDOM_SEED => s,
            _ => {
                let s = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                eprintln!("seed {s}");
                s
            }
        };
        SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed,
        }
    }

    pub fn gen_options(&self) -> apr_engine::GenOptions {
        apr_engine::GenOptions {
            max_tokens: self.max_tokens,
            sampler: self.sampler(),
            stop: self.stop.clone(),
            logprobs: self.logprobs,
        }
    }
}

/// Print exactly one JSON object on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// A stage's progress on stderr, at most twice a second: `[stage done/total] (elapsed)`.
pub struct Progress {
    started: std::time::Instant,
    last: Option<std::time::Instant>,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            started: std::time::Instant::now(),
            last: None,
        }
    }

    pub fn update(&mut self, stage: &str, done: usize, total: usize) {
        let now = std::time::Instant::now();
        if done < total && self.last.is_some_and(|l| (now - l).as_secs_f64() < 0.5) {
            return;
        }
        self.last = Some(now);
        eprint!(
            "\r[{stage} {done}/{total}] {:.1}s   ",
            self.started.elapsed().as_secs_f64()
        );
    }

    pub fn finish(&self) {
        eprintln!();
    }
}

/// Perplexity of a model before and after an operation, on the same text (512-token chunks).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PplPair {
    pub before: f64,
    pub after: f64,
    /// (after / before - 1) x 100.
    pub change_pct: f64,
    pub chunks: usize,
}

impl std::fmt::Display for PplPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "perplexity {:.4} -> {:.4} ({:+.2}%, {} chunks)",
            self.before, self.after, self.change_pct, self.chunks
        )
    }
}

/// `--eval-ppl`: the perplexity of `before` and of `after` on `text`.
pub fn eval_ppl_pair(
    args: &ModelArgs,
    before: &std::path::Path,
    after: &std::path::Path,
    text: &str,
) -> Result<PplPair> {
    let one = |p: &std::path::Path| -> Result<apr_eval::perplexity::PerplexityResult> {
        let mut e = Engine::load(p, args.threads())
            .with_context(|| format!("cannot load model {}", p.display()))?;
        e.kv_type = args.kv_type;
        let mut bar = Progress::new();
        let r = apr_eval::perplexity::perplexity(&e, text, 512, &mut |d, t, _| {
            bar.update("perplexity", d, t)
        })
        .with_context(|| format!("perplexity of {}", p.display()))?;
        bar.finish();
        Ok(r)
    };
    let b = one(before)?;
    let a = one(after)?;
    Ok(PplPair {
        before: b.ppl,
        after: a.ppl,
        change_pct: (a.ppl / b.ppl - 1.0) * 100.0,
        chunks: a.chunks,
    })
}

/// Output options shared by the commands that write a model (merge, prune).
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// gguf or safetensors (a Hugging Face directory)
    #[arg(long, default_value = "gguf")]
    pub format: String,
    /// Largest safetensors shard in bytes
    #[arg(long, default_value_t = apr_ops::convert::DEFAULT_SHARD_BYTES)]
    pub max_shard_bytes: usize,
    /// Perplexity on this text before and after (llama-perplexity's method, 512-token chunks)
    #[arg(long)]
    pub eval_ppl: Option<PathBuf>,
}

impl OutputArgs {
    /// The --eval-ppl text, read before any work starts.
    pub fn eval_text(&self) -> Result<Option<String>> {
        self.eval_ppl
            .as_ref()
            .map(|f| {
                std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))
            })
            .transpose()
    }
}

/// Prints a command's JSON summary with the `eval_ppl` object added when there is one.
pub fn print_json_with_ppl<T: serde::Serialize>(v: &T, ppl: Option<&PplPair>) -> Result<()> {
    let mut v = serde_json::to_value(v)?;
    if let Some(p) = ppl {
        v["eval_ppl"] = serde_json::to_value(p)?;
    }
    print_json(&v)
}

/// The calibration text used when --calib is not given (never the evaluation text).
pub const DEFAULT_CALIB: &str = "../shared/data/calib-code.py.txt";

/// The calibration text of `--calib` (or [`DEFAULT_CALIB`]).
pub fn read_calib(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let file = file.unwrap_or(std::path::Path::new(DEFAULT_CALIB));
    std::fs::read_to_string(file).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the calibration text {} (--calib): {e}",
            file.display()
        )
    })
}

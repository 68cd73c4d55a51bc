//! `apr eval ...`: perplexity, and the code benchmarks (HumanEval, HumanEval+, MBPP, MBPP+)
//! through apr_eval::harness.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use apr_eval::datasets::{Benchmark, Subset};
use apr_eval::harness::{self, EvalConfig, ModelSide, Progress};
use apr_eval::results::Rerank;
use clap::Subcommand;

use crate::common::{print_json, ModelArgs};

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Perplexity the way llama-perplexity computes it
    Perplexity(PerplexityArgs),
    /// HumanEval (164 tasks, OpenAI's tests): generate, run in the sandbox, pass@k
    Humaneval(CodeArgs),
    /// HumanEval+ (EvalPlus v0.1.10): base and plus verdicts the EvalPlus way
    Humanevalplus(CodeArgs),
    /// MBPP (test split 11-510 by default; --subset full|sanitized)
    Mbpp(CodeArgs),
    /// MBPP+ (EvalPlus v0.2.0, 378 tasks): base and plus verdicts the EvalPlus way
    Mbppplus(CodeArgs),
}

#[derive(clap::Args, Debug)]
pub struct CodeArgs {
    /// GGUF file or cached model name (not needed with --samples)
    pub model: Option<String>,
    /// Threads for generation (default: all cores)
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// MBPP task set: test (11-510), full (974) or sanitized (427)
    #[arg(long)]
    pub subset: Option<String>,
    /// A dataset file of the same schema instead of the built-in one (.jsonl, .jsonl.gz, .json)
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Score completions made elsewhere (EvalPlus format: task_id + solution or completion)
    #[arg(long)]
    pub samples: Option<PathBuf>,
    /// Samples per task
    #[arg(long, default_value_t = 1)]
    pub n_samples: usize,
    /// Sampling temperature (0 = greedy)
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling mass (1.0 = off)
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Base seed; each sample's seed derives from it, the task and the sample index
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Prompt strategy (see docs/prompts.md)
    #[arg(long, default_value = "qwen-instruct")]
    pub prompt_strategy: String,
    /// Pick one of the n samples per task for a reranked pass@1: logprob, majority, self-test
    #[arg(long)]
    pub rerank: Option<Rerank>,
    /// Wall-clock limit per sample for humaneval/mbpp, in seconds (the plus benchmarks use
    /// EvalPlus's per-input limits)
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Parallel sandbox workers (default: all cores)
    #[arg(long)]
    pub workers: Option<usize>,
    /// Only the first N tasks
    #[arg(long)]
    pub limit: Option<usize>,
    /// Results folder (default: results/<model or samples file>/<benchmark>-<strategy>)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Most tokens per answer (default: the strategy's)
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Context (KV cache) size for generation
    #[arg(long, default_value_t = 4096)]
    pub ctx: usize,
    /// Print the summary as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text file to score
    #[arg(long)]
    pub data: std::path::PathBuf,
    /// Chunk (context) size in tokens
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn run(c: EvalCommand) -> Result<()> {
    match c {
        EvalCommand::Perplexity(a) => perplexity(a),
        EvalCommand::Humaneval(a) => code(Benchmark::HumanEval, a),
        EvalCommand::Humanevalplus(a) => code(Benchmark::HumanEvalPlus, a),
        EvalCommand::Mbpp(a) => code(Benchmark::Mbpp, a),
        EvalCommand::Mbppplus(a) => code(Benchmark::MbppPlus, a),
    }
}

fn stem(p: &std::path::Path) -> String {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    name.trim_end_matches(".gguf")
        .trim_end_matches(".jsonl")
        .to_string()
}

fn code(bench: Benchmark, a: CodeArgs) -> Result<()> {
    let subset = match &a.subset {
        None => None,
        Some(s) if matches!(bench, Benchmark::Mbpp) => {
            Some(s.parse::<Subset>().map_err(anyhow::Error::msg)?)
        }
        Some(_) => bail!("--subset applies to mbpp only"),
    };
    if a.n_samples == 0 {
        bail!("--n-samples must be at least 1");
    }
    if !(a.timeout > 0.0 && a.timeout.is_finite()) {
        bail!("--timeout must be a positive number of seconds");
    }
    if a.rerank.is_some() && a.samples.is_some() {
        bail!("--rerank needs generated samples (log-probs, visible tests); not with --samples");
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model_args = match (&a.model, &a.samples) {
        (Some(m), None) => Some(ModelArgs {
            model: m.clone(),
            threads: a.threads,
            kv_type: Default::default(),
        }),
        (None, Some(_)) => None,
        (Some(_), Some(_)) => bail!("give a model or --samples, not both"),
        (None, None) => bail!("give a model to generate with, or --samples FILE to score"),
    };
    let path = model_args.as_ref().map(|m| m.path()).transpose()?;
    let out = a.out.clone().unwrap_or_else(|| {
        let who = path
            .as_deref()
            .or(a.samples.as_deref())
            .map(stem)
            .unwrap_or_default();
        let what = if a.samples.is_some() {
            bench.name().to_string()
        } else {
            format!("{}-{}", bench.name(), a.prompt_strategy)
        };
        PathBuf::from("results").join(who).join(what)
    });
    let cfg = EvalConfig {
        bench,
        subset,
        data: a.data.clone(),
        n_samples: a.n_samples,
        temperature: a.temperature,
        top_p: a.top_p,
        seed: a.seed,
        strategy: a.prompt_strategy.clone(),
        rerank: a.rerank,
        timeout_s: a.timeout,
        workers: a.workers.filter(|&w| w > 0).unwrap_or(cores),
        limit: a.limit,
        out: out.clone(),
        max_tokens: a.max_tokens,
        ctx: a.ctx,
    };
    // Validate the strategy before the model loads.
    apr_eval::prompts::strategy(&cfg.strategy)?;
    let engine = model_args.as_ref().map(|m| m.load()).transpose()?;
    let side = match (&engine, &path) {
        (Some(e), Some(p)) => {
            eprintln!("hashing {} ...", p.display());
            Some(ModelSide {
                engine: e,
                path: p,
                sha256: harness::file_sha256(p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
            })
        }
        _ => None,
    };
    install_interrupt_handler();
    eprintln!("results in {}", out.display());
    let bar = ProgressLine::new();
    let summary = harness::evaluate(
        &cfg,
        side,
        a.samples.as_deref(),
        &|p| bar.update(p),
        &|msg| bar.status(msg),
    )?;
    bar.finish();
    if a.json {
        print_json(&summary)?;
    } else {
        print_summary(&summary);
    }
    if summary["interrupted"].as_bool() == Some(true) {
        eprintln!("interrupted: rerun the same command to resume");
        std::process::exit(130);
    }
    Ok(())
}

fn print_summary(s: &serde_json::Value) {
    let f = |v: &serde_json::Value| {
        v.as_f64()
            .map(|x| format!("{:.2}%", 100.0 * x))
            .unwrap_or_else(|| "-".into())
    };
    let line = |name: &str, v: &serde_json::Value| {
        println!(
            "{name}pass@1 {}  pass@10 {}  pass@100 {}",
            f(&v["pass@1"]),
            f(&v["pass@10"]),
            f(&v["pass@100"])
        );
    };
    println!(
        "{}: {} tasks, {} samples",
        s["benchmark"].as_str().unwrap_or(""),
        s["n_tasks"],
        s["n_samples"]
    );
    if s["plus"].is_object() {
        line("base  ", &s["base"]);
        line("plus  ", &s["plus"]);
    } else {
        line("", s);
    }
}

/// Ctrl-C once: stop generating, score what is in flight, write the summary. Twice: exit.
fn install_interrupt_handler() {
    extern "C" fn on_sigint(_: libc::c_int) {
        if harness::INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(130) };
        }
    }
    // SAFETY: the handler only touches an atomic and calls _exit.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
}

/// A progress line on stderr: scored/total, ETA, running pass@1, generation speed.
struct ProgressLine {
    start: std::time::Instant,
    tty: bool,
    last: std::sync::Mutex<std::time::Instant>,
}

impl ProgressLine {
    fn new() -> Self {
        use std::io::IsTerminal;
        ProgressLine {
            start: std::time::Instant::now(),
            tty: std::io::stderr().is_terminal(),
            last: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    fn update(&self, p: Progress) {
        let el = self.start.elapsed().as_secs_f64();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        // Without a terminal, a line every 10 s at most (and the last one).
        if !self.tty && last.elapsed().as_secs_f64() < 10.0 && p.scored < p.total {
            return;
        }
        *last = std::time::Instant::now();
        let frac = p.scored as f64 / p.total.max(1) as f64;
        let eta = if p.scored > 0 && frac < 1.0 {
            el / frac * (1.0 - frac)
        } else {
            0.0
        };
        let pass = if p.scored > 0 {
            100.0 * p.passed as f64 / p.scored as f64
        } else {
            0.0
        };
        let tps = if p.gen_secs > 0.0 {
            p.gen_tokens as f64 / p.gen_secs
        } else {
            0.0
        };
        let width = 24;
        let filled = (frac * width as f64) as usize;
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        let msg = format!(
            "[{bar}] {}/{} pass {:.1}%  {:.1} tok/s  elapsed {} eta {}",
            p.scored,
            p.total,
            pass,
            tps,
            hms(el),
            hms(eta)
        );
        if self.tty {
            eprint!("\r\x1b[2K{msg}");
        } else {
            eprintln!("{msg}");
        }
    }

    fn status(&self, msg: &str) {
        if self.tty {
            eprint!("\r\x1b[2K{msg}");
        } else {
            eprintln!("{msg}");
        }
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

fn hms(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn perplexity(a: PerplexityArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.data)
        .with_context(|| format!("cannot read {}", a.data.display()))?;
    let engine = a.model.load()?;
    let t = std::time::Instant::now();
    let r = apr_eval::perplexity::perplexity(&engine, &text, a.ctx, &mut |done, total, ppl| {
        eprint!(
            "\r[{done}/{total}] ppl {ppl:.4}  ({:.1}s)",
            t.elapsed().as_secs_f64()
        );
    })?;
    eprintln!();
    if a.json {
        print_json(&r)
    } else {
        println!(
            "ppl = {:.4} +/- {:.4} ({} chunks, {} tokens scored)",
            r.ppl, r.ppl_sd, r.chunks, r.tokens_scored
        );
        Ok(())
    }
}

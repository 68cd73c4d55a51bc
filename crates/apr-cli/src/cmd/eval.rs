//! `apr eval ...`: evaluations (perplexity now; HumanEval/MBPP come with the harness).

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::common::{print_json, ModelArgs};

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Perplexity the way llama-perplexity computes it
    Perplexity(PerplexityArgs),
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
    }
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

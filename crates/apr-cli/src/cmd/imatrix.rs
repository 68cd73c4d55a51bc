//! `apr imatrix MODEL --data FILE OUT [--ctx N] [--chunks N] [--process-output] [--json]`:
//! an importance matrix from a calibration text, in the GGUF format llama-imatrix writes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use apr_ops::calibrate::{collect, CalibOptions};

use crate::common::{print_json, ModelArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Calibration text (never the evaluation text: ../shared/data/calib-code.py.txt)
    #[arg(long)]
    pub data: PathBuf,
    /// Output imatrix file (GGUF)
    pub out: PathBuf,
    /// Tokens per chunk
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Stop after this many chunks (default: the whole text)
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Also collect the LM head's input (llama-imatrix's --process-output)
    #[arg(long)]
    pub process_output: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let text = std::fs::read_to_string(&a.data)
        .with_context(|| format!("cannot read {}", a.data.display()))?;
    let engine = a.model.load()?;
    let opts = CalibOptions {
        ctx: a.ctx,
        max_chunks: a.chunks,
        include_output: a.process_output,
    };
    let start = std::time::Instant::now();
    let cal = collect(&engine, &text, &opts, &mut |done, total, ppl| {
        eprint!("\r[{done}/{total}] chunks, perplexity {ppl:.4}   ");
    })?;
    eprintln!();
    let imatrix = cal.to_imatrix(&a.data.display().to_string(), a.ctx);
    imatrix
        .write(&a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    let summary = serde_json::json!({
        "out": a.out.display().to_string(),
        "chunks": cal.chunks,
        "chunk_size": a.ctx,
        "tensors": imatrix.entries.len(),
        "ppl": cal.ppl,
        "seconds": start.elapsed().as_secs_f64(),
    });
    if a.json {
        print_json(&summary)?;
    } else {
        println!(
            "{}: {} tensors from {} chunks of {} tokens (perplexity {:.4})",
            a.out.display(),
            imatrix.entries.len(),
            cal.chunks,
            a.ctx,
            cal.ppl
        );
    }
    Ok(())
}

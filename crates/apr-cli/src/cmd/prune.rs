//! `apr prune MODEL OUT --method magnitude|wanda|sparsegpt|blocks [--sparsity S]
//! [--pattern N:M] [--drop N] [--calib FILE] [--calib-samples N] [--calib-len L]
//! [--eval-ppl FILE]`: pruning, into GGUF or a Hugging Face directory.

use std::path::PathBuf;

use anyhow::{Context, Result};
use apr_formats::Provenance;
use apr_ops::prune::{self, Pattern, PruneOptions};

use crate::common::{eval_ppl_pair, print_json_with_ppl, ModelArgs, OutputArgs, Progress};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output: a GGUF file, or a directory with --format safetensors
    pub out: PathBuf,
    /// magnitude, wanda, sparsegpt or blocks
    #[arg(long)]
    pub method: String,
    /// Fraction of each decoder matrix's weights to zero (0 < S < 1)
    #[arg(long)]
    pub sparsity: Option<f64>,
    /// N:M structured sparsity: N of every M consecutive inputs zeroed (2:4, 4:8)
    #[arg(long)]
    pub pattern: Option<String>,
    /// Decoder blocks to drop (--method blocks)
    #[arg(long)]
    pub drop: Option<usize>,
    /// Calibration text (default: ../shared/data/calib-code.py.txt; never the evaluation text)
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Calibration samples
    #[arg(long, default_value_t = prune::DEFAULT_CALIB_SAMPLES)]
    pub calib_samples: usize,
    /// Tokens per calibration sample
    #[arg(long, default_value_t = prune::DEFAULT_CALIB_LEN)]
    pub calib_len: usize,
    /// Weight type of the output: f32, f16, bf16 or q8_0 (default f16; blocks into GGUF keeps
    /// every tensor's type)
    #[arg(long = "type")]
    pub ty: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let path = a.model.path()?;
    let pattern = a.pattern.as_deref().map(Pattern::parse).transpose()?;
    let mut o = PruneOptions {
        method: a.method.clone(),
        sparsity: a.sparsity,
        pattern,
        drop: a.drop,
        calib: None,
        calib_samples: a.calib_samples,
        calib_len: a.calib_len,
        threads: a.model.threads(),
        ty: a.ty.clone(),
        format: a.output.format.clone(),
        shard_bytes: a.output.max_shard_bytes,
    };
    prune::validate(&o)?;
    if prune::method(&a.method)?.calibrated() {
        o.calib = Some(crate::common::read_calib(a.calib.as_deref())?);
    }
    let eval_text = a.output.eval_text()?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let prov = Provenance::of(command, &path, env!("CARGO_PKG_VERSION"))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut bar = Progress::new();
    let r = prune::prune(&path, &a.out, &o, &prov, &mut |stage, done, total| {
        bar.update(stage, done, total)
    })
    .with_context(|| format!("cannot prune {}", path.display()))?;
    bar.finish();
    let ppl = match &eval_text {
        Some(text) => Some(eval_ppl_pair(&a.model, &path, &a.out, text)?),
        None => None,
    };
    if a.json {
        print_json_with_ppl(&r, ppl.as_ref())?;
    } else {
        let what = if r.dropped.is_empty() {
            format!(
                "{} matrices at {:.2}% sparsity",
                r.matrices_pruned,
                100.0 * r.sparsity
            )
        } else {
            format!("blocks {:?} dropped", r.dropped)
        };
        println!(
            "{}: {what} by {} ({} calibration tokens) in {:.1} s",
            r.output, r.method, r.calib_tokens, r.seconds
        );
        if let Some(p) = &ppl {
            println!("{p}");
        }
    }
    Ok(())
}

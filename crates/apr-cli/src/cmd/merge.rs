//! `apr merge --config merge.yaml OUT [--seed S] [--format gguf|safetensors] [--eval-ppl FILE]
//! [--json]`: mergekit's configurations, run tensor by tensor into a GGUF file or a Hugging
//! Face directory.

use std::path::PathBuf;

use anyhow::{Context, Result};
use apr_ops::merge::config::MergeConfig;
use apr_ops::merge::run::{run_merge, MergeOptions};

use crate::common::{eval_ppl_pair, print_json_with_ppl, ModelArgs, OutputArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// mergekit YAML configuration (model paths: GGUF files or cached model names)
    #[arg(long)]
    pub config: PathBuf,
    /// Output: a GGUF file, or a directory with --format safetensors
    pub out: PathBuf,
    /// Seed of the random methods (DARE, DELLA)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Threads for --eval-ppl (default: all cores)
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("cannot read {}", a.config.display()))?;
    let cfg = MergeConfig::from_yaml(&text)
        .with_context(|| format!("{} is not a valid merge configuration", a.config.display()))?;
    let opts = MergeOptions {
        seed: a.seed,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        config_path: a.config.clone(),
        format: a.output.format.clone(),
        shard_bytes: a.output.max_shard_bytes,
    };
    let eval_text = a.output.eval_text()?;
    let mut last = std::time::Instant::now();
    let summary = run_merge(&cfg, &a.out, &opts, &mut |done, total, name| {
        if last.elapsed().as_secs_f64() > 0.5 || done == total {
            eprint!("\r[{done}/{total}] {name:<40}");
            last = std::time::Instant::now();
        }
    })
    .with_context(|| format!("merging into {}", a.out.display()))?;
    eprintln!();
    let ppl = match &eval_text {
        Some(text) => {
            let before = cfg
                .base_model
                .clone()
                .unwrap_or_else(|| cfg.referenced_models()[0].clone());
            let m = ModelArgs {
                model: before,
                threads: a.threads,
                kv_type: Default::default(),
            };
            Some(eval_ppl_pair(&m, &m.path()?, &summary.out, text)?)
        }
        None => None,
    };
    if a.json {
        print_json_with_ppl(&summary, ppl.as_ref())?;
    } else {
        println!(
            "{}: {} tensors, {} layers, {} ({} bytes) by {} in {:.1} s",
            summary.out.display(),
            summary.tensors,
            summary.layers,
            summary.dtype,
            summary.bytes,
            summary.method,
            summary.seconds
        );
        if let Some(p) = &ppl {
            println!("{p}");
        }
    }
    Ok(())
}

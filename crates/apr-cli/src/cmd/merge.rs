//! `apr merge --config merge.yaml OUT [--seed S] [--json]`: mergekit's configurations, run
//! tensor by tensor into a GGUF file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use apr_ops::merge::config::MergeConfig;
use apr_ops::merge::run::{run_merge, MergeOptions};

use crate::common::print_json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// mergekit YAML configuration (model paths: GGUF files or cached model names)
    #[arg(long)]
    pub config: PathBuf,
    /// Output GGUF file
    pub out: PathBuf,
    /// Seed of the random methods (DARE, DELLA)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
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
    };
    let mut last = std::time::Instant::now();
    let summary = run_merge(&cfg, &a.out, &opts, &mut |done, total, name| {
        if last.elapsed().as_secs_f64() > 0.5 || done == total {
            eprint!("\r[{done}/{total}] {name:<40}");
            last = std::time::Instant::now();
        }
    })
    .with_context(|| format!("merging into {}", a.out.display()))?;
    eprintln!();
    if a.json {
        print_json(&summary)?;
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
    }
    Ok(())
}

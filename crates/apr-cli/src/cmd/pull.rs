//! `apr pull REPO[/FILE] [--revision R] [--include GLOB]... [--json]`.

use anyhow::{Context, Result};
use apr_hub::{Hub, HubConfig, PullSpec};

use crate::common::print_json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// owner/name (a snapshot of the repo) or owner/name/FILE (one file into the model cache)
    #[arg(value_name = "REPO[/FILE]")]
    pub target: String,
    /// Branch, tag or commit
    #[arg(long, value_name = "R", default_value = apr_hub::DEFAULT_REVISION)]
    pub revision: String,
    /// Snapshot files to take (repeatable; `*` stays within a directory, `**` crosses them);
    /// default: config.json, *.safetensors, the index, tokenizer files, generation_config.json
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Print {"repo","revision","commit","files":[{"path","bytes","sha256"}],"dir"} on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let (repo, file) = apr_hub::parse_target(&a.target)?;
    anyhow::ensure!(
        file.is_none() || a.include.is_empty(),
        "--include picks files of a snapshot; it cannot be combined with REPO/FILE"
    );
    let cfg = HubConfig::from_env()?;
    let hub = Hub::new(cfg)?;
    let spec = PullSpec {
        repo,
        file,
        revision: a.revision,
        include: a.include,
        cache_dir: apr_engine::resolve::models_dir(),
    };
    let report = apr_hub::pull(&hub, &spec, |f| {
        let what = if f.downloaded {
            "downloaded"
        } else {
            "up to date"
        };
        eprintln!("{what}: {} ({} bytes)", f.local.display(), f.bytes);
    })
    .with_context(|| format!("cannot pull {} from {}", a.target, hub.endpoint()))?;
    if a.json {
        print_json(&serde_json::to_value(&report)?)
    } else {
        // One file: its path; a snapshot: its directory.
        match (&spec.file, report.files.as_slice()) {
            (Some(_), [f]) => println!("{}", f.local.display()),
            _ => println!("{}", report.dir.display()),
        }
        Ok(())
    }
}

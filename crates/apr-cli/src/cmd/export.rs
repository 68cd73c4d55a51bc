//! `apr export MODEL OUT --format safetensors|gguf [--type f32|f16|bf16]`: a model as a
//! Hugging Face directory or a re-typed GGUF file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use apr_formats::Provenance;
use apr_ops::export::ExportOptions;

use crate::common::{print_json, ModelArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// GGUF file, Hugging Face directory or cached model name
    pub model: String,
    /// Output: a directory (safetensors) or a file (gguf)
    pub out: PathBuf,
    /// safetensors (a Hugging Face directory) or gguf
    #[arg(long, default_value = "safetensors")]
    pub format: String,
    /// Weight type: f32, f16 or bf16
    #[arg(long = "type", default_value = "f32")]
    pub ty: String,
    /// Largest safetensors shard in bytes
    #[arg(long, default_value_t = apr_ops::convert::DEFAULT_SHARD_BYTES)]
    pub max_shard_bytes: usize,
    /// Print one JSON object with output, tensors, bytes, files
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    anyhow::ensure!(a.max_shard_bytes > 0, "--max-shard-bytes must be positive");
    let path = ModelArgs {
        model: a.model.clone(),
        threads: None,
        kv_type: Default::default(),
    }
    .path()?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let prov = Provenance::of(command, &path, env!("CARGO_PKG_VERSION"))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let o = ExportOptions {
        format: &a.format,
        ty: &a.ty,
        shard_bytes: a.max_shard_bytes,
    };
    let r = apr_ops::export::export(&path, &a.out, &o, &prov)
        .with_context(|| format!("cannot export {}", path.display()))?;
    if a.json {
        print_json(&serde_json::to_value(&r)?)?;
    } else {
        eprintln!(
            "wrote {} ({} tensors, {} bytes)",
            r.output, r.tensors, r.bytes
        );
    }
    Ok(())
}

//! `apr import HF_DIR OUT.gguf [--type f32|f16|bf16|q8_0]`: a Hugging Face directory as GGUF.

use std::path::PathBuf;

use anyhow::{Context, Result};
use apr_formats::Provenance;

use crate::common::print_json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Hugging Face model directory (config.json, *.safetensors, tokenizer.json)
    pub dir: PathBuf,
    /// Output GGUF file
    pub out: PathBuf,
    /// Weight type of the 2-D tensors: f32, f16, bf16 or q8_0 (norms and biases stay f32)
    #[arg(long = "type", default_value = "f16")]
    pub ty: String,
    /// Print one JSON object with output, tensors, bytes, files
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let prov = Provenance::of(command, &a.dir, env!("CARGO_PKG_VERSION"))
        .with_context(|| format!("cannot read {}", a.dir.display()))?;
    let r = apr_ops::import::import(&a.dir, &a.out, &a.ty, &prov)
        .with_context(|| format!("cannot import {}", a.dir.display()))?;
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

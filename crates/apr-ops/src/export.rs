//! `apr export MODEL OUT --format safetensors|gguf`: a model (GGUF file or HF directory) as
//! an HF directory of float safetensors that transformers loads (names and llama's q/k
//! permutation reversed, config and tokenizer files built from the GGUF metadata), or as a
//! GGUF file re-typed to f32/f16/bf16.

use std::path::Path;

use apr_formats::Provenance;

use crate::convert::{out_type, write_gguf, write_hf, ConvertError, Report, Result};

/// Output formats: one line each.
pub const FORMATS: &[&str] = &["safetensors", "gguf"];

/// What to export and how.
pub struct ExportOptions<'a> {
    pub format: &'a str,
    pub ty: &'a str,
    /// Largest safetensors shard.
    pub shard_bytes: usize,
}

pub fn export(model: &Path, out: &Path, o: &ExportOptions, prov: &Provenance) -> Result<Report> {
    let (t, file_type) = out_type(o.ty)?;
    if t == apr_core::GgmlType::Q8_0 {
        return Err(ConvertError::Invalid(
            "export writes float weights: --type f32, f16 or bf16".into(),
        ));
    }
    let src = apr_formats::open_model(model)?;
    match o.format {
        "safetensors" => write_hf(&src, out, t, o.shard_bytes, prov),
        "gguf" => write_gguf(&src, out, t, file_type, prov),
        f => Err(ConvertError::Invalid(format!(
            "--format {f:?} is not one of {}",
            FORMATS.join(", ")
        ))),
    }
}

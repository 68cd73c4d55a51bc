//! `apr import HF_DIR OUT.gguf`: a Hugging Face directory (config.json, safetensors,
//! tokenizer.json) as a GGUF file with the metadata llama.cpp's convert_hf_to_gguf.py writes.
//! The directory opens as a model image ([`apr_formats::hf_dir`]: names mapped, llama's q/k
//! permuted) and is written tensor by tensor in the chosen type.

use std::path::Path;

use apr_formats::Provenance;

use crate::convert::{out_type, write_gguf, ConvertError, Report, Result};

/// Imports `dir` into `out` with weights of type `ty` (`f32`, `f16`, `bf16`, `q8_0`).
pub fn import(dir: &Path, out: &Path, ty: &str, prov: &Provenance) -> Result<Report> {
    let (t, file_type) = out_type(ty)?;
    if !apr_formats::is_hf_dir(dir) {
        return Err(ConvertError::Invalid(format!(
            "{} is not a Hugging Face directory (no config.json)",
            dir.display()
        )));
    }
    let src = apr_formats::hf_dir::open_hf_dir(dir)?;
    write_gguf(&src, out, t, file_type, prov)
}

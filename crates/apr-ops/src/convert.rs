//! The tensor-by-tensor re-typing shared by `apr import` and `apr export`: a model image (a
//! GGUF file or an HF directory opened as one) written as GGUF of one float type (or Q8_0),
//! or as an HF directory. Each tensor is dequantized to f32 and encoded alone, so the peak
//! memory is near the largest tensor. Reference: llama.cpp convert_hf_to_gguf.py.

use std::path::{Path, PathBuf};

use apr_core::quant::{self, GgmlType, QK};
use apr_formats::gguf::{Gguf, TensorInfo, Value};
use apr_formats::hf_names::{gguf_to_hf, permute_rows, rope_permute_heads};
use apr_formats::provenance::{without_apr_keys, Provenance, HISTORY_KEY};
use apr_formats::safetensors::{SafetensorsWriter, StSpec};
use apr_formats::{GgufWriter, HfConfig, TensorSpec};

/// transformers' default `max_shard_size` (5 GB).
pub const DEFAULT_SHARD_BYTES: usize = 5_000_000_000;

/// The output weight types: (name, ggml type, llama.cpp `general.file_type`).
pub const OUT_TYPES: &[(&str, GgmlType, u32)] = &[
    ("f32", GgmlType::F32, 0),
    ("f16", GgmlType::F16, 1),
    ("bf16", GgmlType::BF16, 32),
    ("q8_0", GgmlType::Q8_0, 7),
];

/// Metadata keys the output rewrites (they describe the input's encoding).
const REWRITTEN_KEYS: &[&str] = &["general.file_type", "general.quantization_version"];
/// ggml's quantization version (written with quantized outputs).
const QUANTIZATION_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Gguf(#[from] apr_formats::GgufError),
    #[error(transparent)]
    Hf(#[from] apr_formats::HfError),
    #[error(transparent)]
    Safetensors(#[from] apr_formats::safetensors::SafetensorsError),
    #[error(transparent)]
    Quant(#[from] apr_core::quant::QuantError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, ConvertError>;

fn io(path: &Path) -> impl Fn(std::io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The ggml type and file type of a `--type` name.
pub fn out_type(name: &str) -> Result<(GgmlType, u32)> {
    OUT_TYPES
        .iter()
        .find(|t| t.0.eq_ignore_ascii_case(name))
        .map(|t| (t.1, t.2))
        .ok_or_else(|| {
            let known: Vec<_> = OUT_TYPES.iter().map(|t| t.0).collect();
            ConvertError::Invalid(format!(
                "--type {name:?} is not one of {}",
                known.join(", ")
            ))
        })
}

/// What a conversion wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub output: String,
    pub tensors: usize,
    pub bytes: u64,
    pub files: Vec<String>,
}

/// A tensor's elements as f32.
pub fn tensor_f32(g: &Gguf, t: &TensorInfo) -> Result<Vec<f32>> {
    let mut out = vec![0f32; t.n_elements() as usize];
    quant::dequantize(t.dtype, g.tensor_data(t), &mut out)?;
    Ok(out)
}

/// f32 values encoded as `ty` (F32, F16, BF16 round to nearest even as torch does; Q8_0 by
/// ggml's reference quantizer, rows of `row` elements).
pub fn encode(ty: GgmlType, x: &[f32], row: usize) -> Result<Vec<u8>> {
    Ok(match ty {
        GgmlType::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => x
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => x
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::Q8_0 => {
            let rb = ty.bytes_for(row).ok_or_else(|| {
                ConvertError::Invalid(format!("row of {row} is not whole Q8_0 blocks"))
            })?;
            let mut out = vec![0u8; x.len() / row * rb];
            for (src, dst) in x.chunks_exact(row).zip(out.chunks_exact_mut(rb)) {
                quant::quantize_row_q8_0(src, dst)?;
            }
            out
        }
        t => return Err(ConvertError::Invalid(format!("cannot encode {t}"))),
    })
}

/// The type a tensor gets: 1-D tensors (norms, biases) stay f32 as llama.cpp keeps them;
/// Q8_0 falls back to f16 for rows that are not whole blocks.
pub fn tensor_type(t: &TensorInfo, want: GgmlType) -> GgmlType {
    if t.dims.len() < 2 {
        return GgmlType::F32;
    }
    if want == GgmlType::Q8_0 && !(t.dims[0] as usize).is_multiple_of(QK) {
        return GgmlType::F16;
    }
    want
}

/// Writes `src` as a GGUF file of weight type `ty` (`apr import`, `apr export --format gguf`).
pub fn write_gguf(
    src: &Gguf,
    out: &Path,
    ty: GgmlType,
    file_type: u32,
    prov: &Provenance,
) -> Result<Report> {
    write_gguf_with(src, out, Some((ty, file_type)), prov)
}

/// Writes `src` as a GGUF file with every tensor of its own type (blocks dropped, say).
pub fn write_gguf_as_is(src: &Gguf, out: &Path, prov: &Provenance) -> Result<Report> {
    write_gguf_with(src, out, None, prov)
}

/// `retype`: the weight type and `general.file_type` of the output, or None to keep both.
fn write_gguf_with(
    src: &Gguf,
    out: &Path,
    retype: Option<(GgmlType, u32)>,
    prov: &Provenance,
) -> Result<Report> {
    let mut meta: Vec<(String, Value)> = without_apr_keys(&src.metadata)
        .into_iter()
        .filter(|(k, _)| retype.is_none() || !REWRITTEN_KEYS.contains(&k.as_str()))
        .collect();
    if let Some((ty, file_type)) = retype {
        meta.push(("general.file_type".into(), Value::U32(file_type)));
        if ty == GgmlType::Q8_0 {
            meta.push((
                "general.quantization_version".into(),
                Value::U32(QUANTIZATION_VERSION),
            ));
        }
    }
    meta.extend(prov.gguf_kv(&src.metadata));
    let specs: Vec<TensorSpec> = src
        .tensors
        .iter()
        .map(|t| TensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            dtype: retype.map_or(t.dtype, |(ty, _)| tensor_type(t, ty)),
        })
        .collect();
    let mut w = GgufWriter::create(out, &meta, specs.clone())?;
    let mut bytes = 0u64;
    for (t, s) in src.tensors.iter().zip(&specs) {
        if t.dtype == s.dtype {
            // Same encoding: the bytes as they are (exact).
            w.write(&t.name, src.tensor_data(t))?;
            src.release(t);
            bytes += t.n_bytes;
            continue;
        }
        let x = tensor_f32(src, t)?; // [rows, dims[0]]
        src.release(t);
        let enc = encode(s.dtype, &x, t.dims[0] as usize)?;
        bytes += enc.len() as u64;
        w.write(&t.name, &enc)?;
    }
    let path = w.finish()?;
    Ok(Report {
        output: path.display().to_string(),
        tensors: src.tensors.len(),
        bytes,
        files: vec![path.display().to_string()],
    })
}

/// Writes `src` as an HF directory: safetensors of float type `ty` (shards of at most
/// `shard_bytes`), config.json, generation_config.json, tokenizer.json, tokenizer_config.json.
pub fn write_hf(
    src: &Gguf,
    dir: &Path,
    ty: GgmlType,
    shard_bytes: usize,
    prov: &Provenance,
) -> Result<Report> {
    if ty == GgmlType::Q8_0 {
        return Err(ConvertError::Invalid(
            "safetensors holds float weights: --type f32, f16 or bf16".into(),
        ));
    }
    let cfg = HfConfig::from_gguf(src, apr_formats::hf_config::torch_dtype_of(ty.name()))?;
    let (n_head, n_kv) = (
        cfg.num_attention_heads as usize,
        cfg.num_key_value_heads as usize,
    );
    let (tok_json, tok_cfg) = apr_formats::hf_tokenizer::to_hf(src)?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut specs = Vec::with_capacity(src.tensors.len());
    for t in &src.tensors {
        let name = gguf_to_hf(&t.name).ok_or_else(|| {
            ConvertError::Invalid(format!("tensor {} has no Hugging Face name", t.name))
        })?;
        specs.push(StSpec {
            name,
            // Norms and biases keep the chosen type too: transformers loads one dtype.
            dtype: ty,
            shape: t.dims.iter().rev().copied().collect(),
        });
    }
    let prev: Vec<String> = src
        .get(HISTORY_KEY)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut st_meta = vec![("format".to_string(), "pt".to_string())];
    st_meta.extend(prov.string_kv(&prev));
    let mut w = SafetensorsWriter::create(dir, specs.clone(), st_meta, shard_bytes)?;
    let mut bytes = 0u64;
    for (t, s) in src.tensors.iter().zip(&specs) {
        let x = tensor_f32(src, t)?; // [rows, dims[0]]
        let row = t.dims[0] as usize;
        let mut enc = encode(ty, &x, row)?;
        if cfg.arch == "llama" {
            if let Some(h) = rope_permute_heads(&t.name, n_head, n_kv) {
                // A bias permutes element by element, a weight row by row.
                let rows = if t.dims.len() == 1 {
                    row
                } else {
                    x.len() / row.max(1)
                };
                enc = permute_rows(&enc, h, enc.len() / rows.max(1), true);
            }
        }
        bytes += enc.len() as u64;
        w.write(&s.name, &enc)?;
    }
    let mut files: Vec<String> = w
        .finish()?
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let jsons = [
        (apr_formats::hf_config::CONFIG_FILE, cfg.to_json()),
        (
            apr_formats::hf_config::GENERATION_CONFIG_FILE,
            cfg.generation_json(),
        ),
        (apr_formats::hf_tokenizer::TOKENIZER_FILE, tok_json),
        (apr_formats::hf_tokenizer::TOKENIZER_CONFIG_FILE, tok_cfg),
    ];
    for (name, j) in jsons {
        let p = dir.join(name);
        let text = serde_json::to_string_pretty(&j).expect("JSON values serialize");
        apr_formats::write_atomic(&p, text.as_bytes()).map_err(io(&p))?;
        files.push(p.display().to_string());
    }
    Ok(Report {
        output: dir.display().to_string(),
        tensors: src.tensors.len(),
        bytes,
        files,
    })
}

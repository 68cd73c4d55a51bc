//! A Hugging Face model directory (config.json, safetensors, tokenizer.json) opened as a
//! model image: the same [`Gguf`] value a GGUF file gives, with the metadata keys `apr import`
//! writes and a tensor table under GGUF names whose data views the safetensors memory maps.
//!
//! Why this shape: every consumer (`Config::from_gguf`, `Tokenizer::from_gguf`,
//! `ChatTemplate::from_gguf`, `Model::from_gguf`, `apr inspect`, `apr import`) already reads a
//! `Gguf`; giving the image several byte sources (one per shard, one for converted tensors)
//! keeps ONE model code path and needs no trait threaded through every loader. F32/F16/BF16
//! rows are already ggml's layout, so those tensors are zero-copy views of the maps; only
//! llama's q/k (rotary row permutation) are converted into owned bytes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::gguf::{Backing, Gguf, TensorInfo, Value};
use crate::hf_config::{read_json, HfConfig, HfError, Result, CONFIG_FILE, GENERATION_CONFIG_FILE};
use crate::hf_names::{hf_to_gguf, is_ignored, permute_rows, rope_permute_heads};
use crate::provenance::HISTORY_KEY;
use crate::safetensors::{checkpoint_files, dtype_to_ggml, SafetensorsFile};

/// Alignment of converted tensors inside the owned source.
const OWNED_ALIGN: usize = 64;

/// Whether `path` is an HF model directory (a directory with config.json).
pub fn is_hf_dir(path: &Path) -> bool {
    path.is_dir() && path.join(CONFIG_FILE).is_file()
}

/// Opens a GGUF file, or an HF directory as a model image.
pub fn open_model(path: &Path) -> Result<Gguf> {
    if path.is_dir() {
        if !is_hf_dir(path) {
            return Err(HfError::File {
                path: path.display().to_string(),
                msg: format!("a directory without {CONFIG_FILE} is not a model"),
            });
        }
        return open_hf_dir(path);
    }
    Ok(Gguf::open(path)?)
}

/// The GGUF metadata of an HF directory (architecture, tokenizer, chat template).
pub fn hf_metadata(dir: &Path) -> Result<(HfConfig, BTreeMap<String, Value>)> {
    let cfg_path = dir.join(CONFIG_FILE);
    let cfg_json = read_json(&cfg_path, true)?.expect("required");
    let gen = read_json(&dir.join(GENERATION_CONFIG_FILE), false)?;
    let cfg = HfConfig::from_json(&cfg_json, gen.as_ref(), &cfg_path)?;
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
    let mut kv = vec![
        ("general.type".to_string(), Value::String("model".into())),
        ("general.name".to_string(), Value::String(name)),
    ];
    kv.extend(cfg.gguf_kv());
    kv.extend(crate::hf_tokenizer::gguf_kv(
        dir,
        cfg.vocab_size as usize,
        cfg.bos_token_id,
        cfg.eos_token_id,
    )?);
    Ok((cfg, kv.into_iter().collect()))
}

/// Opens an HF directory as a model image (see the module docs).
pub fn open_hf_dir(dir: &Path) -> Result<Gguf> {
    let (cfg, mut metadata) = hf_metadata(dir)?;
    let llama = cfg.arch == "llama";
    let (n_head, n_kv) = (
        cfg.num_attention_heads as usize,
        cfg.num_key_value_heads as usize,
    );
    let files = checkpoint_files(dir)?;
    let mut tensors = Vec::new();
    let mut backings = Vec::with_capacity(files.len() + 1);
    let mut owned: Vec<u8> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (source, path) in files.iter().enumerate() {
        let f = SafetensorsFile::open(path)?;
        for t in &f.tensors {
            if is_ignored(&t.name) {
                continue;
            }
            let terr = |msg: String| HfError::File {
                path: path.display().to_string(),
                msg: format!("tensor {}: {msg}", t.name),
            };
            let name = hf_to_gguf(&t.name)
                .ok_or_else(|| terr("no GGUF counterpart for this name".into()))?;
            let dtype = dtype_to_ggml(&t.dtype).ok_or_else(|| {
                HfError::Unsupported(format!(
                    "{}: tensor {} has dtype {} (supported: F32, F16, BF16)",
                    path.display(),
                    t.name,
                    t.dtype
                ))
            })?;
            if t.shape.is_empty() || t.shape.len() > 4 {
                return Err(terr(format!("shape {:?}", t.shape)));
            }
            if !seen.insert(name.clone()) {
                return Err(terr("appears in two shards".into()));
            }
            // ggml dims run from the contiguous axis out: the reverse of the shape.
            let dims: Vec<u64> = t.shape.iter().rev().copied().collect();
            let n_bytes = (t.end - t.start) as u64;
            let heads = if llama {
                rope_permute_heads(&name, n_head, n_kv)
            } else {
                None
            };
            let info = match heads {
                Some(h) => {
                    let rows = *t.shape.first().unwrap_or(&1) as usize;
                    if h == 0 || !rows.is_multiple_of(h) || !(rows / h).is_multiple_of(2) {
                        return Err(terr(format!("{rows} rows do not split into {h} heads")));
                    }
                    let row_bytes = (n_bytes as usize) / rows;
                    let start = owned.len().div_ceil(OWNED_ALIGN) * OWNED_ALIGN;
                    owned.resize(start, 0);
                    owned.extend(permute_rows(f.data(t), h, row_bytes, false));
                    TensorInfo {
                        name,
                        dims,
                        dtype,
                        offset: start as u64,
                        n_bytes,
                        source: files.len(),
                    }
                }
                None => TensorInfo {
                    name,
                    dims,
                    dtype,
                    offset: t.start as u64,
                    n_bytes,
                    source,
                },
            };
            tensors.push(info);
        }
        if source == 0 {
            carry_history(&f.metadata, &mut metadata);
        }
        backings.push(Backing::Mmap(f.mmap));
    }
    backings.push(Backing::Owned(owned));
    tensors.sort_by_key(tensor_order);
    Ok(Gguf::from_parts(metadata, tensors, backings))
}

/// The `apr.history` of a checkpoint apr wrote (a JSON array in `__metadata__`) as the
/// image's GGUF `apr.history`, so that the next stage appends to it.
fn carry_history(st_meta: &BTreeMap<String, String>, metadata: &mut BTreeMap<String, Value>) {
    let Some(h) = st_meta.get(HISTORY_KEY) else {
        return;
    };
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(h) else {
        return;
    };
    let records = items
        .iter()
        .filter(|v| v.is_object())
        .map(|v| Value::String(v.to_string()))
        .collect();
    metadata.insert(HISTORY_KEY.to_string(), Value::Array(records));
}

/// convert_hf_to_gguf's order: embeddings first, then the layers in number order, the output
/// norm and head last.
fn tensor_order(t: &TensorInfo) -> (u64, String) {
    let rank = match t.name.as_str() {
        "token_embd.weight" => 0,
        "output_norm.weight" => u64::MAX - 1,
        "output.weight" => u64::MAX,
        n => n
            .strip_prefix("blk.")
            .and_then(|r| r.split_once('.'))
            .and_then(|(l, _)| l.parse::<u64>().ok())
            .map_or(u64::MAX - 2, |l| l + 1),
    };
    (rank, t.name.clone())
}

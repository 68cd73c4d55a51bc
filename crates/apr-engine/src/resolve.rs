//! Finding a model: a path, or a name in the model cache (`$APR_MODELS_DIR`, default
//! `~/.cache/apr/models`).

use std::path::PathBuf;

use crate::{EngineError, Result};

/// The model cache directory.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("APR_MODELS_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("apr").join("models")
}

/// A path as given when it exists; else `NAME`, `NAME.gguf` in the cache; else the one cached
/// file whose name starts with NAME (case-insensitive), e.g. `qwen2.5-coder-0.5b`.
pub fn resolve_model(name: &str) -> Result<PathBuf> {
    let p = PathBuf::from(name);
    if p.exists() {
        return Ok(p);
    }
    let dir = models_dir();
    for cand in [dir.join(name), dir.join(format!("{name}.gguf"))] {
        if cand.is_file() {
            return Ok(cand);
        }
    }
    let lower = name.to_lowercase();
    let matches: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "gguf")
                && p.file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.to_lowercase().starts_with(&lower))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(EngineError::ModelNotFound {
            name: name.to_string(),
            dir: dir.display().to_string(),
        }),
    }
}

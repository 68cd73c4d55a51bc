//! Importance matrices: per weight tensor, the sum of squared input activations per column
//! (`in_sum2`) and how many rows were summed (`counts`, one per expert matrix). Read and
//! written in the GGUF format of the current `llama-imatrix` (tensors `<name>.in_sum2` [ne0,
//! n_mat] and `<name>.counts` [1, n_mat], F32; keys `imatrix.datasets`, `imatrix.chunk_count`,
//! `imatrix.chunk_size`); the legacy `.dat` format is read too.
//! Reference: tools/imatrix/imatrix.cpp and common/imatrix-loader.cpp in llama.cpp.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use apr_core::GgmlType;
use apr_formats::{Gguf, GgufWriter, TensorSpec, Value};

const SUMS_SUFFIX: &str = ".in_sum2";
const COUNTS_SUFFIX: &str = ".counts";
const KEY_DATASETS: &str = "imatrix.datasets";
const KEY_CHUNK_COUNT: &str = "imatrix.chunk_count";
const KEY_CHUNK_SIZE: &str = "imatrix.chunk_size";

#[derive(Debug, thiserror::Error)]
pub enum ImatrixError {
    #[error("cannot read imatrix {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("imatrix {path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("writing imatrix {path}: {source}")]
    Write {
        path: PathBuf,
        source: apr_formats::GgufError,
    },
}

/// Dims without trailing 1s (keeping at least one), as ggml's GGUF writer stores them.
fn trim_dims(mut d: Vec<u64>) -> Vec<u64> {
    while d.len() > 1 && d.last() == Some(&1) {
        d.pop();
    }
    d
}

/// One tensor's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct ImatrixEntry {
    /// [n_mat * ne0]: sums of squared activations per input column, matrix by matrix.
    pub in_sum2: Vec<f32>,
    /// [n_mat]: rows (tokens) summed per matrix. In a legacy file: the one call count.
    pub counts: Vec<f32>,
}

/// An importance matrix file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Imatrix {
    pub entries: BTreeMap<String, ImatrixEntry>,
    pub datasets: Vec<String>,
    pub chunk_count: u32,
    pub chunk_size: u32,
    /// Read from a legacy `.dat` file (sums there are already means times the call count).
    pub legacy: bool,
}

impl Imatrix {
    /// Reads a GGUF imatrix, or a legacy `.dat` one when the file is not GGUF.
    pub fn read(path: &Path) -> Result<Self, ImatrixError> {
        let bytes = std::fs::read(path).map_err(|e| ImatrixError::Io {
            path: path.into(),
            source: e,
        })?;
        if bytes.starts_with(b"GGUF") {
            Self::from_gguf(path, bytes)
        } else {
            Self::from_legacy(path, &bytes)
        }
    }

    fn from_gguf(path: &Path, bytes: Vec<u8>) -> Result<Self, ImatrixError> {
        let bad = |msg: String| ImatrixError::Format {
            path: path.into(),
            msg,
        };
        let g = Gguf::from_bytes(bytes).map_err(|e| bad(e.to_string()))?;
        if g.tensors.is_empty() {
            return Err(bad("no tensors".into()));
        }
        let has_meta = [KEY_DATASETS, KEY_CHUNK_COUNT, KEY_CHUNK_SIZE]
            .iter()
            .all(|k| g.get(k).is_some());
        if !has_meta {
            return Err(bad(format!(
                "missing imatrix metadata ({KEY_DATASETS}, {KEY_CHUNK_COUNT}, {KEY_CHUNK_SIZE})"
            )));
        }
        let datasets = g
            .get(KEY_DATASETS)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let u32_of = |k: &str| g.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
        let mut sums: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        let mut counts: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        for t in &g.tensors {
            let (base, into) = if let Some(b) = t.name.strip_suffix(SUMS_SUFFIX) {
                (b, &mut sums)
            } else if let Some(b) = t.name.strip_suffix(COUNTS_SUFFIX) {
                (b, &mut counts)
            } else {
                continue;
            };
            if t.dtype != GgmlType::F32 {
                return Err(bad(format!("tensor {} is {}, not F32", t.name, t.dtype)));
            }
            let data = g.tensor_data(t);
            let v = data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            into.insert(base.to_string(), v);
        }
        let mut entries = BTreeMap::new();
        for (name, s) in sums {
            let Some(c) = counts.remove(&name) else {
                return Err(bad(format!("{name} has sums but no counts")));
            };
            if c.is_empty() || !s.len().is_multiple_of(c.len()) {
                return Err(bad(format!(
                    "{name}: {} sums do not split into {} matrices",
                    s.len(),
                    c.len()
                )));
            }
            entries.insert(
                name,
                ImatrixEntry {
                    in_sum2: s,
                    counts: c,
                },
            );
        }
        if let Some(name) = counts.keys().next() {
            return Err(bad(format!("{name} has counts but no sums")));
        }
        Ok(Imatrix {
            entries,
            datasets,
            chunk_count: u32_of(KEY_CHUNK_COUNT),
            chunk_size: u32_of(KEY_CHUNK_SIZE),
            legacy: false,
        })
    }

    fn from_legacy(path: &Path, b: &[u8]) -> Result<Self, ImatrixError> {
        let bad = |msg: String| ImatrixError::Format {
            path: path.into(),
            msg: format!("not a GGUF or legacy imatrix file: {msg}"),
        };
        let mut pos = 0usize;
        let i32_at = |pos: &mut usize, what: &str| -> Result<i32, ImatrixError> {
            let s = b
                .get(*pos..*pos + 4)
                .ok_or_else(|| bad(format!("truncated at {what}")))?;
            *pos += 4;
            Ok(i32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        };
        let n_entries = i32_at(&mut pos, "the entry count")?;
        if n_entries < 1 {
            return Err(bad(format!("{n_entries} entries")));
        }
        let mut entries = BTreeMap::new();
        for i in 0..n_entries {
            let len = i32_at(&mut pos, "a name length")?;
            let name = usize::try_from(len)
                .ok()
                .and_then(|l| b.get(pos..pos + l).map(|s| (l, s)))
                .ok_or_else(|| bad(format!("entry {i}: bad name length {len}")))?;
            pos += name.0;
            let name = String::from_utf8_lossy(name.1).into_owned();
            let ncall = i32_at(&mut pos, "a call count")?;
            let nval = i32_at(&mut pos, "a value count")?;
            let n = usize::try_from(nval)
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| bad(format!("entry {name}: {nval} values")))?;
            let data = b
                .get(pos..pos + 4 * n)
                .ok_or_else(|| bad(format!("entry {name}: truncated values")))?;
            pos += 4 * n;
            let sums = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            entries.insert(
                name,
                ImatrixEntry {
                    in_sum2: sums,
                    counts: vec![ncall as f32],
                },
            );
        }
        // Optional trailer: chunk count and dataset name.
        let mut chunk_count = 0;
        let mut datasets = Vec::new();
        if let Ok(n) = i32_at(&mut pos, "the chunk count") {
            chunk_count = n.max(0) as u32;
            if let Ok(len) = i32_at(&mut pos, "the dataset length") {
                if let Some(s) = usize::try_from(len)
                    .ok()
                    .filter(|&l| l > 0)
                    .and_then(|l| b.get(pos..pos + l))
                {
                    datasets.push(String::from_utf8_lossy(s).into_owned());
                }
            }
        }
        Ok(Imatrix {
            entries,
            datasets,
            chunk_count,
            chunk_size: 0,
            legacy: true,
        })
    }

    /// Writes the GGUF format `llama-imatrix` writes (atomically).
    pub fn write(&self, path: &Path) -> Result<(), ImatrixError> {
        let err = |e| ImatrixError::Write {
            path: path.into(),
            source: e,
        };
        let meta = vec![
            ("general.type".to_string(), Value::String("imatrix".into())),
            (
                KEY_DATASETS.to_string(),
                Value::Array(
                    self.datasets
                        .iter()
                        .map(|s| Value::String(s.clone()))
                        .collect(),
                ),
            ),
            (KEY_CHUNK_COUNT.to_string(), Value::U32(self.chunk_count)),
            (KEY_CHUNK_SIZE.to_string(), Value::U32(self.chunk_size)),
        ];
        let mut specs = Vec::new();
        for (name, e) in &self.entries {
            let nmat = e.counts.len().max(1) as u64;
            specs.push(TensorSpec {
                name: format!("{name}{SUMS_SUFFIX}"),
                // Trailing 1s dropped, as ggml writes a tensor's dims (one matrix: [ne0]).
                dims: trim_dims(vec![e.in_sum2.len() as u64 / nmat, nmat]),
                dtype: GgmlType::F32,
            });
            specs.push(TensorSpec {
                name: format!("{name}{COUNTS_SUFFIX}"),
                dims: trim_dims(vec![1, nmat]),
                dtype: GgmlType::F32,
            });
        }
        let mut w = GgufWriter::create(path, &meta, specs).map_err(err)?;
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        for (name, e) in &self.entries {
            w.write(&format!("{name}{SUMS_SUFFIX}"), &bytes(&e.in_sum2))
                .map_err(err)?;
            w.write(&format!("{name}{COUNTS_SUFFIX}"), &bytes(&e.counts))
                .map_err(err)?;
        }
        w.finish().map_err(err)?;
        Ok(())
    }

    /// The importance weights of tensor `name` as llama-quantize computes them: per matrix,
    /// in_sum2 / count (counts rounded to integers first, as llama.cpp reads them; a matrix
    /// with count 0 gets weights 1); for a legacy file, sums / ncall.
    pub fn weights(&self, name: &str) -> Option<Vec<f32>> {
        let e = self.entries.get(name)?;
        if self.legacy {
            let ncall = e.counts.first().copied().unwrap_or(0.0).round() as i64;
            return Some(if ncall > 0 {
                e.in_sum2.iter().map(|s| s / ncall as f32).collect()
            } else {
                e.in_sum2.clone()
            });
        }
        let ne0 = e.in_sum2.len() / e.counts.len().max(1);
        let mut w = Vec::with_capacity(e.in_sum2.len());
        for (j, c) in e.counts.iter().enumerate() {
            let count = c.round() as i64 as f32;
            for s in &e.in_sum2[j * ne0..(j + 1) * ne0] {
                w.push(if count > 0.0 { s / count } else { 1.0 });
            }
        }
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("apr-imatrix-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    #[test]
    fn gguf_round_trip_and_weights() {
        let mut m = Imatrix {
            datasets: vec!["wiki.txt".into()],
            chunk_count: 3,
            chunk_size: 512,
            ..Default::default()
        };
        m.entries.insert(
            "blk.0.attn_q.weight".into(),
            ImatrixEntry {
                in_sum2: vec![2.0, 4.0, 6.0, 8.0],
                counts: vec![2.0],
            },
        );
        m.entries.insert(
            "blk.0.ffn_down_exps.weight".into(),
            ImatrixEntry {
                in_sum2: vec![3.0, 6.0, 5.0, 7.0],
                counts: vec![3.0, 0.0],
            },
        );
        let p = tmp("a.gguf");
        m.write(&p).unwrap();
        let r = Imatrix::read(&p).unwrap();
        assert_eq!(r, m);
        assert_eq!(
            r.weights("blk.0.attn_q.weight").unwrap(),
            [1.0, 2.0, 3.0, 4.0]
        );
        assert_eq!(
            r.weights("blk.0.ffn_down_exps.weight").unwrap(),
            [1.0, 2.0, 1.0, 1.0]
        );
        assert!(r.weights("nope").is_none());
    }

    #[test]
    fn legacy_file_reads_with_its_trailer() {
        let mut b = Vec::new();
        b.extend_from_slice(&1i32.to_le_bytes());
        let name = b"blk.0.attn_k.weight";
        b.extend_from_slice(&(name.len() as i32).to_le_bytes());
        b.extend_from_slice(name);
        b.extend_from_slice(&4i32.to_le_bytes()); // ncall
        b.extend_from_slice(&2i32.to_le_bytes()); // nval
        for v in [8.0f32, 12.0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&10i32.to_le_bytes());
        b.extend_from_slice(&3i32.to_le_bytes());
        b.extend_from_slice(b"abc");
        let p = tmp("b.dat");
        std::fs::write(&p, &b).unwrap();
        let r = Imatrix::read(&p).unwrap();
        assert!(r.legacy);
        assert_eq!(r.chunk_count, 10);
        assert_eq!(r.datasets, ["abc"]);
        assert_eq!(r.weights("blk.0.attn_k.weight").unwrap(), [2.0, 3.0]);
        // Truncated: a clear error, no panic.
        std::fs::write(&p, &b[..20]).unwrap();
        assert!(Imatrix::read(&p).is_err());
        std::fs::write(&p, b"hello world").unwrap();
        assert!(Imatrix::read(&p).is_err());
    }
}

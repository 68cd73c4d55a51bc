//! Safetensors reading (one file or a sharded checkpoint through its index, memory-mapped,
//! header validated strictly) and streaming writing (tensor by tensor, in shards of a size
//! limit with the index, each file atomic). Reference: https://github.com/huggingface/safetensors
//! (format: u64 little-endian header length, a JSON header, then the data bytes).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use apr_core::GgmlType;
use memmap2::Mmap;

use crate::atomic::AtomicFile;

/// The name of a single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Largest header accepted (the reference implementation's limit).
const MAX_HEADER_BYTES: u64 = 100 << 20;
/// Header length prefix.
const PREFIX_BYTES: usize = 8;
/// Headers are padded with spaces to this multiple so the data starts aligned.
const HEADER_ALIGN: usize = 8;
/// Key of the free-form string map in the header.
const METADATA_KEY: &str = "__metadata__";

#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: bad safetensors header: {msg}")]
    Header { path: PathBuf, msg: String },
    #[error("{path}: tensor {name}: {msg}")]
    Tensor {
        path: PathBuf,
        name: String,
        msg: String,
    },
    #[error("{path}: bad index: {msg}")]
    Index { path: PathBuf, msg: String },
    #[error("writing safetensors: {0}")]
    Writer(String),
}

pub type Result<T> = std::result::Result<T, SafetensorsError>;

/// The dtypes of the format with their sizes; only the float ones load as model weights.
const DTYPES: &[(&str, usize)] = &[
    ("F64", 8),
    ("F32", 4),
    ("F16", 2),
    ("BF16", 2),
    ("I64", 8),
    ("I32", 4),
    ("I16", 2),
    ("I8", 1),
    ("U64", 8),
    ("U32", 4),
    ("U16", 2),
    ("U8", 1),
    ("BOOL", 1),
    ("F8_E4M3", 1),
    ("F8_E5M2", 1),
];

/// The ggml type of a float dtype (row bytes are laid out alike), or None for the others.
pub fn dtype_to_ggml(dtype: &str) -> Option<GgmlType> {
    match dtype {
        "F32" => Some(GgmlType::F32),
        "F16" => Some(GgmlType::F16),
        "BF16" => Some(GgmlType::BF16),
        _ => None,
    }
}

/// The safetensors dtype of a ggml float type.
pub fn ggml_to_dtype(t: GgmlType) -> Option<&'static str> {
    match t {
        GgmlType::F32 => Some("F32"),
        GgmlType::F16 => Some("F16"),
        GgmlType::BF16 => Some("BF16"),
        _ => None,
    }
}

/// One tensor of a file: dtype, shape (row-major, last dim contiguous) and byte range.
#[derive(Debug, Clone, PartialEq)]
pub struct StTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    /// Offsets from the start of the file (header included).
    pub start: usize,
    pub end: usize,
}

/// One memory-mapped safetensors file.
pub struct SafetensorsFile {
    pub path: PathBuf,
    pub tensors: Vec<StTensor>,
    pub metadata: BTreeMap<String, String>,
    pub mmap: Mmap,
}

impl SafetensorsFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| SafetensorsError::Io {
            path: path.clone(),
            source,
        };
        let f = File::open(&path).map_err(io)?;
        // SAFETY: read-only map; a file changed underneath gives wrong values, never UB in safe
        // code that only reads bytes (the same contract as the GGUF reader).
        let mmap = unsafe { Mmap::map(&f) }.map_err(io)?;
        let (tensors, metadata) = parse_header(&mmap, &path)?;
        Ok(SafetensorsFile {
            path,
            tensors,
            metadata,
            mmap,
        })
    }

    pub fn data(&self, t: &StTensor) -> &[u8] {
        &self.mmap[t.start..t.end]
    }
}

/// Parses and validates a header: JSON object, known dtypes, shape x dtype size = byte length,
/// ranges inside the file and not overlapping.
pub fn parse_header(buf: &[u8], path: &Path) -> Result<(Vec<StTensor>, BTreeMap<String, String>)> {
    let herr = |msg: String| SafetensorsError::Header {
        path: path.to_path_buf(),
        msg,
    };
    if buf.len() < PREFIX_BYTES {
        return Err(herr(format!(
            "file of {} bytes has no header length",
            buf.len()
        )));
    }
    let n = u64::from_le_bytes(buf[..PREFIX_BYTES].try_into().expect("8 bytes"));
    if n > MAX_HEADER_BYTES {
        return Err(herr(format!(
            "header length {n} exceeds {MAX_HEADER_BYTES}"
        )));
    }
    let data_start = PREFIX_BYTES + n as usize;
    if data_start > buf.len() {
        return Err(herr(format!(
            "header of {n} bytes runs past the end of the {}-byte file (truncated?)",
            buf.len()
        )));
    }
    let json: serde_json::Value = serde_json::from_slice(&buf[PREFIX_BYTES..data_start])
        .map_err(|e| herr(format!("not JSON: {e}")))?;
    let obj = json
        .as_object()
        .ok_or_else(|| herr("the header is not a JSON object".into()))?;
    let data_len = buf.len() - data_start;
    let mut tensors = Vec::with_capacity(obj.len());
    let mut metadata = BTreeMap::new();
    for (name, v) in obj {
        let terr = |msg: String| SafetensorsError::Tensor {
            path: path.to_path_buf(),
            name: name.clone(),
            msg,
        };
        if name == METADATA_KEY {
            let m = v
                .as_object()
                .ok_or_else(|| herr("__metadata__ is not an object".into()))?;
            for (k, s) in m {
                let s = s
                    .as_str()
                    .ok_or_else(|| herr(format!("__metadata__.{k} is not a string")))?;
                metadata.insert(k.clone(), s.to_string());
            }
            continue;
        }
        let dtype = v
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| terr("no dtype string".into()))?;
        let size = DTYPES
            .iter()
            .find(|(d, _)| *d == dtype)
            .map(|(_, s)| *s)
            .ok_or_else(|| terr(format!("unknown dtype {dtype:?}")))?;
        let shape: Vec<u64> = v
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| terr("no shape array".into()))?
            .iter()
            .map(|d| d.as_u64().ok_or_else(|| terr(format!("bad dimension {d}"))))
            .collect::<Result<_>>()?;
        let offs = v
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .filter(|a| a.len() == 2)
            .ok_or_else(|| terr("data_offsets is not [begin, end]".into()))?;
        let (b, e) = match (offs[0].as_u64(), offs[1].as_u64()) {
            (Some(b), Some(e)) => (b, e),
            _ => return Err(terr("data_offsets are not non-negative integers".into())),
        };
        if b > e || e > data_len as u64 {
            return Err(terr(format!(
                "data_offsets [{b}, {e}] outside the {data_len} data bytes (truncated?)"
            )));
        }
        let want = shape
            .iter()
            .try_fold(size as u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| terr(format!("shape {shape:?} overflows")))?;
        if want != e - b {
            return Err(terr(format!(
                "shape {shape:?} of {dtype} needs {want} bytes, data_offsets give {}",
                e - b
            )));
        }
        tensors.push(StTensor {
            name: name.clone(),
            dtype: dtype.to_string(),
            shape,
            start: data_start + b as usize,
            end: data_start + e as usize,
        });
    }
    let mut by_start: Vec<&StTensor> = tensors.iter().filter(|t| t.end > t.start).collect();
    by_start.sort_by_key(|t| t.start);
    for w in by_start.windows(2) {
        if w[1].start < w[0].end {
            return Err(herr(format!(
                "tensors {} and {} overlap",
                w[0].name, w[1].name
            )));
        }
    }
    // File order (the header's JSON order is not meaningful).
    tensors.sort_by_key(|t| t.start);
    Ok((tensors, metadata))
}

/// The files of a checkpoint directory: the index's shards, else `model.safetensors`.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let ierr = |msg: String| SafetensorsError::Index {
            path: index.clone(),
            msg,
        };
        let text = std::fs::read_to_string(&index).map_err(|source| SafetensorsError::Io {
            path: index.clone(),
            source,
        })?;
        let j: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ierr(format!("not JSON: {e}")))?;
        let map = j
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| ierr("no weight_map object".into()))?;
        let mut files: Vec<PathBuf> = Vec::new();
        for (name, f) in map {
            let f = f
                .as_str()
                .ok_or_else(|| ierr(format!("{name}: file is not a string")))?;
            // Shards are plain names beside the index, never paths elsewhere.
            if f.contains('/') || f.contains('\\') || f == ".." {
                return Err(ierr(format!("{name}: shard {f:?} is not a file name")));
            }
            let p = dir.join(f);
            if !files.contains(&p) {
                files.push(p);
            }
        }
        files.sort();
        return Ok(files);
    }
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(SafetensorsError::Index {
        path: dir.to_path_buf(),
        msg: format!("neither {INDEX_FILE} nor {SINGLE_FILE} is there"),
    })
}

/// A tensor to be written: name, float type, shape (row-major).
#[derive(Debug, Clone)]
pub struct StSpec {
    pub name: String,
    pub dtype: GgmlType,
    pub shape: Vec<u64>,
}

impl StSpec {
    fn n_bytes(&self) -> usize {
        let size = match self.dtype {
            GgmlType::F32 => 4,
            _ => 2,
        };
        self.shape.iter().product::<u64>() as usize * size
    }
}

/// Streams a checkpoint into a directory: tensors in the order of the specs, shards cut at
/// `max_shard_bytes` (one file and no index when everything fits), each shard atomic, the
/// index written last.
pub struct SafetensorsWriter {
    dir: PathBuf,
    specs: Vec<StSpec>,
    metadata: Vec<(String, String)>,
    /// Shard of each tensor, and the number of shards.
    shard_of: Vec<usize>,
    n_shards: usize,
    cur: usize,
    done: usize,
    out: Option<AtomicFile>,
    total: usize,
}

impl SafetensorsWriter {
    pub fn create(
        dir: impl AsRef<Path>,
        specs: Vec<StSpec>,
        metadata: Vec<(String, String)>,
        max_shard_bytes: usize,
    ) -> Result<Self> {
        for s in &specs {
            if ggml_to_dtype(s.dtype).is_none() {
                return Err(SafetensorsError::Writer(format!(
                    "tensor {}: type {} is not a safetensors float type",
                    s.name,
                    s.dtype.name()
                )));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(t) = specs.iter().find(|t| !seen.insert(t.name.clone())) {
            return Err(SafetensorsError::Writer(format!(
                "tensor {} appears twice",
                t.name
            )));
        }
        let mut shard_of = Vec::with_capacity(specs.len());
        let (mut shard, mut in_shard) = (0usize, 0usize);
        for s in &specs {
            let n = s.n_bytes();
            if in_shard > 0 && in_shard + n > max_shard_bytes {
                shard += 1;
                in_shard = 0;
            }
            in_shard += n;
            shard_of.push(shard);
        }
        let total = specs.iter().map(StSpec::n_bytes).sum();
        let mut w = SafetensorsWriter {
            dir: dir.as_ref().to_path_buf(),
            specs,
            metadata,
            n_shards: shard + 1,
            shard_of,
            cur: 0,
            done: 0,
            out: None,
            total,
        };
        w.advance()?;
        Ok(w)
    }

    fn shard_name(&self, i: usize) -> String {
        if self.n_shards == 1 {
            SINGLE_FILE.to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, self.n_shards)
        }
    }

    fn io(&self, source: std::io::Error) -> SafetensorsError {
        SafetensorsError::Io {
            path: self.dir.clone(),
            source,
        }
    }

    /// Starts shard `i`: its header (every tensor of the shard) goes out first.
    fn open_shard(&mut self, i: usize) -> Result<()> {
        let mut header = serde_json::Map::new();
        let mut meta = serde_json::Map::new();
        for (k, v) in &self.metadata {
            meta.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        header.insert(METADATA_KEY.into(), serde_json::Value::Object(meta));
        let mut off = 0usize;
        for (s, _) in self
            .specs
            .iter()
            .zip(&self.shard_of)
            .filter(|(_, &k)| k == i)
        {
            let n = s.n_bytes();
            header.insert(
                s.name.clone(),
                serde_json::json!({
                    "dtype": ggml_to_dtype(s.dtype).expect("checked at create"),
                    "shape": s.shape,
                    "data_offsets": [off, off + n],
                }),
            );
            off += n;
        }
        let mut text = serde_json::Value::Object(header).to_string().into_bytes();
        text.resize(text.len().div_ceil(HEADER_ALIGN) * HEADER_ALIGN, b' ');
        let path = self.dir.join(self.shard_name(i));
        let mut f = AtomicFile::create(&path).map_err(|e| self.io(e))?;
        f.write_all(&(text.len() as u64).to_le_bytes())
            .and_then(|_| f.write_all(&text))
            .map_err(|e| self.io(e))?;
        self.out = Some(f);
        Ok(())
    }

    /// Moves past complete tensors, committing a shard when its last tensor is done.
    fn advance(&mut self) -> Result<()> {
        loop {
            let want_shard = self.shard_of.get(self.cur).copied();
            if self.out.is_none() {
                if let Some(s) = want_shard {
                    self.open_shard(s)?;
                } else if self.specs.is_empty() && self.n_shards == 1 {
                    // An empty checkpoint is still one valid file.
                    self.open_shard(0)?;
                }
            }
            match self.specs.get(self.cur) {
                Some(s) if self.done == s.n_bytes() => {
                    self.cur += 1;
                    self.done = 0;
                    let next = self.shard_of.get(self.cur).copied();
                    if next != want_shard {
                        if let Some(f) = self.out.take() {
                            f.commit().map_err(|e| self.io(e))?;
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Appends `data` to tensor `name`, the one expected next (whole or in pieces).
    pub fn write(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let Some(s) = self.specs.get(self.cur) else {
            return Err(SafetensorsError::Writer(format!(
                "tensor {name}: every tensor is already written"
            )));
        };
        if s.name != name {
            return Err(SafetensorsError::Writer(format!(
                "tensor {name} written while {} is expected",
                s.name
            )));
        }
        let left = s.n_bytes() - self.done;
        if data.len() > left {
            return Err(SafetensorsError::Writer(format!(
                "tensor {name}: {} bytes given, {left} left",
                data.len()
            )));
        }
        let out = self
            .out
            .as_mut()
            .expect("a shard is open while tensors remain");
        out.write_all(data).map_err(|source| SafetensorsError::Io {
            path: out.dest().to_path_buf(),
            source,
        })?;
        self.done += data.len();
        self.advance()
    }

    /// Checks every tensor came, commits the last shard and writes the index when sharded.
    /// Returns the files written.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        if let Some(s) = self.specs.get(self.cur) {
            return Err(SafetensorsError::Writer(format!(
                "tensor {} has {} of its {} bytes: the checkpoint is incomplete",
                s.name,
                self.done,
                s.n_bytes()
            )));
        }
        if let Some(f) = self.out.take() {
            f.commit().map_err(|e| self.io(e))?;
        }
        let mut files: Vec<PathBuf> = (0..self.n_shards)
            .map(|i| self.dir.join(self.shard_name(i)))
            .collect();
        if self.n_shards > 1 {
            let mut map = serde_json::Map::new();
            for (s, &k) in self.specs.iter().zip(&self.shard_of) {
                map.insert(s.name.clone(), self.shard_name(k).into());
            }
            let index = serde_json::json!({
                "metadata": {"total_size": self.total},
                "weight_map": map,
            });
            let p = self.dir.join(INDEX_FILE);
            let text = serde_json::to_string_pretty(&index).expect("JSON of strings");
            crate::atomic::write_atomic(&p, text.as_bytes()).map_err(|e| self.io(e))?;
            files.push(p);
        }
        Ok(files)
    }
}

#[cfg(test)]
#[path = "safetensors_tests.rs"]
mod tests;

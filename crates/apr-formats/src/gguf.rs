//! GGUF v2/v3 reader: metadata key-values and tensor table, tensor data memory-mapped.
//! Reference: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use apr_core::GgmlType;
use memmap2::Mmap;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// Dimensions a ggml tensor may have.
const MAX_DIMS: u32 = 4;
/// Nesting allowed for array-of-array metadata (the spec allows it; real files use one level).
const MAX_ARRAY_DEPTH: u32 = 4;
/// Smallest metadata entry: key length, value type, a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest tensor-table entry: name length, dim count, one dim, type id, offset.
const MIN_TENSOR_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

/// Smallest encoding of one value of type `ty`, to reject element counts that cannot fit
/// before allocating for them (unknown types fail on their first element anyway).
fn min_value_bytes(ty: u32) -> u64 {
    match ty {
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 4 + 8,
        _ => 1,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot open {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a GGUF file (magic {0:02x?}, want \"GGUF\")")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    Version(u32),
    #[error("truncated GGUF file: {what} needs bytes {need}..{end} but the file has {len}")]
    Truncated {
        what: String,
        need: u64,
        end: u64,
        len: u64,
    },
    #[error("corrupt GGUF file: {0}")]
    Corrupt(String),
    #[error("metadata key {key}: {msg}")]
    Metadata { key: String, msg: String },
    #[error("tensor {0} not found in the file")]
    MissingTensor(String),
    #[error("writing GGUF: {0}")]
    Writer(String),
}

pub type Result<T> = std::result::Result<T, GgufError>;

/// One metadata value (every GGUF value type).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The value as an unsigned integer, when it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }
    /// The value as a float, when it is a number of any type (large integers round).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            // Beyond i64::MAX, as_i64 has no answer but the number still has a float value.
            Value::U64(v) => Some(v as f64),
            _ => self.as_i64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    /// Short type name for messages and `apr inspect`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::F32(_) => "f32",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F64(_) => "f64",
        }
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the contiguous (row) length.
    pub dims: Vec<u64>,
    pub dtype: GgmlType,
    /// Offset of the data from the start of the file.
    pub offset: u64,
    pub n_bytes: u64,
    /// Which byte source holds the data: 0 for a GGUF file; a model image built from an HF
    /// directory has one per safetensors shard and one for converted tensors.
    pub source: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// One tensor of an image made by [`Gguf::derive`].
#[derive(Debug, Clone)]
pub enum DerivedTensor {
    /// Tensor `from` of the base image, under `name`.
    Keep { from: String, name: String },
    /// New bytes of `dtype` values in ggml dims order.
    New {
        name: String,
        dims: Vec<u64>,
        dtype: GgmlType,
        data: Vec<u8>,
    },
}

/// Where the bytes come from: a memory map of a file, or an owned buffer (tests, fuzzing,
/// tensors converted at load).
pub(crate) enum Backing {
    Mmap(Mmap),
    Owned(Vec<u8>),
}

/// An opened GGUF file, or a model image in the same shape: metadata key-values and a tensor
/// table over byte sources (an HF directory opens as one, see [`crate::hf_dir`]).
pub struct Gguf {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    pub data_offset: u64,
    backings: Vec<Backing>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let end = (self.pos as u64)
            .checked_add(n)
            .filter(|&e| e <= self.buf.len() as u64);
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end as usize];
                self.pos = end as usize;
                Ok(s)
            }
            None => Err(GgufError::Truncated {
                what: what.to_string(),
                need: self.pos as u64,
                end: (self.pos as u64).saturating_add(n),
                len: self.buf.len() as u64,
            }),
        }
    }
    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self
            .take(N as u64, what)?
            .try_into()
            .expect("take returns N bytes"))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| GgufError::Corrupt(format!("{what} is not valid UTF-8")))
    }
    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.arr::<1>(key)?[0]),
            1 => Value::I8(self.arr::<1>(key)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.arr(key)?)),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(i32::from_le_bytes(self.arr(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.arr(key)?)),
            7 => match self.arr::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(GgufError::Corrupt(format!("{key}: bool byte {b}"))),
            },
            8 => Value::String(self.string(key)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::Corrupt(format!("{key}: arrays nested too deep")));
                }
                let elem_ty = self.u32(key)?;
                let n = self.u64(key)?;
                // A count whose smallest encoding overruns the remaining bytes is corrupt;
                // checking first keeps a hostile count from reserving memory it can't fill.
                let remaining = (self.buf.len() - self.pos) as u64;
                let need = n.checked_mul(min_value_bytes(elem_ty)).ok_or_else(|| {
                    GgufError::Corrupt(format!(
                        "{key}: array of {n} elements of type {elem_ty} overflows"
                    ))
                })?;
                if need > remaining {
                    // Reported as truncation: the file ends before the array can.
                    return Err(GgufError::Truncated {
                        what: format!("{key} (array of {n} elements of type {elem_ty})"),
                        need: self.pos as u64,
                        end: (self.pos as u64).saturating_add(need),
                        len: self.buf.len() as u64,
                    });
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem_ty, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.arr(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.arr(key)?)),
            t => return Err(GgufError::Corrupt(format!("{key}: unknown value type {t}"))),
        })
    }
}

impl Gguf {
    /// Open and memory-map a GGUF file; the header and tensor table are validated here.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; a file changed underneath us gives wrong values,
        // which every reader of mmapped model files accepts (llama.cpp does the same).
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::parse(Backing::Mmap(mmap))
    }

    /// Parse a GGUF image held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::parse(Backing::Owned(bytes))
    }

    fn parse(backing: Backing) -> Result<Self> {
        let buf: &[u8] = match &backing {
            Backing::Mmap(m) => m,
            Backing::Owned(v) => v,
        };
        let mut r = Reader { buf, pos: 0 };
        let magic: [u8; 4] = r.arr("magic").map_err(|_| {
            let mut m = [0u8; 4];
            m[..buf.len().min(4)].copy_from_slice(&buf[..buf.len().min(4)]);
            GgufError::BadMagic(m)
        })?;
        if &magic != MAGIC {
            return Err(GgufError::BadMagic(magic));
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version(version));
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        let remaining = (buf.len() - r.pos) as u64;
        let min_bytes = n_kv
            .checked_mul(MIN_KV_BYTES)
            .zip(n_tensors.checked_mul(MIN_TENSOR_BYTES))
            .and_then(|(a, b)| a.checked_add(b));
        if min_bytes.is_none_or(|b| b > remaining) {
            return Err(GgufError::Corrupt(format!(
                "{n_tensors} tensors and {n_kv} metadata entries cannot fit in the {remaining} bytes left"
            )));
        }
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = r.string(&format!("metadata key #{i}"))?;
            let ty = r.u32(&key)?;
            let v = r.value(ty, &key, 0)?;
            metadata.insert(key, v);
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(GgufError::Metadata {
                        key: "general.alignment".into(),
                        msg: format!("must be a power of two, got {v:?}"),
                    })
                }
            },
        };
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = r.string(&format!("tensor #{i} name"))?;
            let n_dims = r.u32(&name)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::Corrupt(format!(
                    "tensor {name}: {n_dims} dimensions"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64(&name)?);
            }
            let type_id = r.u32(&name)?;
            let dtype = GgmlType::from_id(type_id).ok_or_else(|| {
                GgufError::Corrupt(format!("tensor {name}: unsupported ggml type id {type_id}"))
            })?;
            let offset = r.u64(&name)?;
            let n_elem = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| {
                    GgufError::Corrupt(format!("tensor {name}: dims {dims:?} overflow"))
                })?;
            if dims[0] % dtype.block_elems() as u64 != 0 {
                return Err(GgufError::Corrupt(format!(
                    "tensor {name}: row length {} is not a multiple of the {dtype} block ({})",
                    dims[0],
                    dtype.block_elems()
                )));
            }
            let n_bytes = (n_elem / dtype.block_elems() as u64)
                .checked_mul(dtype.block_bytes() as u64)
                .ok_or_else(|| GgufError::Corrupt(format!("tensor {name}: size overflows")))?;
            if offset % alignment != 0 {
                return Err(GgufError::Corrupt(format!(
                    "tensor {name}: offset {offset} not aligned to {alignment}"
                )));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                dtype,
                offset,
                n_bytes,
                source: 0,
            });
        }
        let data_offset = (r.pos as u64).div_ceil(alignment) * alignment;
        let len = buf.len() as u64;
        for t in &mut tensors {
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes));
            match (start, end) {
                (Some(s), Some(e)) if e <= len => t.offset = s,
                _ => {
                    return Err(GgufError::Truncated {
                        what: format!("tensor {}", t.name),
                        need: data_offset.saturating_add(t.offset),
                        end: data_offset
                            .saturating_add(t.offset)
                            .saturating_add(t.n_bytes),
                        len,
                    })
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for t in &tensors {
            if !seen.insert(t.name.as_str()) {
                return Err(GgufError::Corrupt(format!(
                    "tensor {} appears twice",
                    t.name
                )));
            }
        }
        Ok(Gguf {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            backings: vec![backing],
        })
    }

    /// A model image from parts: tensors' `offset`/`source` point into `backings`.
    pub(crate) fn from_parts(
        metadata: BTreeMap<String, Value>,
        tensors: Vec<TensorInfo>,
        backings: Vec<Backing>,
    ) -> Self {
        Gguf {
            version: 3,
            metadata,
            tensors,
            alignment: DEFAULT_ALIGNMENT,
            data_offset: 0,
            backings,
        }
    }

    /// A new model image over this one's byte sources: `metadata` replaces the key-values and
    /// `tensors` lists the new image's tensors in order, each kept from this image (renamed
    /// or not) or given as new bytes (pruned layers, dropped and renumbered blocks).
    pub fn derive(
        self,
        metadata: BTreeMap<String, Value>,
        tensors: Vec<DerivedTensor>,
    ) -> Result<Gguf> {
        let Gguf {
            tensors: old,
            mut backings,
            ..
        } = self;
        let mut out = Vec::with_capacity(tensors.len());
        for t in tensors {
            match t {
                DerivedTensor::Keep { from, name } => {
                    let mut info = old
                        .iter()
                        .find(|t| t.name == from)
                        .cloned()
                        .ok_or_else(|| GgufError::Corrupt(format!("no tensor {from} to keep")))?;
                    info.name = name;
                    out.push(info);
                }
                DerivedTensor::New {
                    name,
                    dims,
                    dtype,
                    data,
                } => {
                    let n: u64 = dims.iter().product();
                    let want = dtype.bytes_for(n as usize);
                    if want != Some(data.len()) {
                        return Err(GgufError::Corrupt(format!(
                            "tensor {name}: {} bytes for {n} {dtype} values",
                            data.len()
                        )));
                    }
                    out.push(TensorInfo {
                        name,
                        dims,
                        dtype,
                        offset: 0,
                        n_bytes: data.len() as u64,
                        source: backings.len(),
                    });
                    backings.push(Backing::Owned(data));
                }
            }
        }
        Ok(Gguf::from_parts(metadata, out, backings))
    }

    /// The bytes of the first source: the whole file image of a GGUF file.
    pub fn raw_bytes(&self) -> &[u8] {
        self.source_bytes(0)
    }

    /// Tensor `t`'s bytes are a memory map of a file (not an owned image).
    pub fn is_mapped_tensor(&self, t: &TensorInfo) -> bool {
        matches!(self.backings.get(t.source), Some(Backing::Mmap(_)))
    }

    /// The bytes of one source (see [`TensorInfo::source`]).
    pub fn source_bytes(&self, source: usize) -> &[u8] {
        match self.backings.get(source) {
            Some(Backing::Mmap(m)) => m,
            Some(Backing::Owned(v)) => v,
            None => &[],
        }
    }

    /// Bytes of every source together (the file size of a GGUF file).
    pub fn total_bytes(&self) -> usize {
        (0..self.backings.len())
            .map(|i| self.source_bytes(i).len())
            .sum()
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor (bounds were checked at open).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        &self.source_bytes(info.source)[info.offset as usize..(info.offset + info.n_bytes) as usize]
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    fn meta_err(key: &str, msg: impl Into<String>) -> GgufError {
        GgufError::Metadata {
            key: key.to_string(),
            msg: msg.into(),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self
            .get(key)
            .ok_or_else(|| Self::meta_err(key, "missing"))?;
        v.as_str()
            .ok_or_else(|| Self::meta_err(key, format!("expected a string, got {}", v.type_name())))
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self
            .get(key)
            .ok_or_else(|| Self::meta_err(key, "missing"))?;
        v.as_u64()
            .ok_or_else(|| Self::meta_err(key, format!("expected an unsigned integer, got {v:?}")))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let v = self
            .get(key)
            .ok_or_else(|| Self::meta_err(key, "missing"))?;
        v.as_f64()
            .ok_or_else(|| Self::meta_err(key, format!("expected a number, got {v:?}")))
    }

    /// A string array (tokenizer tokens, merges).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let v = self
            .get(key)
            .ok_or_else(|| Self::meta_err(key, "missing"))?;
        let a = v
            .as_array()
            .ok_or_else(|| Self::meta_err(key, "expected an array"))?;
        a.iter()
            .map(|e| {
                e.as_str()
                    .ok_or_else(|| Self::meta_err(key, "expected an array of strings"))
            })
            .collect()
    }

    /// An integer array (token types).
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        let v = self
            .get(key)
            .ok_or_else(|| Self::meta_err(key, "missing"))?;
        let a = v
            .as_array()
            .ok_or_else(|| Self::meta_err(key, "expected an array"))?;
        a.iter()
            .map(|e| {
                e.as_i64()
                    .ok_or_else(|| Self::meta_err(key, "expected an array of integers"))
            })
            .collect()
    }

    /// The architecture name (`general.architecture`).
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }
}

/// The GGUF writer (also reachable as `gguf::write`, its older path).
pub use crate::gguf_writer as write;

#[cfg(test)]
mod tests {
    use super::write::{to_bytes, TensorOut};
    use super::*;

    fn sample() -> Vec<u8> {
        let data: Vec<u8> = (0..8u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
        to_bytes(
            &[
                ("general.architecture", Value::String("llama".into())),
                ("a.u8", Value::U8(7)),
                ("a.i8", Value::I8(-7)),
                ("a.u16", Value::U16(700)),
                ("a.i16", Value::I16(-700)),
                ("a.u32", Value::U32(70000)),
                ("a.i32", Value::I32(-70000)),
                ("a.f32", Value::F32(1.5)),
                ("a.bool", Value::Bool(true)),
                ("a.u64", Value::U64(1 << 40)),
                ("a.i64", Value::I64(-(1 << 40))),
                ("a.f64", Value::F64(2.25)),
                (
                    "a.arr",
                    Value::Array(vec![Value::String("x".into()), Value::String("yz".into())]),
                ),
            ],
            &[TensorOut {
                name: "w",
                dims: &[4, 2],
                type_id: 0,
                data: &data,
            }],
        )
    }

    #[test]
    fn reads_every_value_type_and_tensor() {
        let g = Gguf::from_bytes(sample()).unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(g.get("a.u8"), Some(&Value::U8(7)));
        assert_eq!(g.get("a.i8"), Some(&Value::I8(-7)));
        assert_eq!(g.get("a.u16"), Some(&Value::U16(700)));
        assert_eq!(g.get("a.i16"), Some(&Value::I16(-700)));
        assert_eq!(g.get("a.u32"), Some(&Value::U32(70000)));
        assert_eq!(g.get("a.i32"), Some(&Value::I32(-70000)));
        assert_eq!(g.get("a.f32"), Some(&Value::F32(1.5)));
        assert_eq!(g.get("a.bool"), Some(&Value::Bool(true)));
        assert_eq!(g.get("a.u64"), Some(&Value::U64(1 << 40)));
        assert_eq!(Value::U64(u64::MAX).as_f64(), Some(u64::MAX as f64));
        assert_eq!(Value::I8(-3).as_f64(), Some(-3.0));
        assert_eq!(g.get("a.i64"), Some(&Value::I64(-(1 << 40))));
        assert_eq!(g.get("a.f64"), Some(&Value::F64(2.25)));
        assert_eq!(g.get_str_array("a.arr").unwrap(), vec!["x", "yz"]);
        let t = g.tensor_info("w").unwrap();
        assert_eq!(t.dims, vec![4, 2]);
        let d = g.tensor_data(t);
        assert_eq!(f32::from_le_bytes(d[28..32].try_into().unwrap()), 7.0);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = sample();
        for n in 0..full.len() - 1 {
            // Trailing alignment padding after the last tensor's data is not needed.
            if n >= full.len() - 32 + 32 {
                continue;
            }
            let r = Gguf::from_bytes(full[..n].to_vec());
            assert!(r.is_err(), "prefix of {n} bytes parsed");
        }
    }

    #[test]
    fn rejects_bad_magic_version_and_hostile_counts() {
        let mut b = sample();
        b[0] = b'X';
        assert!(matches!(Gguf::from_bytes(b), Err(GgufError::BadMagic(_))));
        let mut b = sample();
        b[4] = 9;
        assert!(matches!(Gguf::from_bytes(b), Err(GgufError::Version(9))));
        let mut b = sample();
        b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Gguf::from_bytes(b).is_err());
    }

    /// A header: magic, version 3, tensor and metadata counts.
    fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&n_tensors.to_le_bytes());
        b.extend_from_slice(&n_kv.to_le_bytes());
        b
    }

    #[test]
    fn counts_are_checked_against_the_smallest_entry_size() {
        // Two tensor entries need at least 64 bytes; 40 are left.
        let mut b = header(2, 0);
        b.resize(b.len() + 40, 0);
        let e = Gguf::from_bytes(b).unwrap_err();
        assert!(e.to_string().contains("cannot fit"), "{e}");
        // 20 u64 elements need 160 bytes; 100 are left. A hostile count is refused before
        // anything is reserved for it, not after reading runs out.
        let mut b = header(0, 1);
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'a');
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&10u32.to_le_bytes());
        b.extend_from_slice(&20u64.to_le_bytes());
        b.resize(b.len() + 100, 0);
        let e = Gguf::from_bytes(b).unwrap_err();
        assert!(e.to_string().contains("array of 20 elements"), "{e}");
        // Element count times element size overflowing u64 is corrupt too.
        let mut b = header(0, 1);
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'a');
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(matches!(Gguf::from_bytes(b), Err(GgufError::Corrupt(_))));
    }
}

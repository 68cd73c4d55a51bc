//! GGUF v3 writing: [`to_bytes`] for whole images in memory (tests, fuzz seeds) and
//! [`GgufWriter`], which streams tensors one at a time into an [`AtomicFile`] so that peak
//! memory stays near one tensor and an interrupted write leaves no half file.
//! Reference: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md

use std::io::Write;
use std::path::{Path, PathBuf};

use apr_core::GgmlType;

use crate::atomic::AtomicFile;
use crate::gguf::{GgufError, Result, Value};

/// Data alignment of the files we write (GGUF's default).
pub const ALIGN: usize = 32;

fn value_type(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => {
            let ty = a.first().map(value_type).unwrap_or(0);
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            for e in a {
                put_value(out, e);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

/// A tensor to write: name, ggml dims, ggml type id, raw data.
pub struct TensorOut<'a> {
    pub name: &'a str,
    pub dims: &'a [u64],
    pub type_id: u32,
    pub data: &'a [u8],
}

/// Serialize a GGUF v3 image with 32-byte alignment.
pub fn to_bytes(metadata: &[(&str, Value)], tensors: &[TensorOut]) -> Vec<u8> {
    const ALIGN: usize = 32;
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(&mut out, k);
        out.extend_from_slice(&value_type(v).to_le_bytes());
        put_value(&mut out, v);
    }
    let mut offset = 0usize;
    for t in tensors {
        put_str(&mut out, t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.type_id.to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset += t.data.len().div_ceil(ALIGN) * ALIGN;
    }
    out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
    for t in tensors {
        out.extend_from_slice(t.data);
        out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
    }
    out
}

/// A tensor of a file being streamed: its name, ggml dims (`dims[0]` the row length) and type.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub dtype: GgmlType,
}

impl TensorSpec {
    /// Bytes of the tensor's data, or an error when its rows are not whole blocks.
    pub fn n_bytes(&self) -> Result<usize> {
        let row = *self.dims.first().unwrap_or(&1) as usize;
        let rows: u64 = self.dims.iter().skip(1).product();
        self.dtype
            .bytes_for(row)
            .map(|rb| rb * rows as usize)
            .ok_or_else(|| {
                GgufError::Writer(format!(
                    "tensor {}: a row of {row} elements is not a whole number of {} blocks ({})",
                    self.name,
                    self.dtype,
                    self.dtype.block_elems()
                ))
            })
    }
}

/// Streams a GGUF file: the header, metadata and tensor table are written at creation; the
/// tensors' data follow in table order through [`GgufWriter::write`] (whole or in pieces);
/// [`GgufWriter::finish`] checks that every byte came and renames the file into place.
pub struct GgufWriter {
    out: AtomicFile,
    specs: Vec<TensorSpec>,
    sizes: Vec<usize>,
    /// The tensor being written and the bytes of it written so far.
    cur: usize,
    done: usize,
}

impl GgufWriter {
    pub fn create(
        dest: impl AsRef<Path>,
        metadata: &[(String, Value)],
        specs: Vec<TensorSpec>,
    ) -> Result<Self> {
        let dest = dest.as_ref();
        let io = |e: std::io::Error| GgufError::Io {
            path: dest.to_path_buf(),
            source: e,
        };
        let sizes = specs
            .iter()
            .map(TensorSpec::n_bytes)
            .collect::<Result<Vec<_>>>()?;
        let mut seen = std::collections::BTreeSet::new();
        if let Some(t) = specs.iter().find(|t| !seen.insert(t.name.as_str())) {
            return Err(GgufError::Writer(format!(
                "tensor {} appears twice",
                t.name
            )));
        }
        let mut keys = std::collections::BTreeSet::new();
        if let Some((k, _)) = metadata.iter().find(|(k, _)| !keys.insert(k.as_str())) {
            return Err(GgufError::Writer(format!("metadata key {k} appears twice")));
        }
        let mut head = Vec::new();
        head.extend_from_slice(b"GGUF");
        head.extend_from_slice(&3u32.to_le_bytes());
        head.extend_from_slice(&(specs.len() as u64).to_le_bytes());
        head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (k, v) in metadata {
            put_str(&mut head, k);
            head.extend_from_slice(&value_type(v).to_le_bytes());
            put_value(&mut head, v);
        }
        let mut offset = 0usize;
        for (t, &n) in specs.iter().zip(&sizes) {
            put_str(&mut head, &t.name);
            head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                head.extend_from_slice(&d.to_le_bytes());
            }
            head.extend_from_slice(&t.dtype.id().to_le_bytes());
            head.extend_from_slice(&(offset as u64).to_le_bytes());
            offset += n.div_ceil(ALIGN) * ALIGN;
        }
        head.resize(head.len().div_ceil(ALIGN) * ALIGN, 0);
        let mut out = AtomicFile::create(dest).map_err(io)?;
        out.write_all(&head).map_err(io)?;
        let mut w = GgufWriter {
            out,
            specs,
            sizes,
            cur: 0,
            done: 0,
        };
        w.skip_empty().map_err(io)?;
        Ok(w)
    }

    fn io(&self, e: std::io::Error) -> GgufError {
        GgufError::Io {
            path: self.out.dest().to_path_buf(),
            source: e,
        }
    }

    /// Moves past finished (and empty) tensors, padding each to the alignment.
    fn skip_empty(&mut self) -> std::io::Result<()> {
        while self.cur < self.specs.len() && self.done == self.sizes[self.cur] {
            let pad = self.done.div_ceil(ALIGN) * ALIGN - self.done;
            self.out.write_all(&[0u8; ALIGN][..pad])?;
            self.cur += 1;
            self.done = 0;
        }
        Ok(())
    }

    /// The tensor whose data [`GgufWriter::write`] expects next, if any is left.
    pub fn next_tensor(&self) -> Option<&TensorSpec> {
        self.specs.get(self.cur)
    }

    /// Appends `data` to the tensor `name`, which must be the one expected next; a tensor may
    /// come in several pieces (row chunks), never more bytes than it has.
    pub fn write(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let Some(t) = self.specs.get(self.cur) else {
            return Err(GgufError::Writer(format!(
                "tensor {name}: every tensor is already written"
            )));
        };
        if t.name != name {
            return Err(GgufError::Writer(format!(
                "tensor {name} written while {} is expected",
                t.name
            )));
        }
        let left = self.sizes[self.cur] - self.done;
        if data.len() > left {
            return Err(GgufError::Writer(format!(
                "tensor {name}: {} bytes given, {left} left of its {}",
                data.len(),
                self.sizes[self.cur]
            )));
        }
        self.out.write_all(data).map_err(|e| self.io(e))?;
        self.done += data.len();
        self.skip_empty().map_err(|e| self.io(e))
    }

    /// Checks that every tensor is complete, then syncs and renames the file into place.
    pub fn finish(self) -> Result<PathBuf> {
        if let Some(t) = self.specs.get(self.cur) {
            return Err(GgufError::Writer(format!(
                "tensor {} has {} of its {} bytes: the file is incomplete",
                t.name, self.done, self.sizes[self.cur]
            )));
        }
        let dest = self.out.dest().to_path_buf();
        self.out.commit().map_err(|e| GgufError::Io {
            path: dest.clone(),
            source: e,
        })?;
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Gguf;

    fn spec(name: &str, dims: &[u64], dtype: GgmlType) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dims: dims.to_vec(),
            dtype,
        }
    }

    #[test]
    fn streamed_file_equals_the_in_memory_image_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("apr-gguf-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.gguf");
        let a: Vec<u8> = (0..24u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let b: Vec<u8> = (0..34u8).collect(); // one Q8_0 block
        let meta = vec![(
            "general.architecture".to_string(),
            Value::String("llama".into()),
        )];
        let mut w = GgufWriter::create(
            &p,
            &meta,
            vec![
                spec("a", &[8, 3], GgmlType::F32),
                spec("b", &[32], GgmlType::Q8_0),
            ],
        )
        .unwrap();
        assert_eq!(w.next_tensor().unwrap().name, "a");
        w.write("a", &a[..40]).unwrap();
        w.write("a", &a[40..]).unwrap();
        assert!(w.write("a", &[0]).is_err(), "a is complete");
        w.write("b", &b).unwrap();
        w.finish().unwrap();
        let image = to_bytes(
            &[("general.architecture", Value::String("llama".into()))],
            &[
                TensorOut {
                    name: "a",
                    dims: &[8, 3],
                    type_id: 0,
                    data: &a,
                },
                TensorOut {
                    name: "b",
                    dims: &[32],
                    type_id: GgmlType::Q8_0.id(),
                    data: &b,
                },
            ],
        );
        assert_eq!(std::fs::read(&p).unwrap(), image);
        let g = Gguf::open(&p).unwrap();
        assert_eq!(g.tensor_data(g.tensor_info("b").unwrap()), &b[..]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn misuse_is_an_error_and_leaves_no_file() {
        let dir = std::env::temp_dir().join(format!("apr-gguf-writer-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.gguf");
        assert!(GgufWriter::create(&p, &[], vec![spec("q", &[33, 2], GgmlType::Q4_0)]).is_err());
        let two = vec![
            spec("a", &[4], GgmlType::F32),
            spec("a", &[4], GgmlType::F32),
        ];
        assert!(GgufWriter::create(&p, &[], two).is_err());
        let mut w = GgufWriter::create(&p, &[], vec![spec("a", &[4], GgmlType::F32)]).unwrap();
        assert!(w.write("b", &[0; 16]).is_err());
        w.write("a", &[0; 8]).unwrap();
        let e = w.finish().unwrap_err().to_string();
        assert!(e.contains("8 of its 16 bytes"), "{e}");
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

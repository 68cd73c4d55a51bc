//! Resuming an interrupted weight pruning. After each decoder layer the run leaves, in
//! `OUT.prune-partial/`, the layer's pruned matrices (`layer-N.bin`), the calibration samples'
//! hidden states entering the next layer (`hidden-N.bin`, calibrated methods) and then, last,
//! `state.json` naming the layers done; every file is written atomically, so a run stopped at
//! any point leaves a consistent state. A new run of the same job (same source bytes, options
//! and apr version: the `key`) picks up after the last layer done; any other job starts over.
//! The directory goes once the output is written.

use std::path::{Path, PathBuf};

use apr_core::quant::GgmlType;
use apr_formats::atomic::write_atomic;

use super::{PruneError, Result};

/// The checkpoint directory of the output `out`.
pub fn dir_for(out: &Path) -> PathBuf {
    dir_named(out, ".prune-partial")
}

/// `out`'s name with `suffix` added, beside it.
fn dir_named(out: &Path, suffix: &str) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    out.with_file_name(name)
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct State {
    key: String,
    layers_done: usize,
    zeros: u64,
    total: u64,
    matrices_pruned: usize,
}

/// One pruned matrix of a layer file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Entry {
    name: String,
    ty: String,
    bytes: usize,
}

/// What a resumed run starts from.
pub struct Restored {
    pub layers_done: usize,
    pub zeros: u64,
    pub total: u64,
    pub matrices_pruned: usize,
    /// The pruned matrices of the layers done, in layer order.
    pub matrices: Vec<(String, GgmlType, Vec<u8>)>,
    /// The hidden states entering layer `layers_done`, one per sample (calibrated methods).
    pub hidden: Option<Vec<Vec<f32>>>,
}

/// The checkpoint of one pruning job.
pub struct Checkpoint {
    dir: PathBuf,
    key: String,
}

fn io(what: &str, p: &Path, e: std::io::Error) -> PruneError {
    PruneError::Invalid(format!("{what} {}: {e}", p.display()))
}

impl Checkpoint {
    pub fn new(out: &Path, key: String) -> Self {
        Checkpoint {
            dir: dir_for(out),
            key,
        }
    }

    /// A checkpoint in `OUT<suffix>/` (another job kind than pruning).
    pub fn with_suffix(out: &Path, suffix: &str, key: String) -> Self {
        Checkpoint {
            dir: dir_named(out, suffix),
            key,
        }
    }

    /// Where the checkpoint lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The state a previous run of this job left, if any (`sample_lens`: tokens per sample,
    /// `hidden`: hidden size; both check the saved hidden states). A checkpoint of another
    /// job, or one that does not read back, is removed and the run starts over.
    pub fn restore(&self, sample_lens: &[usize], hidden: usize) -> Result<Option<Restored>> {
        let Ok(text) = std::fs::read_to_string(self.state_path()) else {
            return Ok(None);
        };
        match serde_json::from_str::<State>(&text) {
            Ok(s) if s.key == self.key => match self.load(&s, sample_lens, hidden) {
                Ok(r) => Ok(Some(r)),
                Err(e) => {
                    eprintln!(
                        "prune: the checkpoint in {} is unusable ({e}); starting over",
                        self.dir.display()
                    );
                    self.remove();
                    Ok(None)
                }
            },
            _ => {
                eprintln!(
                    "prune: {} belongs to another job; starting over",
                    self.dir.display()
                );
                self.remove();
                Ok(None)
            }
        }
    }

    fn load(&self, s: &State, sample_lens: &[usize], hidden: usize) -> Result<Restored> {
        let mut matrices = Vec::new();
        for li in 0..s.layers_done {
            let p = self.dir.join(format!("layer-{li}.bin"));
            let data = std::fs::read(&p).map_err(|e| io("cannot read", &p, e))?;
            let bad = || PruneError::Invalid(format!("{} is corrupt", p.display()));
            let hl = u64::from_le_bytes(data.get(..8).ok_or_else(bad)?.try_into().unwrap());
            let hl = usize::try_from(hl).map_err(|_| bad())?;
            let head = data
                .get(8..8usize.checked_add(hl).ok_or_else(bad)?)
                .ok_or_else(bad)?;
            let entries: Vec<Entry> = serde_json::from_slice(head).map_err(|_| bad())?;
            let mut off = 8 + hl;
            for e in entries {
                let ty = GgmlType::from_name(&e.ty).ok_or_else(bad)?;
                let end = off.checked_add(e.bytes).ok_or_else(bad)?;
                let bytes = data.get(off..end).ok_or_else(bad)?.to_vec();
                matrices.push((e.name, ty, bytes));
                off = end;
            }
            if off != data.len() {
                return Err(bad());
            }
        }
        let p = self.dir.join(format!("hidden-{}.bin", s.layers_done));
        let hidden = match std::fs::read(&p) {
            Ok(data) => {
                let want: usize = sample_lens.iter().sum::<usize>() * hidden * 4;
                if data.len() != want {
                    return Err(PruneError::Invalid(format!(
                        "{} holds {} bytes, not {want}",
                        p.display(),
                        data.len()
                    )));
                }
                let all: Vec<f32> = data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                let mut xs = Vec::with_capacity(sample_lens.len());
                let mut at = 0;
                for &n in sample_lens {
                    xs.push(all[at..at + n * hidden].to_vec());
                    at += n * hidden;
                }
                Some(xs)
            }
            Err(_) => None,
        };
        Ok(Restored {
            layers_done: s.layers_done,
            zeros: s.zeros,
            total: s.total,
            matrices_pruned: s.matrices_pruned,
            matrices,
            hidden,
        })
    }

    /// Records layer `li` done: its pruned matrices, the hidden states entering layer `li + 1`
    /// (calibrated methods), then the state.
    #[allow(clippy::too_many_arguments)]
    pub fn save_layer(
        &self,
        li: usize,
        matrices: &[(&str, GgmlType, &[u8])],
        hidden: Option<&[Vec<f32>]>,
        zeros: u64,
        total: u64,
        matrices_pruned: usize,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io("cannot create", &self.dir, e))?;
        let entries: Vec<Entry> = matrices
            .iter()
            .map(|(name, ty, b)| Entry {
                name: name.to_string(),
                ty: ty.name().to_string(),
                bytes: b.len(),
            })
            .collect();
        let head = serde_json::to_vec(&entries).expect("entries serialize");
        let mut data =
            Vec::with_capacity(8 + head.len() + matrices.iter().map(|m| m.2.len()).sum::<usize>());
        data.extend_from_slice(&(head.len() as u64).to_le_bytes());
        data.extend_from_slice(&head);
        for (_, _, b) in matrices {
            data.extend_from_slice(b);
        }
        let p = self.dir.join(format!("layer-{li}.bin"));
        write_atomic(&p, &data).map_err(|e| io("cannot write", &p, e))?;
        drop(data);
        if let Some(xs) = hidden {
            let mut bytes = Vec::with_capacity(xs.iter().map(|x| x.len() * 4).sum());
            for v in xs.iter().flatten() {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            let p = self.dir.join(format!("hidden-{}.bin", li + 1));
            write_atomic(&p, &bytes).map_err(|e| io("cannot write", &p, e))?;
        }
        let s = State {
            key: self.key.clone(),
            layers_done: li + 1,
            zeros,
            total,
            matrices_pruned,
        };
        let p = self.state_path();
        write_atomic(
            &p,
            serde_json::to_string(&s)
                .expect("state serializes")
                .as_bytes(),
        )
        .map_err(|e| io("cannot write", &p, e))?;
        // The hidden states of the layer before are no longer needed.
        let _ = std::fs::remove_file(self.dir.join(format!("hidden-{li}.bin")));
        Ok(())
    }

    /// Removes the checkpoint (the output is written, or the job changed).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

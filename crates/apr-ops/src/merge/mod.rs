//! Model merging, tensor by tensor, with mergekit's methods (one file per method family, one
//! registry [`METHODS`]). A method sees each input tensor as a [`TensorSource`] it reads in
//! row chunks, as many passes as it needs (global statistics first: norms, magnitude
//! thresholds, rescale factors; then the merged rows), so memory stays near a few chunks
//! whatever the tensor's size. Reference: https://github.com/arcee-ai/mergekit
//! (merge_methods/, sparsify.py), whose per-tensor semantics these follow.

pub mod config;
mod gta;
mod linear;
mod model_stock;
mod nuslerp;
mod passthrough;
pub mod run;
mod slerp;
pub mod sparsify;

#[cfg(test)]
mod tests;

/// Rows read per chunk when the caller does not say.
pub const DEFAULT_CHUNK_ROWS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("merge method {method}: {msg}")]
    Invalid { method: &'static str, msg: String },
    #[error("unknown merge method {0:?} (known: {1})")]
    UnknownMethod(String, String),
    #[error("reading {what}: {msg}")]
    Read { what: String, msg: String },
    #[error("writing the merged tensor: {0}")]
    Write(String),
}

pub type Result<T> = std::result::Result<T, MergeError>;

/// One input tensor of `rows x cols` f32 values, read by rows (dequantized or converted by the
/// implementation as needed).
pub trait TensorSource: Sync {
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    /// Rows `r0 .. r0 + n` into `out` (`n * cols` values).
    fn read(&self, r0: usize, n: usize, out: &mut [f32]) -> Result<()>;
}

/// An in-memory tensor (tests, small tensors).
pub struct SliceSource<'a> {
    pub data: &'a [f32],
    pub cols: usize,
}

impl TensorSource for SliceSource<'_> {
    fn rows(&self) -> usize {
        self.data.len() / self.cols.max(1)
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn read(&self, r0: usize, n: usize, out: &mut [f32]) -> Result<()> {
        out.copy_from_slice(&self.data[r0 * self.cols..(r0 + n) * self.cols]);
        Ok(())
    }
}

/// Per-model, per-tensor parameters (mergekit's tensor parameters), already resolved for this
/// tensor (gradients and filters are the config's business).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TensorParams {
    pub weight: Option<f64>,
    pub density: Option<f64>,
    pub gamma: Option<f64>,
    pub epsilon: Option<f64>,
}

/// Method-wide parameters (mergekit's `parameters:`), resolved for this tensor.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MethodParams {
    /// slerp's interpolation factor (0: the base, 1: the other model).
    pub t: Option<f64>,
    pub normalize: Option<bool>,
    pub rescale: Option<bool>,
    pub lambda: Option<f64>,
    pub nuslerp_row_wise: Option<bool>,
    pub nuslerp_flatten: Option<bool>,
    pub filter_wise: Option<bool>,
}

/// What one tensor's merge reads: the base model's tensor (if the method takes one), the other
/// models' tensors with their parameters, and the method's parameters.
pub struct Inputs<'a> {
    pub name: &'a str,
    pub base: Option<&'a dyn TensorSource>,
    pub models: Vec<(&'a dyn TensorSource, TensorParams)>,
    pub params: MethodParams,
    /// Seed of the random methods (DARE, DELLA); mixed with the tensor name, so every tensor
    /// draws its own mask and a rerun draws the same.
    pub seed: u64,
    pub chunk_rows: usize,
}

impl Inputs<'_> {
    fn shape(&self) -> (usize, usize) {
        let s = self.base.or(self.models.first().map(|m| m.0));
        s.map_or((0, 0), |s| (s.rows(), s.cols()))
    }

    /// Calls `f(r0, n, base_rows, model_rows)` for each chunk of rows, in order.
    fn for_each_chunk(
        &self,
        mut f: impl FnMut(usize, usize, Option<&[f32]>, &[Vec<f32>]) -> Result<()>,
    ) -> Result<()> {
        let (rows, cols) = self.shape();
        let step = self.chunk_rows.max(1);
        let mut base = vec![0f32; if self.base.is_some() { step * cols } else { 0 }];
        let mut ms: Vec<Vec<f32>> = self
            .models
            .iter()
            .map(|_| vec![0f32; step * cols])
            .collect();
        let mut r0 = 0;
        while r0 < rows {
            let n = step.min(rows - r0);
            if let Some(b) = self.base {
                b.read(r0, n, &mut base[..n * cols])?;
            }
            for ((m, _), buf) in self.models.iter().zip(&mut ms) {
                buf.truncate(n * cols);
                buf.resize(n * cols, 0.0);
                m.read(r0, n, buf)?;
            }
            let b = self.base.map(|_| &base[..n * cols]);
            f(r0, n, b, &ms)?;
            r0 += n;
        }
        Ok(())
    }

    /// Every model's weight, which the method requires.
    fn weights(&self, method: &'static str) -> Result<Vec<f64>> {
        self.models
            .iter()
            .enumerate()
            .map(|(i, (_, p))| {
                p.weight.ok_or_else(|| MergeError::Invalid {
                    method,
                    msg: format!("model {i} has no weight for {}", self.name),
                })
            })
            .collect()
    }
}

/// A merge method: checks what it is given, then writes the merged tensor's rows in order
/// through `out`.
pub trait Method: Sync {
    fn name(&self) -> &'static str;
    /// The method needs `base_model` (task vectors are taken against it).
    fn needs_base(&self) -> bool;
    /// The base model, when the configuration names one, is the method's base rather than one
    /// more model to combine.
    fn takes_base(&self) -> bool {
        self.needs_base()
    }
    /// Checks the number of models (besides the base) before any tensor is read.
    fn check_models(&self, n_models: usize, has_base: bool) -> Result<()>;
    fn merge(&self, x: &Inputs<'_>, out: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()>;
}

/// Every method, by mergekit's name.
pub static METHODS: &[&dyn Method] = &[
    &linear::Linear,
    &slerp::Slerp,
    &nuslerp::NuSlerp,
    &gta::TASK_ARITHMETIC,
    &gta::TIES,
    &gta::DARE_TIES,
    &gta::DARE_LINEAR,
    &gta::BREADCRUMBS,
    &gta::BREADCRUMBS_TIES,
    &gta::DELLA,
    &gta::DELLA_LINEAR,
    &model_stock::ModelStock,
    &passthrough::Passthrough,
];

pub fn lookup(name: &str) -> Result<&'static dyn Method> {
    METHODS
        .iter()
        .copied()
        .find(|m| m.name() == name)
        .ok_or_else(|| {
            let known: Vec<_> = METHODS.iter().map(|m| m.name()).collect();
            MergeError::UnknownMethod(name.to_string(), known.join(", "))
        })
}

/// Merges one tensor into memory (small tensors and tests).
pub fn merge_to_vec(m: &dyn Method, x: &Inputs<'_>) -> Result<Vec<f32>> {
    m.check_models(x.models.len(), x.base.is_some())?;
    let mut v = Vec::new();
    m.merge(x, &mut |rows| {
        v.extend_from_slice(rows);
        Ok(())
    })?;
    Ok(v)
}

/// 64-bit hash of a tensor name (FNV-1a), to give each tensor its own random stream.
pub(crate) fn name_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x1000_0000_01b3)
    })
}

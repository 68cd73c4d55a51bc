//! Pruning (`apr prune`), one registry [`METHODS`]: magnitude, Wanda and SparseGPT zero
//! weights of every decoder linear layer (the embedding and LM head are left whole, as the
//! papers leave them); `blocks` drops whole decoder blocks. The calibrated methods run the
//! model layer by layer, as the papers' code does: each layer's input statistics come from the
//! calibration samples passed through the layers before it already pruned, then the layer is
//! pruned and its pruned outputs become the next layer's inputs. Outputs are GGUF or a Hugging
//! Face directory, written through the same writers as `apr export` (atomic, with provenance);
//! pruned matrices are float (zeros stay exact), every other tensor is converted to that type.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use apr_core::quant::{self, GgmlType};
use apr_engine::{Engine, EngineError};
use apr_formats::{DerivedTensor, Provenance};
use apr_models::{ActivationStats, KvCache, Layer, Linear, Scratch};

use crate::convert::{self, ConvertError};

pub mod blocks;
pub mod mask;
mod methods;
pub mod resume;
pub mod sparsegpt;

#[cfg(test)]
mod tests;

/// Calibration samples when the caller does not say (the papers use 128 of 2048 tokens; 32 of
/// 512 fit the 43K-token calibration text and two cores).
pub const DEFAULT_CALIB_SAMPLES: usize = 32;
/// Tokens per calibration sample.
pub const DEFAULT_CALIB_LEN: usize = 512;
/// Type of the pruned matrices when the caller names none.
pub const DEFAULT_TYPE: &str = "f16";

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Model(#[from] apr_models::ModelError),
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error(transparent)]
    Gguf(#[from] apr_formats::GgufError),
    #[error(transparent)]
    Hf(#[from] apr_formats::HfError),
    #[error(transparent)]
    Quant(#[from] quant::QuantError),
}

pub type Result<T> = std::result::Result<T, PruneError>;

/// An N:M pattern: `n` of every `m` consecutive inputs of a row are zeroed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Pattern {
    pub n: usize,
    pub m: usize,
}

impl Pattern {
    /// `"2:4"`, `"4:8"`, ... (`0 < n < m`).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || PruneError::Invalid(format!("--pattern {s:?} is not N:M with 0 < N < M"));
        let (n, m) = s.split_once(':').ok_or_else(bad)?;
        let (n, m): (usize, usize) = (
            n.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || n >= m {
            return Err(bad());
        }
        Ok(Pattern { n, m })
    }
}

/// What a weight method sees of one matrix.
pub struct WeightJob<'a> {
    /// The weight's name (`blk.3.ffn_down.weight`).
    pub weight: &'a str,
    /// The layer's calibration statistics (calibrated methods).
    pub stats: Option<&'a ActivationStats>,
    pub sparsity: f64,
    pub pattern: Option<Pattern>,
    pub threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Magnitude,
    Wanda,
    SparseGpt,
    Blocks,
}

/// One pruning method.
pub struct Method {
    pub name: &'static str,
    pub about: &'static str,
    kind: Kind,
}

impl Method {
    /// Needs calibration samples.
    pub fn calibrated(&self) -> bool {
        self.kind != Kind::Magnitude
    }
}

/// Every method `apr prune --method` accepts.
pub const METHODS: &[Method] = &[
    Method {
        name: "magnitude",
        about: "the lowest |W| of each matrix",
        kind: Kind::Magnitude,
    },
    Method {
        name: "wanda",
        about: "the lowest |W| x ||X|| of each output row (Sun et al. 2023)",
        kind: Kind::Wanda,
    },
    Method {
        name: "sparsegpt",
        about: "optimal-brain-surgeon updates from the inverse Hessian (Frantar & Alistarh 2023)",
        kind: Kind::SparseGpt,
    },
    Method {
        name: "blocks",
        about: "drop the --drop N consecutive blocks whose input and output are closest (Gromov et al. 2024)",
        kind: Kind::Blocks,
    },
];

pub fn method(name: &str) -> Result<&'static Method> {
    METHODS
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let known: Vec<_> = METHODS.iter().map(|m| m.name).collect();
            PruneError::Invalid(format!(
                "unknown prune method {name:?} (known: {})",
                known.join(", ")
            ))
        })
}

/// What to prune and how.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub method: String,
    /// Fraction of each pruned matrix's weights to zero (implied by `pattern` when set).
    pub sparsity: Option<f64>,
    pub pattern: Option<Pattern>,
    /// Blocks to drop (`blocks`).
    pub drop: Option<usize>,
    /// The calibration text (calibrated methods).
    pub calib: Option<String>,
    pub calib_samples: usize,
    pub calib_len: usize,
    pub threads: usize,
    /// Output type of the weights (f32, f16, bf16, q8_0); `None`: f16, or for `blocks` into
    /// GGUF every tensor as it is.
    pub ty: Option<String>,
    /// `gguf` or `safetensors`.
    pub format: String,
    pub shard_bytes: usize,
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PruneReport {
    pub output: String,
    pub method: String,
    /// Zeros over all weights of the pruned matrices, after the run.
    pub sparsity: f64,
    pub pattern: Option<Pattern>,
    pub matrices_pruned: usize,
    /// Blocks dropped (`blocks`), in the input's numbering.
    pub dropped: Vec<usize>,
    /// `blocks`: the mean angular distance of each span start.
    pub distances: Vec<f64>,
    pub calib_tokens: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// Runs the pruning; `progress(stage, done, total)` as it goes.
pub fn prune(
    model: &Path,
    out: &Path,
    o: &PruneOptions,
    prov: &Provenance,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<PruneReport> {
    let started = Instant::now();
    validate(o)?;
    let m = method(&o.method)?;
    let (sparsity, n_drop) = check_options(m, o)?;
    let out_ty = match &o.ty {
        Some(t) => Some(convert::out_type(t)?),
        None if m.kind == Kind::Blocks && o.format == "gguf" => None,
        None => Some(convert::out_type(DEFAULT_TYPE)?),
    };
    let mut engine = Engine::load(model, o.threads.max(1))?;
    let samples = if m.calibrated() {
        calibration_samples(&engine, o)?
    } else {
        Vec::new()
    };
    let calib_tokens = samples.iter().map(Vec::len).sum();
    let mut report = PruneReport {
        output: String::new(),
        method: m.name.to_string(),
        sparsity: 0.0,
        pattern: o.pattern,
        matrices_pruned: 0,
        dropped: Vec::new(),
        distances: Vec::new(),
        calib_tokens,
        bytes: 0,
        seconds: 0.0,
    };
    // The engine (and its views of the input) goes before the input is opened again.
    let image = if m.kind == Kind::Blocks {
        let n = n_drop.expect("checked");
        let dist = block_distances(&engine, &samples, n, progress)?;
        let start = blocks::closest(&dist);
        report.dropped = (start..start + n).collect();
        report.distances = dist;
        drop(engine);
        let src = apr_formats::open_model(model)?;
        let (meta, tensors) = blocks::without_blocks(&src, start, n)?;
        src.derive(meta, tensors)?
    } else {
        let (ty, _) = out_ty.expect("weight methods have a type");
        let ckpt = resume::Checkpoint::new(out, job_key(&engine, o, ty, prov));
        let pruned = prune_weights(
            &mut engine,
            m,
            &samples,
            sparsity,
            o,
            ty,
            &ckpt,
            &mut report,
            progress,
        )?;
        drop(engine);
        let src = apr_formats::open_model(model)?;
        let meta = src.metadata.clone();
        let tensors = src
            .tensors
            .iter()
            .map(|t| match pruned.get(&t.name) {
                Some((dtype, data)) => DerivedTensor::New {
                    name: t.name.clone(),
                    dims: t.dims.clone(),
                    dtype: *dtype,
                    data: Arc::try_unwrap(data.clone()).unwrap_or_else(|a| (*a).clone()),
                },
                None => DerivedTensor::Keep {
                    from: t.name.clone(),
                    name: t.name.clone(),
                },
            })
            .collect();
        drop(pruned);
        src.derive(meta, tensors)?
    };
    progress("write", 0, 1);
    let r = match (o.format.as_str(), out_ty) {
        ("safetensors", t) => {
            let ty = t.map_or(GgmlType::F16, |t| t.0);
            convert::write_hf(&image, out, ty, o.shard_bytes, prov)?
        }
        (_, Some((ty, file_type))) => convert::write_gguf(&image, out, ty, file_type, prov)?,
        (_, None) => convert::write_gguf_as_is(&image, out, prov)?,
    };
    progress("write", 1, 1);
    if m.kind != Kind::Blocks {
        resume::Checkpoint::new(out, String::new()).remove();
    }
    report.output = r.output;
    report.bytes = r.bytes;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// What makes two weight-pruning runs the same job: the source's bytes, the method and its
/// options, the calibration text, the output type, the KV cache type and the apr
/// version (threads only change float summation order).
fn job_key(engine: &Engine, o: &PruneOptions, ty: GgmlType, prov: &Provenance) -> String {
    use sha2::{Digest, Sha256};
    let calib: String = match &o.calib {
        Some(text) => Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        None => String::new(),
    };
    format!(
        "source {} | {} sparsity {:?} pattern {:?} | calib {calib} {}x{} | {ty} | kv {:?} | apr {}",
        prov.source_sha256,
        o.method.to_ascii_lowercase(),
        o.sparsity,
        o.pattern,
        o.calib_samples,
        o.calib_len,
        engine.kv_type,
        prov.version
    )
}

/// Checks the options (all but the calibration text) before any work starts.
pub fn validate(o: &PruneOptions) -> Result<()> {
    let m = method(&o.method)?;
    check_options(m, o)?;
    if let Some(t) = &o.ty {
        convert::out_type(t)?;
    }
    if !["gguf", "safetensors"].contains(&o.format.as_str()) {
        return Err(PruneError::Invalid(format!(
            "--format {:?} is not gguf or safetensors",
            o.format
        )));
    }
    Ok(())
}

/// The sparsity and block count a method runs with, after the options' checks.
fn check_options(m: &Method, o: &PruneOptions) -> Result<(f64, Option<usize>)> {
    if m.kind == Kind::Blocks {
        if o.sparsity.is_some() || o.pattern.is_some() {
            return Err(PruneError::Invalid(
                "--method blocks takes --drop N, not --sparsity or --pattern".into(),
            ));
        }
        return match o.drop {
            Some(n) if n > 0 => Ok((0.0, Some(n))),
            _ => Err(PruneError::Invalid(
                "--method blocks needs --drop N (N >= 1)".into(),
            )),
        };
    }
    if o.drop.is_some() {
        return Err(PruneError::Invalid(format!(
            "--drop is for --method blocks, not {}",
            m.name
        )));
    }
    let s = match (o.sparsity, o.pattern) {
        (None, None) => {
            return Err(PruneError::Invalid(
                "give --sparsity S (0 < S < 1) or --pattern N:M".into(),
            ))
        }
        (s, Some(p)) => {
            let implied = p.n as f64 / p.m as f64;
            if s.is_some_and(|s| (s - implied).abs() > 1e-9) {
                return Err(PruneError::Invalid(format!(
                    "--pattern {}:{} prunes {implied} of the weights; --sparsity says {}",
                    p.n,
                    p.m,
                    s.unwrap_or_default()
                )));
            }
            implied
        }
        (Some(s), None) => s,
    };
    if !(s > 0.0 && s < 1.0) {
        return Err(PruneError::Invalid(format!(
            "--sparsity must be between 0 and 1 (exclusive), got {s}"
        )));
    }
    Ok((s, None))
}

/// The first `calib_samples` chunks of `calib_len` tokens of the calibration text.
fn calibration_samples(engine: &Engine, o: &PruneOptions) -> Result<Vec<Vec<u32>>> {
    let text = o.calib.as_deref().ok_or_else(|| {
        PruneError::Invalid(format!(
            "--method {} needs a calibration text (--calib)",
            o.method
        ))
    })?;
    text_samples(engine, text, o.calib_samples, o.calib_len)
}

/// The first `samples` chunks of `len` tokens of `text` (at most the model's context each).
pub(crate) fn text_samples(
    engine: &Engine,
    text: &str,
    samples: usize,
    len: usize,
) -> Result<Vec<Vec<u32>>> {
    if len < 8 || samples == 0 {
        return Err(PruneError::Invalid(format!(
            "--calib-len must be at least 8 and --calib-samples at least 1 (got {len} and {samples})"
        )));
    }
    let len = len.min(engine.model.cfg.ctx_train);
    let mut chunks = engine.text_chunks(text, len)?;
    if chunks.len() < samples {
        return Err(PruneError::Invalid(format!(
            "the calibration text holds {} samples of {len} tokens; --calib-samples asks for {samples}",
            chunks.len(),
        )));
    }
    chunks.truncate(samples);
    Ok(chunks)
}

/// The embeddings of a sample, `[tokens, hidden]`.
pub(crate) fn embed(engine: &Engine, ids: &[u32]) -> Result<Vec<f32>> {
    let d = engine.model.cfg.hidden;
    let mut x = vec![0f32; ids.len() * d];
    for (t, &id) in ids.iter().enumerate() {
        engine
            .model
            .embed_tokens
            .dequantize_row(id as usize, &mut x[t * d..(t + 1) * d])?;
    }
    Ok(x)
}

/// The layer's seven matrices, with the weight whose input each one takes (SparseGPT's
/// Hessian is shared by the matrices that read the same input).
pub(crate) fn layer_weights(l: &mut Layer) -> [(&mut Linear, String); 7] {
    let (q, o, g, d) = (
        l.q_proj.name.clone(),
        l.o_proj.name.clone(),
        l.gate_proj.name.clone(),
        l.down_proj.name.clone(),
    );
    [
        (&mut l.q_proj, q.clone()),
        (&mut l.k_proj, q.clone()),
        (&mut l.v_proj, q),
        (&mut l.o_proj, o),
        (&mut l.gate_proj, g.clone()),
        (&mut l.up_proj, g),
        (&mut l.down_proj, d),
    ]
}

type Pruned = BTreeMap<String, (GgmlType, Arc<Vec<u8>>)>;

/// Magnitude, Wanda, SparseGPT over every layer, in order; the pruned matrices replace the
/// model's (so that the next layer calibrates on them) and are returned encoded as `ty`.
#[allow(clippy::too_many_arguments)]
fn prune_weights(
    engine: &mut Engine,
    m: &Method,
    samples: &[Vec<u32>],
    sparsity: f64,
    o: &PruneOptions,
    ty: GgmlType,
    ckpt: &resume::Checkpoint,
    report: &mut PruneReport,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Pruned> {
    let n_layer = engine.model.layers.len();
    let lens: Vec<usize> = samples.iter().map(Vec::len).collect();
    let mut restored = ckpt.restore(&lens, engine.model.cfg.hidden)?;
    if let Some(r) = &restored {
        let need_hidden = m.calibrated() && r.layers_done < n_layer;
        if r.layers_done > n_layer || (need_hidden && r.hidden.is_none()) {
            ckpt.remove();
            restored = None;
        }
    }
    let mut pruned = Pruned::new();
    let (mut zeros, mut total) = (0u64, 0u64);
    let mut start = 0;
    let mut xs = Vec::new();
    if let Some(r) = restored {
        eprintln!(
            "prune: resuming after {} of {n_layer} layers ({})",
            r.layers_done,
            ckpt.dir().display()
        );
        let mut saved: BTreeMap<String, (GgmlType, Vec<u8>)> = r
            .matrices
            .into_iter()
            .map(|(n, t, b)| (n, (t, b)))
            .collect();
        for layer in &mut engine.model.layers[..r.layers_done] {
            for (lin, _) in layer_weights(layer) {
                let (t, bytes) = saved.remove(&lin.name).ok_or_else(|| {
                    PruneError::Invalid(format!("the checkpoint lacks {}", lin.name))
                })?;
                let bytes = Arc::new(bytes);
                *lin = Linear::from_bytes(
                    &lin.name,
                    t,
                    lin.rows,
                    lin.cols,
                    bytes.clone(),
                    lin.bias.take(),
                )?;
                pruned.insert(lin.name.clone(), (t, bytes));
            }
        }
        (zeros, total, start) = (r.zeros, r.total, r.layers_done);
        report.matrices_pruned = r.matrices_pruned;
        xs = r.hidden.unwrap_or_default();
    } else if m.calibrated() {
        xs = samples
            .iter()
            .map(|s| embed(engine, s))
            .collect::<Result<Vec<_>>>()?;
    }
    let ctx = samples.iter().map(Vec::len).max().unwrap_or(1);
    let mut cache = KvCache::with_type(&engine.model.cfg, ctx, engine.kv_type);
    let mut scratch = Scratch::default();
    for li in start..n_layer {
        progress("prune", li, n_layer);
        let stats = if m.calibrated() {
            let mut st = ActivationStats::new(false);
            if m.kind == Kind::SparseGpt {
                let l = &engine.model.layers[li];
                for p in [&l.q_proj, &l.o_proj, &l.gate_proj, &l.down_proj] {
                    st.keep.insert(p.name.clone());
                }
            }
            scratch.stats = Some(st);
            for x in &xs {
                let mut h = x.clone();
                engine
                    .model
                    .forward_layer(&engine.pool, &mut cache, &mut scratch, li, &mut h)?;
            }
            scratch.stats.take()
        } else {
            None
        };
        let mut hinv: BTreeMap<String, sparsegpt::HessianInverse> = BTreeMap::new();
        let threads = o.threads.max(1);
        let layer = &mut engine.model.layers[li];
        for (lin, input) in layer_weights(layer) {
            let (rows, cols) = (lin.rows, lin.cols);
            let mut w = vec![0f32; rows * cols];
            quant::dequantize(lin.ty, lin.data.bytes(), &mut w)?; // [rows, cols]
            let job = WeightJob {
                weight: &lin.name,
                stats: stats.as_ref(),
                sparsity,
                pattern: o.pattern,
                threads,
            };
            match m.kind {
                Kind::Magnitude => methods::magnitude(&mut w, cols, &job)?,
                Kind::Wanda => methods::wanda(&mut w, cols, &job)?,
                Kind::SparseGpt => {
                    if !hinv.contains_key(&input) {
                        let x = stats
                            .as_ref()
                            .and_then(|s| s.inputs.get(&input))
                            .ok_or_else(|| {
                                PruneError::Invalid(format!("no calibration inputs of {input}"))
                            })?;
                        let h = sparsegpt::hessian_inverse(x, cols, threads, &input)?;
                        hinv.insert(input.clone(), h);
                    }
                    sparsegpt::prune(&mut w, cols, &job, &hinv[&input])?
                }
                Kind::Blocks => unreachable!("blocks drops layers"),
            }
            zeros += w.iter().filter(|&&v| v == 0.0).count() as u64;
            total += w.len() as u64;
            let info = apr_formats::TensorInfo {
                name: lin.name.clone(),
                dims: vec![cols as u64, rows as u64],
                dtype: lin.ty,
                offset: 0,
                n_bytes: 0,
                source: 0,
            };
            let t = convert::tensor_type(&info, ty);
            let bytes = Arc::new(convert::encode(t, &w, cols)?);
            *lin = Linear::from_bytes(&lin.name, t, rows, cols, bytes.clone(), lin.bias.take())?;
            pruned.insert(lin.name.clone(), (t, bytes));
            report.matrices_pruned += 1;
        }
        drop(hinv);
        drop(stats);
        let forward = m.calibrated() && li + 1 < n_layer;
        if forward {
            for x in xs.iter_mut() {
                engine
                    .model
                    .forward_layer(&engine.pool, &mut cache, &mut scratch, li, x)?;
            }
        }
        let mut done = Vec::new();
        for (lin, _) in layer_weights(&mut engine.model.layers[li]) {
            let (t, b) = &pruned[&lin.name];
            done.push((lin.name.clone(), *t, b.clone()));
        }
        let done: Vec<(&str, GgmlType, &[u8])> = done
            .iter()
            .map(|(n, t, b)| (n.as_str(), *t, b.as_slice()))
            .collect();
        let hidden = forward.then_some(xs.as_slice());
        ckpt.save_layer(li, &done, hidden, zeros, total, report.matrices_pruned)?;
    }
    progress("prune", n_layer, n_layer);
    report.sparsity = zeros as f64 / total.max(1) as f64;
    Ok(pruned)
}

/// Mean angular distance between the input of block `l` and the output of block `l + n - 1`,
/// for every start `l`, over the calibration tokens.
fn block_distances(
    engine: &Engine,
    samples: &[Vec<u32>],
    n: usize,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Vec<f64>> {
    let n_layer = engine.model.layers.len();
    if n >= n_layer {
        return Err(PruneError::Invalid(format!(
            "--drop {n} leaves nothing of a model of {n_layer} blocks"
        )));
    }
    let d = engine.model.cfg.hidden;
    let ctx = samples.iter().map(Vec::len).max().unwrap_or(1);
    let mut cache = KvCache::with_type(&engine.model.cfg, ctx, engine.kv_type);
    let mut scratch = Scratch::default();
    let mut sums = vec![0f64; n_layer - n + 1];
    let mut tokens = 0usize;
    for (si, s) in samples.iter().enumerate() {
        progress("distances", si, samples.len());
        let mut states = vec![embed(engine, s)?];
        for li in 0..n_layer {
            let mut x = states[li].clone();
            engine
                .model
                .forward_layer(&engine.pool, &mut cache, &mut scratch, li, &mut x)?;
            states.push(x);
        }
        tokens += blocks::accumulate(&states, d, n, &mut sums);
    }
    progress("distances", samples.len(), samples.len());
    Ok(sums.iter().map(|s| s / tokens.max(1) as f64).collect())
}

//! `apr quantize`: a GGUF of any type to one of llama.cpp's file types, tensor by tensor
//! (quantized inputs are dequantized to f32 first), with llama-quantize's per-tensor type
//! mix, importance weights from an imatrix, and the same metadata changes.
//! Reference: src/llama-quant.cpp (llama_model_quantize_impl) in llama.cpp.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use apr_core::pool::ThreadPool;
use apr_core::quant::{can_encode, dequantize, quantize_rows_with, Weighting};
use apr_core::GgmlType;
use apr_formats::{provenance, Gguf, GgufWriter, Provenance, TensorSpec, Value};

use crate::allocate::{allocate_by_error, Allocation, KindAllocation};
use crate::gptq::GptqOptions;
use crate::imatrix::{Imatrix, ImatrixError};
use crate::mix::{self, FileType, ModelFacts, TensorDesc};

/// ggml's GGML_QNT_VERSION, written to `general.quantization_version`.
pub const QUANTIZATION_VERSION: u32 = 2;
/// Rows per parallel work item (llama.cpp's chunks are about 16K values).
const CHUNK_VALUES: usize = 32 * 512;
/// Split-file keys llama-quantize drops.
const SPLIT_KEYS: &[&str] = &["split.no", "split.count", "split.tensors.count"];

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("unknown quantization type {0:?} (known: {known})", known = FileType::names().join(", "))]
    UnknownType(String),
    #[error("cannot read {path}: {source}")]
    Input {
        path: PathBuf,
        source: apr_formats::GgufError,
    },
    #[error(transparent)]
    Imatrix(#[from] ImatrixError),
    #[error("tensor {name}: the imatrix has {got} values, the tensor needs {want}")]
    ImatrixShape {
        name: String,
        got: usize,
        want: usize,
    },
    #[error("tensor {name}: {msg}")]
    Tensor { name: String, msg: String },
    #[error("writing {path}: {source}")]
    Output {
        path: PathBuf,
        source: apr_formats::GgufError,
    },
    #[error("GPTQ: {0}")]
    Gptq(String),
    #[error("hashing the input {path}: {source}")]
    Provenance {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to quantize to, and how.
pub struct QuantizeOptions {
    pub ftype: FileType,
    /// The imatrix and the path it was read from (recorded in the output's metadata).
    pub imatrix: Option<(Imatrix, PathBuf)>,
    /// How the imatrix steers the searches (`Weighting::Ggml`: llama-quantize's bytes).
    pub weighting: Weighting,
    pub threads: usize,
    /// The command line, for the provenance keys.
    pub command: String,
    /// Quantize the decoder matrices by GPTQ on this calibration ([`crate::gptq`]).
    pub gptq: Option<GptqOptions>,
    /// Which layers get a kind's larger type ([`crate::allocate`]).
    pub allocation: Allocation,
}

/// One tensor done (for a progress line).
pub struct TensorDone<'a> {
    pub index: usize,
    pub total: usize,
    pub name: &'a str,
    pub from: GgmlType,
    pub to: GgmlType,
    pub bytes: usize,
    pub used_imatrix: bool,
}

/// The outcome of a quantization.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QuantizeReport {
    pub out: PathBuf,
    #[serde(rename = "type")]
    pub ftype: String,
    pub bytes: u64,
    /// Tensor count per output type.
    pub tensors: BTreeMap<String, usize>,
    pub n_fallback: usize,
    /// The kinds whose larger type `--allocate error` placed (empty for llama.cpp's positions).
    pub allocation: Vec<KindAllocation>,
}

/// Reads the facts the mix rules need from the metadata.
pub fn model_facts(g: &Gguf) -> ModelFacts {
    let arch = g.architecture().unwrap_or("").to_string();
    let num = |k: &str| -> Option<u64> {
        let v = g.get(&format!("{arch}.{k}"))?;
        // Per-layer arrays: llama.cpp's n_gqa() reads layer 0.
        v.as_u64()
            .or_else(|| v.as_array().and_then(|a| a.first()).and_then(Value::as_u64))
    };
    let n_head = num("attention.head_count").unwrap_or(0);
    let n_head_kv = num("attention.head_count_kv").unwrap_or(n_head);
    ModelFacts {
        n_layer: num("block_count").unwrap_or(0) as usize,
        n_gqa: n_head.checked_div(n_head_kv).unwrap_or(0) as usize,
        n_expert: num("expert_count").unwrap_or(0) as usize,
        arch,
    }
}

/// The tensors of `g` in llama.cpp's order, with the type each gets under `ftype`.
pub fn plan_file(g: &Gguf, ftype: FileType, has_imatrix: bool) -> (Vec<TensorDesc>, mix::Plan) {
    let mut descs: Vec<TensorDesc> = g
        .tensors
        .iter()
        .map(|t| TensorDesc {
            name: t.name.clone(),
            dims: t.dims.clone(),
            dtype: t.dtype,
        })
        .collect();
    descs.sort_by(|a, b| mix::llama_order(&a.name, &b.name));
    let plan = mix::plan(&model_facts(g), &descs, ftype, has_imatrix);
    (descs, plan)
}

/// The output metadata: the input's (less split and `apr.` keys), the quantization keys
/// llama-quantize sets, the imatrix keys it adds, and our provenance keys.
fn output_metadata(
    g: &Gguf,
    opts: &QuantizeOptions,
    allocation: &[KindAllocation],
    prov: &Provenance,
) -> Vec<(String, Value)> {
    let mut meta: BTreeMap<String, Value> = provenance::without_apr_keys(&g.metadata)
        .into_iter()
        .filter(|(k, _)| !SPLIT_KEYS.contains(&k.as_str()))
        .collect();
    meta.insert(
        "general.quantization_version".into(),
        Value::U32(QUANTIZATION_VERSION),
    );
    meta.insert("general.file_type".into(), Value::U32(opts.ftype.id));
    if let Some((m, path)) = &opts.imatrix {
        meta.insert(
            "quantize.imatrix.file".into(),
            Value::String(path.display().to_string()),
        );
        if let Some(d) = m.datasets.first() {
            meta.insert("quantize.imatrix.dataset".into(), Value::String(d.clone()));
        }
        meta.insert(
            "quantize.imatrix.entries_count".into(),
            Value::U32(m.entries.len() as u32),
        );
        if m.chunk_count > 0 {
            meta.insert(
                "quantize.imatrix.chunks_count".into(),
                Value::U32(m.chunk_count),
            );
        }
        if let Weighting::Energy { p } = opts.weighting {
            meta.insert(
                "apr.quantize.imatrix_weighting".into(),
                Value::String(format!("energy p={p}")),
            );
        }
    }
    if let Some(o) = &opts.gptq {
        meta.insert(
            "apr.quantize.gptq".into(),
            Value::String(format!(
                "{} samples of {} tokens, damping {}, calibration text sha256 {}",
                o.samples,
                o.len,
                o.damp,
                crate::gptq::sha256_hex(o.calib.as_bytes())
            )),
        );
    }
    if opts.allocation == Allocation::Error {
        let kinds: Vec<String> = allocation
            .iter()
            .map(|a| format!("{} {} in layers {:?}", a.kind, a.larger, a.error_layers))
            .collect();
        let text = if kinds.is_empty() {
            "error: no kind has two types".to_string()
        } else {
            format!("error: {}", kinds.join("; "))
        };
        meta.insert("apr.quantize.allocation".into(), Value::String(text));
    }
    for (k, v) in prov.gguf_kv(&g.metadata) {
        meta.insert(k, v);
    }
    meta.into_iter().collect()
}

/// Quantizes `input` into `output` (written atomically); `progress` sees each tensor.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    opts: &QuantizeOptions,
    progress: &mut dyn FnMut(&TensorDone),
) -> Result<QuantizeReport, QuantizeError> {
    let g = Gguf::open(input).map_err(|e| QuantizeError::Input {
        path: input.into(),
        source: e,
    })?;
    let imatrix = opts.imatrix.as_ref().map(|(m, _)| m);
    let (descs, mut plan) = plan_file(&g, opts.ftype, imatrix.is_some());
    let pool = ThreadPool::new(opts.threads.max(1));
    let allocation = match opts.allocation {
        Allocation::Position => Vec::new(),
        Allocation::Error => allocate_by_error(
            &g,
            &descs,
            &mut plan.types,
            imatrix,
            opts.weighting,
            &pool,
            &mut allocation_progress,
        )?,
    };
    let prov =
        Provenance::of(opts.command.clone(), input, env!("CARGO_PKG_VERSION")).map_err(|e| {
            QuantizeError::Provenance {
                path: input.into(),
                source: e,
            }
        })?;
    let meta = output_metadata(&g, opts, &allocation, &prov);
    let specs: Vec<TensorSpec> = descs
        .iter()
        .zip(&plan.types)
        .map(|(d, &ty)| TensorSpec {
            name: d.name.clone(),
            dims: d.dims.clone(),
            dtype: ty,
        })
        .collect();
    let out_err = |e| QuantizeError::Output {
        path: output.into(),
        source: e,
    };
    let gptq_ckpt = opts
        .gptq
        .as_ref()
        .map(|o| gptq_checkpoint(output, o, opts, &prov));
    let mut gptq_done = match (&opts.gptq, &gptq_ckpt) {
        (Some(o), Some(ckpt)) => {
            let types = descs
                .iter()
                .zip(&plan.types)
                .map(|(d, &t)| (d.name.clone(), t))
                .collect();
            run_gptq(input, &types, imatrix, &descs, o, opts.threads, ckpt)?
        }
        _ => BTreeMap::new(),
    };
    let mut w = GgufWriter::create(output, &meta, specs).map_err(out_err)?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut bytes = 0u64;
    for (i, (d, &ty)) in descs.iter().zip(&plan.types).enumerate() {
        let info = g
            .tensor_info(&d.name)
            .expect("the plan lists the file's own tensors");
        let src = g.tensor_data(info);
        let mut used_imatrix = false;
        let data: Vec<u8> = if let Some((t, bytes)) = gptq_done.remove(&d.name) {
            if t != ty {
                return Err(QuantizeError::Gptq(format!(
                    "{} came back as {t}, the plan says {ty}",
                    d.name
                )));
            }
            used_imatrix = imatrix.is_some_and(|m| m.weights(&d.name).is_some());
            bytes
        } else if ty == d.dtype {
            // Already the chosen type: copied as it is, as llama-quantize does.
            src.to_vec()
        } else {
            let weights = match imatrix {
                Some(m) => tensor_weights(m, d)?,
                None => None,
            };
            used_imatrix = weights.is_some();
            convert(&pool, d, src, ty, weights.as_deref(), opts.weighting)?
        };
        w.write(&d.name, &data).map_err(out_err)?;
        bytes += data.len() as u64;
        *counts.entry(ty.name().to_string()).or_default() += 1;
        progress(&TensorDone {
            index: i + 1,
            total: descs.len(),
            name: &d.name,
            from: d.dtype,
            to: ty,
            bytes: data.len(),
            used_imatrix,
        });
    }
    let out = w.finish().map_err(out_err)?;
    if let Some(c) = gptq_ckpt {
        c.remove();
    }
    let file_bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(bytes);
    Ok(QuantizeReport {
        out,
        ftype: opts.ftype.name.to_string(),
        bytes: file_bytes,
        tensors: counts,
        n_fallback: plan.n_fallback,
        allocation,
    })
}

/// A line per kind placed by `--allocate error`.
fn allocation_progress(a: &KindAllocation) {
    eprintln!(
        "allocate {}: {} in layers {:?} (llama.cpp's {:?}), weighted error {:.4e} (llama.cpp's {:.4e})",
        a.kind, a.larger, a.error_layers, a.position_layers, a.error_error, a.position_error
    );
}

/// The checkpoint of a GPTQ run: the same source bytes, type, imatrix, calibration and apr
/// version resume it; anything else starts over.
fn gptq_checkpoint(
    output: &Path,
    o: &GptqOptions,
    opts: &QuantizeOptions,
    prov: &Provenance,
) -> crate::prune::resume::Checkpoint {
    let imatrix = opts
        .imatrix
        .as_ref()
        .and_then(|(_, p)| provenance::file_sha256(p).ok())
        .unwrap_or_default();
    let key = format!(
        "source {} | {} {:?} | imatrix {imatrix} | calib {} {}x{} damp {} | apr {}",
        prov.source_sha256,
        opts.ftype.name,
        opts.allocation,
        crate::gptq::sha256_hex(o.calib.as_bytes()),
        o.samples,
        o.len,
        o.damp,
        prov.version
    );
    crate::prune::resume::Checkpoint::with_suffix(output, ".gptq-partial", key)
}

/// Runs GPTQ over the decoder matrices of `input` ([`crate::gptq::quantize_layers`]).
fn run_gptq(
    input: &Path,
    types: &BTreeMap<String, GgmlType>,
    imatrix: Option<&Imatrix>,
    descs: &[TensorDesc],
    o: &GptqOptions,
    threads: usize,
    ckpt: &crate::prune::resume::Checkpoint,
) -> Result<BTreeMap<String, (GgmlType, Vec<u8>)>, QuantizeError> {
    let err = |e: crate::prune::PruneError| QuantizeError::Gptq(e.to_string());
    let mut engine = apr_engine::Engine::load(input, threads.max(1))
        .map_err(|e| QuantizeError::Gptq(e.to_string()))?;
    let mut weights = BTreeMap::new();
    if let Some(m) = imatrix {
        for d in descs {
            if let Some(w) = tensor_weights(m, d)? {
                weights.insert(d.name.clone(), w);
            }
        }
    }
    let t0 = std::time::Instant::now();
    crate::gptq::quantize_layers(
        &mut engine,
        types,
        &|name| weights.get(name).cloned(),
        o,
        threads.max(1),
        ckpt,
        &mut |i, n| eprintln!("gptq: layer {i}/{n} ({:.0} s)", t0.elapsed().as_secs_f64()),
    )
    .map_err(err)
}

/// The importance weights of one tensor, checked against its shape as llama-quantize checks
/// them: a missing entry quantizes without weights; a wrong size is an error, except for the
/// token embedding (whose imatrix entry never fits and is ignored).
pub(crate) fn tensor_weights(
    m: &Imatrix,
    d: &TensorDesc,
) -> Result<Option<Vec<f32>>, QuantizeError> {
    let Some(w) = m.weights(&d.name) else {
        return Ok(None);
    };
    let ne2 = d.dims.get(2).copied().unwrap_or(1) as usize;
    let want = d.dims[0] as usize * ne2;
    if w.len() == want {
        Ok(Some(w))
    } else if d.name == "token_embd.weight" || d.name == "per_layer_token_embd.weight" {
        Ok(None)
    } else {
        Err(QuantizeError::ImatrixShape {
            name: d.name.clone(),
            got: w.len(),
            want,
        })
    }
}

/// Dequantizes `src` (of `d.dtype`) to f32 and encodes it as `ty`, rows in parallel.
fn convert(
    pool: &ThreadPool,
    d: &TensorDesc,
    src: &[u8],
    ty: GgmlType,
    weights: Option<&[f32]>,
    weighting: Weighting,
) -> Result<Vec<u8>, QuantizeError> {
    let x = dequantize_tensor(d, src)?;
    encode_tensor(pool, d, &x, ty, weights, weighting)
}

pub(crate) fn tensor_error(d: &TensorDesc, msg: String) -> QuantizeError {
    QuantizeError::Tensor {
        name: d.name.clone(),
        msg,
    }
}

/// The tensor `d` (its bytes `src`, of `d.dtype`) as f32; a NaN or infinity is an error.
pub(crate) fn dequantize_tensor(d: &TensorDesc, src: &[u8]) -> Result<Vec<f32>, QuantizeError> {
    let n: usize = d.dims.iter().product::<u64>() as usize;
    let mut x = vec![0f32; n];
    dequantize(d.dtype, src, &mut x).map_err(|e| tensor_error(d, e.to_string()))?;
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(tensor_error(
            d,
            format!("value {i} is {}: not a finite number", x[i]),
        ));
    }
    Ok(x)
}

/// `x` (the tensor `d` as f32) encoded as `ty`, rows in parallel on `pool`.
pub(crate) fn encode_tensor(
    pool: &ThreadPool,
    d: &TensorDesc,
    x: &[f32],
    ty: GgmlType,
    weights: Option<&[f32]>,
    weighting: Weighting,
) -> Result<Vec<u8>, QuantizeError> {
    let bad = |msg: String| tensor_error(d, msg);
    if !can_encode(ty) {
        return Err(bad(format!("cannot encode type {ty}")));
    }
    let n_per_row = d.dims[0] as usize;
    let n = x.len();
    let row_bytes = ty
        .bytes_for(n_per_row)
        .ok_or_else(|| bad(format!("rows of {n_per_row} are not whole {ty} blocks")))?;
    let nrows = n / n_per_row.max(1);
    // One matrix per ne[2] slice (experts): each takes its own imatrix slice.
    let rows_per_mat = d.dims.get(1).copied().unwrap_or(1).max(1) as usize;
    let mut out = vec![0u8; nrows * row_bytes];
    let chunk_rows = CHUNK_VALUES.div_ceil(n_per_row).max(1);
    // Chunks never cross a matrix boundary, so each has one imatrix slice.
    let mut jobs: Vec<(usize, usize)> = Vec::new();
    let mut r = 0;
    while r < nrows {
        let end = (r + chunk_rows)
            .min(nrows)
            .min((r / rows_per_mat + 1) * rows_per_mat);
        jobs.push((r, end));
        r = end;
    }
    let mut parts: Vec<Mutex<&mut [u8]>> = Vec::with_capacity(jobs.len());
    let mut rest = out.as_mut_slice();
    for &(a, b) in &jobs {
        let (head, tail) = rest.split_at_mut((b - a) * row_bytes);
        parts.push(Mutex::new(head));
        rest = tail;
    }
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    pool.run_slots(jobs.len(), |i, _| {
        let (a, b) = jobs[i];
        let mat = a / rows_per_mat;
        let w = weights.map(|w| &w[mat * n_per_row..(mat + 1) * n_per_row]);
        let mut dst = parts[i].lock().unwrap_or_else(|p| p.into_inner());
        let src = &x[a * n_per_row..b * n_per_row];
        if let Err(e) = quantize_rows_with(ty, src, n_per_row, w, weighting, &mut dst) {
            errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e.to_string());
        }
    });
    drop(parts);
    if let Some(e) = errors.into_inner().unwrap_or_default().into_iter().next() {
        return Err(bad(e));
    }
    Ok(out)
}

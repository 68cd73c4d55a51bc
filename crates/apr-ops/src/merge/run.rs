//! Running a merge configuration over GGUF models: the output planned as mergekit plans it
//! (the embedding from the first slice's sources, each slice's layers in order with the
//! gradient position `t` of its layer, the final norm and LM head from the last slice's), each
//! tensor merged from row chunks of the inputs (dequantized on read) and streamed into the
//! output GGUF, the inputs' pages handed back after each tensor so that the resident set stays
//! near a few chunks. Filters in the configuration match the tensors' Hugging Face names, as
//! they do in mergekit.

use std::path::{Path, PathBuf};
use std::time::Instant;

use apr_core::quant::{self, GgmlType};
use apr_formats::provenance::without_apr_keys;
use apr_formats::{Gguf, GgufWriter, Provenance, TensorInfo, TensorSpec, Value};

use super::config::{dtype_name, layer_t, MergeConfig, OutputSlice, Scalar};
use super::{lookup, Inputs, MergeError, MethodParams, Result, TensorParams, TensorSource};

/// Bytes of f32 rows each input reads per chunk.
const CHUNK_BYTES: usize = 8 << 20;
/// Output type of the merged matrices when the configuration names none.
const DEFAULT_DTYPE: &str = "F16";

#[derive(Debug, Clone)]
pub struct MergeOptions {
    pub seed: u64,
    /// The command line, for the output's provenance.
    pub command: String,
    /// The configuration file, hashed into the provenance.
    pub config_path: PathBuf,
    /// `gguf`, or `safetensors` for a Hugging Face directory (merged into a temporary GGUF
    /// beside it, then written out tensor by tensor).
    pub format: String,
    /// Largest safetensors shard.
    pub shard_bytes: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MergeSummary {
    pub out: PathBuf,
    pub method: String,
    pub tensors: usize,
    pub layers: usize,
    pub dtype: String,
    pub bytes: u64,
    pub seconds: f64,
}

/// One input tensor of a GGUF file, dequantized to f32 rows on read.
struct GgufTensor<'a> {
    g: &'a Gguf,
    t: &'a TensorInfo,
    row_bytes: usize,
}

impl<'a> GgufTensor<'a> {
    fn new(g: &'a Gguf, t: &'a TensorInfo) -> Result<Self> {
        let cols = t.dims[0] as usize;
        let row_bytes = t.dtype.bytes_for(cols).ok_or_else(|| MergeError::Read {
            what: t.name.clone(),
            msg: format!("rows of {cols} are not whole {} blocks", t.dtype),
        })?;
        Ok(GgufTensor { g, t, row_bytes })
    }
}

impl TensorSource for GgufTensor<'_> {
    fn rows(&self) -> usize {
        self.t.dims[1..].iter().product::<u64>() as usize
    }
    fn cols(&self) -> usize {
        self.t.dims[0] as usize
    }
    fn read(&self, r0: usize, n: usize, out: &mut [f32]) -> Result<()> {
        let d = self.g.tensor_data(self.t);
        quant::dequantize(
            self.t.dtype,
            &d[r0 * self.row_bytes..(r0 + n) * self.row_bytes],
            out,
        )
        .map_err(|e| MergeError::Read {
            what: self.t.name.clone(),
            msg: e.to_string(),
        })
    }
}

/// The Hugging Face name of a GGUF tensor (filters are written against those).
fn hf_name(gguf: &str) -> String {
    const MAP: &[(&str, &str)] = &[
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("attn_norm", "input_layernorm"),
        ("ffn_norm", "post_attention_layernorm"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
    ];
    if let Some(rest) = gguf.strip_prefix("blk.") {
        let mut it = rest.splitn(3, '.');
        if let (Some(i), Some(part), Some(kind)) = (it.next(), it.next(), it.next()) {
            if let Some((_, hf)) = MAP.iter().find(|(g, _)| *g == part) {
                return format!("model.layers.{i}.{hf}.{kind}");
            }
        }
    }
    match gguf {
        "token_embd.weight" => "model.embed_tokens.weight".into(),
        "output_norm.weight" => "model.norm.weight".into(),
        "output.weight" => "lm_head.weight".into(),
        other => other.into(),
    }
}

/// One output tensor: its name and shape, the slice it belongs to, the source layer (None
/// outside the layers) and its gradient position.
struct Planned {
    name: String,
    src_name: String,
    dims: Vec<u64>,
    slice: usize,
    t: f64,
}

fn open_models(cfg: &MergeConfig) -> Result<Vec<(String, Gguf)>> {
    cfg.referenced_models()
        .into_iter()
        .map(|m| {
            let path = apr_engine::resolve_model(&m).map_err(|e| MergeError::Read {
                what: m.clone(),
                msg: e.to_string(),
            })?;
            // GGUF files and Hugging Face directories (safetensors) alike.
            let g = apr_formats::open_model(&path).map_err(|e| MergeError::Read {
                what: m.clone(),
                msg: e.to_string(),
            })?;
            Ok((m, g))
        })
        .collect()
}

fn arch_and_layers(name: &str, g: &Gguf) -> Result<(String, usize)> {
    let read = |e: apr_formats::GgufError| MergeError::Read {
        what: name.to_string(),
        msg: e.to_string(),
    };
    let arch = g.architecture().map_err(read)?.to_string();
    let n = g.get_u64(&format!("{arch}.block_count")).map_err(read)? as usize;
    Ok((arch, n))
}

/// The output tensors in file order, with the checks mergekit makes on the inputs.
fn plan(models: &[(String, Gguf)], slices: &[OutputSlice]) -> Result<Vec<Planned>> {
    let get = |m: &str| {
        &models
            .iter()
            .find(|(n, _)| n == m)
            .expect("every referenced model is open")
            .1
    };
    let (arch, _) = arch_and_layers(&models[0].0, &models[0].1)?;
    for (n, g) in models {
        let (a, _) = arch_and_layers(n, g)?;
        if a != arch {
            return Err(MergeError::Invalid {
                method: "config",
                msg: format!(
                    "{n} is {a}, {} is {arch}: architectures differ",
                    models[0].0
                ),
            });
        }
    }
    let mut out = Vec::new();
    let first = get(&slices[0].sources[0].model);
    let last = get(&slices[slices.len() - 1].sources[0].model);
    let outside = |g: &Gguf, pre: bool| -> Vec<TensorInfo> {
        g.tensors
            .iter()
            .filter(|t| !t.name.starts_with("blk.") && (t.name.starts_with("token_embd") == pre))
            .cloned()
            .collect()
    };
    let push = |out: &mut Vec<Planned>, t: &TensorInfo, name: String, slice: usize, tt: f64| {
        out.push(Planned {
            name,
            src_name: t.name.clone(),
            dims: t.dims.clone(),
            slice,
            t: tt,
        });
    };
    for t in outside(first, true) {
        push(&mut out, &t, t.name.clone(), 0, 0.0);
    }
    let mut out_layer = 0;
    for (si, s) in slices.iter().enumerate() {
        let src = &s.sources[0];
        let g = get(&src.model);
        for x in &s.sources {
            let (_, n) = arch_and_layers(&x.model, get(&x.model))?;
            if x.layer_range.1 > n {
                return Err(MergeError::Invalid {
                    method: "config",
                    msg: format!(
                        "{} has {n} layers: layer_range {:?} is out of range",
                        x.model, x.layer_range
                    ),
                });
            }
        }
        let n = s.layers();
        for idx in 0..n {
            let prefix = format!("blk.{}.", src.layer_range.0 + idx);
            for t in g.tensors.iter().filter(|t| t.name.starts_with(&prefix)) {
                let name = format!("blk.{out_layer}.{}", &t.name[prefix.len()..]);
                push(&mut out, t, name, si, layer_t(idx, n));
            }
            out_layer += 1;
        }
    }
    for t in outside(last, false) {
        push(&mut out, &t, t.name.clone(), slices.len() - 1, 0.0);
    }
    Ok(out)
}

fn as_f64(v: Option<Scalar>, name: &str, tensor: &str) -> Result<Option<f64>> {
    v.map(|s| {
        s.as_f64().ok_or_else(|| MergeError::Invalid {
            method: "config",
            msg: format!("{name} for {tensor} is not a number"),
        })
    })
    .transpose()
}

fn as_bool(v: Option<Scalar>, name: &str, tensor: &str) -> Result<Option<bool>> {
    v.map(|s| {
        s.as_bool().ok_or_else(|| MergeError::Invalid {
            method: "config",
            msg: format!("{name} for {tensor} is not a boolean"),
        })
    })
    .transpose()
}

/// Encodes f32 rows as the output type.
fn encode(ty: GgmlType, rows: &[f32], out: &mut Vec<u8>) {
    out.clear();
    match ty {
        GgmlType::F16 => out.extend(
            rows.iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes()),
        ),
        GgmlType::BF16 => out.extend(
            rows.iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()),
        ),
        _ => out.extend(rows.iter().flat_map(|v| v.to_le_bytes())),
    }
}

/// Runs the merge into `out` (a GGUF file, or a Hugging Face directory with
/// `opts.format == "safetensors"`); `progress(done, total, tensor)` per tensor.
pub fn run_merge(
    cfg: &MergeConfig,
    out: &Path,
    opts: &MergeOptions,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<MergeSummary> {
    match opts.format.as_str() {
        "gguf" => merge_gguf(cfg, out, opts, progress),
        "safetensors" => {
            let start = Instant::now();
            let name = out.file_name().map(|n| n.to_string_lossy().to_string());
            let tmp = out.with_file_name(format!(".{}.merge.gguf", name.unwrap_or_default()));
            let mut summary = merge_gguf(cfg, &tmp, opts, progress);
            if let Ok(s) = &mut summary {
                let conv = Gguf::open(&tmp)
                    .map_err(crate::convert::ConvertError::from)
                    .and_then(|g| {
                        let ty = GgmlType::from_name(&s.dtype).unwrap_or(GgmlType::F16);
                        let prov = Provenance::of(
                            opts.command.clone(),
                            &opts.config_path,
                            env!("CARGO_PKG_VERSION"),
                        )
                        .map_err(|e| crate::convert::ConvertError::Io {
                            path: opts.config_path.clone(),
                            source: e,
                        })?;
                        crate::convert::write_hf(&g, out, ty, opts.shard_bytes, &prov)
                    });
                match conv {
                    Ok(r) => {
                        s.out = out.to_path_buf();
                        s.bytes = r.bytes;
                        s.seconds = start.elapsed().as_secs_f64();
                    }
                    Err(e) => summary = Err(MergeError::Write(e.to_string())),
                }
            }
            let _ = std::fs::remove_file(&tmp);
            summary
        }
        f => Err(MergeError::Invalid {
            method: "config",
            msg: format!("--format {f:?} is not gguf or safetensors"),
        }),
    }
}

fn merge_gguf(
    cfg: &MergeConfig,
    out: &Path,
    opts: &MergeOptions,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<MergeSummary> {
    let start = Instant::now();
    cfg.validate()?;
    let method = lookup(&cfg.merge_method)?;
    let models = open_models(cfg)?;
    let get = |m: &str| &models.iter().find(|(n, _)| n == m).expect("open").1;
    let reference = cfg
        .base_model
        .clone()
        .unwrap_or_else(|| cfg.referenced_models()[0].clone());
    let (arch, n_layers) = arch_and_layers(&reference, get(&reference))?;
    let slices = cfg.output_slices(Some(n_layers))?;
    let planned = plan(&models, &slices)?;
    let dtype_s = cfg.out_dtype.as_deref().or(cfg.dtype.as_deref());
    let dtype = GgmlType::from_name(dtype_s.map_or(Ok(DEFAULT_DTYPE), dtype_name)?)
        .expect("registry names");
    // Matrices take the output type; vectors (norms, biases) stay f32, as in every GGUF.
    let out_ty = |dims: &[u64]| {
        if dims.len() >= 2 {
            dtype
        } else {
            GgmlType::F32
        }
    };
    let specs: Vec<TensorSpec> = planned
        .iter()
        .map(|p| TensorSpec {
            name: p.name.clone(),
            dims: p.dims.clone(),
            dtype: out_ty(&p.dims),
        })
        .collect();
    // Metadata: the tokenizer source's (the base by default), the layer count of the output.
    let tok_src = match cfg.tokenizer_source.as_deref() {
        None | Some("base") => reference.clone(),
        Some("union") => {
            return Err(MergeError::Invalid {
                method: "config",
                msg: "tokenizer_source: union is not supported".into(),
            })
        }
        Some(m) => m.to_string(),
    };
    let src_meta = &get(&tok_src).metadata;
    let mut meta = without_apr_keys(src_meta);
    let out_layers: usize = slices.iter().map(OutputSlice::layers).sum();
    let file_type = match dtype {
        GgmlType::F32 => 0u32,
        GgmlType::F16 => 1,
        _ => 32,
    };
    for (k, v) in [
        (format!("{arch}.block_count"), Value::U32(out_layers as u32)),
        ("general.file_type".to_string(), Value::U32(file_type)),
    ] {
        meta.retain(|(key, _)| *key != k);
        meta.push((k, v));
    }
    if let Some(t) = &cfg.chat_template {
        if !t.contains("{%") && !t.contains("{{") {
            return Err(MergeError::Invalid {
                method: "config",
                msg: format!("chat_template {t:?}: named templates are not supported; give the template text"),
            });
        }
        meta.retain(|(k, _)| k != "tokenizer.chat_template");
        meta.push(("tokenizer.chat_template".into(), Value::String(t.clone())));
    }
    let prov = Provenance::of(
        opts.command.clone(),
        &opts.config_path,
        env!("CARGO_PKG_VERSION"),
    )
    .map_err(|e| MergeError::Read {
        what: opts.config_path.display().to_string(),
        msg: e.to_string(),
    })?;
    meta.extend(prov.gguf_kv(src_meta));
    let write_err = |e: apr_formats::GgufError| MergeError::Write(e.to_string());
    let mut w = GgufWriter::create(out, &meta, specs).map_err(write_err)?;
    let mut bytes = Vec::new();
    for (k, p) in planned.iter().enumerate() {
        progress(k, planned.len(), &p.name);
        let s = &slices[p.slice];
        let base_name = s.base_model.as_ref().or(cfg.base_model.as_ref());
        let hf = hf_name(&p.name);
        let mut inputs: Vec<(&str, &Gguf, &TensorInfo)> = Vec::new();
        for src in &s.sources {
            let g = get(&src.model);
            // The source's own layer for this output layer.
            let name = match p.src_name.strip_prefix("blk.") {
                Some(rest) => {
                    let (l, tail) = rest.split_once('.').expect("blk.N.x");
                    let l: usize = l.parse().expect("layer index");
                    let off = l - s.sources[0].layer_range.0;
                    format!("blk.{}.{tail}", src.layer_range.0 + off)
                }
                None => p.src_name.clone(),
            };
            let t = g.tensor_info(&name).ok_or_else(|| MergeError::Read {
                what: src.model.clone(),
                msg: format!("has no tensor {name}"),
            })?;
            if t.dims != p.dims {
                return Err(MergeError::Invalid {
                    method: "config",
                    msg: format!(
                        "{name}: {} has dims {:?}, {} has {:?}",
                        src.model, t.dims, s.sources[0].model, p.dims
                    ),
                });
            }
            inputs.push((src.model.as_str(), g, t));
        }
        let sources: Vec<GgufTensor> = inputs
            .iter()
            .map(|(_, g, t)| GgufTensor::new(g, t))
            .collect::<Result<_>>()?;
        let mut base = None;
        let mut ms = Vec::new();
        for ((m, _, _), src) in inputs.iter().zip(&sources) {
            if base.is_none() && method.takes_base() && base_name.is_some_and(|b| b == m) {
                base = Some(src as &dyn TensorSource);
                continue;
            }
            let par = |n: &str| cfg.parameter(s, Some(m), n, &hf, p.t);
            ms.push((
                src as &dyn TensorSource,
                TensorParams {
                    weight: as_f64(par("weight")?, "weight", &hf)?,
                    density: as_f64(par("density")?, "density", &hf)?,
                    gamma: as_f64(par("gamma")?, "gamma", &hf)?,
                    epsilon: as_f64(par("epsilon")?, "epsilon", &hf)?,
                },
            ));
        }
        let mp = |n: &str| cfg.parameter(s, None, n, &hf, p.t);
        let params = MethodParams {
            t: as_f64(mp("t")?, "t", &hf)?,
            normalize: as_bool(mp("normalize")?, "normalize", &hf)?,
            rescale: as_bool(mp("rescale")?, "rescale", &hf)?,
            lambda: as_f64(mp("lambda")?, "lambda", &hf)?,
            nuslerp_row_wise: as_bool(mp("nuslerp_row_wise")?, "nuslerp_row_wise", &hf)?,
            nuslerp_flatten: as_bool(mp("nuslerp_flatten")?, "nuslerp_flatten", &hf)?,
            filter_wise: as_bool(mp("filter_wise")?, "filter_wise", &hf)?,
        };
        let cols = p.dims[0] as usize;
        let x = Inputs {
            name: &p.name,
            base,
            models: ms,
            params,
            seed: opts.seed,
            chunk_rows: (CHUNK_BYTES / 4 / cols.max(1)).max(1),
        };
        method.check_models(x.models.len(), x.base.is_some())?;
        let ty = out_ty(&p.dims);
        method.merge(&x, &mut |rows| {
            encode(ty, rows, &mut bytes);
            w.write(&p.name, &bytes).map_err(write_err)
        })?;
        for (_, g, t) in &inputs {
            g.release(t);
        }
    }
    progress(planned.len(), planned.len(), "");
    let out = w.finish().map_err(write_err)?;
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    Ok(MergeSummary {
        out,
        method: method.name().to_string(),
        tensors: planned.len(),
        layers: out_layers,
        dtype: dtype.name().to_string(),
        bytes: size,
        seconds: start.elapsed().as_secs_f64(),
    })
}

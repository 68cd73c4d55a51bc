//! Hugging Face `config.json` / `generation_config.json` for qwen2 and llama, to and from the
//! GGUF `{arch}.*` keys that llama.cpp's `convert_hf_to_gguf.py` writes.
//! Reference: transformers' `Qwen2Config` / `LlamaConfig`.

use std::path::Path;

use serde_json::{json, Value as Json};

use crate::gguf::{Gguf, Value};

pub const CONFIG_FILE: &str = "config.json";
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// One row per supported architecture: HF `model_type`, class name, GGUF architecture.
const ARCHS: &[(&str, &str, &str)] = &[
    ("qwen2", "Qwen2ForCausalLM", "qwen2"),
    ("llama", "LlamaForCausalLM", "llama"),
];

#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Safetensors(#[from] crate::safetensors::SafetensorsError),
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
}

pub type Result<T> = std::result::Result<T, HfError>;

/// Reads a JSON file; a missing optional file is None.
pub fn read_json(path: &Path, required: bool) -> Result<Option<Json>> {
    let err = |msg: String| HfError::File {
        path: path.display().to_string(),
        msg,
    };
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| err(format!("not JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(e) => Err(err(e.to_string())),
    }
}

/// The fields of `config.json` the decoder needs.
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    /// GGUF architecture name.
    pub arch: &'static str,
    pub hidden_size: u64,
    pub intermediate_size: u64,
    pub num_hidden_layers: u64,
    pub num_attention_heads: u64,
    pub num_key_value_heads: u64,
    pub head_dim: Option<u64>,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: u64,
    pub vocab_size: u64,
    pub tie_word_embeddings: bool,
    pub torch_dtype: Option<String>,
    pub bos_token_id: Option<u64>,
    /// The first of a list of eos ids (generation_config may list several).
    pub eos_token_id: Option<u64>,
}

/// A token id, or the first of a list of ids.
fn first_id(v: Option<&Json>) -> Option<u64> {
    match v? {
        Json::Array(a) => a.first().and_then(Json::as_u64),
        x => x.as_u64(),
    }
}

impl HfConfig {
    /// Parses `config.json` (with `generation_config.json` for the special ids it overrides).
    pub fn from_json(cfg: &Json, gen: Option<&Json>, path: &Path) -> Result<Self> {
        let err = |msg: String| HfError::File {
            path: path.display().to_string(),
            msg,
        };
        let model_type = cfg
            .get("model_type")
            .and_then(Json::as_str)
            .ok_or_else(|| err("no model_type".into()))?;
        let arch = ARCHS
            .iter()
            .find(|a| a.0 == model_type)
            .map(|a| a.2)
            .ok_or_else(|| {
                let known: Vec<_> = ARCHS.iter().map(|a| a.0).collect();
                HfError::Unsupported(format!(
                    "model_type {model_type:?} is not supported (supported: {})",
                    known.join(", ")
                ))
            })?;
        let u = |k: &str| -> Result<u64> {
            cfg.get(k)
                .and_then(Json::as_u64)
                .ok_or_else(|| err(format!("{k} is missing or not a non-negative integer")))
        };
        let f = |k: &str, d: f64| -> Result<f64> {
            match cfg.get(k) {
                None | Some(Json::Null) => Ok(d),
                Some(v) => v
                    .as_f64()
                    .ok_or_else(|| err(format!("{k} is not a number"))),
            }
        };
        if let Some(rs) = cfg.get("rope_scaling").filter(|v| !v.is_null()) {
            // llama.cpp turns llama3 scaling into a `rope_freqs` tensor our decoder lacks.
            return Err(HfError::Unsupported(format!(
                "rope_scaling {rs} is not supported yet"
            )));
        }
        let n_head = u("num_attention_heads")?;
        let hidden = u("hidden_size")?;
        let head_dim = cfg.get("head_dim").and_then(Json::as_u64);
        if n_head == 0 || hidden == 0 {
            return Err(err("zero hidden_size or num_attention_heads".into()));
        }
        let gen_or_cfg = |k: &str| first_id(gen.and_then(|g| g.get(k))).or(first_id(cfg.get(k)));
        Ok(HfConfig {
            arch,
            hidden_size: hidden,
            intermediate_size: u("intermediate_size")?,
            num_hidden_layers: u("num_hidden_layers")?,
            num_attention_heads: n_head,
            num_key_value_heads: cfg
                .get("num_key_value_heads")
                .and_then(Json::as_u64)
                .unwrap_or(n_head),
            head_dim: head_dim.filter(|&d| d != hidden / n_head),
            rms_norm_eps: f("rms_norm_eps", 1e-6)?,
            rope_theta: f("rope_theta", 10_000.0)?,
            max_position_embeddings: u("max_position_embeddings")?,
            vocab_size: u("vocab_size")?,
            tie_word_embeddings: cfg
                .get("tie_word_embeddings")
                .and_then(Json::as_bool)
                .unwrap_or(false),
            torch_dtype: cfg
                .get("torch_dtype")
                .and_then(Json::as_str)
                .map(str::to_string),
            bos_token_id: gen_or_cfg("bos_token_id"),
            eos_token_id: gen_or_cfg("eos_token_id"),
        })
    }

    /// The architecture keys as `convert_hf_to_gguf.py` writes them.
    pub fn gguf_kv(&self) -> Vec<(String, Value)> {
        let a = self.arch;
        let k = |s: &str| format!("{a}.{s}");
        let mut v = vec![
            ("general.architecture".into(), Value::String(a.into())),
            (
                k("context_length"),
                Value::U32(self.max_position_embeddings as u32),
            ),
            (k("embedding_length"), Value::U32(self.hidden_size as u32)),
            (k("block_count"), Value::U32(self.num_hidden_layers as u32)),
            (
                k("feed_forward_length"),
                Value::U32(self.intermediate_size as u32),
            ),
            (
                k("attention.head_count"),
                Value::U32(self.num_attention_heads as u32),
            ),
            (
                k("attention.head_count_kv"),
                Value::U32(self.num_key_value_heads as u32),
            ),
            (k("rope.freq_base"), Value::F32(self.rope_theta as f32)),
            (
                k("attention.layer_norm_rms_epsilon"),
                Value::F32(self.rms_norm_eps as f32),
            ),
        ];
        if a == "llama" {
            v.push((k("vocab_size"), Value::U32(self.vocab_size as u32)));
            let hd = self
                .head_dim
                .unwrap_or(self.hidden_size / self.num_attention_heads);
            v.push((k("rope.dimension_count"), Value::U32(hd as u32)));
        }
        if let Some(hd) = self.head_dim {
            v.push((k("attention.key_length"), Value::U32(hd as u32)));
            v.push((k("attention.value_length"), Value::U32(hd as u32)));
        }
        v
    }

    /// The config of a GGUF file (the reverse of [`HfConfig::gguf_kv`]); `torch_dtype` is the
    /// type the weights are exported in.
    pub fn from_gguf(g: &Gguf, torch_dtype: &str) -> Result<Self> {
        let a = g.architecture()?;
        let arch = ARCHS
            .iter()
            .find(|r| r.2 == a)
            .map(|r| r.2)
            .ok_or_else(|| HfError::Unsupported(format!("architecture {a:?}")))?;
        let k = |s: &str| format!("{a}.{s}");
        let opt_u = |s: &str| g.get(&k(s)).and_then(Value::as_u64);
        let n_head = g.get_u64(&k("attention.head_count"))?;
        let hidden = g.get_u64(&k("embedding_length"))?;
        let emb = g
            .tensor_info("token_embd.weight")
            .ok_or_else(|| crate::GgufError::MissingTensor("token_embd.weight".into()))?;
        let id = |s: &str| {
            g.get(&format!("tokenizer.ggml.{s}"))
                .and_then(Value::as_u64)
        };
        Ok(HfConfig {
            arch,
            hidden_size: hidden,
            intermediate_size: g.get_u64(&k("feed_forward_length"))?,
            num_hidden_layers: g.get_u64(&k("block_count"))?,
            num_attention_heads: n_head,
            num_key_value_heads: opt_u("attention.head_count_kv").unwrap_or(n_head),
            head_dim: opt_u("attention.key_length").filter(|&d| d != hidden / n_head.max(1)),
            rms_norm_eps: g
                .get(&k("attention.layer_norm_rms_epsilon"))
                .and_then(Value::as_f64)
                .unwrap_or(1e-5),
            rope_theta: g
                .get(&k("rope.freq_base"))
                .and_then(Value::as_f64)
                .unwrap_or(10_000.0),
            max_position_embeddings: opt_u("context_length").unwrap_or(4096),
            vocab_size: *emb.dims.get(1).unwrap_or(&0),
            tie_word_embeddings: g.tensor_info("output.weight").is_none(),
            torch_dtype: Some(torch_dtype.to_string()),
            bos_token_id: id("bos_token_id"),
            eos_token_id: id("eos_token_id"),
        })
    }

    /// `config.json` as transformers writes it for this architecture.
    pub fn to_json(&self) -> Json {
        let class = ARCHS
            .iter()
            .find(|r| r.2 == self.arch)
            .map(|r| (r.0, r.1))
            .expect("arch comes from the table");
        let mut j = json!({
            "architectures": [class.1],
            "model_type": class.0,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "use_cache": true,
            "torch_dtype": self.torch_dtype,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
        });
        let m = j.as_object_mut().expect("an object");
        match self.arch {
            "qwen2" => {
                m.insert("use_sliding_window".into(), false.into());
                m.insert("sliding_window".into(), self.max_position_embeddings.into());
                m.insert("max_window_layers".into(), self.num_hidden_layers.into());
            }
            _ => {
                m.insert("attention_bias".into(), false.into());
                m.insert("mlp_bias".into(), false.into());
            }
        }
        if let Some(hd) = self.head_dim {
            m.insert("head_dim".into(), hd.into());
        }
        j
    }

    /// `generation_config.json`: the special ids (sampling defaults are left to the reader).
    pub fn generation_json(&self) -> Json {
        json!({
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
        })
    }
}

/// The torch dtype name of a float type name (`F32` -> `float32`).
pub fn torch_dtype_of(ggml: &str) -> &'static str {
    match ggml {
        "F16" => "float16",
        "BF16" => "bfloat16",
        _ => "float32",
    }
}

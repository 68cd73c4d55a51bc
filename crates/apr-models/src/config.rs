//! Model hyper-parameters read from GGUF metadata (`{arch}.*` keys).

use apr_formats::Gguf;

use crate::arch::{self, ArchSpec};
use crate::{ModelError, Result};

const DEFAULT_ROPE_THETA: f64 = 10_000.0;
const DEFAULT_RMS_EPS: f64 = 1e-5;

#[derive(Debug, Clone)]
pub struct Config {
    pub arch: &'static ArchSpec,
    pub n_layer: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Dimensions of each head that RoPE rotates.
    pub rope_dim: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    /// Training context length.
    pub ctx_train: usize,
    pub n_vocab: usize,
}

impl Config {
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let name = g.architecture()?;
        let spec = arch::lookup(name).ok_or_else(|| {
            let known: Vec<_> = arch::ARCHITECTURES.iter().map(|a| a.name).collect();
            ModelError::UnknownArch(name.to_string(), known.join(", "))
        })?;
        let key = |k: &str| format!("{name}.{k}");
        let usize_of = |k: &str| -> Result<usize> { Ok(g.get_u64(&key(k))? as usize) };
        let n_layer = usize_of("block_count")?;
        let hidden = usize_of("embedding_length")?;
        let ffn = usize_of("feed_forward_length")?;
        let n_head = usize_of("attention.head_count")?;
        let n_kv_head = match g.get(&key("attention.head_count_kv")) {
            Some(_) => usize_of("attention.head_count_kv")?,
            None => n_head,
        };
        if n_head == 0 || n_kv_head == 0 || hidden % n_head != 0 || n_head % n_kv_head != 0 {
            return Err(ModelError::Config(format!(
                "hidden {hidden}, heads {n_head}, kv heads {n_kv_head} do not divide"
            )));
        }
        let head_dim = match g.get(&key("attention.key_length")) {
            Some(_) => usize_of("attention.key_length")?,
            None => hidden / n_head,
        };
        let rope_dim = match g.get(&key("rope.dimension_count")) {
            Some(_) => usize_of("rope.dimension_count")?,
            None => head_dim,
        };
        if rope_dim > head_dim || rope_dim % 2 != 0 || head_dim == 0 {
            return Err(ModelError::Config(format!(
                "rope dims {rope_dim} vs head dim {head_dim}"
            )));
        }
        let opt_f = |k: &str, d: f64| -> Result<f64> {
            match g.get(&key(k)) {
                Some(_) => Ok(g.get_f64(&key(k))?),
                None => Ok(d),
            }
        };
        let rope_theta = opt_f("rope.freq_base", DEFAULT_ROPE_THETA)? as f32;
        let rms_eps = opt_f("attention.layer_norm_rms_epsilon", DEFAULT_RMS_EPS)? as f32;
        let ctx_train = match g.get(&key("context_length")) {
            Some(_) => usize_of("context_length")?,
            None => 4096,
        };
        let emb = g
            .tensor_info("token_embd.weight")
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        let n_vocab = *emb.dims.get(1).unwrap_or(&1) as usize;
        if n_layer == 0 || hidden == 0 || ffn == 0 {
            return Err(ModelError::Config("zero layers or widths".into()));
        }
        Ok(Config {
            arch: spec,
            n_layer,
            hidden,
            ffn,
            n_head,
            n_kv_head,
            head_dim,
            rope_dim,
            rope_theta,
            rms_eps,
            ctx_train,
            n_vocab,
        })
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }
}

//! The key/value cache, preallocated for the whole context: f16 like llama.cpp's default, or
//! f32 (`--kv-type f32`) so that f32 models run f32 end to end (parity with transformers).
//! K and V are stored `[layer][kv_head][pos][head_dim]`: attention reads contiguous rows.

use half::f16;

use crate::Config;

/// Element type of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvType {
    #[default]
    F16,
    F32,
}

impl KvType {
    pub fn from_name(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Some(KvType::F16),
            "f32" => Some(KvType::F32),
            _ => None,
        }
    }
}

pub struct KvCache {
    pub ctx: usize,
    n_kv_head: usize,
    head_dim: usize,
    pub ty: KvType,
    /// f16 storage (empty for an f32 cache).
    pub k: Vec<f16>,
    pub v: Vec<f16>,
    /// f32 storage (empty for an f16 cache).
    pub k32: Vec<f32>,
    pub v32: Vec<f32>,
}

impl KvCache {
    pub fn new(cfg: &Config, ctx: usize) -> Self {
        Self::with_type(cfg, ctx, KvType::F16)
    }

    pub fn with_type(cfg: &Config, ctx: usize, ty: KvType) -> Self {
        let n = cfg.n_layer * cfg.n_kv_head * cfg.head_dim * ctx;
        let (n16, n32) = match ty {
            KvType::F16 => (n, 0),
            KvType::F32 => (0, n),
        };
        KvCache {
            ctx,
            n_kv_head: cfg.n_kv_head,
            head_dim: cfg.head_dim,
            ty,
            k: vec![f16::ZERO; n16],
            v: vec![f16::ZERO; n16],
            k32: vec![0.0; n32],
            v32: vec![0.0; n32],
        }
    }

    /// Start of the `[pos][head_dim]` K (and V) block of one head.
    pub fn head_offset(&self, layer: usize, kv_head: usize) -> usize {
        (layer * self.n_kv_head + kv_head) * self.ctx * self.head_dim
    }

    pub fn bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * 2 + (self.k32.len() + self.v32.len()) * 4
    }
}

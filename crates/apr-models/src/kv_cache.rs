//! The key/value cache, preallocated for the whole context, f16 like llama.cpp's default.
//! K and V are stored `[layer][kv_head][pos][head_dim]`: attention reads contiguous rows.

use half::f16;

use crate::Config;

pub struct KvCache {
    pub ctx: usize,
    n_kv_head: usize,
    head_dim: usize,
    pub k: Vec<f16>,
    pub v: Vec<f16>,
}

impl KvCache {
    pub fn new(cfg: &Config, ctx: usize) -> Self {
        let n = cfg.n_layer * cfg.n_kv_head * cfg.head_dim * ctx;
        KvCache {
            ctx,
            n_kv_head: cfg.n_kv_head,
            head_dim: cfg.head_dim,
            k: vec![f16::ZERO; n],
            v: vec![f16::ZERO; n],
        }
    }

    /// Start of the `[pos][head_dim]` K (and V) block of one head.
    pub fn head_offset(&self, layer: usize, kv_head: usize) -> usize {
        (layer * self.n_kv_head + kv_head) * self.ctx * self.head_dim
    }

    pub fn bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * 2
    }
}

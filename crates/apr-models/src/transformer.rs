//! The decoder shared by qwen2 and llama: RMSNorm, GQA attention with RoPE over the KV cache,
//! SwiGLU MLP, over a batch of one sequence or of one new token from each of several sequences.
//! Numerics follow ggml's CPU path (f16 KV cache, f16 attention operands); an f32 cache runs
//! attention in f32 throughout.
//! Reference: llama.cpp src/models/qwen2.cpp and llama.cpp, HF modeling_qwen2.py.

use std::sync::Arc;

use apr_core::pool::{split_range, ThreadPool};
use apr_core::quant;
use apr_core::simd::{axpy_f32, dot_f16, dot_f32, f16_to_f32, mad_f16, scale_f16};
use apr_formats::Gguf;
use half::f16;

use crate::arch::RopeStyle;
use crate::kv_cache::KvType;
use crate::linear::SyncPtr;
use crate::{ActivationStats, Config, KvCache, Linear, ModelError, Result};

/// Query batches at least this large take the f32 attention path (ggml's FA tile height).
const F32_ATTENTION_MIN_BATCH: usize = 64;

pub struct Layer {
    pub input_layernorm: Vec<f32>,
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub post_attention_layernorm: Vec<f32>,
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

pub struct Model {
    pub cfg: Config,
    pub embed_tokens: Linear,
    pub layers: Vec<Layer>,
    pub norm: Vec<f32>,
    pub lm_head: Linear,
    pub file: Arc<Gguf>,
}

/// Buffers reused across forward calls (no allocation in the decode loop once sized).
#[derive(Default)]
pub struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    qx: Vec<u8>,
    rope: Vec<(f32, f32)>,
    /// Per-thread attention scores / probabilities.
    att: Vec<f32>,
    /// Per-thread f16 attention accumulators, `head_dim` each (independent of the context).
    acc16: Vec<f16>,
    q16: Vec<f16>,
    /// f32 copies of the cached K and V rows for the batch attention path.
    kf: Vec<f32>,
    vf: Vec<f32>,
    /// Logits of the requested rows, `[rows, n_vocab]`.
    pub logits: Vec<f32>,
    /// When set, every forward pass adds its linear layers' inputs here (importance matrices).
    pub stats: Option<ActivationStats>,
}

fn vec_f32(file: &Gguf, name: &str, n: usize) -> Result<Vec<f32>> {
    let info = file
        .tensor_info(name)
        .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
    if info.n_elements() != n as u64 {
        return Err(ModelError::Tensor {
            name: name.to_string(),
            msg: format!("expected {n} elements, found dims {:?}", info.dims),
        });
    }
    let mut out = vec![0f32; n];
    quant::dequantize(info.dtype, file.tensor_data(info), &mut out)?;
    Ok(out)
}

fn linear(file: &Arc<Gguf>, name: &str, rows: usize, cols: usize, bias: bool) -> Result<Linear> {
    let wname = format!("{name}.weight");
    let info = file
        .tensor_info(&wname)
        .ok_or_else(|| ModelError::MissingTensor(wname.clone()))?;
    if info.dims.len() != 2 || info.dims[0] != cols as u64 || info.dims[1] != rows as u64 {
        return Err(ModelError::Tensor {
            name: wname,
            msg: format!(
                "expected shape [{rows}, {cols}], found ggml dims {:?}",
                info.dims
            ),
        });
    }
    let b = if bias {
        Some(vec_f32(file, &format!("{name}.bias"), rows)?)
    } else {
        None
    };
    Linear::from_gguf(file, info, b)
}

impl Model {
    pub fn from_gguf(file: Arc<Gguf>) -> Result<Self> {
        let cfg = Config::from_gguf(&file)?;
        let (d, ffn) = (cfg.hidden, cfg.ffn);
        let bias = cfg.arch.qkv_bias;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = |s: &str| format!("blk.{i}.{s}");
            layers.push(Layer {
                input_layernorm: vec_f32(&file, &p("attn_norm.weight"), d)?,
                q_proj: linear(&file, &p("attn_q"), cfg.q_dim(), d, bias)?,
                k_proj: linear(&file, &p("attn_k"), cfg.kv_dim(), d, bias)?,
                v_proj: linear(&file, &p("attn_v"), cfg.kv_dim(), d, bias)?,
                o_proj: linear(&file, &p("attn_output"), d, cfg.q_dim(), false)?,
                post_attention_layernorm: vec_f32(&file, &p("ffn_norm.weight"), d)?,
                gate_proj: linear(&file, &p("ffn_gate"), ffn, d, false)?,
                up_proj: linear(&file, &p("ffn_up"), ffn, d, false)?,
                down_proj: linear(&file, &p("ffn_down"), d, ffn, false)?,
            });
        }
        let embed_tokens = linear(&file, "token_embd", cfg.n_vocab, d, false)?;
        // Tied embeddings: without output.weight the embedding matrix is the LM head.
        let lm_head = if file.tensor_info("output.weight").is_some() {
            linear(&file, "output", cfg.n_vocab, d, false)?
        } else {
            embed_tokens.clone()
        };
        let norm = vec_f32(&file, "output_norm.weight", d)?;
        Ok(Model {
            cfg,
            embed_tokens,
            layers,
            norm,
            lm_head,
            file,
        })
    }

    /// Bytes of weights read per decoded token (all but the embedding table).
    pub fn decode_weight_bytes(&self) -> usize {
        let lin = |l: &Linear| l.weight_bytes();
        let per_layer: usize = self
            .layers
            .iter()
            .map(|l| {
                lin(&l.q_proj)
                    + lin(&l.k_proj)
                    + lin(&l.v_proj)
                    + lin(&l.o_proj)
                    + lin(&l.gate_proj)
                    + lin(&l.up_proj)
                    + lin(&l.down_proj)
                    + 4 * (l.input_layernorm.len() + l.post_attention_layernorm.len())
            })
            .sum();
        per_layer + lin(&self.lm_head) + 4 * self.norm.len()
    }

    /// Run `tokens` at positions `pos..pos+n`, writing them into the cache, and compute the
    /// logits of the rows `logits_from..n` into `scratch.logits` (`[n - logits_from, n_vocab]`).
    pub fn forward(
        &self,
        pool: &ThreadPool,
        cache: &mut KvCache,
        scratch: &mut Scratch,
        tokens: &[u32],
        pos: usize,
        logits_from: usize,
    ) -> Result<()> {
        let n = tokens.len();
        let rows = Rows::Run {
            pos,
            n,
            logits_from,
        };
        self.forward_rows(pool, &mut [cache], scratch, tokens, rows)
    }

    /// One step of several independent sequences in one pass: row `t` is the token
    /// `tokens[t]` of sequence `t`, at `positions[t]` of `caches[t]`. The linear layers see all
    /// rows at once (each weight is read once for the batch); RoPE, the KV store and attention
    /// are per row against its own cache. Logits of every row go to `scratch.logits`
    /// (`[n, n_vocab]`).
    pub fn forward_multi(
        &self,
        pool: &ThreadPool,
        caches: &mut [&mut KvCache],
        scratch: &mut Scratch,
        tokens: &[u32],
        positions: &[usize],
    ) -> Result<()> {
        if caches.len() != tokens.len() || positions.len() != tokens.len() {
            return Err(ModelError::Batch(format!(
                "{} caches, {} tokens and {} positions: one of each per sequence",
                caches.len(),
                tokens.len(),
                positions.len()
            )));
        }
        self.forward_rows(pool, caches, scratch, tokens, Rows::PerSeq(positions))
    }

    /// The layer loop shared by [`Model::forward`] and [`Model::forward_multi`].
    fn forward_rows(
        &self,
        pool: &ThreadPool,
        caches: &mut [&mut KvCache],
        scratch: &mut Scratch,
        tokens: &[u32],
        rows: Rows<'_>,
    ) -> Result<()> {
        let cfg = &self.cfg;
        let n = rows.n();
        debug_assert_eq!(n, tokens.len());
        for (seq, cache) in caches.iter().enumerate() {
            let (pos, k) = rows.seq_span(seq);
            if pos + k > cache.ctx {
                return Err(ModelError::ContextFull {
                    pos,
                    n: k,
                    ctx: cache.ctx,
                });
            }
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= cfg.n_vocab) {
            return Err(ModelError::TokenOutOfRange {
                id,
                n_vocab: cfg.n_vocab,
            });
        }
        let s = scratch;
        if n == 0 {
            s.logits.clear();
            return Ok(());
        }
        self.prepare(pool, caches, s, rows);
        let d = cfg.hidden;
        for (t, &tok) in tokens.iter().enumerate() {
            self.embed_tokens
                .dequantize_row(tok as usize, &mut s.x[t * d..(t + 1) * d])?;
        }
        for li in 0..self.layers.len() {
            self.layer(pool, caches, s, rows, li);
        }
        let from = rows.logits_from().min(n);
        let m = n - from;
        rms_norm(&s.x[from * d..], &self.norm, cfg.rms_eps, d, &mut s.h);
        s.logits.resize(m * cfg.n_vocab, 0.0);
        if let Some(st) = s.stats.as_mut().filter(|st| st.include_output) {
            st.observe(&self.lm_head.name, &s.h[..m * d], m, d);
        }
        self.lm_head
            .forward(pool, &s.h[..m * d], m, &mut s.qx, &mut s.logits); // [m, n_vocab]
        Ok(())
    }

    /// Runs decoder layer `li` alone over the hidden states `x: [n, hidden]` of one sequence
    /// at positions `0..n`, in place, through layer `li` of `cache` (pruning runs the model
    /// layer by layer to calibrate each layer on the already-pruned ones before it).
    pub fn forward_layer(
        &self,
        pool: &ThreadPool,
        cache: &mut KvCache,
        scratch: &mut Scratch,
        li: usize,
        x: &mut [f32],
    ) -> Result<()> {
        let d = self.cfg.hidden;
        let n = x.len() / d;
        if li >= self.layers.len() || x.len() != n * d || n > cache.ctx {
            return Err(ModelError::Batch(format!(
                "forward_layer: layer {li} of {}, {} values for rows of {d}, context {}",
                self.layers.len(),
                x.len(),
                cache.ctx
            )));
        }
        if n == 0 {
            return Ok(());
        }
        let rows = Rows::Run {
            pos: 0,
            n,
            logits_from: n,
        };
        let caches = &mut [cache];
        self.prepare(pool, caches, scratch, rows);
        scratch.x.copy_from_slice(x);
        self.layer(pool, caches, scratch, rows, li);
        x.copy_from_slice(&scratch.x);
        Ok(())
    }

    /// Sizes the scratch buffers for a pass of `rows` and fills its RoPE table.
    fn prepare(&self, pool: &ThreadPool, caches: &[&mut KvCache], s: &mut Scratch, rows: Rows<'_>) {
        let cfg = &self.cfg;
        let n = rows.n();
        let (d, qd, kvd, ffn) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn);
        s.x.resize(n * d, 0.0);
        s.h.resize(n * d, 0.0);
        s.q.resize(n * qd, 0.0);
        s.k.resize(n * kvd, 0.0);
        s.v.resize(n * kvd, 0.0);
        s.attn.resize(n * qd, 0.0);
        s.o.resize(n * d, 0.0);
        s.gate.resize(n * ffn, 0.0);
        s.up.resize(n * ffn, 0.0);
        let nt = pool.n_threads();
        let ctx = caches.iter().map(|c| c.ctx).max().unwrap_or(0);
        s.att.resize(nt * ctx, 0.0);
        s.acc16.resize(nt * cfg.head_dim, f16::ZERO);
        s.q16.resize(nt * cfg.head_dim, f16::ZERO);
        rope_table(cfg, rows, &mut s.rope); // [n, rope_dim / 2]
    }

    /// Decoder layer `li` over `s.x: [n, hidden]`, in place.
    fn layer(
        &self,
        pool: &ThreadPool,
        caches: &mut [&mut KvCache],
        s: &mut Scratch,
        rows: Rows<'_>,
        li: usize,
    ) {
        let cfg = &self.cfg;
        let n = rows.n();
        let (d, qd, ffn) = (cfg.hidden, cfg.q_dim(), cfg.ffn);
        let l = &self.layers[li];
        rms_norm(&s.x, &l.input_layernorm, cfg.rms_eps, d, &mut s.h);
        if let Some(st) = s.stats.as_mut() {
            for p in [&l.q_proj, &l.k_proj, &l.v_proj] {
                st.observe(&p.name, &s.h, n, d);
            }
        }
        // The three projections share one quantization of h (and one pool dispatch) when
        // their activation types agree.
        l.q_proj.quantize_input(pool, &s.h, n, &mut s.qx);
        let act = l.q_proj.act_type();
        if l.k_proj.act_type() == act && l.v_proj.act_type() == act {
            Linear::forward_quantized_group(
                pool,
                &mut [
                    (&l.q_proj, &mut s.q),
                    (&l.k_proj, &mut s.k),
                    (&l.v_proj, &mut s.v),
                ],
                &s.qx,
                n,
            );
        } else {
            l.q_proj.forward_quantized(pool, &s.qx, n, &mut s.q); // [n, n_head * head_dim]
            l.k_proj.forward(pool, &s.h, n, &mut s.qx, &mut s.k); // [n, kv_dim]
            l.v_proj.forward(pool, &s.h, n, &mut s.qx, &mut s.v); // [n, kv_dim]
        }
        apply_rope(cfg, &s.rope, &mut s.q, cfg.n_head);
        apply_rope(cfg, &s.rope, &mut s.k, cfg.n_kv_head);
        store_kv(cfg, caches, rows, li, &s.k, &s.v);
        attention(pool, cfg, caches, rows, li, s); // [n, n_head * head_dim]
        if let Some(st) = s.stats.as_mut() {
            st.observe(&l.o_proj.name, &s.attn, n, qd);
        }
        l.o_proj.forward(pool, &s.attn, n, &mut s.qx, &mut s.o); // [n, d]
        add_assign(&mut s.x, &s.o);

        rms_norm(&s.x, &l.post_attention_layernorm, cfg.rms_eps, d, &mut s.h);
        if let Some(st) = s.stats.as_mut() {
            for p in [&l.gate_proj, &l.up_proj] {
                st.observe(&p.name, &s.h, n, d);
            }
        }
        l.gate_proj.quantize_input(pool, &s.h, n, &mut s.qx);
        if l.up_proj.act_type() == l.gate_proj.act_type() {
            Linear::forward_quantized_group(
                pool,
                &mut [(&l.gate_proj, &mut s.gate), (&l.up_proj, &mut s.up)],
                &s.qx,
                n,
            ); // [n, ffn] each
        } else {
            l.gate_proj.forward_quantized(pool, &s.qx, n, &mut s.gate);
            l.up_proj.forward(pool, &s.h, n, &mut s.qx, &mut s.up);
        }
        swiglu(&mut s.gate, &s.up);
        if let Some(st) = s.stats.as_mut() {
            st.observe(&l.down_proj.name, &s.gate, n, ffn);
        }
        l.down_proj.forward(pool, &s.gate, n, &mut s.qx, &mut s.o); // [n, d]
        add_assign(&mut s.x, &s.o);
    }
}

/// Which sequence and position each row of a forward pass belongs to. Every sequence in one
/// pass has the same number of query rows ([`Rows::rows_per_seq`]).
#[derive(Clone, Copy)]
enum Rows<'a> {
    /// One sequence (cache 0): row `t < n` at position `pos + t`; logits of rows
    /// `logits_from..n`.
    Run {
        pos: usize,
        n: usize,
        logits_from: usize,
    },
    /// Row `t` is the one new token of sequence `t`, at `positions[t]`; logits of every row.
    PerSeq(&'a [usize]),
}

impl Rows<'_> {
    /// Rows in the pass.
    fn n(self) -> usize {
        match self {
            Rows::Run { n, .. } => n,
            Rows::PerSeq(p) => p.len(),
        }
    }

    /// `(sequence, position)` of row `t`.
    fn row(self, t: usize) -> (usize, usize) {
        match self {
            Rows::Run { pos, .. } => (0, pos + t),
            Rows::PerSeq(p) => (t, p[t]),
        }
    }

    /// Query rows of each sequence in the pass.
    fn rows_per_seq(self) -> usize {
        match self {
            Rows::Run { n, .. } => n,
            Rows::PerSeq(_) => 1,
        }
    }

    /// `(first position, rows)` of sequence `seq` in the pass.
    fn seq_span(self, seq: usize) -> (usize, usize) {
        match self {
            Rows::Run { pos, n, .. } => (pos, n),
            Rows::PerSeq(p) => (p[seq], 1),
        }
    }

    fn logits_from(self) -> usize {
        match self {
            Rows::Run { logits_from, .. } => logits_from,
            Rows::PerSeq(_) => 0,
        }
    }
}

/// `out = x / sqrt(mean(x^2) + eps) * w` per row of `d` (sum of squares in f64 as ggml does).
fn rms_norm(x: &[f32], w: &[f32], eps: f32, d: usize, out: &mut [f32]) {
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ss: f64 = xr.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let mean = (ss / d as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * scale * g;
        }
    }
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// `gate = silu(gate) * up`.
fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// (cos, sin) per row's position and frequency, `[n][rope_dim / 2]`; theta advanced by
/// repeated f32 multiplication like ggml's rope cache.
fn rope_table(cfg: &Config, rows: Rows<'_>, out: &mut Vec<(f32, f32)>) {
    let half = cfg.rope_dim / 2;
    let theta_scale = cfg.rope_theta.powf(-2.0 / cfg.rope_dim as f32);
    out.clear();
    for t in 0..rows.n() {
        let mut theta = rows.row(t).1 as f32;
        for _ in 0..half {
            out.push((theta.cos(), theta.sin()));
            theta *= theta_scale;
        }
    }
}

/// Rotate each head of `x: [n, heads * head_dim]` in place.
fn apply_rope(cfg: &Config, table: &[(f32, f32)], x: &mut [f32], heads: usize) {
    let (hd, half) = (cfg.head_dim, cfg.rope_dim / 2);
    for (t, row) in x.chunks_exact_mut(heads * hd).enumerate() {
        let cs = &table[t * half..(t + 1) * half];
        for head in row.chunks_exact_mut(hd) {
            for (i, &(c, s)) in cs.iter().enumerate() {
                let (a, b) = match cfg.arch.rope {
                    RopeStyle::Neox => (i, i + half),
                    RopeStyle::Normal => (2 * i, 2 * i + 1),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * c - x1 * s;
                head[b] = x0 * s + x1 * c;
            }
        }
    }
}

/// Row `t` of `k, v: [n, kv_dim]` into its sequence's cache at its position (f16).
fn store_kv(
    cfg: &Config,
    caches: &mut [&mut KvCache],
    rows: Rows<'_>,
    layer: usize,
    k: &[f32],
    v: &[f32],
) {
    let (hd, kvd) = (cfg.head_dim, cfg.kv_dim());
    for t in 0..rows.n() {
        let (seq, p) = rows.row(t);
        let cache = &mut *caches[seq];
        for h in 0..cfg.n_kv_head {
            let base = cache.head_offset(layer, h);
            let src = t * kvd + h * hd..t * kvd + (h + 1) * hd;
            let dst = base + p * hd..base + (p + 1) * hd;
            if cache.ty == KvType::F32 {
                cache.k32[dst.clone()].copy_from_slice(&k[src.clone()]);
                cache.v32[dst].copy_from_slice(&v[src]);
                continue;
            }
            for (o, &x) in cache.k[dst.clone()].iter_mut().zip(&k[src.clone()]) {
                *o = f16::from_f32(x);
            }
            for (o, &x) in cache.v[dst].iter_mut().zip(&v[src]) {
                *o = f16::from_f32(x);
            }
        }
    }
}

/// Causal attention of each of the `n` new query rows over its own sequence's cache; writes
/// `s.attn: [n, n_head * hd]`. Sequences with at least [`F32_ATTENTION_MIN_BATCH`] query rows
/// in the pass use f32 operands and an exact softmax; fewer (decode) round q to f16 and
/// accumulate V in f16 with an online softmax. Both mirror ggml's CPU flash-attention paths
/// (tiled / one-chunk), so that greedy output matches llama.cpp's even where two tokens are
/// nearly tied.
fn attention(
    pool: &ThreadPool,
    cfg: &Config,
    caches: &[&mut KvCache],
    rows: Rows<'_>,
    layer: usize,
    s: &mut Scratch,
) {
    let n = rows.n();
    let (hd, qd) = (cfg.head_dim, cfg.q_dim());
    let ctx = caches.iter().map(|c| c.ctx).max().unwrap_or(0);
    let group = cfg.n_head / cfg.n_kv_head;
    let scale = 1.0 / (hd as f32).sqrt();
    let items = n * cfg.n_head;
    let q = &s.q;
    let out = SyncPtr(s.attn.as_mut_ptr());
    let att = SyncPtr(s.att.as_mut_ptr());
    let acc16 = SyncPtr(s.acc16.as_mut_ptr());
    let q16 = SyncPtr(s.q16.as_mut_ptr());
    // An f32 cache always takes the f32 path: f32 end to end.
    let f32_path = rows.rows_per_seq() >= F32_ATTENTION_MIN_BATCH
        || caches.iter().any(|c| c.ty == KvType::F32);
    // Start of the f32 copy of one (sequence, kv head): [seq][kv_head][ctx][hd].
    let f32_base = |seq: usize, kvh: usize| (seq * cfg.n_kv_head + kvh) * ctx * hd;
    if f32_path {
        // The batch path reads every cached row many times: convert the used rows once.
        s.kf.resize(caches.len() * cfg.n_kv_head * ctx * hd, 0.0);
        s.vf.resize(caches.len() * cfg.n_kv_head * ctx * hd, 0.0);
        let (kp, vp) = (SyncPtr(s.kf.as_mut_ptr()), SyncPtr(s.vf.as_mut_ptr()));
        pool.run(|ti, nt| {
            for (seq, cache) in caches.iter().enumerate() {
                let (pos, k) = rows.seq_span(seq);
                for kvh in 0..cfg.n_kv_head {
                    let base = cache.head_offset(layer, kvh);
                    let r = split_range(pos + k, ti, nt, 16);
                    let (a, b) = (r.start * hd, r.end * hd);
                    let o = f32_base(seq, kvh) + a;
                    // SAFETY: each thread converts its own rows of each head.
                    let (dk, dv) = unsafe {
                        (
                            std::slice::from_raw_parts_mut(kp.get().add(o), b - a),
                            std::slice::from_raw_parts_mut(vp.get().add(o), b - a),
                        )
                    };
                    if cache.ty == KvType::F32 {
                        dk.copy_from_slice(&cache.k32[base + a..base + b]);
                        dv.copy_from_slice(&cache.v32[base + a..base + b]);
                    } else {
                        f16_to_f32(&cache.k[base + a..base + b], dk);
                        f16_to_f32(&cache.v[base + a..base + b], dv);
                    }
                }
            }
        });
    }
    let (kf, vf) = (&s.kf, &s.vf);
    pool.run(|ti, nt| {
        // SAFETY: each thread uses its own slice of the per-thread buffers.
        let (sc, acc16, qh) = unsafe {
            (
                std::slice::from_raw_parts_mut(att.get().add(ti * ctx), ctx),
                std::slice::from_raw_parts_mut(acc16.get().add(ti * hd), hd),
                std::slice::from_raw_parts_mut(q16.get().add(ti * hd), hd),
            )
        };
        for item in split_range(items, ti, nt, 1) {
            let (t, h) = (item / cfg.n_head, item % cfg.n_head);
            let (seq, p) = rows.row(t);
            let cache = &*caches[seq];
            let base = cache.head_offset(layer, h / group);
            let n_pos = p + 1;
            let qrow = &q[t * qd + h * hd..t * qd + (h + 1) * hd];
            // SAFETY: item (t, h) owns its hd outputs.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(t * qd + h * hd), hd) };
            let krow = |j: usize| &cache.k[base + j * hd..base + (j + 1) * hd];
            let vrow = |j: usize| &cache.v[base + j * hd..base + (j + 1) * hd];
            if f32_path {
                let kf = &kf[f32_base(seq, h / group)..];
                let vf = &vf[f32_base(seq, h / group)..];
                let mut max = f32::NEG_INFINITY;
                for (j, sj) in sc[..n_pos].iter_mut().enumerate() {
                    *sj = dot_f32(&kf[j * hd..(j + 1) * hd], qrow) * scale;
                    max = max.max(*sj);
                }
                let mut sum = 0f32;
                dst.fill(0.0);
                for (j, sj) in sc[..n_pos].iter().enumerate() {
                    let p = (sj - max).exp();
                    sum += p;
                    axpy_f32(dst, &vf[j * hd..(j + 1) * hd], p);
                }
                let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
                dst.iter_mut().for_each(|o| *o *= inv);
            } else {
                for (o, &x) in qh.iter_mut().zip(qrow) {
                    *o = f16::from_f32(x);
                }
                acc16.fill(f16::ZERO);
                let (mut m, mut sum) = (f32::NEG_INFINITY, 0f32);
                for j in 0..n_pos {
                    let sj = dot_f16(krow(j), qh) * scale;
                    let (mut ms, mut vs) = (1.0f32, 1.0f32);
                    if sj > m {
                        ms = (m - sj).exp();
                        m = sj;
                        scale_f16(acc16, ms);
                    } else {
                        vs = (sj - m).exp();
                    }
                    mad_f16(acc16, vrow(j), vs);
                    sum = sum * ms + vs;
                }
                let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
                for (o, a) in dst.iter_mut().zip(acc16.iter()) {
                    *o = a.to_f32() * inv;
                }
            }
        }
    });
}

//! The tiny model the quantization fixtures are made from: a qwen2 GGUF in f32 with random
//! weights from a fixed seed (4 layers, hidden 256, ffn 384 so that ffn_down rows of 384 take
//! the fallback types, 2 kv heads, tied embeddings), and an imatrix with known values. Both
//! are regenerated bit for bit here and by `scripts/quant-fixtures.sh` (which runs this code).

#![allow(dead_code)]

use std::path::Path;

use apr_core::GgmlType;
use apr_formats::{GgufWriter, TensorSpec, Value};
use apr_ops::{Imatrix, ImatrixEntry};

pub const HIDDEN: u64 = 256;
pub const FFN: u64 = 384;
pub const N_LAYER: u64 = 4;
pub const N_HEAD: u64 = 4;
pub const N_KV: u64 = 2;
pub const VOCAB: u64 = 320;
const HEAD_DIM: u64 = HIDDEN / N_HEAD;
const SEED: u64 = 0x5eed_2026;

/// splitmix64: a generator whose output never changes with a crate version.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// (name, dims) of every tensor, in file order.
pub fn tensor_list() -> Vec<(String, Vec<u64>)> {
    let kv = N_KV * HEAD_DIM;
    let mut v = vec![
        ("token_embd.weight".to_string(), vec![HIDDEN, VOCAB]),
        ("output_norm.weight".to_string(), vec![HIDDEN]),
    ];
    for l in 0..N_LAYER {
        let p = |s: &str| format!("blk.{l}.{s}");
        v.extend([
            (p("attn_norm.weight"), vec![HIDDEN]),
            (p("attn_q.weight"), vec![HIDDEN, HIDDEN]),
            (p("attn_q.bias"), vec![HIDDEN]),
            (p("attn_k.weight"), vec![HIDDEN, kv]),
            (p("attn_k.bias"), vec![kv]),
            (p("attn_v.weight"), vec![HIDDEN, kv]),
            (p("attn_v.bias"), vec![kv]),
            (p("attn_output.weight"), vec![HIDDEN, HIDDEN]),
            (p("ffn_norm.weight"), vec![HIDDEN]),
            (p("ffn_gate.weight"), vec![HIDDEN, FFN]),
            (p("ffn_up.weight"), vec![HIDDEN, FFN]),
            (p("ffn_down.weight"), vec![FFN, HIDDEN]),
        ]);
    }
    v
}

/// Values of one tensor: norms near 1, weights with a per-row scale and a few outliers.
fn values(rng: &mut Rng, name: &str, n: usize, row: usize) -> Vec<f32> {
    if name.ends_with("norm.weight") {
        return (0..n).map(|_| 1.0 + 0.1 * rng.uniform()).collect();
    }
    let mut out = Vec::with_capacity(n);
    let mut scale = 0.05;
    for i in 0..n {
        if i.is_multiple_of(row) {
            scale = 0.02 + 0.08 * rng.uniform().abs();
        }
        // Sum of three uniforms: roughly normal; one value in 97 is an outlier.
        let mut v = (rng.uniform() + rng.uniform() + rng.uniform()) * scale;
        if rng.next().is_multiple_of(97) {
            v *= 8.0;
        }
        out.push(v);
    }
    out
}

/// Writes the tiny f32 source model.
pub fn write_source(path: &Path) {
    let meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("qwen2".into())),
        (
            "general.name".into(),
            Value::String("apr-tiny-qwen2".into()),
        ),
        ("general.file_type".into(), Value::U32(0)),
        ("qwen2.context_length".into(), Value::U32(256)),
        ("qwen2.embedding_length".into(), Value::U32(HIDDEN as u32)),
        ("qwen2.block_count".into(), Value::U32(N_LAYER as u32)),
        ("qwen2.feed_forward_length".into(), Value::U32(FFN as u32)),
        (
            "qwen2.attention.head_count".into(),
            Value::U32(N_HEAD as u32),
        ),
        (
            "qwen2.attention.head_count_kv".into(),
            Value::U32(N_KV as u32),
        ),
        (
            "qwen2.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-6),
        ),
        ("qwen2.rope.freq_base".into(), Value::F32(1e6)),
    ];
    let list = tensor_list();
    let specs = list
        .iter()
        .map(|(name, dims)| TensorSpec {
            name: name.clone(),
            dims: dims.clone(),
            dtype: GgmlType::F32,
        })
        .collect();
    let mut w = GgufWriter::create(path, &meta, specs).unwrap();
    let mut rng = Rng(SEED);
    for (name, dims) in &list {
        let n: u64 = dims.iter().product();
        let v = values(&mut rng, name, n as usize, dims[0] as usize);
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        w.write(name, &bytes).unwrap();
    }
    w.finish().unwrap();
}

/// The imatrix: every 2-D weight but blk.3.attn_k.weight (left out to exercise a missing
/// entry), counts of 1024 rows, sums with a wide spread of column importance.
pub fn imatrix() -> Imatrix {
    let mut rng = Rng(SEED ^ 0x1a7);
    let mut m = Imatrix {
        datasets: vec!["apr-tiny-random".into()],
        chunk_count: 2,
        chunk_size: 512,
        ..Default::default()
    };
    for (name, dims) in tensor_list() {
        if dims.len() < 2 || name == "token_embd.weight" || name == "blk.3.attn_k.weight" {
            continue;
        }
        let count = 1024.0f32;
        let sums = (0..dims[0])
            .map(|_| {
                let u = rng.uniform();
                count * (0.05 + 4.0 * u * u)
            })
            .collect();
        m.entries.insert(
            name,
            ImatrixEntry {
                in_sum2: sums,
                counts: vec![count],
            },
        );
    }
    m
}

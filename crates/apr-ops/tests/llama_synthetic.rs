//! A tiny random llama GGUF (q/k permuted, as llama.cpp stores them) exported to an HF
//! directory and imported back: the directory's q/k rows are in HF's rotary order, the
//! directory runs as a model with the GGUF's logits bit for bit, the re-imported GGUF holds
//! the original bytes, and Hugging Face `tokenizers` reads the exported tokenizer.json.

use std::path::PathBuf;
use std::sync::Arc;

use apr_core::pool::ThreadPool;
use apr_core::GgmlType;
use apr_formats::gguf_writer::{to_bytes, TensorOut};
use apr_formats::safetensors::{checkpoint_files, SafetensorsFile};
use apr_formats::{Gguf, Provenance, Value};
use apr_models::{KvCache, Model, Scratch};

const HIDDEN: u64 = 16;
const HEADS: u64 = 2;
const KV_HEADS: u64 = 1;
/// Eight, so that the rotary permutation is not its own inverse (it is for four).
const HEAD_DIM: u64 = 8;
const FFN: u64 = 16;
const VOCAB: u64 = 6;
/// Shard limit of the export: several shards for this model.
const SHARD_BYTES: usize = 2048;

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apr-llama-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Deterministic values in [-0.5, 0.5) (an LCG; no zeros pattern).
fn values(n: u64, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn llama_gguf() -> Vec<u8> {
    let strs = |v: &[&str]| Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect());
    let meta = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.context_length", Value::U32(64)),
        ("llama.embedding_length", Value::U32(HIDDEN as u32)),
        ("llama.block_count", Value::U32(1)),
        ("llama.feed_forward_length", Value::U32(FFN as u32)),
        ("llama.attention.head_count", Value::U32(HEADS as u32)),
        ("llama.attention.head_count_kv", Value::U32(KV_HEADS as u32)),
        ("llama.rope.freq_base", Value::F32(500000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("llama-bpe".into())),
        (
            "tokenizer.ggml.tokens",
            strs(&["a", "b", "ab", "Ġ", "Ġab", "<s>"]),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array([1, 1, 1, 1, 1, 3].into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.merges", strs(&["a b", "Ġ ab"])),
        ("tokenizer.ggml.bos_token_id", Value::U32(5)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
    ];
    let shapes: Vec<(&str, Vec<u64>)> = vec![
        ("token_embd.weight", vec![HIDDEN, VOCAB]),
        ("blk.0.attn_norm.weight", vec![HIDDEN]),
        ("blk.0.attn_q.weight", vec![HIDDEN, HEADS * HEAD_DIM]),
        ("blk.0.attn_k.weight", vec![HIDDEN, KV_HEADS * HEAD_DIM]),
        ("blk.0.attn_v.weight", vec![HIDDEN, KV_HEADS * HEAD_DIM]),
        ("blk.0.attn_output.weight", vec![HEADS * HEAD_DIM, HIDDEN]),
        ("blk.0.ffn_norm.weight", vec![HIDDEN]),
        ("blk.0.ffn_gate.weight", vec![HIDDEN, FFN]),
        ("blk.0.ffn_up.weight", vec![HIDDEN, FFN]),
        ("blk.0.ffn_down.weight", vec![FFN, HIDDEN]),
        ("output_norm.weight", vec![HIDDEN]),
        ("output.weight", vec![HIDDEN, VOCAB]),
    ];
    let data: Vec<Vec<u8>> = shapes
        .iter()
        .enumerate()
        .map(|(i, (_, d))| bytes(&values(d.iter().product(), i as u64 + 1)))
        .collect();
    let tensors: Vec<TensorOut> = shapes
        .iter()
        .zip(&data)
        .map(|((n, d), b)| TensorOut {
            name: n,
            dims: d,
            type_id: GgmlType::F32.id(),
            data: b,
        })
        .collect();
    to_bytes(&meta, &tensors)
}

fn logits(file: Gguf, ids: &[u32]) -> Vec<f32> {
    let m = Model::from_gguf(Arc::new(file)).unwrap();
    let pool = ThreadPool::new(1);
    let mut cache = KvCache::new(&m.cfg, 16);
    let mut s = Scratch::default();
    m.forward(&pool, &mut cache, &mut s, ids, 0, 0).unwrap();
    s.logits.clone()
}

#[test]
fn llama_export_import_roundtrip() {
    let work = tmp("rt");
    let src_path = work.join("src.gguf");
    std::fs::write(&src_path, llama_gguf()).unwrap();
    let prov = Provenance::of("test".into(), &src_path, "0").unwrap();
    let src = Gguf::open(&src_path).unwrap();
    let dir = work.join("hf");
    // Small shards: the directory is read back through its index.
    apr_ops::convert::write_hf(&src, &dir, GgmlType::F32, SHARD_BYTES, &prov).unwrap();
    assert!(dir.join("model.safetensors.index.json").is_file());

    // q rows in HF order: GGUF row h*d + 2i + j is HF row h*d + j*d/2 + i.
    let files = checkpoint_files(&dir).unwrap();
    assert!(files.len() > 2, "{files:?}");
    let shards: Vec<SafetensorsFile> = files
        .iter()
        .map(|f| SafetensorsFile::open(f).unwrap())
        .collect();
    let (st, q) = shards
        .iter()
        .find_map(|st| {
            let t = st
                .tensors
                .iter()
                .find(|t| t.name == "model.layers.0.self_attn.q_proj.weight");
            t.map(|t| (st, t))
        })
        .unwrap();
    let q = st.data(q);
    let gq = src.tensor_data(src.tensor_info("blk.0.attn_q.weight").unwrap());
    let row = (HIDDEN * 4) as usize;
    let (d, half) = (HEAD_DIM as usize, HEAD_DIM as usize / 2);
    for h in 0..HEADS as usize {
        for i in 0..half {
            for j in 0..2 {
                let (g, f) = (h * d + 2 * i + j, h * d + j * half + i);
                assert_eq!(q[f * row..(f + 1) * row], gq[g * row..(g + 1) * row]);
            }
        }
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model_type"], "llama");
    assert_eq!(cfg["tie_word_embeddings"], false);

    // The directory as a model: the same logits as the GGUF, bit for bit.
    let ids = [5u32, 2, 4, 0, 1];
    let want = logits(Gguf::open(&src_path).unwrap(), &ids);
    assert_eq!(logits(apr_formats::open_model(&dir).unwrap(), &ids), want);

    // Import: the original tensor bytes back, and the tokenizer metadata.
    let re = work.join("re.gguf");
    apr_ops::import::import(&dir, &re, "f32", &prov).unwrap();
    let g = Gguf::open(&re).unwrap();
    for t in &src.tensors {
        let r = g.tensor_info(&t.name).unwrap();
        assert_eq!(r.dims, t.dims, "{}", t.name);
        assert!(g.tensor_data(r) == src.tensor_data(t), "{}", t.name);
    }
    for k in [
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.pre",
    ] {
        assert_eq!(g.get(k), src.get(k), "{k}");
    }

    // Hugging Face tokenizers on the exported tokenizer.json: BOS added, merges applied.
    let hf = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let enc = hf.encode("ab ab", true).unwrap();
    assert_eq!(enc.get_ids(), &[5, 2, 4]);
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn bad_types_and_formats_are_errors() {
    let work = tmp("bad");
    let src_path = work.join("src.gguf");
    std::fs::write(&src_path, llama_gguf()).unwrap();
    let prov = Provenance::of("test".into(), &src_path, "0").unwrap();
    let o = |format, ty| apr_ops::export::ExportOptions {
        format,
        ty,
        shard_bytes: 1 << 30,
    };
    let out = work.join("x");
    for (f, t) in [
        ("safetensors", "q4_k"),
        ("onnx", "f32"),
        ("safetensors", "q8_0"),
    ] {
        assert!(apr_ops::export::export(&src_path, &out, &o(f, t), &prov).is_err());
    }
    assert!(apr_ops::import::import(&work, &work.join("y.gguf"), "f16", &prov).is_err());
    std::fs::remove_dir_all(&work).unwrap();
}

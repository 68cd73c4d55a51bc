//! Writes the seed corpus for the `gguf` fuzz target into `corpus/gguf/` (or the directory given
//! as the first argument): tiny valid GGUF images covering every value type, nested arrays,
//! every tensor type, v2 and v3 headers, and metadata shaped like a real model's.
//! Run from `fuzz/`: `cargo +nightly run --example gen_seeds`.

use std::path::PathBuf;

use apr_core::GgmlType;
use apr_formats::gguf::write::{to_bytes, TensorOut};
use apr_formats::gguf::{Gguf, Value};

/// Byte 4..8 of the image is the version; `to_bytes` writes 3.
const VERSION_AT: usize = 4;
/// Every ggml type id the reader supports.
const TYPE_IDS: &[u32] = &[0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 30];

fn s(x: &str) -> Value {
    Value::String(x.into())
}

/// Deterministic filler bytes (xorshift), so seeds are reproducible.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One of each scalar type, plus strings with odd content.
fn every_scalar() -> Vec<(&'static str, Value)> {
    vec![
        ("general.architecture", s("llama")),
        ("t.u8", Value::U8(255)),
        ("t.i8", Value::I8(-128)),
        ("t.u16", Value::U16(65535)),
        ("t.i16", Value::I16(-32768)),
        ("t.u32", Value::U32(u32::MAX)),
        ("t.i32", Value::I32(i32::MIN)),
        ("t.f32", Value::F32(f32::NAN)),
        ("t.bool", Value::Bool(true)),
        ("t.string", s("héllo\0wörld ✓")),
        ("t.empty_string", s("")),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f64", Value::F64(-0.0)),
        ("t.f64_inf", Value::F64(f64::INFINITY)),
    ]
}

/// Arrays of every element type, empty arrays and nesting up to the reader's limit.
fn arrays() -> Vec<(&'static str, Value)> {
    let arr = Value::Array;
    let nest = |depth: usize| {
        let mut v = arr(vec![Value::U8(1), Value::U8(2)]);
        for _ in 1..depth {
            v = arr(vec![v.clone(), v]);
        }
        v
    };
    vec![
        ("a.u8", arr(vec![Value::U8(0), Value::U8(1)])),
        ("a.i8", arr(vec![Value::I8(-1), Value::I8(1)])),
        ("a.u16", arr(vec![Value::U16(1), Value::U16(2)])),
        ("a.i16", arr(vec![Value::I16(-1)])),
        ("a.u32", arr(vec![Value::U32(7); 3])),
        (
            "a.i32",
            arr(vec![Value::I32(1), Value::I32(3), Value::I32(-2)]),
        ),
        ("a.f32", arr(vec![Value::F32(0.5), Value::F32(-1e30)])),
        ("a.bool", arr(vec![Value::Bool(false), Value::Bool(true)])),
        ("a.string", arr(vec![s("a"), s(""), s("ĠĠ")])),
        ("a.u64", arr(vec![Value::U64(1 << 63)])),
        ("a.i64", arr(vec![Value::I64(-5), Value::I64(i64::MAX)])),
        ("a.f64", arr(vec![Value::F64(1.0), Value::F64(f64::NAN)])),
        ("a.empty", arr(vec![])),
        ("a.nested2", nest(2)),
        ("a.nested4", nest(4)),
        (
            "a.strings2",
            arr(vec![arr(vec![s("x"), s("y")]), arr(vec![])]),
        ),
    ]
}

/// Metadata shaped like a small Qwen2 / Llama checkpoint's, with a toy vocabulary.
fn model_like(arch: &str, spm: bool) -> Vec<(String, Value)> {
    let tokens = [
        "<unk>",
        "<s>",
        "</s>",
        "a",
        "b",
        "ab",
        "Ġ",
        "Ġa",
        "<|im_start|>",
    ];
    let k = |name: &str| format!("{arch}.{name}");
    let mut m = vec![
        ("general.architecture".into(), s(arch)),
        ("general.type".into(), s("model")),
        ("general.name".into(), s("Tiny Test Model")),
        ("general.size_label".into(), s("1K")),
        ("general.file_type".into(), Value::U32(15)),
        ("general.quantization_version".into(), Value::U32(2)),
        (k("block_count"), Value::U32(1)),
        (k("context_length"), Value::U32(64)),
        (k("embedding_length"), Value::U32(32)),
        (k("feed_forward_length"), Value::U32(64)),
        (k("attention.head_count"), Value::U32(2)),
        (k("attention.head_count_kv"), Value::U32(1)),
        (k("rope.freq_base"), Value::F32(1_000_000.0)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        ("tokenizer.ggml.model".into(), s(if spm { "llama" } else { "gpt2" })),
        ("tokenizer.ggml.pre".into(), s(arch)),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.iter().map(|t| s(t)).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                (0..tokens.len())
                    .map(|i| Value::I32(if i < 3 || i == 8 { 3 } else { 1 }))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.padding_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
        (
            "tokenizer.chat_template".into(),
            s("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"),
        ),
    ];
    if spm {
        m.push((
            "tokenizer.ggml.scores".into(),
            Value::Array((0..tokens.len()).map(|i| Value::F32(-(i as f32))).collect()),
        ));
    } else {
        m.push((
            "tokenizer.ggml.merges".into(),
            Value::Array(vec![s("a b"), s("Ġ a")]),
        ));
    }
    m
}

/// One `[elems_per_row, 2]` tensor of type `id` with filler data.
fn tensor_of(id: u32, rows: u64) -> (String, Vec<u64>, Vec<u8>) {
    let ty = GgmlType::from_id(id).expect("supported id");
    let row = if ty.block_elems() == 1 {
        4
    } else {
        ty.block_elems() as u64
    };
    let n_bytes = ty.bytes_for((row * rows) as usize).expect("whole blocks");
    // Filler bytes give arbitrary f16 scales; NaN/inf in them is fine for the fuzzer.
    (
        format!("t.{}", ty.name().to_lowercase()),
        vec![row, rows],
        bytes(n_bytes, id as u64 + 1),
    )
}

fn image(metadata: &[(String, Value)], tensors: &[(String, Vec<u64>, u32, Vec<u8>)]) -> Vec<u8> {
    let md: Vec<(&str, Value)> = metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let ts: Vec<TensorOut> = tensors
        .iter()
        .map(|(name, dims, type_id, data)| TensorOut {
            name,
            dims,
            type_id: *type_id,
            data,
        })
        .collect();
    to_bytes(&md, &ts)
}

fn owned(md: Vec<(&str, Value)>) -> Vec<(String, Value)> {
    md.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("corpus/gguf"));
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    let mut seeds: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), image(&[], &[])),
        ("scalars".into(), image(&owned(every_scalar()), &[])),
        ("arrays".into(), image(&owned(arrays()), &[])),
        (
            "align16".into(),
            image(
                &[("general.alignment".into(), Value::U32(16))],
                &[("w".into(), vec![4, 1], 0, bytes(16, 9))],
            ),
        ),
        (
            "align8_u64".into(),
            image(
                &[("general.alignment".into(), Value::U64(8))],
                &[("w".into(), vec![2], 1, bytes(4, 8))],
            ),
        ),
    ];

    // One seed per tensor type, and one with every type together.
    let mut all = Vec::new();
    for &id in TYPE_IDS {
        let (name, dims, data) = tensor_of(id, 2);
        seeds.push((
            format!("tensor-{}", name.trim_start_matches("t.")),
            image(&[], &[(name.clone(), dims.clone(), id, data.clone())]),
        ));
        all.push((name, dims, id, data));
    }
    seeds.push(("tensors-all".into(), image(&[], &all)));

    // Tensors of 1, 3 and 4 dims and a zero-size one.
    seeds.push((
        "tensor-dims".into(),
        image(
            &[],
            &[
                ("d1".into(), vec![8], 0, bytes(32, 1)),
                ("d3".into(), vec![2, 2, 2], 1, bytes(16, 2)),
                ("d4".into(), vec![32, 1, 1, 2], 8, bytes(68, 3)),
                ("zero".into(), vec![0, 4], 0, vec![]),
            ],
        ),
    ));

    // Model-shaped images: Qwen2 (BPE) with Q4_K/Q6_K/F32 tensors, Llama (SPM) with F16/Q8_0.
    let qwen = model_like("qwen2", false);
    let qwen_tensors = vec![
        ("token_embd.weight".into(), vec![256, 1], 12, bytes(144, 21)),
        ("blk.0.attn_norm.weight".into(), vec![32], 0, bytes(128, 22)),
        ("blk.0.attn_q.bias".into(), vec![32], 0, bytes(128, 23)),
        (
            "blk.0.ffn_down.weight".into(),
            vec![256, 1],
            14,
            bytes(210, 24),
        ),
        ("output_norm.weight".into(), vec![32], 0, bytes(128, 25)),
    ];
    seeds.push(("model-qwen2".into(), image(&qwen, &qwen_tensors)));
    let llama = model_like("llama", true);
    let llama_tensors = vec![
        ("token_embd.weight".into(), vec![32, 2], 1, bytes(128, 31)),
        ("blk.0.attn_q.weight".into(), vec![32, 2], 8, bytes(68, 32)),
        ("output.weight".into(), vec![32, 1], 8, bytes(34, 33)),
    ];
    seeds.push(("model-llama".into(), image(&llama, &llama_tensors)));

    // v2 headers: same layout as v3 (v3 only added big-endian files).
    let v2: Vec<(String, Vec<u8>)> = seeds
        .iter()
        .filter(|(n, _)| {
            matches!(
                n.as_str(),
                "scalars" | "arrays" | "model-qwen2" | "tensor-q4_k"
            )
        })
        .map(|(n, b)| {
            let mut b = b.clone();
            b[VERSION_AT..VERSION_AT + 4].copy_from_slice(&2u32.to_le_bytes());
            (format!("v2-{n}"), b)
        })
        .collect();
    seeds.extend(v2);

    for (name, b) in &seeds {
        if let Err(e) = Gguf::from_bytes(b.clone()) {
            panic!("seed {name} does not parse: {e}");
        }
        std::fs::write(dir.join(format!("seed-{name}")), b).expect("write seed");
    }
    println!("wrote {} seeds to {}", seeds.len(), dir.display());
}

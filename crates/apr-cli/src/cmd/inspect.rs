//! `apr inspect MODEL [--json]`: what is in a GGUF file.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use apr_formats::tokenizer::Tokenizer;
use apr_formats::Value;
use apr_models::Config;
use serde_json::json;

use crate::common::print_json;

/// Arrays longer than this are summarized, not listed.
const MAX_ARRAY_SHOWN: usize = 8;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// GGUF file or cached model name
    pub model: String,
    #[arg(long)]
    pub json: bool,
}

fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Array(a) if a.len() > MAX_ARRAY_SHOWN => {
            json!({ "array": a.first().map(|e| e.type_name()).unwrap_or("?"), "len": a.len() })
        }
        Value::Array(a) => a.iter().map(value_json).collect(),
        Value::String(s) => json!(s),
        Value::Bool(b) => json!(b),
        Value::F32(x) => json!(x),
        Value::F64(x) => json!(x),
        other => other
            .as_i64()
            .map_or_else(|| json!(other.as_u64()), |i| json!(i)),
    }
}

pub fn run(a: Args) -> Result<()> {
    let path = apr_engine::resolve_model(&a.model)?;
    let g = apr_formats::open_model(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let cfg = Config::from_gguf(&g);
    let n_params: u64 = g.tensors.iter().map(|t| t.n_elements()).sum();
    let mut mix: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for t in &g.tensors {
        let e = mix.entry(t.dtype.name().to_string()).or_default();
        e.0 += 1;
        e.1 += t.n_bytes;
    }
    let tok = Tokenizer::from_gguf(&g);
    let template = g.get("tokenizer.chat_template").and_then(|v| v.as_str());
    let metadata: serde_json::Map<String, serde_json::Value> = g
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "tokenizer.chat_template")
        .map(|(k, v)| (k.clone(), value_json(v)))
        .collect();
    let tensors: Vec<_> = g
        .tensors
        .iter()
        .map(|t| json!({ "name": t.name, "dims": t.dims, "type": t.dtype.name(), "bytes": t.n_bytes, "offset": t.offset }))
        .collect();
    let arch = match &cfg {
        Ok(c) => json!({
            "name": c.arch.name, "layers": c.n_layer, "hidden": c.hidden, "ffn": c.ffn,
            "heads": c.n_head, "kv_heads": c.n_kv_head, "head_dim": c.head_dim,
            "rope_theta": c.rope_theta, "rms_eps": c.rms_eps, "context": c.ctx_train, "vocab": c.n_vocab,
        }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    let tokenizer = match &tok {
        Ok(t) => json!({
            "model": g.get("tokenizer.ggml.model").and_then(|v| v.as_str()),
            "pre": t.pre(), "tokens": t.vocab_size(),
            "merges": g.get("tokenizer.ggml.merges").and_then(|v| v.as_array()).map(|a| a.len()),
            "bos": t.bos_id(), "eos": t.eos_id(), "eog": t.eos_ids(), "add_bos": t.add_bos(),
        }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    let out = json!({
        "file": path.display().to_string(),
        "gguf_version": g.version,
        "hf_dir": apr_formats::is_hf_dir(&path),
        "bytes": g.total_bytes(),
        "architecture": arch,
        "parameters": n_params,
        "quant_mix": mix.iter().map(|(k, (n, b))| (k.clone(), json!({"tensors": n, "bytes": b}))).collect::<serde_json::Map<_, _>>(),
        "tokenizer": tokenizer,
        "chat_template": template,
        "metadata": metadata,
        "tensors": tensors,
    });
    if a.json {
        return print_json(&out);
    }
    println!("file         {}", path.display());
    let format = if apr_formats::is_hf_dir(&path) {
        "hf dir      ".to_string()
    } else {
        format!("gguf         v{}", g.version)
    };
    println!(
        "{format} ({} bytes, {} tensors, {} metadata keys)",
        g.total_bytes(),
        g.tensors.len(),
        g.metadata.len()
    );
    println!("parameters   {n_params} ({:.2} B)", n_params as f64 / 1e9);
    println!(
        "architecture {}",
        serde_json::to_string(&out["architecture"])?
    );
    println!("tokenizer    {}", serde_json::to_string(&out["tokenizer"])?);
    print!("quant mix   ");
    for (k, (n, b)) in &mix {
        print!(" {k} x{n} ({:.1} MB)", *b as f64 / 1e6);
    }
    println!();
    match template {
        Some(t) => println!("chat template ({} chars):\n{t}", t.len()),
        None => println!("chat template: none"),
    }
    println!("\nmetadata:");
    for (k, v) in &metadata {
        println!("  {k} = {v}");
    }
    println!("\ntensors:");
    for t in &g.tensors {
        println!("  {:<32} {:<6} {:?}", t.name, t.dtype.name(), t.dims);
    }
    Ok(())
}

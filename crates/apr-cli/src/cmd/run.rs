//! `apr run MODEL --prompt T`: one generation, streamed or as one JSON object.

use std::io::Write;

use anyhow::{Context, Result};
use apr_formats::chat_template::Message;

use crate::common::{print_json, ModelArgs, SamplingArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt (a user turn, or fed verbatim with --raw)
    #[arg(long)]
    pub prompt: String,
    /// Feed the prompt verbatim (special tokens parsed, no chat template)
    #[arg(long)]
    pub raw: bool,
    /// System message for the chat template
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Print one JSON object with text, tokens, prompt_tokens, tok_s, stop
    #[arg(long)]
    pub json: bool,
    /// Write the logits after every prompt position to FILE (little-endian f32,
    /// `[prompt_tokens, n_vocab]` row-major) before generating; --json then adds prompt_ids
    #[arg(long, value_name = "FILE")]
    pub logits_out: Option<std::path::PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    a.sampling.validate()?;
    let engine = a.model.load()?;
    let text = if a.raw {
        a.prompt.clone()
    } else {
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(Message::new("system", s));
        }
        msgs.push(Message::new("user", &a.prompt));
        engine.chat_prompt(&msgs)?
    };
    // BOS comes from encode() when the model asks for it.
    let ids = engine.tokenizer.encode(&text)?;
    let mut session = engine.session(a.sampling.ctx);
    if let Some(p) = &a.logits_out {
        let logits = session.prompt_logits(&ids)?;
        let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
        apr_formats::write_atomic(p, &bytes)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    let opts = a.sampling.gen_options();
    let json = a.json;
    let mut stdout = std::io::stdout();
    let out = session.generate(&ids, &opts, &mut |piece| {
        if !json {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        }
    })?;
    eprintln!(
        "\n[{} prompt tokens in {:.2}s, {} generated at {:.1} tok/s, stop: {}]",
        out.prompt_tokens,
        out.prefill_secs,
        out.tokens.len(),
        out.tok_s(),
        out.stop.as_str()
    );
    if json {
        let mut j = serde_json::json!({
            "text": out.text,
            "tokens": out.tokens,
            "prompt_tokens": out.prompt_tokens,
            "tok_s": out.tok_s(),
            "stop": out.stop.as_str(),
        });
        if a.logits_out.is_some() {
            j["prompt_ids"] = serde_json::json!(ids);
            j["n_vocab"] = serde_json::json!(engine.model.cfg.n_vocab);
        }
        if a.sampling.logprobs > 0 {
            j["logprobs"] = serde_json::json!(out.top_logprobs);
        }
        print_json(&j)?;
    } else {
        println!();
    }
    Ok(())
}

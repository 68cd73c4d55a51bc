//! `apr tokenize MODEL --text T [--json]`.

use anyhow::{Context, Result};
use apr_formats::tokenizer::Tokenizer;

use crate::common::print_json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// GGUF file or cached model name
    pub model: String,
    /// The text to tokenize
    #[arg(long)]
    pub text: String,
    /// Print {"ids": [...]} on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let path = apr_engine::resolve_model(&a.model)?;
    let g = apr_formats::open_model(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let tok = Tokenizer::from_gguf(&g).context("cannot build the tokenizer")?;
    let ids = tok.encode(&a.text)?;
    if a.json {
        print_json(&serde_json::json!({ "ids": ids }))
    } else {
        for id in ids {
            let piece = String::from_utf8_lossy(tok.token_bytes(id)?).into_owned();
            println!("{id:>7} {piece:?}");
        }
        Ok(())
    }
}

//! `apr`: the command-line front end. Each subcommand is one file under cmd/ (clap args +
//! `run`); the logic lives in the library crates.

mod cmd;
mod common;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "apr",
    version,
    about = "Run, serve, evaluate and improve code LLMs from one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download from the Hugging Face Hub into the model cache (resume, hash check, progress)
    Pull(cmd::pull::Args),
    /// Architecture, parameters, tensor table, quant mix, tokenizer and chat template
    Inspect(cmd::inspect::Args),
    /// Token ids of a text (special tokens written in it are parsed; no BOS unless the model asks)
    Tokenize(cmd::tokenize::Args),
    /// Generate text from a prompt
    Run(cmd::run::Args),
    /// Interactive multi-turn chat with the model's own template
    Chat(cmd::chat::Args),
    /// llama-bench style speed: pp512 and tg128
    Bench(cmd::bench::Args),
    /// Integrity: shapes, NaN/Inf, tokenizer merges and round trip, chat template, metadata
    Check(cmd::check::Args),
    /// Merge models with mergekit's methods and YAML configurations
    Merge(cmd::merge::Args),
    /// Prune weights (magnitude, Wanda, SparseGPT) or whole decoder blocks
    Prune(cmd::prune::Args),
    /// Importance matrix from a calibration text (llama-imatrix's GGUF format)
    Imatrix(cmd::imatrix::Args),
    /// Quantize a GGUF to one of llama.cpp's file types (bit-compatible with llama-quantize)
    Quantize(cmd::quantize::Args),
    /// A Hugging Face directory (config.json, safetensors, tokenizer.json) as a GGUF file
    Import(cmd::import::Args),
    /// A model as a Hugging Face directory (--format safetensors) or a re-typed GGUF file
    Export(cmd::export::Args),
    /// Evaluations
    #[command(subcommand)]
    Eval(cmd::eval::EvalCommand),
}

fn main() {
    // `apr inspect m | head` should end quietly, as other Unix tools do, not panic on EPIPE.
    #[cfg(unix)]
    // SAFETY: resetting a signal disposition to its default at start-up, before any threads.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pull(a) => cmd::pull::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Tokenize(a) => cmd::tokenize::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Chat(a) => cmd::chat::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Merge(a) => cmd::merge::run(a),
        Command::Prune(a) => cmd::prune::run(a),
        Command::Imatrix(a) => cmd::imatrix::run(a),
        Command::Quantize(a) => cmd::quantize::run(a),
        Command::Import(a) => cmd::import::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Eval(c) => cmd::eval::run(c),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

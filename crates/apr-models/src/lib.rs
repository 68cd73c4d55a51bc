//! apr-models: decoder-only transformer architectures (qwen2, llama), weight-format agnostic.

pub mod act_stats;
pub mod arch;
pub mod config;
pub mod kv_cache;
pub mod linear;
pub mod transformer;

pub use act_stats::{ActEntry, ActivationStats};
pub use arch::{ArchSpec, RopeStyle, ARCHITECTURES};
pub use config::Config;
pub use kv_cache::{KvCache, KvType};
pub use linear::Linear;
pub use transformer::{Layer, Model, Scratch};

/// Errors from loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] apr_formats::GgufError),
    #[error("unknown architecture {0:?} (supported: {1})")]
    UnknownArch(String, String),
    #[error("tensor {name}: {msg}")]
    Tensor { name: String, msg: String },
    #[error("missing tensor {0}")]
    MissingTensor(String),
    #[error("bad model config: {0}")]
    Config(String),
    #[error("token id {id} out of range (vocabulary has {n_vocab})")]
    TokenOutOfRange { id: u32, n_vocab: usize },
    #[error("context full: position {pos} + {n} tokens exceeds the context of {ctx}")]
    ContextFull { pos: usize, n: usize, ctx: usize },
    #[error("batch: {0}")]
    Batch(String),
    #[error(transparent)]
    Quant(#[from] apr_core::quant::QuantError),
}

pub type Result<T> = std::result::Result<T, ModelError>;

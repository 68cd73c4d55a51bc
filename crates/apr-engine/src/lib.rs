//! apr-engine: model loading by path or cache name, sessions over the KV cache, the
//! generation loop with sampling and stop rules.

pub mod generate;
pub mod resolve;
pub mod sampling;

pub use generate::{log_prob, Engine, GenOptions, GenOutput, Session, StopReason};
pub use resolve::resolve_model;
pub use sampling::{Sampler, SamplerConfig};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] apr_formats::GgufError),
    #[error(transparent)]
    Hf(#[from] apr_formats::HfError),
    #[error(transparent)]
    Model(#[from] apr_models::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] apr_formats::tokenizer::TokenizerError),
    #[error(transparent)]
    Template(#[from] apr_formats::chat_template::TemplateError),
    #[error("model {name:?} not found: not a file, and not in the model cache {dir}")]
    ModelNotFound { name: String, dir: String },
    #[error("the prompt has {n} tokens but the context holds {ctx}; raise --ctx or shorten it")]
    PromptTooLong { n: usize, ctx: usize },
    #[error("the model has no chat template; use --raw")]
    NoTemplate,
    #[error("empty prompt: nothing to generate from")]
    EmptyPrompt,
    #[error("a session of another engine was passed to step_many")]
    ForeignSession,
}

pub type Result<T> = std::result::Result<T, EngineError>;

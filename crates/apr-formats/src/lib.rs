//! apr-formats: GGUF reading and writing, atomic file writes, the tokenizer built from GGUF metadata, chat templates.

pub mod atomic;
pub mod chat_template;
pub mod gguf;
pub mod gguf_writer;
pub mod provenance;
pub mod release;
pub mod tokenizer;

pub use atomic::{write_atomic, AtomicFile};
pub use chat_template::{ChatTemplate, Message, TemplateError};
pub use gguf::{Gguf, GgufError, TensorInfo, Value};
pub use gguf_writer::{GgufWriter, TensorSpec};
pub use provenance::Provenance;
pub use tokenizer::{StreamDecoder, TokenType, Tokenizer, TokenizerError};

//! apr-formats: GGUF reading, the tokenizer built from GGUF metadata, chat templates.

pub mod chat_template;
pub mod gguf;
pub mod tokenizer;

pub use chat_template::{ChatTemplate, Message, TemplateError};
pub use gguf::{Gguf, GgufError, TensorInfo, Value};
pub use tokenizer::{StreamDecoder, TokenType, Tokenizer, TokenizerError};

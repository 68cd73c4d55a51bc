//! apr-formats: GGUF reading, the tokenizer built from GGUF metadata, chat templates.

pub mod gguf;

pub use gguf::{Gguf, GgufError, TensorInfo, Value};

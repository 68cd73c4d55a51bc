//! apr-formats: GGUF reading and writing, safetensors and the Hugging Face directory files,
//! atomic file writes, the tokenizer built from GGUF metadata, chat templates.

pub mod atomic;
pub mod chat_template;
pub mod gguf;
pub mod gguf_writer;
pub mod hf_config;
pub mod hf_dir;
pub mod hf_names;
pub mod hf_tokenizer;
pub mod provenance;
pub mod release;
pub mod safetensors;
pub mod tokenizer;

pub use atomic::{write_atomic, AtomicFile};
pub use chat_template::{ChatTemplate, Message, TemplateError};
pub use gguf::{DerivedTensor, Gguf, GgufError, TensorInfo, Value};
pub use gguf_writer::{GgufWriter, TensorSpec};
pub use hf_config::{HfConfig, HfError};
pub use hf_dir::{is_hf_dir, open_model};
pub use provenance::Provenance;
pub use tokenizer::{StreamDecoder, TokenType, Tokenizer, TokenizerError};

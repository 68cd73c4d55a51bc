//! apr-eval: perplexity (llama-perplexity's method) and llama-bench style speed figures.

pub mod bench;
pub mod perplexity;

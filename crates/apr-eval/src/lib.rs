//! apr-eval: code benchmarks (HumanEval, MBPP and their EvalPlus versions: datasets, prompt
//! strategies, sandboxed execution, pass@k), perplexity (llama-perplexity's method) and
//! llama-bench style speed figures.

pub mod bench;
pub mod datasets;
pub mod extract;
pub mod harness;
pub mod judge;
pub mod passk;
pub mod perplexity;
pub mod prompts;
pub mod results;
pub mod sandbox;
pub mod visible;

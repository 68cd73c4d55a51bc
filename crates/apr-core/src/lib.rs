//! apr-core: ggml-compatible quantized block formats and the CPU kernels over them.

pub mod pool;
pub mod quant;

pub use quant::GgmlType;

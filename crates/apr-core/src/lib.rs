//! apr-core: ggml-compatible quantized block formats and the CPU kernels over them.

pub mod quant;

pub use quant::GgmlType;

//! apr-core: ggml-compatible quantized block formats and the CPU kernels over them.

pub mod hugebuf;
pub mod pool;
pub mod quant;
pub mod simd;

pub use quant::GgmlType;

//! apr-ops: the operations that make a new model file from existing ones (quantize, import and
//! export, imatrix, merge, prune), each one file behind its command's registry.

pub mod allocate;
pub mod calibrate;
pub mod check;
pub mod convert;
pub mod export;
pub mod gptq;
pub mod imatrix;
pub mod import;
pub mod merge;
pub mod mix;
pub mod prune;
pub mod quantize;
pub use allocate::Allocation;
pub use apr_core::quant::Weighting;
pub use imatrix::{Imatrix, ImatrixEntry, ImatrixError};
pub use mix::FileType;
pub use quantize::{quantize_file, QuantizeError, QuantizeOptions, QuantizeReport, TensorDone};

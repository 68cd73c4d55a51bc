//! apr-ops: the operations that make a new model file from existing ones (quantize, import and
//! export, imatrix; merge and prune later), each one file behind its command's registry.

pub mod convert;
pub mod export;
pub mod import;

//! Typed errors for the quant API: which op, which type, which length was wrong.

use super::GgmlType;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantError {
    /// The element count is not a whole number of `ty` blocks.
    #[error("{op}: {n} elements is not a whole number of {ty} blocks of {block}")]
    NotWholeBlocks {
        op: &'static str,
        ty: GgmlType,
        n: usize,
        block: usize,
    },
    /// A byte or element buffer has the wrong length for the request.
    #[error("{op}: {what} has length {got}, expected {expected} ({ty})")]
    Len {
        op: &'static str,
        ty: GgmlType,
        what: &'static str,
        got: usize,
        expected: usize,
    },
    /// The type cannot be used for this op (e.g. Q4_K as an activation type).
    #[error("{op}: type {ty} is not supported here")]
    Unsupported { op: &'static str, ty: GgmlType },
}

/// Bytes for `n` elements of `ty`, or the error naming `op`.
pub(crate) fn bytes_for(op: &'static str, ty: GgmlType, n: usize) -> Result<usize, QuantError> {
    ty.bytes_for(n).ok_or(QuantError::NotWholeBlocks {
        op,
        ty,
        n,
        block: ty.block_elems(),
    })
}

/// Checks `got == expected`, naming the buffer in the error.
pub(crate) fn check_len(
    op: &'static str,
    ty: GgmlType,
    what: &'static str,
    got: usize,
    expected: usize,
) -> Result<(), QuantError> {
    if got == expected {
        Ok(())
    } else {
        Err(QuantError::Len {
            op,
            ty,
            what,
            got,
            expected,
        })
    }
}

//! ggml tensor types: block layouts (bit-compatible with ggml), dequantization and dot kernels.
//! Reference: ggml/src/ggml-common.h and ggml-quants.c in llama.cpp.

use std::fmt;

pub mod blocks;
mod dequant;
mod dot;
#[cfg(target_arch = "x86_64")]
mod dot_avx2;
#[cfg(target_arch = "x86_64")]
mod dot_avx512;
pub mod dot_ref;
#[cfg(test)]
mod dot_tests;
mod encode;
mod encode_k;
mod encode_search;
mod error;
mod gemm;
#[cfg(target_arch = "x86_64")]
mod gemm_avx2;
#[cfg(test)]
mod gemm_tests;
pub mod grid;
pub mod packed;
#[cfg(target_arch = "x86_64")]
mod packed_avx512;
mod quantize;

pub use dequant::dequantize;
pub use dot::{
    force_kernel, force_scalar, gemv, kernel_name, reference_fn, vec_dot, vec_dot_checked,
    vec_dot_multi, vec_dot_type, RefFn, MAX_COLS,
};
pub use encode::{
    can_encode, encode_block, quantize_rows, quantize_rows_with, requires_imatrix, uses_imatrix,
    Weighting,
};
pub use error::QuantError;
pub use gemm::{gemm, gemm_has_kernel};
pub use packed::PackedMatrix;
pub use quantize::{
    quantize_activation, quantize_row_q8_0, quantize_row_q8_0_act, quantize_row_q8_1,
    quantize_row_q8_k,
};

/// Elements in one k-quant super-block.
pub const QK_K: usize = 256;
/// Elements in one legacy (Q4_0 .. Q8_0) block.
pub const QK: usize = 32;

/// The ggml tensor types that a GGUF file may carry (ids as in ggml's `ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    BF16,
}

/// One row per type: (type, ggml id, name, elements per block, bytes per block).
const TYPES: &[(GgmlType, u32, &str, usize, usize)] = &[
    (GgmlType::F32, 0, "F32", 1, 4),
    (GgmlType::F16, 1, "F16", 1, 2),
    (GgmlType::Q4_0, 2, "Q4_0", QK, 2 + QK / 2),
    (GgmlType::Q4_1, 3, "Q4_1", QK, 4 + QK / 2),
    (GgmlType::Q5_0, 6, "Q5_0", QK, 2 + 4 + QK / 2),
    (GgmlType::Q5_1, 7, "Q5_1", QK, 4 + 4 + QK / 2),
    (GgmlType::Q8_0, 8, "Q8_0", QK, 2 + QK),
    (GgmlType::Q8_1, 9, "Q8_1", QK, 4 + QK),
    (GgmlType::Q2K, 10, "Q2_K", QK_K, QK_K / 16 + QK_K / 4 + 4),
    (
        GgmlType::Q3K,
        11,
        "Q3_K",
        QK_K,
        QK_K / 8 + QK_K / 4 + 12 + 2,
    ),
    (GgmlType::Q4K, 12, "Q4_K", QK_K, 4 + 12 + QK_K / 2),
    (
        GgmlType::Q5K,
        13,
        "Q5_K",
        QK_K,
        4 + 12 + QK_K / 8 + QK_K / 2,
    ),
    (
        GgmlType::Q6K,
        14,
        "Q6_K",
        QK_K,
        QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
    ),
    (GgmlType::Q8K, 15, "Q8_K", QK_K, 4 + QK_K + 2 * QK_K / 16),
    (GgmlType::BF16, 30, "BF16", 1, 2),
];

impl GgmlType {
    fn row(self) -> &'static (GgmlType, u32, &'static str, usize, usize) {
        TYPES
            .iter()
            .find(|r| r.0 == self)
            .expect("every variant has a row")
    }
    /// The type with ggml id `id`, if we support it.
    pub fn from_id(id: u32) -> Option<Self> {
        TYPES.iter().find(|r| r.1 == id).map(|r| r.0)
    }
    /// The type named `name` (case-insensitive, `q4_k` = `Q4_K`).
    pub fn from_name(name: &str) -> Option<Self> {
        TYPES
            .iter()
            .find(|r| r.2.eq_ignore_ascii_case(name))
            .map(|r| r.0)
    }
    pub fn id(self) -> u32 {
        self.row().1
    }
    pub fn name(self) -> &'static str {
        self.row().2
    }
    /// Elements per block.
    pub fn block_elems(self) -> usize {
        self.row().3
    }
    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        self.row().4
    }
    /// Bytes taken by `n` elements, or None when `n` is not a whole number of blocks.
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        n.is_multiple_of(self.block_elems())
            .then(|| n / self.block_elems() * self.block_bytes())
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_ggml() {
        // Sizes from ggml-common.h static asserts.
        assert_eq!(GgmlType::Q4K.block_bytes(), 144);
        assert_eq!(GgmlType::Q5K.block_bytes(), 176);
        assert_eq!(GgmlType::Q6K.block_bytes(), 210);
        assert_eq!(GgmlType::Q3K.block_bytes(), 110);
        assert_eq!(GgmlType::Q2K.block_bytes(), 84);
        assert_eq!(GgmlType::Q8K.block_bytes(), 292);
        assert_eq!(GgmlType::Q5_0.block_bytes(), 22);
        assert_eq!(GgmlType::Q8_0.block_bytes(), 34);
        assert_eq!(GgmlType::from_name("q4_k"), Some(GgmlType::Q4K));
        assert_eq!(GgmlType::from_id(30), Some(GgmlType::BF16));
    }
}

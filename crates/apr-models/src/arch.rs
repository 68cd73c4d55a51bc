//! The architecture registry: what differs between the supported decoder families.

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i+1): llama as stored in GGUF (q/k rows permuted at conversion).
    Normal,
    /// First half with second half (i, i + d/2): GPT-NeoX style, used by qwen2.
    Neox,
}

/// What one architecture needs from the shared decoder.
#[derive(Debug, Clone, Copy)]
pub struct ArchSpec {
    /// `general.architecture` in GGUF.
    pub name: &'static str,
    pub rope: RopeStyle,
    /// q/k/v projections carry a bias.
    pub qkv_bias: bool,
}

/// One line per architecture.
pub const ARCHITECTURES: &[ArchSpec] = &[
    ArchSpec {
        name: "qwen2",
        rope: RopeStyle::Neox,
        qkv_bias: true,
    },
    ArchSpec {
        name: "llama",
        rope: RopeStyle::Normal,
        qkv_bias: false,
    },
];

pub fn lookup(name: &str) -> Option<&'static ArchSpec> {
    ARCHITECTURES.iter().find(|a| a.name == name)
}

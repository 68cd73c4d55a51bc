//! Per-tensor type choice of a quantization mix, as llama.cpp's `llama_tensor_get_type`
//! makes it: which tensors stay as they are (norms, 1-D), the output / token embedding type,
//! the _S/_M/_L bumps, and the fallback when a row is not a whole number of blocks.
//! Reference: src/llama-quant.cpp in llama.cpp.

use apr_core::GgmlType;

/// One file type (llama.cpp's `llama_ftype`): name, id written to `general.file_type`, and
/// the default tensor type. The registry of what `apr quantize --type` accepts.
pub const FILE_TYPES: &[(&str, u32, GgmlType)] = &[
    ("F32", 0, GgmlType::F32),
    ("F16", 1, GgmlType::F16),
    ("BF16", 32, GgmlType::BF16),
    ("Q8_0", 7, GgmlType::Q8_0),
    ("Q4_0", 2, GgmlType::Q4_0),
    ("Q4_1", 3, GgmlType::Q4_1),
    ("Q5_0", 8, GgmlType::Q5_0),
    ("Q5_1", 9, GgmlType::Q5_1),
    ("Q2_K", 10, GgmlType::Q2K),
    ("Q3_K_S", 11, GgmlType::Q3K),
    ("Q3_K_M", 12, GgmlType::Q3K),
    ("Q3_K_L", 13, GgmlType::Q3K),
    ("Q4_K_S", 14, GgmlType::Q4K),
    ("Q4_K_M", 15, GgmlType::Q4K),
    ("Q5_K_S", 16, GgmlType::Q5K),
    ("Q5_K_M", 17, GgmlType::Q5K),
    ("Q6_K", 18, GgmlType::Q6K),
];

/// A file type of [`FILE_TYPES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileType {
    pub name: &'static str,
    pub id: u32,
    pub default: GgmlType,
}

impl FileType {
    /// The file type named `name` (case-insensitive: `q4_k_m` = `Q4_K_M`).
    pub fn from_name(name: &str) -> Option<Self> {
        FILE_TYPES
            .iter()
            .find(|r| r.0.eq_ignore_ascii_case(name))
            .map(|&(name, id, default)| FileType { name, id, default })
    }

    /// The names, for error messages and help.
    pub fn names() -> Vec<&'static str> {
        FILE_TYPES.iter().map(|r| r.0).collect()
    }

    fn is(&self, name: &str) -> bool {
        self.name == name
    }
}

/// The model facts the mix rules read (from the GGUF metadata).
#[derive(Debug, Clone, Default)]
pub struct ModelFacts {
    pub arch: String,
    pub n_layer: usize,
    /// n_head / n_head_kv of the first layer.
    pub n_gqa: usize,
    pub n_expert: usize,
}

impl ModelFacts {
    fn falcon(&self) -> bool {
        self.arch == "falcon"
    }
    /// llama.cpp's LLM_TYPE_70B (the llama architecture with 80 layers).
    fn is_70b(&self) -> bool {
        self.arch == "llama" && self.n_layer == 80
    }
}

/// A tensor as the mix sees it: name, ggml dims and current type.
#[derive(Debug, Clone)]
pub struct TensorDesc {
    pub name: String,
    pub dims: Vec<u64>,
    pub dtype: GgmlType,
}

/// Broad tensor roles (llama.cpp's tensor_category).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnQkv,
    AttnKvB,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

fn category(name: &str) -> Category {
    use Category::*;
    if name == "output.weight" {
        return Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return TokenEmbd;
    }
    // First match wins, in llama.cpp's order.
    const BY_SUBSTRING: &[(&str, Category)] = &[
        ("attn_qkv.weight", AttnQkv),
        ("attn_kv_b.weight", AttnKvB),
        ("attn_v.weight", AttnV),
        ("attn_k.weight", AttnK),
        ("attn_q.weight", AttnQ),
        ("attn_output.weight", AttnOutput),
        ("ffn_up", FfnUp),
        ("ffn_gate", FfnGate),
        ("ffn_down", FfnDown),
    ];
    BY_SUBSTRING
        .iter()
        .find(|(s, _)| name.contains(s))
        .map(|r| r.1)
        .unwrap_or(Other)
}

fn is_attn_v_like(c: Category) -> bool {
    matches!(c, Category::AttnV | Category::AttnQkv | Category::AttnKvB)
}

/// Number of dimensions as ggml counts them (trailing 1s do not count).
fn n_dims(dims: &[u64]) -> usize {
    dims.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// Name parts of tensors llama.cpp never quantizes (small, or used as lookup tables).
const KEEP_SUBSTRINGS: &[&str] = &[
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
];

/// Whether llama.cpp would quantize this tensor at all (2-D or more, a `weight`, not a norm...).
pub fn allows_quantization(t: &TensorDesc) -> bool {
    let name = t.name.as_str();
    n_dims(&t.dims) >= 2
        && name.ends_with("weight")
        && name != "position_embd.weight"
        && name != "token_types.weight"
        && !KEEP_SUBSTRINGS.iter().any(|s| name.contains(s))
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third between.
fn use_more_bits(i_layer: usize, n_layers: usize) -> bool {
    let (i, n) = (i_layer as i64, n_layers as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The order llama.cpp walks tensors in (its weights map): by layer number (tensors outside
/// `blk.N.` first), then by name. The mix counters depend on it.
pub fn llama_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn layer(s: &str) -> i64 {
        s.strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(-1)
    }
    layer(a).cmp(&layer(b)).then_with(|| a.cmp(b))
}

/// The type chosen for each tensor and how many needed a fallback type.
#[derive(Debug, Clone)]
pub struct Plan {
    pub types: Vec<GgmlType>,
    pub n_fallback: usize,
}

/// Chooses the type of every tensor of `tensors` (already in [`llama_order`]) for `ftype`.
pub fn plan(
    facts: &ModelFacts,
    tensors: &[TensorDesc],
    ftype: FileType,
    has_imatrix: bool,
) -> Plan {
    let mut st = State {
        facts,
        ftype,
        has_imatrix,
        tied: !tensors.iter().any(|t| t.name == "output.weight"),
        n_attention_wv: tensors
            .iter()
            .filter(|t| is_attn_v_like(category(&t.name)))
            .count(),
        i_attention_wv: 0,
        i_ffn_down: 0,
        n_fallback: 0,
    };
    let types = tensors.iter().map(|t| st.tensor_type(t)).collect();
    Plan {
        types,
        n_fallback: st.n_fallback,
    }
}

struct State<'a> {
    facts: &'a ModelFacts,
    ftype: FileType,
    has_imatrix: bool,
    tied: bool,
    n_attention_wv: usize,
    i_attention_wv: usize,
    i_ffn_down: usize,
    n_fallback: usize,
}

fn is_quantized(ty: GgmlType) -> bool {
    !matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

impl State<'_> {
    fn tensor_type(&mut self, t: &TensorDesc) -> GgmlType {
        if !allows_quantization(t) {
            return t.dtype;
        }
        let default = self.ftype.default;
        if !is_quantized(default) {
            return default;
        }
        let ty = self.mix_type(t, default);
        self.fallback(t, ty)
    }

    /// The layer index of an ffn tensor: the counter, or the name's for a multi-expert model.
    fn layer_of(&self, name: &str, counter: usize) -> usize {
        if self.facts.n_expert > 1 {
            if let Some(i) = name
                .strip_prefix("blk.")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse().ok())
            {
                return i;
            }
        }
        counter
    }

    fn mix_type(&mut self, t: &TensorDesc, mut ty: GgmlType) -> GgmlType {
        use GgmlType::*;
        let f = self.ftype;
        let m = self.facts;
        let n_layer = m.n_layer;
        let cat = category(&t.name);
        if cat == Category::Output || (self.tied && cat == Category::TokenEmbd) {
            let nx = t.dims[0] as usize;
            if m.falcon() || !nx.is_multiple_of(ty.block_elems()) {
                ty = Q8_0;
            } else if ty != Q8_0 {
                ty = Q6K;
            }
        } else if cat == Category::TokenEmbd {
            // Only the i-quant and ternary mixes change an untied token embedding.
        } else if is_attn_v_like(cat) {
            let (i, n) = (self.i_attention_wv, self.n_attention_wv);
            if f.is("Q2_K") {
                ty = if m.n_gqa >= 4 { Q4K } else { Q3K };
            } else if f.is("Q3_K_M") {
                ty = if i < 2 { Q5K } else { Q4K };
            } else if f.is("Q3_K_L") {
                ty = Q5K;
            } else if (f.is("Q4_K_M") || f.is("Q5_K_M")) && use_more_bits(i, n) {
                ty = Q6K;
            } else if f.is("Q4_K_S") && i < 4 {
                ty = Q5K;
            }
            if m.is_70b() && (ty == Q3K || ty == Q4K) {
                ty = Q5K;
            }
            if m.n_expert == 8 {
                ty = Q8_0;
            }
            self.i_attention_wv += 1;
        } else if cat == Category::AttnK {
            if m.n_expert == 8 {
                ty = Q8_0;
            }
        } else if cat == Category::FfnDown {
            let i = self.layer_of(&t.name, self.i_ffn_down);
            if f.is("Q2_K") {
                ty = Q3K;
            } else if f.is("Q3_K_M") {
                ty = if i < n_layer / 16 {
                    Q5K
                } else if !m.falcon() || use_more_bits(i, n_layer) {
                    Q4K
                } else {
                    Q3K
                };
            } else if f.is("Q3_K_L") {
                ty = if m.falcon() { Q4K } else { Q5K };
            } else if f.is("Q4_K_M") {
                if m.falcon() {
                    ty = if i < n_layer / 16 {
                        Q6K
                    } else if use_more_bits(i, n_layer) {
                        Q5K
                    } else {
                        Q4K
                    };
                } else if use_more_bits(i, n_layer) {
                    ty = Q6K;
                }
            } else if f.is("Q5_K_M") && use_more_bits(i, n_layer) {
                ty = Q6K;
            } else if f.is("Q4_K_S") && !m.falcon() && i < n_layer / 8 {
                ty = Q5K;
            } else if (f.is("Q4_0") || f.is("Q5_0")) && self.has_imatrix && i < n_layer / 8 {
                // llama.cpp guards the first ffn_down layers of Q4_0/Q5_0 when it has an imatrix.
                ty = if f.is("Q4_0") { Q4_1 } else { Q5_1 };
            }
            self.i_ffn_down += 1;
        } else if cat == Category::AttnOutput {
            if !m.falcon() {
                if m.n_expert == 8 {
                    if ["Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M"].contains(&f.name) {
                        ty = Q5K;
                    }
                } else if f.is("Q2_K") {
                    ty = Q3K;
                } else if f.is("Q3_K_M") {
                    ty = Q4K;
                } else if f.is("Q3_K_L") {
                    ty = Q5K;
                }
            } else if f.is("Q3_K_L") {
                ty = Q4K;
            }
        } else if cat == Category::AttnQkv {
            if f.is("Q3_K_M") || f.is("Q3_K_L") {
                ty = Q4K;
            } else if f.is("Q4_K_M") {
                ty = Q5K;
            } else if f.is("Q5_K_M") {
                ty = Q6K;
            }
        }
        ty
    }

    /// llama.cpp's `tensor_type_fallback`: a row that is not whole blocks of the chosen type
    /// takes a 32-block type of about the same size, or F16 if even that does not fit.
    fn fallback(&mut self, t: &TensorDesc, ty: GgmlType) -> GgmlType {
        use GgmlType::*;
        let ncols = t.dims[0] as usize;
        if ncols.is_multiple_of(ty.block_elems()) {
            return ty;
        }
        self.n_fallback += 1;
        let mut out = match ty {
            Q2K | Q3K => Q4_0,
            Q4K => Q5_0,
            Q5K => Q5_1,
            Q6K => Q8_0,
            other => other,
        };
        if !ncols.is_multiple_of(out.block_elems()) {
            out = F16;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_unknown_is_none() {
        assert_eq!(FileType::from_name("q4_k_m").unwrap().id, 15);
        assert_eq!(FileType::from_name("Bf16").unwrap().default, GgmlType::BF16);
        assert!(FileType::from_name("q4_k_x").is_none());
    }

    #[test]
    fn order_is_by_layer_number_then_name() {
        let mut v = vec![
            "blk.10.attn_q.weight",
            "blk.2.ffn_down.weight",
            "output_norm.weight",
            "blk.2.attn_k.weight",
            "token_embd.weight",
        ];
        v.sort_by(|a, b| llama_order(a, b));
        assert_eq!(
            v,
            [
                "output_norm.weight",
                "token_embd.weight",
                "blk.2.attn_k.weight",
                "blk.2.ffn_down.weight",
                "blk.10.attn_q.weight"
            ]
        );
    }

    #[test]
    fn use_more_bits_matches_the_rule_for_24_layers() {
        let more: Vec<usize> = (0..24).filter(|&i| use_more_bits(i, 24)).collect();
        assert_eq!(more, [0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23]);
    }
}

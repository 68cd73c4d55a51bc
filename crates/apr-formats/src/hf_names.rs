//! Tensor names between Hugging Face checkpoints and GGUF (llama.cpp's `gguf-py` tensor map for
//! qwen2 and llama), both ways, and llama's q/k rotary row permutation.
//!
//! The table lives in apr-formats, not apr-ops, because loading an HF directory as a model
//! (below apr-models) needs it as much as `apr import` / `apr export` do.

/// One registry table: (HF name with `{}` for the layer, GGUF name with `{}`). Adding a tensor
/// kind is one line.
pub const NAME_MAP: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
    (
        "model.layers.{}.input_layernorm.weight",
        "blk.{}.attn_norm.weight",
    ),
    (
        "model.layers.{}.self_attn.q_proj.weight",
        "blk.{}.attn_q.weight",
    ),
    (
        "model.layers.{}.self_attn.q_proj.bias",
        "blk.{}.attn_q.bias",
    ),
    (
        "model.layers.{}.self_attn.k_proj.weight",
        "blk.{}.attn_k.weight",
    ),
    (
        "model.layers.{}.self_attn.k_proj.bias",
        "blk.{}.attn_k.bias",
    ),
    (
        "model.layers.{}.self_attn.v_proj.weight",
        "blk.{}.attn_v.weight",
    ),
    (
        "model.layers.{}.self_attn.v_proj.bias",
        "blk.{}.attn_v.bias",
    ),
    (
        "model.layers.{}.self_attn.o_proj.weight",
        "blk.{}.attn_output.weight",
    ),
    (
        "model.layers.{}.post_attention_layernorm.weight",
        "blk.{}.ffn_norm.weight",
    ),
    (
        "model.layers.{}.mlp.gate_proj.weight",
        "blk.{}.ffn_gate.weight",
    ),
    ("model.layers.{}.mlp.up_proj.weight", "blk.{}.ffn_up.weight"),
    (
        "model.layers.{}.mlp.down_proj.weight",
        "blk.{}.ffn_down.weight",
    ),
];

/// HF tensors that carry no weights of their own (rotary caches some checkpoints save).
const IGNORED_SUFFIXES: &[&str] = &["rotary_emb.inv_freq"];

/// Matches `name` against `pattern` (one `{}` standing for a layer number); the number if so.
fn match_pattern(pattern: &str, name: &str) -> Option<Option<u32>> {
    match pattern.split_once("{}") {
        None => (pattern == name).then_some(None),
        Some((pre, post)) => {
            let mid = name.strip_prefix(pre)?.strip_suffix(post)?;
            if mid.is_empty() || !mid.bytes().all(|b| b.is_ascii_digit()) || mid.len() > 6 {
                return None;
            }
            mid.parse().ok().map(Some)
        }
    }
}

fn translate(name: &str, from_hf: bool) -> Option<String> {
    NAME_MAP.iter().find_map(|&(hf, gg)| {
        let (from, to) = if from_hf { (hf, gg) } else { (gg, hf) };
        match match_pattern(from, name)? {
            None => Some(to.to_string()),
            Some(n) => Some(to.replace("{}", &n.to_string())),
        }
    })
}

/// The GGUF name of an HF tensor.
pub fn hf_to_gguf(name: &str) -> Option<String> {
    translate(name, true)
}

/// The HF name of a GGUF tensor.
pub fn gguf_to_hf(name: &str) -> Option<String> {
    translate(name, false)
}

/// Whether an HF tensor is one to skip (no GGUF counterpart by design).
pub fn is_ignored(name: &str) -> bool {
    IGNORED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Which rotary permutation a tensor needs between HF and GGUF llama: `Some(heads)` for q
/// (`n_head`) and k (`n_kv_head`) weights and biases, else None.
pub fn rope_permute_heads(gguf_name: &str, n_head: usize, n_kv_head: usize) -> Option<usize> {
    let kind = gguf_name.strip_prefix("blk.")?.split_once('.')?.1;
    match kind {
        "attn_q.weight" | "attn_q.bias" => Some(n_head),
        "attn_k.weight" | "attn_k.bias" => Some(n_kv_head),
        _ => None,
    }
}

/// llama's q/k row order: HF keeps each head's rotary pairs as (i, i + d/2), GGUF as
/// (2i, 2i + 1). Output row `h*d + 2i + j` is input row `h*d + j*d/2 + i` (HF -> GGUF);
/// `inverse` maps back. Rows are `row_bytes` each; `src` is `heads * d` rows.
pub fn permute_rows(src: &[u8], heads: usize, row_bytes: usize, inverse: bool) -> Vec<u8> {
    let rows = src.len() / row_bytes.max(1);
    let d = rows / heads.max(1);
    let half = d / 2;
    let mut out = vec![0u8; src.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let gg = h * d + 2 * i + j;
                let hf = h * d + j * half + i;
                let (to, from) = if inverse { (hf, gg) } else { (gg, hf) };
                out[to * row_bytes..(to + 1) * row_bytes]
                    .copy_from_slice(&src[from * row_bytes..(from + 1) * row_bytes]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        let pairs = [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("lm_head.weight", "output.weight"),
            (
                "model.layers.17.self_attn.q_proj.weight",
                "blk.17.attn_q.weight",
            ),
            ("model.layers.0.self_attn.k_proj.bias", "blk.0.attn_k.bias"),
            (
                "model.layers.3.mlp.down_proj.weight",
                "blk.3.ffn_down.weight",
            ),
            (
                "model.layers.23.post_attention_layernorm.weight",
                "blk.23.ffn_norm.weight",
            ),
        ];
        for (hf, gg) in pairs {
            assert_eq!(hf_to_gguf(hf).as_deref(), Some(gg));
            assert_eq!(gguf_to_hf(gg).as_deref(), Some(hf));
        }
        for bad in [
            "model.layers.x.mlp.up_proj.weight",
            "model.layers..mlp.up_proj.weight",
            "model.layers.1.mlp.up_proj.weight.extra",
            "vision_tower.weight",
        ] {
            assert_eq!(hf_to_gguf(bad), None, "{bad}");
        }
        assert_eq!(gguf_to_hf("blk.1.attn_q_norm.weight"), None);
        assert!(is_ignored("model.layers.0.self_attn.rotary_emb.inv_freq"));
    }

    #[test]
    fn permutation_pairs_halves_and_inverts() {
        // 2 heads of d = 4, one byte per row: HF rows [h0: a0 a1 b0 b1][h1: ...].
        let src: Vec<u8> = (0..8).collect();
        let p = permute_rows(&src, 2, 1, false);
        // GGUF pairs (2i, 2i+1) = (HF i, HF i + 2).
        assert_eq!(p, vec![0, 2, 1, 3, 4, 6, 5, 7]);
        assert_eq!(permute_rows(&p, 2, 1, true), src);
        let wide: Vec<u8> = (0..48).collect(); // 12 rows of 4 bytes, 1 head of d = 12
        assert_eq!(
            permute_rows(&permute_rows(&wide, 1, 4, false), 1, 4, true),
            wide
        );
        assert_eq!(rope_permute_heads("blk.2.attn_k.weight", 32, 8), Some(8));
        assert_eq!(rope_permute_heads("blk.2.attn_v.weight", 32, 8), None);
    }
}

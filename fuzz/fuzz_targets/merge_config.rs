//! Fuzz target: mergekit YAML configurations. Parsing and validation must return a config or an
//! error (never panic or hang), and a parsed config must answer every parameter lookup.
#![no_main]

use apr_ops::merge::config::{layer_t, MergeConfig};
use libfuzzer_sys::fuzz_target;

/// Tensor names the lookups try (filters match substrings of these).
const NAMES: &[&str] = &[
    "model.embed_tokens.weight",
    "model.layers.3.self_attn.q_proj.weight",
    "model.layers.3.mlp.down_proj.weight",
    "lm_head.weight",
];
const PARAMS: &[&str] = &["weight", "density", "gamma", "epsilon", "t", "normalize", "lambda"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let cfg = match MergeConfig::from_yaml(text) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let models = cfg.referenced_models();
    for n_layers in [1usize, 4] {
        let Ok(slices) = cfg.output_slices(Some(n_layers)) else { continue };
        for s in &slices {
            let n = s.layers().min(64);
            for idx in 0..n.max(1) {
                let t = layer_t(idx, n);
                for name in NAMES {
                    for p in PARAMS {
                        let _ = cfg.parameter(s, None, p, name, t);
                        for m in &models {
                            let _ = cfg.parameter(s, Some(m), p, name, t);
                        }
                    }
                }
            }
        }
    }
});

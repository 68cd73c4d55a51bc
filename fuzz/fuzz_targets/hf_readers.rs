//! Fuzz target: the Hugging Face side's readers on arbitrary bytes. The first byte picks one:
//! a safetensors header (`parse_header`), or a config.json (`HfConfig::from_json`, then the
//! GGUF keys and the config.json it would write back). Each must return a value or an error,
//! never panic, hang or allocate without bound; a header that parses must describe tensors
//! inside the buffer, not overlapping, each as long as its shape and dtype say.
#![no_main]

use std::path::Path;

use apr_formats::safetensors::parse_header;
use apr_formats::HfConfig;
use libfuzzer_sys::fuzz_target;

fn elem_bytes(dtype: &str) -> Option<u128> {
    // Every dtype of the safetensors format (the reader accepts them all; only the float
    // ones load as weights).
    match dtype {
        "F64" | "I64" | "U64" => Some(8),
        "F32" | "I32" | "U32" => Some(4),
        "F16" | "BF16" | "I16" | "U16" => Some(2),
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => Some(1),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let path = Path::new("fuzz-input");
    if which % 2 == 0 {
        let (mut tensors, meta) = match parse_header(rest, path) {
            Ok(x) => x,
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        };
        let _ = format!("{meta:?}");
        tensors.sort_by_key(|t| (t.start, t.end));
        let mut prev_end = 0;
        for t in &tensors {
            assert!(t.start <= t.end && t.end <= rest.len(), "{t:?} outside {}", rest.len());
            assert!(t.start >= prev_end || t.start == t.end, "{t:?} overlaps the previous tensor");
            prev_end = prev_end.max(t.end);
            let numel: u128 = t.shape.iter().map(|&d| d as u128).product();
            let size = elem_bytes(&t.dtype).expect("parsed tensors have a known dtype");
            assert_eq!((t.end - t.start) as u128, numel * size, "{t:?}");
        }
    } else {
        let Ok(j) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
        match HfConfig::from_json(&j, None, path) {
            Ok(c) => {
                let _ = c.gguf_kv();
                let _ = c.to_json();
                let _ = c.generation_json();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});

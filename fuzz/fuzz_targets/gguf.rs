//! Fuzz target: `Gguf::from_bytes` on arbitrary bytes, then every accessor on what parsed.
//! It must return an error or a `Gguf` whose every value, tensor slice and dequantization
//! works without a panic, a hang or an unbounded allocation.
#![no_main]

use apr_core::quant::dequantize;
use apr_formats::gguf::{Gguf, Value};
use libfuzzer_sys::fuzz_target;

/// Tensors up to this many data bytes are dequantized (bigger ones only sliced).
const MAX_DEQUANT_BYTES: u64 = 64 * 1024;

/// Every accessor of one value, recursing into arrays; checks they agree with each other.
fn walk(v: &Value) {
    let (u, i, f) = (v.as_u64(), v.as_i64(), v.as_f64());
    if let (Some(u), Some(i)) = (u, i) {
        assert_eq!(u as i128, i as i128, "as_u64 and as_i64 disagree on {v:?}");
    }
    if i.is_some() || u.is_some() {
        assert!(f.is_some(), "integer {v:?} has no as_f64");
    }
    let _ = (v.as_str(), v.as_bool(), v.type_name());
    let _ = format!("{v:?}");
    if let Some(items) = v.as_array() {
        items.iter().for_each(walk);
    }
}

fuzz_target!(|data: &[u8]| {
    let g = match Gguf::from_bytes(data.to_vec()) {
        Ok(g) => g,
        Err(e) => {
            // Error messages format arbitrary keys and values: they must not panic either.
            let _ = e.to_string();
            return;
        }
    };
    assert!(g.version == 2 || g.version == 3);
    assert!(g.alignment.is_power_of_two());
    assert_eq!(g.data_offset % g.alignment, 0);
    let _ = format!("{g:?}");
    let _ = g.architecture();

    for (key, v) in &g.metadata {
        walk(v);
        // By address: a NaN value is not equal to itself.
        assert!(g.get(key).is_some_and(|got| std::ptr::eq(got, v)));
        let _ = g.get_str(key).map_err(|e| e.to_string());
        let _ = g.get_u64(key).map_err(|e| e.to_string());
        let _ = g.get_f64(key).map_err(|e| e.to_string());
        let _ = g.get_str_array(key).map_err(|e| e.to_string());
        let _ = g.get_i64_array(key).map_err(|e| e.to_string());
    }

    let len = g.raw_bytes().len() as u64;
    for t in &g.tensors {
        assert!(t.offset >= g.data_offset && t.offset.saturating_add(t.n_bytes) <= len);
        assert!(!t.dims.is_empty() && t.dims.len() <= 4);
        let data = g.tensor_data(t);
        assert_eq!(data.len() as u64, t.n_bytes);
        let n = t.n_elements();
        assert_eq!(
            t.dtype.bytes_for(n as usize),
            Some(data.len()),
            "tensor {}",
            t.name
        );
        if t.n_bytes <= MAX_DEQUANT_BYTES {
            let mut out = vec![0f32; n as usize];
            let r = dequantize(t.dtype, data, &mut out);
            assert!(r.is_ok(), "tensor {}: {:?}", t.name, r);
        }
    }
});

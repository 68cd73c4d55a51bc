//! Tokenizer construction from tiny hand-made GGUF metadata: pre-tokenizer table, BOS,
//! special tokens, and clear errors on bad metadata. No model files needed.

use apr_formats::gguf::write::to_bytes;
use apr_formats::{Gguf, Tokenizer, TokenizerError, Value};

fn strs(v: &[&str]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect())
}

/// A vocabulary of single bytes-level chars, a few merges and two special tokens.
fn tiny(pre: &str, extra: Vec<(&'static str, Value)>) -> Gguf {
    let tokens = [
        "a",
        "b",
        "1",
        "2",
        "3",
        "Ġ",
        "ab",
        "Ġab",
        "12",
        "123",
        "<|bos|>",
        "<|eot_id|>",
        "Ã",
        "©",
    ];
    let types: Vec<Value> = tokens
        .iter()
        .map(|t| Value::I32(if t.starts_with("<|") { 3 } else { 1 }))
        .collect();
    let mut md = vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String(pre.into())),
        ("tokenizer.ggml.tokens", strs(&tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        (
            "tokenizer.ggml.merges",
            strs(&["a b", "Ġ ab", "1 2", "12 3"]),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(10)),
    ];
    md.extend(extra);
    Gguf::from_bytes(to_bytes(&md, &[])).unwrap()
}

#[test]
fn qwen2_splits_digits_one_by_one_llama3_in_threes() {
    let q = Tokenizer::from_gguf(&tiny("qwen2", vec![])).unwrap();
    assert_eq!(q.encode("ab ab123").unwrap(), vec![6, 7, 2, 3, 4]);
    assert!(!q.add_bos());
    let l = Tokenizer::from_gguf(&tiny("llama-bpe", vec![])).unwrap();
    // Llama 3 adds BOS by default and keeps up to three digits together.
    assert!(l.add_bos());
    assert_eq!(l.encode("ab ab123").unwrap(), vec![10, 6, 7, 9]);
    assert_eq!(l.encode_raw("<|eot_id|>ab").unwrap(), vec![11, 6]);
    assert!(l.is_eog(11) && l.is_special(11));
}

#[test]
fn add_bos_key_overrides_the_default() {
    let t = tiny(
        "llama3",
        vec![("tokenizer.ggml.add_bos_token", Value::Bool(false))],
    );
    let t = Tokenizer::from_gguf(&t).unwrap();
    assert_eq!(t.encode("ab").unwrap(), vec![6]);
}

#[test]
fn byte_level_tokens_decode_to_bytes() {
    let t = Tokenizer::from_gguf(&tiny("qwen2", vec![])).unwrap();
    // "é" is bytes C3 A9, which byte-level writes as "Ã" "©".
    assert_eq!(t.encode("é").unwrap(), vec![12, 13]);
    assert_eq!(t.token_bytes(12).unwrap(), &[0xC3]);
    assert_eq!(t.decode(&[12, 13, 5, 10]).unwrap(), "é <|bos|>");
    assert_eq!(t.decode(&[12]).unwrap(), "\u{FFFD}");
}

#[test]
fn bad_metadata_gives_clear_errors() {
    let err = |md: Vec<(&str, Value)>| {
        Tokenizer::from_gguf(&Gguf::from_bytes(to_bytes(&md, &[])).unwrap()).unwrap_err()
    };
    let e = err(vec![]);
    assert!(e.to_string().contains("tokenizer.ggml.model"), "{e}");
    let e = err(vec![(
        "tokenizer.ggml.model",
        Value::String("llama".into()),
    )]);
    assert!(matches!(e, TokenizerError::UnsupportedModel(_)), "{e}");
    let e = Tokenizer::from_gguf(&tiny("mystery", vec![])).unwrap_err();
    assert!(
        matches!(e, TokenizerError::UnsupportedPre(..)) && e.to_string().contains("qwen2"),
        "{e}"
    );
    let e = err(vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", strs(&["a"])),
    ]);
    assert!(e.to_string().contains("tokenizer.ggml.merges"), "{e}");
    let e = Tokenizer::from_gguf(&tiny(
        "qwen2",
        vec![("tokenizer.ggml.eos_token_id", Value::U32(99))],
    ))
    .unwrap_err();
    assert!(e.to_string().contains("eos_token_id"), "{e}");
}

#[test]
fn tokenizer_and_template_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    assert_send_sync::<apr_formats::ChatTemplate>();
    assert_send_sync::<apr_formats::StreamDecoder>();
}

//! Tokenizer against llama.cpp on the real Qwen2.5-Coder GGUFs (../shared/golden).

mod common;

use std::time::Instant;

use apr_formats::{Gguf, Tokenizer};
use common::{golden, optional_model, require_model, QWEN05, QWEN15};

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("ids array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn load(file: &std::path::Path) -> Tokenizer {
    let g = Gguf::open(file).expect("open gguf");
    let t0 = Instant::now();
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer from gguf");
    eprintln!("tokenizer load: {:?}", t0.elapsed());
    tok
}

/// Every tokenize[] and greedy[].prompt of a golden file, with `tok`.
fn check_golden(tok: &Tokenizer, golden_file: &str) {
    let gold = golden(golden_file);
    let cases = gold["tokenize"].as_array().expect("tokenize[]");
    assert!(!cases.is_empty());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids_of(&case["ids"]);
        assert_eq!(
            tok.encode(text).unwrap(),
            want,
            "{golden_file}: tokenize {text:?}"
        );
        assert_eq!(
            tok.decode(&want).unwrap(),
            text,
            "{golden_file}: decode of {text:?}"
        );
    }
    let greedy = gold["greedy"].as_array().expect("greedy[]");
    assert!(!greedy.is_empty());
    for case in greedy {
        let prompt = case["prompt"].as_str().unwrap();
        let want = ids_of(&case["prompt_ids"]);
        assert_eq!(
            tok.encode(prompt).unwrap(),
            want,
            "{golden_file}: prompt {prompt:?}"
        );
        assert_eq!(tok.decode(&want).unwrap(), prompt);
        // The continuation's text is the decoding of its tokens, minus a final EOG token.
        let mut gen: Vec<u32> = case["tokens"]
            .as_array()
            .map(|_| ids_of(&case["tokens"]))
            .unwrap_or_default();
        if gen.last().is_some_and(|&id| tok.is_eog(id)) {
            gen.pop();
        }
        if let Some(content) = case["content"].as_str() {
            assert_eq!(
                tok.decode(&gen).unwrap(),
                content,
                "{golden_file}: content of {prompt:?}"
            );
        }
    }
}

#[test]
fn qwen05_matches_llamacpp_golden() {
    let tok = load(&require_model(QWEN05));
    assert_eq!(tok.vocab_size(), 151936);
    assert_eq!(tok.pre(), "qwen2");
    assert!(!tok.add_bos());
    assert_eq!(tok.bos_id(), Some(151643));
    assert_eq!(tok.eos_id(), Some(151645));
    check_golden(&tok, "llamacpp-qwen05-shared.json");
}

#[test]
fn qwen15_matches_llamacpp_golden() {
    // The two models share one tokenizer: check that, then check the 1.5B golden with the
    // 0.5B tokenizer too, so the golden is covered even when only the 0.5B file is present.
    let tok05 = load(&require_model(QWEN05));
    check_golden(&tok05, "llamacpp-qwen15-shared.json");
    let Some(p15) = optional_model(QWEN15) else {
        return;
    };
    let (g05, g15) = (
        Gguf::open(require_model(QWEN05)).unwrap(),
        Gguf::open(&p15).unwrap(),
    );
    for key in [
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.token_type",
    ] {
        assert_eq!(
            g05.get(key),
            g15.get(key),
            "{key} differs between the 0.5B and 1.5B models"
        );
    }
    let tok15 = load(&p15);
    check_golden(&tok15, "llamacpp-qwen15-shared.json");
}

#[test]
fn special_tokens_and_eog_set() {
    let tok = load(&require_model(QWEN05));
    assert_eq!(tok.encode("<|im_start|>").unwrap(), vec![151644]);
    assert_eq!(tok.encode("<tool_call>").unwrap(), vec![151657]);
    for id in [151643, 151645, 151662, 151663, 151664] {
        assert!(
            tok.is_eog(id),
            "{id} ({:?}) should end generation",
            tok.token_text(id)
        );
    }
    assert!(!tok.is_eog(151644));
    assert!(tok.is_special(151644) && tok.is_special(151645));
    assert!(
        !tok.is_special(151657),
        "<tool_call> is user-defined, not special"
    );
    assert!(!tok.is_special(750));
    assert_eq!(tok.token_bytes(151645).unwrap(), b"<|im_end|>");
    assert_eq!(tok.token_bytes(220).unwrap(), b" ");
    assert_eq!(
        tok.decode_with(&[151644, 872, 151645], true).unwrap(),
        "user"
    );
}

#[test]
fn out_of_range_ids_are_errors() {
    let tok = load(&require_model(QWEN05));
    let n = tok.vocab_size() as u32;
    assert!(tok.decode(&[1, n]).is_err());
    assert!(tok.token_bytes(u32::MAX).is_err());
    assert!(tok.stream_decoder().push(&tok, n).is_err());
    assert!(!tok.is_special(n));
}

#[test]
fn round_trip_and_streaming_decode() {
    let tok = load(&require_model(QWEN05));
    let texts = [
        "你好 🦀",
        "Hello, world! 你好，世界。 Привет мир. 🦀🐍 café naïve",
        "fn main() {\n\tprintln!(\"{}\", 1 + 2);\r\n}\n\n\n",
        "  leading and trailing  ",
        "<|im_start|>user\nÆØÅ ∑∫√ 🧑‍💻<|im_end|>\n",
        "",
    ];
    for text in texts {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text, "round trip of {text:?}");
        let mut dec = tok.stream_decoder();
        let mut out = String::new();
        let mut held_back = false;
        for &id in &ids {
            // Every chunk is a String, so valid UTF-8 by construction; check it never
            // carries a replacement char the full text doesn't have.
            let chunk = dec.push(&tok, id).unwrap();
            assert!(
                !chunk.contains('\u{FFFD}'),
                "partial char leaked in {text:?}"
            );
            held_back |= dec.has_pending();
            out.push_str(&chunk);
        }
        out.push_str(&dec.finish());
        assert_eq!(out, text, "streamed decode of {text:?}");
        if text == "你好 🦀" {
            assert!(
                held_back,
                "byte-level tokens should split a multi-byte char here"
            );
        }
    }
}

#[test]
fn loads_fast() {
    let g = Gguf::open(require_model(QWEN05)).unwrap();
    let t0 = Instant::now();
    let _tok = Tokenizer::from_gguf(&g).unwrap();
    let dt = t0.elapsed();
    eprintln!("Tokenizer::from_gguf: {dt:?}");
    // Generous bound: test builds are optimized (profile.test opt-level 3) but the machine is shared.
    assert!(dt.as_secs_f64() < 2.0, "tokenizer load took {dt:?}");
}

//! Chat templates from the real GGUFs against jinja2 renders (../shared/golden).

mod common;

use apr_formats::{ChatTemplate, Gguf, Message};
use common::{golden, optional_model, require_model, QWEN05, QWEN15};

const GOLDEN: &str = "chat-template-renders.json";

/// All conversations of the golden for one model file.
fn check_model(file: &str, path: &std::path::Path) {
    let gold = golden(GOLDEN);
    let cases = gold["models"][file]
        .as_array()
        .unwrap_or_else(|| panic!("{GOLDEN}: no {file}"));
    assert_eq!(cases.len(), 5);
    let g = Gguf::open(path).unwrap();
    let src = g.get_str("tokenizer.chat_template").unwrap();
    // The golden was rendered with bos_token "" and eos_token "<|im_end|>"; from_gguf must
    // derive the same from the metadata.
    let from_gguf = ChatTemplate::from_gguf(&g).unwrap();
    assert_eq!(
        (from_gguf.bos_token(), from_gguf.eos_token()),
        ("", "<|im_end|>")
    );
    let explicit = ChatTemplate::new(src, "", "<|im_end|>").unwrap();
    for (i, case) in cases.iter().enumerate() {
        let agp = case["add_generation_prompt"].as_bool().unwrap();
        let tools = case.get("tools").filter(|t| !t.is_null());
        let want = case["rendered"].as_str().unwrap();
        let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
        for t in [&from_gguf, &explicit] {
            let got = t.render(&messages, agp, tools).unwrap();
            assert_eq!(got, want, "{file} conversation #{i}");
            let got = t.render_json(&case["messages"], agp, tools).unwrap();
            assert_eq!(got, want, "{file} conversation #{i} (JSON messages)");
        }
    }
}

#[test]
fn qwen05_template_matches_jinja2() {
    check_model(QWEN05, &require_model(QWEN05));
}

#[test]
fn qwen15_template_matches_jinja2() {
    let Some(p15) = optional_model(QWEN15) else {
        return;
    };
    check_model(QWEN15, &p15);
}

#[test]
fn missing_template_is_a_clear_error() {
    let g = Gguf::from_bytes(apr_formats::gguf::write::to_bytes(&[], &[])).unwrap();
    let e = ChatTemplate::from_gguf(&g).unwrap_err();
    assert!(e.to_string().contains("tokenizer.chat_template"), "{e}");
}

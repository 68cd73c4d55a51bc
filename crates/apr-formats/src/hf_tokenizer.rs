//! Hugging Face `tokenizer.json` + `tokenizer_config.json` to and from the GGUF
//! `tokenizer.ggml.*` keys (byte-level BPE), as llama.cpp's `convert_hf_to_gguf.py` maps them:
//! added tokens that are special become control tokens, other added tokens user-defined ones,
//! ids the tokenizer lacks below `vocab_size` become `[PAD{id}]` unused tokens.
//! Reference: https://github.com/huggingface/tokenizers (tokenizer.json schema).

use std::path::Path;

use serde_json::{json, Value as Json};

use crate::gguf::{Gguf, Value};
use crate::hf_config::{read_json, HfError, Result};
use crate::tokenizer::{pre_of_regex, pre_split, TokenType};

pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// GGUF token type ids (llama.cpp `llama_token_type`).
const TYPE_NORMAL: i32 = 1;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_UNUSED: i32 = 5;

fn ferr(path: &Path, msg: impl Into<String>) -> HfError {
    HfError::File {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// A token field of tokenizer_config.json: a string or an `{"content": ...}` object.
fn token_text(v: Option<&Json>) -> Option<&str> {
    match v? {
        Json::String(s) => Some(s),
        Json::Object(o) => o.get("content").and_then(Json::as_str),
        _ => None,
    }
}

/// The `tokenizer.*` GGUF keys of an HF directory. `vocab_size` is the model's (embedding
/// rows); `ids` are the bos/eos ids of config.json, used where tokenizer_config names none.
pub fn gguf_kv(
    dir: &Path,
    vocab_size: usize,
    cfg_bos: Option<u64>,
    cfg_eos: Option<u64>,
) -> Result<Vec<(String, Value)>> {
    let tpath = dir.join(TOKENIZER_FILE);
    let tok = tokenizers::Tokenizer::from_file(&tpath)
        .map_err(|e| ferr(&tpath, format!("tokenizers cannot load it: {e}")))?;
    let tcfg = read_json(&dir.join(TOKENIZER_CONFIG_FILE), false)?.unwrap_or(json!({}));

    // The model's merges in rank order, through the crate's own serialization.
    let model = serde_json::to_value(tok.get_model())
        .map_err(|e| ferr(&tpath, format!("cannot serialize the model: {e}")))?;
    if model.get("type").and_then(Json::as_str) != Some("BPE") {
        return Err(HfError::Unsupported(format!(
            "{}: only BPE tokenizers are supported",
            tpath.display()
        )));
    }
    let merges: Vec<Value> = model
        .get("merges")
        .and_then(Json::as_array)
        .ok_or_else(|| ferr(&tpath, "the BPE model has no merges"))?
        .iter()
        .map(|m| match m {
            Json::String(s) => Ok(Value::String(s.clone())),
            Json::Array(p) if p.len() == 2 => match (p[0].as_str(), p[1].as_str()) {
                (Some(a), Some(b)) => Ok(Value::String(format!("{a} {b}"))),
                _ => Err(ferr(&tpath, "a merge is not two strings")),
            },
            _ => Err(ferr(&tpath, "a merge is not a string or a pair")),
        })
        .collect::<Result<_>>()?;

    let pre = pre_name(&tok, &tpath)?;

    let vocab = tok.get_vocab(true);
    let n = vocab_size.max(vocab.values().map(|&i| i as usize + 1).max().unwrap_or(0));
    let mut tokens: Vec<Option<String>> = vec![None; n];
    for (t, &id) in &vocab {
        tokens[id as usize] = Some(t.clone());
    }
    let mut types = vec![TYPE_NORMAL; n];
    for (&id, at) in tok.get_added_tokens_decoder().iter() {
        if let Some(ty) = types.get_mut(id as usize) {
            *ty = if at.special {
                TYPE_CONTROL
            } else {
                TYPE_USER_DEFINED
            };
        }
    }
    let tokens: Vec<Value> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            Value::String(t.unwrap_or_else(|| {
                types[i] = TYPE_UNUSED;
                format!("[PAD{i}]")
            }))
        })
        .collect();

    let id_of = |key: &str| token_text(tcfg.get(key)).and_then(|t| tok.token_to_id(t));
    let mut kv: Vec<(String, Value)> = vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens)),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
    ];
    let ids = [
        (
            "bos_token_id",
            id_of("bos_token").map(u64::from).or(cfg_bos),
        ),
        (
            "eos_token_id",
            id_of("eos_token").map(u64::from).or(cfg_eos),
        ),
        ("padding_token_id", id_of("pad_token").map(u64::from)),
    ];
    for (k, id) in ids {
        if let Some(id) = id {
            kv.push((format!("tokenizer.ggml.{k}"), Value::U32(id as u32)));
        }
    }
    if let Some(b) = tcfg.get("add_bos_token").and_then(Json::as_bool) {
        kv.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(b)));
    }
    if let Some(t) = chat_template(&tcfg, dir)? {
        kv.push(("tokenizer.chat_template".into(), Value::String(t)));
    }
    Ok(kv)
}

/// The chat template: tokenizer_config's `chat_template` (a string, or the `default` of a
/// list of named templates), else a `chat_template.jinja` file beside it.
fn chat_template(tcfg: &Json, dir: &Path) -> Result<Option<String>> {
    match tcfg.get("chat_template") {
        Some(Json::String(s)) => return Ok(Some(s.clone())),
        Some(Json::Array(list)) => {
            let def = list
                .iter()
                .find(|t| t.get("name") == Some(&json!("default")));
            if let Some(t) = def.and_then(|t| t.get("template")).and_then(Json::as_str) {
                return Ok(Some(t.to_string()));
            }
        }
        _ => {}
    }
    let p = dir.join("chat_template.jinja");
    match std::fs::read_to_string(&p) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ferr(&p, e.to_string())),
    }
}

/// The `tokenizer.ggml.pre` of a tokenizer: its split regex looked up in our registry; a
/// plain byte-level pre-tokenizer with its own regex is GPT-2's.
fn pre_name(tok: &tokenizers::Tokenizer, path: &Path) -> Result<&'static str> {
    let pre = serde_json::to_value(tok.get_pre_tokenizer())
        .map_err(|e| ferr(path, format!("cannot serialize the pre-tokenizer: {e}")))?;
    fn find_regex(v: &Json) -> Option<&str> {
        if v.get("type").and_then(Json::as_str) == Some("Split") {
            return v.get("pattern")?.get("Regex")?.as_str();
        }
        v.get("pretokenizers")?
            .as_array()?
            .iter()
            .find_map(find_regex)
    }
    if let Some(re) = find_regex(&pre) {
        return pre_of_regex(re).ok_or_else(|| {
            HfError::Unsupported(format!(
                "{}: pre-tokenizer regex {re:?} is not one we know",
                path.display()
            ))
        });
    }
    if pre.get("type").and_then(Json::as_str) == Some("ByteLevel") {
        return Ok(
            pre_of_regex(pre_split("gpt-2").expect("in the registry").0).expect("in the registry")
        );
    }
    Err(HfError::Unsupported(format!(
        "{}: pre-tokenizer {pre} is not a byte-level BPE split we know",
        path.display()
    )))
}

fn byte_level() -> Json {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false})
}

/// One added token as tokenizer.json / tokenizer_config.json list them.
fn added_json(id: usize, text: &str, special: bool) -> Json {
    json!({"id": id, "content": text, "single_word": false, "lstrip": false, "rstrip": false,
           "normalized": !special, "special": special})
}

/// `tokenizer.json` and `tokenizer_config.json` of a GGUF file's vocabulary.
pub fn to_hf(g: &Gguf) -> Result<(Json, Json)> {
    let model = g.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(HfError::Unsupported(format!(
            "tokenizer model {model:?} (only gpt2 byte-level BPE exports)"
        )));
    }
    let pre = match g.get("tokenizer.ggml.pre") {
        Some(_) => g.get_str("tokenizer.ggml.pre")?,
        None => "gpt-2",
    };
    let (regex, ignore_merges) =
        pre_split(pre).ok_or_else(|| HfError::Unsupported(format!("pre-tokenizer {pre:?}")))?;
    let tokens = g.get_str_array("tokenizer.ggml.tokens")?;
    let types: Vec<TokenType> = match g.get("tokenizer.ggml.token_type") {
        Some(_) => g
            .get_i64_array("tokenizer.ggml.token_type")?
            .into_iter()
            .map(TokenType::from_gguf)
            .collect(),
        None => vec![TokenType::Normal; tokens.len()],
    };
    let merges = g.get_str_array("tokenizer.ggml.merges")?;
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    let mut decoder = serde_json::Map::new();
    for (i, (t, ty)) in tokens.iter().zip(&types).enumerate() {
        match ty {
            TokenType::Control | TokenType::Unknown | TokenType::UserDefined => {
                let special = *ty != TokenType::UserDefined;
                added.push(added_json(i, t, special));
                let mut a = added_json(i, t, special);
                a.as_object_mut().expect("object").remove("id");
                decoder.insert(i.to_string(), a);
            }
            // Padding slots are not tokens of the HF tokenizer.
            TokenType::Unused => {}
            _ => {
                vocab.insert((*t).to_string(), i.into());
            }
        }
    }
    let id = |k: &str| {
        g.get(&format!("tokenizer.ggml.{k}"))
            .and_then(Value::as_u64)
            .and_then(|i| tokens.get(i as usize).map(|t| t.to_string()))
    };
    let add_bos = g
        .get("tokenizer.ggml.add_bos_token")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let bos = id("bos_token_id");
    let post = match (&bos, add_bos) {
        (Some(b), true) => {
            let bid = g.get_u64("tokenizer.ggml.bos_token_id")?;
            json!({"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": b, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {b: {"id": b, "ids": [bid], "tokens": [b]}}})
        }
        _ => byte_level(),
    };
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            byte_level(),
        ]},
        "post_processor": post,
        "decoder": byte_level(),
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": ignore_merges,
            "vocab": vocab, "merges": merges},
    });
    let mut cfg = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": add_bos,
        "add_eos_token": false,
        "clean_up_tokenization_spaces": false,
        "model_max_length": g.architecture().ok()
            .and_then(|a| g.get(&format!("{a}.context_length")))
            .and_then(Value::as_u64).unwrap_or(4096),
        "added_tokens_decoder": decoder,
        "bos_token": bos,
        "eos_token": id("eos_token_id"),
        "pad_token": id("padding_token_id"),
    });
    if let Some(t) = g.get("tokenizer.chat_template").and_then(Value::as_str) {
        cfg["chat_template"] = t.into();
    }
    Ok((tokenizer, cfg))
}

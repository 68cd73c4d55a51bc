//! Byte-level BPE tokenizer built from GGUF metadata (the `gpt2` tokenizer model), matching
//! llama.cpp's `llm_tokenizer_bpe`: https://github.com/ggml-org/llama.cpp/blob/master/src/llama-vocab.cpp
//!
//! Encoding runs on Hugging Face `tokenizers` (split regex per `tokenizer.ggml.pre`, byte-level
//! mapping, BPE merges, added tokens for control and user-defined tokens); decoding is our own
//! concatenation of token bytes, as llama.cpp's `token_to_piece` does.

use std::collections::{BTreeSet, HashMap};

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::gguf::{Gguf, GgufError};

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_EOT: &str = "tokenizer.ggml.eot_token_id";
const KEY_EOM: &str = "tokenizer.ggml.eom_token_id";
const KEY_PAD: &str = "tokenizer.ggml.padding_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";

/// Token texts llama.cpp adds to the end-of-generation set wherever they appear
/// (its EOG auto-detection plus the FIM pad / repo / file-separator tokens).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
];

/// Qwen2 split regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_QWEN2`, HF Qwen2 tokenizer.json).
const RE_QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3 split regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_LLAMA3`): digits in runs of up to three.
const RE_LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-2 split regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_DEFAULT`).
const RE_GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// One pre-tokenizer family: the `tokenizer.ggml.pre` names it answers to and how it splits.
struct PreType {
    names: &'static [&'static str],
    regex: &'static str,
    /// A pre-token that is itself in the vocabulary is taken whole (llama.cpp `ignore_merges`).
    ignore_merges: bool,
    /// BOS default when `tokenizer.ggml.add_bos_token` is absent.
    add_bos: bool,
}

/// Registry of supported pre-tokenizers: adding one is one line.
const PRE_TYPES: &[PreType] = &[
    PreType {
        names: &["qwen2"],
        regex: RE_QWEN2,
        ignore_merges: false,
        add_bos: false,
    },
    PreType {
        names: &["llama-bpe", "llama3", "llama-v3", "falcon3"],
        regex: RE_LLAMA3,
        ignore_merges: true,
        add_bos: true,
    },
    PreType {
        names: &["gpt-2", "default", "gpt2"],
        regex: RE_GPT2,
        ignore_merges: false,
        add_bos: false,
    },
];

/// The split regex and `ignore_merges` of a `tokenizer.ggml.pre` name (HF export).
pub fn pre_split(name: &str) -> Option<(&'static str, bool)> {
    PRE_TYPES
        .iter()
        .find(|p| p.names.contains(&name))
        .map(|p| (p.regex, p.ignore_merges))
}

/// The `tokenizer.ggml.pre` name of a split regex (HF import): the first name of its family.
pub fn pre_of_regex(regex: &str) -> Option<&'static str> {
    PRE_TYPES
        .iter()
        .find(|p| p.regex == regex)
        .map(|p| p.names[0])
}

/// GGUF token types (llama.cpp `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    pub fn from_gguf(v: i64) -> Self {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer metadata: {0}")]
    Metadata(#[from] GgufError),
    #[error("unsupported tokenizer model {0:?} (supported: \"gpt2\" byte-level BPE)")]
    UnsupportedModel(String),
    #[error("unsupported pre-tokenizer {0:?} (supported: {1})")]
    UnsupportedPre(String, String),
    #[error("tokenizer metadata is inconsistent: {0}")]
    Inconsistent(String),
    #[error("cannot build the BPE model: {0}")]
    Build(String),
    #[error("cannot encode {text:?}: {msg}")]
    Encode { text: String, msg: String },
    #[error("token id {id} is out of range (vocabulary size {vocab_size})")]
    IdOutOfRange { id: u32, vocab_size: usize },
}

pub type Result<T> = std::result::Result<T, TokenizerError>;

/// A tokenizer built from a GGUF file's `tokenizer.ggml.*` metadata.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Raw token strings as stored in GGUF (byte-level mapped for normal tokens).
    tokens: Vec<String>,
    types: Vec<TokenType>,
    /// Decoded bytes of every token, flat; token `i` is `pieces[offsets[i]..offsets[i + 1]]`.
    pieces: Vec<u8>,
    offsets: Vec<u32>,
    pre: String,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    eog: BTreeSet<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.tokens.len())
            .field("pre", &self.pre)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

/// GPT-2's `bytes_to_unicode`: printable bytes map to themselves, the rest to U+0100 onward.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            b as char
        } else {
            let c = char::from_u32(next).expect("U+0100..U+0143 are chars");
            next += 1;
            c
        };
    }
    table
}

/// Bytes of a byte-level token text; a char outside the mapping keeps its UTF-8 bytes.
fn byte_level_decode(text: &str, char_to_byte: &HashMap<char, u8>, out: &mut Vec<u8>) {
    for c in text.chars() {
        match char_to_byte.get(&c) {
            Some(&b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
}

fn opt_id(g: &Gguf, key: &str, n_vocab: usize) -> Result<Option<u32>> {
    let Some(v) = g.get(key) else { return Ok(None) };
    // llama.cpp writes -1 / u32::MAX for "no such token".
    match v.as_i64() {
        Some(id) if id >= 0 && (id as usize) < n_vocab => Ok(Some(id as u32)),
        Some(-1) | Some(0xFFFF_FFFF) => Ok(None),
        _ => Err(TokenizerError::Inconsistent(format!(
            "{key} = {v:?} is not a token id below the vocabulary size {n_vocab}"
        ))),
    }
}

impl Tokenizer {
    /// Build the tokenizer from GGUF metadata.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let model = g.get_str(KEY_MODEL)?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.to_string()));
        }
        let pre_name = match g.get(KEY_PRE) {
            Some(_) => g.get_str(KEY_PRE)?,
            None => "default",
        };
        let pre = PRE_TYPES
            .iter()
            .find(|p| p.names.contains(&pre_name))
            .ok_or_else(|| {
                let known: Vec<&str> = PRE_TYPES
                    .iter()
                    .flat_map(|p| p.names.iter().copied())
                    .collect();
                TokenizerError::UnsupportedPre(pre_name.to_string(), known.join(", "))
            })?;

        let tokens = g.get_str_array(KEY_TOKENS)?;
        let n = tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(TokenizerError::Inconsistent(format!(
                "{KEY_TOKENS} has {n} tokens"
            )));
        }
        let types: Vec<TokenType> = match g.get(KEY_TOKEN_TYPE) {
            None => vec![TokenType::Normal; n],
            Some(_) => {
                let t = g.get_i64_array(KEY_TOKEN_TYPE)?;
                if t.len() != n {
                    return Err(TokenizerError::Inconsistent(format!(
                        "{KEY_TOKEN_TYPE} has {} entries for {n} tokens",
                        t.len()
                    )));
                }
                t.into_iter().map(TokenType::from_gguf).collect()
            }
        };
        let merges_raw = g.get_str_array(KEY_MERGES)?;

        let bos = opt_id(g, KEY_BOS, n)?;
        let eos = opt_id(g, KEY_EOS, n)?;
        let pad = opt_id(g, KEY_PAD, n)?;
        let add_bos = match g.get(KEY_ADD_BOS) {
            None => pre.add_bos,
            Some(v) => v.as_bool().ok_or_else(|| {
                TokenizerError::Inconsistent(format!("{KEY_ADD_BOS} is not a bool: {v:?}"))
            })?,
        };
        if add_bos && bos.is_none() {
            return Err(TokenizerError::Inconsistent(format!(
                "{KEY_ADD_BOS} is true but {KEY_BOS} is missing"
            )));
        }

        // Vocabulary: the last of duplicate strings wins, as in llama.cpp's token_to_id map.
        let mut vocab: tokenizers::models::bpe::Vocab = Default::default();
        vocab.reserve(n);
        for (i, t) in tokens.iter().enumerate() {
            vocab.insert((*t).to_string(), i as u32);
        }
        let mut merges = Vec::with_capacity(merges_raw.len());
        for (i, m) in merges_raw.iter().enumerate() {
            // Split at the first space after the first char, as llama.cpp does.
            let pos = m
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(p, _)| p);
            let Some(pos) = pos else {
                return Err(TokenizerError::Inconsistent(format!(
                    "{KEY_MERGES}[{i}] = {m:?} is not two tokens separated by a space"
                )));
            };
            merges.push((m[..pos].to_string(), m[pos + 1..].to_string()));
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(pre.ignore_merges)
            .build()
            .map_err(|e| TokenizerError::Build(e.to_string()))?;

        let split = Split::new(
            SplitPattern::Regex(pre.regex.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| TokenizerError::Build(format!("split regex: {e}")))?;
        let byte_level = ByteLevel::new(false, false, false);
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(Sequence::new(vec![split.into(), byte_level.into()])));

        // End-of-generation set, as llama.cpp builds it.
        let mut eog = BTreeSet::new();
        for key in [KEY_EOS, KEY_EOT, KEY_EOM] {
            if let Some(id) = opt_id(g, key, n)? {
                eog.insert(id);
            }
        }
        for (i, t) in tokens.iter().enumerate() {
            if EOG_TEXTS.contains(t) {
                eog.insert(i as u32);
            }
        }
        // llama.cpp marks auto-detected EOG tokens as control tokens.
        let mut types = types;
        for &id in &eog {
            if types[id as usize] != TokenType::UserDefined {
                types[id as usize] = TokenType::Control;
            }
        }

        // Control and user-defined tokens are matched whole in the input text, before splitting.
        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter_map(|(t, ty)| match ty {
                TokenType::Control | TokenType::Unknown => {
                    Some(AddedToken::from(t.to_string(), true))
                }
                TokenType::UserDefined => Some(AddedToken::from(t.to_string(), false)),
                _ => None,
            })
            .collect();
        inner.add_tokens(&added);

        let byte_table = byte_to_char_table();
        let char_to_byte: HashMap<char, u8> = byte_table
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let mut pieces = Vec::with_capacity(n * 8);
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0u32);
        for (t, ty) in tokens.iter().zip(&types) {
            match ty {
                TokenType::Control | TokenType::Unknown | TokenType::UserDefined => {
                    pieces.extend_from_slice(t.as_bytes())
                }
                TokenType::Normal | TokenType::Undefined => {
                    byte_level_decode(t, &char_to_byte, &mut pieces)
                }
                // Padding slots and the like decode to nothing, as in llama.cpp.
                TokenType::Unused | TokenType::Byte => {}
            }
            let end = u32::try_from(pieces.len())
                .map_err(|_| TokenizerError::Inconsistent("token texts exceed 4 GiB".into()))?;
            offsets.push(end);
        }

        Ok(Tokenizer {
            inner,
            tokens: tokens.into_iter().map(str::to_string).collect(),
            types,
            pieces,
            offsets,
            pre: pre_name.to_string(),
            bos,
            eos,
            pad,
            add_bos,
            eog,
        })
    }

    /// Token ids of `text`. Special tokens written in the text are parsed as such; BOS is
    /// prepended only when the model asks for it (`tokenizer.ggml.add_bos_token`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend(self.encode_raw(text)?);
        Ok(ids)
    }

    /// Token ids of `text` without BOS (special tokens still parsed).
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| TokenizerError::Encode {
                text: text.to_string(),
                msg: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The bytes a token stands for (special tokens: their text).
    pub fn token_bytes(&self, id: u32) -> Result<&[u8]> {
        let i = id as usize;
        if i >= self.tokens.len() {
            return Err(TokenizerError::IdOutOfRange {
                id,
                vocab_size: self.tokens.len(),
            });
        }
        Ok(&self.pieces[self.offsets[i] as usize..self.offsets[i + 1] as usize])
    }

    /// Text of `ids`; bytes that are not valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_with(ids, false)
    }

    /// Text of `ids`, leaving out special tokens when `skip_special`.
    pub fn decode_with(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let piece = self.token_bytes(id)?;
            if !(skip_special && self.is_special(id)) {
                bytes.extend_from_slice(piece);
            }
        }
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// Number of token ids (the GGUF token list, padding slots included).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The end-of-generation ids: EOS/EOT/EOM plus `<|im_end|>`, `<|endoftext|>`, `<|eot_id|>`
    /// and the like wherever present, as llama.cpp's EOG set.
    pub fn eos_ids(&self) -> &BTreeSet<u32> {
        &self.eog
    }

    /// Whether generation should stop at `id`.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    /// Whether `encode` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// The `tokenizer.ggml.pre` name in use.
    pub fn pre(&self) -> &str {
        &self.pre
    }

    /// Control (and unknown) tokens: `<|im_start|>`, `<|endoftext|>`, ... Out of range: false.
    pub fn is_special(&self, id: u32) -> bool {
        matches!(
            self.token_type(id),
            Some(TokenType::Control | TokenType::Unknown)
        )
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// The token string as stored in GGUF (byte-level mapped for normal tokens).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a token string as stored in GGUF.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// A fresh streaming decoder.
    pub fn stream_decoder(&self) -> StreamDecoder {
        StreamDecoder::default()
    }
}

/// Turns ids given one at a time into text, emitting only complete UTF-8: a multi-byte
/// character split across tokens is held back until its last byte arrives.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one id; returns the text that became complete (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        let piece = tok.token_bytes(id)?;
        Ok(self.push_bytes(piece))
    }

    /// Feed raw bytes; returns the text that became complete. Bytes that can never start or
    /// continue a valid sequence become U+FFFD, as in a lossy decode.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    let s = std::str::from_utf8(&self.pending[start..start + valid])
                        .expect("valid_up_to marks valid UTF-8");
                    out.push_str(s);
                    start += valid;
                    match e.error_len() {
                        // An incomplete sequence at the end: wait for more bytes.
                        None => break,
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start += bad;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }

    /// Whether bytes of an unfinished character are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// End of stream: what is held back, lossily (U+FFFD for an unfinished character).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection() {
        let t = byte_to_char_table();
        let set: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
    }

    #[test]
    fn stream_decoder_holds_back_partial_chars() {
        let mut d = StreamDecoder::new();
        let crab = "🦀".as_bytes();
        assert_eq!(d.push_bytes(&crab[..1]), "");
        assert_eq!(d.push_bytes(&crab[1..3]), "");
        assert!(d.has_pending());
        assert_eq!(d.push_bytes(&[crab[3], b'x']), "🦀x");
        assert_eq!(d.push_bytes(&[0xFF, b'y']), "\u{FFFD}y");
        assert_eq!(d.push_bytes(&crab[..2]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
        assert!(!d.has_pending());
    }
}

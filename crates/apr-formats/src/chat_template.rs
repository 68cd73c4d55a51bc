//! Chat templates: the model's own Jinja template rendered with minijinja the way
//! transformers' `apply_chat_template` renders it with jinja2.
//! Reference: https://github.com/huggingface/transformers/blob/main/src/transformers/utils/chat_template_utils.py

use std::fmt::Write as _;

use minijinja::value::{Kwargs, Value as JValue};
use minijinja::{Environment, Error as JError, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::gguf::{Gguf, GgufError};

const KEY_TEMPLATE: &str = "tokenizer.chat_template";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const TEMPLATE_NAME: &str = "chat_template";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("chat template metadata: {0}")]
    Metadata(#[from] GgufError),
    #[error("the model has no chat template (GGUF key {KEY_TEMPLATE} is missing)")]
    Missing,
    #[error("chat template does not compile: {0:#}")]
    Syntax(#[source] JError),
    #[error("chat template failed to render: {0:#}")]
    Render(#[source] JError),
    #[error("chat template messages cannot be converted: {0}")]
    Messages(String),
}

pub type Result<T> = std::result::Result<T, TemplateError>;

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled chat template plus the special-token strings it may reference.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

fn token_text(g: &Gguf, key: &str) -> Result<Option<String>> {
    let Some(id) = g.get(key).and_then(|v| v.as_u64()) else {
        return Ok(None);
    };
    let tokens = g.get_str_array(KEY_TOKENS)?;
    Ok(tokens.get(id as usize).map(|s| s.to_string()))
}

impl ChatTemplate {
    /// The template in `tokenizer.chat_template`. `bos_token` is the BOS text only when the
    /// tokenizer adds BOS (models without a BOS in HF, like Qwen2, render it as ""); `eos_token`
    /// is the EOS text.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let source = match g.get(KEY_TEMPLATE) {
            None => return Err(TemplateError::Missing),
            Some(_) => g.get_str(KEY_TEMPLATE)?,
        };
        let add_bos = g
            .get(KEY_ADD_BOS)
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let bos = if add_bos {
            token_text(g, KEY_BOS)?.unwrap_or_default()
        } else {
            String::new()
        };
        let eos = token_text(g, KEY_EOS)?.unwrap_or_default();
        Self::new(source, bos, eos)
    }

    /// Compile `source` with the given special-token strings.
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<Self> {
        let source = source.into();
        let mut env = Environment::new();
        // jinja2 as transformers configures it.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(TemplateError::Syntax)?;
        Ok(ChatTemplate {
            env,
            source,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// Render `messages`; `tools` is the JSON list of tool schemas, as transformers takes it.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        tools: Option<&serde_json::Value>,
    ) -> Result<String> {
        let messages =
            serde_json::to_value(messages).map_err(|e| TemplateError::Messages(e.to_string()))?;
        self.render_json(&messages, add_generation_prompt, tools)
    }

    /// Render messages given as JSON objects (tool calls, names and other fields the
    /// template may read pass through untouched).
    pub fn render_json(
        &self,
        messages: &serde_json::Value,
        add_generation_prompt: bool,
        tools: Option<&serde_json::Value>,
    ) -> Result<String> {
        if !messages.is_array() {
            return Err(TemplateError::Messages(format!(
                "expected a list of messages, got {messages}"
            )));
        }
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(TemplateError::Render)?;
        let ctx = minijinja::context! {
            messages => JValue::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            tools => tools.map(JValue::from_serialize).unwrap_or(JValue::from(())),
            documents => JValue::from(()),
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        };
        tmpl.render(ctx).map_err(TemplateError::Render)
    }
}

/// transformers' `raise_exception(message)`: the template's own error.
fn raise_exception(msg: String) -> std::result::Result<JValue, JError> {
    Err(JError::new(ErrorKind::InvalidOperation, msg))
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)`.
fn tojson(value: JValue, kwargs: Kwargs) -> std::result::Result<JValue, JError> {
    let indent: Option<JValue> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let _ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(n.max(0) as usize)),
            (None, Some(s)) => Some(s.to_string()),
            _ => {
                return Err(JError::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an int or a string",
                ))
            }
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => {
            return Err(JError::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ))
        }
        // Python's defaults: "," when indenting (the newline separates), else ", ".
        None => (
            if indent.is_some() { "," } else { ", " }.to_string(),
            ": ".to_string(),
        ),
    };
    let json = serde_json::to_value(&value)
        .map_err(|e| JError::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let opts = PyJson {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    opts.write(&json, 0, &mut out);
    // The output is JSON, not HTML: mark it safe so no auto-escaping touches it.
    Ok(JValue::from_safe_string(out))
}

/// Python `json.dumps` formatting (ensure_ascii=False).
struct PyJson {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl PyJson {
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(ind) = &self.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    }

    fn write(&self, v: &serde_json::Value, level: usize, out: &mut String) {
        use serde_json::Value as J;
        match v {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => write!(out, "{i}").expect("write to String"),
                (_, Some(u), _) => write!(out, "{u}").expect("write to String"),
                (_, _, Some(f)) => out.push_str(&py_float_repr(f)),
                _ => out.push_str(&n.to_string()),
            },
            J::String(s) => write_py_str(s, out),
            J::Array(a) => {
                if a.is_empty() {
                    out.push_str("[]");
                    return;
                }
                out.push('[');
                for (i, e) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(level + 1, out);
                    self.write(e, level + 1, out);
                }
                self.newline(level, out);
                out.push(']');
            }
            J::Object(m) => {
                if m.is_empty() {
                    out.push_str("{}");
                    return;
                }
                let mut entries: Vec<(&String, &serde_json::Value)> = m.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, e)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(level + 1, out);
                    write_py_str(k, out);
                    out.push_str(&self.key_sep);
                    self.write(e, level + 1, out);
                }
                self.newline(level, out);
                out.push('}');
            }
        }
    }
}

/// A JSON string as Python's encoder writes it with ensure_ascii=False.
fn write_py_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).expect("write to String"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: shortest round-trip digits, scientific below 1e-4 and from 1e16.
fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{f:e}"); // like "1.2345e-5" or "-1e16"
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            s + ".0"
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// transformers' `strftime_now(format)`: the current time (UTC here) formatted like Python's
/// `strftime` for the directives templates use.
fn strftime_now(format: String) -> std::result::Result<String, JError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(strftime(&format, secs))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Format a Unix time (UTC) with a subset of Python's `strftime` directives.
fn strftime(format: &str, unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let month_name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match chars.next() {
            Some('d') => write!(out, "{day:02}"),
            Some('m') => write!(out, "{month:02}"),
            Some('Y') => write!(out, "{year}"),
            Some('y') => write!(out, "{:02}", year.rem_euclid(100)),
            Some('b') => write!(out, "{}", &month_name[..3]),
            Some('B') => write!(out, "{month_name}"),
            Some('a') => write!(out, "{}", &WEEKDAYS[weekday][..3]),
            Some('A') => write!(out, "{}", WEEKDAYS[weekday]),
            Some('H') => write!(out, "{:02}", secs / 3600),
            Some('M') => write!(out, "{:02}", secs / 60 % 60),
            Some('S') => write!(out, "{:02}", secs % 60),
            Some('%') => write!(out, "%"),
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tojson_matches_python_json_dumps() {
        let t = ChatTemplate::new(
            "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ {} | tojson }}|{{ y | tojson }}",
            "",
            "",
        )
        .unwrap();
        let env_ctx = serde_json::json!({"b": [1, 2.5, 1e-7, "é\"\n<"], "a": null, "e": []});
        let tmpl = t.env.get_template(TEMPLATE_NAME).unwrap();
        let out = tmpl
            .render(minijinja::context! { x => JValue::from_serialize(&env_ctx), y => 3.0 })
            .unwrap();
        assert_eq!(
            out,
            "{\"b\": [1, 2.5, 1e-07, \"é\\\"\\n<\"], \"a\": null, \"e\": []}|{\n  \"b\": [\n    1,\n    2.5,\n    1e-07,\n    \"é\\\"\\n<\"\n  ],\n  \"a\": null,\n  \"e\": []\n}|{}|3.0"
        );
    }

    #[test]
    fn python_float_repr() {
        assert_eq!(py_float_repr(1.0), "1.0");
        assert_eq!(py_float_repr(0.1), "0.1");
        assert_eq!(py_float_repr(1e16), "1e+16");
        assert_eq!(py_float_repr(123456789012345.0), "123456789012345.0");
        assert_eq!(py_float_repr(0.0001), "0.0001");
        assert_eq!(py_float_repr(0.00001234), "1.234e-05");
    }

    #[test]
    fn raise_exception_is_an_error_with_the_message() {
        let t = ChatTemplate::new("{{ raise_exception('no system role') }}", "", "").unwrap();
        let e = t.render(&[Message::user("hi")], true, None).unwrap_err();
        assert!(e.to_string().contains("no system role"), "{e}");
    }

    #[test]
    fn trim_and_lstrip_blocks_and_loop_controls() {
        let src = "{% for m in messages %}\n  {% if loop.index > 1 %}{% break %}{% endif %}\n[{{ m.role }}:{{ m.content.strip() }}]\n{% endfor %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        let out = t
            .render(
                &[Message::user(" a "), Message::assistant("b")],
                false,
                None,
            )
            .unwrap();
        assert_eq!(out, "[user:a]\n");
    }

    #[test]
    fn strftime_formats_a_known_date() {
        // 2024-07-26 13:25:09 UTC, a Friday.
        assert_eq!(
            strftime("%d %b %Y %A %H:%M:%S %B %m %y %%", 1_722_000_309),
            "26 Jul 2024 Friday 13:25:09 July 07 24 %"
        );
    }
}

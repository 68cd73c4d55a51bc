//! `apr check`: a model file's integrity. Each check is one entry of [`CHECKS`] and adds
//! findings (an error makes the command exit non-zero): the file opens whole, the metadata is
//! self-consistent, every tensor the architecture needs is there with its shape, no weight is
//! NaN or infinite, the BPE tokenizer's merges make every token and round-trip a sample text,
//! and the chat template renders a conversation.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use apr_core::pool::ThreadPool;
use apr_core::quant;
use apr_formats::{ChatTemplate, Gguf, Message, Tokenizer};
use apr_models::Config;
use serde::Serialize;

/// Elements dequantized at a time by the value scan (bounded scratch per thread).
const SCAN_CHUNK: usize = 1 << 20;
/// Findings of one kind listed before the rest are only counted.
const MAX_LISTED: usize = 10;
/// The round-trip sample: code, indentation, digits, non-ASCII text and an emoji.
const SAMPLE_TEXT: &str = "def fib(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n# naïve: 12345 × 67 = 827115 ✓ 你好 🚀\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The check that found it (a name of [`CHECKS`], or `file`).
    pub check: &'static str,
    pub message: String,
}

/// What `apr check` found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// The checks that ran, in order.
    pub checks: Vec<&'static str>,
    pub tensors: usize,
    /// Weight values scanned for NaN/Inf.
    pub values_scanned: u64,
}

impl Report {
    /// No error (warnings allowed).
    pub fn ok(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// What the checks share: the open file and, where the metadata allows, its config.
pub struct Ctx<'a> {
    pub g: &'a Gguf,
    pub cfg: Option<Config>,
    pub pool: &'a ThreadPool,
}

/// Adds findings for one aspect of the file.
type CheckFn = fn(&Ctx<'_>, &mut Vec<Finding>, &mut Report);

/// The checks, in the order they run.
pub const CHECKS: &[(&str, CheckFn)] = &[
    ("metadata", check_metadata),
    ("shapes", check_shapes),
    ("values", check_values),
    ("tokenizer", check_tokenizer),
    ("chat_template", check_chat_template),
];

fn err(check: &'static str, message: String) -> Finding {
    Finding {
        severity: Severity::Error,
        check,
        message,
    }
}

fn warn(check: &'static str, message: String) -> Finding {
    Finding {
        severity: Severity::Warning,
        check,
        message,
    }
}

/// Runs every check on the GGUF file at `path` with `threads` threads.
pub fn check_file(path: &Path, threads: usize) -> Report {
    let mut report = Report::default();
    let g = match Gguf::open(path) {
        Ok(g) => g,
        Err(e) => {
            report.checks.push("file");
            report
                .findings
                .push(err("file", format!("{}: {e}", path.display())));
            return report;
        }
    };
    report.tensors = g.tensors.len();
    let pool = ThreadPool::new(threads);
    let mut findings = Vec::new();
    let cfg = match Config::from_gguf(&g) {
        Ok(c) => Some(c),
        Err(e) => {
            findings.push(err("metadata", format!("model config: {e}")));
            None
        }
    };
    let ctx = Ctx {
        g: &g,
        cfg,
        pool: &pool,
    };
    for (name, f) in CHECKS {
        report.checks.push(name);
        f(&ctx, &mut findings, &mut report);
    }
    report.findings = findings;
    report
}

fn check_metadata(ctx: &Ctx<'_>, out: &mut Vec<Finding>, _: &mut Report) {
    const C: &str = "metadata";
    let g = ctx.g;
    if !g.alignment.is_power_of_two() {
        out.push(err(
            C,
            format!("general.alignment {} is not a power of two", g.alignment),
        ));
    }
    let n_tokens = match g.get_str_array("tokenizer.ggml.tokens") {
        Ok(t) => t.len(),
        Err(e) => {
            out.push(err(C, format!("tokenizer.ggml.tokens: {e}")));
            return;
        }
    };
    for key in ["tokenizer.ggml.token_type", "tokenizer.ggml.scores"] {
        if let Some(a) = g.get(key).and_then(|v| v.as_array()) {
            if a.len() != n_tokens {
                out.push(err(
                    C,
                    format!("{key} has {} entries for {n_tokens} tokens", a.len()),
                ));
            }
        }
    }
    for key in [
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.eot_token_id",
    ] {
        if let Some(id) = g.get(key).and_then(|v| v.as_u64()) {
            if id as usize >= n_tokens {
                out.push(err(
                    C,
                    format!("{key} = {id} is outside the vocabulary of {n_tokens}"),
                ));
            }
        }
    }
    if let Some(cfg) = &ctx.cfg {
        if cfg.n_vocab != n_tokens {
            out.push(err(
                C,
                format!(
                    "token_embd.weight has {} rows for {n_tokens} tokens in tokenizer.ggml.tokens",
                    cfg.n_vocab
                ),
            ));
        }
        let arch = cfg.arch.name;
        if let Some(v) = g
            .get(&format!("{arch}.vocab_size"))
            .and_then(|v| v.as_u64())
        {
            if v as usize != n_tokens {
                out.push(err(
                    C,
                    format!("{arch}.vocab_size = {v} but the tokenizer has {n_tokens} tokens"),
                ));
            }
        }
        if cfg.ctx_train == 0 {
            out.push(err(C, format!("{arch}.context_length is 0")));
        }
    }
}

/// `(name, ggml dims)` of every tensor the architecture reads, and whether it is required.
fn expected_tensors(cfg: &Config) -> Vec<(String, Vec<u64>, bool)> {
    let (d, ffn, q, kv, v) = (
        cfg.hidden as u64,
        cfg.ffn as u64,
        cfg.q_dim() as u64,
        cfg.kv_dim() as u64,
        cfg.n_vocab as u64,
    );
    let mut t = vec![
        ("token_embd.weight".to_string(), vec![d, v], true),
        ("output_norm.weight".to_string(), vec![d], true),
        // Tied embeddings leave it out.
        ("output.weight".to_string(), vec![d, v], false),
    ];
    for i in 0..cfg.n_layer {
        let p = |s: &str| format!("blk.{i}.{s}");
        t.push((p("attn_norm.weight"), vec![d], true));
        t.push((p("attn_q.weight"), vec![d, q], true));
        t.push((p("attn_k.weight"), vec![d, kv], true));
        t.push((p("attn_v.weight"), vec![d, kv], true));
        t.push((p("attn_output.weight"), vec![q, d], true));
        t.push((p("ffn_norm.weight"), vec![d], true));
        t.push((p("ffn_gate.weight"), vec![d, ffn], true));
        t.push((p("ffn_up.weight"), vec![d, ffn], true));
        t.push((p("ffn_down.weight"), vec![ffn, d], true));
        let bias = cfg.arch.qkv_bias;
        t.push((p("attn_q.bias"), vec![q], bias));
        t.push((p("attn_k.bias"), vec![kv], bias));
        t.push((p("attn_v.bias"), vec![kv], bias));
    }
    t
}

fn check_shapes(ctx: &Ctx<'_>, out: &mut Vec<Finding>, _: &mut Report) {
    const C: &str = "shapes";
    let Some(cfg) = &ctx.cfg else {
        out.push(warn(
            C,
            "skipped: the model config could not be read".into(),
        ));
        return;
    };
    let present: HashMap<&str, &apr_formats::TensorInfo> =
        ctx.g.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let exp = expected_tensors(cfg);
    let known: HashSet<&str> = exp.iter().map(|(n, _, _)| n.as_str()).collect();
    for (name, dims, required) in &exp {
        match present.get(name.as_str()) {
            None if *required => out.push(err(
                C,
                format!("{name} is missing ({} needs it)", cfg.arch.name),
            )),
            None => {}
            Some(t) if &t.dims != dims => out.push(err(
                C,
                format!(
                    "{name} has ggml dims {:?}, the config implies {dims:?}",
                    t.dims
                ),
            )),
            Some(_) => {}
        }
    }
    let extra: Vec<&str> = ctx
        .g
        .tensors
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| !known.contains(n) && !n.starts_with("rope_freqs"))
        .collect();
    if !extra.is_empty() {
        let shown: Vec<&str> = extra.iter().take(MAX_LISTED).copied().collect();
        out.push(warn(
            C,
            format!(
                "{} tensor(s) the architecture does not read: {}",
                extra.len(),
                shown.join(", ")
            ),
        ));
    }
}

/// Non-finite values of one tensor: how many, and the first `(row, column)`.
fn scan_tensor(
    g: &Gguf,
    t: &apr_formats::TensorInfo,
    buf: &mut Vec<f32>,
) -> Result<(u64, Option<(u64, u64)>), String> {
    let row = *t.dims.first().unwrap_or(&1) as usize;
    let Some(rb) = t.dtype.bytes_for(row) else {
        return Err(format!(
            "a row of {row} is not a whole number of {} blocks",
            t.dtype
        ));
    };
    let data = g.tensor_data(t);
    let rows = data.len().checked_div(rb).unwrap_or(0);
    let per = (SCAN_CHUNK / row.max(1)).max(1);
    let (mut bad, mut first) = (0u64, None);
    let mut r0 = 0;
    while r0 < rows {
        let n = per.min(rows - r0);
        buf.resize(n * row, 0.0);
        quant::dequantize(t.dtype, &data[r0 * rb..(r0 + n) * rb], buf)
            .map_err(|e| e.to_string())?;
        for (i, x) in buf.iter().enumerate() {
            if !x.is_finite() {
                bad += 1;
                first.get_or_insert(((r0 + i / row) as u64, (i % row) as u64));
            }
        }
        r0 += n;
    }
    Ok((bad, first))
}

fn check_values(ctx: &Ctx<'_>, out: &mut Vec<Finding>, report: &mut Report) {
    const C: &str = "values";
    let g = ctx.g;
    let found = Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    // Threads take whole tensors, largest first, so the big ones do not end up last.
    let mut order: Vec<usize> = (0..g.tensors.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(g.tensors[i].n_bytes));
    ctx.pool.run(|_, _| {
        let mut buf = Vec::new();
        loop {
            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&i) = order.get(k) else { break };
            let t = &g.tensors[i];
            let r = scan_tensor(g, t, &mut buf);
            found.lock().expect("scan lock").push((i, r));
        }
    });
    let mut found = found.into_inner().expect("scan lock");
    found.sort_by_key(|(i, _)| *i);
    for (i, r) in found {
        let t = &g.tensors[i];
        match r {
            Err(e) => out.push(err(C, format!("{}: cannot decode ({e})", t.name))),
            Ok((0, _)) => report.values_scanned += t.n_elements(),
            Ok((n, first)) => {
                report.values_scanned += t.n_elements();
                let (r, c) = first.unwrap_or_default();
                out.push(err(
                    C,
                    format!(
                        "{} ({}): {n} NaN/Inf value(s), the first at row {r}, column {c}",
                        t.name, t.dtype
                    ),
                ));
            }
        }
    }
}

/// The merges of a BPE vocabulary that cannot work: a side or the result missing from the
/// vocabulary, and normal tokens longer than one symbol that no merge produces.
fn merge_findings(tokens: &[&str], types: Option<&[i64]>, merges: &[&str]) -> Vec<String> {
    let id: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut made: HashSet<String> = HashSet::new();
    let mut problems = Vec::new();
    for (k, m) in merges.iter().enumerate() {
        let Some((a, b)) = m.split_once(' ') else {
            problems.push(format!(
                "merge {k} {m:?} is not two symbols separated by a space"
            ));
            continue;
        };
        let ab = format!("{a}{b}");
        for (what, s) in [("left side", a), ("right side", b), ("result", ab.as_str())] {
            if !id.contains_key(s) {
                problems.push(format!(
                    "merge {k} {m:?}: its {what} {s:?} is not in the vocabulary"
                ));
            }
        }
        made.insert(ab);
    }
    for (i, t) in tokens.iter().enumerate() {
        // Type 1 is a normal token; control, user-defined and byte tokens need no merge.
        let normal = types.is_none_or(|ty| ty.get(i) == Some(&1));
        if normal && t.chars().count() > 1 && !made.contains(*t) {
            problems.push(format!(
                "token {i} {t:?} is made by no merge: a merge is missing (it can never be produced)"
            ));
        }
    }
    problems
}

fn check_tokenizer(ctx: &Ctx<'_>, out: &mut Vec<Finding>, _: &mut Report) {
    const C: &str = "tokenizer";
    let g = ctx.g;
    if g.get("tokenizer.ggml.model").and_then(|v| v.as_str()) == Some("gpt2") {
        match (
            g.get_str_array("tokenizer.ggml.tokens"),
            g.get_str_array("tokenizer.ggml.merges"),
        ) {
            (Ok(tokens), Ok(merges)) => {
                let types = g.get_i64_array("tokenizer.ggml.token_type").ok();
                let problems = merge_findings(&tokens, types.as_deref(), &merges);
                let n = problems.len();
                for p in problems.into_iter().take(MAX_LISTED) {
                    out.push(err(C, p));
                }
                if n > MAX_LISTED {
                    out.push(err(
                        C,
                        format!("... and {} more merge problems", n - MAX_LISTED),
                    ));
                }
            }
            (_, Err(e)) | (Err(e), _) => out.push(err(C, format!("BPE vocabulary: {e}"))),
        }
    }
    let tok = match Tokenizer::from_gguf(g) {
        Ok(t) => t,
        Err(e) => {
            out.push(err(C, format!("cannot build the tokenizer: {e}")));
            return;
        }
    };
    match tok
        .encode_raw(SAMPLE_TEXT)
        .and_then(|ids| tok.decode(&ids).map(|s| (ids, s)))
    {
        Ok((_, back)) if back == SAMPLE_TEXT => {}
        Ok((ids, back)) => {
            let at = SAMPLE_TEXT
                .chars()
                .zip(back.chars())
                .take_while(|(a, b)| a == b)
                .count();
            out.push(err(
                C,
                format!(
                    "round trip of the sample text ({} tokens) differs from character {at} on: {:?}",
                    ids.len(),
                    back.chars().skip(at).take(20).collect::<String>()
                ),
            ));
        }
        Err(e) => out.push(err(C, format!("round trip of the sample text: {e}"))),
    }
}

fn check_chat_template(ctx: &Ctx<'_>, out: &mut Vec<Finding>, _: &mut Report) {
    const C: &str = "chat_template";
    if ctx.g.get("tokenizer.chat_template").is_none() {
        out.push(warn(
            C,
            "the file has no chat template (chat and instruct prompts need one)".into(),
        ));
        return;
    }
    let t = match ChatTemplate::from_gguf(ctx.g) {
        Ok(t) => t,
        Err(e) => {
            out.push(err(C, format!("cannot compile: {e}")));
            return;
        }
    };
    let msgs = [
        Message::system("You are a careful assistant."),
        Message::user("Write add(a, b)."),
        Message::assistant("def add(a, b):\n    return a + b"),
        Message::user("Now subtract."),
    ];
    match t.render(&msgs, true, None) {
        Ok(s) => {
            let lost: Vec<&str> = ["Write add(a, b).", "return a + b", "Now subtract."]
                .into_iter()
                .filter(|m| !s.contains(m))
                .collect();
            if !lost.is_empty() {
                out.push(warn(C, format!("the rendered conversation lacks {lost:?}")));
            }
        }
        Err(e) => out.push(err(
            C,
            format!("cannot render a 4-message conversation: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_check_names_the_token_a_missing_merge_leaves_unmade() {
        let tokens = ["a", "b", "c", "ab", "abc", "<s>"];
        let types = [1, 1, 1, 1, 1, 3];
        let merges = ["a b", "ab c"];
        assert!(merge_findings(&tokens, Some(&types), &merges).is_empty());
        let p = merge_findings(&tokens, Some(&types), &["a b"]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("token 4 \"abc\" is made by no merge"),
            "{}",
            p[0]
        );
        let p = merge_findings(&tokens, Some(&types), &["a b", "ab d", "x"]);
        assert!(p.iter().any(|m| m.contains("right side \"d\"")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("not two symbols")), "{p:?}");
    }
}

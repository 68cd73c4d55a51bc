//! Code benchmarks as task lists: HumanEval, HumanEval+, MBPP (test split, full, sanitized) and
//! MBPP+, shipped inside the binary (`crates/apr-eval/data/`, licences in its README.md) or read
//! from any file of the same schema (gzip or plain, told apart by the magic bytes).
//!
//! References: <https://github.com/openai/human-eval>, <https://github.com/google-research/google-research/tree/master/mbpp>,
//! <https://github.com/evalplus/evalplus>.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

const HUMANEVAL_FILE: &str = "HumanEval.jsonl.gz";
const HUMANEVAL_PLUS_FILE: &str = "HumanEvalPlus-v0.1.10.jsonl.gz";
const MBPP_FILE: &str = "mbpp.jsonl";
const MBPP_SANITIZED_FILE: &str = "sanitized-mbpp.json";
const MBPP_PLUS_FILE: &str = "MbppPlus-v0.2.0.jsonl.gz";

static HUMANEVAL: &[u8] = include_bytes!("../data/HumanEval.jsonl.gz");
static HUMANEVAL_PLUS: &[u8] = include_bytes!("../data/HumanEvalPlus-v0.1.10.jsonl.gz");
static MBPP: &[u8] = include_bytes!("../data/mbpp.jsonl");
static MBPP_SANITIZED: &[u8] = include_bytes!("../data/sanitized-mbpp.json");
static MBPP_PLUS: &[u8] = include_bytes!("../data/MbppPlus-v0.2.0.jsonl.gz");

/// The MBPP test split (Austin et al. 2021): task ids 11..=510.
pub const MBPP_TEST_SPLIT: std::ops::RangeInclusive<u64> = 11..=510;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Names that a test assertion may call before the function under test (`set(f(x)) == ...`).
const NOT_ENTRY_POINTS: &[&str] = &[
    "assert",
    "set",
    "sorted",
    "list",
    "tuple",
    "dict",
    "abs",
    "round",
    "len",
    "str",
    "int",
    "float",
    "bool",
    "frozenset",
    "all",
    "any",
    "sum",
    "min",
    "max",
    "isclose",
    "math",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Benchmark {
    HumanEval,
    HumanEvalPlus,
    Mbpp,
    MbppPlus,
}

impl Benchmark {
    pub const ALL: [Benchmark; 4] = [
        Benchmark::HumanEval,
        Benchmark::HumanEvalPlus,
        Benchmark::Mbpp,
        Benchmark::MbppPlus,
    ];

    /// The EvalPlus versions, judged by differential testing against the canonical solution.
    pub fn is_plus(self) -> bool {
        matches!(self, Benchmark::HumanEvalPlus | Benchmark::MbppPlus)
    }

    /// HumanEval-style (function prompt + completion) rather than MBPP-style (whole program).
    pub fn is_humaneval_family(self) -> bool {
        matches!(self, Benchmark::HumanEval | Benchmark::HumanEvalPlus)
    }

    pub fn name(self) -> &'static str {
        match self {
            Benchmark::HumanEval => "humaneval",
            Benchmark::HumanEvalPlus => "humanevalplus",
            Benchmark::Mbpp => "mbpp",
            Benchmark::MbppPlus => "mbppplus",
        }
    }
}

impl fmt::Display for Benchmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Benchmark {
    type Err = DatasetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Benchmark::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| DatasetError::UnknownBenchmark(s.to_string()))
    }
}

/// Which MBPP tasks: the test split (default), all 974, or the 427 hand-verified ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Subset {
    #[default]
    Test,
    Full,
    Sanitized,
}

impl fmt::Display for Subset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Subset::Test => "test",
            Subset::Full => "full",
            Subset::Sanitized => "sanitized",
        })
    }
}

impl FromStr for Subset {
    type Err = DatasetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "test" => Ok(Subset::Test),
            "full" => Ok(Subset::Full),
            "sanitized" => Ok(Subset::Sanitized),
            _ => Err(DatasetError::UnknownSubset(s.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// "HumanEval/0", "Mbpp/2" (MBPP, MBPP sanitized and MBPP+ all use "Mbpp/<n>").
    pub task_id: String,
    /// HumanEval(+): the function prompt; MBPP: `text` (sanitized: `prompt`); MBPP+: the
    /// record's `prompt` (a docstring with the task text and one assertion).
    pub prompt: String,
    /// The function the tests call (MBPP: the one called by the first assertion).
    pub entry_point: String,
    /// HumanEval(+): body to append to the prompt; MBPP / MBPP+: the whole program.
    pub canonical_solution: String,
    /// MBPP: the `test_list` assertions; MBPP+: the `assertion` lines; HumanEval(+): empty.
    pub tests: Vec<String>,
    /// HumanEval(+): `test` (defines `check`); MBPP: `test_setup_code` (+ sanitized
    /// `test_imports`, one per line); MBPP+: empty.
    pub test_code: String,
    /// The record's original JSON text (MBPP+ holds bare `-Infinity` tokens: the Python judge
    /// parses this, not the fields above).
    pub raw: String,
}

impl Task {
    /// The program EvalPlus runs as the canonical solution: `prompt + canonical_solution`
    /// (for MBPP+ the prompt is a docstring, so this is still a valid program).
    pub fn canonical_program(&self, benchmark: Benchmark) -> String {
        match benchmark {
            Benchmark::Mbpp => self.canonical_solution.clone(),
            _ => format!("{}{}", self.prompt, self.canonical_solution),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub benchmark: Benchmark,
    /// MBPP only: the subset actually loaded (`Some(Test)` when none was asked for).
    pub subset: Option<Subset>,
    /// sha256 of the file bytes as shipped or read (compressed bytes for a .gz).
    pub sha256: String,
    /// "builtin:<file name>" or the path given.
    pub source: String,
    pub tasks: Vec<Task>,
}

impl Dataset {
    pub fn task(&self, task_id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.task_id == task_id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("unknown benchmark {0:?} (expected humaneval, humanevalplus, mbpp or mbppplus)")]
    UnknownBenchmark(String),
    #[error("unknown subset {0:?} (expected test, full or sanitized)")]
    UnknownSubset(String),
    #[error("--subset {subset} applies to mbpp only, not {benchmark}")]
    SubsetNotApplicable {
        benchmark: Benchmark,
        subset: Subset,
    },
    #[error("cannot read dataset {file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("dataset {file} is not valid gzip: {source}")]
    Gzip {
        file: String,
        source: std::io::Error,
    },
    #[error("dataset {file}, {at}: {msg}")]
    Record {
        file: String,
        /// "line 12" (JSON lines) or "record 7" (a JSON array file).
        at: String,
        msg: String,
    },
    #[error("dataset {file} holds no {benchmark} tasks{hint}")]
    Empty {
        file: String,
        benchmark: Benchmark,
        hint: String,
    },
}

/// Load a benchmark from the builtin copy or from `data` (same schema, gzip or plain).
pub fn load(
    b: Benchmark,
    subset: Option<Subset>,
    data: Option<&Path>,
) -> Result<Dataset, DatasetError> {
    let subset = match (b, subset) {
        (Benchmark::Mbpp, s) => Some(s.unwrap_or_default()),
        // "full" is every task of the others, so it is harmless to accept.
        (_, None | Some(Subset::Full)) => None,
        (_, Some(s)) => {
            return Err(DatasetError::SubsetNotApplicable {
                benchmark: b,
                subset: s,
            })
        }
    };
    let (source, bytes): (String, Cow<'static, [u8]>) = match data {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| DatasetError::Io {
                file: p.display().to_string(),
                source: e,
            })?;
            (p.display().to_string(), Cow::Owned(bytes))
        }
        None => {
            let (name, bytes) = builtin(b, subset);
            (format!("builtin:{name}"), Cow::Borrowed(bytes))
        }
    };
    from_bytes(b, subset, &source, &bytes)
}

/// The shipped file for a benchmark (and MBPP subset): its name and bytes.
pub fn builtin(b: Benchmark, subset: Option<Subset>) -> (&'static str, &'static [u8]) {
    match b {
        Benchmark::HumanEval => (HUMANEVAL_FILE, HUMANEVAL),
        Benchmark::HumanEvalPlus => (HUMANEVAL_PLUS_FILE, HUMANEVAL_PLUS),
        Benchmark::Mbpp if subset == Some(Subset::Sanitized) => {
            (MBPP_SANITIZED_FILE, MBPP_SANITIZED)
        }
        Benchmark::Mbpp => (MBPP_FILE, MBPP),
        Benchmark::MbppPlus => (MBPP_PLUS_FILE, MBPP_PLUS),
    }
}

/// Parse a dataset from file bytes; `source` names it in errors and in [`Dataset::source`].
pub fn from_bytes(
    b: Benchmark,
    subset: Option<Subset>,
    source: &str,
    bytes: &[u8],
) -> Result<Dataset, DatasetError> {
    let sha256 = hex(&Sha256::digest(bytes));
    let text = decompress(source, bytes)?;
    let text = std::str::from_utf8(&text).map_err(|e| DatasetError::Record {
        file: source.to_string(),
        at: format!("byte {}", e.valid_up_to()),
        msg: "not valid UTF-8".into(),
    })?;
    let records = records(source, text)?;
    let mut tasks = Vec::with_capacity(records.len());
    for r in &records {
        let rec = Rec {
            file: source,
            at: &r.at,
            obj: &r.obj,
        };
        let task = match b {
            Benchmark::HumanEval | Benchmark::HumanEvalPlus => humaneval_task(&rec, r.raw.clone())?,
            Benchmark::Mbpp => match mbpp_task(&rec, r.raw.clone(), subset.unwrap_or_default())? {
                Some(t) => t,
                None => continue,
            },
            Benchmark::MbppPlus => mbppplus_task(&rec, r.raw.clone())?,
        };
        tasks.push(task);
    }
    if tasks.is_empty() {
        let hint = if b == Benchmark::Mbpp && subset == Some(Subset::Test) {
            " in the test split (task ids 11-510); try --subset full".to_string()
        } else {
            String::new()
        };
        return Err(DatasetError::Empty {
            file: source.to_string(),
            benchmark: b,
            hint,
        });
    }
    Ok(Dataset {
        benchmark: b,
        subset,
        sha256,
        source: source.to_string(),
        tasks,
    })
}

fn decompress<'a>(source: &str, bytes: &'a [u8]) -> Result<Cow<'a, [u8]>, DatasetError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| DatasetError::Gzip {
            file: source.to_string(),
            source: e,
        })?;
    Ok(Cow::Owned(out))
}

struct RawRecord {
    at: String,
    raw: String,
    obj: Map<String, Value>,
}

/// JSON lines, or one JSON array of objects (the sanitized-MBPP layout).
fn records(source: &str, text: &str) -> Result<Vec<RawRecord>, DatasetError> {
    let err = |at: String, msg: String| DatasetError::Record {
        file: source.to_string(),
        at,
        msg,
    };
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('[') {
        let v: Value = serde_json::from_str(&json_compat(trimmed))
            .map_err(|e| err(format!("line {}", e.line()), format!("invalid JSON: {e}")))?;
        let Value::Array(items) = v else {
            unreachable!("starts with [")
        };
        return items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(obj) => Ok(RawRecord {
                    at: format!("record {}", i + 1),
                    raw: Value::Object(obj.clone()).to_string(),
                    obj,
                }),
                _ => Err(err(format!("record {}", i + 1), "not a JSON object".into())),
            })
            .collect();
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("line {}", i + 1);
        let v: Value = serde_json::from_str(&json_compat(line))
            .map_err(|e| err(at.clone(), format!("invalid JSON: {e}")))?;
        match v {
            Value::Object(obj) => out.push(RawRecord {
                at,
                raw: line.to_string(),
                obj,
            }),
            _ => return Err(err(at, "not a JSON object".into())),
        }
    }
    Ok(out)
}

/// Python's json writes NaN / Infinity / -Infinity as bare tokens; serde_json rejects them.
/// Outside strings they become `null` here (only the metadata is read on the Rust side).
pub fn json_compat(s: &str) -> Cow<'_, str> {
    const TOKENS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];
    let b = s.as_bytes();
    let mut out: Option<String> = None;
    let (mut in_str, mut esc, mut last) = (false, false, 0);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_str = true;
            i += 1;
            continue;
        }
        if let Some(t) = TOKENS.iter().find(|t| b[i..].starts_with(t.as_bytes())) {
            let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
            o.push_str(&s[last..i]);
            o.push_str("null");
            i += t.len();
            last = i;
            continue;
        }
        i += 1;
    }
    match out {
        None => Cow::Borrowed(s),
        Some(mut o) => {
            o.push_str(&s[last..]);
            Cow::Owned(o)
        }
    }
}

struct Rec<'a> {
    file: &'a str,
    at: &'a str,
    obj: &'a Map<String, Value>,
}

impl Rec<'_> {
    fn err(&self, msg: String) -> DatasetError {
        DatasetError::Record {
            file: self.file.to_string(),
            at: self.at.to_string(),
            msg,
        }
    }
    fn get(&self, field: &str) -> Result<&Value, DatasetError> {
        self.obj
            .get(field)
            .ok_or_else(|| self.err(format!("missing field {field:?}")))
    }
    fn str(&self, field: &str) -> Result<String, DatasetError> {
        match self.get(field)? {
            Value::String(s) => Ok(s.clone()),
            other => Err(self.err(format!(
                "field {field:?} should be a string, found {}",
                kind(other)
            ))),
        }
    }
    fn opt_str(&self, field: &str) -> Result<String, DatasetError> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(_) => self.str(field),
        }
    }
    fn strings(&self, field: &str) -> Result<Vec<String>, DatasetError> {
        let bad = || self.err(format!("field {field:?} should be a list of strings"));
        match self.get(field)? {
            Value::Array(a) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
                .collect(),
            _ => Err(bad()),
        }
    }
    fn int(&self, field: &str) -> Result<u64, DatasetError> {
        match self.get(field)? {
            Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64().unwrap_or_default()),
            // Some copies store MBPP task ids as strings ("Mbpp/2" or "2").
            Value::String(s) => s
                .rsplit('/')
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| self.err(format!("field {field:?} = {s:?} is not a task number"))),
            other => Err(self.err(format!(
                "field {field:?} should be an integer, found {}",
                kind(other)
            ))),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn humaneval_task(r: &Rec, raw: String) -> Result<Task, DatasetError> {
    Ok(Task {
        task_id: r.str("task_id")?,
        prompt: r.str("prompt")?,
        entry_point: r.str("entry_point")?,
        canonical_solution: r.str("canonical_solution")?,
        tests: Vec::new(),
        test_code: r.opt_str("test")?,
        raw,
    })
}

/// An original-schema (`text`, `code`, `test_setup_code`) or sanitized-schema (`prompt`,
/// `code`, `test_imports`) MBPP record; None when the subset leaves it out.
fn mbpp_task(r: &Rec, raw: String, subset: Subset) -> Result<Option<Task>, DatasetError> {
    let id = r.int("task_id")?;
    if subset == Subset::Test && !MBPP_TEST_SPLIT.contains(&id) {
        return Ok(None);
    }
    let sanitized = !r.obj.contains_key("text") && r.obj.contains_key("prompt");
    let prompt = r.str(if sanitized { "prompt" } else { "text" })?;
    let code = r.str("code")?;
    let tests = r.strings("test_list")?;
    let mut test_code = r.opt_str("test_setup_code")?;
    if r.obj.contains_key("test_imports") {
        let imports = r.strings("test_imports")?;
        if !imports.is_empty() {
            if !test_code.is_empty() && !test_code.ends_with('\n') {
                test_code.push('\n');
            }
            test_code.push_str(&imports.join("\n"));
        }
    }
    let first = tests
        .first()
        .ok_or_else(|| r.err("empty test_list".into()))?;
    let entry_point = mbpp_entry_point(first, &code).ok_or_else(|| {
        r.err(format!(
            "no function call found in the first assertion {first:?}"
        ))
    })?;
    Ok(Some(Task {
        task_id: format!("Mbpp/{id}"),
        prompt,
        entry_point,
        canonical_solution: code,
        tests,
        test_code,
        raw,
    }))
}

fn mbppplus_task(r: &Rec, raw: String) -> Result<Task, DatasetError> {
    let task_id = match r.get("task_id")? {
        Value::String(s) => s.clone(),
        _ => format!("Mbpp/{}", r.int("task_id")?),
    };
    let tests = r
        .opt_str("assertion")?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    Ok(Task {
        task_id,
        prompt: r.str("prompt")?,
        entry_point: r.str("entry_point")?,
        canonical_solution: r.str("canonical_solution")?,
        tests,
        test_code: String::new(),
        raw,
    })
}

/// The function an MBPP assertion tests: the first called name that `code` defines, else the
/// first called name that is not a builtin wrapper like `set(...)`.
pub fn mbpp_entry_point(assertion: &str, code: &str) -> Option<String> {
    let calls = called_names(assertion);
    let defined = |n: &str| {
        code.lines().any(|l| {
            let l = l.trim_start();
            l.strip_prefix("def ")
                .map(|rest| {
                    rest.trim_start().starts_with(n)
                        && rest.trim_start()[n.len()..].trim_start().starts_with('(')
                })
                .unwrap_or(false)
        })
    };
    calls
        .iter()
        .find(|n| defined(n))
        .or_else(|| {
            calls
                .iter()
                .find(|n| !NOT_ENTRY_POINTS.contains(&n.as_str()))
        })
        .cloned()
}

/// Identifiers directly followed by `(` (attribute calls like `math.isclose(` give `isclose`).
fn called_names(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' {
            // Skip string literals so `f("a(b")` does not yield `a`.
            let q = c;
            i += 1;
            while i < b.len() && b[i] != q {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let mut j = i;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            if j < b.len() && b[j] == b'(' && (start == 0 || !b[start - 1].is_ascii_digit()) {
                out.push(s[start..i].to_string());
            }
            continue;
        }
        i += 1;
    }
    out
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_counts_and_hashes() {
        let he = load(Benchmark::HumanEval, None, None).unwrap();
        assert_eq!(he.tasks.len(), 164);
        assert_eq!(
            he.sha256,
            "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
        );
        assert_eq!(he.tasks[0].task_id, "HumanEval/0");
        assert!(he.tasks[0].test_code.contains("def check("));
        let hep = load(Benchmark::HumanEvalPlus, None, None).unwrap();
        assert_eq!(hep.tasks.len(), 164);
        assert_eq!(hep.source, "builtin:HumanEvalPlus-v0.1.10.jsonl.gz");
        let mbpp = load(Benchmark::Mbpp, None, None).unwrap();
        assert_eq!(mbpp.tasks.len(), 500);
        assert_eq!(mbpp.subset, Some(Subset::Test));
        assert_eq!(mbpp.tasks[0].task_id, "Mbpp/11");
        assert_eq!(mbpp.tasks[0].entry_point, "remove_Occ");
        let full = load(Benchmark::Mbpp, Some(Subset::Full), None).unwrap();
        assert_eq!(full.tasks.len(), 974);
        let san = load(Benchmark::Mbpp, Some(Subset::Sanitized), None).unwrap();
        assert_eq!(san.tasks.len(), 427);
        assert_eq!(san.tasks[0].task_id, "Mbpp/2");
        assert_eq!(san.tasks[0].entry_point, "similar_elements");
        let mp = load(Benchmark::MbppPlus, None, None).unwrap();
        assert_eq!(mp.tasks.len(), 378);
        assert_eq!(
            mp.sha256,
            "af43697e8791c4c149bdfd6b489d8b5412507551ac20e28a439f650b8225db63"
        );
        let t404 = mp.task("Mbpp/404").unwrap();
        assert!(t404.raw.contains("Infinity"));
        assert!(!mp.tasks[0].tests.is_empty());
    }

    #[test]
    fn entry_points_of_every_mbpp_task_are_defined() {
        for subset in [Subset::Full, Subset::Sanitized] {
            let d = load(Benchmark::Mbpp, Some(subset), None).unwrap();
            for t in &d.tasks {
                assert!(
                    t.canonical_solution
                        .contains(&format!("def {}", t.entry_point)),
                    "{} {}: {}",
                    subset,
                    t.task_id,
                    t.entry_point
                );
            }
        }
    }

    #[test]
    fn names_parse_and_print() {
        for b in Benchmark::ALL {
            assert_eq!(b.to_string().parse::<Benchmark>().unwrap(), b);
        }
        assert_eq!("Sanitized".parse::<Subset>().unwrap(), Subset::Sanitized);
        assert!("humaneval+".parse::<Benchmark>().is_err());
        assert!(matches!(
            load(Benchmark::HumanEval, Some(Subset::Sanitized), None),
            Err(DatasetError::SubsetNotApplicable { .. })
        ));
    }

    #[test]
    fn bare_float_tokens_become_null_outside_strings() {
        assert_eq!(
            json_compat(r#"[1, -Infinity, "NaN x", NaN]"#),
            r#"[1, null, "NaN x", null]"#
        );
        assert_eq!(
            json_compat(r#"{"a": "\"Infinity"}"#),
            r#"{"a": "\"Infinity"}"#
        );
    }

    #[test]
    fn malformed_files_name_file_and_line() {
        let good = r#"{"task_id": "HumanEval/0", "prompt": "p", "entry_point": "f", "canonical_solution": "c", "test": "t"}"#;
        let bad = format!("{good}\n\n{{\"task_id\": 3}}\n");
        let e = from_bytes(Benchmark::HumanEval, None, "x.jsonl", bad.as_bytes()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("x.jsonl") && msg.contains("line 3"), "{msg}");
        let e = from_bytes(Benchmark::HumanEval, None, "y.jsonl", b"{oops\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = from_bytes(Benchmark::HumanEval, None, "z.gz", &[0x1f, 0x8b, 1, 2, 3]).unwrap_err();
        assert!(matches!(e, DatasetError::Gzip { .. }), "{e}");
        let e = from_bytes(Benchmark::HumanEval, None, "e.jsonl", b"\n").unwrap_err();
        assert!(matches!(e, DatasetError::Empty { .. }), "{e}");
        let ok = from_bytes(Benchmark::HumanEval, None, "g.jsonl", good.as_bytes()).unwrap();
        assert_eq!(ok.tasks[0].raw, good);
    }
}

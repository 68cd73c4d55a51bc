//! Provenance of the files apr writes: which command made them, from what (path and sha256)
//! and with which apr version, as GGUF key-values under `apr.` (safetensors outputs carry the
//! same keys in their `__metadata__`). Each stage appends one record to `apr.history`, so a
//! file made by a chain of commands names every step back to its first source.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::Value;

/// Key of the list of stage records (JSON strings, oldest first).
pub const HISTORY_KEY: &str = "apr.history";

/// One stage that wrote a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// The command line, as typed (`apr quantize in.gguf out.gguf --type q4_k_m`).
    pub command: String,
    /// The input's path, as given.
    pub source: String,
    /// sha256 of the input (for a directory: of its files' names and hashes, see [`dir_sha256`]).
    pub source_sha256: String,
    /// The apr version that wrote the file.
    pub version: String,
}

impl Provenance {
    /// A record for `command` run on `source` (hashed here) by this build of apr.
    pub fn of(command: String, source: &Path, version: &str) -> std::io::Result<Self> {
        let source_sha256 = if source.is_dir() {
            dir_sha256(source)?
        } else {
            file_sha256(source)?
        };
        Ok(Provenance {
            command,
            source: source.display().to_string(),
            source_sha256,
            version: version.to_string(),
        })
    }

    /// The stage as one JSON object (a line of `apr.history`).
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "command": self.command,
            "source": self.source,
            "source_sha256": self.source_sha256,
            "version": self.version,
        })
        .to_string()
    }

    /// The `apr.` key-values of an output whose input had metadata `prev`: this stage's keys,
    /// and the input's history with this stage appended. Every other `apr.` key of the input
    /// is left out (it described the input, not this file).
    pub fn gguf_kv(&self, prev: &BTreeMap<String, Value>) -> Vec<(String, Value)> {
        let mut history: Vec<Value> = prev
            .get(HISTORY_KEY)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter(|v| v.as_str().is_some()).cloned().collect())
            .unwrap_or_default();
        history.push(Value::String(self.to_json()));
        vec![
            ("apr.command".into(), Value::String(self.command.clone())),
            ("apr.source".into(), Value::String(self.source.clone())),
            (
                "apr.source_sha256".into(),
                Value::String(self.source_sha256.clone()),
            ),
            ("apr.version".into(), Value::String(self.version.clone())),
            (HISTORY_KEY.into(), Value::Array(history)),
        ]
    }

    /// The same keys as strings (safetensors `__metadata__`); `apr.history` is a JSON array.
    pub fn string_kv(&self, prev_history: &[String]) -> Vec<(String, String)> {
        let mut history: Vec<serde_json::Value> = prev_history
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect();
        history.push(serde_json::from_str(&self.to_json()).expect("our own JSON"));
        vec![
            ("apr.command".into(), self.command.clone()),
            ("apr.source".into(), self.source.clone()),
            ("apr.source_sha256".into(), self.source_sha256.clone()),
            ("apr.version".into(), self.version.clone()),
            (
                HISTORY_KEY.into(),
                serde_json::Value::Array(history).to_string(),
            ),
        ]
    }
}

/// Drops the `apr.` keys of an input's metadata (an output gets its own from [`Provenance`]).
pub fn without_apr_keys(meta: &BTreeMap<String, Value>) -> Vec<(String, Value)> {
    meta.iter()
        .filter(|(k, _)| !k.starts_with("apr."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a file, hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// sha256 of a directory's regular files (not recursive): of the lines `<sha256>  <name>\n`
/// in name order, so it changes when any file's name or content does.
pub fn dir_sha256(dir: &Path) -> std::io::Result<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut h = Sha256::new();
    for n in names {
        h.update(format!("{}  {n}\n", file_sha256(&dir.join(&n))?).as_bytes());
    }
    Ok(hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_grows_by_one_stage_and_old_apr_keys_go() {
        let p1 = Provenance {
            command: "apr import a b".into(),
            source: "a".into(),
            source_sha256: "00".into(),
            version: "0.1.0".into(),
        };
        let mut meta = BTreeMap::new();
        meta.insert("general.name".to_string(), Value::String("m".into()));
        meta.insert("apr.command".to_string(), Value::String("stale".into()));
        let kv1 = p1.gguf_kv(&meta);
        let mut out: BTreeMap<String, Value> = without_apr_keys(&meta).into_iter().collect();
        assert!(!out.contains_key("apr.command"));
        out.extend(kv1);
        let p2 = Provenance {
            command: "apr quantize b c".into(),
            ..p1.clone()
        };
        let kv2: BTreeMap<String, Value> = p2.gguf_kv(&out).into_iter().collect();
        let h = kv2[HISTORY_KEY].as_array().unwrap();
        assert_eq!(h.len(), 2);
        let last: serde_json::Value = serde_json::from_str(h[1].as_str().unwrap()).unwrap();
        assert_eq!(last["command"], "apr quantize b c");
        assert_eq!(kv2["apr.command"], Value::String("apr quantize b c".into()));
    }

    #[test]
    fn file_hash_is_sha256() {
        let p = std::env::temp_dir().join(format!("apr-prov-{}.txt", std::process::id()));
        std::fs::write(&p, b"abc").unwrap();
        // FIPS 180-2's test vector for "abc".
        assert_eq!(
            file_sha256(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::remove_file(&p).unwrap();
    }
}

//! Repo ids (`owner/name`), `REPO[/FILE]` targets, file-name safety and the glob patterns that
//! pick a snapshot's files.

use std::path::PathBuf;

use crate::error::{HubError, Result};

/// What a snapshot pull takes by default: what a Hugging Face model directory needs to load.
pub const DEFAULT_SNAPSHOT_PATTERNS: &[&str] = &[
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
];

/// Longest repo owner or name the Hub allows.
const MAX_NAME_LEN: usize = 96;

/// A Hugging Face model repo, `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoId {
    pub owner: String,
    pub name: String,
}

impl RepoId {
    /// `owner/name`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why| HubError::BadRepoId {
            given: s.to_string(),
            why,
        };
        let (owner, name) = s.split_once('/').ok_or(bad("expected owner/name"))?;
        for part in [owner, name] {
            check_name(part).map_err(bad)?;
        }
        Ok(RepoId {
            owner: owner.to_string(),
            name: name.to_string(),
        })
    }

    /// The directory name of the snapshot in the model cache: `owner--name`.
    pub fn cache_dir_name(&self) -> String {
        format!("{}--{}", self.owner, self.name)
    }
}

impl std::fmt::Display for RepoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

fn check_name(part: &str) -> std::result::Result<(), &'static str> {
    if part.is_empty() {
        return Err("owner and name must not be empty");
    }
    if part.len() > MAX_NAME_LEN {
        return Err("owner or name is longer than 96 characters");
    }
    if !part
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("only letters, digits, '-', '_' and '.' are allowed");
    }
    if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) || part.contains("--") {
        return Err("'-' and '.' may not start or end a part, nor '--' appear");
    }
    Ok(())
}

/// `REPO` or `REPO/FILE`: the first two parts are the repo, the rest (if any) a file in it.
pub fn parse_target(s: &str) -> Result<(RepoId, Option<String>)> {
    let s = s.trim_end_matches('/');
    let mut parts = s.splitn(3, '/');
    let (owner, name) = (parts.next().unwrap_or(""), parts.next());
    let Some(name) = name else {
        return Err(HubError::BadRepoId {
            given: s.to_string(),
            why: "expected owner/name or owner/name/file",
        });
    };
    let repo = RepoId::parse(&format!("{owner}/{name}"))?;
    let file = parts.next().map(str::to_string);
    if let Some(f) = &file {
        safe_relative_path(f)?;
    }
    Ok((repo, file))
}

/// The repo file name as a relative path, refusing anything that could escape the target dir.
pub fn safe_relative_path(name: &str) -> Result<PathBuf> {
    let unsafe_name = || HubError::UnsafePath {
        name: name.to_string(),
    };
    if name.is_empty() || name.starts_with('/') || name.contains('\\') || name.contains('\0') {
        return Err(unsafe_name());
    }
    let mut p = PathBuf::new();
    for seg in name.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." || seg.contains(':') {
            return Err(unsafe_name());
        }
        p.push(seg);
    }
    Ok(p)
}

/// Shell-style match of a repo path: `*` and `?` stay within one `/`-separated part, `**`
/// matches across parts.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = p[2..].strip_prefix(b"/").unwrap_or(&p[2..]);
                (0..=n.len()).any(|i| go(rest, &n[i..]))
            }
            Some(b'*') => {
                let stop = n.iter().position(|&c| c == b'/').unwrap_or(n.len());
                (0..=stop).any(|i| go(&p[1..], &n[i..]))
            }
            Some(b'?') => n.first().is_some_and(|&c| c != b'/') && go(&p[1..], &n[1..]),
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        let r = RepoId::parse("Qwen/Qwen2.5-Coder-0.5B-Instruct").unwrap();
        assert_eq!(r.cache_dir_name(), "Qwen--Qwen2.5-Coder-0.5B-Instruct");
        for bad in [
            "Qwen", "/x", "a/", "a/b c", "a/../b", "a/-x", "a/x--y", "..//x",
        ] {
            assert!(RepoId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets() {
        let (r, f) = parse_target("Qwen/Q-GGUF/q4_k_m.gguf").unwrap();
        assert_eq!(
            (r.to_string(), f.as_deref()),
            ("Qwen/Q-GGUF".into(), Some("q4_k_m.gguf"))
        );
        let (r, f) = parse_target("a/b/sub/dir/x.bin").unwrap();
        assert_eq!(
            (r.to_string(), f.as_deref()),
            ("a/b".into(), Some("sub/dir/x.bin"))
        );
        assert_eq!(parse_target("a/b/").unwrap().1, None);
        assert!(parse_target("gpt2").is_err());
        assert!(parse_target("a/b/../../etc/passwd").is_err());
        assert!(parse_target("a/b/x//y").is_err());
    }

    #[test]
    fn unsafe_paths() {
        assert!(safe_relative_path("a/b.json").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "a/../../x",
            "..",
            "a\\b",
            "./a",
            "c:x",
            "a//b",
        ] {
            assert!(safe_relative_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match(
            "*.safetensors",
            "model-00001-of-00002.safetensors"
        ));
        assert!(!glob_match("*.safetensors", "onnx/model.safetensors"));
        assert!(glob_match("**/*.safetensors", "onnx/model.safetensors"));
        assert!(glob_match("**.json", "a/b/c.json"));
        assert!(glob_match("config.json", "config.json"));
        assert!(!glob_match("config.json", "config.jsonx"));
        assert!(glob_match("tokenizer*", "tokenizer_config.json"));
        assert!(glob_match(
            "model-?????-of-*.safetensors",
            "model-00001-of-00002.safetensors"
        ));
        assert!(!glob_match("*.gguf", "x.safetensors"));
    }
}

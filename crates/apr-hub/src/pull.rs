//! `pull`: one file of a repo into the model cache, or a repo snapshot (the files a Hugging
//! Face model directory needs, or those matching `include`) into `<cache>/<owner>--<name>/`.

use std::path::PathBuf;

use crate::client::Hub;
use crate::error::{HubError, Result};
use crate::repo::{glob_match, safe_relative_path, RepoId, DEFAULT_SNAPSHOT_PATTERNS};

/// The revision pulled when none is given.
pub const DEFAULT_REVISION: &str = "main";
/// File names shown when nothing matches the patterns.
const SHOWN_WHEN_NO_MATCH: usize = 20;

/// What to pull and where.
#[derive(Debug, Clone)]
pub struct PullSpec {
    pub repo: RepoId,
    /// One file of the repo; None pulls a snapshot.
    pub file: Option<String>,
    pub revision: String,
    /// Snapshot patterns; empty takes [`DEFAULT_SNAPSHOT_PATTERNS`].
    pub include: Vec<String>,
    /// The model cache directory.
    pub cache_dir: PathBuf,
}

/// One file in place.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PulledFile {
    /// Its path in the repo.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    #[serde(skip)]
    pub local: PathBuf,
    #[serde(skip)]
    pub downloaded: bool,
}

/// What a pull did (the `--json` object of `apr pull`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PullReport {
    pub repo: String,
    pub revision: String,
    pub commit: Option<String>,
    pub files: Vec<PulledFile>,
    /// The directory the files are in.
    pub dir: PathBuf,
}

/// Pulls `spec`; `on_file` hears of each file once it is in place.
pub fn pull(
    hub: &Hub,
    spec: &PullSpec,
    mut on_file: impl FnMut(&PulledFile),
) -> Result<PullReport> {
    match &spec.file {
        Some(file) => {
            let rel = safe_relative_path(file)?;
            let name = rel
                .file_name()
                .ok_or_else(|| HubError::UnsafePath { name: file.clone() })?;
            let dest = spec.cache_dir.join(name);
            let f = hub.fetch_file(&spec.repo, &spec.revision, file, &dest)?;
            let pulled = PulledFile {
                path: file.clone(),
                bytes: f.bytes,
                sha256: f.sha256,
                local: f.dest,
                downloaded: f.downloaded,
            };
            on_file(&pulled);
            Ok(PullReport {
                repo: spec.repo.to_string(),
                revision: spec.revision.clone(),
                commit: f.commit,
                files: vec![pulled],
                dir: spec.cache_dir.clone(),
            })
        }
        None => snapshot(hub, spec, on_file),
    }
}

fn snapshot(
    hub: &Hub,
    spec: &PullSpec,
    mut on_file: impl FnMut(&PulledFile),
) -> Result<PullReport> {
    let listing = hub.list_files(&spec.repo, &spec.revision)?;
    let patterns: Vec<String> = if spec.include.is_empty() {
        DEFAULT_SNAPSHOT_PATTERNS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        spec.include.clone()
    };
    let names: Vec<&str> = listing
        .siblings
        .iter()
        .map(|s| s.rfilename.as_str())
        .collect();
    let mut chosen: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| patterns.iter().any(|p| glob_match(p, n)))
        .collect();
    chosen.sort_unstable();
    chosen.dedup();
    if chosen.is_empty() {
        let mut shown: Vec<&str> = names.iter().copied().take(SHOWN_WHEN_NO_MATCH).collect();
        if names.len() > SHOWN_WHEN_NO_MATCH {
            shown.push("...");
        }
        return Err(HubError::NoMatch {
            repo: spec.repo.to_string(),
            patterns,
            available: if shown.is_empty() {
                "no files".into()
            } else {
                shown.join(", ")
            },
        });
    }
    // Every file comes from the one commit the listing saw, even if the branch moves meanwhile.
    let commit = listing
        .sha
        .filter(|s| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()));
    let at = commit.as_deref().unwrap_or(&spec.revision);
    let dir = spec.cache_dir.join(spec.repo.cache_dir_name());
    let mut files = Vec::with_capacity(chosen.len());
    let mut seen_commit = commit.clone();
    for name in chosen {
        let dest = dir.join(safe_relative_path(name)?);
        let f = hub.fetch_file(&spec.repo, at, name, &dest)?;
        seen_commit = seen_commit.or(f.commit);
        let pulled = PulledFile {
            path: name.to_string(),
            bytes: f.bytes,
            sha256: f.sha256,
            local: f.dest,
            downloaded: f.downloaded,
        };
        on_file(&pulled);
        files.push(pulled);
    }
    Ok(PullReport {
        repo: spec.repo.to_string(),
        revision: spec.revision.clone(),
        commit: seen_commit,
        files,
        dir,
    })
}

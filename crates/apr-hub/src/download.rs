//! One file from the Hub: its metadata from a HEAD on the `resolve/` URL (commit, ETag, size,
//! the CDN Location), then a GET into `<dest>.part` that resumes with `Range`, a hash check
//! against the ETag, and a rename onto `<dest>` only when the hash matches.
//! Protocol reference: <https://huggingface.co/docs/huggingface_hub/guides/download>.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::client::{self, header, CrossOrigin, Ctx, Hub, ReqError};
use crate::error::{io_at, HubError, Result};
use crate::repo::RepoId;
use crate::url;

/// Copy buffer of the body into the `.part` file.
const CHUNK: usize = 1 << 20;
/// Attempts in all for one file, however much each made progress (a server that drops every
/// connection after a few bytes must not keep us forever).
const MAX_TOTAL_ATTEMPTS: u32 = 100;
const PART_SUFFIX: &str = ".part";
const BAR_TEMPLATE: &str =
    "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}";

/// The hash the Hub promises for a file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Etag {
    /// LFS files: the sha256 of the content.
    Sha256(String),
    /// Files kept in git: the git blob id, sha1 of `blob <len>\0<content>`.
    GitSha1(String),
}

impl Etag {
    /// From an ETag header value (quotes and a weak `W/` prefix dropped); None if it is
    /// neither a sha256 nor a sha1 in hex.
    pub fn parse(raw: &str) -> Option<Etag> {
        let v = raw.trim();
        let v = v.strip_prefix("W/").unwrap_or(v).trim_matches('"');
        let v = v.to_ascii_lowercase();
        if !v.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        match v.len() {
            64 => Some(Etag::Sha256(v)),
            40 => Some(Etag::GitSha1(v)),
            _ => None,
        }
    }
}

/// What the Hub says about one file before we download it.
#[derive(Debug, Clone)]
pub struct FileMeta {
    pub commit: Option<String>,
    pub etag: Etag,
    pub size: Option<u64>,
    /// Where the bytes are: the resolve URL itself, or the CDN it redirects to.
    pub url: String,
}

/// A file in place and verified.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub dest: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    pub commit: Option<String>,
    /// False when the file was already there and matched (nothing was downloaded).
    pub downloaded: bool,
}

/// The hashes of a file's content.
struct Hashes {
    bytes: u64,
    sha256: String,
    git_sha1: Option<String>,
}

impl Hub {
    /// HEAD on the resolve URL: follows same-origin redirects (a renamed repo), stops at the
    /// redirect to the CDN, whose headers describe the file.
    pub fn file_meta(&self, repo: &RepoId, revision: &str, path: &str) -> Result<FileMeta> {
        let start = self.resolve_url(repo, revision, path);
        let ctx = Ctx {
            repo,
            revision,
            file: Some(path),
        };
        let reply = self.request_ok("HEAD", &start, CrossOrigin::Stop, ctx)?;
        let h = &reply.headers;
        let url = if (300..400).contains(&reply.status) {
            let loc = header(h, "location").unwrap_or_default();
            url::join(&reply.url, &loc).ok_or_else(|| HubError::BadRedirect {
                url: reply.url.clone(),
                location: loc,
            })?
        } else {
            reply.url.clone()
        };
        let etag = header(h, "x-linked-etag")
            .or_else(|| header(h, "etag"))
            .and_then(|e| Etag::parse(&e))
            .ok_or(HubError::NoEtag { url: start })?;
        let size = header(h, "x-linked-size")
            .or_else(|| {
                (reply.status == 200)
                    .then(|| header(h, "content-length"))
                    .flatten()
            })
            .and_then(|s| s.parse::<u64>().ok());
        Ok(FileMeta {
            commit: header(h, "x-repo-commit"),
            etag,
            size,
            url,
        })
    }

    /// `repo/path` at `revision` into `dest`: verified in place, or downloaded (resuming a
    /// `.part` left beside it), checked against the ETag and renamed onto `dest`.
    pub fn fetch_file(
        &self,
        repo: &RepoId,
        revision: &str,
        path: &str,
        dest: &Path,
    ) -> Result<Fetched> {
        let meta = self.file_meta(repo, revision, path)?;
        if dest.is_file() {
            let h = hash_file(dest, &meta.etag)?;
            if matches(&h, &meta.etag) {
                // A leftover from an earlier, superseded download.
                let _ = std::fs::remove_file(part_path(dest));
                return Ok(Fetched {
                    dest: dest.to_path_buf(),
                    bytes: h.bytes,
                    sha256: h.sha256,
                    commit: meta.commit,
                    downloaded: false,
                });
            }
        }
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        }
        let part = part_path(dest);
        let ctx = Ctx {
            repo,
            revision,
            file: Some(path),
        };
        self.download_to_part(&meta, &part, path, ctx)?;
        let h = hash_file(&part, &meta.etag)?;
        if !matches(&h, &meta.etag) {
            let _ = std::fs::remove_file(&part);
            let (algo, actual, expected) = match &meta.etag {
                Etag::Sha256(e) => ("sha256", h.sha256.clone(), e.clone()),
                Etag::GitSha1(e) => (
                    "git blob sha1",
                    h.git_sha1.clone().unwrap_or_default(),
                    e.clone(),
                ),
            };
            return Err(HubError::HashMismatch {
                path: dest.to_path_buf(),
                algo,
                expected,
                actual,
            });
        }
        std::fs::rename(&part, dest).map_err(io_at(dest))?;
        if let Some(dir) = dest.parent().and_then(|d| File::open(d).ok()) {
            // The rename is durable only once the directory is synced.
            let _ = dir.sync_all();
        }
        Ok(Fetched {
            dest: dest.to_path_buf(),
            bytes: h.bytes,
            sha256: h.sha256,
            commit: meta.commit,
            downloaded: true,
        })
    }

    /// Fills `part` with the file's bytes, resuming what is there; retries dropped transfers.
    fn download_to_part(
        &self,
        meta: &FileMeta,
        part: &Path,
        name: &str,
        ctx: Ctx<'_>,
    ) -> Result<()> {
        let bar = self.bar(meta.size, name);
        let mut failures = 0u32;
        let mut why = String::new();
        for _ in 0..MAX_TOTAL_ATTEMPTS {
            if failures >= self.cfg.attempts.max(1) {
                break;
            }
            let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
            if let Some(size) = meta.size {
                if have == size {
                    bar.finish_and_clear();
                    return Ok(());
                }
                if have > size {
                    have = 0;
                }
            }
            let reply = match self.request("GET", &meta.url, Some(have), CrossOrigin::Follow) {
                Ok(r) => r,
                Err(ReqError::Fatal(e)) => return Err(e),
                Err(ReqError::Retry { source, .. }) => {
                    failures += 1;
                    why = source.to_string();
                    self.pause(failures);
                    continue;
                }
            };
            let start = match reply.status {
                206 => {
                    content_range_start(&reply.headers).ok_or_else(|| HubError::BadResponse {
                        url: reply.url.clone(),
                        why: "206 without a usable Content-Range".into(),
                    })?
                }
                200 => 0,
                // Our part is no prefix of the file (e.g. the file changed): start over.
                416 => {
                    truncate(part)?;
                    failures += 1;
                    why = "416 Range Not Satisfiable".into();
                    continue;
                }
                s if client::retryable_status(s) => {
                    failures += 1;
                    why = format!("HTTP {s}");
                    self.pause(failures);
                    continue;
                }
                _ => return Err(client::status_error(reply, ctx, self.cfg.token.is_some())),
            };
            if start != 0 && start != have {
                return Err(HubError::BadResponse {
                    url: reply.url,
                    why: format!("asked for bytes from {have}, got a range from {start}"),
                });
            }
            bar.set_position(start);
            match copy_body(reply, part, start, meta.size, &bar)? {
                Copy::Done => {
                    bar.finish_and_clear();
                    return Ok(());
                }
                Copy::Broken { progressed, error } => {
                    // Progress earns a fresh set of attempts: only a stuck transfer gives up.
                    failures = if progressed { 1 } else { failures + 1 };
                    why = error;
                    self.pause(failures);
                }
            }
        }
        bar.abandon();
        Err(HubError::Incomplete {
            url: meta.url.clone(),
            attempts: failures,
            why,
        })
    }

    fn bar(&self, size: Option<u64>, name: &str) -> ProgressBar {
        if !self.cfg.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(size, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(BAR_TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(name.to_string());
        bar
    }
}

/// Writes the body at offset `start` of `part`; a broken transfer keeps what arrived.
fn copy_body(
    reply: client::Reply,
    part: &Path,
    start: u64,
    size: Option<u64>,
    bar: &ProgressBar,
) -> Result<Copy> {
    let url = reply.url.clone();
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(part)
        .map_err(io_at(part))?;
    f.set_len(start).map_err(io_at(part))?;
    f.seek(std::io::SeekFrom::Start(start))
        .map_err(io_at(part))?;
    let mut body = reply.body.into_reader();
    let mut buf = vec![0u8; CHUNK];
    let mut at = start;
    let result = loop {
        match body.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if size.is_some_and(|s| at + n as u64 > s) {
                    drop(f);
                    let _ = std::fs::remove_file(part);
                    return Err(HubError::BadResponse {
                        url,
                        why: format!("more bytes than the {} announced", size.unwrap_or(0)),
                    });
                }
                f.write_all(&buf[..n]).map_err(io_at(part))?;
                at += n as u64;
                bar.set_position(at);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e.to_string()),
        }
    };
    f.flush().map_err(io_at(part))?;
    f.sync_data().map_err(io_at(part))?;
    let progressed = at > start;
    match (result, size) {
        (Err(error), _) => Ok(Copy::Broken { progressed, error }),
        (Ok(()), Some(s)) if at < s => Ok(Copy::Broken {
            progressed,
            error: format!("the connection closed at byte {at} of {s}"),
        }),
        (Ok(()), _) => Ok(Copy::Done),
    }
}

enum Copy {
    Done,
    Broken { progressed: bool, error: String },
}

/// `<dest>.part`, beside the destination.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(PART_SUFFIX);
    dest.with_file_name(name)
}

fn truncate(part: &Path) -> Result<()> {
    match std::fs::remove_file(part) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_at(part)(e)),
        _ => Ok(()),
    }
}

/// The first byte of `Content-Range: bytes a-b/total`.
fn content_range_start(h: &ureq::http::HeaderMap) -> Option<u64> {
    let v = header(h, "content-range")?;
    let range = v.strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

fn matches(h: &Hashes, etag: &Etag) -> bool {
    match etag {
        Etag::Sha256(e) => &h.sha256 == e,
        Etag::GitSha1(e) => h.git_sha1.as_ref() == Some(e),
    }
}

/// sha256 of a file, and its git blob sha1 when the ETag is one (one read of the file).
fn hash_file(path: &Path, etag: &Etag) -> Result<Hashes> {
    let mut f = File::open(path).map_err(io_at(path))?;
    let len = f.metadata().map_err(io_at(path))?.len();
    let mut sha256 = Sha256::new();
    let mut sha1 = matches!(etag, Etag::GitSha1(_)).then(|| {
        let mut s = Sha1::new();
        s.update(format!("blob {len}\0").as_bytes());
        s
    });
    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_at(path))?;
        if n == 0 {
            break;
        }
        sha256.update(&buf[..n]);
        if let Some(s) = sha1.as_mut() {
            s.update(&buf[..n]);
        }
        bytes += n as u64;
    }
    Ok(Hashes {
        bytes,
        sha256: hex(&sha256.finalize()),
        git_sha1: sha1.map(|s| hex(&s.finalize())),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        let sha = "a".repeat(64);
        assert_eq!(
            Etag::parse(&format!("\"{sha}\"")),
            Some(Etag::Sha256(sha.clone()))
        );
        let s1 = "0123456789abcdef0123456789ABCDEF01234567";
        assert_eq!(
            Etag::parse(&format!("W/\"{s1}\"")),
            Some(Etag::GitSha1(s1.to_ascii_lowercase()))
        );
        assert_eq!(Etag::parse("\"abc\""), None);
        assert_eq!(Etag::parse(&"g".repeat(64)), None);
    }

    #[test]
    fn the_bar_template_parses() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
    }

    #[test]
    fn part_beside_dest() {
        assert_eq!(
            part_path(Path::new("/a/b/x.gguf")),
            Path::new("/a/b/x.gguf.part")
        );
    }

    #[test]
    fn git_blob_sha1_of_known_content() {
        // `printf 'hello\n' | git hash-object --stdin`
        let dir = std::env::temp_dir().join(format!("apr-hub-sha1-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        std::fs::write(&p, b"hello\n").unwrap();
        let etag = Etag::GitSha1("ce013625030ba8dba906f756967f9e9ca394464a".into());
        let h = hash_file(&p, &etag).unwrap();
        assert!(matches(&h, &etag), "{:?}", h.git_sha1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

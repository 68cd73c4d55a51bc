//! The HTTP side: one ureq agent (rustls over a pure-Rust crypto provider), the Hub's
//! environment (`HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_DOWNLOAD_TIMEOUT`), redirects followed by
//! hand (bounded; the token only ever goes to the endpoint's own origin), retries with backoff,
//! and the Hub's error statuses turned into typed errors.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use ureq::http::{HeaderMap, Response};
use ureq::Body;

use crate::error::{HubError, Result};
use crate::repo::RepoId;
use crate::url;

/// Where the Hub is unless `HF_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Seconds a connection, a header or one read may take (`HF_HUB_DOWNLOAD_TIMEOUT` overrides).
pub const DEFAULT_TIMEOUT_S: u64 = 30;
/// Failed attempts in a row before a request gives up.
pub const DEFAULT_ATTEMPTS: u32 = 5;
/// First pause between attempts; it doubles each time up to [`MAX_BACKOFF`].
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(16);
/// Redirects followed before giving up (the Hub uses one or two).
pub const MAX_REDIRECTS: u32 = 10;
/// Most bytes of an error body or repo listing read into memory.
const MAX_SMALL_BODY: u64 = 16 << 20;
const USER_AGENT: &str = concat!("apr/", env!("CARGO_PKG_VERSION"));
/// Where systems keep their CA bundle (Debian/Ubuntu, Fedora/RHEL, openSUSE, Alpine/macOS).
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// How to reach the Hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// `https://huggingface.co` or a mirror, without a trailing slash.
    pub endpoint: String,
    /// Sent as `Authorization: Bearer` to the endpoint's origin only.
    pub token: Option<String>,
    /// Connect / header / per-read timeout.
    pub timeout: Duration,
    /// Failed attempts in a row before giving up (at least 1).
    pub attempts: u32,
    /// First pause between attempts.
    pub backoff: Duration,
    /// Draw a progress bar on stderr (only when stderr is a terminal).
    pub progress: bool,
}

impl HubConfig {
    /// From the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// From a variable lookup (`HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_DOWNLOAD_TIMEOUT`).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let endpoint = get("HF_ENDPOINT")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let endpoint = endpoint.trim_end_matches('/').to_string();
        if url::origin(&endpoint).is_none() {
            return Err(HubError::BadEndpoint { endpoint });
        }
        let token = get("HF_TOKEN")
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let timeout = get("HF_HUB_DOWNLOAD_TIMEOUT")
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(Duration::from_secs(DEFAULT_TIMEOUT_S));
        Ok(HubConfig {
            endpoint,
            token,
            timeout,
            attempts: DEFAULT_ATTEMPTS,
            backoff: DEFAULT_BACKOFF,
            progress: true,
        })
    }
}

/// Which repo (and file) a request is about, for the error messages.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub repo: &'a RepoId,
    pub revision: &'a str,
    pub file: Option<&'a str>,
}

/// A response after the redirects, with the URL it came from.
pub struct Reply {
    pub url: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Body,
}

/// What the first hop should do with a redirect to another origin.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CrossOrigin {
    /// Follow it (without the token).
    Follow,
    /// Return a redirect to another origin, or one that carries `X-Linked-Etag`, itself: its
    /// headers describe the file and its Location is where the bytes are (the CDN).
    Stop,
}

/// The Hub client.
pub struct Hub {
    pub(crate) cfg: HubConfig,
    agent: ureq::Agent,
    origin: String,
}

impl Hub {
    pub fn new(cfg: HubConfig) -> Result<Self> {
        let origin = url::origin(&cfg.endpoint).ok_or_else(|| HubError::BadEndpoint {
            endpoint: cfg.endpoint.clone(),
        })?;
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(root_certs())
            .unversioned_rustls_crypto_provider(Arc::new(rustls_rustcrypto::provider()))
            .build();
        let t = Some(cfg.timeout);
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            // Redirects are followed by hand: the token must not follow them to the CDN.
            .max_redirects(0)
            .user_agent(USER_AGENT)
            // The hash is of the stored bytes: no transfer compression.
            .accept_encoding("identity")
            .timeout_connect(t)
            .timeout_recv_response(t)
            .timeout_per_read(t)
            .timeout_per_write(t)
            .build()
            .new_agent();
        Ok(Hub { cfg, agent, origin })
    }

    pub fn endpoint(&self) -> &str {
        &self.cfg.endpoint
    }

    /// One request, following redirects by hand; the token goes only to the endpoint's origin.
    pub fn request(
        &self,
        method: &str,
        start: &str,
        range_from: Option<u64>,
        cross: CrossOrigin,
    ) -> std::result::Result<Reply, ReqError> {
        let mut current = start.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let same_origin = url::origin(&current).as_deref() == Some(self.origin.as_str());
            let mut req = ureq::http::Request::builder()
                .method(method)
                .uri(current.as_str());
            if let (true, Some(tok)) = (same_origin, &self.cfg.token) {
                req = req.header("Authorization", format!("Bearer {tok}"));
            }
            if let Some(n) = range_from.filter(|&n| n > 0) {
                req = req.header("Range", format!("bytes={n}-"));
            }
            let req = req.body(()).map_err(|e| {
                ReqError::Fatal(HubError::BadRedirect {
                    url: start.to_string(),
                    location: format!("{current} ({e})"),
                })
            })?;
            let resp: Response<Body> = self.agent.run(req).map_err(|e| {
                if transient(&e) {
                    ReqError::Retry {
                        url: current.clone(),
                        source: e,
                    }
                } else {
                    ReqError::Fatal(HubError::Transport {
                        url: current.clone(),
                        attempts: 1,
                        source: e,
                    })
                }
            })?;
            let status = resp.status().as_u16();
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                let (parts, body) = resp.into_parts();
                return Ok(Reply {
                    url: current,
                    status,
                    headers: parts.headers,
                    body,
                });
            }
            let location = header(resp.headers(), "location").ok_or_else(|| {
                ReqError::Fatal(HubError::NoLocation {
                    url: current.clone(),
                    status,
                })
            })?;
            let next = url::join(&current, &location).ok_or_else(|| {
                ReqError::Fatal(HubError::BadRedirect {
                    url: current.clone(),
                    location: location.clone(),
                })
            })?;
            let next_same = url::origin(&next).as_deref() == Some(self.origin.as_str());
            let linked = resp.headers().contains_key("x-linked-etag");
            if cross == CrossOrigin::Stop && (!next_same || linked) {
                let (parts, body) = resp.into_parts();
                return Ok(Reply {
                    url: current,
                    status,
                    headers: parts.headers,
                    body,
                });
            }
            current = next;
        }
        Err(ReqError::Fatal(HubError::TooManyRedirects {
            url: start.to_string(),
            max: MAX_REDIRECTS,
        }))
    }

    /// [`Hub::request`] with retries on dropped connections, timeouts, 429 and 5xx; any other
    /// non-2xx/3xx status becomes the matching error.
    pub fn request_ok(
        &self,
        method: &str,
        url: &str,
        cross: CrossOrigin,
        ctx: Ctx<'_>,
    ) -> Result<Reply> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.cfg.attempts.max(1);
            match self.request(method, url, None, cross) {
                Ok(r) if r.status < 400 => return Ok(r),
                Ok(r) if retryable_status(r.status) && !last => {}
                Ok(r) => return Err(status_error(r, ctx, self.cfg.token.is_some())),
                Err(ReqError::Retry { url, source }) if last => {
                    return Err(HubError::Transport {
                        url,
                        attempts: attempt,
                        source,
                    })
                }
                Err(ReqError::Retry { .. }) => {}
                Err(ReqError::Fatal(e)) => return Err(e),
            }
            self.pause(attempt);
        }
    }

    /// Sleeps before attempt `failed + 1`.
    pub fn pause(&self, failed: u32) {
        let factor = 1u32 << failed.saturating_sub(1).min(8);
        std::thread::sleep((self.cfg.backoff * factor).min(MAX_BACKOFF));
    }

    /// The file list and commit of a repo at a revision.
    pub fn list_files(&self, repo: &RepoId, revision: &str) -> Result<Listing> {
        let url = format!(
            "{}/api/models/{}/{}/revision/{}",
            self.cfg.endpoint,
            url::encode_segment(&repo.owner),
            url::encode_segment(&repo.name),
            url::encode_segment(revision)
        );
        let ctx = Ctx {
            repo,
            revision,
            file: None,
        };
        let reply = self.request_ok("GET", &url, CrossOrigin::Follow, ctx)?;
        let mut text = String::new();
        reply
            .body
            .into_reader()
            .take(MAX_SMALL_BODY)
            .read_to_string(&mut text)
            .map_err(|e| HubError::BadResponse {
                url: url.clone(),
                why: format!("cannot read the listing: {e}"),
            })?;
        serde_json::from_str(&text).map_err(|source| HubError::BadListing { url, source })
    }

    /// `{endpoint}/{repo}/resolve/{revision}/{path}`.
    pub fn resolve_url(&self, repo: &RepoId, revision: &str, path: &str) -> String {
        format!(
            "{}/{}/{}/resolve/{}/{}",
            self.cfg.endpoint,
            url::encode_segment(&repo.owner),
            url::encode_segment(&repo.name),
            url::encode_segment(revision),
            url::encode_path(path)
        )
    }
}

/// The system's CA bundle (`SSL_CERT_FILE`, else the usual places), so that a proxy's own CA
/// that the system trusts works; Mozilla's roots compiled in when there is none.
fn root_certs() -> ureq::tls::RootCerts {
    let files = std::env::var("SSL_CERT_FILE")
        .ok()
        .into_iter()
        .chain(SYSTEM_CA_BUNDLES.iter().map(|s| s.to_string()));
    for file in files {
        let Ok(pem) = std::fs::read(&file) else {
            continue;
        };
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if !certs.is_empty() {
            return certs.into();
        }
    }
    ureq::tls::RootCerts::WebPki
}

/// The parts of the Hub's model info we use.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Listing {
    /// The commit the revision points to.
    pub sha: Option<String>,
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Sibling {
    pub rfilename: String,
}

/// A request failure: worth another attempt, or not.
pub enum ReqError {
    Retry { url: String, source: ureq::Error },
    Fatal(HubError),
}

/// Dropped or refused connections and timeouts are worth another attempt; a bad certificate,
/// an unknown host or a malformed response are not.
fn transient(e: &ureq::Error) -> bool {
    use std::io::ErrorKind as K;
    match e {
        ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            K::ConnectionReset
                | K::ConnectionAborted
                | K::ConnectionRefused
                | K::BrokenPipe
                | K::UnexpectedEof
                | K::TimedOut
                | K::Interrupted
                | K::NotConnected
        ),
        _ => false,
    }
}

pub fn retryable_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// A header as text (None when absent or not visible ASCII).
pub fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// The typed error for a non-success reply, with the Hub's own message when it sent one.
pub fn status_error(reply: Reply, ctx: Ctx<'_>, token_set: bool) -> HubError {
    let code = header(&reply.headers, "x-error-code");
    let mut message = header(&reply.headers, "x-error-message");
    if message.is_none() {
        let mut text = String::new();
        let _ = reply
            .body
            .into_reader()
            .take(64 << 10)
            .read_to_string(&mut text);
        message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string));
    }
    let repo = ctx.repo.to_string();
    match reply.status {
        401 | 403 => HubError::Denied {
            repo,
            status: reply.status,
            message: message.map(|m| {
                if token_set {
                    format!("{m} (HF_TOKEN is set but has no access)")
                } else {
                    m
                }
            }),
        },
        404 => {
            let file = ctx.file.unwrap_or("?");
            let what = match code.as_deref() {
                Some("RepoNotFound") => format!("repo {repo}"),
                Some("RevisionNotFound") => format!("revision {} of {repo}", ctx.revision),
                Some("EntryNotFound") => {
                    format!("file {file} in {repo} at revision {}", ctx.revision)
                }
                _ if ctx.file.is_some() => format!(
                    "repo {repo} or its file {file} at revision {}",
                    ctx.revision
                ),
                _ => format!("repo {repo} at revision {}", ctx.revision),
            };
            HubError::NotFound {
                what,
                url: reply.url,
                message,
            }
        }
        status => HubError::Status {
            url: reply.url,
            status,
            message,
        },
    }
}

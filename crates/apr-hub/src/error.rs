//! Typed errors of the Hub client: each names the URL, file or repo it is about.

use std::path::PathBuf;

/// What went wrong talking to the Hub or writing the download.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("`{given}` is not a Hugging Face repo id: {why}")]
    BadRepoId { given: String, why: &'static str },

    #[error("{endpoint} is not an http(s) endpoint URL (HF_ENDPOINT)")]
    BadEndpoint { endpoint: String },

    #[error(
        "access to {repo} was refused (HTTP {status}): the repo is gated or private (the Hub \
         also answers so for a repo that does not exist); set HF_TOKEN to a token that has \
         access (and accept the repo's terms on its page){}",
        hub_says(message)
    )]
    Denied {
        repo: String,
        status: u16,
        message: Option<String>,
    },

    #[error("{what} not found (HTTP 404 from {url}){}", hub_says(message))]
    NotFound {
        what: String,
        url: String,
        message: Option<String>,
    },

    #[error("HTTP {status} from {url}{}", hub_says(message))]
    Status {
        url: String,
        status: u16,
        message: Option<String>,
    },

    #[error("request to {url} failed after {attempts} attempt(s)")]
    Transport {
        url: String,
        attempts: u32,
        #[source]
        source: ureq::Error,
    },

    #[error("download of {url} kept failing after {attempts} attempt(s): {why}")]
    Incomplete {
        url: String,
        attempts: u32,
        why: String,
    },

    #[error("more than {max} redirects starting from {url}")]
    TooManyRedirects { url: String, max: u32 },

    #[error("redirect from {url} has an unusable Location `{location}`")]
    BadRedirect { url: String, location: String },

    #[error("{url} answered {status} without a Location header")]
    NoLocation { url: String, status: u16 },

    #[error("the server sent a bad response for {url}: {why}")]
    BadResponse { url: String, why: String },

    #[error("the Hub sent no ETag for {url}, so the download cannot be verified")]
    NoEtag { url: String },

    #[error("{path}: {algo} is {actual} but the Hub says {expected}; the download was deleted")]
    HashMismatch {
        path: PathBuf,
        algo: &'static str,
        expected: String,
        actual: String,
    },

    #[error("the repo listing from {url} is not valid JSON of the expected shape")]
    BadListing {
        url: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("the Hub listed the unsafe file name `{name}` (absolute, `..` or empty parts)")]
    UnsafePath { name: String },

    #[error("no file of {repo} matches {patterns:?} (it has: {available})")]
    NoMatch {
        repo: String,
        patterns: Vec<String>,
        available: String,
    },

    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn hub_says(message: &Option<String>) -> String {
    match message {
        Some(m) => format!("; the Hub says: {m}"),
        None => String::new(),
    }
}

pub type Result<T> = std::result::Result<T, HubError>;

/// Adds the path to an io error.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> HubError {
    let path = path.into();
    move |source| HubError::Io { path, source }
}

//! The Hugging Face Hub client behind `apr pull`: repo listings, `resolve/` downloads with
//! redirects, resume, ETag (sha256 / git blob sha1) checks and atomic completion.
//! Protocol reference: <https://huggingface.co/docs/hub/api>.
//!
//! HTTP is `ureq` 3 (blocking, small, no async runtime) over `rustls`, with
//! `rustls-rustcrypto` as the crypto provider and Mozilla's roots from `webpki-roots`. The
//! usual providers (`ring`, `aws-lc-rs`) compile C and assembly with `cc`; the project builds
//! without a C toolchain (DESIGN.md section 4), and RustCrypto's provider is pure Rust.
//! `cargo tree -p apr-hub -e normal,build` lists no `cc`, `ring` or `aws-lc`.

pub mod client;
pub mod download;
pub mod error;
pub mod pull;
pub mod repo;
pub mod url;

pub use client::{Hub, HubConfig, DEFAULT_ENDPOINT};
pub use download::{Etag, Fetched, FileMeta};
pub use error::{HubError, Result};
pub use pull::{pull, PullReport, PullSpec, PulledFile, DEFAULT_REVISION};
pub use repo::{parse_target, RepoId, DEFAULT_SNAPSHOT_PATTERNS};

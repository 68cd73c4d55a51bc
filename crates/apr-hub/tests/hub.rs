//! The Hub client against a real local HTTP server (tests/support/mock_hub.rs) over real
//! sockets: downloads, redirects, resume, integrity, auth, errors, snapshots.

#[path = "support/mock_hub.rs"]
mod mock_hub;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use apr_hub::{pull, Hub, HubConfig, HubError, PullReport, PullSpec, RepoId};
use mock_hub::{content, git_sha1_hex, sha256_hex, MockHub, COMMIT};

const REPO: &str = "org/model-GGUF";
const GGUF: &str = "model-q4_k_m.gguf";
const GGUF_LEN: usize = 300_000;

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apr-hub-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(hub: &MockHub, token: Option<&str>) -> HubConfig {
    let mut c = HubConfig::from_vars(|k| match k {
        "HF_ENDPOINT" => Some(hub.url.clone()),
        "HF_TOKEN" => token.map(str::to_string),
        _ => None,
    })
    .unwrap();
    c.timeout = Duration::from_secs(2);
    c.backoff = Duration::from_millis(5);
    c.progress = false;
    c
}

fn spec(target: &str, cache: &Path) -> PullSpec {
    let (repo, file) = apr_hub::parse_target(target).unwrap();
    PullSpec {
        repo,
        file,
        revision: "main".into(),
        include: vec![],
        cache_dir: cache.to_path_buf(),
    }
}

fn run(hub: &MockHub, token: Option<&str>, s: &PullSpec) -> Result<PullReport, HubError> {
    pull(&Hub::new(config(hub, token)).unwrap(), s, |_| {})
}

fn gguf_hub() -> (MockHub, Vec<u8>) {
    let hub = MockHub::start();
    let bytes = content(GGUF_LEN, 7);
    hub.add_file(REPO, GGUF, bytes.clone(), true);
    hub.add_file(REPO, "README.md", b"# model\n".to_vec(), false);
    (hub, bytes)
}

fn cdn_gets(hub: &MockHub) -> Vec<mock_hub::Logged> {
    hub.log()
        .into_iter()
        .filter(|l| l.server == "cdn" && l.method == "GET")
        .collect()
}

#[test]
fn lfs_file_through_the_cdn_redirect() {
    let (hub, bytes) = gguf_hub();
    let cache = tmp_dir("lfs");
    let r = run(&hub, None, &spec(&format!("{REPO}/{GGUF}"), &cache)).unwrap();
    let dest = cache.join(GGUF);
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert_eq!(r.commit.as_deref(), Some(COMMIT));
    assert_eq!(r.files.len(), 1);
    assert_eq!(r.files[0].bytes, GGUF_LEN as u64);
    assert_eq!(r.files[0].sha256, sha256_hex(&bytes));
    assert!(r.files[0].downloaded);
    assert_eq!(r.dir, cache);
    assert_eq!(cdn_gets(&hub).len(), 1, "{:?}", hub.log());
    assert!(!cache.join(format!("{GGUF}.part")).exists());
}

#[test]
fn non_lfs_file_checked_against_its_git_blob_sha1() {
    let (hub, _) = gguf_hub();
    let cache = tmp_dir("git");
    let r = run(&hub, None, &spec(&format!("{REPO}/README.md"), &cache)).unwrap();
    assert_eq!(
        std::fs::read(cache.join("README.md")).unwrap(),
        b"# model\n"
    );
    assert_eq!(r.files[0].sha256, sha256_hex(b"# model\n"));
    // The hub served it itself: no CDN hop.
    assert!(cdn_gets(&hub).is_empty());
    // And a wrong git sha1 is caught too.
    hub.set(|b| b.wrong_etag = true);
    let cache2 = tmp_dir("git-wrong");
    let e = run(&hub, None, &spec(&format!("{REPO}/README.md"), &cache2)).unwrap_err();
    assert!(
        matches!(
            e,
            HubError::HashMismatch {
                algo: "git blob sha1",
                ..
            }
        ),
        "{e}"
    );
    assert!(!cache2.join("README.md").exists());
    assert_ne!(git_sha1_hex(b"# model\n"), git_sha1_hex(b"# model\nx"));
}

#[test]
fn resumes_after_the_server_drops_the_connection() {
    let (hub, bytes) = gguf_hub();
    hub.set(|b| {
        b.drops = 1;
        b.drop_after = 100_000;
    });
    let cache = tmp_dir("drop");
    let r = run(&hub, None, &spec(&format!("{REPO}/{GGUF}"), &cache)).unwrap();
    assert_eq!(std::fs::read(cache.join(GGUF)).unwrap(), bytes);
    assert_eq!(r.files[0].sha256, sha256_hex(&bytes));
    let gets = cdn_gets(&hub);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=100000-"));
}

#[test]
fn an_interrupted_pull_resumes_on_the_next_run() {
    let (hub, bytes) = gguf_hub();
    // More drops than attempts: the first run gives up and leaves its .part.
    hub.set(|b| {
        b.drops = 100;
        b.drop_after = 0;
    });
    let cache = tmp_dir("interrupted");
    std::fs::write(cache.join(format!("{GGUF}.part")), &bytes[..123_456]).unwrap();
    let e = run(&hub, None, &spec(&format!("{REPO}/{GGUF}"), &cache)).unwrap_err();
    assert!(matches!(e, HubError::Incomplete { .. }), "{e}");
    assert!(!cache.join(GGUF).exists());
    let part = cache.join(format!("{GGUF}.part"));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 123_456);
    hub.set(|b| b.drops = 0);
    hub.clear_log();
    run(&hub, None, &spec(&format!("{REPO}/{GGUF}"), &cache)).unwrap();
    assert_eq!(std::fs::read(cache.join(GGUF)).unwrap(), bytes);
    let gets = cdn_gets(&hub);
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].range.as_deref(), Some("bytes=123456-"));
    assert!(!part.exists());
}

#[test]
fn a_server_that_ignores_range_restarts_from_zero() {
    let (hub, bytes) = gguf_hub();
    hub.set(|b| b.ignore_range = true);
    let cache = tmp_dir("norange");
    // A .part whose bytes are wrong: were it kept, the hash would fail.
    std::fs::write(cache.join(format!("{GGUF}.part")), vec![0u8; 50_000]).unwrap();
    let r = run(&hub, None, &spec(&format!("{REPO}/{GGUF}"), &cache)).unwrap();
    assert_eq!(std::fs::read(cache.join(GGUF)).unwrap(), bytes);
    assert_eq!(r.files[0].bytes, GGUF_LEN as u64);
    assert_eq!(cdn_gets(&hub)[0].range.as_deref(), Some("bytes=50000-"));
}

#[test]
fn a_206_for_another_range_is_an_error() {
    let (hub, bytes) = gguf_hub();
    hub.set(|b| b.bad_range = true);
    let cache = tmp_dir("badrange");
    std::fs::write(cache.join(format!("{GGUF}.part")), &bytes[..1000]).unwrap();
    let e = run(&hub, None, &spec(&format!("{REPO}/{GGUF}"), &cache)).unwrap_err();
    assert!(
        e.to_string()
            .contains("asked for bytes from 1000, got a range from 1001"),
        "{e}"
    );
    assert!(!cache.join(GGUF).exists());
}

#[test]
fn a_wrong_hash_is_an_error_and_leaves_no_file() {
    let (hub, _) = gguf_hub();
    hub.set(|b| b.wrong_etag = true);
    let cache = tmp_dir("wronghash");
    let e = run(&hub, None, &spec(&format!("{REPO}/{GGUF}"), &cache)).unwrap_err();
    assert!(
        matches!(e, HubError::HashMismatch { algo: "sha256", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("deleted"), "{e}");
    assert!(std::fs::read_dir(&cache).unwrap().next().is_none());
}

#[test]
fn not_found_names_the_repo_or_the_file() {
    let (hub, _) = gguf_hub();
    let cache = tmp_dir("404");
    let e = run(&hub, None, &spec(&format!("{REPO}/nope.gguf"), &cache)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, HubError::NotFound { .. }), "{msg}");
    assert!(
        msg.contains("file nope.gguf in org/model-GGUF") && msg.contains("Entry not found"),
        "{msg}"
    );
    let e = run(&hub, None, &spec("org/missing/x.gguf", &cache)).unwrap_err();
    assert!(e.to_string().contains("repo org/missing not found"), "{e}");
    let e = run(&hub, None, &spec("org/missing", &cache)).unwrap_err();
    assert!(e.to_string().contains("repo org/missing not found"), "{e}");
    let mut s = spec(&format!("{REPO}/{GGUF}"), &cache);
    s.revision = "v9".into();
    let e = run(&hub, None, &s).unwrap_err();
    assert!(
        e.to_string().contains("revision v9 of org/model-GGUF"),
        "{e}"
    );
}

#[test]
fn gated_repo_needs_the_token_which_never_reaches_the_cdn() {
    let (hub, bytes) = gguf_hub();
    hub.set(|b| b.require_token = Some("hf_secret".into()));
    let cache = tmp_dir("gated");
    let e = run(&hub, None, &spec(&format!("{REPO}/{GGUF}"), &cache)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, HubError::Denied { status: 401, .. }), "{msg}");
    assert!(
        msg.contains("gated") && msg.contains("HF_TOKEN") && msg.contains("restricted"),
        "{msg}"
    );
    let e = run(
        &hub,
        Some("hf_wrong"),
        &spec(&format!("{REPO}/{GGUF}"), &cache),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("HF_TOKEN is set but has no access"),
        "{e}"
    );

    hub.clear_log();
    run(
        &hub,
        Some("hf_secret"),
        &spec(&format!("{REPO}/{GGUF}"), &cache),
    )
    .unwrap();
    assert_eq!(std::fs::read(cache.join(GGUF)).unwrap(), bytes);
    let log = hub.log();
    assert!(log.iter().any(|l| l.server == "cdn"), "{log:?}");
    for l in &log {
        let want = (l.server == "hub").then(|| "Bearer hf_secret".to_string());
        assert_eq!(l.authorization, want, "{l:?}");
    }
}

#[test]
fn a_relative_cdn_location_on_the_same_host_keeps_the_token() {
    let (hub, bytes) = gguf_hub();
    hub.set(|b| {
        b.relative_cdn = true;
        b.require_token = Some("t".into());
    });
    let cache = tmp_dir("relcdn");
    run(&hub, Some("t"), &spec(&format!("{REPO}/{GGUF}"), &cache)).unwrap();
    assert_eq!(std::fs::read(cache.join(GGUF)).unwrap(), bytes);
    let last = hub.log().pop().unwrap();
    assert!(
        last.path.starts_with("/blobs/") && last.server == "hub",
        "{last:?}"
    );
    assert_eq!(last.authorization.as_deref(), Some("Bearer t"));
}

#[test]
fn a_renamed_repo_is_followed_through_its_relative_redirect() {
    let (hub, bytes) = gguf_hub();
    hub.rename("old/name", REPO);
    let cache = tmp_dir("renamed");
    run(&hub, None, &spec(&format!("old/name/{GGUF}"), &cache)).unwrap();
    assert_eq!(std::fs::read(cache.join(GGUF)).unwrap(), bytes);
}

#[test]
fn endless_redirects_are_an_error_not_a_hang() {
    let (hub, _) = gguf_hub();
    hub.set(|b| b.redirect_loop = true);
    let cache = tmp_dir("loop");
    let e = run(&hub, None, &spec(&format!("{REPO}/{GGUF}"), &cache)).unwrap_err();
    assert!(
        matches!(e, HubError::TooManyRedirects { max: 10, .. }),
        "{e}"
    );
}

#[test]
fn retries_5xx_then_gives_up_with_the_status() {
    let (hub, bytes) = gguf_hub();
    hub.set(|b| b.fail_5xx = 2);
    let cache = tmp_dir("5xx");
    run(&hub, None, &spec(&format!("{REPO}/{GGUF}"), &cache)).unwrap();
    assert_eq!(std::fs::read(cache.join(GGUF)).unwrap(), bytes);
    hub.set(|b| b.fail_5xx = 1000);
    let e = run(&hub, None, &spec(&format!("{REPO}/README.md"), &cache)).unwrap_err();
    assert!(matches!(e, HubError::Status { status: 503, .. }), "{e}");
    assert!(e.to_string().contains("try again"), "{e}");
}

#[test]
fn a_silent_server_times_out() {
    let (hub, _) = gguf_hub();
    hub.set(|b| b.hang = true);
    let cache = tmp_dir("hang");
    let mut c = config(&hub, None);
    c.timeout = Duration::from_millis(300);
    c.attempts = 2;
    let t = Instant::now();
    let e = pull(
        &Hub::new(c).unwrap(),
        &spec(&format!("{REPO}/{GGUF}"), &cache),
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(e, HubError::Transport { attempts: 2, .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn more_bytes_than_announced_is_an_error() {
    let (hub, _) = gguf_hub();
    hub.set(|b| b.short_size = Some(1000));
    let cache = tmp_dir("long");
    let e = run(&hub, None, &spec(&format!("{REPO}/{GGUF}"), &cache)).unwrap_err();
    assert!(
        e.to_string().contains("more bytes than the 1000 announced"),
        "{e}"
    );
    assert!(std::fs::read_dir(&cache).unwrap().next().is_none());
}

fn snapshot_hub() -> (MockHub, Vec<(&'static str, Vec<u8>)>) {
    let hub = MockHub::start();
    let repo = "Qwen/Tiny";
    let files: Vec<(&str, Vec<u8>, bool)> = vec![
        ("config.json", b"{\"model_type\":\"qwen2\"}".to_vec(), false),
        ("generation_config.json", b"{}".to_vec(), false),
        ("model-00001-of-00002.safetensors", content(70_000, 1), true),
        ("model-00002-of-00002.safetensors", content(50_000, 2), true),
        (
            "model.safetensors.index.json",
            b"{\"weight_map\":{}}".to_vec(),
            false,
        ),
        ("tokenizer.json", content(9_000, 3), true),
        ("tokenizer_config.json", b"{\"eos\":1}".to_vec(), false),
        ("README.md", b"readme".to_vec(), false),
        (
            ".gitattributes",
            b"*.safetensors filter=lfs".to_vec(),
            false,
        ),
        ("onnx/model.onnx", content(1000, 4), true),
    ];
    for (p, c, lfs) in &files {
        hub.add_file(repo, p, c.clone(), *lfs);
    }
    let wanted = files
        .into_iter()
        .filter(|(p, _, _)| !p.contains("README") && !p.starts_with('.') && !p.starts_with("onnx"))
        .map(|(p, c, _)| (p, c))
        .collect();
    (hub, wanted)
}

#[test]
fn snapshot_takes_the_model_files_and_a_rerun_downloads_nothing() {
    let (hub, wanted) = snapshot_hub();
    let cache = tmp_dir("snapshot");
    let s = spec("Qwen/Tiny", &cache);
    let r = run(&hub, None, &s).unwrap();
    let dir = cache.join("Qwen--Tiny");
    assert_eq!(r.dir, dir);
    assert_eq!(r.commit.as_deref(), Some(COMMIT));
    let mut got: Vec<&str> = r.files.iter().map(|f| f.path.as_str()).collect();
    got.sort();
    let mut want: Vec<&str> = wanted.iter().map(|(p, _)| *p).collect();
    want.sort();
    assert_eq!(got, want);
    for (p, c) in &wanted {
        assert_eq!(&std::fs::read(dir.join(p)).unwrap(), c, "{p}");
        let f = r.files.iter().find(|f| f.path == *p).unwrap();
        assert_eq!(
            (f.bytes, f.sha256.as_str()),
            (c.len() as u64, sha256_hex(c).as_str())
        );
    }
    assert!(!dir.join("README.md").exists() && !dir.join("onnx").exists());
    // Files were fetched at the listing's commit, not at the moving branch.
    assert!(hub
        .log()
        .iter()
        .filter(|l| l.path.contains("/resolve/"))
        .all(|l| l.path.contains(COMMIT)));

    hub.clear_log();
    let again = run(&hub, None, &s).unwrap();
    assert!(again.files.iter().all(|f| !f.downloaded));
    assert_eq!(
        again.files.iter().map(|f| &f.sha256).collect::<Vec<_>>(),
        r.files.iter().map(|f| &f.sha256).collect::<Vec<_>>()
    );
    let log = hub.log();
    assert!(
        log.iter()
            .all(|l| l.method == "HEAD" || l.path.starts_with("/api/")),
        "{log:?}"
    );
}

#[test]
fn include_narrows_the_snapshot() {
    let (hub, _) = snapshot_hub();
    let cache = tmp_dir("include");
    let mut s = spec("Qwen/Tiny", &cache);
    s.include = vec!["*.json".into(), "onnx/*".into()];
    let r = run(&hub, None, &s).unwrap();
    let mut got: Vec<&str> = r.files.iter().map(|f| f.path.as_str()).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "config.json",
            "generation_config.json",
            "model.safetensors.index.json",
            "onnx/model.onnx",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    assert!(cache.join("Qwen--Tiny/onnx/model.onnx").is_file());
    s.include = vec!["*.gguf".into()];
    let e = run(&hub, None, &s).unwrap_err();
    assert!(
        matches!(e, HubError::NoMatch { .. }) && e.to_string().contains("config.json"),
        "{e}"
    );
}

#[test]
fn hostile_listings_are_refused() {
    let (hub, _) = snapshot_hub();
    hub.list_extra("Qwen/Tiny", "../../evil.json");
    let cache = tmp_dir("hostile");
    let mut s = spec("Qwen/Tiny", &cache);
    s.include = vec!["**.json".into()];
    let e = run(&hub, None, &s).unwrap_err();
    assert!(matches!(e, HubError::UnsafePath { .. }), "{e}");
    assert!(!cache.parent().unwrap().join("evil.json").exists());
    hub.set(|b| b.bad_listing = true);
    let e = run(&hub, None, &spec("Qwen/Tiny", &cache)).unwrap_err();
    assert!(matches!(e, HubError::BadListing { .. }), "{e}");
}

#[test]
fn endpoint_and_token_come_from_the_environment_variables() {
    let c = HubConfig::from_vars(|_| None).unwrap();
    assert_eq!(c.endpoint, "https://huggingface.co");
    assert_eq!(c.token, None);
    let c = HubConfig::from_vars(|k| match k {
        "HF_ENDPOINT" => Some("http://mirror.local:8080/".into()),
        "HF_TOKEN" => Some(" hf_x \n".into()),
        "HF_HUB_DOWNLOAD_TIMEOUT" => Some("2.5".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(c.endpoint, "http://mirror.local:8080");
    assert_eq!(c.token.as_deref(), Some("hf_x"));
    assert_eq!(c.timeout, Duration::from_millis(2500));
    let e = HubConfig::from_vars(|k| (k == "HF_ENDPOINT").then(|| "ftp://x".into())).unwrap_err();
    assert!(matches!(e, HubError::BadEndpoint { .. }), "{e}");
    let hub = Hub::new(c).unwrap();
    assert_eq!(
        hub.resolve_url(&RepoId::parse("a/b").unwrap(), "refs/pr/1", "dir/x y.bin"),
        "http://mirror.local:8080/a/b/resolve/refs%2Fpr%2F1/dir/x%20y.bin"
    );
}

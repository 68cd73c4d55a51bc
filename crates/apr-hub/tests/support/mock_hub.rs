//! A local stand-in for the Hugging Face Hub over real sockets: the hub's URL layout (model
//! info listing, `resolve/` with a 302 to a "CDN" on another port for LFS files, a 200 with a
//! git-sha1 ETag for the others, Range support) and switches for the ways servers misbehave.
//! Shared by apr-hub's tests and apr-cli's (included there by `#[path]`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha1::Sha1;
use sha2::{Digest, Sha256};

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const GATED_MESSAGE: &str = "Access to model is restricted. You must be authenticated.";

/// One logged request.
#[derive(Debug, Clone)]
pub struct Logged {
    pub server: &'static str,
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub range: Option<String>,
}

#[derive(Debug, Clone)]
pub struct MockFile {
    pub content: Vec<u8>,
    pub lfs: bool,
}

/// The misbehaviours, changed by tests between pulls.
#[derive(Debug, Default, Clone)]
pub struct Behaviour {
    /// The hub answers 401 (gated) unless `Authorization: Bearer <token>`.
    pub require_token: Option<String>,
    /// The next this many bodies stop after `drop_after` bytes (connection dropped).
    pub drops: usize,
    pub drop_after: usize,
    /// Answer 200 with the whole file whatever the Range.
    pub ignore_range: bool,
    /// The ETags describe other content.
    pub wrong_etag: bool,
    /// resolve/ redirects to itself forever.
    pub redirect_loop: bool,
    /// The next this many requests to the hub get a 503.
    pub fail_5xx: usize,
    /// The hub accepts connections and never answers.
    pub hang: bool,
    /// X-Linked-Size / Content-Length announced smaller than the content.
    pub short_size: Option<u64>,
    /// The listing is not JSON.
    pub bad_listing: bool,
    /// LFS redirects carry a relative Location (a same-origin CDN path).
    pub relative_cdn: bool,
    /// 206 answers name a range one byte later than the one asked for.
    pub bad_range: bool,
}

#[derive(Default)]
struct State {
    repos: BTreeMap<String, BTreeMap<String, MockFile>>,
    /// old repo id -> new one (answered with a relative 307).
    renamed: BTreeMap<String, String>,
    /// Extra names in listings (e.g. hostile ones).
    extra_listed: BTreeMap<String, Vec<String>>,
    behaviour: Behaviour,
    log: Vec<Logged>,
}

pub struct MockHub {
    pub url: String,
    pub cdn_url: String,
    state: Arc<Mutex<State>>,
}

fn lock(s: &Arc<Mutex<State>>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

pub fn git_sha1_hex(b: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", b.len()).as_bytes());
    h.update(b);
    h.finalize().iter().map(|x| format!("{x:02x}")).collect()
}

/// Bytes that are not all alike, so a misplaced range shows in the hash.
pub fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 31) as u8
                ^ seed
        })
        .collect()
}

impl MockHub {
    pub fn start() -> MockHub {
        let state = Arc::new(Mutex::new(State::default()));
        let hub = TcpListener::bind("127.0.0.1:0").expect("bind hub");
        let cdn = TcpListener::bind("127.0.0.1:0").expect("bind cdn");
        let url = format!("http://{}", hub.local_addr().unwrap());
        let cdn_url = format!("http://{}", cdn.local_addr().unwrap());
        for (listener, server) in [(hub, "hub"), (cdn, "cdn")] {
            let state = state.clone();
            let cdn_url = cdn_url.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let state = state.clone();
                    let cdn_url = cdn_url.clone();
                    std::thread::spawn(move || {
                        let _ = serve(conn, server, &state, &cdn_url);
                    });
                }
            });
        }
        MockHub {
            url,
            cdn_url,
            state,
        }
    }

    pub fn add_file(&self, repo: &str, path: &str, content: Vec<u8>, lfs: bool) {
        lock(&self.state)
            .repos
            .entry(repo.to_string())
            .or_default()
            .insert(path.to_string(), MockFile { content, lfs });
    }

    pub fn rename(&self, old: &str, new: &str) {
        lock(&self.state)
            .renamed
            .insert(old.to_string(), new.to_string());
    }

    pub fn list_extra(&self, repo: &str, name: &str) {
        lock(&self.state)
            .extra_listed
            .entry(repo.to_string())
            .or_default()
            .push(name.to_string());
    }

    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut lock(&self.state).behaviour);
    }

    pub fn log(&self) -> Vec<Logged> {
        lock(&self.state).log.clone()
    }

    pub fn clear_log(&self) {
        lock(&self.state).log.clear();
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

fn read_request(conn: &TcpStream) -> std::io::Result<Request> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Request {
        method,
        path,
        headers,
    })
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Content-Length announced (defaults to the body's).
    length: Option<u64>,
    /// Send only this many body bytes, then drop the connection.
    cut: Option<usize>,
}

impl Answer {
    fn new(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            length: None,
            cut: None,
        }
    }
    fn h(mut self, k: &str, v: impl Into<String>) -> Answer {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    fn error(status: u16, code: &str, message: &str) -> Answer {
        let mut a = Answer::new(status)
            .h("X-Error-Code", code)
            .h("X-Error-Message", message)
            .h("Content-Type", "application/json");
        a.body = format!("{{\"error\":\"{message}\"}}").into_bytes();
        a
    }
}

fn serve(
    conn: TcpStream,
    server: &'static str,
    state: &Arc<Mutex<State>>,
    cdn: &str,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let req = read_request(&conn)?;
    let hang = {
        let mut s = lock(state);
        s.log.push(Logged {
            server,
            method: req.method.clone(),
            path: req.path.clone(),
            authorization: req.header("authorization"),
            range: req.header("range"),
        });
        server == "hub" && s.behaviour.hang
    };
    if hang {
        std::thread::sleep(Duration::from_secs(30));
        return Ok(());
    }
    let answer = if server == "hub" && !req.path.starts_with("/blobs/") {
        route_hub(&req, state, cdn)
    } else {
        route_cdn(&req, state)
    };
    write_answer(conn, &req, answer)
}

fn write_answer(mut conn: TcpStream, req: &Request, a: Answer) -> std::io::Result<()> {
    let length = a.length.unwrap_or(a.body.len() as u64);
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", a.status);
    if !a
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    for (k, v) in &a.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    if req.method != "HEAD" {
        let n = a.cut.unwrap_or(a.body.len()).min(a.body.len());
        conn.write_all(&a.body[..n])?;
    }
    conn.flush()?;
    let _ = conn.shutdown(Shutdown::Both);
    Ok(())
}

fn route_hub(req: &Request, state: &Arc<Mutex<State>>, cdn: &str) -> Answer {
    let mut s = lock(state);
    if s.behaviour.fail_5xx > 0 {
        s.behaviour.fail_5xx -= 1;
        return Answer::error(503, "Unavailable", "try again");
    }
    if let Some(tok) = &s.behaviour.require_token {
        if req.header("authorization") != Some(format!("Bearer {tok}")) {
            return Answer::error(401, "GatedRepo", GATED_MESSAGE);
        }
    }
    let path = req.path.split('?').next().unwrap_or("").to_string();
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        let [owner, name, "revision", _rev] = parts.as_slice() else {
            return Answer::error(404, "NotFound", "bad api path");
        };
        let repo = format!("{owner}/{name}");
        let Some(files) = s.repos.get(&repo) else {
            return Answer::error(404, "RepoNotFound", "Repository not found");
        };
        if s.behaviour.bad_listing {
            let mut a = Answer::new(200);
            a.body = b"{\"siblings\": [ {\"rfilename\": ".to_vec();
            return a;
        }
        let mut names: Vec<String> = files.keys().cloned().collect();
        names.extend(s.extra_listed.get(&repo).cloned().unwrap_or_default());
        let siblings: Vec<String> = names
            .iter()
            .map(|n| format!("{{\"rfilename\":{}}}", json_str(n)))
            .collect();
        let mut a = Answer::new(200).h("Content-Type", "application/json");
        a.body = format!(
            "{{\"id\":\"{repo}\",\"sha\":\"{COMMIT}\",\"siblings\":[{}]}}",
            siblings.join(",")
        )
        .into_bytes();
        return a;
    }
    // /{owner}/{name}/resolve/{rev}/{file...}
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    let [owner, name, "resolve", rev, file] = parts.as_slice() else {
        return Answer::error(404, "NotFound", "no such route");
    };
    let repo = format!("{owner}/{name}");
    if s.behaviour.redirect_loop {
        return Answer::new(302).h("Location", path.clone());
    }
    if let Some(new) = s.renamed.get(&repo) {
        return Answer::new(307).h("Location", format!("/{new}/resolve/{rev}/{file}"));
    }
    let Some(files) = s.repos.get(&repo) else {
        return Answer::error(404, "RepoNotFound", "Repository not found");
    };
    if *rev != "main" && *rev != COMMIT {
        return Answer::error(404, "RevisionNotFound", "Invalid rev id");
    }
    let file = percent_decode(file);
    let Some(f) = files.get(&file).cloned() else {
        return Answer::error(404, "EntryNotFound", "Entry not found");
    };
    let described: Vec<u8> = if s.behaviour.wrong_etag {
        [f.content.as_slice(), b"x"].concat()
    } else {
        f.content.clone()
    };
    let size = s.behaviour.short_size.unwrap_or(f.content.len() as u64);
    if f.lfs {
        let sha = sha256_hex(&f.content);
        let base = if s.behaviour.relative_cdn { "" } else { cdn };
        return Answer::new(302)
            .h("Location", format!("{base}/blobs/{sha}?sig=abc"))
            .h("X-Linked-Etag", format!("\"{}\"", sha256_hex(&described)))
            .h("X-Linked-Size", size.to_string())
            .h("X-Repo-Commit", COMMIT)
            .h("ETag", format!("\"{}\"", sha256_hex(&described)));
    }
    let etag = git_sha1_hex(&described);
    let mut a = serve_body(req, &f.content, &mut s.behaviour);
    a.headers.push(("ETag".into(), format!("\"{etag}\"")));
    a.headers.push(("X-Repo-Commit".into(), COMMIT.into()));
    if s.behaviour.short_size.is_some() && a.status == 200 {
        a.length = Some(size);
    }
    a
}

fn route_cdn(req: &Request, state: &Arc<Mutex<State>>) -> Answer {
    let mut s = lock(state);
    let path = req.path.split('?').next().unwrap_or("");
    let Some(sha) = path.strip_prefix("/blobs/") else {
        return Answer::new(404);
    };
    let found = s
        .repos
        .values()
        .flat_map(|r| r.values())
        .find(|f| f.lfs && sha256_hex(&f.content) == sha)
        .map(|f| f.content.clone());
    match found {
        Some(c) => serve_body(req, &c, &mut s.behaviour),
        None => Answer::new(404),
    }
}

/// 200, or 206 for `Range: bytes=N-`, or 416; cut short while drops remain.
fn serve_body(req: &Request, content: &[u8], b: &mut Behaviour) -> Answer {
    let from = req
        .header("range")
        .filter(|_| !b.ignore_range)
        .and_then(|r| {
            r.strip_prefix("bytes=")
                .and_then(|r| r.strip_suffix('-'))
                .map(str::to_string)
        })
        .and_then(|n| n.parse::<usize>().ok());
    let mut a = match from {
        Some(n) if n >= content.len() => {
            return Answer::new(416).h("Content-Range", format!("bytes */{}", content.len()))
        }
        Some(n) => {
            let shown = n + b.bad_range as usize;
            let mut a = Answer::new(206).h(
                "Content-Range",
                format!("bytes {shown}-{}/{}", content.len() - 1, content.len()),
            );
            a.body = content[n..].to_vec();
            a
        }
        None => {
            let mut a = Answer::new(200);
            a.body = content.to_vec();
            a
        }
    };
    a.headers.push(("Accept-Ranges".into(), "bytes".into()));
    // Only bodies longer than the cut count as dropped.
    if req.method != "HEAD" && b.drops > 0 && b.drop_after < a.body.len() {
        b.drops -= 1;
        a.cut = Some(b.drop_after);
    }
    a
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if let (b'%', Some(v)) = (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

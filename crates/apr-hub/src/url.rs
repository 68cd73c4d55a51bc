//! The little URL work the client needs: percent-encoding path parts, the origin of a URL (for
//! deciding where the token may go) and resolving a redirect's Location (RFC 3986 section 5.2).

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a slash-separated path, keeping the slashes.
pub fn encode_path(p: &str) -> String {
    p.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// `scheme://authority`, lower-cased, or None when the URL is not absolute http(s).
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Credentials in the authority are never ours to send or compare.
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if host.is_empty() {
        return None;
    }
    let host = host.to_ascii_lowercase();
    // The default port is the same origin as no port.
    let host = match (
        scheme.as_str(),
        host.strip_suffix(":443"),
        host.strip_suffix(":80"),
    ) {
        ("https", Some(h), _) | ("http", _, Some(h)) => h.to_string(),
        _ => host,
    };
    Some(format!("{scheme}://{host}"))
}

/// The absolute URL a Location header points to, seen from `base`; None when unusable.
pub fn join(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    if location.is_empty() || location.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return None;
    }
    // A scheme (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`) makes it absolute.
    let scheme = location.split_once(':').map(|(s, _)| s).filter(|s| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if scheme.is_some() {
        return origin(location).map(|_| location.to_string());
    }
    let base_origin = origin(base)?;
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = base_origin.split("://").next()?;
        let url = format!("{scheme}://{rest}");
        return origin(&url).map(|_| url);
    }
    let base_path = {
        let after = &base[base.find("://")? + 3..];
        let start = after.find('/').map(|i| &after[i..]).unwrap_or("/");
        let end = start.find(['?', '#']).unwrap_or(start.len());
        &start[..end]
    };
    let joined = if location.starts_with('/') {
        location.to_string()
    } else if location.starts_with('?') {
        format!("{base_path}{location}")
    } else {
        let dir = &base_path[..base_path.rfind('/').map(|i| i + 1).unwrap_or(0)];
        format!("{dir}{location}")
    };
    Some(format!("{base_origin}{}", remove_dot_segments(&joined)))
}

/// Collapses `.` and `..` path segments (the query is left alone).
fn remove_dot_segments(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.find(['?', '#']) {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}{query}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_segments_and_paths() {
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode_segment("main"), "main");
        assert_eq!(encode_path("a b/c+d.json"), "a%20b/c%2Bd.json");
    }

    #[test]
    fn origins() {
        assert_eq!(
            origin("https://HuggingFace.co/x/y").as_deref(),
            Some("https://huggingface.co")
        );
        assert_eq!(
            origin("https://huggingface.co:443/x").as_deref(),
            Some("https://huggingface.co")
        );
        assert_eq!(
            origin("http://127.0.0.1:8080?q").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin("http://user:pw@h:1/").as_deref(), Some("http://h:1"));
        assert_eq!(origin("file:///etc/passwd"), None);
        assert_eq!(origin("/relative"), None);
    }

    #[test]
    fn joins_locations() {
        let base = "http://h:1/org/m/resolve/main/a/b.bin?x=1";
        assert_eq!(
            join(base, "https://cdn/z").as_deref(),
            Some("https://cdn/z")
        );
        assert_eq!(join(base, "//cdn:2/z").as_deref(), Some("http://cdn:2/z"));
        assert_eq!(
            join(base, "/api/x?y=2").as_deref(),
            Some("http://h:1/api/x?y=2")
        );
        assert_eq!(
            join(base, "c.bin").as_deref(),
            Some("http://h:1/org/m/resolve/main/a/c.bin")
        );
        assert_eq!(
            join(base, "../../v2/a/b.bin").as_deref(),
            Some("http://h:1/org/m/resolve/v2/a/b.bin")
        );
        assert_eq!(join(base, "/../../x").as_deref(), Some("http://h:1/x"));
        assert_eq!(
            join(base, "/login?next=https://evil/x").as_deref(),
            Some("http://h:1/login?next=https://evil/x")
        );
        assert_eq!(join(base, "ftp://x/y"), None);
        assert_eq!(join(base, "javascript:alert(1)"), None);
        assert_eq!(join(base, ""), None);
        assert_eq!(join(base, "a\nb"), None);
    }
}

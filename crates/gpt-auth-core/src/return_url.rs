//! Where a login may send the browser back to: the `rd` parameter, checked so that the login
//! page cannot be used as an open redirect.
//!
//! Accepted: a path on the login site (`/` followed by anything but `/` or `\`), or an absolute
//! `http`/`https` URL whose host is the login site's, under the cookie domain or explicitly
//! allowed. Everything else is refused, including the tricks browsers fall for: `//host`,
//! `/\host`, whitespace or control characters (raw or percent-encoded), userinfo
//! (`https://allowed@evil`), lookalike suffixes (`allowed.evil`), `https:host`, non-http schemes,
//! non-ASCII and percent-encoded hosts, IP addresses unless listed exactly.

use crate::http_url;

/// Longest return address accepted (it has to fit in the login-state cookie).
pub const MAX_LEN: usize = 1024;

/// Which hosts a login may return to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The session cookie's domain (`.example.com` or `example.com`): that domain and its
    /// subdomains are allowed.
    pub cookie_domain: Option<String>,
    /// Exact host names (`app.example.org`, `10.0.0.5`, `[::1]`), or `.suffix` entries meaning
    /// the suffix and its subdomains. Any port.
    pub allowed_hosts: Vec<String>,
    /// The login site's own host (a port is ignored); always allowed. Preferably the configured
    /// server name rather than the request's `Host`.
    pub own_host: Option<String>,
}

impl Policy {
    /// `rd` unchanged if a login may redirect there, `None` otherwise (then use a default).
    pub fn check(&self, rd: &str) -> Option<String> {
        if rd.is_empty() || rd.len() > MAX_LEN || !safe_characters(rd) {
            return None;
        }
        let ok = if rd.starts_with('/') {
            local_path_ok(rd)
        } else {
            match http_url::parse(rd) {
                Some(url) => self.host_allowed(&compare_form(url.host), url.is_ip_literal()),
                None => false,
            }
        };
        ok.then(|| rd.to_owned())
    }

    fn host_allowed(&self, host: &str, ip: bool) -> bool {
        if self.own_host.as_deref().is_some_and(|own| compare_form(strip_port(own)) == host) {
            return true;
        }
        // Suffix rules never apply to IP addresses (".0.0.1" is not a domain).
        if !ip && self.cookie_domain.as_deref().is_some_and(|d| under_domain(host, d)) {
            return true;
        }
        self.allowed_hosts.iter().any(|entry| match entry.strip_prefix('.') {
            Some(suffix) => !ip && under_domain(host, suffix),
            None => compare_form(entry) == host,
        })
    }
}

/// Printable ASCII without space, backslash, `"`, `<`, `>` (browsers always percent-encode
/// those), and no percent-encoded control character (`%0d%0a`, `%00`, `%7f`, ...).
fn safe_characters(rd: &str) -> bool {
    let b = rd.as_bytes();
    if !b.iter().all(|&c| c.is_ascii_graphic() && !matches!(c, b'\\' | b'"' | b'<' | b'>')) {
        return false;
    }
    !b.windows(3).any(|w| {
        w.first() == Some(&b'%')
            && match (w.get(1).copied().and_then(hex), w.get(2).copied().and_then(hex)) {
                (Some(hi), Some(lo)) => {
                    let byte = hi << 4 | lo;
                    byte < 0x20 || byte == 0x7f
                }
                _ => false,
            }
    })
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// A path on the login site. After decoding `%2e`, `%2f` and `%5c` (which servers behind the
/// redirect may decode), the path (before `?` or `#`) must have no empty, `.` or `..` segment
/// between two separators: `//`, `/\`, `/./`, `/../` are how a path turns into a host.
fn local_path_ok(rd: &str) -> bool {
    let path = rd.split(['?', '#']).next().unwrap_or(rd);
    let decoded = decode_separators(path.as_bytes());
    let mut segments = decoded.split(|&c| c == b'/' || c == b'\\');
    // The part before the leading '/', always empty.
    let _ = segments.next();
    let mut segments = segments.peekable();
    while let Some(segment) = segments.next() {
        let between_separators = segments.peek().is_some();
        if between_separators && matches!(segment, b"" | b"." | b"..") {
            return false;
        }
    }
    true
}

fn decode_separators(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while let Some(&c) = path.get(i) {
        if c == b'%' {
            if let (Some(hi), Some(lo)) =
                (path.get(i + 1).copied().and_then(hex), path.get(i + 2).copied().and_then(hex))
            {
                let byte = hi << 4 | lo;
                if matches!(byte, b'.' | b'/' | b'\\') {
                    out.push(byte);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Whether `host` (compare form) is `domain` or one of its subdomains.
fn under_domain(host: &str, domain: &str) -> bool {
    let domain = compare_form(domain.strip_prefix('.').unwrap_or(domain));
    if domain.is_empty() {
        return false;
    }
    host == domain
        || host
            .strip_suffix(domain.as_str())
            .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
}

/// Lowercase, without a trailing dot or IPv6 brackets.
fn compare_form(host: &str) -> String {
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    http_url::normalize_host(host)
}

/// `host:port`, `[v6]:port` → host.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => host.get(..=end).unwrap_or(host),
            None => host,
        };
    }
    match host.split_once(':') {
        // More than one colon: a bare IPv6 address.
        Some((h, port)) if !port.contains(':') => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> Policy {
        Policy {
            cookie_domain: Some(".example.com".into()),
            allowed_hosts: vec![
                "app.other.org".into(),
                ".corp.test".into(),
                "127.0.0.1".into(),
                "[::1]".into(),
                "Mixed.Case.Org.".into(),
            ],
            own_host: Some("login.example.net:8443".into()),
        }
    }

    const ACCEPTED: &[&str] = &[
        "/",
        "/redirect",
        "/path/to/page.html",
        "/path?x=1&y=2#frag",
        "/?rd=//evil.com",
        "/#//evil.com",
        "/a%20b",
        "/a%2Fb",
        "/a/b/",
        "/a/.../b",
        "/a/.",
        "/a/..",
        "/~user/x?q=%2F%2Fevil.com",
        "/x%25/y",
        "/50%",
        "https://example.com",
        "https://example.com/",
        "http://example.com/redirect",
        "HTTPS://EXAMPLE.COM/x",
        "hTTp://Example.Com/x",
        "https://sub.example.com/redirect",
        "https://a.b.example.com:8443/redirect",
        "https://example.com./x",
        "https://example.com?x=https://evil.com",
        "https://example.com#frag",
        "https://example.com/a//b",
        "https://app.other.org/x",
        "https://corp.test/",
        "https://x.corp.test/",
        "https://y.x.corp.test:8080/",
        "https://mixed.case.org/",
        "https://login.example.net/",
        "https://login.example.net:8443/oauth2/callback",
        "http://127.0.0.1:8080/",
        "http://[::1]/",
        "http://[::1]:3000/x",
    ];

    const REFUSED: &[&str] = &[
        "",
        "//evil.com",
        "///evil.com",
        "//example.com",
        "/\\evil.com",
        "\\\\evil.com",
        "/ /evil.com",
        "/ \\evil.com",
        "/\t/evil.com",
        "/\t\\evil.com",
        "/\u{b}/evil.com",
        "/\n/evil.com",
        "/\r/evil.com",
        "/\t/\t\\evil.com",
        "/./\\evil.com",
        "/./../../\\evil.com",
        "/.//evil.com",
        "/..//evil.com",
        "/a/../..//evil.com",
        "/%2F/evil.com",
        "/%2f/evil.com",
        "/%5Cevil.com",
        "/%5cevil.com",
        "/%2e/%2fevil.com",
        "/%2F%2Fevil.com",
        "/a%2F%2Fevil.com",
        "/foo%0d%0aSet-Cookie:%20x=y",
        "/foo%0D%0ALocation:%20https://evil.com",
        "/%00",
        "/%7f",
        "/%09/evil.com",
        "/a\u{0}b",
        "/a b",
        "/caf\u{e9}",
        "/\"><script>alert(1)</script>",
        "https://example.com/%0d%0aSet-Cookie:x",
        "https://evil.com",
        "https://evil.com/",
        "http://evil.com/redirect?rd=example.com",
        "https://evil.com:443/",
        "https://example.com.evil.com/",
        "https://notexample.com/",
        "https://xample.com/",
        "https://example.com@evil.com/",
        "https://user:pw@example.com/",
        "https://example.com:443@evil.com/",
        "https://evil.com#@example.com",
        "https://evil.com?@example.com",
        "https://evil.com\\@example.com",
        "https://evil.com\\.example.com",
        "https:evil.com",
        "https:/evil.com",
        "https:///evil.com",
        "https:example.com",
        "https:/example.com",
        "javascript:alert(1)",
        "JavaScript://example.com/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://example.com/",
        "example.com/redirect",
        "app.other.org",
        "?x=1",
        "#frag",
        "redirect",
        ".",
        "https://ex\u{e4}mple.com/",
        "https://\u{435}xample.com/",
        "https://example.com%2eevil.com/",
        "https://%65vil.com/",
        "https://other.org/",
        "https://x.app.other.org/",
        "https://corp.test.evil/",
        "https://evilcorp.test/",
        "https://login.example.net.evil.com/",
        "https://127.0.0.2/",
        "http://10.0.0.1/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://[::2]/",
        "http://[::1/",
        "https://example.com:99999/",
        "https://example.com:/",
        " https://example.com/",
        "https://example.com /",
        "https://example.com/\"><script>",
    ];

    #[test]
    fn table() {
        let p = policy();
        for rd in ACCEPTED {
            assert_eq!(p.check(rd).as_deref(), Some(*rd), "should accept {rd:?}");
        }
        for rd in REFUSED {
            assert_eq!(p.check(rd), None, "should refuse {rd:?}");
        }
        assert!(ACCEPTED.len() + REFUSED.len() >= 60);
    }

    #[test]
    fn length_limit() {
        let p = policy();
        let ok = format!("/{}", "a".repeat(MAX_LEN - 1));
        assert!(p.check(&ok).is_some());
        assert!(p.check(&format!("{ok}a")).is_none());
    }

    #[test]
    fn empty_policy_allows_only_paths() {
        let p = Policy::default();
        assert_eq!(p.check("/x").as_deref(), Some("/x"));
        assert_eq!(p.check("https://example.com/"), None);
        let p = Policy { cookie_domain: Some(".".into()), ..Policy::default() };
        assert_eq!(p.check("https://example.com/"), None);
        let p = Policy { allowed_hosts: vec![".".into(), "".into()], ..Policy::default() };
        assert_eq!(p.check("https://example.com/"), None);
    }

    #[test]
    fn cookie_domain_forms() {
        for domain in ["example.com", ".example.com", "Example.COM.", ".example.com."] {
            let p = Policy { cookie_domain: Some(domain.into()), ..Policy::default() };
            assert!(p.check("https://example.com/").is_some(), "{domain}");
            assert!(p.check("https://a.example.com/").is_some(), "{domain}");
            assert!(p.check("https://aexample.com/").is_none(), "{domain}");
            assert!(p.check("https://example.com.au/").is_none(), "{domain}");
        }
    }

    #[test]
    fn suffixes_never_match_ip_addresses() {
        let p = Policy {
            cookie_domain: Some(".0.1".into()),
            allowed_hosts: vec![".0.0.1".into(), ".1".into()],
            own_host: None,
        };
        assert!(p.check("http://127.0.0.1/").is_none());
        assert!(p.check("http://10.0.0.1/").is_none());
    }

    #[test]
    fn own_host_forms() {
        for own in ["login.example.net", "LOGIN.example.net.", "login.example.net:443"] {
            let p = Policy { own_host: Some(own.into()), ..Policy::default() };
            assert!(p.check("https://login.example.net:9/x").is_some(), "{own}");
            assert!(p.check("https://x.login.example.net/").is_none(), "{own}");
        }
        for own in ["[::1]:8443", "[::1]", "::1"] {
            let p = Policy { own_host: Some(own.into()), ..Policy::default() };
            assert!(p.check("http://[::1]:8443/").is_some(), "{own}");
            assert!(p.check("http://[::2]/").is_none(), "{own}");
        }
    }

    proptest! {
        #[test]
        fn prop_never_panics(s in ".{0,200}") {
            let _ = policy().check(&s);
        }

        #[test]
        fn prop_urlish_never_panics(s in "(https?:|/|%|\\\\|@|\\.|[a-z]|:|\\[|\\]|#|\\?|%2[fFeE]|%5[cC]|%0[dDaA]){0,30}") {
            if let Some(ok) = policy().check(&s) {
                // Whatever is accepted is unchanged, local or on an allowed host.
                prop_assert_eq!(&ok, &s);
                prop_assert!(!ok.starts_with("//"));
            }
        }

        #[test]
        fn prop_other_hosts_refused(host in "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,10}){0,3}") {
            let p = policy();
            let url = format!("https://{host}/x");
            let allowed = host == "example.com" || host.ends_with(".example.com")
                || host == "app.other.org" || host == "corp.test" || host.ends_with(".corp.test")
                || host == "login.example.net" || host == "127.0.0.1" || host == "mixed.case.org";
            prop_assert_eq!(p.check(&url).is_some(), allowed && http_url::parse(&url).is_some(), "{}", url);
        }
    }
}

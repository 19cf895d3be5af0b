//! Absolute `http`/`https` URLs: the strict syntax accepted for provider endpoints and return
//! addresses, split into scheme, host, port and the rest.
//!
//! Stricter than browsers on purpose, so that what is checked here is what a browser will
//! visit: printable ASCII only, no backslash, `//` right after the scheme, no userinfo, a DNS
//! name or an IP literal as the host (no percent-encoding, which browsers would decode).

/// Longest host name (RFC 1035).
const MAX_HOST_LEN: usize = 253;

/// The parts of an absolute `http`/`https` URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpUrl<'a> {
    /// `https` rather than `http` (the scheme is case-insensitive).
    pub https: bool,
    /// The host as written: a DNS name (possibly with a trailing dot), a dotted IPv4 address or
    /// a bracketed IPv6 literal.
    pub host: &'a str,
    pub port: Option<u16>,
    /// Path, query and fragment: empty or starting with `/`, `?` or `#`.
    pub rest: &'a str,
}

impl HttpUrl<'_> {
    /// The host lowercased, without a trailing dot: the form to compare.
    pub fn normalized_host(&self) -> String {
        normalize_host(self.host)
    }

    /// Whether the host is an IP literal: bracketed IPv6, or a name whose last label is a
    /// number (browsers parse `10.0.0.1`, `0x7f.1` and `2130706433` as IPv4 addresses).
    pub fn is_ip_literal(&self) -> bool {
        is_ip_literal(self.host)
    }
}

/// Lowercases a host and removes one trailing dot.
pub fn normalize_host(host: &str) -> String {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

/// See [`HttpUrl::is_ip_literal`].
pub fn is_ip_literal(host: &str) -> bool {
    if host.starts_with('[') {
        return true;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let last = host.rsplit('.').next().unwrap_or(host);
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// Parses an absolute `http`/`https` URL; `None` unless it has the strict form described in
/// the module documentation.
pub fn parse(url: &str) -> Option<HttpUrl<'_>> {
    if !url.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return None;
    }
    let (scheme, after) = url.split_once(':')?;
    let https = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return None;
    };
    let after = after.strip_prefix("//")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, after_host) = authority.split_at(close + 1);
        let inner = host.strip_prefix('[')?.strip_suffix(']')?;
        if inner.is_empty()
            || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        let port = match after_host {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':')?)?),
        };
        (host, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(parse_port(port)?)),
            None => (authority, None),
        };
        if !valid_host_name(host) {
            return None;
        }
        (host, port)
    };
    Some(HttpUrl { https, host, port, rest })
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|&p| p != 0)
}

/// Dot-separated labels of letters, digits, `-` and `_`, one trailing dot allowed.
fn valid_host_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= MAX_HOST_LEN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parts(url: &str) -> Option<(bool, &str, Option<u16>, &str)> {
        parse(url).map(|u| (u.https, u.host, u.port, u.rest))
    }

    #[test]
    fn accepts() {
        assert_eq!(parts("https://example.com"), Some((true, "example.com", None, "")));
        assert_eq!(
            parts("HTTP://Example.COM./a?b#c"),
            Some((false, "Example.COM.", None, "/a?b#c"))
        );
        assert_eq!(parts("https://a.b:8443/x"), Some((true, "a.b", Some(8443), "/x")));
        assert_eq!(parts("http://127.0.0.1:9000?x"), Some((false, "127.0.0.1", Some(9000), "?x")));
        assert_eq!(parts("http://[::1]:80/"), Some((false, "[::1]", Some(80), "/")));
        assert_eq!(parts("https://[2001:db8::1]#f"), Some((true, "[2001:db8::1]", None, "#f")));
        assert_eq!(
            parts("https://my_host-1.internal/"),
            Some((true, "my_host-1.internal", None, "/"))
        );
        let u = parse("https://Example.COM./").unwrap();
        assert_eq!(u.normalized_host(), "example.com");
        assert!(!u.is_ip_literal());
    }

    #[test]
    fn refuses() {
        for bad in [
            "",
            "example.com",
            "/path",
            "//example.com",
            "ftp://example.com",
            "javascript://example.com",
            "https:example.com",
            "https:/example.com",
            "https:///example.com",
            "https://",
            "https://user@example.com",
            "https://user:pw@example.com",
            "https://example.com@evil.com",
            "https://exa mple.com",
            "https://example.com/a b",
            "https://example.com\\@evil.com",
            "https://example.com\t/",
            "https://ex%61mple.com",
            "https://exämple.com",
            "https://example..com",
            "https://.example.com",
            "https://example.com..",
            "https://example.com:",
            "https://example.com:0",
            "https://example.com:65536",
            "https://example.com:123456",
            "https://example.com:80:80",
            "https://example.com:+80",
            "https://[::1",
            "https://[]",
            "https://[::1]x",
            "https://[::1]:",
            "https://[::g]",
            "https://a,b.com",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert!(parse(&format!("https://{}.com", "a".repeat(64))).is_none());
        assert!(parse(&format!("https://{}com", "a.".repeat(130))).is_none());
    }

    #[test]
    fn ip_literals() {
        for ip in
            ["127.0.0.1", "10.1", "2130706433", "0x7f.1", "a.0X7F", "a.0x", "1.2.3.4.", "[::1]"]
        {
            assert!(is_ip_literal(ip), "{ip}");
        }
        for name in ["example.com", "1.2.3.com", "0x7g", "a.1x", "localhost"] {
            assert!(!is_ip_literal(name), "{name}");
        }
    }

    proptest! {
        #[test]
        fn prop_never_panics(s in ".{0,100}") {
            if let Some(u) = parse(&s) {
                let _ = (u.normalized_host(), u.is_ip_literal());
            }
        }

        #[test]
        fn prop_urlish_never_panics(s in "(https?|HTTP)://[a-z0-9.:@\\[\\]%/?#-]{0,40}") {
            if let Some(u) = parse(&s) {
                prop_assert!(!u.host.is_empty());
                prop_assert!(!u.host.contains('@'));
            }
        }
    }
}

//! The return-address policy (`return_url::Policy::check`) on the client's `rd`: the guard
//! against open redirects. An accepted address must be unchanged, printable ASCII without
//! backslash, whitespace or a percent-encoded control character, never start with `//`, and
//! lead a browser to an allowed host. "Where a browser goes" is decided by a second parser,
//! the `url` crate (the WHATWG URL standard, which browsers implement), not by `http_url`:
//! - a path, resolved against the login page, stays on the login site, also after a server
//!   behind the redirect decoded `%2F`, `%5C` and `%2E` in it;
//! - an absolute URL's host is the login site's own, the cookie domain or under it, or an
//!   allowed host (entries normalized by the same WHATWG host parser).
//!
//! Input: a first byte below 0xF0 picks one of four fixed policies and the rest is `rd`; from
//! 0xF0 on, the rest is `policy NUL rd` with the policy written as lines: cookie domain, own
//! host, allowed hosts (see `gpt_auth_fuzz::custom_policy`). `rd` is decoded from the query
//! string before the check, so it is UTF-8 (invalid bytes become U+FFFD, as in the module).
#![no_main]

use gpt_auth_core::return_url::{Policy, MAX_LEN};
use gpt_auth_fuzz::{custom_policy, fixed_policies, split_once};
use libfuzzer_sys::fuzz_target;
use url::{Host, Url};

const LOGIN_PAGE: &str = "https://login.invalid/gpt_auth/login?rd=x";

/// `%XX` decoding to a control character (or DEL).
fn has_encoded_control(s: &str) -> bool {
    s.as_bytes().windows(3).any(|w| {
        let hex = |c: u8| (c as char).to_digit(16);
        match (w[0], hex(w[1]), hex(w[2])) {
            (b'%', Some(hi), Some(lo)) => hi * 16 + lo < 0x20 || hi * 16 + lo == 0x7f,
            _ => false,
        }
    })
}

/// The path of `rd` with `%2F`, `%5C` and `%2E` decoded (any case), query and fragment kept.
fn decode_separators(rd: &str) -> String {
    let end = rd.find(['?', '#']).unwrap_or(rd.len());
    let (path, rest) = rd.split_at(end);
    let mut out = String::new();
    let mut i = 0;
    while i < path.len() {
        let decoded = match path.get(i..i + 3).map(str::to_ascii_lowercase).as_deref() {
            Some("%2f") => Some('/'),
            Some("%5c") => Some('\\'),
            Some("%2e") => Some('.'),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                i += 3;
            }
            None => {
                let c = path[i..].chars().next().unwrap();
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out + rest
}

/// `host[:port]`, `[v6][:port]`, `v6` → host.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.split_once(':') {
        Some((h, port)) if !port.contains(':') => h,
        _ => host,
    }
}

/// A host as the WHATWG parser serializes it, without a trailing dot; `None` if it is none.
/// Like the policy, brackets are dropped before comparing (`[v6]` and `v6` are the same entry,
/// and so are `[name]` and `name`) and one trailing dot is ignored.
fn whatwg_host(host: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let bracketed;
    let host = if host.contains(':') {
        bracketed = format!("[{host}]");
        &bracketed
    } else {
        host
    };
    let h = Host::parse(host).ok()?.to_string();
    Some(h.strip_suffix('.').unwrap_or(&h).to_owned())
}

fn under(host: &str, domain: &str) -> bool {
    let Some(domain) = whatwg_host(domain.strip_prefix('.').unwrap_or(domain)) else {
        return false;
    };
    !domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}")))
}

fn allowed(policy: &Policy, host: &str) -> bool {
    policy.own_host.as_deref().is_some_and(|own| whatwg_host(strip_port(own)).as_deref() == Some(host))
        || policy.cookie_domain.as_deref().is_some_and(|d| under(host, d))
        // As in the policy, `under` drops one more leading dot: `..corp.test` is `.corp.test`.
        || policy.allowed_hosts.iter().any(|entry| match entry.strip_prefix('.') {
            Some(suffix) => under(host, suffix),
            None => whatwg_host(entry).as_deref() == Some(host),
        })
}

fuzz_target!(|data: &[u8]| {
    let Some((&select, rest)) = data.split_first() else { return };
    let (policy, rd) = if select >= 0xF0 {
        let (policy, rd) = split_once(rest, 0);
        (custom_policy(&String::from_utf8_lossy(policy)), rd.unwrap_or_default())
    } else {
        let fixed = fixed_policies();
        (fixed[usize::from(select) % fixed.len()].clone(), rest)
    };
    let rd = String::from_utf8_lossy(rd);

    let Some(ok) = policy.check(&rd) else { return };
    assert_eq!(ok, rd, "accepted address changed");
    assert!(!ok.is_empty() && ok.len() <= MAX_LEN);
    assert!(
        ok.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'),
        "accepted address with a control character, whitespace, backslash or non-ASCII: {ok:?}"
    );
    assert!(
        !has_encoded_control(&ok),
        "accepted address with an encoded control character: {ok:?}"
    );
    assert!(!ok.starts_with("//"), "accepted protocol-relative address: {ok:?}");

    let login = Url::parse(LOGIN_PAGE).unwrap();
    if ok.starts_with('/') {
        for path in [ok.clone(), decode_separators(&ok)] {
            let Ok(url) = login.join(&path) else { continue };
            assert_eq!(
                (url.scheme(), url.host_str()),
                ("https", Some("login.invalid")),
                "path {ok:?} leaves the login site (as {path:?}: {url})"
            );
        }
    } else {
        // A URL browsers cannot parse leads nowhere.
        let Ok(url) = Url::parse(&ok) else { return };
        assert!(matches!(url.scheme(), "http" | "https"), "{ok:?}: {url}");
        let host = url.host_str().expect("http(s) URLs have a host");
        let host = host.strip_suffix('.').unwrap_or(host);
        assert!(allowed(&policy, host), "{ok:?} leads to {host:?}, not allowed by {policy:?}");
    }
});

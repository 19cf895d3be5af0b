//! The `Cache-Control` of responses that passed the login check: they belong to one user, so
//! no shared cache may keep them (`private`), and pages (HTML) are not kept at all (`no-store`),
//! so that after a logout the browser cannot show them again from its cache.

use std::borrow::Cow;

/// The header value for a protected response, from the upstream's own `Cache-Control` values:
/// `public` and the shared-cache directives (`s-maxage`, `proxy-revalidate`) are dropped,
/// `private` is put first, `no-store` is added for HTML; everything else is kept.
/// `None` when the response already says `no-store` (no cache keeps it: nothing to add).
/// Without upstream directives it is one of two constants (no allocation on the hot path).
pub fn protected(existing: &[&[u8]], html: bool) -> Option<Cow<'static, str>> {
    if existing.is_empty() {
        return Some(Cow::Borrowed(if html { "private, no-store" } else { "private" }));
    }
    let mut out = String::from("private");
    for value in existing {
        for d in value.split(|&b| b == b',') {
            let d = d.trim_ascii();
            let Ok(d) = core::str::from_utf8(d) else { continue };
            let name = d.split('=').next().unwrap_or_default().trim().to_ascii_lowercase();
            match name.as_str() {
                "" | "public" | "private" | "s-maxage" | "proxy-revalidate" => continue,
                "no-store" => return None,
                _ => {}
            }
            if d.bytes().any(|b| b.is_ascii_control()) {
                continue;
            }
            out.push_str(", ");
            out.push_str(d);
        }
    }
    if html {
        out.push_str(", no-store");
    }
    Some(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_caches_never_keep_it() {
        let p = |e: &[&[u8]], html| protected(e, html).map(|c| c.into_owned());
        assert_eq!(p(&[], false).as_deref(), Some("private"));
        assert_eq!(p(&[b"public, max-age=600"], false).as_deref(), Some("private, max-age=600"));
        assert_eq!(
            p(&[b"max-age=60, s-maxage=3600", b"Public , must-revalidate"], false).as_deref(),
            Some("private, max-age=60, must-revalidate")
        );
        assert_eq!(p(&[b"private, no-cache"], false).as_deref(), Some("private, no-cache"));
    }

    #[test]
    fn pages_are_not_stored() {
        let p = |e: &[&[u8]], html| protected(e, html).map(|c| c.into_owned());
        assert_eq!(p(&[], true).as_deref(), Some("private, no-store"));
        assert_eq!(
            p(&[b"public, max-age=600"], true).as_deref(),
            Some("private, max-age=600, no-store")
        );
        // Already never stored: left as it is.
        assert_eq!(p(&[b"no-store"], true), None);
        assert_eq!(p(&[b"public", b"No-Store"], false), None);
    }

    #[test]
    fn garbage_is_dropped() {
        let got = protected(&[b",,\xff\xfe, max-age=1"], false).map(|c| c.into_owned());
        assert_eq!(got.as_deref(), Some("private, max-age=1"));
    }
}

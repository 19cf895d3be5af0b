//! Telling a browser navigation (which should be sent to the login page) from an API call, an
//! XHR/`fetch` or a form post (which should get a plain 401).

/// The request properties the decision looks at.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestKind<'a> {
    /// GET or HEAD.
    pub safe_method: bool,
    pub accept: Option<&'a [u8]>,
    pub sec_fetch_mode: Option<&'a [u8]>,
    pub x_requested_with: Option<&'a [u8]>,
}

impl RequestKind<'_> {
    /// A top-level browser navigation: GET/HEAD accepting `text/html`, not marked as XHR, and
    /// (when the browser says) of fetch mode `navigate`.
    pub fn is_navigation(&self) -> bool {
        self.safe_method
            && self.x_requested_with.is_none()
            && self.sec_fetch_mode.is_none_or(|m| m.eq_ignore_ascii_case(b"navigate"))
            && self.accept.is_some_and(|a| contains_ci(a, b"text/html"))
    }
}

fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BROWSER: &[u8] = b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

    #[test]
    fn navigation() {
        let nav = RequestKind { safe_method: true, accept: Some(BROWSER), ..Default::default() };
        assert!(nav.is_navigation());
        assert!(RequestKind { sec_fetch_mode: Some(b"navigate"), ..nav }.is_navigation());
        assert!(RequestKind { accept: Some(b"TEXT/HTML"), ..nav }.is_navigation());
    }

    #[test]
    fn not_navigation() {
        let nav = RequestKind { safe_method: true, accept: Some(BROWSER), ..Default::default() };
        assert!(!RequestKind { safe_method: false, ..nav }.is_navigation());
        assert!(!RequestKind { accept: None, ..nav }.is_navigation());
        assert!(!RequestKind { accept: Some(b"*/*"), ..nav }.is_navigation());
        assert!(!RequestKind { accept: Some(b"application/json"), ..nav }.is_navigation());
        assert!(!RequestKind { sec_fetch_mode: Some(b"cors"), ..nav }.is_navigation());
        assert!(!RequestKind { x_requested_with: Some(b"XMLHttpRequest"), ..nav }.is_navigation());
    }
}

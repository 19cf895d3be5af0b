//! JSON helpers: parsing shared by the parsers of provider documents, tokens and the state cookie.

use serde::de::DeserializeOwned;

/// Parses `bytes` as a JSON object into `T`; `None` if it is not valid JSON, not an object (a
/// derived `Deserialize` would also take an array, filling fields by position) or does not fit
/// `T` (a wrong type, or a field of `T` given twice).
pub(crate) fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

/// `s` as a JSON string literal (quoted and escaped), for the small JSON answers the module
/// writes by hand.
pub fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Whether `bytes` looks like an HTML page (an error page from a proxy or a login form) rather
/// than JSON.
pub(crate) fn looks_like_html(bytes: &[u8]) -> bool {
    bytes.trim_ascii_start().first() == Some(&b'<')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct T {
        a: Option<u32>,
        b: Option<String>,
    }

    #[test]
    fn objects_only() {
        assert_eq!(parse_object::<T>(b" {\"a\":1}"), Some(T { a: Some(1), b: None }));
        assert_eq!(parse_object::<T>(b"{\"a\":null,\"c\":[1]}"), Some(T { a: None, b: None }));
        assert_eq!(parse_object::<T>(b"[1,\"x\"]"), None);
        assert_eq!(parse_object::<T>(b"{\"a\":1,\"a\":2}"), None, "duplicate member");
        assert_eq!(parse_object::<T>(b"{\"a\":\"1\"}"), None, "wrong type");
        assert_eq!(parse_object::<T>(b"{\"a\":1} x"), None, "trailing garbage");
        assert_eq!(parse_object::<T>(b""), None);
        let deep = "[".repeat(10_000);
        assert_eq!(parse_object::<T>(format!("{{\"c\":{deep}").as_bytes()), None);
        assert!(looks_like_html(b"\n <!DOCTYPE html>"));
        assert!(!looks_like_html(b"{}"));
    }
}

//! `application/x-www-form-urlencoded` data: query strings (`rd`, `code`, `state`) and
//! `form_post` callback bodies (`id_token`, `g_csrf_token`). `+` is a space, invalid UTF-8
//! becomes U+FFFD, per the WHATWG URL standard (via the `form_urlencoded` crate).

/// Query strings longer than this are not searched.
pub const MAX_QUERY_LEN: usize = 8 * 1024;

/// Form bodies longer than this are not parsed.
pub const MAX_FORM_LEN: usize = 64 * 1024;

/// At most this many pairs are returned from a form body.
pub const MAX_FORM_PARAMS: usize = 64;

/// The decoded value of the first parameter called `name` in `query` (without the `?`);
/// `None` if there is none or the query is longer than [`MAX_QUERY_LEN`].
pub fn decode_query_param(query: &[u8], name: &str) -> Option<String> {
    if query.len() > MAX_QUERY_LEN {
        return None;
    }
    form_urlencoded::parse(query).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The decoded pairs of a form body, in order, at most [`MAX_FORM_PARAMS`]; empty if the body
/// is longer than [`MAX_FORM_LEN`].
pub fn form_params(body: &[u8]) -> Vec<(String, String)> {
    if body.len() > MAX_FORM_LEN {
        return Vec::new();
    }
    form_urlencoded::parse(body)
        .take(MAX_FORM_PARAMS)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The fields of a Google Identity Services credential POST (`credential`, `g_csrf_token`):
/// from a form body, or from a JSON object when the request says `application/json` (Google's
/// verification guide shows that form too). `None` when the body is not one (too long, not a
/// JSON object, a field given twice or not a string in JSON).
pub fn gsi_fields(body: &[u8], content_type: &[u8]) -> Option<(Option<String>, Option<String>)> {
    if body.len() > MAX_FORM_LEN {
        return None;
    }
    let media = content_type.split(|&b| b == b';').next().unwrap_or_default();
    if media.trim_ascii().eq_ignore_ascii_case(b"application/json") {
        #[derive(serde::Deserialize)]
        struct Gsi {
            credential: Option<String>,
            g_csrf_token: Option<String>,
        }
        let g: Gsi = serde_json::from_slice(body).ok()?;
        return Some((g.credential, g.g_csrf_token));
    }
    let params = form_params(body);
    let field = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    Some((field("credential"), field("g_csrf_token")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn gsi_fields_from_a_form_or_json() {
        let form = b"credential=eyJ.a.b&g_csrf_token=c9&select_by=btn";
        let both = (Some("eyJ.a.b".to_owned()), Some("c9".to_owned()));
        assert_eq!(gsi_fields(form, b"application/x-www-form-urlencoded"), Some(both.clone()));
        assert_eq!(gsi_fields(form, b""), Some(both.clone()), "no type: a form");
        let json = br#"{"credential":"eyJ.a.b","g_csrf_token":"c9","select_by":"btn"}"#;
        assert_eq!(gsi_fields(json, b"Application/JSON; charset=utf-8"), Some(both));
        assert_eq!(
            gsi_fields(br#"{"credential":"x"}"#, b"application/json"),
            Some((Some("x".into()), None))
        );
        assert_eq!(
            gsi_fields(br#"{"credential":"x","credential":"y"}"#, b"application/json"),
            None
        );
        assert_eq!(gsi_fields(br#"{"credential":1}"#, b"application/json"), None);
        assert_eq!(gsi_fields(b"credential=x", b"application/json"), None, "not JSON");
        assert_eq!(gsi_fields(br#"["credential"]"#, b"application/json"), None);
        assert_eq!(gsi_fields(&vec![b' '; MAX_FORM_LEN + 1], b"application/json"), None);
    }

    #[test]
    fn query_params() {
        let q = b"code=4%2F0AX&state=AAEC&rd=%2Fpath%3Fa%3D1%26b%3D2&x=a+b&empty=&flag";
        assert_eq!(decode_query_param(q, "code").as_deref(), Some("4/0AX"));
        assert_eq!(decode_query_param(q, "rd").as_deref(), Some("/path?a=1&b=2"));
        assert_eq!(decode_query_param(q, "x").as_deref(), Some("a b"));
        assert_eq!(decode_query_param(q, "empty").as_deref(), Some(""));
        assert_eq!(decode_query_param(q, "flag").as_deref(), Some(""));
        assert_eq!(decode_query_param(q, "missing"), None);
        assert_eq!(decode_query_param(q, "Code"), None, "names are case-sensitive");
        assert_eq!(decode_query_param(b"rd=1&rd=2", "rd").as_deref(), Some("1"), "first wins");
        assert_eq!(decode_query_param(b"r%64=x", "rd").as_deref(), Some("x"));
        assert_eq!(decode_query_param(b"rd=%0d%0a", "rd").as_deref(), Some("\r\n"));
        assert_eq!(decode_query_param(b"rd=%ff", "rd").as_deref(), Some("\u{fffd}"));
        assert_eq!(decode_query_param(b"rd=%zz%", "rd").as_deref(), Some("%zz%"));
        let long = format!("rd=x&pad={}", "a".repeat(MAX_QUERY_LEN));
        assert_eq!(decode_query_param(long.as_bytes(), "rd"), None);
    }

    #[test]
    fn form_bodies() {
        let body = b"credential=eyJ.eyJ.sig&g_csrf_token=abc%2B123&select_by=btn+confirm";
        assert_eq!(
            form_params(body),
            [
                ("credential".to_string(), "eyJ.eyJ.sig".to_string()),
                ("g_csrf_token".to_string(), "abc+123".to_string()),
                ("select_by".to_string(), "btn confirm".to_string()),
            ]
        );
        assert!(form_params(b"").is_empty());
        let many = (0..100).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join("&");
        assert_eq!(form_params(many.as_bytes()).len(), MAX_FORM_PARAMS);
        let big = vec![b'a'; MAX_FORM_LEN + 1];
        assert!(form_params(&big).is_empty());
    }

    proptest! {
        #[test]
        fn prop_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), name in ".{0,8}") {
            let _ = decode_query_param(&bytes, &name);
            prop_assert!(form_params(&bytes).len() <= MAX_FORM_PARAMS);
        }
    }
}

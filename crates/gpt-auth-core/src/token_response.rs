//! The token endpoint's answer to the authorization code exchange (OAuth 2.0 §5.1, §5.2;
//! OpenID Connect Core §3.1.3.3): the ID token, or the provider's error code and description.

use serde::Deserialize;
use serde_json::Value;

use crate::json::{looks_like_html, parse_object};
use crate::log_safe::log_safe;

/// Responses longer than this are refused before parsing.
pub const MAX_RESPONSE_LEN: usize = 64 * 1024;

/// Longest `error` kept (the standard codes are under 30 characters).
pub const MAX_ERROR_LEN: usize = 64;

/// Longest `error_description` kept.
pub const MAX_DESCRIPTION_LEN: usize = 256;

/// A successful token response. `Debug` does not print the tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    pub id_token: String,
    pub access_token: Option<String>,
    pub token_type: Option<String>,
}

impl core::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("id_token", &format_args!("<{} bytes>", self.id_token.len()))
            .field("access_token", &self.access_token.as_ref().map(|_| "<redacted>"))
            .field("token_type", &self.token_type)
            .finish()
    }
}

/// Why no ID token came out of a token response. `Display` is safe to log: the provider's
/// `error` and `error_description` are cut short and reduced to printable ASCII.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenResponseError {
    #[error("token response too large ({0} bytes)")]
    TooLarge(usize),
    #[error("token response is an HTML page, not JSON")]
    Html,
    #[error("token response is not a valid JSON object")]
    NotJson,
    /// The provider refused (`invalid_grant`: the code was used or expired; `invalid_client`:
    /// wrong client id or secret; ...).
    #[error("provider error \"{error}\"{}", description.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Provider { error: String, description: Option<String> },
    #[error("token response has no id_token (is the openid scope requested?)")]
    MissingIdToken,
    #[error("token response {0} has the wrong type")]
    BadField(&'static str),
}

#[derive(Deserialize)]
struct RawResponse {
    id_token: Option<Value>,
    access_token: Option<Value>,
    token_type: Option<Value>,
    error: Option<Value>,
    error_description: Option<Value>,
}

/// Parses a token endpoint response body (whatever the HTTP status: an `error` member makes it
/// an error response).
pub fn parse(body: &[u8]) -> Result<TokenResponse, TokenResponseError> {
    use TokenResponseError as E;

    if body.len() > MAX_RESPONSE_LEN {
        return Err(E::TooLarge(body.len()));
    }
    let raw: RawResponse =
        parse_object(body).ok_or(if looks_like_html(body) { E::Html } else { E::NotJson })?;
    if let Some(error) = raw.error {
        let error = match error {
            Value::String(s) => log_safe(&s, MAX_ERROR_LEN),
            _ => return Err(E::BadField("error")),
        };
        let description = match raw.error_description {
            Some(Value::String(s)) => Some(log_safe(&s, MAX_DESCRIPTION_LEN)),
            _ => None,
        };
        return Err(E::Provider { error, description });
    }
    let id_token = match raw.id_token {
        None | Some(Value::Null) => return Err(E::MissingIdToken),
        Some(Value::String(s)) if s.is_empty() => return Err(E::MissingIdToken),
        Some(Value::String(s)) => s,
        Some(_) => return Err(E::BadField("id_token")),
    };
    Ok(TokenResponse {
        id_token,
        access_token: optional_string(raw.access_token, "access_token")?,
        token_type: optional_string(raw.token_type, "token_type")?,
    })
}

fn optional_string(
    v: Option<Value>,
    field: &'static str,
) -> Result<Option<String>, TokenResponseError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TokenResponseError::BadField(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn success() {
        let body = br#"{"access_token":"ya29.a0Af","expires_in":3599,"scope":"openid email",
            "token_type":"Bearer","id_token":"eyJhbGciOiJSUzI1NiJ9.eyJ9.c2ln"}"#;
        let r = parse(body).unwrap();
        assert_eq!(r.id_token, "eyJhbGciOiJSUzI1NiJ9.eyJ9.c2ln");
        assert_eq!(r.access_token.as_deref(), Some("ya29.a0Af"));
        assert_eq!(r.token_type.as_deref(), Some("Bearer"));
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("eyJ") && !dbg.contains("ya29"), "{dbg}");
        let r = parse(br#"{"id_token":"a.b.c"}"#).unwrap();
        assert_eq!((r.access_token, r.token_type), (None, None));
    }

    #[test]
    fn provider_errors() {
        let e =
            parse(br#"{"error":"invalid_grant","error_description":"Bad Request"}"#).unwrap_err();
        assert_eq!(
            e,
            TokenResponseError::Provider {
                error: "invalid_grant".into(),
                description: Some("Bad Request".into())
            }
        );
        assert_eq!(e.to_string(), "provider error \"invalid_grant\": Bad Request");
        let e = parse(br#"{"error":"invalid_client"}"#).unwrap_err();
        assert_eq!(e.to_string(), "provider error \"invalid_client\"");
        // An error wins over a token.
        assert!(matches!(
            parse(br#"{"error":"x","id_token":"a.b.c"}"#),
            Err(TokenResponseError::Provider { .. })
        ));
        // Sanitized and truncated.
        let body = serde_json::json!({
            "error": format!("evil\r\nInjected: yes{}", "x".repeat(500)),
            "error_description": "caf\u{e9} \u{1b}[31m".repeat(100),
        });
        let e = parse(body.to_string().as_bytes()).unwrap_err();
        let TokenResponseError::Provider { error, description } = &e else { panic!("{e:?}") };
        assert!(error.starts_with("evil??Injected: yes"));
        assert_eq!(error.len(), MAX_ERROR_LEN + 3);
        let description = description.as_deref().unwrap();
        assert!(description.starts_with("caf? ?[31m"));
        assert_eq!(description.len(), MAX_DESCRIPTION_LEN + 3);
        let msg = e.to_string();
        assert!(msg.bytes().all(|b| (b' '..=b'~').contains(&b)), "{msg}");
        assert!(msg.len() < 400);
        // Description of the wrong type is dropped; error of the wrong type is refused.
        assert_eq!(
            parse(br#"{"error":"x","error_description":5}"#),
            Err(TokenResponseError::Provider { error: "x".into(), description: None })
        );
        assert_eq!(parse(br#"{"error":5}"#), Err(TokenResponseError::BadField("error")));
    }

    #[test]
    fn not_a_token_response() {
        use TokenResponseError as E;
        assert_eq!(parse(b"<html><body>502 Bad Gateway</body></html>"), Err(E::Html));
        assert_eq!(parse(b"\r\n<!DOCTYPE html>"), Err(E::Html));
        assert_eq!(parse(b""), Err(E::NotJson));
        assert_eq!(parse(b"access_token=x&id_token=y"), Err(E::NotJson));
        assert_eq!(parse(b"[\"a.b.c\"]"), Err(E::NotJson));
        assert_eq!(parse(b"{\"id_token\":\"a\",\"id_token\":\"b\"}"), Err(E::NotJson));
        assert_eq!(parse(b"{}"), Err(E::MissingIdToken));
        assert_eq!(parse(br#"{"access_token":"x","token_type":"Bearer"}"#), Err(E::MissingIdToken));
        assert_eq!(parse(br#"{"id_token":""}"#), Err(E::MissingIdToken));
        assert_eq!(parse(br#"{"id_token":null}"#), Err(E::MissingIdToken));
        assert_eq!(parse(br#"{"id_token":["a"]}"#), Err(E::BadField("id_token")));
        assert_eq!(
            parse(br#"{"id_token":"a","access_token":1}"#),
            Err(E::BadField("access_token"))
        );
        assert_eq!(parse(br#"{"id_token":"a","token_type":{}}"#), Err(E::BadField("token_type")));
        let big = vec![b' '; MAX_RESPONSE_LEN + 1];
        assert_eq!(parse(&big), Err(E::TooLarge(MAX_RESPONSE_LEN + 1)));
    }

    proptest! {
        #[test]
        fn prop_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            if let Err(e) = parse(&bytes) {
                let _ = e.to_string();
            }
        }

        #[test]
        fn prop_errors_are_log_safe(error in ".{0,100}", description in ".{0,400}") {
            let body = serde_json::json!({ "error": error, "error_description": description });
            let msg = parse(body.to_string().as_bytes()).unwrap_err().to_string();
            prop_assert!(msg.bytes().all(|b| (b' '..=b'~').contains(&b)));
            prop_assert!(msg.len() <= 40 + MAX_ERROR_LEN + MAX_DESCRIPTION_LEN + 6);
        }
    }
}

//! The provider's configuration document (OpenID Connect Discovery 1.0, served at
//! `<issuer>/.well-known/openid-configuration`): where to send the browser, where to redeem
//! the authorization code and where the signing keys are.

use serde::Deserialize;
use serde_json::Value;

use crate::http_url;
use crate::json::parse_object;
use crate::log_safe::log_safe;

/// Documents longer than this are refused before parsing.
pub const MAX_DOCUMENT_LEN: usize = 128 * 1024;

/// Appended to the issuer to find the document.
pub const WELL_KNOWN_PATH: &str = "/.well-known/openid-configuration";

/// The token endpoint authentication a provider supports when it does not say (Discovery §3).
pub const DEFAULT_AUTH_METHOD: &str = "client_secret_basic";

/// Why a discovery document was refused. `Display` is safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("document too large ({0} bytes)")]
    TooLarge(usize),
    #[error("document is an HTML page, not JSON")]
    Html,
    #[error("document is not a valid JSON object")]
    NotJson,
    #[error("no {0}")]
    MissingField(&'static str),
    #[error("{0} has the wrong type")]
    BadField(&'static str),
    #[error("configured issuer is not an http(s) URL without query and fragment")]
    InvalidIssuer,
    /// OpenID Connect Discovery 1.0 §4.3: the document must be about the configured issuer.
    #[error("document is for issuer \"{0}\", not the configured one")]
    IssuerMismatch(String),
    #[error("{0} is not an absolute http(s) URL without fragment")]
    InvalidUrl(&'static str),
    #[error("{0} is not https (http is only accepted for an http issuer)")]
    InsecureUrl(&'static str),
}

/// The parts of a provider's configuration this module uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub end_session_endpoint: Option<String>,
    /// Empty when the document does not say (see [`Discovery::supports_auth_method`]).
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Empty when the document does not say (the provider may still support PKCE).
    pub code_challenge_methods_supported: Vec<String>,
    /// RFC 9207: the provider adds `iss` to its authorization responses.
    pub authorization_response_iss_parameter_supported: bool,
}

impl Discovery {
    /// Whether the provider says it supports PKCE with S256.
    pub fn supports_pkce_s256(&self) -> bool {
        self.code_challenge_methods_supported.iter().any(|m| m == "S256")
    }

    /// Whether the provider supports this token endpoint authentication method
    /// (`client_secret_basic`, `client_secret_post`, ...); a document that lists none supports
    /// only [`DEFAULT_AUTH_METHOD`].
    pub fn supports_auth_method(&self, method: &str) -> bool {
        if self.token_endpoint_auth_methods_supported.is_empty() {
            return method == DEFAULT_AUTH_METHOD;
        }
        self.token_endpoint_auth_methods_supported.iter().any(|m| m == method)
    }
}

#[derive(Deserialize)]
struct RawDiscovery {
    issuer: Option<Value>,
    authorization_endpoint: Option<Value>,
    token_endpoint: Option<Value>,
    jwks_uri: Option<Value>,
    end_session_endpoint: Option<Value>,
    token_endpoint_auth_methods_supported: Option<Value>,
    code_challenge_methods_supported: Option<Value>,
    authorization_response_iss_parameter_supported: Option<Value>,
}

/// The URL of the discovery document of `issuer` (one trailing `/` of the issuer is dropped,
/// as Discovery §4 says).
pub fn well_known_url(issuer: &str) -> String {
    let base = issuer.strip_suffix('/').unwrap_or(issuer);
    format!("{base}{WELL_KNOWN_PATH}")
}

/// Parses a discovery document fetched for `expected_issuer`.
///
/// The document's `issuer` must be exactly `expected_issuer`; every endpoint must be an
/// absolute `https` URL without fragment (`http` is accepted only when the issuer itself is
/// `http`, for local test providers).
pub fn parse(json: &[u8], expected_issuer: &str) -> Result<Discovery, DiscoveryError> {
    use DiscoveryError as E;

    if json.len() > MAX_DOCUMENT_LEN {
        return Err(E::TooLarge(json.len()));
    }
    let issuer_url = http_url::parse(expected_issuer)
        .filter(|u| !u.rest.contains(['?', '#']))
        .ok_or(E::InvalidIssuer)?;
    let raw: RawDiscovery = parse_object(json).ok_or(if crate::json::looks_like_html(json) {
        E::Html
    } else {
        E::NotJson
    })?;

    let issuer = required_string(raw.issuer, "issuer")?;
    if issuer != expected_issuer {
        return Err(E::IssuerMismatch(log_safe(&issuer, 128)));
    }
    let allow_http = !issuer_url.https;
    let endpoint = |v: Option<Value>, name: &'static str| -> Result<String, E> {
        let url = required_string(v, name)?;
        check_url(&url, name, allow_http)?;
        Ok(url)
    };
    let authorization_endpoint = endpoint(raw.authorization_endpoint, "authorization_endpoint")?;
    let token_endpoint = endpoint(raw.token_endpoint, "token_endpoint")?;
    let jwks_uri = endpoint(raw.jwks_uri, "jwks_uri")?;
    let end_session_endpoint =
        match optional_string(raw.end_session_endpoint, "end_session_endpoint")? {
            Some(url) => {
                check_url(&url, "end_session_endpoint", allow_http)?;
                Some(url)
            }
            None => None,
        };
    let token_endpoint_auth_methods_supported = string_list(
        raw.token_endpoint_auth_methods_supported,
        "token_endpoint_auth_methods_supported",
    )?;
    let code_challenge_methods_supported =
        string_list(raw.code_challenge_methods_supported, "code_challenge_methods_supported")?;
    let authorization_response_iss_parameter_supported =
        match raw.authorization_response_iss_parameter_supported {
            None => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(E::BadField("authorization_response_iss_parameter_supported")),
        };

    Ok(Discovery {
        issuer,
        authorization_endpoint,
        token_endpoint,
        jwks_uri,
        end_session_endpoint,
        token_endpoint_auth_methods_supported,
        code_challenge_methods_supported,
        authorization_response_iss_parameter_supported,
    })
}

fn check_url(url: &str, name: &'static str, allow_http: bool) -> Result<(), DiscoveryError> {
    let parsed = http_url::parse(url)
        .filter(|u| !u.rest.contains('#'))
        .ok_or(DiscoveryError::InvalidUrl(name))?;
    if !parsed.https && !allow_http {
        return Err(DiscoveryError::InsecureUrl(name));
    }
    Ok(())
}

fn optional_string(v: Option<Value>, name: &'static str) -> Result<Option<String>, DiscoveryError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(DiscoveryError::BadField(name)),
    }
}

fn required_string(v: Option<Value>, name: &'static str) -> Result<String, DiscoveryError> {
    optional_string(v, name)?.ok_or(DiscoveryError::MissingField(name))
}

fn string_list(v: Option<Value>, name: &'static str) -> Result<Vec<String>, DiscoveryError> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                _ => Err(DiscoveryError::BadField(name)),
            })
            .collect(),
        Some(_) => Err(DiscoveryError::BadField(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Google's document (abridged, as served in 2024).
    const GOOGLE: &str = r#"{
 "issuer": "https://accounts.google.com",
 "authorization_endpoint": "https://accounts.google.com/o/oauth2/v2/auth",
 "device_authorization_endpoint": "https://oauth2.googleapis.com/device/code",
 "token_endpoint": "https://oauth2.googleapis.com/token",
 "userinfo_endpoint": "https://openidconnect.googleapis.com/v1/userinfo",
 "revocation_endpoint": "https://oauth2.googleapis.com/revoke",
 "jwks_uri": "https://www.googleapis.com/oauth2/v3/certs",
 "response_types_supported": ["code", "token", "id_token", "code token", "code id_token",
  "token id_token", "code token id_token", "none"],
 "subject_types_supported": ["public"],
 "id_token_signing_alg_values_supported": ["RS256"],
 "scopes_supported": ["openid", "email", "profile"],
 "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
 "claims_supported": ["aud", "email", "email_verified", "exp", "family_name", "given_name",
  "iat", "iss", "name", "picture", "sub"],
 "code_challenge_methods_supported": ["plain", "S256"],
 "grant_types_supported": ["authorization_code", "refresh_token",
  "urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"]
}"#;

    const ISS: &str = "https://accounts.google.com";

    fn doc() -> Value {
        serde_json::from_str(GOOGLE).unwrap()
    }

    fn parse_with(
        f: impl FnOnce(&mut serde_json::Map<String, Value>),
    ) -> Result<Discovery, DiscoveryError> {
        let mut d = doc();
        f(d.as_object_mut().unwrap());
        parse(d.to_string().as_bytes(), ISS)
    }

    #[test]
    fn google() {
        let d = parse(GOOGLE.as_bytes(), ISS).unwrap();
        assert_eq!(d.issuer, ISS);
        assert_eq!(d.authorization_endpoint, "https://accounts.google.com/o/oauth2/v2/auth");
        assert_eq!(d.token_endpoint, "https://oauth2.googleapis.com/token");
        assert_eq!(d.jwks_uri, "https://www.googleapis.com/oauth2/v3/certs");
        assert_eq!(d.end_session_endpoint, None);
        assert!(d.supports_pkce_s256());
        assert!(d.supports_auth_method("client_secret_post"));
        assert!(d.supports_auth_method("client_secret_basic"));
        assert!(!d.supports_auth_method("private_key_jwt"));
        assert!(!d.authorization_response_iss_parameter_supported);
    }

    #[test]
    fn local_http_provider() {
        // npm oidc-provider on loopback, with a path in the issuer.
        let iss = "http://127.0.0.1:3000/oidc";
        let d = json!({
            "issuer": iss,
            "authorization_endpoint": "http://127.0.0.1:3000/oidc/auth",
            "token_endpoint": "http://127.0.0.1:3000/oidc/token",
            "jwks_uri": "http://127.0.0.1:3000/oidc/jwks",
            "end_session_endpoint": "http://127.0.0.1:3000/oidc/session/end",
            "authorization_response_iss_parameter_supported": true,
        });
        let d = parse(d.to_string().as_bytes(), iss).unwrap();
        assert_eq!(
            d.end_session_endpoint.as_deref(),
            Some("http://127.0.0.1:3000/oidc/session/end")
        );
        assert!(d.authorization_response_iss_parameter_supported);
        assert!(!d.supports_pkce_s256());
        assert!(d.supports_auth_method("client_secret_basic"));
        assert!(!d.supports_auth_method("client_secret_post"));
    }

    #[test]
    fn issuer_must_match_exactly() {
        for configured in [
            "https://accounts.google.com/",
            "https://Accounts.google.com",
            "http://accounts.google.com",
        ] {
            assert_eq!(
                parse(GOOGLE.as_bytes(), configured),
                Err(DiscoveryError::IssuerMismatch(ISS.into())),
                "{configured}"
            );
        }
        assert_eq!(
            parse_with(|d| {
                d.remove("issuer");
            }),
            Err(DiscoveryError::MissingField("issuer"))
        );
        assert_eq!(
            parse_with(|d| {
                d.insert("issuer".into(), json!(1));
            }),
            Err(DiscoveryError::BadField("issuer"))
        );
        for bad in ["accounts.google.com", "https://a.b/?x", "https://a.b/#x", "ftp://a.b", ""] {
            assert_eq!(parse(GOOGLE.as_bytes(), bad), Err(DiscoveryError::InvalidIssuer), "{bad}");
        }
        assert_eq!(
            parse_with(|d| {
                d.insert("issuer".into(), json!("https://evil\r\n.example"));
            }),
            Err(DiscoveryError::IssuerMismatch("https://evil??.example".into()))
        );
    }

    #[test]
    fn endpoints() {
        for field in ["authorization_endpoint", "token_endpoint", "jwks_uri"] {
            assert_eq!(
                parse_with(|d| {
                    d.remove(field);
                }),
                Err(DiscoveryError::MissingField(field))
            );
            assert_eq!(
                parse_with(|d| {
                    d.insert(field.into(), json!(["x"]));
                }),
                Err(DiscoveryError::BadField(field))
            );
            for (url, want) in [
                ("http://oauth2.googleapis.com/x", DiscoveryError::InsecureUrl(field)),
                ("HTTP://oauth2.googleapis.com/x", DiscoveryError::InsecureUrl(field)),
                ("/relative", DiscoveryError::InvalidUrl(field)),
                ("https://a.b/x#frag", DiscoveryError::InvalidUrl(field)),
                ("https://user@a.b/x", DiscoveryError::InvalidUrl(field)),
                ("javascript:alert(1)", DiscoveryError::InvalidUrl(field)),
                ("", DiscoveryError::InvalidUrl(field)),
            ] {
                assert_eq!(
                    parse_with(|d| {
                        d.insert(field.into(), json!(url));
                    }),
                    Err(want),
                    "{field} {url}"
                );
            }
        }
        assert_eq!(
            parse_with(|d| {
                d.insert("end_session_endpoint".into(), json!("http://a.b/logout"));
            }),
            Err(DiscoveryError::InsecureUrl("end_session_endpoint"))
        );
        assert_eq!(
            parse_with(|d| {
                d.insert("end_session_endpoint".into(), json!("https://a.b/logout?x=1"));
            })
            .unwrap()
            .end_session_endpoint
            .as_deref(),
            Some("https://a.b/logout?x=1")
        );
        // Endpoints on another host with a query are fine.
        assert!(parse_with(|d| {
            d.insert("token_endpoint".into(), json!("https://t.example:8443/token?tenant=1"));
        })
        .is_ok());
        for list in ["token_endpoint_auth_methods_supported", "code_challenge_methods_supported"] {
            assert_eq!(
                parse_with(|d| {
                    d.insert(list.into(), json!("S256"));
                }),
                Err(DiscoveryError::BadField(list))
            );
            assert_eq!(
                parse_with(|d| {
                    d.insert(list.into(), json!(["S256", 1]));
                }),
                Err(DiscoveryError::BadField(list))
            );
        }
        assert_eq!(
            parse_with(|d| {
                d.insert("authorization_response_iss_parameter_supported".into(), json!("true"));
            }),
            Err(DiscoveryError::BadField("authorization_response_iss_parameter_supported"))
        );
    }

    #[test]
    fn not_a_document() {
        assert_eq!(parse(b"<!DOCTYPE html><html>", ISS), Err(DiscoveryError::Html));
        assert_eq!(parse(b"", ISS), Err(DiscoveryError::NotJson));
        assert_eq!(parse(b"[1]", ISS), Err(DiscoveryError::NotJson));
        assert_eq!(parse(b"{\"issuer\":", ISS), Err(DiscoveryError::NotJson));
        let dup = GOOGLE.replacen('{', "{\"issuer\":\"https://evil.example\",", 1);
        assert_eq!(parse(dup.as_bytes(), ISS), Err(DiscoveryError::NotJson));
        let big = vec![b' '; MAX_DOCUMENT_LEN + 1];
        assert_eq!(parse(&big, ISS), Err(DiscoveryError::TooLarge(MAX_DOCUMENT_LEN + 1)));
    }

    #[test]
    fn well_known() {
        assert_eq!(
            well_known_url(ISS),
            "https://accounts.google.com/.well-known/openid-configuration"
        );
        assert_eq!(
            well_known_url("https://accounts.google.com/"),
            "https://accounts.google.com/.well-known/openid-configuration"
        );
        assert_eq!(
            well_known_url("https://login.example.com/realms/corp"),
            "https://login.example.com/realms/corp/.well-known/openid-configuration"
        );
        assert_eq!(
            well_known_url("https://login.example.com/realms/corp/"),
            "https://login.example.com/realms/corp/.well-known/openid-configuration"
        );
    }

    proptest! {
        #[test]
        fn prop_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024), iss in ".{0,40}") {
            let _ = parse(&bytes, &iss);
            let _ = parse(&bytes, ISS);
            let _ = well_known_url(&iss);
        }

        #[test]
        fn prop_field_values_never_panic(url in ".{0,60}", pick in 0usize..4) {
            let field = ["authorization_endpoint", "token_endpoint", "jwks_uri", "end_session_endpoint"][pick];
            let _ = parse_with(|d| { d.insert(field.into(), json!(url)); });
        }
    }
}

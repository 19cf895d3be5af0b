//! Provider discovery documents (`discovery::parse`), as fetched from
//! `<issuer>/.well-known/openid-configuration`: a provider (or anyone between it and nginx)
//! controls every byte. An accepted document is about the configured issuer, and every endpoint
//! is an absolute http(s) URL without fragment, https unless the issuer itself is http.
//!
//! Input: a first byte picking the configured issuer (below 0xF0: one of a fixed few; from 0xF0
//! on, the first line of the rest), then the document.
#![no_main]

use gpt_auth_core::discovery::{self, DiscoveryError, MAX_DOCUMENT_LEN};
use gpt_auth_core::http_url;
use gpt_auth_fuzz::split_once;
use libfuzzer_sys::fuzz_target;

const ISSUERS: &[&str] = &[
    "https://accounts.google.com",
    "http://127.0.0.1:3000/oidc",
    "https://idp.example.net",
    "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
];

fuzz_target!(|data: &[u8]| {
    let Some((&select, rest)) = data.split_first() else { return };
    let (issuer, doc) = if select >= 0xF0 {
        let (issuer, doc) = split_once(rest, b'\n');
        (String::from_utf8_lossy(issuer).into_owned(), doc.unwrap_or_default())
    } else {
        (ISSUERS[usize::from(select) % ISSUERS.len()].to_owned(), rest)
    };
    let _ = discovery::well_known_url(&issuer);
    match discovery::parse(doc, &issuer) {
        Ok(d) => {
            assert_eq!(d.issuer, issuer);
            let iss = http_url::parse(&issuer).expect("accepted issuer is an http(s) URL");
            let endpoints = [
                Some(&d.authorization_endpoint),
                Some(&d.token_endpoint),
                Some(&d.jwks_uri),
                d.end_session_endpoint.as_ref(),
            ];
            for url in endpoints.into_iter().flatten() {
                let u = http_url::parse(url).unwrap_or_else(|| panic!("endpoint {url:?}"));
                assert!(u.https || !iss.https, "insecure endpoint {url:?} for {issuer:?}");
                assert!(!url.contains('#'));
            }
            let _ = (d.supports_pkce_s256(), d.supports_auth_method("client_secret_post"));
        }
        Err(e) => {
            if doc.len() > MAX_DOCUMENT_LEN {
                assert_eq!(e, DiscoveryError::TooLarge(doc.len()));
            }
            let msg = e.to_string();
            assert!(msg.len() < 300 && msg.bytes().all(|b| (b' '..=b'~').contains(&b)), "{msg:?}");
        }
    }
});

//! Key set documents (`Jwks::parse`), as fetched from the provider's `jwks_uri` (or read from a
//! file): arbitrary JSON, then the parsed keys used to verify genuinely signed tokens (RS256 and
//! ES256, with and without `kid`), so that odd moduli, exponents and curve points reach the
//! signature backends.
#![no_main]

use std::sync::OnceLock;

use gpt_auth_core::idtoken::{self, IdTokenError, Jwks, JwksError, MAX_JWKS_LEN};
use gpt_auth_fuzz::{expectations, good_claims, sign_claims, sign_raw, Signer};
use libfuzzer_sys::fuzz_target;

fn tokens() -> &'static [String] {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let claims = good_claims().to_string();
        vec![
            sign_claims(&good_claims(), Signer::Rsa),
            sign_claims(&good_claims(), Signer::Ec),
            sign_raw(br#"{"alg":"RS256"}"#, claims.as_bytes(), Signer::Rsa),
            sign_raw(br#"{"alg":"ES256"}"#, claims.as_bytes(), Signer::Ec),
        ]
    })
}

fn printable(s: &str) -> bool {
    s.bytes().all(|b| (b' '..=b'~').contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let jwks = match Jwks::parse(data) {
        Ok(jwks) => jwks,
        Err(e) => {
            if data.len() > MAX_JWKS_LEN {
                assert_eq!(e, JwksError::TooLarge(data.len()));
            }
            assert!(printable(&e.to_string()));
            return;
        }
    };
    assert!(!jwks.is_empty() && jwks.len() >= jwks.kids().len());
    for kid in jwks.kids() {
        assert!(jwks.contains_kid(kid));
    }
    for skipped in jwks.skipped() {
        if let Some(kid) = &skipped.kid {
            assert!(printable(kid) && kid.len() <= 67, "{kid:?}");
        }
    }
    for token in tokens() {
        match idtoken::verify(token, &jwks, &expectations()) {
            Ok(c) => assert_eq!(c.email, "alice@example.com"),
            Err(e) => {
                if let IdTokenError::UnknownKey(kid) = &e {
                    assert!(!jwks.contains_kid(kid));
                }
                assert!(printable(&e.to_string()));
            }
        }
    }
});

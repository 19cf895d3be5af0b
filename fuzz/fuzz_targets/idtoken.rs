//! ID tokens as they arrive in a callback (`id_token` of a token response, or the `credential`
//! of a Google Identity Services post): `idtoken::peek` and `idtoken::verify` against the fixture
//! key set (RS256 `rsa-1`, ES256 `ec-1`) with fixed expectations. Mostly exercises the parsing
//! before the signature check (splitting, base64url, header JSON, key choice) and the signature
//! backends on malformed signatures; the seed corpus holds genuinely signed tokens.
//!
//! Input: the token (form values are always UTF-8 by then: invalid bytes become U+FFFD).
#![no_main]

use gpt_auth_core::idtoken::{self, IdTokenError, MAX_TOKEN_LEN};
use gpt_auth_core::session::valid_email;
use gpt_auth_fuzz::{expectations, jwks, CLIENT, ISSUERS, LEEWAY, NONCE, NOW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let peeked = idtoken::peek(&token);
    let verified = idtoken::verify(&token, jwks(), &expectations());
    if token.len() > MAX_TOKEN_LEN {
        assert_eq!(peeked, Err(IdTokenError::TooLarge(token.len())));
        assert_eq!(verified, Err(IdTokenError::TooLarge(token.len())));
        return;
    }
    match verified {
        Ok(c) => {
            let p = peeked.expect("a verified token can be peeked");
            assert!(p.alg == "RS256" || p.alg == "ES256", "{:?}", p.alg);
            assert_eq!(p.nonce.as_deref(), Some(NONCE));
            assert_eq!(c.nonce.as_deref(), Some(NONCE));
            assert!(ISSUERS.contains(&c.iss.as_str()));
            assert!(c.aud.iter().any(|a| a == CLIENT));
            assert!(c.azp.as_deref().is_none_or(|a| a == CLIENT));
            assert!(c.aud.len() == 1 || c.azp.is_some());
            assert!(c.exp.saturating_add(LEEWAY) > NOW && c.iat <= NOW + LEEWAY);
            assert!(valid_email(&c.email) && c.email_verified && !c.sub.is_empty());
        }
        Err(e) => {
            // Display is safe to log: printable ASCII, bounded, whatever the token held.
            let msg = e.to_string();
            assert!(msg.len() < 400 && msg.bytes().all(|b| (b' '..=b'~').contains(&b)), "{msg:?}");
        }
    }
});

//! The session cookie codec (`session::decode`) on arbitrary cookie values, with a fixed key
//! ring (a signing key and an older one) and clock. A value can only verify if it is exactly
//! what `session::encode` writes for its fields (the MAC covers every byte before it, and the
//! decoder accepts one spelling of each field), and a verified session must be valid now.
//!
//! The same bytes are also tried as a whole `Cookie` header, the way the access handler reads
//! them (`cookie_header::values`, then `decode` on each candidate).
#![no_main]

use gpt_auth_core::cookie_header;
use gpt_auth_core::session::{self, valid_email, SessionError, MAX_CLOCK_SKEW, MAX_VALUE_LEN};
use gpt_auth_fuzz::{other_ring, ring, COOKIE, MAX_AGE, NOW};
use libfuzzer_sys::fuzz_target;

fn check(value: &[u8]) {
    let r = ring();
    match session::decode(r, COOKIE, value, NOW, MAX_AGE) {
        Ok(s) => {
            let email = s.email.as_str();
            assert!(valid_email(email), "{email:?}");
            assert!(s.iat <= s.exp);
            assert!(s.iat <= NOW + MAX_CLOCK_SKEW);
            assert!(NOW < s.exp.min(s.iat.saturating_add(MAX_AGE)));
            // Canonical: re-encoding with the key named in the cookie gives the same bytes.
            let kid = value.split(|&b| b == b'.').nth(1).unwrap();
            let key = r.find(kid).expect("verified with a key of the ring");
            let again = session::encode(key, COOKIE, email, s.iat, s.exp);
            assert_eq!(again.as_bytes(), value, "a second spelling of one session verifies");
            // Bound to the ring and the cookie name.
            assert!(session::decode(other_ring(), COOKIE, value, NOW, MAX_AGE).is_err());
            assert!(session::decode(r, "gpt_auth2", value, NOW, MAX_AGE).is_err());
        }
        Err(e) => {
            if value.len() > MAX_VALUE_LEN {
                assert_eq!(e, SessionError::TooLong(value.len()));
            }
            // Display is safe to log: short, printable, and never the cookie itself.
            let msg = e.to_string();
            assert!(msg.len() < 80 && msg.bytes().all(|b| (b' '..=b'~').contains(&b)), "{msg:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.contains(&b';') || data.contains(&b'=') {
        for candidate in cookie_header::values(data, COOKIE.as_bytes()) {
            check(candidate);
        }
    }
});

//! Token endpoint responses (`token_response::parse`): the provider's answer to the code
//! exchange. An accepted response has a non-empty ID token; a refusal's message (which quotes
//! the provider's `error` and `error_description`) is printable ASCII and bounded.
#![no_main]

use gpt_auth_core::token_response::{self, TokenResponseError, MAX_RESPONSE_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match token_response::parse(data) {
        Ok(t) => {
            assert!(!t.id_token.is_empty());
            // Debug never prints the tokens: it is the same for other tokens of the same size.
            let mut other = t.clone();
            other.id_token = "x".repeat(t.id_token.len());
            other.access_token = t.access_token.as_ref().map(|a| "y".repeat(a.len()));
            assert_eq!(format!("{t:?}"), format!("{other:?}"));
        }
        Err(e) => {
            if data.len() > MAX_RESPONSE_LEN {
                assert_eq!(e, TokenResponseError::TooLarge(data.len()));
            }
            let msg = e.to_string();
            assert!(msg.len() < 400 && msg.bytes().all(|b| (b' '..=b'~').contains(&b)), "{msg:?}");
        }
    }
});

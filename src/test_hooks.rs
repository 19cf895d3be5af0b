//! Test-only fault injection, compiled only with the `test-hooks` cargo feature (never in the
//! shipped module): a request carrying `X-Gpt-Auth-Test-Panic: <place>` panics at that place,
//! so the suite can prove that a panic never unwinds into nginx (the request gets a 500 and the
//! worker lives on).

use ngx::http::Request;

use crate::ngx::RequestExt;

/// Panics if the request asks for a panic at `place`.
pub fn maybe_panic(r: &Request, place: &str) {
    let asked = r
        .headers()
        .any(|(name, value)| name == b"x-gpt-auth-test-panic" && value == place.as_bytes());
    if asked {
        panic!("test panic at {place}");
    }
}

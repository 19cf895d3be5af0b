//! The remaining request and response header logic that sees outside bytes:
//! - the browser-navigation test (`navigation::RequestKind`) on `Accept`, `Sec-Fetch-Mode` and
//!   `X-Requested-With`;
//! - the JWKS freshness from the provider's `Cache-Control` (`jwks_cache::max_age`, `expiry`);
//! - the login redirect built around the client's URL (`url::with_query_param`), which ends up in
//!   a `Location` header: nothing the client sent may break out of its parameter;
//! - `http_url::parse`, the strict URL syntax under the return-URL policy and the endpoints.
//!
//! Input: fields separated by NUL: accept, sec-fetch-mode, x-requested-with, cache-control,
//! base URL, value. A missing field is an absent header.
#![no_main]

use gpt_auth_core::jwks_cache::{expiry, max_age, DEFAULT_TTL, MAX_TTL, MIN_TTL};
use gpt_auth_core::navigation::RequestKind;
use gpt_auth_core::{http_url, url};
use gpt_auth_fuzz::NOW;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut fields = data.split(|&b| b == 0);
    let accept = fields.next();
    let mode = fields.next();
    let xrw = fields.next();
    let cache_control = fields.next().map(String::from_utf8_lossy);
    let base = fields.next().map(String::from_utf8_lossy);
    let value = fields.next().unwrap_or(data);

    for safe_method in [false, true] {
        let kind = RequestKind { safe_method, accept, sec_fetch_mode: mode, x_requested_with: xrw };
        let nav = kind.is_navigation();
        if nav {
            assert!(safe_method && xrw.is_none());
            let a = accept.unwrap().to_ascii_lowercase();
            assert!(a.windows(9).any(|w| w == b"text/html"));
        }
    }

    if let Some(cc) = &cache_control {
        let age = max_age(cc);
        let exp = expiry(NOW, Some(cc), MIN_TTL, MAX_TTL, DEFAULT_TTL);
        assert!((NOW + MIN_TTL..=NOW + MAX_TTL).contains(&exp));
        if let Some(age) = age {
            assert_eq!(exp, NOW + age.clamp(MIN_TTL, MAX_TTL));
        }
        let _ = expiry(u64::MAX - 5, Some(cc), 0, u64::MAX, u64::MAX);
    }

    if let Some(base) = &base {
        let out = url::with_query_param(base, "rd", value);
        let (head, fragment) = base.split_at(base.find('#').unwrap_or(base.len()));
        assert!(out.starts_with(head) && out.ends_with(fragment));
        let added = &out[head.len()..out.len() - fragment.len()];
        assert!(
            added.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%=?&".contains(&b)),
            "{added:?}"
        );
        assert!(!added.contains('\0'));
        if let Some(u) = http_url::parse(base) {
            assert!(!u.host.is_empty());
            assert!(u.rest.is_empty() || u.rest.starts_with(['/', '?', '#']));
            assert!(base.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'));
            let _ = (u.normalized_host(), u.is_ip_literal());
        }
    }
});

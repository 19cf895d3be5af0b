//! The per-worker cache of verified session cookies (`session_cache::VerifiedCache::decode`)
//! against the codec it short-cuts (`session::decode`): for any sequence of cookie values,
//! cookie names, clocks and maximum ages, the cache answers exactly what verifying again would
//! (a cache that says yes where the codec says no is a bypass). Values come from a pool of
//! genuine cookies (valid, expired, issued later, for another name, by the older key) and from
//! the fuzzer, with single-byte changes.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use gpt_auth_core::session;
use gpt_auth_core::session_cache::{CookieName, Memo, VerifiedCache};
use gpt_auth_fuzz::{ring, COOKIE, MAX_AGE, NOW};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 2] = [COOKIE, "gpt_auth_b"];

fn pool() -> &'static [String] {
    static POOL: OnceLock<Vec<String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let r = ring();
        let (k0, k1) = (&r.keys()[0], &r.keys()[1]);
        vec![
            session::encode(k0, COOKIE, "alice@example.com", NOW - 60, NOW + 3600),
            session::encode(k1, COOKIE, "bob@example.org", NOW - 3600, NOW + 60),
            session::encode(k0, COOKIE, "carol@example.com", NOW + 200, NOW + 900),
            session::encode(k0, COOKIE, "dave@example.com", NOW - 2 * MAX_AGE, NOW + MAX_AGE),
            session::encode(k0, NAMES[1], "erin@example.com", NOW - 1, NOW + 10),
            session::encode(k0, COOKIE, &format!("{}@example.com", "f".repeat(150)), NOW, NOW + 99),
        ]
    })
}

#[derive(Debug, Arbitrary)]
enum Value {
    Pool(u8),
    /// A pooled value with one byte changed.
    Tampered(u8, u8, u8),
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Request {
    value: Value,
    name: bool,
    /// Seconds from NOW (the clock moves both ways between requests).
    clock: i32,
    max_age: u8,
    /// Store an allowlist answer in the slot of a verified session.
    memo: Option<u8>,
}

fuzz_target!(|requests: Vec<Request>| {
    let r = ring();
    let mut cache = VerifiedCache::new();
    for req in requests.iter().take(64) {
        let p = pool();
        let value: Vec<u8> = match &req.value {
            Value::Pool(i) => p[usize::from(*i) % p.len()].clone().into_bytes(),
            Value::Tampered(i, pos, mask) => {
                let mut v = p[usize::from(*i) % p.len()].clone().into_bytes();
                let pos = usize::from(*pos) % v.len();
                v[pos] ^= (*mask).max(1);
                v
            }
            Value::Raw(bytes) => bytes.clone(),
        };
        let name = NAMES[usize::from(req.name)];
        let now = NOW.saturating_add_signed(i64::from(req.clock));
        let max_age = match req.max_age % 4 {
            0 => MAX_AGE,
            1 => 30,
            2 => 0,
            _ => u64::MAX,
        };
        let expected = session::decode(r, name, &value, now, max_age);
        let got = cache.decode(r, &CookieName::new(name), &value, now, max_age);
        match (&got, &expected) {
            (Ok(v), Ok(s)) => assert_eq!((v.email, v.iat, v.exp), (&s.email, s.iat, s.exp)),
            (Err(a), Err(b)) => assert_eq!(a, b),
            _ => panic!(
                "cache says {:?}, codec says {expected:?} for {:?} under {name} at {now}",
                got.as_ref().map(|v| (v.email.as_str(), v.iat, v.exp)),
                String::from_utf8_lossy(&value)
            ),
        }
        if let (Ok(v), Some(m)) = (got, req.memo) {
            if let Some(slot) = v.memo {
                *slot =
                    Some(Memo { list: usize::from(m), version: u64::from(m), allowed: m % 2 == 0 });
            }
        }
    }
    assert!(cache.len() <= requests.len());
});

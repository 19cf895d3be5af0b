//! When to refetch a provider's key set (JWKS): how long a fetched copy stays fresh, from the
//! response's `Cache-Control`, and how often an unknown `kid` may trigger an early refetch.
//!
//! Policy only: the caller fetches, stores and passes the clock in.

/// A copy is kept at least this long, whatever the provider says (seconds).
pub const MIN_TTL: u64 = 5 * 60;

/// A copy is kept at most this long, whatever the provider says (seconds).
pub const MAX_TTL: u64 = 24 * 60 * 60;

/// Lifetime of a copy whose response has no usable `Cache-Control` (seconds).
pub const DEFAULT_TTL: u64 = 60 * 60;

/// At most one early refetch (for a token signed with an unknown key) per this many seconds.
pub const REFETCH_INTERVAL: u64 = 60;

/// The freshness lifetime a `Cache-Control` header value gives, in seconds.
///
/// `max-age=N` (also `max-age="N"`) gives N; a bare `no-cache` or `no-store` gives 0 and takes
/// precedence over `max-age`. Directive names are case-insensitive, spaces around directives and
/// `=` are ignored, other directives are ignored, and so is a `max-age` whose value is not a
/// decimal number (the first valid one counts). Values too large for `u64` saturate.
pub fn max_age(cache_control: &str) -> Option<u64> {
    let mut age = None;
    for directive in cache_control.split(',') {
        let (name, value) = match directive.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (directive.trim(), None),
        };
        if value.is_none()
            && (name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store"))
        {
            return Some(0);
        }
        if age.is_none() && name.eq_ignore_ascii_case("max-age") {
            age = value.and_then(parse_seconds);
        }
    }
    age
}

fn parse_seconds(value: &str) -> Option<u64> {
    let value = match value.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?,
        None => value,
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        value
            .bytes()
            .fold(0u64, |acc, b| acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))),
    )
}

/// When a copy fetched at `now` with this `Cache-Control` (if any) goes stale: `now` plus its
/// `max-age` (or `default`), clamped to `min..=max` (if `min > max`, `max` wins).
pub fn expiry(now: u64, cache_control: Option<&str>, min: u64, max: u64, default: u64) -> u64 {
    let ttl = cache_control.and_then(max_age).unwrap_or(default);
    now.saturating_add(ttl.max(min).min(max))
}

/// Allows at most one early key set refetch per `min_interval` seconds, so that tokens with
/// made-up `kid`s cannot make this module hammer the provider.
#[derive(Debug, Clone)]
pub struct RefetchLimiter {
    pub min_interval: u64,
    last: Option<u64>,
}

impl RefetchLimiter {
    pub fn new(min_interval: u64) -> RefetchLimiter {
        RefetchLimiter { min_interval, last: None }
    }

    /// Whether a refetch may start now; if so, it is counted. A clock that went backwards
    /// allows a refetch (rather than blocking refetches until it catches up).
    pub fn allow(&mut self, now: u64) -> bool {
        let allowed = match self.last {
            None => true,
            Some(last) => now < last || now - last >= self.min_interval,
        };
        if allowed {
            self.last = Some(now);
        }
        allowed
    }
}

impl Default for RefetchLimiter {
    fn default() -> RefetchLimiter {
        RefetchLimiter::new(REFETCH_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_max_age() {
        for (header, want) in [
            ("max-age=3600", Some(3600)),
            ("public, max-age=19845, must-revalidate, no-transform", Some(19845)),
            ("  Max-Age = 60 ", Some(60)),
            ("MAX-AGE=60", Some(60)),
            ("max-age=\"120\"", Some(120)),
            ("private,max-age=0", Some(0)),
            ("max-age=60, max-age=10", Some(60)),
            ("max-age=abc, max-age=10", Some(10)),
            ("max-age=99999999999999999999999", Some(u64::MAX)),
            ("no-cache", Some(0)),
            ("max-age=600, No-Cache", Some(0)),
            ("NO-STORE, max-age=600", Some(0)),
            ("no-cache=\"Set-Cookie\", max-age=600", Some(600)),
            ("s-maxage=600", None),
            ("public", None),
            ("", None),
            ("max-age", None),
            ("max-age=", None),
            ("max-age=-1", None),
            ("max-age=1.5", None),
            ("max-age=\"60", None),
            ("max-age=+60", None),
            ("xmax-age=60", None),
        ] {
            assert_eq!(max_age(header), want, "{header:?}");
        }
    }

    #[test]
    fn clamps_expiry() {
        let now = 1_800_000_000;
        let exp = |cc| expiry(now, cc, MIN_TTL, MAX_TTL, DEFAULT_TTL) - now;
        assert_eq!(exp(None), DEFAULT_TTL);
        assert_eq!(exp(Some("public")), DEFAULT_TTL);
        assert_eq!(exp(Some("max-age=7200")), 7200);
        assert_eq!(exp(Some("max-age=10")), MIN_TTL);
        assert_eq!(exp(Some("no-store")), MIN_TTL);
        assert_eq!(exp(Some("max-age=99999999")), MAX_TTL);
        assert_eq!(expiry(u64::MAX - 5, None, 0, 100, 50), u64::MAX);
        assert_eq!(expiry(0, None, 200, 100, 50), 100, "max wins over min");
    }

    #[test]
    fn limits_refetches() {
        let mut l = RefetchLimiter::default();
        assert_eq!(l.min_interval, REFETCH_INTERVAL);
        assert!(l.allow(1000));
        assert!(!l.allow(1000));
        assert!(!l.allow(1059));
        assert!(l.allow(1060));
        assert!(!l.allow(1061));
        // Clock stepped back.
        assert!(l.allow(500));
        assert!(!l.allow(510));
        let mut zero = RefetchLimiter::new(0);
        assert!(zero.allow(1) && zero.allow(1));
    }

    proptest! {
        #[test]
        fn prop_never_panics(s in ".{0,200}", now in any::<u64>(), min in any::<u64>(), max in any::<u64>(), d in any::<u64>()) {
            let _ = max_age(&s);
            let e = expiry(now, Some(&s), min, max, d);
            prop_assert!(e >= now);
        }

        #[test]
        fn prop_cache_control_never_panics(s in "[ ,=\"a-zA-Z0-9-]{0,80}") {
            let _ = max_age(&s);
        }
    }
}

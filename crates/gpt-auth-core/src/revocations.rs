//! Revocation files (`gpt_auth_revoked`): the sessions of a user issued up to a time are
//! refused, whatever their signature and expiry say (offboarding, a stolen laptop).
//!
//! One entry per line: an address and a time, `alice@example.com 2026-12-04T09:30:00Z` (UTC,
//! RFC 3339 with `Z`) or `alice@example.com 1796376600` (Unix seconds); a session of that
//! address whose issue time (`iat`) is at or before the time is revoked, later ones (a sign-in
//! after it) are not. `#` starts a comment at the start of a line or after white space; blank
//! lines are ignored; an address listed twice keeps its latest time. Matching is ASCII
//! case-insensitive. `gpt-auth revoke ADDRESS` prints a line for now.

use std::collections::HashMap;

use crate::allowlist::{strip_comment, Hasher};
use crate::quota::days_from_civil;
use crate::session::MAX_EMAIL_LEN;

/// Why a revocation file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct RevocationsError {
    pub line: usize,
    pub reason: &'static str,
}

/// A parsed revocation file: per address (lower-cased), the latest time revoked.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    until: HashMap<Box<[u8]>, u64, Hasher>,
}

impl Revocations {
    /// Parses a revocation file; any invalid line refuses the whole file.
    pub fn parse(text: &str) -> Result<Revocations, RevocationsError> {
        let mut list = Revocations::default();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let entry = strip_comment(raw).trim();
            if entry.is_empty() {
                continue;
            }
            let err = |reason| RevocationsError { line, reason };
            let mut words = entry.split_whitespace();
            let (Some(address), Some(time), None) = (words.next(), words.next(), words.next())
            else {
                return Err(err("expected an address and a time (2026-12-04T09:30:00Z)"));
            };
            let address = address.to_ascii_lowercase();
            if address.len() > MAX_EMAIL_LEN || !crate::session::valid_email(&address) {
                return Err(err("invalid address"));
            }
            let t = parse_time(time)
                .ok_or(err("invalid time (2026-12-04T09:30:00Z or Unix seconds)"))?;
            let slot = list.until.entry(address.into_bytes().into_boxed_slice()).or_insert(0);
            *slot = (*slot).max(t);
        }
        Ok(list)
    }

    /// Whether the session of `email` issued at `iat` is revoked. Never allocates.
    pub fn revokes(&self, email: &[u8], iat: u64) -> bool {
        if self.until.is_empty() {
            return false;
        }
        let mut buf = [0u8; MAX_EMAIL_LEN];
        let Some(lower) = buf.get_mut(..email.len()) else { return false };
        lower.copy_from_slice(email);
        lower.make_ascii_lowercase();
        self.until.get(&*lower).is_some_and(|&t| iat <= t)
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

/// `2026-12-04T09:30:00Z` (UTC) or Unix seconds.
pub fn parse_time(s: &str) -> Option<u64> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let n = |r: core::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, sec) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&mo) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    if d == 0 || d > days_in[(mo - 1) as usize] {
        return None;
    }
    let days = u64::try_from(days_from_civil(i64::from(y), mo, d)).ok()?;
    Some(days * 86_400 + u64::from(h) * 3600 + u64::from(mi) * 60 + u64::from(sec))
}

/// The line `gpt-auth revoke` prints: `ADDRESS TIME` for `now` (UTC).
pub fn line(address: &str, now: u64) -> String {
    let (y, m, d) = crate::quota::civil_from_days((now / 86_400) as i64);
    let s = now % 86_400;
    format!(
        "{} {y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        address.to_ascii_lowercase(),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-12-04T09:30:00Z"), Some(1_796_376_600));
        assert_eq!(parse_time("1796376600"), Some(1_796_376_600));
        assert_eq!(parse_time("2024-02-29T23:59:59Z"), Some(1_709_251_199));
        for bad in [
            "",
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-04T24:00:00Z",
            "2026-12-04 09:30:00Z",
            "2026-12-04T09:30:00",
            "2026-12-04T09:30:00+01:00",
            "-1",
            "1e9",
            "2026-12-04T09:3a:00Z",
            "+026-12-04T09:30:00Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
        assert_eq!(
            line("Alice@Example.com", 1_796_376_600),
            "alice@example.com 2026-12-04T09:30:00Z"
        );
        assert_eq!(
            parse_time(line("a@b.c", 1_796_376_601).split(' ').nth(1).unwrap()),
            Some(1_796_376_601)
        );
    }

    #[test]
    fn sessions_issued_up_to_the_time_are_revoked() {
        let r = Revocations::parse(
            "# offboarding\nAlice@Example.com 2026-12-04T09:30:00Z  # left\n\n\
             bob@example.com 1000\nbob@example.com 500\n",
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        let t = 1_796_376_600;
        assert!(r.revokes(b"alice@example.com", t));
        assert!(r.revokes(b"ALICE@example.COM", t - 3600));
        assert!(!r.revokes(b"alice@example.com", t + 1), "a sign-in after the time is not");
        assert!(r.revokes(b"bob@example.com", 1000), "the latest time of an address counts");
        assert!(!r.revokes(b"carol@example.com", 0));
        assert!(!r.revokes(&[b'a'; 300], 0));
        assert!(Revocations::parse("").unwrap().is_empty());
    }

    #[test]
    fn refuses_bad_lines() {
        for (text, reason) in [
            ("alice@example.com\n", "expected an address and a time (2026-12-04T09:30:00Z)"),
            ("alice@example.com 1 2\n", "expected an address and a time (2026-12-04T09:30:00Z)"),
            ("alice 2026-12-04T09:30:00Z\n", "invalid address"),
            (
                "alice@example.com yesterday\n",
                "invalid time (2026-12-04T09:30:00Z or Unix seconds)",
            ),
        ] {
            assert_eq!(Revocations::parse(text).unwrap_err().reason, reason, "{text:?}");
        }
        assert_eq!(Revocations::parse("# a\nx@y.z 1\nbad\n").unwrap_err().line, 3);
    }
}

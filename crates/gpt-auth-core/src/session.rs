//! The session cookie: who is signed in, until when, signed with HMAC-SHA256.
//!
//! The exact format is specified in `docs/cookie-format.md`. In short, a cookie value is
//!
//! ```text
//! 1.<kid>.<iat>.<exp>.<email>.<mac>
//! ```
//!
//! where `kid` is the signing key's id, `iat`/`exp` are Unix seconds in decimal, `email` is the
//! base64url (unpadded) UTF-8 address and `mac` is the base64url (unpadded) HMAC-SHA256 over
//! `<cookie name>=<everything before the last dot>`. Verification never allocates.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::keys::{Key, KeyRing, TagError, KEY_ID_LEN};

/// The format version this code writes and reads.
pub const VERSION: &str = "1";

/// Cookie values longer than this are refused before any other work.
pub const MAX_VALUE_LEN: usize = 1024;

/// Longest address a session may carry (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// How far in the future `iat` may be (clock skew between machines sharing the key).
pub const MAX_CLOCK_SKEW: u64 = 300;

const MAX_DECIMAL_DIGITS: usize = 12;

/// Why a session cookie was refused. `Display` is safe to log: it never contains the cookie or
/// a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("cookie value too long ({0} bytes)")]
    TooLong(usize),
    #[error("malformed cookie ({0})")]
    Malformed(&'static str),
    #[error("unsupported cookie version")]
    UnsupportedVersion,
    #[error("cookie signed with an unknown key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("issued in the future")]
    IssuedInFuture,
    #[error("expired {0}s ago")]
    Expired(u64),
}

impl SessionError {
    /// True when the cookie was genuine but is too old: the user just needs to sign in again.
    pub fn is_expired(&self) -> bool {
        matches!(self, SessionError::Expired(_))
    }
}

/// An email address held inline (no heap), at most [`MAX_EMAIL_LEN`] bytes of UTF-8.
#[derive(Clone, Copy)]
pub struct Email {
    len: u8,
    bytes: [u8; MAX_EMAIL_LEN],
}

impl Email {
    /// Copies an address; `None` if it is too long or not plausible (see [`valid_email`]).
    pub fn new(s: &str) -> Option<Email> {
        if !valid_email(s) {
            return None;
        }
        let mut bytes = [0u8; MAX_EMAIL_LEN];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(Email { len: s.len() as u8, bytes })
    }

    pub fn as_str(&self) -> &str {
        // Only constructed from a validated &str.
        core::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The address's bytes (UTF-8), without re-checking them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl core::fmt::Debug for Email {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl PartialEq for Email {
    fn eq(&self, other: &Email) -> bool {
        self.as_str() == other.as_str()
    }
}

/// An address a session may carry: 3..=254 bytes, an `@` with something on both sides, no
/// control characters, spaces, quotes, commas, semicolons or backslashes (so it is safe in a
/// header, a log line and HTML attribute contexts after escaping).
pub fn valid_email(s: &str) -> bool {
    let Some(at) = s.rfind('@') else { return false };
    (3..=MAX_EMAIL_LEN).contains(&s.len())
        && at > 0
        && at + 1 < s.len()
        && !s.chars().any(|c| c.is_control() || matches!(c, ' ' | '"' | ',' | ';' | '\\'))
}

/// A verified session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Session {
    pub email: Email,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
}

/// Creates a cookie value for `email`, signed by `key`.
pub fn encode(key: &Key, cookie_name: &str, email: &str, iat: u64, exp: u64) -> String {
    let mut value =
        format!("{VERSION}.{}.{iat}.{exp}.{}", key.id(), URL_SAFE_NO_PAD.encode(email.as_bytes()));
    let tag = key.cookie_tag(cookie_name, value.as_bytes());
    value.push('.');
    value.push_str(&tag);
    value
}

/// Verifies a cookie value against the key ring and the clock.
///
/// `now` is the current Unix time; `max_age` caps the session's age whatever its `exp` says (so
/// shortening the configured lifetime shortens existing sessions too).
pub fn decode(
    ring: &KeyRing,
    cookie_name: &str,
    value: &[u8],
    now: u64,
    max_age: u64,
) -> Result<Session, SessionError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(SessionError::TooLong(value.len()));
    }

    let mut parts = value.split(|&b| b == b'.');
    let mut next = |what| parts.next().ok_or(SessionError::Malformed(what));
    let version = next("no version")?;
    let kid = next("no key id")?;
    let iat = next("no issue time")?;
    let exp = next("no expiry")?;
    let email = next("no address")?;
    let tag = next("no signature")?;
    if parts.next().is_some() {
        return Err(SessionError::Malformed("too many fields"));
    }
    if version != VERSION.as_bytes() {
        return Err(SessionError::UnsupportedVersion);
    }
    if kid.len() != KEY_ID_LEN {
        return Err(SessionError::Malformed("bad key id"));
    }
    let key = ring.find(kid).ok_or(SessionError::UnknownKey)?;
    debug_assert_eq!(key.id_bytes().as_slice(), kid);

    let signed = value.get(..value.len().saturating_sub(tag.len() + 1)).unwrap_or_default();
    key.verify_cookie_tag(cookie_name, signed, tag).map_err(|e| match e {
        TagError::Encoding => SessionError::Malformed("bad signature encoding"),
        TagError::Mismatch => SessionError::BadSignature,
    })?;

    // Authentic from here on: the remaining checks are about validity, not forgery.
    let iat = parse_decimal(iat).ok_or(SessionError::Malformed("bad issue time"))?;
    let exp = parse_decimal(exp).ok_or(SessionError::Malformed("bad expiry"))?;
    if exp < iat {
        return Err(SessionError::Malformed("expires before it was issued"));
    }
    let email = decode_email(email).ok_or(SessionError::Malformed("bad address"))?;
    check_times(iat, exp, now, max_age)?;
    Ok(Session { email, iat, exp })
}

/// The time rules of a genuine session: not issued in the future (beyond the clock skew), not
/// past its expiry nor older than `max_age`.
pub fn check_times(iat: u64, exp: u64, now: u64, max_age: u64) -> Result<(), SessionError> {
    if iat > now.saturating_add(MAX_CLOCK_SKEW) {
        return Err(SessionError::IssuedInFuture);
    }
    let deadline = exp.min(iat.saturating_add(max_age));
    if now >= deadline {
        return Err(SessionError::Expired(now - deadline));
    }
    Ok(())
}

/// The fields of a cookie value, read without checking its signature: for diagnostics only
/// (`gpt-auth inspect`), never for decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedFields {
    pub version: String,
    pub key_id: String,
    pub iat: Option<u64>,
    pub exp: Option<u64>,
    pub email: Option<String>,
}

/// Splits a cookie value into its fields; `None` if it does not have the six fields.
pub fn inspect_unverified(value: &str) -> Option<UnverifiedFields> {
    let parts: Vec<&str> = value.split('.').collect();
    let [version, kid, iat, exp, email, _mac] = parts.as_slice() else { return None };
    Some(UnverifiedFields {
        version: (*version).to_owned(),
        key_id: (*kid).to_owned(),
        iat: parse_decimal(iat.as_bytes()),
        exp: parse_decimal(exp.as_bytes()),
        email: decode_email(email.as_bytes()).map(|e| e.as_str().to_owned()),
    })
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > MAX_DECIMAL_DIGITS || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0')))
}

fn decode_email(b64: &[u8]) -> Option<Email> {
    // 254 bytes encode to at most 339 characters.
    if b64.len() > 340 {
        return None;
    }
    let mut buf = [0u8; 256];
    let n = URL_SAFE_NO_PAD.decode_slice(b64, &mut buf).ok()?;
    let s = core::str::from_utf8(&buf[..n]).ok()?;
    Email::new(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::keys::test_ring as ring;

    const NOW: u64 = 1_800_000_000;
    const WEEK: u64 = 7 * 86400;

    #[test]
    fn roundtrip() {
        let r = ring(&[1]);
        let v = encode(r.signing_key(), "gpt_auth", "alice@example.com", NOW, NOW + WEEK);
        assert!(v.starts_with("1."));
        let s = decode(&r, "gpt_auth", v.as_bytes(), NOW + 10, WEEK).unwrap();
        assert_eq!(s.email.as_str(), "alice@example.com");
        assert_eq!((s.iat, s.exp), (NOW, NOW + WEEK));
    }

    #[test]
    fn known_answer() {
        // Pinned so that a change of format is a deliberate, visible decision; the same vector
        // is checked by the Perl suite (t/lib/GptAuth.pm) and docs/cookie-format.md.
        let k = Key::from_bytes(&(0..32u8).collect::<Vec<_>>()).unwrap();
        let v = encode(&k, "gpt_auth", "alice@example.com", 1_700_000_000, 1_700_604_800);
        assert_eq!(k.id(), "Yw3NKWbE");
        assert_eq!(
            v,
            "1.Yw3NKWbE.1700000000.1700604800.YWxpY2VAZXhhbXBsZS5jb20.\
             wadMvXbRPDH2OcsiTKvGdaNadz6v_uqrhvzBWMP9uBY"
        );
    }

    #[test]
    fn rotation_old_key_verifies() {
        let old = ring(&[1]);
        let rotated = ring(&[2, 1]);
        let v = encode(old.signing_key(), "gpt_auth", "a@b.c", NOW, NOW + WEEK);
        assert!(decode(&rotated, "gpt_auth", v.as_bytes(), NOW, WEEK).is_ok());
        assert_eq!(
            decode(&ring(&[2]), "gpt_auth", v.as_bytes(), NOW, WEEK),
            Err(SessionError::UnknownKey)
        );
    }

    #[test]
    fn binds_cookie_name() {
        let r = ring(&[1]);
        let v = encode(r.signing_key(), "gpt_auth", "a@b.c", NOW, NOW + WEEK);
        assert_eq!(decode(&r, "other", v.as_bytes(), NOW, WEEK), Err(SessionError::BadSignature));
    }

    #[test]
    fn expiry_and_clock() {
        let r = ring(&[1]);
        let v = encode(r.signing_key(), "n", "a@b.c", NOW, NOW + 100);
        assert!(decode(&r, "n", v.as_bytes(), NOW + 99, WEEK).is_ok());
        assert_eq!(decode(&r, "n", v.as_bytes(), NOW + 100, WEEK), Err(SessionError::Expired(0)));
        assert_eq!(decode(&r, "n", v.as_bytes(), NOW + 150, WEEK), Err(SessionError::Expired(50)));
        // max_age shorter than the cookie's own lifetime wins.
        assert_eq!(decode(&r, "n", v.as_bytes(), NOW + 60, 50), Err(SessionError::Expired(10)));
        // Issued in the future beyond the allowed skew.
        assert_eq!(
            decode(&r, "n", v.as_bytes(), NOW - MAX_CLOCK_SKEW - 1, WEEK),
            Err(SessionError::IssuedInFuture)
        );
        assert!(decode(&r, "n", v.as_bytes(), NOW - MAX_CLOCK_SKEW, WEEK).is_ok());
    }

    #[test]
    fn malformed_values() {
        let r = ring(&[1]);
        let kid = r.signing_key().id();
        for bad in [
            "".to_string(),
            "1".to_string(),
            "2.AAAAAAAA.1.2.YUBiLmM.x".to_string(),
            format!("1.{kid}.1.2.YUBiLmM"),
            format!("1.{kid}.1.2.YUBiLmM.short"),
            format!("1.{kid}.1.2.YUBiLmM.{}.extra", "A".repeat(43)),
            format!("1.{kid}.1.2.YUBiLmM.{}", "A".repeat(43)),
            format!("1.short.1.2.YUBiLmM.{}", "A".repeat(43)),
        ] {
            assert!(decode(&r, "n", bad.as_bytes(), NOW, WEEK).is_err(), "{bad:?}");
        }
        let long = "1.".to_string() + &"A".repeat(MAX_VALUE_LEN);
        assert_eq!(
            decode(&r, "n", long.as_bytes(), NOW, WEEK),
            Err(SessionError::TooLong(long.len()))
        );
        assert_eq!(
            decode(&r, "n", format!("2.{kid}.1.2.YUBiLmM.x").as_bytes(), NOW, WEEK),
            Err(SessionError::UnsupportedVersion)
        );
    }

    #[test]
    fn signed_garbage_fields_are_malformed_not_accepted() {
        // A key holder signing nonsense still gets refused, with a precise reason.
        let r = ring(&[1]);
        let k = r.signing_key();
        let sign = |body: &str| format!("{body}.{}", k.cookie_tag("n", body.as_bytes()));
        let kid = k.id();
        let no_at = URL_SAFE_NO_PAD.encode("nobody");
        for (body, why) in [
            (format!("1.{kid}.01.5.YUBiLmM"), "bad issue time"),
            (format!("1.{kid}.1.x.YUBiLmM"), "bad expiry"),
            (format!("1.{kid}.9.5.YUBiLmM"), "expires before it was issued"),
            (format!("1.{kid}.1.{}.{no_at}", NOW + 5), "bad address"),
        ] {
            assert_eq!(
                decode(&r, "n", sign(&body).as_bytes(), NOW, WEEK),
                Err(SessionError::Malformed(why)),
                "{body}"
            );
        }
    }

    #[test]
    fn every_byte_tampered_is_refused() {
        let r = ring(&[1]);
        let v = encode(r.signing_key(), "n", "alice@example.com", NOW, NOW + WEEK);
        for i in 0..v.len() {
            for delta in [1u8, 0x20] {
                let mut b = v.clone().into_bytes();
                b[i] ^= delta;
                assert!(decode(&r, "n", &b, NOW, WEEK).is_err(), "byte {i} ^ {delta}");
            }
        }
        for n in 0..v.len() {
            assert!(decode(&r, "n", &v.as_bytes()[..n], NOW, WEEK).is_err(), "truncated {n}");
        }
    }

    #[test]
    fn email_rules() {
        assert!(valid_email("a@b"));
        assert!(valid_email("first.last+tag@sub.example.com"));
        for bad in ["", "ab", "@b.c", "a@", "no-at", "a b@c.d", "a\"@b.c", "a;b@c.d", "a\n@b.c"] {
            assert!(!valid_email(bad), "{bad:?}");
        }
        assert!(Email::new(&format!("{}@b.c", "a".repeat(250))).is_some());
        assert!(Email::new(&format!("{}@b.c", "a".repeat(251))).is_none());
    }

    proptest! {
        #[test]
        fn prop_roundtrip(local in "[a-zA-Z0-9._%+-]{1,64}", domain in "[a-z0-9-]{1,60}\\.[a-z]{2,10}",
                          iat in 1u64..4_000_000_000, life in 1u64..100_000_000) {
            let r = ring(&[7]);
            let email = format!("{local}@{domain}");
            let v = encode(r.signing_key(), "gpt_auth", &email, iat, iat + life);
            let s = decode(&r, "gpt_auth", v.as_bytes(), iat, u64::MAX).unwrap();
            prop_assert_eq!(s.email.as_str(), email.as_str());
            prop_assert_eq!((s.iat, s.exp), (iat, iat + life));
            prop_assert_eq!(
                decode(&r, "gpt_auth", v.as_bytes(), iat + life, u64::MAX),
                Err(SessionError::Expired(0))
            );
        }

        #[test]
        fn prop_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let r = ring(&[7]);
            let _ = decode(&r, "gpt_auth", &bytes, NOW, WEEK);
        }

        #[test]
        fn prop_single_bit_flip_refused(pos in 0usize..200, bit in 0u8..8) {
            let r = ring(&[7]);
            let v = encode(r.signing_key(), "gpt_auth", "bob@example.org", NOW, NOW + WEEK);
            let mut b = v.into_bytes();
            let pos = pos % b.len();
            b[pos] ^= 1 << bit;
            prop_assert!(decode(&r, "gpt_auth", &b, NOW, WEEK).is_err());
        }
    }
}

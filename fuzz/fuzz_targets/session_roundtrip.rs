//! Session cookie roundtrip: whatever `session::encode` writes for a plausible address and
//! times, `session::decode` returns the same fields while the session is valid, refuses it
//! afterwards with the right reason, and refuses every single-byte change and truncation.
#![no_main]

use arbitrary::Arbitrary;
use gpt_auth_core::session::{self, valid_email, SessionError, MAX_CLOCK_SKEW};
use gpt_auth_fuzz::{other_ring, ring};
use libfuzzer_sys::fuzz_target;

/// Times above this have more than the 12 decimal digits the decoder reads.
const MAX_TIME: u64 = 999_999_999_999;

#[derive(Debug, Arbitrary)]
struct Input {
    email: String,
    /// Sign with the older key of the ring (rotation: it must still verify).
    old_key: bool,
    /// Index into NAMES, or (out of range) `custom_name`.
    name: u8,
    custom_name: String,
    iat: u64,
    lifetime: u64,
    max_age: u64,
    /// Where "now" is, relative to `iat`.
    now_offset: i64,
    /// A byte to change (position, xor mask) and a length to truncate to.
    tamper: (u16, u8),
    truncate: u16,
}

const NAMES: &[&str] = &["gpt_auth", "__Host-gpt_auth", "s", ""];

fuzz_target!(|input: Input| {
    let r = ring();
    let key = &r.keys()[usize::from(input.old_key)];
    let name = NAMES.get(usize::from(input.name)).copied().unwrap_or(&input.custom_name);
    let email = input.email.as_str();
    let iat = input.iat;
    let exp = iat.saturating_add(input.lifetime);
    let now = iat.saturating_add_signed(input.now_offset);
    let max_age = input.max_age;

    let value = session::encode(key, name, email, iat, exp);
    let decoded = session::decode(r, name, value.as_bytes(), now, max_age);

    let plausible = valid_email(email) && exp <= MAX_TIME;
    if !plausible {
        // (Only an overlong address makes a value too long: a valid one always fits.)
        assert!(
            matches!(decoded, Err(SessionError::Malformed(_)))
                || matches!(decoded, Err(SessionError::TooLong(_))) && email.len() > 254,
            "{value:?} decoded as {decoded:?}"
        );
        return;
    }
    let deadline = exp.min(iat.saturating_add(max_age));
    let expected = if iat > now.saturating_add(MAX_CLOCK_SKEW) {
        Err(SessionError::IssuedInFuture)
    } else if now >= deadline {
        Err(SessionError::Expired(now - deadline))
    } else {
        Ok((email, iat, exp))
    };
    let got = decoded.as_ref().map(|s| (s.email.as_str(), s.iat, s.exp)).map_err(|e| *e);
    assert_eq!(got, expected, "{value:?} at {now}, max_age {max_age}");

    // From here on, a value that verifies now.
    let Ok(_) = decoded else { return };
    assert!(session::decode(other_ring(), name, value.as_bytes(), now, max_age).is_err());

    let mut tampered = value.clone().into_bytes();
    let (pos, mask) = input.tamper;
    let pos = usize::from(pos) % tampered.len();
    tampered[pos] ^= mask.max(1);
    assert!(
        session::decode(r, name, &tampered, now, max_age).is_err(),
        "byte {pos} ^ {mask:#x} of {value:?} still verifies"
    );
    let cut = usize::from(input.truncate) % value.len();
    assert!(session::decode(r, name, &value.as_bytes()[..cut], now, max_age).is_err());
});

//! Login-state cookie roundtrip: whatever `state::encode` writes (it refuses only values over
//! the size limit), `state::decode` returns the same `State` until `exp` and `Expired` from then
//! on, only under the cookie name of its own state id, and refuses every single-byte change and
//! truncation.
#![no_main]

use arbitrary::Arbitrary;
use gpt_auth_core::state::{self, cookie_name, new_sid, State, StateError, MAX_VALUE_LEN};
use gpt_auth_fuzz::{other_ring, ring};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    sid: [u8; 16],
    nonce: String,
    verifier: String,
    return_url: String,
    provider: String,
    exp: u64,
    /// How long before `exp` the callback comes (at least 1 s).
    before: u64,
    base: String,
    old_key: bool,
    tamper: (u16, u8),
    truncate: u16,
    other_sid: [u8; 16],
}

fuzz_target!(|input: Input| {
    let r = ring();
    let key = &r.keys()[usize::from(input.old_key)];
    let st = State {
        sid: new_sid(&input.sid),
        nonce: input.nonce,
        verifier: input.verifier,
        return_url: input.return_url,
        provider: input.provider,
        exp: input.exp.max(1),
    };
    let name = cookie_name(&input.base, &st.sid);
    let value = match state::encode(key, &name, &st) {
        Ok(value) => value,
        Err(StateError::TooLong(len)) => {
            assert!(len > MAX_VALUE_LEN);
            return;
        }
        Err(e) => panic!("encode refused {st:?}: {e:?}"),
    };
    assert!(value.len() <= MAX_VALUE_LEN);
    assert_eq!(value.split('.').count(), 4, "{value:?}");

    let now = st.exp - 1 - input.before % st.exp;
    assert_eq!(state::decode(r, &name, value.as_bytes(), now).as_ref(), Ok(&st));
    assert_eq!(state::decode(r, &name, value.as_bytes(), st.exp), Err(StateError::Expired(0)));
    assert!(state::decode(other_ring(), &name, value.as_bytes(), now).is_err());
    if input.other_sid != input.sid {
        let other = cookie_name(&input.base, &new_sid(&input.other_sid));
        assert!(state::decode(r, &other, value.as_bytes(), now).is_err());
    }

    let mut tampered = value.clone().into_bytes();
    let (pos, mask) = input.tamper;
    let pos = usize::from(pos) % tampered.len();
    tampered[pos] ^= mask.max(1);
    assert!(
        state::decode(r, &name, &tampered, now).is_err(),
        "byte {pos} ^ {mask:#x} of {value:?} still verifies"
    );
    let cut = usize::from(input.truncate) % value.len();
    assert!(state::decode(r, &name, &value.as_bytes()[..cut], now).is_err());
});

//! The login-state cookie (`state::decode`) on arbitrary cookies, with a fixed key ring and
//! clock. The callback scans every `<base>_state_*` cookie of the request and decodes each with
//! its (client-chosen) name, so both the name and the value come from the client here.
//!
//! Input: `name=value` (a cookie pair, split at the first `=`), or just a value (then the name is
//! that of the fixture state id).
#![no_main]

use gpt_auth_core::state::{self, valid_sid, StateError, MAX_VALUE_LEN, NAME_INFIX};
use gpt_auth_fuzz::{other_ring, ring, split_once, NOW, STATE_COOKIE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (name, value) = match split_once(data, b'=') {
        (name, Some(value)) => (String::from_utf8_lossy(name).into_owned(), value),
        (value, None) => (STATE_COOKIE.to_owned(), value),
    };
    let r = ring();
    match state::decode(r, &name, value, NOW) {
        Ok(st) => {
            assert!(valid_sid(&st.sid), "{:?}", st.sid);
            assert!(name.ends_with(&format!("{NAME_INFIX}{}", st.sid)), "{name:?} {:?}", st.sid);
            assert!(NOW < st.exp);
            assert!(state::decode(other_ring(), &name, value, NOW).is_err());
            assert_eq!(state::decode(r, &name, value, st.exp), Err(StateError::Expired(0)));
            // What verifies can be written again, and reads back the same.
            let kid = value.split(|&b| b == b'.').nth(1).unwrap();
            let key = r.find(kid).expect("verified with a key of the ring");
            let again = state::encode(key, &name, &st).expect("a decoded state fits");
            assert_eq!(state::decode(r, &name, again.as_bytes(), NOW).as_ref(), Ok(&st));
        }
        Err(e) => {
            if value.len() > MAX_VALUE_LEN {
                assert_eq!(e, StateError::TooLong(value.len()));
            }
            let msg = e.to_string();
            assert!(msg.len() < 80 && msg.bytes().all(|b| (b' '..=b'~').contains(&b)), "{msg:?}");
        }
    }
});

//! The login-state cookie: what the callback needs to finish a login (the OAuth `state`, the
//! OpenID nonce, the PKCE verifier, where to return), kept in the browser for a few minutes
//! rather than in server memory, so that any worker, or any machine sharing the key file, can
//! finish the login. Each login gets its own cookie (`<base>_state_<sid>`), so several tabs can
//! log in at once.
//!
//! The exact format is specified in `STATE-COOKIE.md` (in this crate). In short, a value is
//!
//! ```text
//! s1.<kid>.<payload>.<mac>
//! ```
//!
//! where `kid` is the signing key's id, `payload` is the base64url (unpadded) UTF-8 JSON object
//! `{"sid","nonce","verifier","return_url","provider","exp"}` and `mac` is the base64url
//! (unpadded) HMAC-SHA256 over `<cookie name>=<everything before the last dot>`, as for the
//! session cookie (`crate::session`), whose version tag (`1`) differs so that neither cookie can
//! pass for the other.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::keys::{Key, KeyRing, TagError, KEY_ID_LEN, TAG_LEN};

/// The format version this code writes and reads.
pub const VERSION: &str = "s1";

/// Cookie values longer than this are refused before any other work, and never written.
pub const MAX_VALUE_LEN: usize = 2048;

/// Length of a state id (base64url of 16 bytes).
pub const SID_LEN: usize = 22;

/// Between the base name and the state id in the cookie name.
pub const NAME_INFIX: &str = "_state_";

/// Why a state cookie was refused (or could not be written). `Display` is safe to log: it never
/// contains the cookie or a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("state cookie too long ({0} bytes)")]
    TooLong(usize),
    #[error("malformed state cookie ({0})")]
    Malformed(&'static str),
    #[error("unsupported state cookie version")]
    UnsupportedVersion,
    #[error("state cookie signed with an unknown key")]
    UnknownKey,
    #[error("bad state cookie signature")]
    BadSignature,
    #[error("login state expired {0}s ago")]
    Expired(u64),
}

impl StateError {
    /// True when the cookie was genuine but too old: the login took too long, start again.
    pub fn is_expired(&self) -> bool {
        matches!(self, StateError::Expired(_))
    }
}

/// One login in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// 22-character base64url of 16 random bytes (see [`new_sid`]); also the OAuth `state`
    /// parameter and the end of the cookie's name.
    pub sid: String,
    /// The OpenID Connect nonce sent with the authorization request.
    pub nonce: String,
    /// The PKCE code verifier; empty for flows without PKCE.
    pub verifier: String,
    /// Where to send the browser after the login (already checked by `return_url::Policy`).
    pub return_url: String,
    /// Which configured provider this login went to.
    pub provider: String,
    /// Unix time after which the login cannot be finished.
    pub exp: u64,
}

/// A state id from 16 random bytes.
pub fn new_sid(random: &[u8; 16]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

/// Whether `s` has the form of a state id (22 base64url characters encoding 16 bytes): check
/// an incoming `state` parameter with this before building a cookie name from it.
pub fn valid_sid(s: &str) -> bool {
    let mut buf = [0u8; 18];
    s.len() == SID_LEN && URL_SAFE_NO_PAD.decode_slice(s, &mut buf) == Ok(16)
}

/// The name of the cookie holding the state of login `sid`: `<base>_state_<sid>`.
pub fn cookie_name(base: &str, sid: &str) -> String {
    format!("{base}{NAME_INFIX}{sid}")
}

/// Creates a cookie value for `state`, signed by `key`; `TooLong` if it would exceed
/// [`MAX_VALUE_LEN`] (a very long `return_url`), since [`decode`] would refuse it.
pub fn encode(key: &Key, cookie_name: &str, state: &State) -> Result<String, StateError> {
    let json = serde_json::to_vec(state).map_err(|_| StateError::Malformed("unserializable"))?;
    let mut value = format!("{VERSION}.{}.{}", key.id(), URL_SAFE_NO_PAD.encode(json));
    let len = value.len() + 1 + TAG_LEN;
    if len > MAX_VALUE_LEN {
        return Err(StateError::TooLong(len));
    }
    let tag = key.cookie_tag(cookie_name, value.as_bytes());
    value.push('.');
    value.push_str(&tag);
    Ok(value)
}

/// Verifies a cookie value against the key ring and the clock (`now`, Unix seconds).
pub fn decode(
    ring: &KeyRing,
    cookie_name: &str,
    value: &[u8],
    now: u64,
) -> Result<State, StateError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(StateError::TooLong(value.len()));
    }

    let mut parts = value.split(|&b| b == b'.');
    let mut next = |what| parts.next().ok_or(StateError::Malformed(what));
    // The version first: a session cookie (or a future format) is told apart before its
    // fields are counted.
    if next("no version")? != VERSION.as_bytes() {
        return Err(StateError::UnsupportedVersion);
    }
    let kid = next("no key id")?;
    let payload = next("no payload")?;
    let tag = next("no signature")?;
    if parts.next().is_some() {
        return Err(StateError::Malformed("too many fields"));
    }
    if kid.len() != KEY_ID_LEN {
        return Err(StateError::Malformed("bad key id"));
    }
    let key = ring.find(kid).ok_or(StateError::UnknownKey)?;

    let signed = value.get(..value.len().saturating_sub(tag.len() + 1)).unwrap_or_default();
    key.verify_cookie_tag(cookie_name, signed, tag).map_err(|e| match e {
        TagError::Encoding => StateError::Malformed("bad signature encoding"),
        TagError::Mismatch => StateError::BadSignature,
    })?;

    // Authentic from here on: the remaining checks are about validity, not forgery.
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| StateError::Malformed("bad payload encoding"))?;
    let state: State =
        crate::json::parse_object(&json).ok_or(StateError::Malformed("bad payload"))?;
    if !valid_sid(&state.sid) {
        return Err(StateError::Malformed("bad state id"));
    }
    let name_sid = cookie_name.rsplit_once(NAME_INFIX).map(|(_, sid)| sid);
    if name_sid != Some(state.sid.as_str()) {
        return Err(StateError::Malformed("state id does not match the cookie name"));
    }
    if now >= state.exp {
        return Err(StateError::Expired(now - state.exp));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::keys::test_ring as ring;

    const NOW: u64 = 1_800_000_000;
    const SID: &str = "AAECAwQFBgcICQoLDA0ODw";

    fn state() -> State {
        State {
            sid: SID.into(),
            nonce: "n-0S6_WzA2Mj".into(),
            verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
            return_url: "https://app.example.com/path?q=1".into(),
            provider: "google".into(),
            exp: NOW + 600,
        }
    }

    fn name() -> String {
        cookie_name("gpt_auth", SID)
    }

    #[test]
    fn sids() {
        let sid = new_sid(&(0..16u8).collect::<Vec<_>>().try_into().unwrap());
        assert_eq!(sid, SID);
        assert!(valid_sid(&sid));
        assert_eq!(cookie_name("gpt_auth", &sid), "gpt_auth_state_AAECAwQFBgcICQoLDA0ODw");
        for bad in [
            "",
            "AAECAwQFBgcICQoLDA0OD",
            "AAECAwQFBgcICQoLDA0ODwA",
            "AAECAwQFBgcICQoLDA0ODx",
            "AAECAwQFBgcICQoLDA0OD.",
            "AAECAwQFBgcICQoLDA0OD/",
            "AAECAwQFBgcICQoLDA0OD=",
        ] {
            assert!(!valid_sid(bad), "{bad}");
        }
    }

    #[test]
    fn roundtrip() {
        let r = ring(&[1]);
        let v = encode(r.signing_key(), &name(), &state()).unwrap();
        assert!(v.starts_with("s1."));
        assert_eq!(decode(&r, &name(), v.as_bytes(), NOW).unwrap(), state());
        let mut odd = state();
        odd.verifier.clear();
        odd.return_url = "/a.b?c=\"d\"&e=\\\u{0}\u{7f}\u{e9}\u{1F600}".into();
        odd.provider = "Ω.provider.".into();
        odd.nonce = "x".repeat(300);
        let v = encode(r.signing_key(), &name(), &odd).unwrap();
        assert_eq!(v.split('.').count(), 4);
        assert_eq!(decode(&r, &name(), v.as_bytes(), NOW).unwrap(), odd);
    }

    #[test]
    fn known_answer() {
        // Computed independently (python3, hmac/hashlib/base64/json; see STATE-COOKIE.md).
        let k = Key::from_bytes(&(0..32u8).collect::<Vec<_>>()).unwrap();
        let s = State { exp: 1_700_000_600, ..state() };
        let v = encode(&k, &name(), &s).unwrap();
        assert_eq!(v, KNOWN_VALUE);
        assert_eq!(
            decode(&KeyRing::single(k), &name(), KNOWN_VALUE.as_bytes(), 1_700_000_000).unwrap(),
            s
        );
    }

    const KNOWN_VALUE: &str = "s1.Yw3NKWbE.\
        eyJzaWQiOiJBQUVDQXdRRkJnY0lDUW9MREEwT0R3Iiwibm9uY2UiOiJuLTBTNl9XekEyTWoiLCJ2ZXJpZmllciI6ImRCamZ0\
        SmVaNENWUC1tQjkySzI3dWhiVUpVMXAxcl93VzFnRldGT0VqWGsiLCJyZXR1cm5fdXJsIjoiaHR0cHM6Ly9hcHAuZXhhbXBs\
        ZS5jb20vcGF0aD9xPTEiLCJwcm92aWRlciI6Imdvb2dsZSIsImV4cCI6MTcwMDAwMDYwMH0.\
        icXbi0J7_X_DOQRx_bbe0GFx3eD6QFR2IHmnvk1LAL0";

    #[test]
    fn binds_cookie_name_and_kind() {
        let r = ring(&[1]);
        let v = encode(r.signing_key(), &name(), &state()).unwrap();
        assert_eq!(
            decode(&r, "gpt_auth_state_BBECAwQFBgcICQoLDA0ODw", v.as_bytes(), NOW),
            Err(StateError::BadSignature)
        );
        assert_eq!(decode(&r, "gpt_auth", v.as_bytes(), NOW), Err(StateError::BadSignature));
        // A state cookie is not a session cookie, and the reverse.
        assert!(crate::session::decode(&r, &name(), v.as_bytes(), NOW, 86400).is_err());
        let session = crate::session::encode(r.signing_key(), &name(), "a@b.c", NOW, NOW + 60);
        assert_eq!(
            decode(&r, &name(), session.as_bytes(), NOW),
            Err(StateError::UnsupportedVersion)
        );
        // Even relabelled as s1, the session's MAC does not cover "s1".
        let relabelled = format!("s{session}");
        assert!(decode(&r, &name(), relabelled.as_bytes(), NOW).is_err());
    }

    #[test]
    fn rotation() {
        let old = ring(&[1]);
        let v = encode(old.signing_key(), &name(), &state()).unwrap();
        assert!(decode(&ring(&[2, 1]), &name(), v.as_bytes(), NOW).is_ok());
        assert_eq!(decode(&ring(&[2]), &name(), v.as_bytes(), NOW), Err(StateError::UnknownKey));
    }

    #[test]
    fn expiry() {
        let r = ring(&[1]);
        let v = encode(r.signing_key(), &name(), &state()).unwrap();
        assert!(decode(&r, &name(), v.as_bytes(), NOW + 599).is_ok());
        assert_eq!(decode(&r, &name(), v.as_bytes(), NOW + 600), Err(StateError::Expired(0)));
        let err = decode(&r, &name(), v.as_bytes(), NOW + 700).unwrap_err();
        assert_eq!(err, StateError::Expired(100));
        assert!(err.is_expired());
        assert_eq!(err.to_string(), "login state expired 100s ago");
    }

    #[test]
    fn size_bounds() {
        let r = ring(&[1]);
        // The largest return address the return_url policy lets through fits, with room to spare.
        let mut big = state();
        big.return_url =
            format!("https://app.example.com/{}", "a".repeat(crate::return_url::MAX_LEN - 24));
        big.nonce = "n".repeat(43);
        big.provider = "p".repeat(32);
        assert_eq!(big.return_url.len(), crate::return_url::MAX_LEN);
        let v = encode(r.signing_key(), &name(), &big).unwrap();
        assert!(v.len() <= MAX_VALUE_LEN - 200, "{}", v.len());
        assert_eq!(decode(&r, &name(), v.as_bytes(), NOW).unwrap(), big);
        // Too long to write.
        big.return_url = "/".to_string() + &"a".repeat(1600);
        assert!(matches!(encode(r.signing_key(), &name(), &big), Err(StateError::TooLong(_))));
        let long = "s1.".to_string() + &"A".repeat(MAX_VALUE_LEN);
        assert_eq!(decode(&r, &name(), long.as_bytes(), NOW), Err(StateError::TooLong(long.len())));
    }

    #[test]
    fn malformed_values() {
        let r = ring(&[1]);
        let kid = r.signing_key().id();
        let sig = "A".repeat(43);
        for (bad, want) in [
            (String::new(), StateError::UnsupportedVersion),
            ("s1".to_string(), StateError::Malformed("no key id")),
            (format!("s1.{kid}"), StateError::Malformed("no payload")),
            (format!("s1.{kid}.e30"), StateError::Malformed("no signature")),
            (format!("s1.{kid}.e30.{sig}.x"), StateError::Malformed("too many fields")),
            (format!("1.{kid}.e30.{sig}"), StateError::UnsupportedVersion),
            (format!("1.{kid}.1.2.YUBiLmM.{sig}"), StateError::UnsupportedVersion),
            (format!("S1.{kid}.e30.{sig}"), StateError::UnsupportedVersion),
            (format!("s1.short.e30.{sig}"), StateError::Malformed("bad key id")),
            (format!("s1.AAAAAAAA.e30.{sig}"), StateError::UnknownKey),
            (format!("s1.{kid}.e30.short"), StateError::Malformed("bad signature encoding")),
            (
                format!("s1.{kid}.e30.{}B", "A".repeat(42)),
                StateError::Malformed("bad signature encoding"),
            ),
            (format!("s1.{kid}.e30.{sig}"), StateError::BadSignature),
        ] {
            assert_eq!(decode(&r, &name(), bad.as_bytes(), NOW), Err(want), "{bad:?}");
        }
    }

    #[test]
    fn signed_garbage_payloads_are_malformed() {
        // A key holder signing nonsense still gets refused, with a precise reason.
        let r = ring(&[1]);
        let k = r.signing_key();
        let sign = |name: &str, payload: &str| {
            let body = format!("s1.{}.{payload}", k.id());
            format!("{body}.{}", k.cookie_tag(name, body.as_bytes()))
        };
        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let good = serde_json::to_string(&state()).unwrap();
        let cases = [
            ("not*base64".to_string(), "bad payload encoding"),
            (b64("not json"), "bad payload"),
            (b64("[]"), "bad payload"),
            (b64(&good.replace(",\"exp\"", ",\"extra\":1,\"exp\"")), "bad payload"),
            (b64(&good.replace("\"verifier\"", "\"verifier2\"")), "bad payload"),
            (b64(&good.replace(&format!("\"sid\":\"{SID}\""), "\"sid\":\"x\"")), "bad state id"),
            (b64(&good.replace("\"exp\":", "\"exp\":-")), "bad payload"),
        ];
        for (payload, why) in cases {
            assert_eq!(
                decode(&r, &name(), sign(&name(), &payload).as_bytes(), NOW),
                Err(StateError::Malformed(why)),
                "{payload}"
            );
        }
        // Genuine, but for another login than the cookie's name says.
        let other = cookie_name("gpt_auth", "BBECAwQFBgcICQoLDA0ODw");
        assert_eq!(
            decode(&r, &other, sign(&other, &b64(&good)).as_bytes(), NOW),
            Err(StateError::Malformed("state id does not match the cookie name"))
        );
        assert!(decode(&r, &name(), sign(&name(), &b64(&good)).as_bytes(), NOW).is_ok());
    }

    #[test]
    fn every_byte_tampered_is_refused() {
        let r = ring(&[1]);
        let v = encode(r.signing_key(), &name(), &state()).unwrap();
        for i in 0..v.len() {
            for delta in [1u8, 0x20] {
                let mut b = v.clone().into_bytes();
                b[i] ^= delta;
                assert!(decode(&r, &name(), &b, NOW).is_err(), "byte {i} ^ {delta}");
            }
        }
        for n in 0..v.len() {
            assert!(decode(&r, &name(), &v.as_bytes()[..n], NOW).is_err(), "truncated {n}");
        }
    }

    proptest! {
        #[test]
        fn prop_roundtrip(sid in proptest::array::uniform16(any::<u8>()), nonce in ".{0,32}", verifier in "[A-Za-z0-9._~-]{0,128}",
                          rd in ".{0,120}", provider in ".{0,16}", exp in 1u64..u64::MAX) {
            let r = ring(&[7]);
            let s = State { sid: new_sid(&sid), nonce, verifier, return_url: rd, provider, exp };
            let name = cookie_name("gpt_auth", &s.sid);
            let v = encode(r.signing_key(), &name, &s).unwrap();
            prop_assert_eq!(decode(&r, &name, v.as_bytes(), exp - 1).unwrap(), s);
            prop_assert_eq!(decode(&r, &name, v.as_bytes(), exp), Err(StateError::Expired(0)));
        }

        #[test]
        fn prop_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2200), name in ".{0,40}") {
            let r = ring(&[7]);
            let _ = decode(&r, &name, &bytes, NOW);
            let _ = valid_sid(&name);
        }

        #[test]
        fn prop_single_bit_flip_refused(pos in 0usize..400, bit in 0u8..8) {
            let r = ring(&[7]);
            let v = encode(r.signing_key(), &name(), &state()).unwrap();
            let mut b = v.into_bytes();
            let pos = pos % b.len();
            b[pos] ^= 1 << bit;
            prop_assert!(decode(&r, &name(), &b, NOW).is_err());
        }
    }
}

//! Personal API keys (`api_key::decode`, a bearer token from any client) and their state-file
//! records (`api_key::parse_record`). A key that decodes was signed by the ring's key, so the
//! fuzzer can only reach success through `encode`: the input is tried as a key, as a key with
//! its fields replaced, and as a state-file line.
#![no_main]

use gpt_auth_core::api_key::{self, Record};
use gpt_auth_core::keys::{Key, KeyRing};
use gpt_auth_core::session::Email;
use libfuzzer_sys::fuzz_target;

fn ring() -> KeyRing {
    let secret: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(59).wrapping_add(3)).collect();
    KeyRing::single(Key::from_bytes(&secret).expect("a valid secret"))
}

fuzz_target!(|data: &[u8]| {
    let ring = ring();
    // As a token: never a panic; a success only for a signed key.
    if let Ok(k) = api_key::decode(&ring, data) {
        let again = api_key::encode(ring.signing_key(), &k.id, k.email.as_str());
        assert_eq!(again.as_bytes(), data, "a decoded key is exactly the one encoded");
    }
    let _ = api_key::is_ours(data);

    // A genuine key for an address made from the input: it decodes, and no changed byte does.
    let text = String::from_utf8_lossy(data);
    let mut random = [0u8; 12];
    for (i, b) in data.iter().take(12).enumerate() {
        random[i] = *b;
    }
    let id = api_key::new_id(&random);
    if let Some(owner) = Email::new(&format!("{}@example.com", text.chars().filter(char::is_ascii_alphanumeric).take(40).collect::<String>())) {
        let key = api_key::encode(ring.signing_key(), &id, owner.as_str());
        let k = api_key::decode(&ring, key.as_bytes()).expect("a genuine key");
        assert_eq!(k.email.as_str(), owner.as_str());
        if let Some(&b) = data.first() {
            let mut t = key.clone().into_bytes();
            let at = usize::from(b) % t.len();
            t[at] ^= 1 | (b & 0xfe);
            assert!(api_key::decode(&ring, &t).is_err(), "a changed key was accepted");
        }
        // A record with the input as its name survives its state-file line.
        let rec = Record { id, owner, name: api_key::Name::new(&text), created: 1, last_used: 2 };
        let back = api_key::parse_record(&api_key::record_line(&rec)).expect("its own line");
        assert_eq!(back.name.as_str(), rec.name.as_str());
        assert_eq!(back.owner.as_str(), rec.owner.as_str());
    }

    // As a state-file line.
    if let Some(r) = api_key::parse_record(&text) {
        assert!(api_key::valid_id(&r.id));
        let _ = api_key::record_line(&r);
    }
});

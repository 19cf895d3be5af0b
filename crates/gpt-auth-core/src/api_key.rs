//! Personal API keys: what a signed-in user creates for scripts and tools, sent as
//! `Authorization: Bearer <key>` and checked in-process like the session cookie.
//!
//! ```text
//! gak1.<kid>.<id>.<email>.<mac>
//! ```
//!
//! `kid` is the signing key's id (the key file's, as for cookies), `id` the key's own id (16
//! base64url characters: 12 random bytes), `email` the owner's address (base64url, unpadded)
//! and `mac` the base64url HMAC-SHA256 over `gpt_auth api key=<everything before the last
//! dot>`: the name binds the MAC to this use, so no session cookie value (whose MAC binds a
//! cookie name, which cannot hold a space) is ever a valid key, nor the other way round.
//!
//! A genuine key is only half the check: the module also looks the id up in the quota zone,
//! where keys are recorded when created and marked when revoked (a key not found there is
//! refused: fail closed). Verification never allocates.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::keys::{Key, KeyRing, TagError, KEY_ID_LEN};
use crate::quota::state_file::{pct, unpct};
use crate::session::{valid_email, Email, MAX_EMAIL_LEN};

/// The prefix of every key (and its format version).
pub const PREFIX: &str = "gak1";

/// The name the MAC binds.
const MAC_NAME: &str = "gpt_auth api key";

/// Length of a key id: 12 random bytes in base64url.
pub const ID_LEN: usize = 16;

/// Keys longer than this are refused before any other work.
pub const MAX_KEY_LEN: usize = 512;

/// Why a key was refused. `Display` is safe to log: it never contains the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("API key too long ({0} bytes)")]
    TooLong(usize),
    #[error("malformed API key ({0})")]
    Malformed(&'static str),
    #[error("API key signed with an unknown key")]
    UnknownKey,
    #[error("API key with a bad signature")]
    BadSignature,
}

/// A verified key: its id and owner.
#[derive(Clone, Copy)]
pub struct ApiKey {
    pub id: [u8; ID_LEN],
    pub email: Email,
}

impl ApiKey {
    pub fn id_str(&self) -> &str {
        // Only base64url characters are ever stored (checked in `decode`, made by `new_id`).
        core::str::from_utf8(&self.id).unwrap_or_default()
    }
}

/// A new key id from 12 random bytes.
pub fn new_id(random: &[u8; 12]) -> [u8; ID_LEN] {
    let mut id = [0u8; ID_LEN];
    // 12 bytes are exactly 16 base64 characters.
    let _ = URL_SAFE_NO_PAD.encode_slice(random, &mut id);
    id
}

/// Whether `id` looks like a key id (16 base64url characters).
pub fn valid_id(id: &[u8]) -> bool {
    id.len() == ID_LEN && id.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

/// The key for `id` and `email`, signed by `key`.
pub fn encode(key: &Key, id: &[u8; ID_LEN], email: &str) -> String {
    let mut value = format!(
        "{PREFIX}.{}.{}.{}",
        key.id(),
        core::str::from_utf8(id).unwrap_or_default(),
        URL_SAFE_NO_PAD.encode(email.as_bytes())
    );
    let tag = key.cookie_tag(MAC_NAME, value.as_bytes());
    value.push('.');
    value.push_str(&tag);
    value
}

/// Whether a bearer token is meant to be one of ours (it has the prefix): other tokens are not
/// this module's business, but one of ours that fails is refused.
pub fn is_ours(token: &[u8]) -> bool {
    token.len() > PREFIX.len()
        && token.starts_with(PREFIX.as_bytes())
        && token[PREFIX.len()] == b'.'
}

/// Verifies a key's signature against the key ring.
pub fn decode(ring: &KeyRing, value: &[u8]) -> Result<ApiKey, ApiKeyError> {
    if value.len() > MAX_KEY_LEN {
        return Err(ApiKeyError::TooLong(value.len()));
    }
    let mut parts = value.split(|&b| b == b'.');
    let mut next = |what| parts.next().ok_or(ApiKeyError::Malformed(what));
    let prefix = next("no prefix")?;
    let kid = next("no key id")?;
    let id = next("no id")?;
    let email = next("no address")?;
    let tag = next("no signature")?;
    if parts.next().is_some() {
        return Err(ApiKeyError::Malformed("too many fields"));
    }
    if prefix != PREFIX.as_bytes() {
        return Err(ApiKeyError::Malformed("not a gpt_auth key"));
    }
    if kid.len() != KEY_ID_LEN {
        return Err(ApiKeyError::Malformed("bad key id"));
    }
    let key = ring.find(kid).ok_or(ApiKeyError::UnknownKey)?;
    let signed = value.get(..value.len().saturating_sub(tag.len() + 1)).unwrap_or_default();
    key.verify_cookie_tag(MAC_NAME, signed, tag).map_err(|e| match e {
        TagError::Encoding => ApiKeyError::Malformed("bad signature encoding"),
        TagError::Mismatch => ApiKeyError::BadSignature,
    })?;
    // Authentic from here on.
    if !valid_id(id) {
        return Err(ApiKeyError::Malformed("bad id"));
    }
    let email = decode_email(email).ok_or(ApiKeyError::Malformed("bad address"))?;
    let mut out = [0u8; ID_LEN];
    out.copy_from_slice(id);
    Ok(ApiKey { id: out, email })
}

fn decode_email(b64: &[u8]) -> Option<Email> {
    let mut buf = [0u8; MAX_EMAIL_LEN + 3];
    let n = URL_SAFE_NO_PAD.decode_slice(b64, &mut buf).ok()?;
    let s = core::str::from_utf8(buf.get(..n)?).ok()?;
    if !valid_email(s) {
        return None;
    }
    Email::new(s)
}

/// The first characters of a key id, for pages and logs (a key is never logged whole; its id
/// alone does not let anyone use it, but shorter is enough to tell keys apart).
pub fn id_hint(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Longest key name (bytes of UTF-8).
pub const MAX_NAME_LEN: usize = 64;

/// A key's name as its owner gave it (trimmed, control characters dropped), held inline.
#[derive(Clone, Copy)]
pub struct Name {
    len: u8,
    bytes: [u8; MAX_NAME_LEN],
}

impl Name {
    /// The name to keep for `s`: control characters dropped, white space trimmed, cut at
    /// [`MAX_NAME_LEN`] bytes on a character boundary.
    pub fn new(s: &str) -> Name {
        let clean: String = s.chars().filter(|c| !c.is_control()).collect();
        let mut cut = String::new();
        for c in clean.trim().chars() {
            if cut.len() + c.len_utf8() > MAX_NAME_LEN {
                break;
            }
            cut.push(c);
        }
        // Trimmed again: a cut may end in white space (then the name would change when read
        // back from the state file).
        let cut = cut.trim_end();
        let mut bytes = [0u8; MAX_NAME_LEN];
        bytes[..cut.len()].copy_from_slice(cut.as_bytes());
        Name { len: cut.len() as u8, bytes }
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

/// What the zone keeps of a key: never the key itself (it cannot be shown again), only what
/// identifies it, who owns it and when it was made and last used.
#[derive(Clone, Copy)]
pub struct Record {
    pub id: [u8; ID_LEN],
    pub owner: Email,
    pub name: Name,
    pub created: u64,
    pub last_used: u64,
}

/// The state-file line of a record: `apikey <id> <owner> <created> <last used> <name>`, the
/// name percent-encoded (`-` when empty).
pub fn record_line(r: &Record) -> String {
    let mut name = pct(r.name.as_str());
    if name.is_empty() {
        name.push('-');
    }
    let id = core::str::from_utf8(&r.id).unwrap_or_default();
    format!("apikey {id} {} {} {} {name}", r.owner.as_str(), r.created, r.last_used)
}

/// A record from its state-file line; `None` if the line is not one.
pub fn parse_record(line: &str) -> Option<Record> {
    let f: Vec<&str> = line.split(' ').collect();
    let ["apikey", id, owner, created, last_used, name] = f.as_slice() else { return None };
    if !valid_id(id.as_bytes()) {
        return None;
    }
    let name = if *name == "-" { String::new() } else { unpct(name)? };
    let mut out = [0u8; ID_LEN];
    out.copy_from_slice(id.as_bytes());
    Some(Record {
        id: out,
        owner: Email::new(owner)?,
        name: Name::new(&name),
        created: created.parse().ok()?,
        last_used: last_used.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(seed: u8) -> KeyRing {
        let secret: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(seed)).collect();
        KeyRing::single(Key::from_bytes(&secret).unwrap())
    }

    fn id() -> [u8; ID_LEN] {
        new_id(&[7; 12])
    }

    #[test]
    fn round_trip() {
        let r = ring(1);
        let k = encode(r.signing_key(), &id(), "Alice@example.com");
        assert!(k.starts_with("gak1."));
        assert!(is_ours(k.as_bytes()));
        let v = decode(&r, k.as_bytes()).unwrap();
        assert_eq!(v.email.as_str(), "Alice@example.com");
        assert_eq!(&v.id, &id());
        assert!(valid_id(v.id_str().as_bytes()));
    }

    #[test]
    fn every_changed_byte_is_refused() {
        let r = ring(1);
        let k = encode(r.signing_key(), &id(), "alice@example.com").into_bytes();
        for i in 0..k.len() {
            for x in [1u8, 0x20, 0x80] {
                let mut t = k.clone();
                t[i] ^= x;
                assert!(decode(&r, &t).is_err(), "byte {i} ^ {x:#x} accepted");
            }
        }
        assert!(decode(&r, &k[..k.len() - 1]).is_err());
    }

    #[test]
    fn other_keys_and_cookies_are_refused() {
        let k = encode(ring(1).signing_key(), &id(), "alice@example.com");
        assert_eq!(decode(&ring(2), k.as_bytes()).err(), Some(ApiKeyError::UnknownKey));
        // A session cookie value, even re-prefixed, carries a MAC over another name.
        let r = ring(1);
        let cookie = crate::session::encode(r.signing_key(), "gpt_auth", "alice@example.com", 1, 2);
        let fields: Vec<&str> = cookie.split('.').collect();
        let forged =
            format!("gak1.{}.{}.{}.{}", fields[1], "AAAAAAAAAAAAAAAA", fields[4], fields[5]);
        assert_eq!(decode(&r, forged.as_bytes()).err(), Some(ApiKeyError::BadSignature));
        assert!(matches!(decode(&r, b"gak1.x"), Err(ApiKeyError::Malformed(_))));
        assert!(!is_ours(b"sk-proj-abc"));
        assert_eq!(
            decode(&r, &vec![b'a'; MAX_KEY_LEN + 1]).err(),
            Some(ApiKeyError::TooLong(MAX_KEY_LEN + 1))
        );
    }

    #[test]
    fn records() {
        let r = Record {
            id: id(),
            owner: Email::new("alice@example.com").unwrap(),
            name: Name::new("  laptop: vim plug-in \u{7}"),
            created: 10,
            last_used: 0,
        };
        let line = record_line(&r);
        assert_eq!(
            line,
            "apikey BwcHBwcHBwcHBwcH alice@example.com 10 0 laptop%3A%20vim%20plug-in"
        );
        let back = parse_record(&line).unwrap();
        assert_eq!(back.name.as_str(), "laptop: vim plug-in");
        assert_eq!(back.owner.as_str(), "alice@example.com");
        assert_eq!((back.created, back.last_used, back.id), (10, 0, id()));
        let unnamed = Record { name: Name::new(""), ..r };
        assert_eq!(parse_record(&record_line(&unnamed)).unwrap().name.as_str(), "");
        assert!(parse_record("apikey short alice@example.com 1 2 x").is_none());
        assert!(parse_record("alice@example.com 1 2 3").is_none());
        assert_eq!(Name::new(&"é".repeat(40)).as_str().len(), 64);
        let cut_at_space = format!("{} tail", "x".repeat(63));
        assert_eq!(Name::new(&cut_at_space).as_str(), "x".repeat(63));
    }

    #[test]
    fn ids() {
        assert_eq!(new_id(&[0xff; 12]).as_slice(), b"________________");
        assert!(!valid_id(b"short"));
        assert!(!valid_id(b"AAAAAAAAAAAAAAA="));
        assert_eq!(id_hint("abcdefghijklmnop"), "abcdefgh");
    }
}

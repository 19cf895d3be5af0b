//! The secret key file: one base64 key per line; the first signs, all verify.
//!
//! Each key is keyed into an HMAC-SHA256 state once, when the file is read, so that signing or
//! verifying a cookie later only clones that state (no key schedule per request).

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// HMAC-SHA256, the MAC of every cookie this module writes.
pub type HmacSha256 = Hmac<Sha256>;

/// Minimum decoded key length in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// Length of a key id as it appears in cookies (base64url of 6 bytes).
pub const KEY_ID_LEN: usize = 8;

/// A random 32-byte key has about 30 distinct byte values; fewer than this means the "key" is a
/// pattern (all zeros, a repeated word), not a secret.
const MIN_DISTINCT_BYTES: usize = 12;

/// Why a key file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("contains no key")]
    Empty,
    #[error("line {line}: key is not valid base64")]
    NotBase64 { line: usize },
    #[error("line {line}: key is {len} bytes, at least {MIN_KEY_BYTES} are required")]
    TooShort { line: usize, len: usize },
    #[error("line {line}: key is not random (too few distinct bytes)")]
    NotRandom { line: usize },
    #[error("line {line}: duplicate of the key on line {first}")]
    Duplicate { line: usize, first: usize },
}

/// One secret key, ready to MAC.
#[derive(Clone)]
pub struct Key {
    id: [u8; KEY_ID_LEN],
    mac: HmacSha256,
}

impl Key {
    /// Makes a key from raw secret bytes (at least [`MIN_KEY_BYTES`]).
    pub fn from_bytes(secret: &[u8]) -> Result<Key, KeyFileError> {
        check_secret(secret, 1)?;
        Ok(Key::new_unchecked(secret))
    }

    fn new_unchecked(secret: &[u8]) -> Key {
        let digest = Sha256::digest(secret);
        let mut id = [0u8; KEY_ID_LEN];
        // 6 bytes encode to exactly 8 base64 characters.
        let _ = URL_SAFE_NO_PAD.encode_slice(&digest[..6], &mut id);
        // HMAC accepts keys of any length.
        let mac = <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        Key { id, mac }
    }

    /// The key id: base64url of the first 6 bytes of SHA-256 of the secret.
    pub fn id(&self) -> &str {
        // Always ASCII (base64url alphabet).
        core::str::from_utf8(&self.id).unwrap_or_default()
    }

    pub(crate) fn id_bytes(&self) -> &[u8; KEY_ID_LEN] {
        &self.id
    }

    /// A fresh MAC state keyed with this key (a copy of the precomputed state).
    pub fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the secret.
        f.debug_struct("Key").field("id", &self.id()).finish_non_exhaustive()
    }
}

/// Length of a cookie MAC in base64url characters (32 bytes).
pub const TAG_LEN: usize = 43;

/// Why a cookie's MAC was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagError {
    /// Not 43 characters of canonical base64url.
    Encoding,
    /// Not the MAC of this name and body under this key.
    Mismatch,
}

impl Key {
    /// The MAC of a cookie the module writes: HMAC-SHA256 over `<name>=<body>`, base64url
    /// without padding (43 characters). Binding the name means a value is valid under one name.
    pub fn cookie_tag(&self, name: &str, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(name.as_bytes());
        mac.update(b"=");
        mac.update(body);
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Checks `tag` (base64url) as [`Key::cookie_tag`] of `name` and `body`, in constant time.
    pub fn verify_cookie_tag(&self, name: &str, body: &[u8], tag: &[u8]) -> Result<(), TagError> {
        // One spare byte: the decoder's size estimate for 43 characters is 33 bytes.
        let mut expected = [0u8; 33];
        if tag.len() != TAG_LEN || URL_SAFE_NO_PAD.decode_slice(tag, &mut expected) != Ok(32) {
            return Err(TagError::Encoding);
        }
        let mut mac = self.mac();
        mac.update(name.as_bytes());
        mac.update(b"=");
        mac.update(body);
        mac.verify_slice(&expected[..32]).map_err(|_| TagError::Mismatch)
    }
}

/// All keys of a key file, in file order.
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<Key>,
}

impl KeyRing {
    /// Parses a key file. Blank lines and lines starting with `#` are ignored; every other line
    /// (trimmed) is one key in base64 (standard or URL-safe alphabet, padding optional).
    pub fn parse(text: &str) -> Result<KeyRing, KeyFileError> {
        let mut keys: Vec<(usize, Key)> = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let entry = raw.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let secret = decode_key(entry).ok_or(KeyFileError::NotBase64 { line })?;
            check_secret(&secret, line)?;
            let key = Key::new_unchecked(&secret);
            if let Some((first, _)) = keys.iter().find(|(_, k)| k.id == key.id) {
                return Err(KeyFileError::Duplicate { line, first: *first });
            }
            keys.push((line, key));
        }
        if keys.is_empty() {
            return Err(KeyFileError::Empty);
        }
        Ok(KeyRing { keys: keys.into_iter().map(|(_, k)| k).collect() })
    }

    /// A ring with a single key.
    pub fn single(key: Key) -> KeyRing {
        KeyRing { keys: vec![key] }
    }

    /// The key that signs new cookies: the first one in the file.
    pub fn signing_key(&self) -> &Key {
        // A KeyRing is never empty (parse refuses an empty file).
        &self.keys[0]
    }

    /// The key with this id, if the ring has it.
    pub fn find(&self, id: &[u8]) -> Option<&Key> {
        self.keys.iter().find(|k| k.id.as_slice() == id)
    }

    /// All keys, signing key first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }
}

fn decode_key(entry: &str) -> Option<Vec<u8>> {
    let unpadded = entry.trim_end_matches('=');
    if unpadded.contains(['-', '_']) {
        URL_SAFE_NO_PAD.decode(unpadded).ok()
    } else {
        STANDARD_NO_PAD.decode(unpadded).ok()
    }
}

fn check_secret(secret: &[u8], line: usize) -> Result<(), KeyFileError> {
    if secret.len() < MIN_KEY_BYTES {
        return Err(KeyFileError::TooShort { line, len: secret.len() });
    }
    let mut seen = [false; 256];
    for &b in secret {
        seen[b as usize] = true;
    }
    if seen.iter().filter(|&&s| s).count() < MIN_DISTINCT_BYTES {
        return Err(KeyFileError::NotRandom { line });
    }
    Ok(())
}

/// Encodes raw secret bytes as one key-file line.
pub fn encode_key(secret: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(secret)
}

/// Key rings for tests: one key per seed, deterministic.
#[cfg(test)]
pub(crate) fn test_ring(seeds: &[u8]) -> KeyRing {
    let text: Vec<String> = seeds
        .iter()
        .map(|&s| {
            encode_key(&(0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(s)).collect::<Vec<_>>())
        })
        .collect();
    KeyRing::parse(&text.join("\n")).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_line(seed: u8) -> String {
        let bytes: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(seed)).collect();
        encode_key(&bytes)
    }

    #[test]
    fn parses_keys_in_order_skipping_comments() {
        let text = format!("# keys\n\n{}\n  {}  \r\n", random_line(1), random_line(2));
        let ring = KeyRing::parse(&text).unwrap();
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(ring.signing_key().id(), ring.keys()[0].id());
        assert_ne!(ring.keys()[0].id(), ring.keys()[1].id());
        assert!(ring.find(ring.keys()[1].id().as_bytes()).is_some());
        assert!(ring.find(b"AAAAAAAA").is_none());
    }

    #[test]
    fn accepts_urlsafe_and_unpadded() {
        let bytes: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(71).wrapping_add(250)).collect();
        let std = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let url = URL_SAFE_NO_PAD.encode(&bytes);
        let a = KeyRing::parse(&std).unwrap();
        let b = KeyRing::parse(&url).unwrap();
        assert_eq!(a.signing_key().id(), b.signing_key().id());
        let pattern = encode_key(&b"abcd".repeat(10));
        assert_eq!(KeyRing::parse(&pattern).unwrap_err(), KeyFileError::NotRandom { line: 1 });
    }

    #[test]
    fn refuses_bad_files() {
        assert_eq!(KeyRing::parse("").unwrap_err(), KeyFileError::Empty);
        assert_eq!(KeyRing::parse("# only a comment\n\n").unwrap_err(), KeyFileError::Empty);
        assert_eq!(KeyRing::parse("not base64!").unwrap_err(), KeyFileError::NotBase64 { line: 1 });
        let short = encode_key(&(0..16u8).collect::<Vec<_>>());
        assert_eq!(
            KeyRing::parse(&format!("\n{short}")).unwrap_err(),
            KeyFileError::TooShort { line: 2, len: 16 }
        );
        let zeros = encode_key(&[0u8; 32]);
        assert_eq!(KeyRing::parse(&zeros).unwrap_err(), KeyFileError::NotRandom { line: 1 });
        let k = random_line(9);
        assert_eq!(
            KeyRing::parse(&format!("{k}\n{k}")).unwrap_err(),
            KeyFileError::Duplicate { line: 2, first: 1 }
        );
    }

    #[test]
    fn debug_never_prints_secret() {
        let ring = KeyRing::parse(&random_line(3)).unwrap();
        let dbg = format!("{ring:?}");
        assert!(dbg.contains(ring.signing_key().id()));
        assert!(!dbg.contains(&random_line(3)));
    }
}

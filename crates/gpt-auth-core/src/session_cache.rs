//! A per-worker cache of session cookies whose signature was verified, so that the requests of a
//! session after its first one skip the HMAC: a hash lookup of the exact cookie value instead.
//!
//! Only a value that passed [`session::decode`] is ever stored, keyed by its exact bytes (and the
//! cookie name it was verified under); a hit still applies the time rules (expiry, maximum age,
//! clock skew) at the current time. The map's hash is seeded randomly per process, and entries
//! exist only for verified values, so an attacker can neither choose nor collide them; a lookup
//! compares a presented value only with a stored value of the same hash. The cache belongs to one key ring: a new key file
//! (a reload) starts a new, empty cache.

use std::collections::HashMap;

use crate::keys::KeyRing;
use crate::session::{self, Email, Session, SessionError};

/// Entries kept per worker and key file; when full the cache starts again (a cheap, rare reset).
pub const CAPACITY: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Hash of the cookie name the value was verified under (a value verifies under one name).
    name_hash: u64,
    email: Email,
    iat: u64,
    exp: u64,
}

#[derive(Debug, Default)]
pub struct VerifiedCache {
    map: HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>,
}

fn name_hash(name: &str) -> u64 {
    // Not secret: distinguishes names, the value bytes are the key.
    name.bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

impl VerifiedCache {
    pub fn new() -> VerifiedCache {
        VerifiedCache { map: HashMap::with_capacity_and_hasher(64, Default::default()) }
    }

    /// [`session::decode`], answered from the cache when this exact value was verified before.
    pub fn decode(
        &mut self,
        ring: &KeyRing,
        cookie_name: &str,
        value: &[u8],
        now: u64,
        max_age: u64,
    ) -> Result<Session, SessionError> {
        if let Some(e) = self.map.get(value) {
            if e.name_hash == name_hash(cookie_name) {
                session::check_times(e.iat, e.exp, now, max_age)?;
                return Ok(Session { email: e.email, iat: e.iat, exp: e.exp });
            }
        }
        let s = session::decode(ring, cookie_name, value, now, max_age)?;
        if self.map.len() >= CAPACITY {
            self.map.clear();
        }
        let entry =
            Entry { name_hash: name_hash(cookie_name), email: s.email, iat: s.iat, exp: s.exp };
        self.map.insert(value.into(), entry);
        Ok(s)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{encode_key, Key};

    fn ring() -> KeyRing {
        let bytes: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(5)).collect();
        KeyRing::parse(&encode_key(&bytes)).unwrap()
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn hit_applies_time_rules() {
        let r = ring();
        let mut c = VerifiedCache::new();
        let v = session::encode(r.signing_key(), "n", "a@b.c", NOW, NOW + 100);
        assert!(c.decode(&r, "n", v.as_bytes(), NOW, 1000).is_ok());
        assert_eq!(c.len(), 1);
        // Cached, and still expires.
        assert!(c.decode(&r, "n", v.as_bytes(), NOW + 50, 1000).is_ok());
        assert_eq!(c.decode(&r, "n", v.as_bytes(), NOW + 100, 1000), Err(SessionError::Expired(0)));
        assert_eq!(c.decode(&r, "n", v.as_bytes(), NOW + 60, 30), Err(SessionError::Expired(30)));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn other_name_and_forgeries_are_not_hits() {
        let r = ring();
        let mut c = VerifiedCache::new();
        let v = session::encode(r.signing_key(), "n", "a@b.c", NOW, NOW + 100);
        assert!(c.decode(&r, "n", v.as_bytes(), NOW, 1000).is_ok());
        assert_eq!(c.decode(&r, "other", v.as_bytes(), NOW, 1000), Err(SessionError::BadSignature));
        let mut forged = v.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert!(c.decode(&r, "n", &forged, NOW, 1000).is_err());
        assert_eq!(c.len(), 1, "refused values are never stored");
    }

    #[test]
    fn new_key_ring_does_not_see_old_entries() {
        // The cache is owned by one key ring; a different ring uses its own cache, so a
        // cookie of a retired key fails there.
        let r = ring();
        let other = KeyRing::single(Key::from_bytes(&(100..132u8).collect::<Vec<_>>()).unwrap());
        let v = session::encode(r.signing_key(), "n", "a@b.c", NOW, NOW + 100);
        let mut c2 = VerifiedCache::new();
        assert_eq!(c2.decode(&other, "n", v.as_bytes(), NOW, 1000), Err(SessionError::UnknownKey));
    }

    #[test]
    fn bounded() {
        let r = ring();
        let mut c = VerifiedCache::new();
        for i in 0..(CAPACITY + 10) {
            let v = session::encode(r.signing_key(), "n", &format!("u{i}@b.c"), NOW, NOW + 100);
            assert!(c.decode(&r, "n", v.as_bytes(), NOW, 1000).is_ok());
            assert!(c.len() <= CAPACITY);
        }
    }
}

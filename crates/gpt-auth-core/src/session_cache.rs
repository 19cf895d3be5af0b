//! A per-worker cache of session cookies whose signature was verified, so that the requests of a
//! session after its first one skip the HMAC: a hash lookup of the exact cookie value instead.
//!
//! Only a value that passed [`session::decode`] is ever stored, with its exact bytes (and the
//! cookie name it was verified under); a hit compares the presented value with the stored one
//! and still applies the time rules (expiry, maximum age, clock skew) at the current time. The
//! slot is chosen by a hash seeded randomly per process, so an attacker can neither choose nor
//! predict slots. The cache belongs to one key ring: a new key file (a reload) starts a new one.
//!
//! It is a fixed table of slots (direct-mapped), allocated once: caching never allocates, and a
//! worker with more sessions than slots degrades to verifying some cookies again, slot by slot.
//! Each slot also remembers one allowlist answer for its session (see [`Memo`]).

use core::hash::BuildHasher;

use crate::keys::KeyRing;
use crate::session::{self, Email, Session, SessionError};

/// Slots per worker and key file (about 500 bytes each).
pub const SLOTS: usize = 4096;

/// Longer cookie values (very long addresses) are verified every time.
pub const MAX_CACHED_VALUE: usize = 160;

/// An answer about a session remembered with it: which allowlist (its identity and version) said
/// what. Lets the allowlist check of a session's later requests cost a comparison.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memo {
    pub list: usize,
    pub version: u64,
    pub allowed: bool,
}

#[derive(Clone, Copy)]
struct Slot {
    /// 0: empty.
    len: u8,
    name_hash: u64,
    value: [u8; MAX_CACHED_VALUE],
    email: Email,
    iat: u64,
    exp: u64,
    memo: Option<Memo>,
}

impl Slot {
    fn value(&self) -> &[u8] {
        &self.value[..self.len as usize]
    }
}

/// The verified cookies of one key file, in one worker.
#[derive(Default)]
pub struct VerifiedCache {
    /// Allocated on first use (in the worker, not in the master).
    slots: Option<Box<[Option<Slot>]>>,
    hasher: foldhash::fast::RandomState,
    scratch: Scratch,
}

impl core::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VerifiedCache").field("entries", &self.len()).finish()
    }
}

/// A cookie name with the hash the cache tells names apart by (computed once, when the
/// configuration is loaded, not per request).
#[derive(Debug, Clone)]
pub struct CookieName {
    name: Box<str>,
    hash: u64,
}

impl CookieName {
    pub fn new(name: &str) -> CookieName {
        // Not secret: tells names apart; the value bytes are what is compared.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        CookieName { name: name.into(), hash }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }
}

/// A verified session: the address, borrowed from the cache (nothing is copied), its times, and
/// the memo of its slot (`None` when the value is not cacheable).
pub struct Verified<'c> {
    pub email: &'c Email,
    pub iat: u64,
    pub exp: u64,
    pub memo: Option<&'c mut Option<Memo>>,
}

/// The last session verified without a cache slot (too long to cache), which a [`Verified`]
/// then borrows.
#[derive(Default)]
struct Scratch(Option<Session>);

impl VerifiedCache {
    pub fn new() -> VerifiedCache {
        VerifiedCache::default()
    }

    /// [`session::decode`], answered from the cache when this exact value was verified before.
    pub fn decode(
        &mut self,
        ring: &KeyRing,
        name: &CookieName,
        value: &[u8],
        now: u64,
        max_age: u64,
    ) -> Result<Verified<'_>, SessionError> {
        if value.is_empty() || value.len() > MAX_CACHED_VALUE {
            return self.uncached(ring, name, value, now, max_age);
        }
        // The slot is chosen by the value's last 16 bytes (its MAC: a verified value's tail is
        // unpredictable without the key) under the per-process random seed: cheap, and no one
        // can aim at a slot.
        let tail = value.len().saturating_sub(16);
        let index = (self.hasher.hash_one(&value[tail..]) % SLOTS as u64) as usize;
        let slots = self.slots.get_or_insert_with(|| vec![None; SLOTS].into_boxed_slice());
        let Some(slot) = slots.get_mut(index) else {
            return Err(SessionError::Malformed("cache"));
        };
        let hit = slot.as_ref().is_some_and(|s| s.name_hash == name.hash && s.value() == value);
        if !hit {
            let session = session::decode(ring, &name.name, value, now, max_age)?;
            let mut buf = [0u8; MAX_CACHED_VALUE];
            buf[..value.len()].copy_from_slice(value);
            *slot = Some(Slot {
                len: value.len() as u8,
                name_hash: name.hash,
                value: buf,
                email: session.email,
                iat: session.iat,
                exp: session.exp,
                memo: None,
            });
        }
        // (Always Some here: a hit, or just filled.)
        let Some(s) = slot.as_mut() else { return Err(SessionError::Malformed("cache")) };
        if hit {
            session::check_times(s.iat, s.exp, now, max_age)?;
        }
        Ok(Verified { email: &s.email, iat: s.iat, exp: s.exp, memo: Some(&mut s.memo) })
    }

    fn uncached(
        &mut self,
        ring: &KeyRing,
        name: &CookieName,
        value: &[u8],
        now: u64,
        max_age: u64,
    ) -> Result<Verified<'_>, SessionError> {
        let session = session::decode(ring, &name.name, value, now, max_age)?;
        let s = self.scratch.0.insert(session);
        Ok(Verified { email: &s.email, iat: s.iat, exp: s.exp, memo: None })
    }

    /// Number of cached sessions.
    pub fn len(&self) -> usize {
        self.slots.as_ref().map_or(0, |s| s.iter().filter(|s| s.is_some()).count())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{test_ring, Key};

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn hit_applies_time_rules() {
        let r = test_ring(&[5]);
        let mut c = VerifiedCache::new();
        let v = session::encode(r.signing_key(), "n", "a@b.c", NOW, NOW + 100);
        assert!(c.decode(&r, &CookieName::new("n"), v.as_bytes(), NOW, 1000).is_ok());
        assert_eq!(c.len(), 1);
        // Cached, and still expires.
        assert!(c.decode(&r, &CookieName::new("n"), v.as_bytes(), NOW + 50, 1000).is_ok());
        assert_eq!(
            c.decode(&r, &CookieName::new("n"), v.as_bytes(), NOW + 100, 1000).err(),
            Some(SessionError::Expired(0))
        );
        assert_eq!(
            c.decode(&r, &CookieName::new("n"), v.as_bytes(), NOW + 60, 30).err(),
            Some(SessionError::Expired(30))
        );
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn other_name_and_forgeries_are_not_hits() {
        let r = test_ring(&[5]);
        let mut c = VerifiedCache::new();
        let v = session::encode(r.signing_key(), "n", "a@b.c", NOW, NOW + 100);
        assert!(c.decode(&r, &CookieName::new("n"), v.as_bytes(), NOW, 1000).is_ok());
        assert_eq!(
            c.decode(&r, &CookieName::new("other"), v.as_bytes(), NOW, 1000).err(),
            Some(SessionError::BadSignature)
        );
        let mut forged = v.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert!(c.decode(&r, &CookieName::new("n"), &forged, NOW, 1000).is_err());
        // A prefix or an extension of a cached value is not a hit either.
        assert!(c
            .decode(&r, &CookieName::new("n"), &v.as_bytes()[..v.len() - 1], NOW, 1000)
            .is_err());
        assert!(c
            .decode(&r, &CookieName::new("n"), format!("{v}A").as_bytes(), NOW, 1000)
            .is_err());
        assert_eq!(c.len(), 1, "refused values are never stored");
    }

    #[test]
    fn memo_follows_the_slot() {
        let r = test_ring(&[5]);
        let mut c = VerifiedCache::new();
        let v = session::encode(r.signing_key(), "n", "a@b.c", NOW, NOW + 100);
        let memo = Memo { list: 1, version: 2, allowed: true };
        *c.decode(&r, &CookieName::new("n"), v.as_bytes(), NOW, 1000).unwrap().memo.unwrap() =
            Some(memo);
        assert_eq!(
            *c.decode(&r, &CookieName::new("n"), v.as_bytes(), NOW, 1000).unwrap().memo.unwrap(),
            Some(memo)
        );
        // Another session never sees it.
        let w = session::encode(r.signing_key(), "n", "b@b.c", NOW, NOW + 100);
        assert_eq!(
            *c.decode(&r, &CookieName::new("n"), w.as_bytes(), NOW, 1000).unwrap().memo.unwrap(),
            None
        );
    }

    #[test]
    fn new_key_ring_does_not_see_old_entries() {
        // The cache is owned by one key ring; another ring has its own, so a cookie of a
        // retired key fails there.
        let r = test_ring(&[5]);
        let other = KeyRing::single(Key::from_bytes(&(100..132u8).collect::<Vec<_>>()).unwrap());
        let v = session::encode(r.signing_key(), "n", "a@b.c", NOW, NOW + 100);
        let mut c2 = VerifiedCache::new();
        assert_eq!(
            c2.decode(&other, &CookieName::new("n"), v.as_bytes(), NOW, 1000).err(),
            Some(SessionError::UnknownKey)
        );
    }

    #[test]
    fn bounded_and_long_values_uncached() {
        let r = test_ring(&[5]);
        let mut c = VerifiedCache::new();
        for i in 0..(SLOTS + 10) {
            let v = session::encode(r.signing_key(), "n", &format!("u{i}@b.c"), NOW, NOW + 100);
            assert!(c.decode(&r, &CookieName::new("n"), v.as_bytes(), NOW, 1000).is_ok());
        }
        assert!(c.len() <= SLOTS);
        let long = session::encode(
            r.signing_key(),
            "n",
            &format!("{}@b.c", "x".repeat(120)),
            NOW,
            NOW + 100,
        );
        assert!(long.len() > MAX_CACHED_VALUE);
        let ok = c.decode(&r, &CookieName::new("n"), long.as_bytes(), NOW, 1000).unwrap();
        assert!(ok.memo.is_none());
    }
}

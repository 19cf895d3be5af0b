//! Personal API keys in a quota zone's shared memory: a key is valid while its record is here
//! (created by its owner on the `gpt_auth_api_keys` page, deleted when revoked), so a
//! revocation reaches every worker at once; the records go to the zone's state file with the
//! counters, and a key of a zone that lost them (no state file) is refused, never trusted.
//!
//! In a zone shared through Redis ([`super::cluster`]) a record also says whether the other
//! nodes have it yet: a new key is sent at the next round; a revoked key stays here, refused,
//! until its revocation is sent, and is then deleted.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use gpt_auth_core::api_key::{Name, Record, ID_LEN};
use gpt_auth_core::quota::cluster::{KeyChanges, KeyState};
use gpt_auth_core::session::Email;
use ngx::collections::RbTreeMap;
use ngx::core::{NgxString, SlabPool};

use super::zone::{self, Shared};
use crate::conf::Zone;

/// A record as the zone keeps it: `last_used` is updated under the read lock.
pub struct Stored {
    pub rec: Record,
    last_used: AtomicU64,
    /// [`SYNCED`], [`UNSENT`] or [`REVOKED`].
    sync: AtomicU8,
}

/// On every node (or a zone without Redis).
const SYNCED: u8 = 0;
/// Created here, not yet sent.
const UNSENT: u8 = 1;
/// Revoked here (refused), the revocation not yet sent.
const REVOKED: u8 = 2;

impl Stored {
    fn live(&self) -> bool {
        self.sync.load(Ordering::Relaxed) != REVOKED
    }
}

/// Key id → record.
pub type KeyTable = RbTreeMap<NgxString<SlabPool>, Stored, SlabPool>;

/// Why a key could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    #[error("you have {0} keys already; revoke one first")]
    TooMany(usize),
    #[error("the zone has no room for another key")]
    Full,
    #[error("the zone is not available")]
    Unavailable,
}

/// Whether the key `id` of `owner` is on record; notes its use (at most once a second).
pub fn check(zone: &Zone, id: &[u8], owner: &Email, now: u64) -> Option<u64> {
    let shared = zone::shared(zone)?;
    shared
        .with_keys(|keys| {
            let s = keys.get(id).filter(|s| s.live())?;
            if !s.rec.owner.as_bytes().eq_ignore_ascii_case(owner.as_bytes()) {
                return None;
            }
            if s.last_used.load(Ordering::Relaxed) != now {
                s.last_used.store(now, Ordering::Relaxed);
            }
            Some(s.rec.created)
        })
        .flatten()
}

/// Records a new key, unless its owner has `max` already.
pub fn create(zone: &Zone, rec: Record, max: usize) -> Result<(), CreateError> {
    let shared = zone::shared(zone).ok_or(CreateError::Unavailable)?;
    shared
        .with_keys_mut(|keys| {
            let mine = |s: &Stored| s.live() && s.rec.owner.as_bytes() == rec.owner.as_bytes();
            let owned = keys.iter().filter(|(_, s)| mine(s)).count();
            if owned >= max {
                return Err(CreateError::TooMany(owned));
            }
            let sync = if super::cluster::synced(zone) { UNSENT } else { SYNCED };
            insert(keys, rec, sync).then_some(()).ok_or(CreateError::Full)
        })
        .unwrap_or(Err(CreateError::Unavailable))
}

fn insert(keys: &mut KeyTable, rec: Record, sync: u8) -> bool {
    let alloc = keys.allocator().clone();
    let Ok(id) = NgxString::try_from_bytes_in(rec.id, alloc) else { return false };
    let last_used = AtomicU64::new(rec.last_used);
    keys.try_insert(id, Stored { rec, last_used, sync: AtomicU8::new(sync) }).is_ok()
}

/// Revokes the key `id` if `owner` owns it (deleted, or in a shared zone refused until the
/// revocation is sent); whether it did.
pub fn revoke(zone: &Zone, id: &[u8], owner: &str) -> bool {
    let Some(shared) = zone::shared(zone) else { return false };
    let synced = super::cluster::synced(zone);
    shared
        .with_keys_mut(|keys| {
            let owned = keys
                .get(id)
                .is_some_and(|s| s.live() && s.rec.owner.as_str().eq_ignore_ascii_case(owner));
            if !owned {
                return false;
            }
            match keys.get(id) {
                Some(s) if synced => {
                    s.sync.store(REVOKED, Ordering::Relaxed);
                    true
                }
                _ => keys.remove(id).is_some(),
            }
        })
        .unwrap_or(false)
}

/// What a round sends of a shared zone's keys: the records not yet sent and the revocations.
pub fn changes(zone: &Zone, version: &str) -> Option<KeyChanges> {
    let shared = zone::shared(zone)?;
    shared.with_keys(|keys| {
        let mut out = KeyChanges { version: version.to_owned(), ..KeyChanges::default() };
        for (_, s) in keys.iter() {
            match s.sync.load(Ordering::Relaxed) {
                UNSENT => out.created.push(record(s)),
                REVOKED => out.revoked.push(s.rec.id),
                _ => {}
            }
        }
        out
    })
}

/// A round succeeded: what it sent is on every node's way; what it read (keys created or
/// revoked elsewhere) is applied here. A key Redis does not have (it lost its data) is sent
/// again rather than deleted.
pub fn applied(zone: &Zone, sent: &KeyChanges, read: Option<&KeyState>) {
    let Some(shared) = zone::shared(zone) else { return };
    shared.with_keys_mut(|keys| {
        for r in &sent.created {
            if let Some(s) = keys.get(r.id.as_slice()) {
                let _ =
                    s.sync.compare_exchange(UNSENT, SYNCED, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
        for id in &sent.revoked {
            keys.remove(id.as_slice());
        }
        let Some(read) = read else { return };
        for id in &read.revoked {
            keys.remove(id.as_slice());
        }
        for r in &read.records {
            if keys.get(r.id.as_slice()).is_none() && !read.revoked.contains(&r.id) {
                insert(keys, *r, SYNCED);
            }
        }
        for (id, s) in keys.iter() {
            let there = read.records.iter().any(|r| r.id.as_slice() == id.as_bytes());
            if !there && s.sync.load(Ordering::Relaxed) == SYNCED {
                s.sync.store(UNSENT, Ordering::Relaxed);
            }
        }
    });
}

fn record(s: &Stored) -> Record {
    Record { last_used: s.last_used.load(Ordering::Relaxed), ..s.rec }
}

/// The keys of `owner` (all keys with `None`), oldest first.
pub fn list(zone: &Zone, owner: Option<&str>) -> Vec<Record> {
    zone::shared(zone).map_or_else(Vec::new, |s| {
        let mut v: Vec<Record> = records_of(s)
            .into_iter()
            .filter(|r| owner.is_none_or(|o| r.owner.as_str().eq_ignore_ascii_case(o)))
            .collect();
        v.sort_by_key(|r| r.created);
        v
    })
}

/// Every record of a zone's table (but revoked ones).
pub fn records_of(shared: &Shared) -> Vec<Record> {
    shared
        .with_keys(|k| k.iter().filter(|(_, s)| s.live()).map(|(_, s)| record(s)).collect())
        .unwrap_or_default()
}

/// Puts records into a new zone; returns how many fitted. (A shared zone's first round finds
/// out which ones Redis lacks.)
pub fn load(shared: &Shared, records: Vec<Record>) -> usize {
    shared
        .with_keys_mut(|keys| records.into_iter().take_while(|r| insert(keys, *r, SYNCED)).count())
        .unwrap_or(0)
}

/// A record for a new key.
pub fn new_record(id: [u8; ID_LEN], owner: Email, name: &str, now: u64) -> Record {
    Record { id, owner, name: Name::new(name), created: now, last_used: 0 }
}

//! The counters of a zone in shared memory: a red-black tree in the zone's slab pool, keyed by
//! the encoded key (`gpt_auth_core::quota::Key`: a user, a group, a user's model), behind a
//! read-write lock, so a check-and-count is atomic across workers (no lost updates; requests
//! never overshoot a request budget).

use core::ptr::NonNull;

use gpt_auth_core::quota::state_file::Entry;
use gpt_auth_core::quota::{Amounts, Counters, Exceeded, Limits, Periods, Shares};
use nginx_sys::ngx_log_t;
use ngx::allocator::Allocator;
use ngx::collections::RbTreeMap;
use ngx::core::{NgxString, SlabPool};
use ngx::sync::RwLock;

use super::state;
use crate::conf::Zone;
use crate::ngx::shm;

/// A key's counters, and (in a zone shared through Redis) what this node charged it: allocated
/// apart in the zone, so that other zones spend 8 bytes a key on it and the request path copies
/// only the counters.
#[derive(Clone, Copy, Default)]
pub struct Slot {
    pub counters: Counters,
    shares: Option<NonNull<Shares>>,
}

impl Slot {
    /// This node's shares of the key (allocated at first use; a key without them has counted
    /// only here: all of its counters are this node's own, none sent). `None`: no room.
    pub fn shares(&mut self, alloc: &SlabPool) -> Option<&mut Shares> {
        if self.shares.is_none() {
            self.shares = ngx::allocator::allocate(all_own(&self.counters), alloc).ok();
        }
        // SAFETY: allocated in the zone's slab pool for this slot, freed only with it (`free`);
        // the zone's write lock, held by whoever has `&mut Slot`, orders every access.
        self.shares.map(|p| unsafe { &mut *p.as_ptr() })
    }

    /// The shares as they are (without allocating).
    pub fn shares_now(&self) -> Shares {
        // SAFETY: as in `shares`; the caller holds the zone's lock.
        self.shares.map_or_else(|| all_own(&self.counters), |p| unsafe { *p.as_ptr() })
    }

    /// Sets the shares (a key learnt from Redis has none of its own; a loaded one its saved).
    pub fn set_shares(&mut self, alloc: &SlabPool, sh: Shares) {
        if let Some(s) = self.shares(alloc) {
            *s = sh;
        }
    }

    /// Frees the shares, before the slot is removed.
    fn free(&mut self, alloc: &SlabPool) {
        if let Some(p) = self.shares.take() {
            // SAFETY: allocated by `shares` with this layout, in this pool, and not used again.
            unsafe { alloc.deallocate(p.cast(), core::alloc::Layout::new::<Shares>()) };
        }
    }
}

/// Encoded key → counters.
pub type Table = RbTreeMap<NgxString<SlabPool>, Slot, SlabPool>;

/// What the zone holds. The version guards a zone kept across a reload that loaded another
/// build of the module (dynamic modules are loaded again on reload): a zone of another layout
/// is never read, a new table is made (and the state file loaded).
pub struct Shared {
    magic: u64,
    pub table: RwLock<Table>,
    /// Personal API keys ([`super::keys`]), for a zone that keeps them: allocated apart (a
    /// pointer here, so that the zone's header and its room for users stay as they were), and
    /// reached under the table's lock.
    keys: core::sync::atomic::AtomicPtr<super::keys::KeyTable>,
}

impl Shared {
    /// `f` on the key table, under the read lock; `None` for a zone without one.
    pub fn with_keys<R>(&self, f: impl FnOnce(&super::keys::KeyTable) -> R) -> Option<R> {
        let _lock = self.table.read();
        let p = self.keys.load(core::sync::atomic::Ordering::Acquire);
        // SAFETY: set once by `init` to a table in the zone's slab pool, never freed while the
        // zone is mapped; the table lock orders every access to it.
        unsafe { p.as_ref() }.map(f)
    }

    /// `f` on the key table, under the write lock.
    pub fn with_keys_mut<R>(&self, f: impl FnOnce(&mut super::keys::KeyTable) -> R) -> Option<R> {
        let _lock = self.table.write();
        let p = self.keys.load(core::sync::atomic::Ordering::Acquire);
        // SAFETY: as in `with_keys`; the write lock gives the only access.
        unsafe { p.as_mut() }.map(f)
    }
}

/// Counts what a key was charged in this node's shares, in a zone shared through Redis (a key
/// without shares yet gets them from its counters, which already hold the charge).
#[inline]
fn count_share(zone: &Zone, alloc: &SlabPool, slot: &mut Slot, p: &Periods, amount: &Amounts) {
    if zone.redis.get().is_none() {
        return;
    }
    let fresh = slot.shares.is_none();
    if let Some(s) = slot.shares(alloc) {
        if !fresh {
            s.count(p, amount);
        }
    }
}

/// "gpt_auth" + the layout version.
const MAGIC: u64 = 0x6770_745f_6175_7404;

/// Why a request could not be counted.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum QuotaError {
    #[error("the zone has no room for another key")]
    Full,
    #[error("the zone is not available")]
    Unavailable,
}

/// The zone's shared table, once nginx has initialised the zone.
pub fn shared(zone: &Zone) -> Option<&'static Shared> {
    // SAFETY: the zone's `init` is `init` below, which stores a Shared (checked by its magic).
    let s = unsafe { shm::data::<Shared>(zone.shm) }?;
    (s.magic == MAGIC).then_some(s)
}

/// One key of a request and its budgets.
pub struct Charged<'a> {
    pub key: &'a [u8],
    pub limits: &'a Limits,
}

/// The outcome of an admission: refused by which key (its index), or admitted with the first
/// key's counters after it.
// Returned once per request and taken apart at once by the caller: boxing the counters would
// allocate on the request path, which a copy of a few hundred bytes does not.
#[allow(clippy::large_enum_variant)]
pub enum Admission {
    Admitted(Counters),
    Refused(usize, Exceeded),
}

/// Admits a request for every key at once (atomically: either all reserve `estimate`, or none
/// does); `charge_now` charges it as used at once instead (request budgets without metering:
/// one step, nothing to settle).
pub fn admit(
    zone: &Zone,
    keys: &[Charged<'_>],
    estimate: &Amounts,
    charge_now: bool,
    p: &Periods,
    log: *mut ngx_log_t,
) -> Result<Admission, QuotaError> {
    let shared = shared(zone).ok_or(QuotaError::Unavailable)?;
    let mut table = shared.table.write();
    if let [k] = keys {
        // One key (no groups): checked and reserved in one lookup.
        let alloc = table.allocator().clone();
        let slot = entry(&mut table, k.key, p.month, zone, log)?;
        let c = &mut slot.counters;
        c.roll(p);
        if let Some(e) = c.exceeded(p, k.limits) {
            return Ok(Admission::Refused(0, e));
        }
        if charge_now {
            c.charge(p, estimate);
            count_share(zone, &alloc, slot, p, estimate);
        } else {
            c.reserved.add(estimate);
        }
        return Ok(Admission::Admitted(slot.counters));
    }
    for (i, k) in keys.iter().enumerate() {
        let c = &mut entry(&mut table, k.key, p.month, zone, log)?.counters;
        c.roll(p);
        if let Some(e) = c.exceeded(p, k.limits) {
            return Ok(Admission::Refused(i, e));
        }
    }
    let alloc = table.allocator().clone();
    let mut first = Counters::default();
    for (i, k) in keys.iter().enumerate() {
        let slot = entry(&mut table, k.key, p.month, zone, log)?;
        if charge_now {
            slot.counters.charge(p, estimate);
            count_share(zone, &alloc, slot, p, estimate);
        } else {
            slot.counters.reserved.add(estimate);
        }
        if i == 0 {
            first = slot.counters;
        }
    }
    Ok(Admission::Admitted(first))
}

/// Settles a request for its keys: releases `reserved`, charges `actual`; `extra` keys (the
/// user's model) are charged `actual` too. Returns the keys' counters before and after, for
/// warnings.
pub fn settle(
    zone: &Zone,
    keys: &[&[u8]],
    extra: &[&[u8]],
    reserved: &Amounts,
    actual: &Amounts,
    p: &Periods,
    log: *mut ngx_log_t,
) -> Vec<(Counters, Counters)> {
    let Some(shared) = shared(zone) else { return Vec::new() };
    let mut table = shared.table.write();
    let mut out = Vec::with_capacity(keys.len());
    let alloc = table.allocator().clone();
    for k in keys {
        let Ok(slot) = entry(&mut table, k, p.month, zone, log) else { continue };
        let before = slot.counters;
        slot.counters.settle(p, reserved, actual);
        out.push((before, slot.counters));
        count_share(zone, &alloc, slot, p, actual);
    }
    for k in extra {
        if let Ok(slot) = entry(&mut table, k, p.month, zone, log) {
            slot.counters.charge(p, actual);
            count_share(zone, &alloc, slot, p, actual);
        }
    }
    out
}

/// Applies `f` to one key's counters (an administrator's reset or top-up); false when the zone
/// is unavailable or full.
pub fn update(zone: &Zone, key: &[u8], p: &Periods, f: impl FnOnce(&mut Counters)) -> bool {
    let Some(shared) = shared(zone) else { return false };
    let mut table = shared.table.write();
    match entry(&mut table, key, p.month, zone, crate::ngx::cycle_log()) {
        Ok(slot) => {
            f(&mut slot.counters);
            true
        }
        Err(_) => false,
    }
}

/// The counters of `key`, added if new (dropping keys of past months first if the zone is
/// full).
pub fn entry<'t>(
    table: &'t mut Table,
    key: &[u8],
    month: u32,
    zone: &Zone,
    log: *mut ngx_log_t,
) -> Result<&'t mut Slot, QuotaError> {
    // One tree lookup (a SipHash of the key) for a key already there, as on every request of a
    // known user. The borrow checker cannot yet return a borrow from one branch and borrow
    // again in the other (NLL "problem case #3"): the entry found goes out as a raw pointer.
    if let Some(c) = table.get_mut(key) {
        let c: *mut Slot = c;
        // SAFETY: `c` points into `table`, which stays mutably borrowed for 't and is not
        // touched again before the reference is returned.
        return Ok(unsafe { &mut *c });
    }
    insert(table, key, month, zone, log)?;
    table.get_mut(key).ok_or(QuotaError::Full)
}

fn insert(
    table: &mut Table,
    key: &[u8],
    month: u32,
    zone: &Zone,
    log: *mut ngx_log_t,
) -> Result<(), QuotaError> {
    for attempt in 0..2 {
        let alloc = table.allocator().clone();
        let inserted = NgxString::try_from_bytes_in(key, alloc)
            .ok()
            .is_some_and(|name| table.try_insert(name, Slot::default()).is_ok());
        if inserted {
            zone.full_logged.set(false);
            return Ok(());
        }
        if attempt == 0 {
            evict_stale(table, month);
        }
    }
    if !zone.full_logged.replace(true) && !log.is_null() {
        error!(
            log,
            "gpt_auth_quota_zone \"{}\" is full: no room for another user (requests of new \
             users are refused with 503); make the zone larger",
            zone.name
        );
    }
    Err(QuotaError::Full)
}

/// Removes keys whose counters are from a past month and hold nothing in flight.
fn evict_stale(table: &mut Table, month: u32) {
    let stale: Vec<Vec<u8>> = table
        .iter()
        .filter(|(_, s)| s.counters.month != month && s.counters.reserved == Amounts::default())
        .map(|(k, _)| k.as_bytes().to_vec())
        .collect();
    let alloc = table.allocator().clone();
    for k in stale {
        if let Some(slot) = table.get_mut(k.as_slice()) {
            slot.free(&alloc);
        }
        table.remove(k.as_slice());
    }
}

/// Every key's counters (for the report).
pub fn entries(zone: &Zone) -> Vec<(Vec<u8>, Counters)> {
    let Some(shared) = shared(zone) else { return Vec::new() };
    let table = shared.table.read();
    table.iter().map(|(k, s)| (k.as_bytes().to_vec(), s.counters)).collect()
}

/// What a node that does not share its zone has charged a key: all of it, none sent yet (so
/// that a zone that starts being shared sends what it counted before).
pub fn all_own(c: &Counters) -> Shares {
    Shares {
        day: c.day,
        month: c.month,
        day_unsent: c.day_used,
        month_unsent: c.month_used,
        day_own: c.day_used,
        month_own: c.month_used,
    }
}

/// Every key's counters and this node's shares (for the state file and a zone's successor).
pub fn slots(shared: &Shared) -> Vec<Entry> {
    let table = shared.table.read();
    table.iter().map(|(k, s)| (k.as_bytes().to_vec(), s.counters, s.shares_now())).collect()
}

/// One key's counters.
pub fn get(zone: &Zone, key: &[u8]) -> Option<Counters> {
    shared(zone)?.table.read().get(key).map(|s| s.counters)
}

/// Puts counters into a new zone's table (and, for a zone shared through Redis, this node's
/// shares); returns how many fitted.
pub fn load(shared: &Shared, entries: Vec<Entry>, synced: bool) -> usize {
    let mut table = shared.table.write();
    let mut loaded = 0;
    let alloc = table.allocator().clone();
    for (key, counters, shares) in entries {
        let mut slot = Slot { counters, shares: None };
        if synced {
            slot.set_shares(&alloc, shares);
        }
        let Ok(name) = NgxString::try_from_bytes_in(&key, alloc.clone()) else {
            slot.free(&alloc);
            break;
        };
        if table.try_insert(name, slot).is_err() {
            slot.free(&alloc);
            break;
        }
        loaded += 1;
    }
    loaded
}

ngx_entry! {
    /// Sets up a new zone, or keeps the one of the previous configuration after a reload (the
    /// counters carry on). A new zone takes the counters of the previous configuration's zone
    /// of the same name when there is one (a reload that changed its size), else the state
    /// file.
    pub shm_init fn init(shm_zone, _reused) {
        let log = shm::log(shm_zone);
        let name = shm_zone.shm.name;
        let made = shm::init(shm_zone, |pool: &SlabPool| {
            let table = Table::try_new_in(pool.clone()).ok()?;
            let keys = core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());
            Some(Shared { magic: MAGIC, table: RwLock::new(table), keys })
        });
        let made = made.ok_or(())?;
        // SAFETY: `data` was set to this zone's Zone when it was added (quota::directives),
        // alive as long as the configuration.
        let zone = unsafe { shm::zone_data::<Zone>(shm_zone) }.ok_or(())?;
        let shared = match made {
            shm::Init::Created(s) => Some(s),
            shm::Init::Reused => shared(zone),
        };
        if let Some(s) = shared.filter(|_| zone.api_keys.get()) {
            // A zone that keeps keys now (also one reused across a reload that added them).
            let table = s.table.write();
            if s.keys.load(core::sync::atomic::Ordering::Acquire).is_null() {
                let alloc = table.allocator().clone();
                let keys = super::keys::KeyTable::try_new_in(alloc.clone()).ok();
                if let Some(p) = keys.and_then(|k| ngx::allocator::allocate(k, &alloc).ok()) {
                    s.keys.store(p.as_ptr(), core::sync::atomic::Ordering::Release);
                }
            }
        }
        if let shm::Init::Created(shared) = made {
            match previous(&name) {
                Some((entries, keys)) => {
                    let n = load(shared, entries, zone.redis.get().is_some());
                    let k = super::keys::load(shared, keys);
                    notice!(log, "gpt_auth_quota_zone \"{}\": {} users and groups and {} API \
                                  keys taken over from the previous configuration", zone.name, n, k);
                }
                None => state::load(zone, shared, log),
            }
        }
        Ok(())
    }
}

/// The entries of the running configuration's zone of this name, if it is ours: read while
/// nginx builds the new configuration (the old zone is still mapped).
type Previous = (Vec<Entry>, Vec<gpt_auth_core::api_key::Record>);

fn previous(name: &nginx_sys::ngx_str_t) -> Option<Previous> {
    // SAFETY: the module tag identifies our zones; their data is a Shared (checked by magic).
    let old = unsafe { shm::previous_zone_data::<Shared>(name, shm::module_tag())? };
    if old.magic != MAGIC {
        return None;
    }
    let entries = slots(old); // each takes the lock itself
    Some((entries, super::keys::records_of(old)))
}

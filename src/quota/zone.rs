//! The counters of a zone in shared memory: a red-black tree in the zone's slab pool, keyed by
//! the lower-cased address, behind a read-write lock, so a check-and-count is atomic across
//! workers (no lost updates; a budget is never exceeded).

use gpt_auth_core::quota::{Charge, Counters, Limits, Periods};
use nginx_sys::ngx_log_t;
use ngx::collections::RbTreeMap;
use ngx::core::{NgxString, SlabPool};
use ngx::sync::RwLock;

use super::state;
use crate::conf::Zone;
use crate::ngx::shm;

/// The counters of a zone: lower-cased address → counters.
pub type Table = RbTreeMap<NgxString<SlabPool>, Counters, SlabPool>;
pub type Shared = RwLock<Table>;

/// The outcome of charging a request, kept for the variables and the 429 answer.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub charge: Charge,
    pub limits: Limits,
    pub day_used: u32,
    pub month_used: u32,
}

/// Why a request could not be charged.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum QuotaError {
    #[error("the zone has no room for another user")]
    Full,
    #[error("the zone is not available")]
    Unavailable,
}

/// The zone's shared table, once nginx has initialised the zone.
pub fn shared(zone: &Zone) -> Option<&'static Shared> {
    // SAFETY: the zone's `init` is `init` below, which stores a Shared.
    unsafe { shm::data::<Shared>(zone.shm) }
}

/// Counts one request of the user `key` (lower case) with `limits` at `periods`.
pub fn count(
    zone: &Zone,
    key: &[u8],
    limits: Limits,
    periods: &Periods,
    log: *mut ngx_log_t,
) -> Result<Snapshot, QuotaError> {
    let shared = shared(zone).ok_or(QuotaError::Unavailable)?;
    let charge = |c: &mut Counters| {
        let charge = c.charge(periods, limits);
        Snapshot { charge, limits, day_used: c.day_used, month_used: c.month_used }
    };
    let mut table = shared.write();
    if let Some(c) = table.get_mut(key) {
        return Ok(charge(c));
    }
    insert(&mut table, key, periods.month, zone, log)?;
    table.get_mut(key).map(charge).ok_or(QuotaError::Full)
}

/// Adds a user, dropping users of past months first if the zone is full.
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
            .is_some_and(|name| table.try_insert(name, Counters::default()).is_ok());
        if inserted {
            zone.full_logged.set(false);
            return Ok(());
        }
        if attempt == 0 {
            evict_stale(table, month);
        }
    }
    if !zone.full_logged.replace(true) {
        error!(
            log,
            "gpt_auth_quota_zone \"{}\" is full: no room for another user (requests of new \
             users are refused with 503); make the zone larger",
            zone.name
        );
    }
    Err(QuotaError::Full)
}

/// Removes users whose counters are from a past month (they would start from zero anyway).
fn evict_stale(table: &mut Table, month: u32) {
    let stale: Vec<Vec<u8>> = table
        .iter()
        .filter(|(_, c)| c.month != month)
        .map(|(k, _)| k.as_bytes().to_vec())
        .collect();
    for k in stale {
        table.remove(k.as_slice());
    }
}

/// Every user's counters (for the report and the state file).
pub fn entries(zone: &Zone) -> Vec<(String, Counters)> {
    let Some(shared) = shared(zone) else { return Vec::new() };
    let table = shared.read();
    table.iter().map(|(k, c)| (String::from_utf8_lossy(k.as_bytes()).into_owned(), *c)).collect()
}

/// Puts loaded counters into a new zone's table; returns how many fitted.
pub fn load(shared: &Shared, entries: Vec<(String, Counters)>) -> usize {
    let mut table = shared.write();
    let mut loaded = 0;
    for (email, counters) in entries {
        let alloc = table.allocator().clone();
        let Ok(key) = NgxString::try_from_bytes_in(email.to_ascii_lowercase().as_bytes(), alloc)
        else {
            break;
        };
        if table.try_insert(key, counters).is_err() {
            break;
        }
        loaded += 1;
    }
    loaded
}

ngx_entry! {
    /// Sets up a new zone, or keeps the one of the previous configuration after a reload (the
    /// counters carry on); a new zone loads the state file.
    pub shm_init fn init(shm_zone, _reused) {
        let log = shm::log(shm_zone);
        let made = shm::init(shm_zone, |pool: &SlabPool| {
            Table::try_new_in(pool.clone()).ok().map(RwLock::new)
        });
        let made = made.ok_or(())?;
        // SAFETY: `data` was set to this zone's Zone when it was added (quota::directives),
        // alive as long as the configuration.
        let zone = unsafe { shm::zone_data::<Zone>(shm_zone) }.ok_or(())?;
        if let shm::Init::Created(shared) = made {
            state::load(zone, shared, log);
        }
        Ok(())
    }
}

//! The configuration of per-user budgets: a zone (`gpt_auth_quota_zone`) and a location's
//! budget (`gpt_auth_quota`). Parsed by `crate::quota::directives`; the counting is in
//! `crate::quota`.

use core::cell::{Cell, OnceCell};
use std::rc::Rc;

use gpt_auth_core::quota::{Clock, Limits, Overrides, Periods};
use nginx_sys::{ngx_shm_zone_t, ngx_uint_t};

use crate::files::Watched;
use crate::ngx::Source;

pub const DEFAULT_INTERVAL: u64 = 30;

/// `gpt_auth_quota_zone`: a shared memory zone of counters.
#[derive(Debug)]
pub struct Zone {
    pub name: String,
    /// The zone nginx allocated for this configuration.
    pub shm: *mut ngx_shm_zone_t,
    pub clock: Clock,
    pub state_file: Option<String>,
    pub interval: u64,
    /// A full zone is logged once per worker until it has room again.
    pub full_logged: Cell<bool>,
    /// The periods of the last second asked about (they change at most once a second).
    periods: Cell<Option<(u64, Periods)>>,
}

impl Zone {
    pub fn new(
        name: String,
        shm: *mut ngx_shm_zone_t,
        clock: Clock,
        state_file: Option<String>,
        interval: u64,
    ) -> Zone {
        Zone {
            name,
            shm,
            clock,
            state_file,
            interval,
            full_logged: Cell::new(false),
            periods: Cell::new(None),
        }
    }

    /// The clock's periods at `now`, computed once per second.
    pub fn periods(&self, now: u64) -> Periods {
        match self.periods.get() {
            Some((t, p)) if t == now => p,
            _ => {
                let p = self.clock.periods(now);
                self.periods.set(Some((now, p)));
                p
            }
        }
    }
}

/// `gpt_auth_quota zone=... day=... month=... methods=... overrides=...`.
#[derive(Debug)]
pub struct QuotaConf {
    pub zone_name: String,
    /// Where the directive was written, for `nginx -t` messages at merge time.
    pub source: Source,
    /// Resolved when the configuration is merged (zones may be declared after their use).
    pub zone: OnceCell<Rc<Zone>>,
    pub defaults: Limits,
    /// nginx method bits that count; 0: every method.
    pub methods: ngx_uint_t,
    pub overrides: Option<Rc<Watched<Overrides>>>,
}

impl QuotaConf {
    /// Whether a request with nginx method bit `method` is counted.
    pub fn counts(&self, method: ngx_uint_t) -> bool {
        self.methods == 0 || method & self.methods != 0
    }
}

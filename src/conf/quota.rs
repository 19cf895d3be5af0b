//! The configuration of budgets: a zone (`gpt_auth_quota_zone`), the groups that share a budget
//! in it (`gpt_auth_quota_group`, `members=*` being the account's own limit) and a location's
//! budget (`gpt_auth_quota`). Parsed by `crate::quota::directives`; the counting is in
//! `crate::quota`.

use core::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;

use gpt_auth_core::quota::{Clock, Limits, Overrides, Periods};
use nginx_sys::{ngx_shm_zone_t, ngx_uint_t};

use crate::files::{Watched, WatchedAllowlist};
use crate::ngx::Source;

pub const DEFAULT_INTERVAL: u64 = 30;
/// Output tokens reserved for an AI request that names no limit of its own (`max_tokens`).
pub const DEFAULT_RESERVE: u64 = 4096;

/// Who belongs to a group.
#[derive(Debug)]
pub enum Members {
    /// Everyone: the budget of the whole account.
    All,
    /// `@example.com` (lower case, with the `@`).
    Domain(String),
    /// The addresses and domains of an allowlist file (re-read when it changes).
    List(Rc<WatchedAllowlist>),
}

/// `gpt_auth_quota_group zone=... name=... members=... [budgets] [warn=N%]`.
#[derive(Debug)]
pub struct GroupConf {
    pub name: String,
    pub members: Members,
    pub limits: Limits,
    /// Warn at this share of a budget (per mille); `None`: no warning.
    pub warn: Option<u64>,
}

/// `gpt_auth_quota_zone`: a shared memory zone of counters.
#[derive(Debug)]
pub struct Zone {
    pub name: String,
    /// The zone nginx allocated for this configuration.
    pub shm: *mut ngx_shm_zone_t,
    pub size: usize,
    pub clock: Clock,
    pub state_file: Option<String>,
    pub interval: u64,
    /// Groups sharing budgets in this zone (filled while the configuration is read; at most 64).
    pub groups: RefCell<Vec<GroupConf>>,
    /// A full zone is logged once per worker until it has room again.
    pub full_logged: Cell<bool>,
    /// Personal API keys are kept here (a location names the zone in `gpt_auth_bearer` or
    /// `gpt_auth_api_keys`): only then does the zone get a table for them.
    pub api_keys: Cell<bool>,
    /// The periods of the last second asked about (they change at most once a second).
    periods: Cell<Option<(u64, Periods)>>,
    /// `gpt_auth_quota_redis`: the Redis server the zone's counters are shared through.
    pub redis: OnceCell<crate::quota::cluster::RedisConf>,
}

/// Most groups one zone can have (their membership is a bit mask per request).
pub const MAX_GROUPS: usize = 64;

impl Zone {
    pub fn new(
        name: String,
        shm: *mut ngx_shm_zone_t,
        size: usize,
        clock: Clock,
        state_file: Option<String>,
        interval: u64,
    ) -> Zone {
        Zone {
            name,
            shm,
            size,
            clock,
            state_file,
            interval,
            groups: RefCell::new(Vec::new()),
            full_logged: Cell::new(false),
            api_keys: Cell::new(false),
            redis: OnceCell::new(),
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

/// `gpt_auth_quota zone=... [budgets] [methods=...] [overrides=...] [reserve=N] [warn=N%]`.
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
    /// Output tokens reserved for an AI request without `max_tokens`.
    pub reserve: u64,
    /// Warn at this share of a user's budget (per mille).
    pub warn: Option<u64>,
}

impl QuotaConf {
    /// Whether a request with nginx method bit `method` is counted.
    pub fn counts(&self, method: ngx_uint_t) -> bool {
        self.methods == 0 || method & self.methods != 0
    }
}

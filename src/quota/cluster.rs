//! A zone shared by several nginx machines through Redis (`gpt_auth_quota_redis`): in worker 0,
//! a timer per zone runs a round every `interval` — the counts this node charged since the last
//! round go to Redis, the cluster's totals come back into the zone — over a connection of
//! nginx's event loop ([`crate::ngx::peer`]). Requests never wait for it: admission reads the
//! zone as without Redis. The rules (what a round sends, how totals come back, how a Redis
//! that lost its data is refilled) are in `gpt_auth_core::quota::cluster`.

use std::rc::Rc;

use gpt_auth_arena as arena;

use gpt_auth_core::quota::cluster::{self, Entry, Lifetimes, Names, RoundId};
use gpt_auth_core::quota::{Amounts, Periods};
use nginx_sys::{ngx_cycle_t, ngx_log_t};
use ngx::http::HttpModuleMainConf;

use super::zone;
use crate::conf::Zone;
use crate::ngx::peer::{self, Address, Failure, Tls};
use crate::ngx::time::{self, now, Timer};
use crate::GptAuthModule;

/// Redis's own port.
pub const DEFAULT_PORT: u16 = 6379;
pub const DEFAULT_INTERVAL_MS: u64 = 1000;
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;

/// `gpt_auth_quota_redis zone=NAME server=ADDRESS [node=NAME] [password_file=FILE]
/// [user=NAME] [prefix=STRING] [interval=TIME] [timeout=TIME]`.
pub struct RedisConf {
    pub address: Address,
    /// TLS to the server (`ssl`), nginx's own.
    pub tls: Option<Tls>,
    /// This machine's name among the nodes (default: the host name): the fields of its share.
    pub node: String,
    /// Read from `password_file` when the configuration is read (never logged).
    pub password: Option<Vec<u8>>,
    pub user: Option<String>,
    pub names: Names,
    pub interval_ms: u64,
    pub timeout_ms: u64,
}

impl core::fmt::Debug for RedisConf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RedisConf")
            .field("address", &self.address.as_str())
            .field("tls", &self.tls.as_ref().map(Tls::name))
            .field("node", &self.node)
            .field("names", &self.names)
            .field("interval_ms", &self.interval_ms)
            .finish_non_exhaustive()
    }
}

/// After the configuration is read: the zones whose server is looked up at run time
/// (`resolve`) get the http block's resolver; `Err` names a zone that has none to use.
pub fn bind_resolvers(
    zones: &[Rc<Zone>],
    clcf: &nginx_sys::ngx_http_core_loc_conf_t,
) -> Result<(), String> {
    for z in zones {
        let Some(redis) = z.redis.get().filter(|r| r.address.resolves()) else { continue };
        // SAFETY: the http block's resolver, made by nginx when the block was merged.
        let servers = unsafe { clcf.resolver.as_ref() }.map_or(0, |r| r.connections.nelts);
        if servers == 0 {
            return Err(format!(
                "gpt_auth_quota_redis zone={}: \"resolve\" needs a \"resolver\" in the http block",
                z.name
            ));
        }
        redis.address.set_resolver(clcf.resolver, clcf.resolver_timeout);
    }
    Ok(())
}

/// One zone's synchronisation in worker 0 (for the worker's life).
struct Sync {
    zone: Rc<Zone>,
    timer: Option<Timer>,
    /// This worker's id in round ids (random), and the rounds it has run.
    worker: String,
    rounds: u64,
    /// A round whose answer did not come: sent again as it was (its id keeps Redis from
    /// counting it twice) before anything new.
    pending: Option<(RoundId, Vec<Entry>)>,
    /// Rounds failed in a row.
    failures: u32,
    /// The failure was logged (at `error`); the recovery is then logged at `notice`.
    broken: bool,
    /// While broken, the conversations log here: the worker's log at `alert` and above only,
    /// so that what nginx says of every failed connect, send or handshake (its detail of the
    /// failure logged once) is not repeated at each retry.
    quiet: ngx_log_t,
    /// The version of the zone's API keys last read (empty: not yet).
    keys_version: String,
    /// The server has the scripts (loaded by a round that worked; after a failure they are
    /// sent again, in case the server restarted).
    loaded: bool,
    /// What every round writes first, without and with the scripts' loads (encoded once).
    preambles: [cluster::Preamble; 2],
}

thread_local! {
    /// This worker's synchronisations (for the last word at exit).
    static SYNCS: core::cell::RefCell<Vec<*mut Sync>> = const { core::cell::RefCell::new(Vec::new()) };
}

/// In worker 0: starts the rounds of every zone that names a Redis server, the first one at
/// once (a node that starts learns the cluster's totals before its first interval).
pub fn start(cycle: &ngx_cycle_t) {
    if time::worker() != 0 {
        return;
    }
    let Some(mcf) = GptAuthModule::main_conf(cycle) else { return };
    if mcf.quota_zones.iter().all(|z| z.redis.get().is_none()) {
        return;
    }
    cluster::prepare();
    let mut random = [0u8; 6];
    if getrandom::fill(&mut random).is_err() {
        // Round ids must differ between nodes and restarts: the time and pid stand in.
        random[..4].copy_from_slice(&(now() as u32).to_le_bytes());
        random[4..].copy_from_slice(&(std::process::id() as u16).to_le_bytes());
    }
    let worker: String = random.iter().map(|b| format!("{b:02x}")).collect();
    for zone in mcf.quota_zones.iter().filter(|z| z.redis.get().is_some()) {
        let Some(redis) = zone.redis.get() else { continue };
        let auth = redis.password.as_deref().map(|pw| (redis.user.as_deref(), pw));
        let keys = zone.api_keys.get();
        let preambles = [cluster::preamble(auth, false, keys), cluster::preamble(auth, true, keys)];
        // One per zone for the worker's life: the timer's data (freed with the process).
        let sync = Box::leak(Box::new(Sync {
            zone: zone.clone(),
            timer: None,
            worker: worker.clone(),
            rounds: 0,
            pending: None,
            failures: 0,
            broken: false,
            // SAFETY: the cycle's log, copied (its level is set in each broken round).
            quiet: unsafe { *cycle.log },
            keys_version: String::new(),
            loaded: false,
            preambles,
        }));
        let data = core::ptr::from_mut(sync).cast();
        sync.timer = Timer::new(cycle.pool, cycle.log, tick, data);
        if let Some(t) = &mut sync.timer {
            t.arm_ms(1);
        }
        SYNCS.with(|v| v.borrow_mut().push(sync));
    }
}

/// At worker exit: a round under way is ended (nginx would report its open socket as a leak)
/// and, like a round that failed and waits to be sent again, dropped. Its counts are not lost:
/// they are in the node's own totals (`day_own`, `month_own`, kept by the state file), to which
/// the next worker 0's first round raises the node's fields. Making them unsent again instead
/// would count them twice whenever Redis had applied the round after all (a frozen Redis reads
/// the request when it thaws).
pub fn at_exit() {
    peer::abort_all();
    SYNCS.with(|v| {
        for &sync in v.borrow().iter() {
            // SAFETY: leaked in `start`, never freed; this worker's event loop has ended.
            if let Some(sync) = unsafe { sync.as_mut() } {
                sync.pending = None;
            }
        }
    });
}

ngx_entry! {
    /// A zone's round is due.
    timer fn tick(ev) {
        // SAFETY: the data set in `start`: a leaked Sync, alive as long as the process.
        let Some(sync) = (unsafe { ev.data.cast::<Sync>().as_mut() }) else { return };
        if time::stopping() {
            return;
        }
        check_arena(ev.log);
        // A round's memory is the arena's (what outlives it: `arena::outside`).
        arena::scope(|| run_round(sync, ev.log));
    }
}

/// Between rounds (none under way, none waiting to be sent again) the arena must be empty:
/// anything left there outlived its round without `arena::outside`, keeps the arena from being
/// reset, and would in the end send the rounds back to the heap. Said once, as the bug it is.
fn check_arena(log: *mut ngx_log_t) {
    thread_local! {
        static SAID: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    }
    let idle = peer::under_way() == 0
        && SYNCS.with(|v| {
            // SAFETY: leaked in `start`, alive as long as the process.
            v.borrow().iter().all(|&s| unsafe { s.as_ref() }.is_none_or(|s| s.pending.is_none()))
        });
    let (blocks, bytes, _) = arena::usage();
    if idle && blocks != 0 && !SAID.with(|s| s.replace(true)) {
        alert!(
            log,
            "gpt_auth_quota_redis: {blocks} blocks ({bytes} bytes) of the rounds' memory \
             outlived their round (a bug: please report it)"
        );
    }
}

fn run_round(sync: &mut Sync, log: *mut ngx_log_t) {
    let zone = sync.zone.clone();
    let Some(redis) = zone.redis.get() else { return };
    let t = now();
    let p = zone.periods(t);
    let resent = sync.pending.is_some();
    let (at, entries) = match sync.pending.take() {
        Some(pending) => pending,
        None => {
            sync.rounds += 1;
            let at = RoundId {
                node: redis.node.clone(),
                id: format!("{}-{}", sync.worker, sync.rounds),
                day: p.day,
                month: p.month,
            };
            (at, snapshot(&zone, &p))
        }
    };
    let day_length = zone.clock.day_length;
    let life = Lifetimes {
        day: p.day_ends.saturating_sub(t) + day_length,
        month: p.month_ends.saturating_sub(t) + 31 * day_length,
    };
    let keys = zone.api_keys.get().then(|| super::keys::changes(&zone, &sync.keys_version));
    let keys = keys.flatten();
    let load = !sync.loaded;
    let pre = &sync.preambles[usize::from(load)];
    // SAFETY: the Sync is leaked and its preambles never change after `start`.
    let head: &'static [u8] = unsafe { &*core::ptr::from_ref(pre.bytes.as_slice()) };
    let mut round = cluster::round_after(pre, &redis.names, &entries, &at, life, keys.as_ref());
    let bytes = core::mem::take(&mut round.bytes);
    let round = Rc::new(round);
    let r = round.clone();
    let complete = Box::new(move |buf: &[u8]| match cluster::complete(&r, buf) {
        Ok(whole) => Ok(whole.is_some()),
        Err(_) => Err(()),
    });
    let sync_ptr: *mut Sync = sync;
    let done = Box::new(move |result: Result<Vec<u8>, (Failure, Vec<u8>)>| {
        // SAFETY: the Sync is leaked (never freed while the process runs); only this worker's
        // event loop touches it, one round at a time.
        let Some(sync) = (unsafe { sync_ptr.as_mut() }) else { return };
        if matches!(result, Err((Failure::Aborted, _))) {
            return; // the worker exits: see `at_exit`
        }
        let outcome = match result {
            Ok(b) => cluster::outcome(&round, &b).map_err(Ok),
            // An error answered before the connection ended says more than the end does.
            Err((f, partial)) => Err(cluster::early_error(&partial).ok_or(f)),
        };
        sync.loaded = outcome.is_ok();
        if matches!(outcome, Err(Ok(cluster::ReplyError::NoScript))) && !load {
            // The server lost the scripts (restarted between two rounds, or SCRIPT FLUSH):
            // the same round again at once, with them; not a failure to log.
            sync.pending = Some((at, entries));
            if let Some(t) = sync.timer.as_mut().filter(|_| !time::stopping()) {
                t.arm_ms(1);
            }
            return;
        }
        let outcome =
            outcome.map_err(|e| e.map_or_else(|f| failure(&sync.zone, f), |r| r.to_string()));
        let wait = match outcome {
            Ok(o) => {
                apply(&sync.zone, &at, &entries, &o, log);
                if let Some(k) = &keys {
                    super::keys::applied(&sync.zone, k, o.api_keys.as_ref());
                }
                if let Some(v) = o.api_keys.as_ref().map(|s| arena::outside(|| s.version.clone())) {
                    sync.keys_version = v;
                }
                if sync.broken {
                    notice!(
                        log,
                        "gpt_auth_quota_redis \"{}\": synchronised with {} again",
                        sync.zone.name,
                        address(&sync.zone)
                    );
                }
                sync.broken = false;
                sync.failures = 0;
                // After a round sent again, the counts of the meantime follow at once.
                if resent {
                    1
                } else {
                    interval(&sync.zone)
                }
            }
            Err(why) => {
                sync.pending = Some((at, entries));
                sync.failures = sync.failures.saturating_add(1);
                if !sync.broken {
                    error!(
                        log,
                        "gpt_auth_quota_redis \"{}\": cannot synchronise with {}: {}; counting on \
                         this node and retrying",
                        sync.zone.name,
                        address(&sync.zone),
                        why
                    );
                    sync.broken = true;
                }
                cluster::backoff(interval(&sync.zone), sync.failures)
            }
        };
        if !time::stopping() {
            if let Some(t) = &mut sync.timer {
                t.arm_ms(wait);
            }
        }
    });
    let talk_log = if sync.broken {
        // SAFETY: `log` is the timer's, the worker's live log.
        sync.quiet = unsafe { *log };
        sync.quiet.log_level = sync.quiet.log_level.min(nginx_sys::NGX_LOG_ALERT as usize);
        &mut sync.quiet
    } else {
        log
    };
    peer::call(
        &redis.address,
        redis.tls.as_ref(),
        talk_log,
        head,
        bytes,
        redis.timeout_ms,
        complete,
        done,
    );
}

/// Why a conversation failed, for the log.
fn failure(zone: &Zone, f: Failure) -> String {
    match (f, zone.redis.get().and_then(|r| r.tls.as_ref())) {
        (Failure::WrongName, Some(tls)) => format!("{f} \"{}\"", tls.name()),
        _ => f.to_string(),
    }
}

fn interval(zone: &Zone) -> u64 {
    zone.redis.get().map_or(DEFAULT_INTERVAL_MS, |r| r.interval_ms)
}

fn address(zone: &Zone) -> &str {
    zone.redis.get().map_or("?", |r| r.address.as_str())
}

/// Every key of the current month: what it has not sent (taken), and all this node counted. A
/// key without shares (counted before the zone was shared) has counted all of it here.
fn snapshot(zone: &Zone, p: &Periods) -> Vec<Entry> {
    let Some(shared) = zone::shared(zone) else { return Vec::new() };
    let mut table = shared.table.write();
    let alloc = table.allocator().clone();
    let mut out = Vec::new();
    for (k, slot) in table.iter_mut() {
        if slot.counters.month != p.month {
            continue; // not seen this month: nothing of this month to send or learn
        }
        let Some(sh) = slot.shares(&alloc) else { continue }; // no room: sent when there is
        sh.roll(p);
        let today = sh.day == p.day;
        let take =
            |a: &mut Amounts, now: bool| if now { core::mem::take(a) } else { Amounts::default() };
        out.push(Entry {
            key: k.as_bytes().to_vec(),
            day_sent: take(&mut sh.day_unsent, today),
            month_sent: take(&mut sh.month_unsent, true),
            day_own: if today { sh.day_own } else { Amounts::default() },
            month_own: sh.month_own,
        });
    }
    out
}

/// A round succeeded: each view becomes the cluster's total plus what was charged here while
/// the round was under way; keys charged on other nodes only are added (for the report, and
/// so that their totals are read from the next round on).
fn apply(zone: &Zone, at: &RoundId, entries: &[Entry], o: &cluster::Outcome, log: *mut ngx_log_t) {
    let p = zone.periods(now());
    if (p.day, p.month) != (at.day, at.month) {
        return; // a period ended since: the next round reads the new one
    }
    let p = &p;
    let Some(shared) = zone::shared(zone) else { return };
    let mut table = shared.table.write();
    let alloc = table.allocator().clone();
    for (e, totals) in entries.iter().zip(&o.totals) {
        let Some(slot) = table.get_mut(e.key.as_slice()) else { continue };
        let unsent = slot.shares(&alloc).map(|sh| {
            sh.roll(p);
            (sh.day_unsent, sh.month_unsent)
        });
        let Some((day_unsent, month_unsent)) = unsent else { continue };
        slot.counters.roll(p);
        slot.counters.day_used = totals.day.plus(&day_unsent);
        slot.counters.month_used = totals.month.plus(&month_unsent);
    }
    for key in &o.known {
        if table.get(key.as_slice()).is_some() {
            continue;
        }
        match zone::entry(&mut table, key, p.month, zone, log) {
            Ok(slot) => {
                slot.counters.roll(p);
                // Nothing of it counted here: its shares are none.
                let mut none = gpt_auth_core::quota::Shares::default();
                none.roll(p);
                slot.set_shares(&alloc, none);
            }
            Err(_) => break, // the zone is full (logged once by the zone)
        }
    }
}

/// Whether `zone` is synchronised through Redis (its administration then says so).
pub fn synced(zone: &Zone) -> bool {
    zone.redis.get().is_some()
}

//! Per-user budgets in shared memory: `gpt_auth_quota_zone` (the counters, shared by all
//! workers, kept across reloads and, with a state file, across restarts) and `gpt_auth_quota`
//! (a location's budget, charged in the access phase after the user is known).
//!
//! The counting rules are pure code in `gpt_auth_core::quota`; this file keeps the counters in a
//! red-black tree in the zone's slab pool behind a read-write lock, so a check-and-count is
//! atomic across workers: no lost updates, and a budget is never exceeded.

use core::cell::{Cell, OnceCell};
use core::ffi::{c_char, c_void};
use core::ptr;
use std::fs;
use std::rc::Rc;

use gpt_auth_core::duration;
use gpt_auth_core::quota::{self, Charge, Clock, Counters, Limit, Limits, Overrides, Periods};
use gpt_auth_core::session::MAX_EMAIL_LEN;
use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_event_t, ngx_http_request_t, ngx_int_t, ngx_log_t,
    ngx_shm_zone_t, ngx_str_t, ngx_uint_t, NGX_ERROR, NGX_OK,
};
use ngx::collections::RbTreeMap;
use ngx::core::{NgxString, SlabPool, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::HttpModuleMainConf;
use ngx::sync::RwLock;

use crate::conf::LocConf;
use crate::log::io_reason;
use crate::ngx_ext::{conf_args, conf_full_path, guard};
use crate::watch::Watched;
use crate::GptAuthModule;

/// The counters of a zone: lower-cased address → counters.
type Table = RbTreeMap<NgxString<SlabPool>, Counters, SlabPool>;
type Shared = RwLock<Table>;

/// Smallest zone accepted (a few thousand users need about 1 MB: ~160 bytes each).
const MIN_ZONE_SIZE: usize = 32 * 1024;
pub const DEFAULT_INTERVAL: u64 = 30;

/// `gpt_auth_quota_zone`.
#[derive(Debug)]
pub struct Zone {
    pub name: String,
    pub shm: *mut ngx_shm_zone_t,
    pub clock: Clock,
    pub state_file: Option<String>,
    pub interval: u64,
    /// A full zone is logged once per worker until it has room again.
    full_logged: Cell<bool>,
    /// The periods of the last second asked about (they change at most once a second).
    periods: Cell<Option<(u64, Periods)>>,
}

impl Zone {
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
    pub source: crate::conf::Source,
    /// Resolved when the configuration is merged (zones may be declared after their use).
    pub zone: OnceCell<Rc<Zone>>,
    pub defaults: Limits,
    /// nginx method bits that count; 0: every method.
    pub methods: ngx_uint_t,
    pub overrides: Option<Rc<Watched<Overrides>>>,
}

impl QuotaConf {
    pub fn counts(&self, r: &ngx_http_request_t) -> bool {
        self.methods == 0 || r.method & self.methods != 0
    }
}

/// The outcome of charging a request, kept for the variables and the 429 page.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub charge: Charge,
    pub limits: Limits,
    pub day_used: u32,
    pub month_used: u32,
}

/// Why a request could not be charged.
#[derive(Debug)]
pub enum QuotaError {
    /// The zone has no room for another user even after dropping those of past months.
    Full,
    /// The zone is not usable (not initialised).
    Unavailable,
}

fn shared(zone: &Zone) -> Option<&'static Shared> {
    // SAFETY: the zone is initialised (zone_init) before workers start and stays mapped for the
    // worker's lifetime; its slab pool `data` points at our Shared.
    unsafe {
        let shm = zone.shm.as_ref()?;
        let pool = SlabPool::from_shm_zone(shm)?;
        pool.as_ref().data.cast::<Shared>().as_ref()
    }
}

/// Counts one request of `email` against `q`'s budget.
pub fn charge(
    q: &QuotaConf,
    email: &[u8],
    now: u64,
    log: *mut ngx_log_t,
) -> Result<Snapshot, QuotaError> {
    let zone = q.zone.get().ok_or(QuotaError::Unavailable)?;
    let shared = shared(zone).ok_or(QuotaError::Unavailable)?;
    let mut key = [0u8; MAX_EMAIL_LEN];
    let key = key.get_mut(..email.len()).ok_or(QuotaError::Unavailable)?;
    key.copy_from_slice(email);
    key.make_ascii_lowercase();
    let limits = match &q.overrides {
        Some(o) => o.get(now, log).limits_for_lowercase(key, q.defaults),
        None => q.defaults,
    };
    let periods = zone.periods(now);
    let count = |c: &mut Counters| {
        let charge = c.charge(&periods, limits);
        Snapshot { charge, limits, day_used: c.day_used, month_used: c.month_used }
    };

    let mut table = shared.write();
    if let Some(c) = table.get_mut(&*key) {
        return Ok(count(c));
    }
    insert(&mut table, key, periods.month, zone, log)?;
    table.get_mut(&*key).map(count).ok_or(QuotaError::Full)
}

/// Adds a user, dropping users of past months first if the zone is full.
fn insert(
    table: &mut Table,
    key: &[u8],
    month: u32,
    zone: &Zone,
    log: *mut ngx_log_t,
) -> Result<(), QuotaError> {
    let alloc = table.allocator().clone();
    for attempt in 0..2 {
        let Ok(name) = NgxString::try_from_bytes_in(key, alloc.clone()) else {
            if attempt == 0 {
                evict_stale(table, month);
                continue;
            }
            break;
        };
        if table.try_insert(name, Counters::default()).is_ok() {
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

/* configuration */

/// `gpt_auth_quota_zone zone=NAME:SIZE [state=FILE] [interval=TIME] [utc_offset=+HH:MM]
/// [day_length=TIME]` (http level).
pub extern "C" fn cmd_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx passes the configuration being parsed.
        let cfr = unsafe { &mut *cf };
        match zone_directive(cfr) {
            Ok(()) => NGX_CONF_OK,
            Err(msg) => {
                conf_emerg!(cf, "\"gpt_auth_quota_zone\" directive {}", msg);
                NGX_CONF_ERROR
            }
        }
    })
}

fn zone_directive(cf: &mut ngx_conf_t) -> Result<(), String> {
    let args: Vec<String> = conf_args(cf).iter().skip(1).map(|a| a.to_string()).collect();
    let (mut name, mut size, mut state, mut interval) = (None, 0usize, None, DEFAULT_INTERVAL);
    let mut clock = Clock::default();
    for a in &args {
        let (k, v) = a.split_once('=').ok_or_else(|| format!("invalid parameter \"{a}\""))?;
        match k {
            "zone" => {
                let (n, s) = v
                    .split_once(':')
                    .ok_or_else(|| format!("invalid zone \"{v}\" (expected zone=NAME:SIZE)"))?;
                if n.is_empty() {
                    return Err(format!("invalid zone \"{v}\" (no name)"));
                }
                name = Some(n.to_owned());
                size = parse_size(s).ok_or_else(|| format!("invalid zone size \"{s}\""))?;
                if size < MIN_ZONE_SIZE {
                    return Err(format!("zone \"{n}\" is too small ({s}); at least 32k"));
                }
            }
            "state" => {
                let path = conf_full_path(cf, v.as_bytes()).ok_or("cannot resolve the path")?;
                state = Some(path);
            }
            "interval" => {
                interval = duration::parse_seconds(v)
                    .map_err(|e| format!("invalid interval \"{v}\": {e}"))?
                    .max(1);
            }
            "utc_offset" => {
                clock.utc_offset = quota::parse_utc_offset(v)
                    .map_err(|e| format!("invalid utc_offset \"{v}\": {e}"))?;
            }
            "day_length" => {
                clock.day_length = duration::parse_seconds(v)
                    .ok()
                    .filter(|d| *d > 0)
                    .ok_or_else(|| format!("invalid day_length \"{v}\""))?;
            }
            _ => return Err(format!("invalid parameter \"{a}\"")),
        }
    }
    let name = name.ok_or("needs zone=NAME:SIZE")?;
    let mcf = GptAuthModule::main_conf_mut(cf).ok_or("has no http configuration")?;
    if mcf.quota_zones.iter().any(|z| z.name == name) {
        return Err(format!("zone \"{name}\" is duplicate"));
    }
    let mut shm_name = ngx_str_t { len: name.len(), data: name.as_ptr().cast_mut() };
    // SAFETY: registers a shared zone for this configuration; nginx copies the name.
    let shm = unsafe {
        nginx_sys::ngx_shared_memory_add(
            cf,
            &mut shm_name,
            size,
            ptr::addr_of_mut!(crate::ngx_http_gpt_auth_module).cast(),
        )
    };
    // SAFETY: NULL or a zone of this cycle.
    let shm_ref = unsafe { shm.as_mut() }.ok_or("cannot add the shared zone")?;
    if !shm_ref.data.is_null() {
        return Err(format!("zone \"{name}\" is already used by another directive"));
    }
    let zone = Rc::new(Zone {
        name,
        shm,
        clock,
        state_file: state,
        interval,
        full_logged: Cell::new(false),
        periods: Cell::new(None),
    });
    shm_ref.init = Some(zone_init);
    shm_ref.data = Rc::as_ptr(&zone).cast_mut().cast();
    mcf.quota_zones.push(zone);
    Ok(())
}

fn parse_size(s: &str) -> Option<usize> {
    let mut v = ngx_str_t { len: s.len(), data: s.as_ptr().cast_mut() };
    // SAFETY: ngx_parse_size only reads the string.
    let n = unsafe { nginx_sys::ngx_parse_size(&mut v) };
    usize::try_from(n).ok()
}

/// Sets up a new zone (or keeps the one of the previous configuration after a reload).
extern "C" fn zone_init(shm_zone: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    guard(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx passes the zone being initialised; `data` is our Zone (set in
        // zone_directive, alive as long as the configuration).
        let (shm, zone) = unsafe {
            let shm = &mut *shm_zone;
            let zone = &*shm.data.cast::<Zone>();
            (shm, zone)
        };
        // SAFETY: the zone's memory is mapped and holds an initialised slab pool.
        let Some(mut pool) = (unsafe { SlabPool::from_shm_zone(shm) }) else {
            return NGX_ERROR as ngx_int_t;
        };
        if !pool.as_ref().data.is_null() {
            // Reused across a reload: counters carry on.
            return NGX_OK as ngx_int_t;
        }
        let Ok(table) = Table::try_new_in(pool.clone()) else { return NGX_ERROR as ngx_int_t };
        let Ok(shared) = ngx::allocator::allocate(RwLock::new(table), &pool) else {
            return NGX_ERROR as ngx_int_t;
        };
        // The module logs a full zone itself, once.
        pool.as_mut().set_log_nomem(0);
        pool.as_mut().data = shared.as_ptr().cast();
        if let Some(path) = &zone.state_file {
            // SAFETY: just created above.
            load_state(zone, path, unsafe { shared.as_ref() }, shm.shm.log);
        }
        NGX_OK as ngx_int_t
    })
}

/* the state file */

fn load_state(zone: &Zone, path: &str, shared: &Shared, log: *mut ngx_log_t) {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            error!(
                log,
                "gpt_auth_quota_zone \"{}\": state \"{}\": {}",
                zone.name,
                path,
                io_reason(&e)
            );
            return;
        }
    };
    let entries = match quota::state_file::parse(&text) {
        Ok(e) => e,
        Err(e) => {
            error!(
                log,
                "gpt_auth_quota_zone \"{}\": state \"{}\": {}; starting from zero",
                zone.name,
                path,
                e
            );
            return;
        }
    };
    let mut table = shared.write();
    let alloc = table.allocator().clone();
    let mut loaded = 0;
    for (email, counters) in entries {
        let Ok(key) =
            NgxString::try_from_bytes_in(email.to_ascii_lowercase().as_bytes(), alloc.clone())
        else {
            break;
        };
        if table.try_insert(key, counters).is_err() {
            break;
        }
        loaded += 1;
    }
    notice!(
        log,
        "gpt_auth_quota_zone \"{}\": {} users loaded from \"{}\"",
        zone.name,
        loaded,
        path
    );
}

/// Writes the zone's counters to its state file (atomically: a temporary file renamed).
pub fn save_state(zone: &Zone, log: *mut ngx_log_t) {
    let Some(path) = &zone.state_file else { return };
    let month = zone.clock.periods(crate::ngx_ext::now()).month;
    let entries = entries(zone);
    let text = quota::state_file::write(
        entries.iter().filter(|(_, c)| c.month == month).map(|(e, c)| (e.as_str(), *c)),
    );
    let tmp = format!("{path}.{}.tmp", std::process::id());
    if let Err(e) = fs::write(&tmp, text).and_then(|_| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        error!(
            log,
            "gpt_auth_quota_zone \"{}\": cannot write state \"{}\": {}",
            zone.name,
            path,
            io_reason(&e)
        );
    }
}

/// In worker 0: saves each zone's state every `interval` seconds (and at exit).
pub fn start_state_timers(cycle: &ngx_cycle_t) {
    // SAFETY: reading nginx's worker number.
    if unsafe { nginx_sys::ngx_worker } != 0 {
        return;
    }
    let Some(mcf) = GptAuthModule::main_conf(cycle) else { return };
    for zone in mcf.quota_zones.iter().filter(|z| z.state_file.is_some()) {
        // SAFETY: an event allocated (zeroed) from the cycle pool, alive as long as the cycle;
        // cancelable, so a timer never delays a graceful shutdown.
        unsafe {
            let ev = nginx_sys::ngx_pcalloc(cycle.pool, core::mem::size_of::<ngx_event_t>())
                .cast::<ngx_event_t>();
            let Some(ev) = ev.as_mut() else { continue };
            ev.handler = Some(state_timer);
            ev.data = Rc::as_ptr(zone).cast_mut().cast();
            ev.log = cycle.log;
            ev.set_cancelable(1);
            nginx_sys::ngx_add_timer(ev, (zone.interval * 1000) as nginx_sys::ngx_msec_t);
        }
    }
}

extern "C" fn state_timer(ev: *mut ngx_event_t) {
    guard((), || {
        // SAFETY: our timer event; `data` is the zone, alive as long as the cycle.
        let ev = unsafe { &mut *ev };
        let zone = unsafe { &*ev.data.cast::<Zone>() };
        save_state(zone, ev.log);
        // SAFETY: nginx's shutdown flags.
        let stopping = unsafe { nginx_sys::ngx_exiting != 0 || nginx_sys::ngx_quit != 0 };
        if !stopping {
            // SAFETY: re-arming our own event.
            unsafe {
                nginx_sys::ngx_add_timer(ev, (zone.interval * 1000) as nginx_sys::ngx_msec_t)
            };
        }
    })
}

/// At worker exit (worker 0 only): a last save of every zone.
pub fn save_all(cycle: &ngx_cycle_t) {
    // SAFETY: reading nginx's worker number.
    if unsafe { nginx_sys::ngx_worker } != 0 {
        return;
    }
    if let Some(mcf) = GptAuthModule::main_conf(cycle) {
        for zone in &mcf.quota_zones {
            save_state(zone, cycle.log);
        }
    }
}

/// `gpt_auth_quota zone=NAME [day=N|unlimited] [month=N|unlimited] [methods=M,...]
/// [overrides=FILE]` or `gpt_auth_quota off`.
pub fn quota_directive(cf: &mut ngx_conf_t, lcf: &mut LocConf) -> Result<(), String> {
    if lcf.quota.is_some() {
        return Err("is duplicate".into());
    }
    let args: Vec<String> = conf_args(cf).iter().skip(1).map(|a| a.to_string()).collect();
    if args == ["off"] {
        lcf.quota = Some(None);
        return Ok(());
    }
    let (file, line) = crate::ngx_ext::conf_source(cf);
    let mut q = QuotaConf {
        zone_name: String::new(),
        source: crate::conf::Source { file, line },
        zone: OnceCell::new(),
        defaults: Limits { day: Limit::Unlimited, month: Limit::Unlimited },
        methods: 0,
        overrides: None,
    };
    for a in &args {
        let (k, v) = a.split_once('=').ok_or_else(|| format!("invalid parameter \"{a}\""))?;
        match k {
            "zone" => q.zone_name = v.to_owned(),
            "day" => q.defaults.day = Limit::parse(v).map_err(|e| format!("day=\"{v}\": {e}"))?,
            "month" => {
                q.defaults.month = Limit::parse(v).map_err(|e| format!("month=\"{v}\": {e}"))?
            }
            "methods" => {
                for m in v.split(',') {
                    q.methods |= method_bit(m).ok_or_else(|| format!("unknown method \"{m}\""))?;
                }
            }
            "overrides" => {
                let path = conf_full_path(cf, v.as_bytes()).ok_or("cannot resolve the path")?;
                q.overrides = Some(Rc::new(Watched::<Overrides>::load(&path)?));
            }
            _ => return Err(format!("invalid parameter \"{a}\"")),
        }
    }
    if q.zone_name.is_empty() {
        return Err("needs zone=NAME".into());
    }
    lcf.quota = Some(Some(Rc::new(q)));
    Ok(())
}

fn method_bit(m: &str) -> Option<ngx_uint_t> {
    Some(
        (match m.to_ascii_uppercase().as_str() {
            "GET" => nginx_sys::NGX_HTTP_GET,
            "HEAD" => nginx_sys::NGX_HTTP_HEAD,
            "POST" => nginx_sys::NGX_HTTP_POST,
            "PUT" => nginx_sys::NGX_HTTP_PUT,
            "DELETE" => nginx_sys::NGX_HTTP_DELETE,
            "PATCH" => nginx_sys::NGX_HTTP_PATCH,
            "OPTIONS" => nginx_sys::NGX_HTTP_OPTIONS,
            _ => return None,
        }) as ngx_uint_t,
    )
}

//! The state file of a zone: loaded when a new zone is created, written by worker 0 every
//! `interval` and when it exits (atomically: a temporary file renamed), so a restart does not
//! hand everyone a fresh budget.

use std::fs;

use gpt_auth_core::api_key;
use gpt_auth_core::quota::state_file;
use nginx_sys::{ngx_cycle_t, ngx_log_t};
use ngx::http::HttpModuleMainConf;

use super::zone::{self, Shared};
use crate::conf::Zone;
use crate::ngx::conf::io_reason;
use crate::ngx::time::{self, now, Timer};
use crate::GptAuthModule;

/// Loads the state file into a new zone.
pub fn load(zone: &Zone, shared: &Shared, log: *mut ngx_log_t) {
    let Some(path) = &zone.state_file else { return };
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            let why = io_reason(&e);
            error!(log, "gpt_auth_quota_zone \"{}\": state \"{}\" {}", zone.name, path, why);
            return;
        }
    };
    let entries = match state_file::parse(&text) {
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
    let loaded = zone::load(shared, entries, zone.redis.get().is_some());
    let records = text.lines().filter_map(api_key::parse_record).collect();
    let keys = super::keys::load(shared, records);
    notice!(
        log,
        "gpt_auth_quota_zone \"{}\": {} users and groups and {} API keys loaded from \"{}\"",
        zone.name,
        loaded,
        keys,
        path
    );
}

/// Writes the zone's counters of the current month to its state file.
pub fn save(zone: &Zone, log: *mut ngx_log_t) {
    let Some(path) = &zone.state_file else { return };
    let month = zone.clock.periods(now()).month;
    let entries = zone::shared(zone).map(zone::slots).unwrap_or_default();
    let mut text = state_file::write(
        entries.iter().filter(|(_, c, _)| c.month == month).map(|(k, c, s)| (k.as_slice(), *c, *s)),
    );
    for r in super::keys::list(zone, None) {
        text.push_str(&api_key::record_line(&r));
        text.push('\n');
    }
    let tmp = format!("{path}.{}.tmp", std::process::id());
    if let Err(e) = fs::write(&tmp, text).and_then(|_| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        let why = io_reason(&e);
        error!(
            log,
            "gpt_auth_quota_zone \"{}\": cannot write state \"{}\" {}", zone.name, path, why
        );
    }
}

/// In worker 0: saves each zone's state every `interval` seconds.
pub fn start_timers(cycle: &ngx_cycle_t) {
    if time::worker() != 0 {
        return;
    }
    let Some(mcf) = GptAuthModule::main_conf(cycle) else { return };
    for zone in mcf.quota_zones.iter().filter(|z| z.state_file.is_some()) {
        let data = std::rc::Rc::as_ptr(zone).cast_mut().cast();
        if let Some(mut t) = Timer::new(cycle.pool, cycle.log, save_timer, data) {
            t.arm(zone.interval);
        }
    }
}

ngx_entry! {
    /// Saves the zone (the timer's data) and re-arms itself unless the worker is stopping.
    timer fn save_timer(ev) {
        // SAFETY: the data set in `start_timers`: a zone of the configuration, alive as long as
        // the cycle whose pool holds the event.
        let Some(zone) = (unsafe { time::event_data::<Zone>(ev) }) else { return };
        save(zone, ev.log);
        if !time::stopping() {
            time::arm(ev, zone.interval);
        }
    }
}

/// At worker exit (worker 0 only): a last save of every zone.
pub fn save_all(cycle: &ngx_cycle_t) {
    if time::worker() != 0 {
        return;
    }
    if let Some(mcf) = GptAuthModule::main_conf(cycle) {
        for zone in &mcf.quota_zones {
            save(zone, cycle.log);
        }
    }
}

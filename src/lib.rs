//! gpt_auth: an nginx module that puts a company login in front of any location.
//!
//! Module wiring: the nginx module table, its configuration hooks, handler registration and
//! worker start-up. Where things are:
//!
//! | folder | what |
//! |---|---|
//! | [`ngx`] | the one layer with raw FFI, and `ngx_entry!`, the way nginx calls in |
//! | [`conf`] | configuration structures, merge, checks, the general and provider directives |
//! | [`gate`] | the access check on every request, and the variables naming the user |
//! | [`login`] | login page, callback, logout, the login flow and its provider fetches |
//! | [`quota`] | budgets: zones, charging, 429, report, administration, state file |
//! | [`usage`] | AI API control: model rules, the request read, the answer metered, settling |
//! | [`pages`] | the HTML pages and redirects |
//! | [`files`] | files re-read when they change (allowlists, overrides) |
//!
//! [`directives`] is the command table, [`variables`] the variable table.

#![deny(clippy::undocumented_unsafe_blocks)]

use core::ptr;

use nginx_sys::{
    ngx_http_module_t, ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_http_phases_NGX_HTTP_LOG_PHASE,
    ngx_module_t, ngx_uint_t, NGX_HTTP_MODULE,
};
// `::ngx` is the crate; `crate::ngx` (the FFI layer) is the module.
use ::ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf};

#[macro_use]
mod log;
#[macro_use]
mod ngx;

/// The module's Rust allocations: the C allocator, except in the Redis rounds (see the
/// `gpt-auth-arena` crate: their memory stays apart from the heap of nginx's pools).
#[global_allocator]
static ALLOC: gpt_auth_arena::ModuleAlloc = gpt_auth_arena::ModuleAlloc;

mod apikeys;
mod conf;
mod directives;
mod files;
mod gate;
mod login;
mod pages;
mod quota;
#[cfg(feature = "test-hooks")]
mod test_hooks;
mod usage;
mod variables;

use crate::conf::{LocConf, MainConf};
use crate::ngx::conf::{add_phase_handler_first, add_variables};

#[derive(Debug)]
pub struct GptAuthModule;

static MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(preconfiguration),
    postconfiguration: Some(postconfiguration),
    create_main_conf: Some(GptAuthModule::create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(GptAuthModule::create_loc_conf),
    merge_loc_conf: Some(merge_loc_conf),
};

// The `ngx_modules` table that makes the cdylib loadable with `load_module`.
#[cfg(feature = "export-modules")]
::ngx::ngx_modules!(ngx_http_gpt_auth_module);

#[used]
#[allow(non_upper_case_globals)]
#[cfg_attr(not(feature = "export-modules"), no_mangle)]
pub static mut ngx_http_gpt_auth_module: ngx_module_t = ngx_module_t {
    ctx: ptr::addr_of!(MODULE_CTX).cast_mut().cast(),
    // SAFETY: only the address of the static command table is taken.
    commands: unsafe { ptr::addr_of_mut!(directives::COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    init_process: Some(init_process),
    exit_process: Some(exit_process),
    ..ngx_module_t::default()
};

// SAFETY: the main configuration slot of this module holds a MainConf (created by the default
// `create_main_conf`).
unsafe impl HttpModuleMainConf for GptAuthModule {
    type MainConf = MainConf;
}

// SAFETY: the location configuration slot of this module holds a LocConf.
unsafe impl HttpModuleLocationConf for GptAuthModule {
    type LocationConf = LocConf;
}

impl HttpModule for GptAuthModule {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module table is only written by nginx while loading configuration.
        unsafe { &*ptr::addr_of!(ngx_http_gpt_auth_module) }
    }
}

ngx_entry! {
    /// Registers the variables.
    conf_hook fn preconfiguration(cf) {
        add_variables(cf, &variables::VARIABLES)
    }
}

ngx_entry! {
    /// Registers the access-phase handler and the header filter.
    conf_hook fn postconfiguration(cf) {
        // The locations are merged by now: what they use decides what is installed, so a
        // configuration without AI APIs (or budgets) pays nothing for them on any request.
        let (ai, quota) = GptAuthModule::main_conf(cf)
            .map_or((true, true), |m| (m.uses_ai.get(), !m.quota_zones.is_empty()));
        if let (Some(m), Some(clcf)) = (GptAuthModule::main_conf(cf), ::ngx::http::NgxHttpCoreModule::location_conf(cf)) {
            if let Err(e) = quota::cluster::bind_resolvers(&m.quota_zones, clcf) {
                ::ngx::ngx_conf_log_error!(nginx_sys::NGX_LOG_EMERG, cf, "{}", e);
                return false;
            }
        }
        crate::ngx::filter::install_header_filter(header_filter);
        if ai {
            crate::ngx::filter::install_body_filter(body_filter);
        }
        add_phase_handler_first(cf, ngx_http_phases_NGX_HTTP_ACCESS_PHASE, gate::access::access_handler)
            && (!(ai || quota) || add_phase_handler_first(cf, ngx_http_phases_NGX_HTTP_LOG_PHASE, log_handler))
    }
}

ngx_entry! {
    /// The log phase (before the access log is written): AI requests settled, then one-step
    /// budget charges of failed upstreams refunded. Installed only where there is work for it.
    handler fn log_handler(r) {
        // This configuration's (the request's) answer to what there is to do.
        if let Some(m) = GptAuthModule::main_conf(r) {
            if m.uses_ai.get() {
                usage::settle::on_log(r);
            }
            if !m.quota_zones.is_empty() {
                quota::charge::on_log(r);
            }
        }
        nginx_sys::NGX_DECLINED as nginx_sys::ngx_int_t
    }
}

ngx_entry! {
    /// The module's header filter: Cache-Control of protected responses, and how an AI answer
    /// is read.
    header_filter fn header_filter(r) {
        gate::cache::on_header(r);
        usage::filter::on_header(r);
    }
}

ngx_entry! {
    /// The module's body filter: AI answers read as they pass.
    body_filter fn body_filter(r, chain) {
        usage::filter::on_body(r, chain)
    }
}

ngx_entry! {
    /// A location inherits from the levels above, then is checked for `nginx -t`.
    merge fn merge_loc_conf(cf, prev, conf: LocConf) {
        conf.inherit_from(prev);
        let main = GptAuthModule::main_conf(cf).ok_or(crate::ngx::ConfError::NoHttp)?;
        conf.validate(cf, main)
    }
}

ngx_entry! {
    /// Worker start-up: route panics to the error log, warn about allowlists this worker's user
    /// cannot re-read, and start saving quota counters.
    init_process fn init_process(cycle) {
        std::panic::set_hook(Box::new(log::panic_hook));
        if let Some(mcf) = GptAuthModule::main_conf(cycle) {
            for list in &mcf.allowlists {
                list.check_readable(cycle.log);
            }
            for list in &mcf.revocation_lists {
                list.check_readable(cycle.log);
            }
        }
        quota::state::start_timers(cycle);
        quota::cluster::start(cycle);
    }
}

ngx_entry! {
    /// Worker exit: the last save of the quota counters.
    exit_process fn exit_process(cycle) {
        quota::cluster::at_exit();
        quota::state::save_all(cycle);
    }
}

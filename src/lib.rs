//! gpt_auth: an nginx module that puts a company login in front of any location.
//!
//! Module wiring: the nginx module table, configuration hooks, handler registration and worker
//! start-up. Directives are in `directives`, configuration in `conf`, the access check in
//! `access`, variables in `variables`; raw FFI is kept in `ngx_ext`.

use core::ffi::{c_char, c_void};
use core::ptr;

use nginx_sys::{
    ngx_conf_t, ngx_cycle_t, ngx_http_handler_pt, ngx_http_module_t,
    ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_int_t, ngx_module_t, ngx_uint_t, NGX_ERROR,
    NGX_HTTP_MODULE, NGX_OK,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};

#[macro_use]
mod log;

mod access;
mod budget;
mod conf;
mod ctx;
mod directives;
mod fetch;
mod flow;
mod handlers;
mod login_state;
mod ngx_ext;
mod pages;
mod provider;
mod quota;
mod random;
#[cfg(feature = "test-hooks")]
mod test_hooks;
mod variables;
mod watch;

use crate::conf::{LocConf, MainConf};
use crate::ngx_ext::guard;

#[derive(Debug)]
pub struct GptAuthModule;

static MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(GptAuthModule::preconfiguration),
    postconfiguration: Some(GptAuthModule::postconfiguration),
    create_main_conf: Some(GptAuthModule::create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(GptAuthModule::create_loc_conf),
    merge_loc_conf: Some(GptAuthModule::merge_loc_conf),
};

// The `ngx_modules` table that makes the cdylib loadable with `load_module`.
#[cfg(feature = "export-modules")]
ngx::ngx_modules!(ngx_http_gpt_auth_module);

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

unsafe impl HttpModuleMainConf for GptAuthModule {
    type MainConf = MainConf;
}

unsafe impl HttpModuleLocationConf for GptAuthModule {
    type LocationConf = LocConf;
}

impl HttpModule for GptAuthModule {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module table is only written by nginx while loading configuration.
        unsafe { &*ptr::addr_of!(ngx_http_gpt_auth_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        guard(NGX_ERROR as ngx_int_t, || {
            // SAFETY: the variable table is static; nginx copies what it needs.
            for v in unsafe { (*ptr::addr_of_mut!(variables::VARIABLES)).iter_mut() } {
                let var = unsafe { nginx_sys::ngx_http_add_variable(cf, &mut v.name, v.flags) };
                // SAFETY: ngx_http_add_variable returns NULL or a variable slot to fill.
                let Some(var) = (unsafe { var.as_mut() }) else { return NGX_ERROR as ngx_int_t };
                var.get_handler = v.get_handler;
                var.data = v.data;
            }
            NGX_OK as ngx_int_t
        })
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        guard(NGX_ERROR as ngx_int_t, || {
            // SAFETY: nginx passes a valid configuration.
            let cf = unsafe { &mut *cf };
            let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(cf) else {
                return NGX_ERROR as ngx_int_t;
            };
            let handlers =
                &mut cmcf.phases[ngx_http_phases_NGX_HTTP_ACCESS_PHASE as usize].handlers;
            // nginx runs a phase's handlers from the last registered to the first. Registering
            // at the front makes the session check run after allow/deny, auth_basic and
            // auth_request: under `satisfy any` they get to grant access first, and only then
            // does an unauthenticated browser get redirected to the login page.
            // SAFETY: `handlers` is an ngx_array_t of ngx_http_handler_pt.
            unsafe {
                if nginx_sys::ngx_array_push(handlers).is_null() {
                    return NGX_ERROR as ngx_int_t;
                }
                let slots = handlers.as_slice_mut::<ngx_http_handler_pt>();
                slots.rotate_right(1);
                slots[0] = Some(access::access_handler);
            }
            NGX_OK as ngx_int_t
        })
    }

    unsafe extern "C" fn merge_loc_conf(
        cf: *mut ngx_conf_t,
        prev: *mut c_void,
        conf: *mut c_void,
    ) -> *mut c_char {
        guard(NGX_CONF_ERROR, || {
            // SAFETY: nginx passes the enclosing and the current location configurations.
            let (cf, prev, conf) =
                unsafe { (&*cf, &*prev.cast::<LocConf>(), &mut *conf.cast::<LocConf>()) };
            conf.inherit_from(prev);
            let Some(main) = GptAuthModule::main_conf(cf) else { return NGX_CONF_ERROR };
            match conf.validate(cf, main) {
                Ok(()) => NGX_CONF_OK,
                Err(()) => NGX_CONF_ERROR,
            }
        })
    }
}

/// Worker start-up: route panics to the error log, warn about allowlists this worker's user
/// cannot re-read, and start saving quota counters.
extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    guard(NGX_OK as ngx_int_t, || {
        std::panic::set_hook(Box::new(|info| {
            let log = ngx::log::ngx_cycle_log().as_ptr();
            let what = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let place = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
            alert!(
                log,
                "internal error (Rust panic, request answered with 500): {} at {}",
                what.replace('\n', " "),
                place.unwrap_or_default()
            );
        }));
        // SAFETY: nginx passes the live cycle.
        let cycle = unsafe { &*cycle };
        if let Some(mcf) = GptAuthModule::main_conf(cycle) {
            for list in &mcf.allowlists {
                list.check_readable(cycle.log);
            }
        }
        quota::start_state_timers(cycle);
        NGX_OK as ngx_int_t
    })
}

/// Worker exit: the last save of the quota counters.
extern "C" fn exit_process(cycle: *mut ngx_cycle_t) {
    guard((), || {
        // SAFETY: nginx passes the live cycle.
        quota::save_all(unsafe { &*cycle });
    })
}

//! Every C entry point of the module goes through [`ngx_entry!`]: nginx calls an `extern "C"`
//! function, the macro turns its raw pointers into references, runs the body under
//! `catch_unwind` (a panic never unwinds into nginx: it is logged by the hook installed at worker
//! start and mapped to an error the caller understands) and maps the body's result to what nginx
//! expects.
//!
//! | kind | nginx calls it as | the body gets | and returns |
//! |---|---|---|---|
//! | `handler` | phase or content handler | `&mut Request` | `ngx_int_t` (500 on panic) |
//! | `event` | request body handler, write event handler | `&mut Request` | nothing |
//! | `post_subrequest` | `ngx_http_post_subrequest_t` handler | the subrequest, `rc` | `ngx_int_t` (`rc` on panic) |
//! | `variable` | variable getter | `&Request` | `Option<&[u8]>`: value or not found (error on panic) |
//! | `directive` | directive handler | `&mut ngx_conf_t`, the module's conf | `Result<(), ConfError>`, logged as `"name" directive reason` |
//! | `block_directive` | handler inside a `{ }` block of ours | the same | logged as `"name" reason` |
//! | `header_filter` | a header filter | `&mut Request`, may change headers | nothing: the next filter is called (`NGX_ERROR` on panic) |
//! | `body_filter` | a body filter | `&mut Request`, the chain | `ngx_int_t` (the body calls the next filter; `NGX_ERROR` on panic) |
//! | `conf_hook` | `preconfiguration`, `postconfiguration` | `&mut ngx_conf_t` | `bool` (false: `NGX_ERROR`) |
//! | `merge` | `merge_loc_conf` | `&ngx_conf_t`, the enclosing and the current conf | `Result<(), ConfError>`, logged at `emerg` |
//! | `shm_init` | shared zone init | `&mut ngx_shm_zone_t`, whether reused | `Result<(), ()>` |
//! | `timer` | timer event handler | `&mut ngx_event_t` | nothing |
//! | `resolver` | resolver handler (`ctx->handler`) | `&mut ngx_resolver_ctx_t` | nothing |
//! | `connection` | connection handler (`c->ssl->handler` after a TLS handshake) | `&mut ngx_connection_t` | nothing |
//! | `cycle` | module `init_process`/`exit_process` | `&ngx_cycle_t` | nothing (init: `NGX_OK` even on panic) |
//!
//! The helpers below are public only for the macro.

use core::ffi::{c_char, c_void};
use core::panic::AssertUnwindSafe;

use nginx_sys::{
    ngx_conf_t, ngx_cycle_t, ngx_event_t, ngx_http_request_t, ngx_int_t, ngx_shm_zone_t,
    ngx_variable_value_t, NGX_ERROR, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_OK,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::Request;

use super::conf::{ConfError, NgxConfExt};

/// Runs `f`, turning a panic into `on_panic`.
#[inline]
pub fn guard<R>(on_panic: R, f: impl FnOnce() -> R) -> R {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

/// # Safety
/// `r` is NULL or a live request, as nginx passes to its handlers.
unsafe fn request<'r>(r: *mut ngx_http_request_t) -> Option<&'r mut Request> {
    // SAFETY: by the caller's contract; `Request` is `repr(transparent)` over the C struct.
    (!r.is_null()).then(|| unsafe { Request::from_ngx_http_request(r) })
}

const INTERNAL_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;

#[doc(hidden)]
#[inline]
pub fn handler(r: *mut ngx_http_request_t, f: impl FnOnce(&mut Request) -> ngx_int_t) -> ngx_int_t {
    guard(INTERNAL_ERROR, || {
        // SAFETY: nginx calls phase and content handlers with a live request.
        match unsafe { request(r) } {
            Some(r) => f(r),
            None => NGX_ERROR as ngx_int_t,
        }
    })
}

/// A panic in an event handler is logged and otherwise ignored: whether the body had already
/// finalized the request is unknown, and finalizing it twice would be worse than leaving it to
/// nginx's timeouts.
#[doc(hidden)]
pub fn event(r: *mut ngx_http_request_t, f: impl FnOnce(&mut Request)) {
    guard((), || {
        // SAFETY: nginx calls request event handlers with a live request.
        if let Some(r) = unsafe { request(r) } {
            f(r);
        }
    })
}

#[doc(hidden)]
pub fn post_subrequest(
    sr: *mut ngx_http_request_t,
    rc: ngx_int_t,
    f: impl FnOnce(&mut Request, ngx_int_t) -> ngx_int_t,
) -> ngx_int_t {
    guard(rc, || {
        // SAFETY: nginx calls post-subrequest handlers with the finishing subrequest.
        match unsafe { request(sr) } {
            Some(sr) => f(sr, rc),
            None => rc,
        }
    })
}

#[doc(hidden)]
pub fn variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    f: impl for<'r> FnOnce(&'r Request) -> Option<&'r [u8]>,
) -> ngx_int_t {
    guard(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx calls getters with a live request and a value to fill.
        let (Some(r), Some(v)) = (unsafe { request(r) }, unsafe { v.as_mut() }) else {
            return NGX_ERROR as ngx_int_t;
        };
        match f(r) {
            Some(bytes) => super::request::set_variable(v, bytes),
            None => v.set_not_found(1),
        }
        NGX_OK as ngx_int_t
    })
}

/// How a directive error is worded: nginx's `"name" directive reason`, or `"name" reason`
/// inside our own blocks.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub enum Wording {
    Directive,
    Block,
}

#[doc(hidden)]
pub fn directive<T>(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    wording: Wording,
    f: impl FnOnce(&mut ngx_conf_t, &mut T) -> Result<(), ConfError>,
) -> *mut c_char {
    guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx passes the configuration being parsed and the slot its command entry
        // names (`conf`/`offset`, or the block's `handler_conf`), which the macro's caller
        // declares as `T`.
        let (Some(cf), Some(conf)) = (unsafe { cf.as_mut() }, unsafe { conf.cast::<T>().as_mut() })
        else {
            return NGX_CONF_ERROR;
        };
        // Taken first: a block directive's `args` are reused while its block is parsed.
        let name = cf.args().first().map(|a| a.to_string()).unwrap_or_default();
        match f(cf, conf) {
            Ok(()) => NGX_CONF_OK,
            Err(ConfError::Logged) => NGX_CONF_ERROR,
            Err(e) => {
                match wording {
                    Wording::Directive => cf.emerg(format_args!("\"{name}\" directive {e}")),
                    Wording::Block => cf.emerg(format_args!("\"{name}\" {e}")),
                }
                NGX_CONF_ERROR
            }
        }
    })
}

#[doc(hidden)]
pub fn header_filter(r: *mut ngx_http_request_t, f: impl FnOnce(&mut Request)) -> ngx_int_t {
    let ok = guard(false, || {
        // SAFETY: nginx calls header filters with a live request.
        if let Some(r) = unsafe { request(r) } {
            f(r);
        }
        true
    });
    if ok {
        super::filter::next_header_filter(r)
    } else {
        NGX_ERROR as ngx_int_t
    }
}

#[doc(hidden)]
pub fn body_filter(
    r: *mut ngx_http_request_t,
    chain: *mut nginx_sys::ngx_chain_t,
    f: impl FnOnce(&mut Request, super::filter::Chain) -> ngx_int_t,
) -> ngx_int_t {
    guard(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx calls body filters with a live request and its chain (or NULL).
        match unsafe { request(r) } {
            Some(r) => f(r, super::filter::Chain(chain)),
            None => NGX_ERROR as ngx_int_t,
        }
    })
}

#[doc(hidden)]
pub fn conf_hook(cf: *mut ngx_conf_t, f: impl FnOnce(&mut ngx_conf_t) -> bool) -> ngx_int_t {
    guard(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx passes the configuration being parsed.
        match unsafe { cf.as_mut() }.map(f) {
            Some(true) => NGX_OK as ngx_int_t,
            _ => NGX_ERROR as ngx_int_t,
        }
    })
}

#[doc(hidden)]
pub fn merge<T>(
    cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
    f: impl FnOnce(&ngx_conf_t, &T, &mut T) -> Result<(), ConfError>,
) -> *mut c_char {
    guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx passes the configuration and this module's configurations of the
        // enclosing and the current level, which the macro's caller declares as `T`.
        let (Some(cf), Some(prev), Some(conf)) =
            (unsafe { cf.as_ref() }, unsafe { prev.cast::<T>().as_ref() }, unsafe {
                conf.cast::<T>().as_mut()
            })
        else {
            return NGX_CONF_ERROR;
        };
        match f(cf, prev, conf) {
            Ok(()) => NGX_CONF_OK,
            Err(ConfError::Logged) => NGX_CONF_ERROR,
            Err(e) => {
                ::ngx::ngx_log_error!(nginx_sys::NGX_LOG_EMERG, cf.log, "gpt_auth: {}", e);
                NGX_CONF_ERROR
            }
        }
    })
}

#[doc(hidden)]
pub fn shm_init(
    zone: *mut ngx_shm_zone_t,
    old: *mut c_void,
    f: impl FnOnce(&mut ngx_shm_zone_t, bool) -> Result<(), ()>,
) -> ngx_int_t {
    guard(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx passes the zone being initialised.
        let Some(zone) = (unsafe { zone.as_mut() }) else { return NGX_ERROR as ngx_int_t };
        match f(zone, !old.is_null()) {
            Ok(()) => NGX_OK as ngx_int_t,
            Err(()) => NGX_ERROR as ngx_int_t,
        }
    })
}

#[doc(hidden)]
pub fn timer(ev: *mut ngx_event_t, f: impl FnOnce(&mut ngx_event_t)) {
    guard((), || {
        // SAFETY: nginx calls a timer handler with its event.
        if let Some(ev) = unsafe { ev.as_mut() } {
            f(ev)
        }
    })
}

#[doc(hidden)]
pub fn resolver(
    ctx: *mut nginx_sys::ngx_resolver_ctx_t,
    f: impl FnOnce(&mut nginx_sys::ngx_resolver_ctx_t),
) {
    guard((), || {
        // SAFETY: nginx calls a resolver handler with its live context.
        if let Some(ctx) = unsafe { ctx.as_mut() } {
            f(ctx)
        }
    })
}

#[doc(hidden)]
pub fn connection(
    c: *mut nginx_sys::ngx_connection_t,
    f: impl FnOnce(&mut nginx_sys::ngx_connection_t),
) {
    guard((), || {
        // SAFETY: nginx calls a connection handler with its live connection.
        if let Some(c) = unsafe { c.as_mut() } {
            f(c)
        }
    })
}

#[doc(hidden)]
pub fn cycle(cycle: *mut ngx_cycle_t, f: impl FnOnce(&ngx_cycle_t)) {
    guard((), || {
        // SAFETY: nginx passes the live cycle to init_process and exit_process.
        if let Some(cycle) = unsafe { cycle.as_ref() } {
            f(cycle)
        }
    })
}

/// Defines one C entry point; see the module documentation for the kinds.
macro_rules! ngx_entry {
    ($(#[$m:meta])* $vis:vis handler fn $name:ident($r:ident) $body:block) => {
        $(#[$m])*
        $vis extern "C" fn $name(r: *mut nginx_sys::ngx_http_request_t) -> nginx_sys::ngx_int_t {
            $crate::ngx::entry::handler(r, |$r| $body)
        }
    };
    ($(#[$m:meta])* $vis:vis event fn $name:ident($r:ident) $body:block) => {
        $(#[$m])*
        $vis extern "C" fn $name(r: *mut nginx_sys::ngx_http_request_t) {
            $crate::ngx::entry::event(r, |$r| $body)
        }
    };
    ($(#[$m:meta])* $vis:vis post_subrequest fn $name:ident($sr:ident, $rc:ident) $body:block) => {
        $(#[$m])*
        $vis unsafe extern "C" fn $name(
            sr: *mut nginx_sys::ngx_http_request_t,
            _data: *mut core::ffi::c_void,
            rc: nginx_sys::ngx_int_t,
        ) -> nginx_sys::ngx_int_t {
            $crate::ngx::entry::post_subrequest(
                sr,
                rc,
                |$sr, $rc| $body,
            )
        }
    };
    ($(#[$m:meta])* $vis:vis variable fn $name:ident($r:ident) $body:block) => {
        $(#[$m])*
        $vis unsafe extern "C" fn $name(
            r: *mut nginx_sys::ngx_http_request_t,
            v: *mut nginx_sys::ngx_variable_value_t,
            _data: usize,
        ) -> nginx_sys::ngx_int_t {
            $crate::ngx::entry::variable(r, v, |$r| $body)
        }
    };
    ($(#[$m:meta])* $vis:vis directive fn $name:ident($cf:pat_param, $conf:ident: $T:ty) $body:block) => {
        ngx_entry!(@directive Directive, $(#[$m])* $vis $name, _cmd, $cf, $conf, $T, $body);
    };
    ($(#[$m:meta])* $vis:vis directive fn $name:ident($cf:pat_param, $conf:ident: $T:ty, $cmd:ident) $body:block) => {
        ngx_entry!(@directive Directive, $(#[$m])* $vis $name, $cmd, $cf, $conf, $T, $body);
    };
    ($(#[$m:meta])* $vis:vis block_directive fn $name:ident($cf:pat_param, $conf:ident: $T:ty) $body:block) => {
        ngx_entry!(@directive Block, $(#[$m])* $vis $name, _cmd, $cf, $conf, $T, $body);
    };
    (@directive $wording:ident, $(#[$m:meta])* $vis:vis $name:ident, $cmd:ident, $cf:pat_param, $conf:ident, $T:ty, $body:block) => {
        $(#[$m])*
        $vis extern "C" fn $name(
            cf: *mut nginx_sys::ngx_conf_t,
            $cmd: *mut nginx_sys::ngx_command_t,
            conf: *mut core::ffi::c_void,
        ) -> *mut core::ffi::c_char {
            $crate::ngx::entry::directive::<$T>(
                cf,
                conf,
                $crate::ngx::entry::Wording::$wording,
                |$cf, $conf| $body,
            )
        }
    };
    ($(#[$m:meta])* $vis:vis header_filter fn $name:ident($r:ident) $body:block) => {
        $(#[$m])*
        $vis unsafe extern "C" fn $name(r: *mut nginx_sys::ngx_http_request_t) -> nginx_sys::ngx_int_t {
            $crate::ngx::entry::header_filter(r, |$r| $body)
        }
    };
    ($(#[$m:meta])* $vis:vis body_filter fn $name:ident($r:ident, $chain:ident) $body:block) => {
        $(#[$m])*
        $vis unsafe extern "C" fn $name(
            r: *mut nginx_sys::ngx_http_request_t,
            chain: *mut nginx_sys::ngx_chain_t,
        ) -> nginx_sys::ngx_int_t {
            $crate::ngx::entry::body_filter(r, chain, |$r, $chain| $body)
        }
    };
    ($(#[$m:meta])* $vis:vis conf_hook fn $name:ident($cf:ident) $body:block) => {
        $(#[$m])*
        $vis unsafe extern "C" fn $name(cf: *mut nginx_sys::ngx_conf_t) -> nginx_sys::ngx_int_t {
            $crate::ngx::entry::conf_hook(cf, |$cf| $body)
        }
    };
    ($(#[$m:meta])* $vis:vis merge fn $name:ident($cf:pat_param, $prev:ident, $conf:ident: $T:ty) $body:block) => {
        $(#[$m])*
        $vis unsafe extern "C" fn $name(
            cf: *mut nginx_sys::ngx_conf_t,
            prev: *mut core::ffi::c_void,
            conf: *mut core::ffi::c_void,
        ) -> *mut core::ffi::c_char {
            $crate::ngx::entry::merge::<$T>(cf, prev, conf, |$cf, $prev, $conf| $body)
        }
    };
    ($(#[$m:meta])* $vis:vis shm_init fn $name:ident($zone:ident, $reused:ident) $body:block) => {
        $(#[$m])*
        $vis extern "C" fn $name(
            zone: *mut nginx_sys::ngx_shm_zone_t,
            old: *mut core::ffi::c_void,
        ) -> nginx_sys::ngx_int_t {
            $crate::ngx::entry::shm_init(
                zone,
                old,
                |$zone, $reused| $body,
            )
        }
    };
    ($(#[$m:meta])* $vis:vis timer fn $name:ident($ev:ident) $body:block) => {
        $(#[$m])*
        $vis extern "C" fn $name(ev: *mut nginx_sys::ngx_event_t) {
            $crate::ngx::entry::timer(ev, |$ev| $body)
        }
    };
    ($(#[$m:meta])* $vis:vis resolver fn $name:ident($ctx:ident) $body:block) => {
        $(#[$m])*
        $vis extern "C" fn $name(ctx: *mut nginx_sys::ngx_resolver_ctx_t) {
            $crate::ngx::entry::resolver(ctx, |$ctx| $body)
        }
    };
    ($(#[$m:meta])* $vis:vis connection fn $name:ident($c:ident) $body:block) => {
        $(#[$m])*
        $vis extern "C" fn $name(c: *mut nginx_sys::ngx_connection_t) {
            $crate::ngx::entry::connection(c, |$c| $body)
        }
    };
    ($(#[$m:meta])* $vis:vis init_process fn $name:ident($cycle:ident) $body:block) => {
        $(#[$m])*
        $vis extern "C" fn $name(cycle: *mut nginx_sys::ngx_cycle_t) -> nginx_sys::ngx_int_t {
            $crate::ngx::entry::cycle(cycle, |$cycle| $body);
            nginx_sys::NGX_OK as nginx_sys::ngx_int_t
        }
    };
    ($(#[$m:meta])* $vis:vis exit_process fn $name:ident($cycle:ident) $body:block) => {
        $(#[$m])*
        $vis extern "C" fn $name(cycle: *mut nginx_sys::ngx_cycle_t) {
            $crate::ngx::entry::cycle(cycle, |$cycle| $body)
        }
    };
}

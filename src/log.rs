//! Logging macros. Every line the module writes starts with `gpt_auth: ` so that operators can
//! grep for it; nginx appends the client, server and request to request-bound lines.
//!
//! Never log a key, a whole cookie or a whole token: log reasons, key ids and addresses.

use nginx_sys::{ngx_conf_t, ngx_cycle_t, ngx_event_t, ngx_log_t};

/// Anything that carries an nginx log.
pub trait AsLogPtr {
    fn as_log_ptr(&self) -> *mut ngx_log_t;
}

impl AsLogPtr for *mut ngx_log_t {
    /// A null log (a caller with no request at hand) is the cycle's log: nginx's macros would
    /// dereference it.
    fn as_log_ptr(&self) -> *mut ngx_log_t {
        if self.is_null() {
            crate::ngx::cycle_log()
        } else {
            *self
        }
    }
}

impl AsLogPtr for ngx_conf_t {
    fn as_log_ptr(&self) -> *mut ngx_log_t {
        self.log
    }
}

impl AsLogPtr for ngx_cycle_t {
    fn as_log_ptr(&self) -> *mut ngx_log_t {
        self.log
    }
}

impl AsLogPtr for ngx_event_t {
    fn as_log_ptr(&self) -> *mut ngx_log_t {
        self.log
    }
}

impl AsLogPtr for ::ngx::http::Request {
    fn as_log_ptr(&self) -> *mut ngx_log_t {
        self.log()
    }
}

impl<T: AsLogPtr + ?Sized> AsLogPtr for &T {
    fn as_log_ptr(&self) -> *mut ngx_log_t {
        T::as_log_ptr(self)
    }
}

impl<T: AsLogPtr + ?Sized> AsLogPtr for &mut T {
    fn as_log_ptr(&self) -> *mut ngx_log_t {
        T::as_log_ptr(self)
    }
}

#[inline(always)]
pub fn as_log_ptr(x: impl AsLogPtr) -> *mut ngx_log_t {
    x.as_log_ptr()
}

macro_rules! log_at {
    ( $level:expr, $log:expr, $($arg:tt)+ ) => {{
        ::ngx::ngx_log_error!(
            $level,
            $crate::log::as_log_ptr(&$log),
            "gpt_auth: {}",
            format_args!($($arg)+)
        );
    }};
}

macro_rules! alert {
    ( $log:expr, $($arg:tt)+ ) => { log_at!(nginx_sys::NGX_LOG_ALERT, $log, $($arg)+) };
}

macro_rules! error {
    ( $log:expr, $($arg:tt)+ ) => { log_at!(nginx_sys::NGX_LOG_ERR, $log, $($arg)+) };
}

macro_rules! warn {
    ( $log:expr, $($arg:tt)+ ) => { log_at!(nginx_sys::NGX_LOG_WARN, $log, $($arg)+) };
}

macro_rules! notice {
    ( $log:expr, $($arg:tt)+ ) => { log_at!(nginx_sys::NGX_LOG_NOTICE, $log, $($arg)+) };
}

macro_rules! info {
    ( $log:expr, $($arg:tt)+ ) => { log_at!(nginx_sys::NGX_LOG_INFO, $log, $($arg)+) };
}

/// Debug trace (only with an nginx built `--with-debug` and `error_log ... debug`).
macro_rules! debug {
    ( $log:expr, $($arg:tt)+ ) => {{
        ::ngx::ngx_log_debug!(
            mask: ::ngx::log::DebugMask::Http,
            $crate::log::as_log_ptr(&$log),
            "gpt_auth: {}",
            format_args!($($arg)+)
        );
    }};
}

/// The panic hook installed at worker start: one `[alert]` line saying what and where (the
/// entry point that caught the panic then answers 500 or the like).
pub fn panic_hook(info: &std::panic::PanicHookInfo<'_>) {
    let log = ::ngx::log::ngx_cycle_log().as_ptr();
    let what = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let place = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
    alert!(
        log,
        "internal error (Rust panic, request answered with 500): {} at {}",
        what.replace('\n', " "),
        place
    );
}

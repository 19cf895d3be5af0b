//! Logging macros. Every line the module writes starts with `gpt_auth: ` so that operators can
//! grep for it; nginx appends the client, server and request to request-bound lines.
//!
//! Never log a key, a whole cookie or a whole token: log reasons, key ids and addresses.

use nginx_sys::ngx_log_t;

/// Anything that carries an nginx log.
pub trait AsLogPtr {
    fn as_log_ptr(&self) -> *mut ngx_log_t;
}

impl AsLogPtr for *mut ngx_log_t {
    fn as_log_ptr(&self) -> *mut ngx_log_t {
        *self
    }
}

impl AsLogPtr for nginx_sys::ngx_conf_t {
    fn as_log_ptr(&self) -> *mut ngx_log_t {
        self.log
    }
}

impl AsLogPtr for nginx_sys::ngx_http_request_t {
    fn as_log_ptr(&self) -> *mut ngx_log_t {
        // SAFETY: a live request always has a live connection with a log.
        unsafe { (*self.connection).log }
    }
}

impl<T: AsLogPtr> AsLogPtr for &T {
    fn as_log_ptr(&self) -> *mut ngx_log_t {
        T::as_log_ptr(self)
    }
}

impl<T: AsLogPtr> AsLogPtr for &mut T {
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
        ngx::ngx_log_error!(
            $level,
            $crate::log::as_log_ptr(&$log),
            "gpt_auth: {}",
            format_args!($($arg)+)
        );
    }};
}

macro_rules! emerg {
    ( $log:expr, $($arg:tt)+ ) => { log_at!(nginx_sys::NGX_LOG_EMERG, $log, $($arg)+) };
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
        ngx::ngx_log_debug!(
            mask: ngx::log::DebugMask::Http,
            $crate::log::as_log_ptr(&$log),
            "gpt_auth: {}",
            format_args!($($arg)+)
        );
    }};
}

/// Logs with the configuration file and line appended, for directive errors.
macro_rules! conf_emerg {
    ( $cf:expr, $($arg:tt)+ ) => {{
        let cf: *mut nginx_sys::ngx_conf_t = $cf;
        ngx::ngx_conf_log_error!(nginx_sys::NGX_LOG_EMERG, cf, $($arg)+);
    }};
}

/// An I/O error as nginx words them: the system's message, without Rust's "(os error N)".
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

//! The one layer with raw nginx FFI. Everything the module asks of nginx goes through these
//! small safe functions and traits, built on what the `ngx` crate (0.5.1) provides; where this
//! layer has its own version of something the crate has, a comment says why.
//!
//! - [`entry`]: `ngx_entry!`, the one way nginx calls into the module;
//! - [`conf`]: directive arguments, paths, blocks, shared zones, [`conf::ConfError`];
//! - [`request`]: reading requests ([`request::RequestExt`]);
//! - [`response`]: answering, finalizing, suspending;
//! - [`filter`]: the module's output filters;
//! - [`body`]: reading request bodies; [`subrequest`]: in-memory subrequests;
//! - [`pool`]: values that live as long as a request; [`shm`]: shared zones;
//! - [`peer`]: short client conversations (Redis) through the event loop;
//! - [`time`]: the clock, worker state and timers.

#[macro_use]
pub mod entry;
pub mod body;
pub mod conf;
pub mod filter;
pub mod peer;
pub mod pool;
pub mod request;
pub mod response;
pub mod shm;
pub mod subrequest;
pub mod time;

pub use conf::{ConfError, NgxConfExt, Source};
pub use request::RequestExt;

/// The running cycle's log (for lines with no request or configuration at hand).
pub fn cycle_log() -> *mut nginx_sys::ngx_log_t {
    // SAFETY: `ngx_cycle` is set before any module code runs and points to the running cycle
    // (read only here; nginx replaces it between events, never during one).
    unsafe { nginx_sys::ngx_cycle.as_ref().map_or(core::ptr::null_mut(), |c| c.log) }
}

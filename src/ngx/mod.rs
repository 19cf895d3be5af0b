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
//! - [`time`]: the clock, worker state and timers.

#[macro_use]
pub mod entry;
pub mod body;
pub mod conf;
pub mod filter;
pub mod pool;
pub mod request;
pub mod response;
pub mod shm;
pub mod subrequest;
pub mod time;

pub use conf::{ConfError, NgxConfExt, Source};
pub use request::RequestExt;

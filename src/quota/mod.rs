//! Per-user budgets: the counters in shared memory ([`zone`]), charging a request in the
//! access phase and the 429 answer ([`charge`]), the usage report ([`report`]), the state file
//! that carries counters across restarts ([`state`]) and the directives ([`directives`]).
//! The counting rules themselves are pure code in `gpt_auth_core::quota`.

pub mod charge;
pub mod directives;
pub mod report;
pub mod state;
pub mod zone;

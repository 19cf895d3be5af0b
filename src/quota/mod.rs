//! Budgets: the counters in shared memory ([`zone`]), charging a request and settling it
//! ([`charge`]), the 429 answer ([`refuse`]), warnings ([`warn`]), the usage report
//! ([`report`]) and administration ([`admin`]), the state file that carries counters across
//! restarts ([`state`]), zones shared through Redis ([`cluster`]), the variables
//! ([`variables`]) and the directives ([`directives`]).
//! The counting rules themselves are pure code in `gpt_auth_core::quota`.

pub mod admin;
pub mod charge;
pub mod cluster;
pub mod directives;
pub mod keys;
pub mod refuse;
pub mod report;
pub mod state;
pub mod variables;
pub mod warn;
pub mod zone;

//! The gate: the access-phase check on every request to a location with `gpt_auth on` (a valid
//! signed session, a user on the location's allowlist, a budget left), its answers, and the
//! variables that tell who the user is. [`verdict`] decides, [`access`] answers,
//! [`variables`] exposes, [`cache`] keeps protected responses out of shared caches.

pub mod access;
pub mod cache;
pub mod variables;
pub mod verdict;

pub use verdict::Outcome;

//! AI API control: who may use which model ([`models`]), the request read before it is let
//! through ([`access`]), the answer read as it passes ([`filter`]) into the request's
//! [`exchange`], and the true usage settled against the budgets ([`settle`]); variables for
//! audit lines ([`variables`]); the directives ([`directives`]). The parsers (request bodies,
//! event streams, usage, prices) are in `gpt_auth_core::usage`.

pub mod access;
pub mod directives;
pub mod exchange;
pub mod filter;
pub mod models;
pub mod settle;
pub mod variables;

//! Personal API keys for scripts and tools: the page where a signed-in user creates, lists and
//! revokes them ([`page`], `gpt_auth_api_keys`) and the directives ([`directives`]). The keys'
//! codec is `gpt_auth_core::api_key`; their records live in the quota zone
//! (`crate::quota::keys`); requests that carry one are checked with the session in
//! `crate::gate::verdict` (`gpt_auth_bearer`).

pub mod directives;
pub mod page;

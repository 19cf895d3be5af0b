//! gpt_auth's pure logic, free of nginx types so that it is unit-tested and fuzzed on its own:
//! the session cookie codec and key ring, `Cookie` header scanning, allowlists, nginx time
//! values, the browser-navigation test and URL helpers; and the login's logic: OpenID Connect
//! discovery, key sets and ID token verification, the token response, PKCE, the signed
//! login-state cookie and the return-address policy.
//!
//! No I/O and no clock here: callers pass the current time and random bytes in.
#![forbid(unsafe_code)]

pub mod allowlist;
pub mod api_key;
pub mod cache_control;
pub mod cookie_header;
pub mod discovery;
pub mod duration;
pub mod form;
pub mod html;
pub mod http_url;
pub mod idtoken;
pub mod json;
pub mod jwks_cache;
pub mod keys;
pub mod log_safe;
pub mod navigation;
pub mod pkce;
pub mod quota;
pub mod return_url;
pub mod revocations;
pub mod session;
pub mod session_cache;
pub mod set_cookie;
pub mod state;
pub mod token_response;
pub mod url;
pub mod usage;

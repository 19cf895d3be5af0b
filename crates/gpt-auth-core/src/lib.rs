//! gpt_auth's pure logic, free of nginx types so that it is unit-tested and fuzzed on its own:
//! the session cookie codec and key ring, `Cookie` header scanning, allowlists, nginx time
//! values, the browser-navigation test and URL helpers.
#![forbid(unsafe_code)]

pub mod allowlist;
pub mod cookie_header;
pub mod duration;
pub mod keys;
pub mod navigation;
pub mod session;
pub mod url;

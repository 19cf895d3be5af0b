//! A header filter: responses of protected locations (`gpt_auth on`, user allowed) get a
//! `Cache-Control` that keeps them out of shared caches and, for pages, out of the browser's
//! cache (see `gpt_auth_core::cache_control`). `gpt_auth_cache_control off` leaves the header
//! alone.

use gpt_auth_core::cache_control;

use super::verdict::{self, Outcome};
use crate::ngx::filter::{content_type, response_headers, take_response_headers};
use crate::ngx::response::add_header;

/// The protected response's header (called from the module's header filter).
pub fn on_header(r: &mut ngx::http::Request) {
    {
        if !r.is_main() {
            return;
        }
        let Some(v) = verdict::stored(r) else { return };
        let lcf = v.location();
        if v.outcome != Outcome::Allowed || !lcf.enabled() || lcf.cache_control == 0 {
            return;
        }
        let html = content_type(r).starts_with(b"text/html");
        let existing = response_headers(r, "Cache-Control");
        let had = !existing.is_empty();
        // Without upstream directives the value is a constant: nothing allocated.
        let Some(value) = cache_control::protected(&existing, html) else { return };
        drop(existing);
        if had {
            take_response_headers(r, "Cache-Control");
        }
        let _ = add_header(r, "Cache-Control", value.as_bytes());
    }
}

//! `gpt_auth_logout`: clears the session cookie, then goes to `rd` (if allowed) or the login
//! page.

use gpt_auth_core::set_cookie;
use nginx_sys::{ngx_int_t, NGX_ERROR, NGX_HTTP_NOT_ALLOWED};

use super::request::{param, return_url};
use crate::gate;
use crate::ngx::response::add_header;
use crate::ngx::RequestExt;
use crate::pages;

ngx_entry! {
    /// The logout's content handler.
    pub handler fn logout_handler(r) {
        super::with_conf(r, |r, lcf| {
            if !r.is_get_or_head() && !r.is_post() {
                return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
            }
            if let Some(e) = gate::verdict::current(r).and_then(|v| v.email()) {
                info!(r, "logout: \"{}\"", e);
            }
            let attrs = lcf.session_cookie_attrs();
            let name = lcf.cookie_name();
            let mut clear = vec![set_cookie::clear(name, &attrs)];
            if attrs.domain.is_some() {
                // Also remove a host-only cookie of the same name (from before a Domain was
                // set).
                clear.push(set_cookie::clear(name, &set_cookie::Attributes { domain: None, ..attrs }));
            }
            for c in clear {
                if add_header(r, "Set-Cookie", c.as_bytes()).is_none() {
                    return NGX_ERROR as ngx_int_t;
                }
            }
            // Pages of this site the browser still holds (protected ones are never stored:
            // see gpt_auth_cache_control; this covers a login site that is also an app).
            if add_header(r, "Clear-Site-Data", b"\"cache\"").is_none() {
                return NGX_ERROR as ngx_int_t;
            }
            let target = match param(r, "rd").filter(|s| !s.is_empty()) {
                Some(rd) => return_url(r, lcf, Some(&rd)),
                None => pages::login_url(r, lcf),
            };
            pages::redirect(r, &target)
        })
    }
}

//! The end of a login: the ID token is genuine; the allowlist decides, and an allowed user gets
//! the signed session cookie and goes back where they came from.

use gpt_auth_core::idtoken::Claims;
use gpt_auth_core::{session, set_cookie};
use nginx_sys::{ngx_int_t, NGX_ERROR};
use ngx::http::Request;

use super::flow::{Flow, Kind};
use super::state as login_state;
use crate::ngx::response::add_header;
use crate::ngx::RequestExt;
use crate::pages;

pub fn signed_in(r: &mut Request, flow: &Flow, claims: Claims, now: u64) -> ngx_int_t {
    let (lcf, p) = (flow.lcf, &flow.provider);
    let (state, state_cookie) = match &flow.kind {
        Kind::Code { state, state_cookie, .. } | Kind::Credential { state, state_cookie, .. } => {
            (state, state_cookie)
        }
        Kind::Authorize { .. } => return NGX_ERROR as ngx_int_t,
    };
    // The login is used up either way.
    if login_state::finish(r, lcf, state_cookie).is_none() {
        return NGX_ERROR as ngx_int_t;
    }
    let email = claims.email;
    if let Some(list) = lcf.allowlist() {
        if !list.allows(email.as_bytes(), now, r.log_ptr()) {
            info!(
                r,
                "login refused: \"{}\" (provider \"{}\") is not on the allowlist \"{}\"",
                email,
                p.name,
                list.path()
            );
            let switch = pages::Switch {
                return_url: &state.return_url,
                code_flow_provider: p.code_flow().then_some(p.name.as_str()),
            };
            return pages::not_allowed(r, lcf, &email, pages::Refused::AtSignIn(switch));
        }
    }
    let Some(keys) = &lcf.keys else { return NGX_ERROR as ngx_int_t };
    let max_age = lcf.max_age();
    let value =
        session::encode(keys.ring.signing_key(), lcf.cookie_name(), &email, now, now + max_age);
    let header = set_cookie::set(lcf.cookie_name(), &value, max_age, &lcf.session_cookie_attrs());
    if add_header(r, "Set-Cookie", header.as_bytes()).is_none() {
        return NGX_ERROR as ngx_int_t;
    }
    info!(r, "login: \"{}\" signed in via provider \"{}\"", email, p.name);
    pages::redirect(r, &state.return_url)
}

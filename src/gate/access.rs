//! The access-phase handler and its answers: pass (and charge the budget), send a browser to
//! the login page, 401 for everything else, 403 for a user the location does not allow.

use gpt_auth_core::json::quote;
use gpt_auth_core::log_safe::log_safe;
use gpt_auth_core::url::with_query_param;
use nginx_sys::{
    ngx_int_t, ngx_uint_t, NGX_DECLINED, NGX_ERROR, NGX_HTTP_FORBIDDEN, NGX_HTTP_MOVED_TEMPORARILY,
    NGX_HTTP_UNAUTHORIZED, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, Request};

use super::verdict::{verdict, KeyOwner, Outcome, Refused};
use crate::conf::LocConf;
use crate::ngx::pool::PoolStr;
use crate::ngx::request::hide_header_in;
use crate::ngx::response::{add_header, answer_from_phase, send_response, set_location};
use crate::ngx::RequestExt;
use crate::pages::{self, JSON};
use crate::{quota, GptAuthModule};

ngx_entry! {
    /// The access-phase handler (registered in `postconfiguration`).
    pub handler fn access_handler(r) {
        let Some(lcf) = GptAuthModule::location_conf(r) else { return NGX_DECLINED as ngx_int_t };
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::maybe_panic(r, "access");
        // nginx runs no access phase for subrequests; the check is for the main request only.
        if !lcf.enabled() || !r.is_main() {
            return NGX_DECLINED as ngx_int_t;
        }
        check(r, lcf)
    }
}

fn check(r: &mut Request, lcf: &'static LocConf) -> ngx_int_t {
    let Some(v) = verdict(r, lcf) else { return NGX_ERROR as ngx_int_t };
    if let Some(user) = v.allowed_user() {
        let via_key = v.via_key;
        return allowed(r, lcf, user, via_key);
    }
    let v = *v; // refused: the answer needs the request mutably
    let name = lcf.cookie_name();
    match v.outcome {
        Outcome::Allowed => NGX_ERROR as ngx_int_t, // an allowed verdict always has its user
        Outcome::NotAllowed => {
            let email = v.email().unwrap_or_default().to_owned();
            let list = lcf.allowlist().map_or("", |l| l.path());
            info!(r, "access refused: \"{}\" is not on the allowlist \"{}\"", email, list);
            not_allowed(r, lcf, &email)
        }
        Outcome::Missing => {
            info!(r, "access refused: no session cookie \"{}\"", name);
            unauthenticated(r, lcf, Outcome::Missing)
        }
        Outcome::Invalid | Outcome::Expired => {
            match v.error {
                Some(e @ (Refused::Key(_) | Refused::KeyRevoked | Refused::KeyRevokedByList)) => {
                    info!(r, "access refused: {}", e);
                }
                e => {
                    let why = e.map(|e| e.to_string()).unwrap_or_default();
                    info!(r, "access refused: session cookie \"{}\": {}", name, why);
                }
            }
            unauthenticated(r, lcf, v.outcome)
        }
    }
}

/// A user who may pass: the client's credentials kept from the upstream where keys are
/// accepted, then the AI API's checks or the budget.
fn allowed(r: &mut Request, lcf: &'static LocConf, user: PoolStr, via_key: bool) -> ngx_int_t {
    let email = user.as_bytes();
    debug!(r, "access granted to \"{}\"", String::from_utf8_lossy(email));
    if let Some(zone) = lcf.bearer_zone() {
        if via_key && crate::ngx::pool::stashed::<KeyOwner>(r).is_none() {
            // For the checks after an internal redirect, when the key's headers are gone.
            if crate::ngx::pool::stash(r, KeyOwner { owner: user, zone }).is_none() {
                return NGX_ERROR as ngx_int_t;
            }
        }
        // The client's credentials are for this module only: never passed upstream (the
        // operator sets the provider's own key with proxy_set_header).
        hide_header_in(r, b"authorization");
        hide_header_in(r, b"x-api-key");
    }
    if lcf.usage.enabled() {
        return crate::usage::access::check(r, lcf, email);
    }
    let Some(q) = lcf.quota() else { return NGX_OK as ngx_int_t };
    match quota::charge::enforce(r, q, email, None) {
        quota::charge::Admit::Yes => NGX_OK as ngx_int_t,
        quota::charge::Admit::No(refusal) => quota::refuse::refuse(r, lcf, refusal),
    }
}

/// No valid session: browsers go to the login page, everything else gets 401.
fn unauthenticated(r: &mut Request, lcf: &LocConf, outcome: Outcome) -> ngx_int_t {
    let login = lcf
        .login_url()
        .and_then(|cv| r.complex_value(cv))
        .map(|b| String::from_utf8_lossy(b).into_owned());
    let login = login.filter(|l| {
        // Control characters (from `$uri`, say) are fine: set_location encodes them.
        let lower = l.get(..8).unwrap_or(l).to_ascii_lowercase();
        let ok =
            l.starts_with('/') || lower.starts_with("https://") || lower.starts_with("http://");
        if !ok {
            error!(
                r,
                "gpt_auth_login_url evaluated to \"{}\", not an absolute http(s) URL or a path: \
                 answering 401 instead of redirecting",
                log_safe(l, 200)
            );
        }
        ok
    });
    match login {
        Some(login) if r.is_navigation() => to_login(r, &login),
        login => unauthorized(r, outcome, login.as_deref()),
    }
}

/// The AI API error format of this request's location, if it fronts one.
fn lcf_flavor(r: &Request) -> Option<crate::conf::usage::ApiFlavor> {
    GptAuthModule::location_conf(r)?.api_flavor(r.path().as_bytes())
}

/// `$scheme://$http_host$request_uri`: where to come back to after a login.
fn this_url(r: &Request) -> Vec<u8> {
    let mut url = Vec::with_capacity(256);
    url.extend_from_slice(if r.is_https() { b"https://" } else { b"http://" });
    url.extend_from_slice(r.host());
    url.extend_from_slice(r.unparsed_uri().as_bytes());
    url
}

fn to_login(r: &mut Request, login: &str) -> ngx_int_t {
    let location = with_query_param(login, "rd", &this_url(r));
    // Never reused by the browser: once signed in, the same URL must show the page.
    if set_location(r, location.as_bytes()).is_none()
        || add_header(r, "Cache-Control", b"no-store").is_none()
    {
        return NGX_ERROR as ngx_int_t;
    }
    NGX_HTTP_MOVED_TEMPORARILY as ngx_int_t
}

/// 401 for API clients, XHR and other non-navigations: a `WWW-Authenticate` challenge (RFC
/// 6750's form, with `error="invalid_token"` when a session cookie was presented but refused)
/// and a small JSON body, unless the operator configured an `error_page 401`.
fn unauthorized(r: &mut Request, outcome: Outcome, login: Option<&str>) -> ngx_int_t {
    let challenge: &[u8] = match outcome {
        Outcome::Invalid | Outcome::Expired => {
            b"Bearer realm=\"gpt_auth\", error=\"invalid_token\""
        }
        _ => b"Bearer realm=\"gpt_auth\"",
    };
    if add_header(r, "WWW-Authenticate", challenge).is_none() {
        return NGX_ERROR as ngx_int_t;
    }
    if r.has_error_page(NGX_HTTP_UNAUTHORIZED as _) {
        return NGX_HTTP_UNAUTHORIZED as ngx_int_t;
    }
    if let Some(flavor) = lcf_flavor(r) {
        let msg = "sign in first, or send a personal API key (Authorization: Bearer)";
        let body = pages::api::error_body(flavor, pages::api::Error::Unauthenticated, msg);
        let rc = send_response(r, NGX_HTTP_UNAUTHORIZED as ngx_uint_t, JSON, body.as_bytes());
        return answer_from_phase(r, rc);
    }
    let login = login.map(|l| format!(",\"login_url\":{}", quote(l))).unwrap_or_default();
    let body = format!(
        "{{\"error\":\"unauthenticated\",\"reason\":\"{}\",\"message\":\"sign in first\"{login}}}\n",
        outcome.as_str()
    );
    let rc = send_response(r, NGX_HTTP_UNAUTHORIZED as ngx_uint_t, JSON, body.as_bytes());
    answer_from_phase(r, rc)
}

/// A signed-in user who may not pass: 403 with a page saying who they are (unless the operator
/// configured an `error_page 403`, which then wins).
fn not_allowed(r: &mut Request, lcf: &LocConf, email: &str) -> ngx_int_t {
    if r.has_error_page(NGX_HTTP_FORBIDDEN as _) {
        return NGX_HTTP_FORBIDDEN as ngx_int_t;
    }
    let url = this_url(r);
    let url = String::from_utf8_lossy(&url).into_owned();
    let rc = pages::not_allowed(r, lcf, email, pages::Refused::Here(&url));
    answer_from_phase(r, rc)
}

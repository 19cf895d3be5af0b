//! The access-phase handler and its answers: pass (and charge the budget), send a browser to
//! the login page, 401 for everything else, 403 for a user the location does not allow.

use gpt_auth_core::url::with_query_param;
use nginx_sys::{
    ngx_int_t, NGX_DECLINED, NGX_ERROR, NGX_HTTP_FORBIDDEN, NGX_HTTP_MOVED_TEMPORARILY,
    NGX_HTTP_UNAUTHORIZED, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, Request};

use super::verdict::{verdict, Outcome};
use crate::conf::LocConf;
use crate::ngx::response::{answer_from_phase, set_location};
use crate::ngx::RequestExt;
use crate::{pages, quota, GptAuthModule};

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

fn check(r: &mut Request, lcf: &LocConf) -> ngx_int_t {
    let Some(v) = verdict(r, lcf) else { return NGX_ERROR as ngx_int_t };
    let name = lcf.cookie_name();
    match v.outcome {
        Outcome::Allowed => {
            debug!(r, "access granted to \"{}\"", v.email().unwrap_or_default());
            let (Some(q), Some(email)) = (lcf.quota(), v.email_bytes()) else {
                return NGX_OK as ngx_int_t;
            };
            match quota::charge::enforce(r, q, email) {
                quota::charge::Admit::Yes => NGX_OK as ngx_int_t,
                quota::charge::Admit::No(refusal) => quota::charge::refuse(r, lcf, refusal),
            }
        }
        Outcome::NotAllowed => {
            let email = v.email().unwrap_or_default().to_owned();
            let list = lcf.allowlist().map_or("", |l| l.path());
            info!(r, "access refused: \"{}\" is not on the allowlist \"{}\"", email, list);
            not_allowed(r, lcf, &email)
        }
        Outcome::Missing => {
            info!(r, "access refused: no session cookie \"{}\"", name);
            unauthenticated(r, lcf)
        }
        Outcome::Invalid | Outcome::Expired => {
            let why = v.error.map(|e| e.to_string()).unwrap_or_default();
            info!(r, "access refused: session cookie \"{}\": {}", name, why);
            unauthenticated(r, lcf)
        }
    }
}

/// No valid session: browsers go to the login page, everything else gets 401.
fn unauthenticated(r: &mut Request, lcf: &LocConf) -> ngx_int_t {
    let Some(cv) = lcf.login_url() else { return NGX_HTTP_UNAUTHORIZED as ngx_int_t };
    if !r.is_navigation() {
        return NGX_HTTP_UNAUTHORIZED as ngx_int_t;
    }
    let Some(login) = r.complex_value(cv).map(|b| String::from_utf8_lossy(b).into_owned()) else {
        return NGX_ERROR as ngx_int_t;
    };
    let mut back = Vec::with_capacity(256);
    back.extend_from_slice(if r.is_https() { b"https://" } else { b"http://" });
    back.extend_from_slice(r.host());
    back.extend_from_slice(r.unparsed_uri().as_bytes());
    let location = with_query_param(&login, "rd", &back);
    if set_location(r, location.as_bytes()).is_none() {
        return NGX_ERROR as ngx_int_t;
    }
    NGX_HTTP_MOVED_TEMPORARILY as ngx_int_t
}

/// A signed-in user who may not pass: 403 with a page saying who they are (unless the operator
/// configured an `error_page 403`, which then wins).
fn not_allowed(r: &mut Request, lcf: &LocConf, email: &str) -> ngx_int_t {
    if r.has_error_page(NGX_HTTP_FORBIDDEN as _) {
        return NGX_HTTP_FORBIDDEN as ngx_int_t;
    }
    let rc = pages::not_allowed(r, lcf, email, None);
    answer_from_phase(r, rc)
}

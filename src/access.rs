//! The access-phase handler: is there a valid session, and may its user pass this location?
//!
//! The verdict is computed once per request (by the handler, or earlier by a variable such as
//! `limit_req_zone $gpt_auth_email` in the preaccess phase) and kept in the main request's
//! context, so subrequests see the main request's user.

use core::ptr;

use gpt_auth_core::navigation::RequestKind;
use gpt_auth_core::session::{Email, SessionError};
use gpt_auth_core::session_cache::Memo;
use gpt_auth_core::url::with_query_param;
use nginx_sys::{
    ngx_http_request_t, ngx_int_t, NGX_DECLINED, NGX_ERROR, NGX_HTTP_FORBIDDEN,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_MOVED_TEMPORARILY, NGX_HTTP_UNAUTHORIZED, NGX_OK,
};
use ngx::http::HttpModuleLocationConf;

use crate::conf::LocConf;
use crate::ngx_ext::{
    complex_value, finalize, guard, has_error_page, host, is_get_or_head, is_https, is_main,
    main_request, now, request_headers, set_location, unparsed_uri,
};
use crate::watch::WatchedAllowlist;
use crate::{budget, ctx, pages, GptAuthModule};

/// At most this many cookies with our name are tried per request (a client can send many).
const MAX_CANDIDATES: usize = 8;

/// Why a request passed or not; `$gpt_auth_result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Missing,
    Invalid,
    Expired,
    NotAllowed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Missing => "missing",
            Outcome::Invalid => "invalid",
            Outcome::Expired => "expired",
            Outcome::NotAllowed => "not_allowed",
        }
    }
}

/// The decision for one request under one location configuration.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    /// The configuration this was computed under (a `rewrite ... last` may change location).
    lcf: *const LocConf,
    pub outcome: Outcome,
    /// The session's user (also set when not allowed, for the refusal page and log).
    pub email: Option<Email>,
    /// Why the (best) candidate cookie was refused.
    pub error: Option<SessionError>,
}

/// The verdict for `r` under `lcf`, computed at most once per request and location, and kept
/// in the main request's context.
pub fn verdict(r: &ngx_http_request_t, lcf: &LocConf) -> Option<&'static Verdict> {
    let ctx = ctx::get_or_create(main_request(r))?;
    match &ctx.verdict {
        Some(v) if ptr::eq(v.lcf, lcf) => {}
        _ => ctx.verdict = Some(compute(r, lcf)),
    }
    ctx.verdict.as_ref()
}

/// The verdict already computed for this request, or one computed now if the current location
/// can verify sessions; `None` when neither.
pub fn current_verdict(r: &ngx_http_request_t) -> Option<&'static Verdict> {
    if let Some(v) = ctx::get(main_request(r)).and_then(|c| c.verdict.as_ref()) {
        return Some(v);
    }
    let lcf = GptAuthModule::location_conf(r)?;
    lcf.keys.as_ref()?;
    verdict(r, lcf)
}

fn compute(r: &ngx_http_request_t, lcf: &LocConf) -> Verdict {
    let mut v = Verdict { lcf, outcome: Outcome::Missing, email: None, error: None };
    let (Some(keys), Some(finder)) = (&lcf.keys, &lcf.cookie_finder) else { return v };
    let name = lcf.cookie_name();
    let now = now();
    let mut tried = 0;
    // Verified values are cached per worker and key file: a session's later requests skip the
    // HMAC (see gpt_auth_core::session_cache).
    let Ok(mut cache) = keys.cache.try_borrow_mut() else { return v };

    'headers: for (header, value) in request_headers(r) {
        if header != b"cookie" {
            continue;
        }
        for candidate in finder.values(value) {
            tried += 1;
            match cache.decode(&keys.ring, name, candidate, now, lcf.max_age()) {
                Ok(verified) => {
                    let email = verified.session.email;
                    debug!(
                        r,
                        "session of \"{}\" valid until {}",
                        email.as_str(),
                        verified.session.exp
                    );
                    v.outcome = Outcome::Allowed;
                    v.email = Some(email);
                    v.error = None;
                    if let Some(list) = lcf.allowlist() {
                        if !allowed(r, list, email.as_bytes(), verified.memo, now) {
                            v.outcome = Outcome::NotAllowed;
                        }
                    }
                    break 'headers;
                }
                Err(e) => {
                    debug!(r, "session cookie candidate {} refused: {}", tried, e);
                    // Report an expired (genuine) cookie over a broken one.
                    if v.error.is_none_or(|prev| e.is_expired() && !prev.is_expired()) {
                        v.error = Some(e);
                        v.outcome =
                            if e.is_expired() { Outcome::Expired } else { Outcome::Invalid };
                    }
                }
            }
            if tried >= MAX_CANDIDATES {
                break 'headers;
            }
        }
    }
    v
}

/// The allowlist's answer for a verified session, remembered with the session in the cache for
/// as long as the list (this file, this version) stays the same.
fn allowed(
    r: &ngx_http_request_t,
    list: &WatchedAllowlist,
    email: &[u8],
    memo: Option<&mut Option<Memo>>,
    now: u64,
) -> bool {
    let log = crate::log::as_log_ptr(r);
    let (id, version) = list.version(now, log);
    match memo {
        Some(Some(m)) if m.list == id && m.version == version => m.allowed,
        Some(slot) => {
            let allowed = list.allows(email, now, log);
            *slot = Some(Memo { list: id, version, allowed });
            allowed
        }
        None => list.allows(email, now, log),
    }
}

/// The access-phase handler.
pub extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    guard(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t, || {
        // SAFETY: nginx calls phase handlers with a live request.
        let r = unsafe { &mut *r };
        let Some(lcf) = GptAuthModule::location_conf(r) else { return NGX_DECLINED as ngx_int_t };
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::maybe_panic(r, "access");
        // nginx runs no access phase for subrequests; the check is for the main request only.
        if !lcf.enabled() || !is_main(r) {
            return NGX_DECLINED as ngx_int_t;
        }
        let Some(v) = verdict(r, lcf) else { return NGX_ERROR as ngx_int_t };
        // Evaluated only where needed (a UTF-8 check is not free on every request).
        let email = || v.email.as_ref().map_or("", Email::as_str);
        let name = lcf.cookie_name();

        match v.outcome {
            Outcome::Allowed => {
                debug!(r, "access granted to \"{}\"", email());
                if let (Some(q), Some(e)) = (lcf.quota(), &v.email) {
                    if let Some(rc) = budget::enforce(r, lcf, q, e) {
                        return rc;
                    }
                }
                NGX_OK as ngx_int_t
            }
            Outcome::NotAllowed => {
                let list = lcf.allowlist().map_or("", |l| l.path());
                info!(r, "access refused: \"{}\" is not on the allowlist \"{}\"", email(), list);
                not_allowed(r, lcf, email())
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
    })
}

/// No valid session: browsers go to the login page, everything else gets 401.
fn unauthenticated(r: &mut ngx_http_request_t, lcf: &LocConf) -> ngx_int_t {
    let Some(cv) = lcf.login_url() else { return NGX_HTTP_UNAUTHORIZED as ngx_int_t };
    if !is_navigation(r) {
        return NGX_HTTP_UNAUTHORIZED as ngx_int_t;
    }
    let Some(login) = complex_value(r, cv).map(|b| String::from_utf8_lossy(b).into_owned()) else {
        return NGX_ERROR as ngx_int_t;
    };
    let mut back = Vec::with_capacity(256);
    back.extend_from_slice(if is_https(r) { b"https://" } else { b"http://" });
    back.extend_from_slice(host(r));
    back.extend_from_slice(unparsed_uri(r));
    let location = with_query_param(&login, "rd", &back);
    if set_location(r, location.as_bytes()).is_none() {
        return NGX_ERROR as ngx_int_t;
    }
    NGX_HTTP_MOVED_TEMPORARILY as ngx_int_t
}

/// A signed-in user who may not pass: 403 with a page saying who they are (unless the operator
/// configured an `error_page 403`, which then wins).
fn not_allowed(r: &mut ngx_http_request_t, lcf: &LocConf, email: &str) -> ngx_int_t {
    if has_error_page(r, NGX_HTTP_FORBIDDEN as _) {
        return NGX_HTTP_FORBIDDEN as ngx_int_t;
    }
    // Answered from the access phase: finalize here, and tell the phase engine it is done.
    let rc = pages::not_allowed(r, lcf, email, None);
    finalize(r, rc);
    nginx_sys::NGX_DONE as ngx_int_t
}

pub fn is_navigation(r: &ngx_http_request_t) -> bool {
    let mut kind = RequestKind { safe_method: is_get_or_head(r), ..Default::default() };
    for (name, value) in request_headers(r) {
        match name {
            b"accept" => kind.accept = Some(value),
            b"sec-fetch-mode" => kind.sec_fetch_mode = Some(value),
            b"x-requested-with" => kind.x_requested_with = Some(value),
            _ => {}
        }
    }
    kind.is_navigation()
}

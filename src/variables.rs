//! Variables: `$gpt_auth_email` (the signed-in, allowed user; empty otherwise) and
//! `$gpt_auth_result` (`allowed`, `missing`, `invalid`, `expired` or `not_allowed`; empty where
//! no session can be checked).
//!
//! `$gpt_auth_quota_day_used`, `..._day_remaining`, `..._month_used`, `..._month_remaining`:
//! the budget after this request was charged (`unlimited` for no limit; empty when the request
//! was not charged).
//!
//! `$gpt_auth_fetch_*` describe an outbound request of the login flow; they have values only
//! inside the module's own fetch subrequests (see nginx-conf/gpt_auth_fetch.conf).
//!
//! They can be used before the access phase (e.g. `limit_req_zone $gpt_auth_email`): the first
//! use computes the verdict, the access handler reuses it.

use nginx_sys::{
    ngx_http_request_t, ngx_http_variable_t, ngx_int_t, ngx_variable_value_t, NGX_ERROR,
    NGX_HTTP_VAR_NOCACHEABLE, NGX_OK,
};
use ngx::ngx_string;

use crate::access::{current_verdict, Outcome};
use crate::ctx;
use crate::fetch::FetchSpec;
use crate::ngx_ext::{guard, set_variable};

type Getter =
    unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_variable_value_t, usize) -> ngx_int_t;

const fn variable(name: nginx_sys::ngx_str_t, get: Getter) -> ngx_http_variable_t {
    ngx_http_variable_t {
        name,
        set_handler: None,
        get_handler: Some(get),
        data: 0,
        flags: NGX_HTTP_VAR_NOCACHEABLE as nginx_sys::ngx_uint_t,
        index: 0,
    }
}

pub static mut VARIABLES: [ngx_http_variable_t; 11] = [
    variable(ngx_string!("gpt_auth_email"), var_email),
    variable(ngx_string!("gpt_auth_result"), var_result),
    variable(ngx_string!("gpt_auth_fetch_url"), var_fetch_url),
    variable(ngx_string!("gpt_auth_fetch_method"), var_fetch_method),
    variable(ngx_string!("gpt_auth_fetch_body"), var_fetch_body),
    variable(ngx_string!("gpt_auth_fetch_content_type"), var_fetch_content_type),
    variable(ngx_string!("gpt_auth_fetch_authorization"), var_fetch_authorization),
    variable(ngx_string!("gpt_auth_quota_day_used"), var_quota_day_used),
    variable(ngx_string!("gpt_auth_quota_day_remaining"), var_quota_day_remaining),
    variable(ngx_string!("gpt_auth_quota_month_used"), var_quota_month_used),
    variable(ngx_string!("gpt_auth_quota_month_remaining"), var_quota_month_remaining),
];

fn with_value(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    f: impl FnOnce(&ngx_http_request_t) -> Option<&'static [u8]>,
) -> ngx_int_t {
    guard(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx calls getters with a live request and a value to fill.
        let (r, v) = unsafe { (&*r, &mut *v) };
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::maybe_panic(r, "variable");
        match f(r) {
            Some(bytes) => set_variable(v, bytes),
            None => v.set_not_found(1),
        }
        NGX_OK as ngx_int_t
    })
}

unsafe extern "C" fn var_email(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    with_value(r, v, |r| {
        let verdict = current_verdict(r)?;
        match (verdict.outcome, &verdict.email) {
            (Outcome::Allowed, Some(email)) => Some(email.as_str().as_bytes()),
            _ => None,
        }
    })
}

unsafe extern "C" fn var_result(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    with_value(r, v, |r| current_verdict(r).map(|v| v.outcome.as_str().as_bytes()))
}

/// A field of the fetch this subrequest performs.
fn fetch_field(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    field: fn(&'static FetchSpec) -> &'static [u8],
) -> ngx_int_t {
    with_value(r, v, |r| {
        // SAFETY: `fetch` is NULL or points at the spec kept by the main request's flow, which
        // lives until the main request ends.
        let spec = unsafe { ctx::get(r)?.fetch.as_ref()? };
        Some(field(spec)).filter(|b| !b.is_empty())
    })
}

unsafe extern "C" fn var_fetch_url(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    fetch_field(r, v, |s| s.url.as_bytes())
}

unsafe extern "C" fn var_fetch_method(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    fetch_field(r, v, |s| s.method.as_bytes())
}

unsafe extern "C" fn var_fetch_body(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    fetch_field(r, v, |s| s.body.as_bytes())
}

unsafe extern "C" fn var_fetch_content_type(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    fetch_field(r, v, |s| s.content_type.as_bytes())
}

unsafe extern "C" fn var_fetch_authorization(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    fetch_field(r, v, |s| s.authorization.as_bytes())
}

/// A `$gpt_auth_quota_*` value, copied into the request pool.
fn quota_field(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    month: bool,
    remaining: bool,
) -> ngx_int_t {
    with_value(r, v, |r| {
        let mut buf = [0u8; 20];
        let text = crate::budget::variable(r, month, remaining, &mut buf)?;
        crate::ngx_ext::pool_bytes(r, text)
    })
}

unsafe extern "C" fn var_quota_day_used(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    quota_field(r, v, false, false)
}

unsafe extern "C" fn var_quota_day_remaining(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    quota_field(r, v, false, true)
}

unsafe extern "C" fn var_quota_month_used(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    quota_field(r, v, true, false)
}

unsafe extern "C" fn var_quota_month_remaining(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    quota_field(r, v, true, true)
}

//! The access phase of an AI location, after the user is known: the request body is read
//! (nginx's own body reading; the phases go on when it is complete), its model checked against
//! the location's rules, the budgets charged (or an estimate reserved, settled when the answer
//! is done), and a streaming chat request that did not ask for usage made to ask for it.

use gpt_auth_core::quota::Amounts;
use gpt_auth_core::usage::request::{self, IncludeUsage, RequestInfo};
use gpt_auth_core::usage::response::estimate;
use gpt_auth_core::usage::{Api, Usage};
use nginx_sys::{
    ngx_int_t, ngx_uint_t, NGX_ERROR, NGX_HTTP_BAD_REQUEST, NGX_HTTP_FORBIDDEN, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, Request};

use super::exchange::{self, Exchange};
use super::models;
use crate::conf::usage::ApiFlavor;
use crate::conf::LocConf;
use crate::ngx::body::{self, BodyError};
use crate::ngx::pool::{self, PoolStr};
use crate::ngx::request::hide_header_in;
use crate::ngx::response::{answer_from_phase, send_response};
use crate::ngx::time::now;
use crate::ngx::RequestExt;
use crate::pages::{api, JSON};
use crate::{quota, GptAuthModule};

/// Marks a request whose body the module has read (the phases run again after it).
struct BodyRead;

/// Decides on an allowed user's request to an AI location; returns what the access handler
/// returns.
pub fn check(r: &mut Request, lcf: &'static LocConf, email: &[u8]) -> ngx_int_t {
    if exchange::get(r).is_some() {
        return NGX_OK as ngx_int_t; // decided already (an internal redirect runs this again)
    }
    let path = r.path().as_bytes();
    let flavor = lcf.usage.flavor(path).unwrap_or(ApiFlavor::OpenAi);
    let api = Api::from_path(path);
    if !r.is_post() || api.is_none() {
        return other_request(r, lcf, email, flavor, api);
    }
    if pool::stashed::<BodyRead>(r).is_none() {
        let limit = lcf.usage.body_limit();
        if r.as_ref().headers_in.content_length_n > limit as i64 {
            return refuse(
                r,
                flavor,
                nginx_sys::NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                api::Error::TooLarge,
                &format!("the request body is larger than {limit} bytes"),
            );
        }
        return body::read_in_phase(r, body_read);
    }
    api_request(r, lcf, email, flavor, api)
}

ngx_entry! {
    /// The body is read: mark it, and let the phases run the access handler again.
    event fn body_read(r) {
        if pool::stash(r, BodyRead).is_none() {
            return crate::ngx::response::finalize(r, NGX_ERROR as ngx_int_t);
        }
        body::continue_phases(r);
    }
}

/// A request without a body to read (a model list, say): the request budget, and the model
/// list filtered where the location has model rules.
fn other_request(
    r: &mut Request,
    lcf: &'static LocConf,
    email: &[u8],
    flavor: ApiFlavor,
    api: Option<Api>,
) -> ngx_int_t {
    let Some(user) = PoolStr::copy(r, email) else { return NGX_ERROR as ngx_int_t };
    let mut x = Exchange::new(api, flavor, user);
    x.filter_models = lcf.usage.filters_models() && models::is_list(r);
    if pool::stash(r, x).is_none() {
        return NGX_ERROR as ngx_int_t;
    }
    if x_filters(r) {
        hide_header_in(r, b"accept-encoding"); // the list must come uncompressed to be filtered
    }
    admit(r, lcf, email, None)
}

fn x_filters(r: &Request) -> bool {
    exchange::get(r).is_some_and(|x| x.filter_models)
}

fn api_request(
    r: &mut Request,
    lcf: &'static LocConf,
    email: &[u8],
    flavor: ApiFlavor,
    api: Option<Api>,
) -> ngx_int_t {
    let limit = lcf.usage.body_limit();
    let body = match body::bytes(r, limit) {
        Ok(b) => b,
        Err(e @ BodyError::TooLarge(_)) => {
            return refuse(
                r,
                flavor,
                nginx_sys::NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                api::Error::TooLarge,
                &e.to_string(),
            );
        }
        Err(e) => {
            error!(r, "AI request: {}", e);
            return NGX_ERROR as ngx_int_t;
        }
    };
    let info = match request::parse(&body) {
        Ok(i) => i,
        Err(e) => {
            info!(r, "AI request refused: {}", e);
            return refuse(r, flavor, NGX_HTTP_BAD_REQUEST, api::Error::BadRequest, &e.to_string());
        }
    };
    let Some(user) = PoolStr::copy(r, email) else { return NGX_ERROR as ngx_int_t };
    let mut x = Exchange::new(api, flavor, user);
    x.model = info.model.clone();
    x.request_bytes = body.len() as u64;
    if lcf.usage.adds_stream_usage() && api.is_some_and(Api::needs_include_usage) {
        if let Ok(IncludeUsage::Added(new)) = info.with_include_usage(&body) {
            if body::replace(r, &new).is_none() {
                return NGX_ERROR as ngx_int_t;
            }
            x.strip = true;
        }
    }
    // Stashed before the model check: $gpt_auth_model names a refused model too.
    if pool::stash(r, x).is_none() {
        return NGX_ERROR as ngx_int_t;
    }
    if let Err(rc) = models::check(r, lcf, email, flavor, info.model.as_deref()) {
        return rc;
    }
    if lcf.usage.meters() {
        hide_header_in(r, b"accept-encoding"); // a compressed answer could not be metered
    }
    let estimate = lcf.usage.meters().then(|| reservation(r, lcf, &info, body.len()));
    admit(r, lcf, email, estimate)
}

/// What a metered request reserves: its input estimated from the body, its output limit (or the
/// location's `reserve=`), and their cost.
fn reservation(r: &Request, lcf: &LocConf, info: &RequestInfo, body_len: usize) -> Amounts {
    let reserve = lcf.quota().map_or(crate::conf::quota::DEFAULT_RESERVE, |q| q.reserve);
    let input = estimate(body_len as u64, 0).input;
    let output = info.output_limit().unwrap_or(reserve);
    let usage = Usage { input, output, ..Usage::default() };
    let cost = match (lcf.usage.prices(), &info.model) {
        (Some(p), Some(m)) => p.get(now(), r.log()).cost(m, &usage).unwrap_or(0),
        _ => 0,
    };
    Amounts { requests: 1, input, output, cost }
}

/// The budgets (if the location has any); 429 when one is used up.
fn admit(
    r: &mut Request,
    lcf: &'static LocConf,
    email: &[u8],
    estimate: Option<Amounts>,
) -> ngx_int_t {
    let Some(q) = lcf.quota() else { return NGX_OK as ngx_int_t };
    match quota::charge::enforce(r, q, email, estimate) {
        quota::charge::Admit::Yes => NGX_OK as ngx_int_t,
        quota::charge::Admit::No(refusal) => quota::refuse::refuse(r, lcf, refusal),
    }
}

/// An error answer in the API's format, from the access phase.
pub fn refuse(
    r: &mut Request,
    flavor: ApiFlavor,
    status: u32,
    e: api::Error,
    message: &str,
) -> ngx_int_t {
    if r.has_error_page(status as ngx_uint_t) {
        return status as ngx_int_t;
    }
    let body = api::error_body(flavor, e, message);
    let rc = send_response(r, status as ngx_uint_t, JSON, body.as_bytes());
    answer_from_phase(r, rc)
}

/// 403 for a model the user may not use.
pub fn model_refused(r: &mut Request, flavor: ApiFlavor, model: &str) -> ngx_int_t {
    let msg = format!("you are not allowed to use the model \"{model}\"");
    refuse(r, flavor, NGX_HTTP_FORBIDDEN, api::Error::ModelNotAllowed, &msg)
}

/// The location configuration of an AI location (for the filters).
pub fn location(r: &Request) -> Option<&'static LocConf> {
    GptAuthModule::location_conf(r).filter(|l| l.usage.enabled())
}

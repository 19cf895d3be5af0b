//! Outbound HTTP for the login flow (OpenID discovery, JWKS, token exchange), done by nginx
//! itself: an in-memory subrequest to an `internal` location that `proxy_pass`es to
//! `$gpt_auth_fetch_url` (see nginx-conf/gpt_auth_fetch.conf). nginx does DNS, TLS and
//! certificate checks, timeouts, size limits (`subrequest_output_buffer_size`) and even caching;
//! the worker never blocks.

use std::rc::Rc;

use nginx_sys::{ngx_int_t, NGX_ERROR, NGX_OK};
use ngx::http::Request;

use super::flow::FlowSlot;
use crate::ngx::pool;
use crate::ngx::subrequest;
use crate::ngx::RequestExt;

/// What a fetch is for (for logs and for how its answer is used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Discovery,
    Jwks,
    Token,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Discovery => "OpenID discovery",
            Purpose::Jwks => "JWKS",
            Purpose::Token => "token exchange",
        }
    }
}

/// One outbound request; read by the `$gpt_auth_fetch_*` variables inside the subrequest.
#[derive(Debug)]
pub struct FetchSpec {
    pub purpose: Purpose,
    pub url: String,
    pub method: &'static str,
    pub body: String,
    pub content_type: &'static str,
    pub authorization: String,
}

impl FetchSpec {
    pub fn get(purpose: Purpose, url: &str) -> FetchSpec {
        FetchSpec {
            purpose,
            url: url.to_owned(),
            method: "GET",
            body: String::new(),
            content_type: "",
            authorization: String::new(),
        }
    }

    pub fn post_form(
        purpose: Purpose,
        url: &str,
        body: String,
        authorization: String,
    ) -> FetchSpec {
        FetchSpec {
            purpose,
            url: url.to_owned(),
            method: "POST",
            body,
            content_type: "application/x-www-form-urlencoded",
            authorization,
        }
    }
}

/// The answer: status (nginx's own 502/504 when the provider could not be reached), body (as
/// much as the buffer held) and the `Cache-Control` header.
#[derive(Debug)]
pub struct FetchResult {
    pub status: usize,
    pub body: Vec<u8>,
    pub cache_control: Option<String>,
    /// Set when nginx gave up on the subrequest itself (e.g. a response larger than
    /// `subrequest_output_buffer_size`, or a broken connection).
    pub broken: bool,
    /// The provider closed the connection before the end of the body it announced (its
    /// `Content-Length`, or the last chunk): what arrived is not the whole document.
    pub cut_off: bool,
}

/// The spec a fetch subrequest carries, for its variables.
struct Fetching(Rc<FetchSpec>);

/// Starts `spec` as a subrequest of the main request `r` to `location`. On success the
/// request must be suspended; the result is put into the main request's flow when the
/// subrequest has finished, and the main request is woken.
pub fn start(r: &mut Request, location: &str, spec: Rc<FetchSpec>) -> bool {
    let Some(sr) = subrequest::start(r, location, fetch_done) else { return false };
    pool::stash(sr, Fetching(spec)).is_some()
}

ngx_entry! {
    /// The subrequest ended: its outcome goes into the waiting flow.
    post_subrequest fn fetch_done(sr, rc) {
        // The subrequest's output failed when nginx ends it with NGX_ERROR, or ends it
        // normally but with the connection marked failed: for an in-memory subrequest that
        // only comes from its output filter (a body larger than subrequest_output_buffer_size),
        // since the client is never written to. A client that went away ends it with 499.
        let broken =
            rc == NGX_ERROR as ngx_int_t || (rc == NGX_OK as ngx_int_t && sr.connection_error());
        record(sr, rc, broken);
        // Left as is, nginx would terminate the main request too (no response at all). The
        // failure is recorded: let the subrequest end normally, and the main request answer
        // with an error page.
        if broken {
            subrequest::forgive_output_error(sr);
            NGX_OK as ngx_int_t
        } else {
            rc
        }
    }
}

/// Puts the subrequest's outcome into the main request's flow. nginx may end a subrequest more
/// than once (e.g. again after producing an error page); the first time carries the real
/// outcome.
fn record(sr: &Request, rc: ngx_int_t, broken: bool) {
    let Some(slot) = pool::stashed::<FlowSlot>(sr.main_request()) else { return };
    let Ok(mut flow) = slot.0.try_borrow_mut() else { return };
    let Some(flow) = flow.as_mut() else { return };
    if flow.fetch_result.is_some() {
        return;
    }
    let (status, body) = subrequest::outcome(sr, rc);
    flow.fetch_result = Some(FetchResult {
        status,
        body: body.to_vec(),
        cache_control: sr
            .response_header("Cache-Control")
            .map(|v| String::from_utf8_lossy(v).into_owned()),
        broken,
        cut_off: sr.upstream_cut_off(),
    });
}

/// A field of the fetch this subrequest performs, for `$gpt_auth_fetch_*`.
fn field(r: &Request, f: fn(&FetchSpec) -> &[u8]) -> Option<&[u8]> {
    let spec = &pool::stashed::<Fetching>(r)?.0;
    Some(f(spec)).filter(|b| !b.is_empty())
}

ngx_entry! {
    /// `$gpt_auth_fetch_url`
    pub variable fn var_url(r) { field(r, |s| s.url.as_bytes()) }
}
ngx_entry! {
    /// `$gpt_auth_fetch_method`
    pub variable fn var_method(r) { field(r, |s| s.method.as_bytes()) }
}
ngx_entry! {
    /// `$gpt_auth_fetch_body`
    pub variable fn var_body(r) { field(r, |s| s.body.as_bytes()) }
}
ngx_entry! {
    /// `$gpt_auth_fetch_content_type`
    pub variable fn var_content_type(r) { field(r, |s| s.content_type.as_bytes()) }
}
ngx_entry! {
    /// `$gpt_auth_fetch_authorization`
    pub variable fn var_authorization(r) { field(r, |s| s.authorization.as_bytes()) }
}

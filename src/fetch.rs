//! Outbound HTTP for the login flow (OpenID discovery, JWKS, token exchange), done by nginx
//! itself: an in-memory subrequest to an `internal` location that `proxy_pass`es to
//! `$gpt_auth_fetch_url` (see nginx-conf/gpt_auth_fetch.conf). nginx does DNS, TLS and
//! certificate checks, timeouts, size limits (`subrequest_output_buffer_size`) and even caching;
//! the worker never blocks.

use core::ffi::c_void;

use nginx_sys::{ngx_http_request_t, ngx_int_t, NGX_ERROR, NGX_OK};

use crate::ctx;
use crate::flow::Flow;
use crate::ngx_ext::{
    connection_error, forgive_subrequest_output_error, guard, response_header, start_subrequest,
    subrequest_result, upstream_cut_off,
};

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

/// Starts the flow's last fetch as a subrequest of the main request `r` to `location`. On
/// success the request must be suspended; `flow.fetch_result` is set when the subrequest has
/// finished and the main request is woken.
pub fn start(r: &mut ngx_http_request_t, location: &str, flow: &mut Flow) -> bool {
    let Some(spec) = flow.fetches.last() else { return false };
    let spec: *const FetchSpec = &**spec;
    flow.fetch_result = None;
    let data: *mut Flow = flow;
    let Some(sr) = start_subrequest(r, location, fetch_done, data.cast()) else { return false };
    let Some(sctx) = ctx::get_or_create(sr) else { return false };
    sctx.fetch = spec;
    true
}

unsafe extern "C" fn fetch_done(
    sr: *mut ngx_http_request_t,
    data: *mut c_void,
    rc: ngx_int_t,
) -> ngx_int_t {
    guard(rc, || {
        // SAFETY: `data` is the Flow that started this subrequest, owned by the main request's
        // pool, which outlives its subrequests; `sr` is the finishing subrequest.
        let (flow, sr) = unsafe { (&mut *data.cast::<Flow>(), &mut *sr) };
        // nginx may call this more than once (e.g. again after producing an error page); the
        // first call carries the real outcome.
        // The subrequest's output failed when nginx ends it with NGX_ERROR, or ends it
        // normally but with the connection marked failed: for an in-memory subrequest that
        // only comes from its output filter (a body larger than subrequest_output_buffer_size),
        // since the client is never written to. A client that went away ends it with 499.
        let broken =
            rc == NGX_ERROR as ngx_int_t || (rc == NGX_OK as ngx_int_t && connection_error(sr));
        if flow.fetch_result.is_none() {
            let res = subrequest_result(sr, rc);
            flow.fetch_result = Some(FetchResult {
                status: res.status,
                body: res.body.to_vec(),
                cache_control: response_header(sr, "Cache-Control")
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
                broken,
                cut_off: upstream_cut_off(sr),
            });
        }
        // Left as is, nginx would terminate the main request too (no response at all). The
        // failure is recorded: let the subrequest end normally, and the main request answer
        // with an error page.
        if broken {
            forgive_subrequest_output_error(sr);
            NGX_OK as ngx_int_t
        } else {
            rc
        }
    })
}

//! The module's per-request context: one plain-data struct in the request pool, the same type
//! in every request's slot (main requests and subrequests alike).

use core::ptr;

use nginx_sys::ngx_http_request_t;
use ngx::http::HttpModule;

use crate::access::Verdict;
use crate::fetch::FetchSpec;
use crate::flow::Flow;
use crate::ngx_ext::{new_request_ctx, request_ctx};
use crate::GptAuthModule;

#[derive(Clone, Copy)]
pub struct RequestCtx {
    /// The session check's result (main request).
    pub verdict: Option<Verdict>,
    /// A login/callback in progress (main request); owned by the request pool.
    pub flow: *mut Flow,
    /// What an outbound fetch subrequest asks for (our fetch subrequests only).
    pub fetch: *const FetchSpec,
}

impl RequestCtx {
    const EMPTY: RequestCtx =
        RequestCtx { verdict: None, flow: ptr::null_mut(), fetch: ptr::null() };
}

/// This request's context, if it has one.
pub fn get(r: &ngx_http_request_t) -> Option<&'static mut RequestCtx> {
    request_ctx::<RequestCtx>(r, GptAuthModule::module())
}

/// This request's context, created empty if needed (`None` only when out of memory).
pub fn get_or_create(r: &ngx_http_request_t) -> Option<&'static mut RequestCtx> {
    match get(r) {
        Some(ctx) => Some(ctx),
        None => new_request_ctx(r, GptAuthModule::module(), RequestCtx::EMPTY),
    }
}

// Request contexts live in the request pool (NGX_ALIGNMENT): see conf.rs.
const _: () = assert!(core::mem::align_of::<RequestCtx>() <= nginx_sys::NGX_ALIGNMENT);

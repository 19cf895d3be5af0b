//! In-memory subrequests to the module's internal locations (how it talks to the outside
//! world through nginx's own `proxy_pass`).
//!
//! `ngx::http::Request::subrequest` (0.5.1) cannot be used: it ignores the return code of
//! `ngx_http_subrequest` (and then dereferences a NULL subrequest), leaves the post-subrequest
//! structure uninitialised and always sets `header_only`, while these subrequests need their
//! body. The call is written the way nginx's auth_request module does it.

use core::{mem, ptr, slice};

use nginx_sys::{
    ngx_http_post_subrequest_t, ngx_http_request_body_t, ngx_http_request_t, ngx_int_t, ngx_str_t,
    ngx_uint_t, NGX_ERROR, NGX_HTTP_BAD_GATEWAY, NGX_HTTP_SPECIAL_RESPONSE, NGX_OK,
};
use ngx::http::Request;

use super::pool::PoolStr;
use super::request::raw;

/// A post-subrequest handler, as defined by `ngx_entry!(post_subrequest ...)`.
pub type Done =
    unsafe extern "C" fn(*mut ngx_http_request_t, *mut core::ffi::c_void, ngx_int_t) -> ngx_int_t;

/// Starts an in-memory subrequest of `r` to `uri` (an internal location): its response body is
/// kept in memory (up to `subrequest_output_buffer_size`) and `done` is called when it ends;
/// then the parent is woken through its write event handler. Returns the subrequest.
pub fn start<'r>(r: &'r mut Request, uri: &str, done: Done) -> Option<&'r mut Request> {
    let uri = PoolStr::copy(r, uri.as_bytes())?;
    let pool = r.as_ref().pool;
    // SAFETY: allocations from the request pool, initialised before use; the call is
    // ngx_http_subrequest as nginx's own modules make it; the subrequest is checked.
    unsafe {
        let u = nginx_sys::ngx_palloc(pool, mem::size_of::<ngx_str_t>()).cast::<ngx_str_t>();
        let u = u.as_mut()?;
        *u = ngx_str_t { len: uri.as_bytes().len(), data: uri.as_bytes().as_ptr().cast_mut() };
        let ps = nginx_sys::ngx_palloc(pool, mem::size_of::<ngx_http_post_subrequest_t>())
            .cast::<ngx_http_post_subrequest_t>()
            .as_mut()?;
        ps.handler = Some(done);
        ps.data = ptr::null_mut();

        let mut sr: *mut ngx_http_request_t = ptr::null_mut();
        let flags =
            nginx_sys::NGX_HTTP_SUBREQUEST_IN_MEMORY | nginx_sys::NGX_HTTP_SUBREQUEST_WAITED;
        let rc = nginx_sys::ngx_http_subrequest(
            raw(r),
            u,
            ptr::null_mut(),
            &mut sr,
            ps,
            flags as ngx_uint_t,
        );
        if rc != NGX_OK as ngx_int_t || sr.is_null() {
            return None;
        }
        // A fake, empty request body: the subrequest must never read or forward the client's.
        let body = nginx_sys::ngx_pcalloc(pool, mem::size_of::<ngx_http_request_body_t>());
        if body.is_null() {
            return None;
        }
        (*sr).request_body = body.cast();
        Some(Request::from_ngx_http_request(sr))
    }
}

/// Lets an in-memory subrequest whose output failed (nginx refuses a body larger than
/// `subrequest_output_buffer_size` with NGX_ERROR) end as a normal subrequest instead of taking
/// the main request down with it: nginx's output filter marks the shared client connection as
/// failed on any filter error, although the client was never written to; undo that, and drop
/// the output still buffered for the subrequest.
pub fn forgive_output_error(sr: &mut Request) {
    sr.as_mut().set_buffered(0);
    // SAFETY: a live request has a live connection.
    unsafe { (*sr.as_ref().connection).set_error(0) };
}

/// What a finished in-memory subrequest produced: the status (nginx's own 502 or 504 when the
/// upstream could not be reached) and the body it kept.
pub fn outcome(sr: &Request, rc: ngx_int_t) -> (ngx_uint_t, &[u8]) {
    let r = sr.as_ref();
    let status = if rc == NGX_ERROR as ngx_int_t {
        NGX_HTTP_BAD_GATEWAY as ngx_uint_t
    } else if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
        rc as ngx_uint_t
    } else if r.headers_out.status != 0 {
        r.headers_out.status
    } else {
        NGX_HTTP_BAD_GATEWAY as ngx_uint_t
    };
    // SAFETY: for in-memory subrequests nginx collects the body in one buffer at `out`.
    let body = unsafe {
        match r.out.as_ref().and_then(|c| c.buf.as_ref()) {
            Some(b) if !b.pos.is_null() && b.last >= b.pos => {
                slice::from_raw_parts(b.pos, b.last.offset_from(b.pos) as usize)
            }
            _ => &[],
        }
    };
    (status, body)
}

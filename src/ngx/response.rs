//! Answering a request: response headers, redirects, small complete responses, finalizing, and
//! suspending a request while the module waits for something.

use core::ptr;

use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_http_request_t, ngx_int_t, ngx_str_t, ngx_table_elt_t, ngx_uint_t,
    NGX_ERROR, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_OK,
};
use ngx::http::Request;

use super::pool::PoolStr;
use super::request::raw;

/// Adds a response header; the value is copied into the request pool.
pub fn add_header(r: &mut Request, name: &'static str, value: &[u8]) -> Option<()> {
    push_header(r, name, value).map(|_| ())
}

fn push_header(r: &mut Request, name: &'static str, value: &[u8]) -> Option<*mut ngx_table_elt_t> {
    let value = PoolStr::copy(r, value)?;
    let value =
        ngx_str_t { len: value.as_bytes().len(), data: value.as_bytes().as_ptr().cast_mut() };
    // SAFETY: `headers_out.headers` is the request's initialised list of ngx_table_elt_t; the
    // pushed element is filled completely.
    unsafe {
        let h = nginx_sys::ngx_list_push(&mut r.as_mut().headers_out.headers);
        let h = h.cast::<ngx_table_elt_t>().as_mut()?;
        h.hash = 1;
        h.key = ngx_str_t { len: name.len(), data: name.as_ptr().cast_mut() };
        h.value = value;
        h.lowcase_key = ptr::null_mut();
        #[cfg(ngx_cookie_list)]
        {
            h.next = ptr::null_mut();
        }
        Some(ptr::from_mut(h))
    }
}

/// Sets the `Location` of a redirect. Control characters, spaces and DEL are percent-encoded,
/// so nothing taken from a request (e.g. `$uri` in a configured URL) can end the header line or
/// add another header.
pub fn set_location(r: &mut Request, url: &[u8]) -> Option<()> {
    let mut safe = Vec::with_capacity(url.len());
    for &b in url {
        if b <= b' ' || b == 0x7f {
            safe.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            safe.push(b);
        }
    }
    let h = push_header(r, "Location", &safe)?;
    r.as_mut().headers_out.location = h;
    Some(())
}

/// Sends a complete small response (status, `Cache-Control: no-store`, body; other headers
/// added before) without finalizing: returns the code to finalize with (what a content
/// handler returns).
pub fn send_response(
    r: &mut Request,
    status: ngx_uint_t,
    content_type: &'static str,
    body: &[u8],
) -> ngx_int_t {
    let rc = r.discard_request_body().0;
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    if add_header(r, "Cache-Control", b"no-store").is_none() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    let main = r.is_main();
    let out = r.as_mut();
    out.headers_out.status = status;
    out.headers_out.content_type =
        ngx_str_t { len: content_type.len(), data: content_type.as_ptr().cast_mut() };
    out.headers_out.content_type_len = content_type.len();
    out.headers_out.content_length_n = body.len() as i64;

    let rc = r.send_header().0;
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || r.header_only() {
        return rc;
    }
    // SAFETY: a temporary buffer from the request pool, filled with `body` (it fits), then
    // passed to the output filters.
    unsafe {
        let b: *mut ngx_buf_t = nginx_sys::ngx_create_temp_buf(r.as_ref().pool, body.len().max(1));
        let Some(b) = b.as_mut() else { return NGX_ERROR as ngx_int_t };
        ptr::copy_nonoverlapping(body.as_ptr(), b.last, body.len());
        b.last = b.last.add(body.len());
        b.set_last_buf(u32::from(main));
        b.set_last_in_chain(1);
        let mut out = ngx_chain_t { buf: b, next: ptr::null_mut() };
        r.output_filter(&mut out).0
    }
}

/// Finalizes the request with `rc` (ends a suspended request, or one answered outside the
/// content phase).
pub fn finalize(r: &mut Request, rc: ngx_int_t) {
    // SAFETY: a live request.
    unsafe { nginx_sys::ngx_http_finalize_request(raw(r), rc) }
}

/// Answers from a phase before the content phase (e.g. the access phase): finalizes with `rc`
/// and returns what the phase handler must return to tell nginx the request is done.
pub fn answer_from_phase(r: &mut Request, rc: ngx_int_t) -> ngx_int_t {
    finalize(r, rc);
    nginx_sys::NGX_DONE as ngx_int_t
}

/// Keeps the main request alive across a suspension: a content handler that returns
/// `NGX_DONE` must have taken this extra reference, which nginx drops when it sees `NGX_DONE`.
pub fn hold(r: &mut Request) {
    // SAFETY: `main` is live; `count` is the main request's reference count.
    unsafe {
        let main = &mut *r.as_ref().main;
        main.set_count(main.count() + 1);
    }
}

/// The handler nginx calls when the request is woken (e.g. after a subrequest finished).
pub type WakeHandler = extern "C" fn(*mut ngx_http_request_t);

pub fn set_wake_handler(r: &mut Request, h: WakeHandler) {
    r.as_mut().write_event_handler = Some(h);
}

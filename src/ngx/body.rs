//! Reading the client's request body: in a content handler ([`read`]), or before the content
//! phase ([`read_in_phase`]) to decide on it; its bytes ([`bytes`]), and a replacement for what
//! is proxied ([`replace`]).

use core::slice;

use nginx_sys::{ngx_int_t, NGX_DONE, NGX_HTTP_SPECIAL_RESPONSE};

use ngx::http::Request;

use super::request::raw;
use super::response::WakeHandler;

/// Reads the whole request body (up to `client_max_body_size`), kept in memory in one buffer
/// where it fits, then calls `done`. Returns what the content handler returns (`NGX_DONE`, or
/// an error status).
pub fn read(r: &mut Request, done: WakeHandler) -> ngx_int_t {
    r.as_mut().set_request_body_in_single_buf(1);
    // SAFETY: nginx's body reading on a live request, from its content handler.
    let rc = unsafe { nginx_sys::ngx_http_read_client_request_body(raw(r), Some(done)) };
    if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
        return rc;
    }
    NGX_DONE as ngx_int_t
}

/// The request body once read, if it is in memory (`None` if absent, or in a temporary file).
pub fn in_memory(r: &Request) -> Option<Vec<u8>> {
    // SAFETY: `request_body` and its buffer chain belong to this request; buffers in memory
    // span `pos..last`.
    unsafe {
        let rb = r.as_ref().request_body.as_ref()?;
        if !rb.temp_file.is_null() {
            return None;
        }
        let mut out = Vec::new();
        let mut cl = rb.bufs;
        while let Some(c) = cl.as_ref() {
            if let Some(b) = c.buf.as_ref() {
                if b.in_file() != 0 {
                    return None;
                }
                if !b.pos.is_null() && b.last >= b.pos {
                    let len = b.last.offset_from(b.pos) as usize;
                    out.extend_from_slice(slice::from_raw_parts(b.pos, len));
                }
            }
            cl = c.next;
        }
        Some(out)
    }
}

/// Starts reading the body from a phase handler before the content phase (as nginx's mirror
/// module does): returns what the phase handler returns. When the body is read, `done` runs;
/// it calls [`continue_phases`] to go on where the phase engine stopped (the same handler runs
/// again and finds the body read).
pub fn read_in_phase(r: &mut Request, done: WakeHandler) -> ngx_int_t {
    // SAFETY: nginx's body reading on a live main request, from a phase handler.
    let rc = unsafe { nginx_sys::ngx_http_read_client_request_body(raw(r), Some(done)) };
    if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
        return rc;
    }
    // The reading holds a reference to the request; the phase handler's suspension drops one.
    super::response::finalize(r, NGX_DONE as ngx_int_t);
    NGX_DONE as ngx_int_t
}

/// After [`read_in_phase`]: keeps the body for the content phase and runs the phases again.
pub fn continue_phases(r: &mut Request) {
    r.as_mut().set_preserve_body(1);
    r.as_mut().write_event_handler = Some(nginx_sys::ngx_http_core_run_phases);
    // SAFETY: a live request whose body was read; the phase engine resumes at the handler that
    // started the reading.
    unsafe { nginx_sys::ngx_http_core_run_phases(raw(r)) }
}

/// Why a request body could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the body's temporary file cannot be read {}", super::conf::io_reason(.0))]
    File(std::io::Error),
}

/// The request body once read, from memory or nginx's temporary file (a local file: one read,
/// bounded by `limit`); empty when there is none.
pub fn bytes(r: &Request, limit: usize) -> Result<Vec<u8>, BodyError> {
    use std::os::unix::fs::FileExt;
    let mut out = Vec::new();
    // SAFETY: `request_body` and its buffer chain belong to this request; a buffer is in
    // memory (`pos..last`) or in the request body's temporary file (`file_pos..file_last` of
    // `file`, whose descriptor stays open as long as the request).
    unsafe {
        let Some(rb) = r.as_ref().request_body.as_ref() else { return Ok(out) };
        let mut cl = rb.bufs;
        while let Some(c) = cl.as_ref() {
            if let Some(b) = c.buf.as_ref() {
                if b.in_file() != 0 {
                    let f = b.file.as_ref().ok_or(BodyError::TooLarge(limit))?;
                    let len = usize::try_from(b.file_last - b.file_pos).unwrap_or(usize::MAX);
                    if out.len().saturating_add(len) > limit {
                        return Err(BodyError::TooLarge(limit));
                    }
                    let start = out.len();
                    out.resize(start + len, 0);
                    // Not std::fs::File::from_raw_fd: nginx owns the descriptor.
                    let file = core::mem::ManuallyDrop::new(
                        <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(f.fd),
                    );
                    file.read_exact_at(&mut out[start..], b.file_pos as u64)
                        .map_err(BodyError::File)?;
                } else if !b.pos.is_null() && b.last >= b.pos {
                    let len = b.last.offset_from(b.pos) as usize;
                    if out.len().saturating_add(len) > limit {
                        return Err(BodyError::TooLarge(limit));
                    }
                    out.extend_from_slice(slice::from_raw_parts(b.pos, len));
                }
            }
            cl = c.next;
        }
    }
    Ok(out)
}

/// Replaces the request body that will be proxied with `body` (one buffer in the request pool)
/// and its length. nginx's proxy module sends `Content-Length` from `content_length_n`.
pub fn replace(r: &mut Request, body: &[u8]) -> Option<()> {
    let pool = r.as_ref().pool;
    let copy = super::pool::PoolStr::copy(r, body)?;
    let (data, len) = (copy.as_bytes().as_ptr().cast_mut(), body.len());
    let len_text = super::pool::PoolStr::copy(r, len.to_string().as_bytes())?;
    // SAFETY: pool allocations for a buffer and a chain link, filled before they are linked
    // into the request body (which nginx reads when the proxy sends it).
    unsafe {
        let rb = r.as_mut().request_body.as_mut()?;
        let b = nginx_sys::ngx_pcalloc(pool, core::mem::size_of::<nginx_sys::ngx_buf_t>())
            .cast::<nginx_sys::ngx_buf_t>()
            .as_mut()?;
        b.pos = data;
        b.last = data.add(len);
        b.start = b.pos;
        b.end = b.last;
        b.set_memory(1);
        b.set_last_buf(1);
        b.set_last_in_chain(1);
        let cl = nginx_sys::ngx_alloc_chain_link(pool).as_mut()?;
        cl.buf = b;
        cl.next = core::ptr::null_mut();
        rb.bufs = cl;
        r.as_mut().headers_in.content_length_n = i64::try_from(len).ok()?;
        if let Some(h) = r.as_mut().headers_in.content_length.as_mut() {
            let text = len_text.as_bytes();
            h.value = nginx_sys::ngx_str_t { len: text.len(), data: text.as_ptr().cast_mut() };
        }
    }
    Some(())
}

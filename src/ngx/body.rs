//! Reading the client's request body before answering.

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

//! The module's place in nginx's output filter chains, and what a header filter may change.
//!
//! nginx calls the filters of the last module registered first; each calls the next. The
//! module keeps the next one in a static set once in `postconfiguration` (nginx is single
//! threaded per process; configuration happens before any request).

use core::ptr;

use nginx_sys::{
    ngx_http_output_header_filter_pt, ngx_http_request_t, ngx_int_t, ngx_table_elt_t, NGX_ERROR,
};
use ngx::http::Request;

static mut NEXT_HEADER_FILTER: ngx_http_output_header_filter_pt = None;

/// The signature of a header filter (`ngx_entry!(header_filter ...)` defines one).
pub type HeaderFilter = unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t;

/// Puts `filter` at the head of the header filter chain (in `postconfiguration`).
pub fn install_header_filter(filter: HeaderFilter) {
    // SAFETY: configuration time, single-threaded; nginx's own modules do the same.
    unsafe {
        NEXT_HEADER_FILTER = nginx_sys::ngx_http_top_header_filter;
        nginx_sys::ngx_http_top_header_filter = Some(filter);
    }
}

/// Calls the next header filter.
pub fn next_header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: set once at configuration time; `r` is the request nginx passed to our filter.
    match unsafe { *ptr::addr_of!(NEXT_HEADER_FILTER) } {
        // SAFETY: nginx's next filter, called as nginx calls filters.
        Some(next) => unsafe { next(r) },
        None => NGX_ERROR as ngx_int_t,
    }
}

/// Removes every response header called `name` (case-insensitive), the way nginx deletes
/// headers (`hash = 0`: skipped when the header is written).
pub fn take_response_headers(r: &mut Request, name: &str) {
    let mut part = ptr::addr_of_mut!(r.as_mut().headers_out.headers.part);
    // SAFETY: the request's list of response headers: parts chained through `next`, each with
    // `nelts` initialised ngx_table_elt_t.
    unsafe {
        while let Some(p) = part.as_mut() {
            for i in 0..p.nelts {
                let h = &mut *p.elts.cast::<ngx_table_elt_t>().add(i);
                if h.hash != 0 && h.key.as_bytes().eq_ignore_ascii_case(name.as_bytes()) {
                    h.hash = 0;
                }
            }
            part = p.next;
        }
    }
}

/// The values of every response header called `name` (case-insensitive).
pub fn response_headers<'r>(r: &'r Request, name: &str) -> Vec<&'r [u8]> {
    let mut out = Vec::new();
    let mut part = &r.as_ref().headers_out.headers.part;
    loop {
        // SAFETY: `elts` holds `nelts` initialised ngx_table_elt_t.
        let elts =
            unsafe { core::slice::from_raw_parts(part.elts.cast::<ngx_table_elt_t>(), part.nelts) };
        for h in elts {
            if h.hash != 0 && h.key.as_bytes().eq_ignore_ascii_case(name.as_bytes()) {
                out.push(h.value.as_bytes());
            }
        }
        // SAFETY: list parts end with NULL.
        match unsafe { part.next.as_ref() } {
            Some(next) => part = next,
            None => return out,
        }
    }
}

/// The response's content type as set so far.
pub fn content_type(r: &Request) -> &[u8] {
    r.as_ref().headers_out.content_type.as_bytes()
}

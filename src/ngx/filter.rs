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

static mut NEXT_BODY_FILTER: nginx_sys::ngx_http_output_body_filter_pt = None;

/// The signature of a body filter (`ngx_entry!(body_filter ...)` defines one).
pub type BodyFilter =
    unsafe extern "C" fn(*mut ngx_http_request_t, *mut nginx_sys::ngx_chain_t) -> ngx_int_t;

/// Puts `filter` at the head of the body filter chain (in `postconfiguration`).
pub fn install_body_filter(filter: BodyFilter) {
    // SAFETY: configuration time, single-threaded; nginx's own modules do the same.
    unsafe {
        NEXT_BODY_FILTER = nginx_sys::ngx_http_top_body_filter;
        nginx_sys::ngx_http_top_body_filter = Some(filter);
    }
}

/// Calls the next body filter with `chain` (NULL: nothing new, only a flush of what waits).
/// Takes a shared reference: the module may still hold request-pool values of `r` (nginx's
/// filters work on the C request, which Rust code here holds no `&mut` into during the call,
/// as `ngx::http::Request`'s own methods do it).
pub fn next_body_filter(r: &Request, chain: Chain) -> ngx_int_t {
    // SAFETY: set once at configuration time; the chain is the one we were given, or one made
    // by `Chain::of` from the request pool.
    match unsafe { *ptr::addr_of!(NEXT_BODY_FILTER) } {
        // SAFETY: nginx's next filter, called as nginx calls filters.
        Some(next) => unsafe { next(ptr::from_ref(r.as_ref()).cast_mut(), chain.0) },
        None => NGX_ERROR as ngx_int_t,
    }
}

/// A chain of buffers passed to a body filter.
#[derive(Clone, Copy)]
pub struct Chain(pub(crate) *mut nginx_sys::ngx_chain_t);

/// One buffer of a chain, as a body filter sees it.
pub struct Buf<'a> {
    /// Its bytes, when it is in memory; `None` for a buffer in a file (an upstream's answer
    /// buffered to a temporary file).
    pub bytes: Option<&'a [u8]>,
    pub last_buf: bool,
}

/// The buffers of a [`Chain`].
pub struct Bufs<'a> {
    next: *mut nginx_sys::ngx_chain_t,
    _chain: core::marker::PhantomData<&'a Chain>,
}

impl<'a> Iterator for Bufs<'a> {
    type Item = Buf<'a>;

    fn next(&mut self) -> Option<Buf<'a>> {
        // SAFETY: a chain nginx passed to our filter: links and buffers of the request, memory
        // buffers spanning `pos..last`; alive while the filter runs (the borrow of the Chain).
        unsafe {
            while let Some(c) = self.next.as_ref() {
                self.next = c.next;
                let Some(b) = c.buf.as_ref() else { continue };
                let bytes =
                    if b.in_file() != 0 && b.temporary() == 0 && b.memory() == 0 && b.mmap() == 0 {
                        None
                    } else if b.pos.is_null() || b.last < b.pos {
                        Some(&[][..])
                    } else {
                        Some(core::slice::from_raw_parts(b.pos, b.last.offset_from(b.pos) as usize))
                    };
                return Some(Buf { bytes, last_buf: b.last_buf() != 0 });
            }
        }
        None
    }
}

impl Chain {
    /// The bytes of a chain of one buffer in memory that does not end the answer: how a
    /// streamed answer comes, one upstream read at a time (the fast path of a filter).
    #[inline]
    pub fn single(&self) -> Option<&[u8]> {
        let mut bufs = self.bufs();
        let b = bufs.next()?;
        // SAFETY: as in `Bufs::next`: the chain's first link, alive while the filter runs.
        let one = unsafe { (*self.0).next.is_null() };
        (one && !b.last_buf).then_some(b.bytes).flatten()
    }

    /// The buffers, in order (walked lazily: no allocation per call).
    pub fn bufs(&self) -> Bufs<'_> {
        Bufs { next: self.0, _chain: core::marker::PhantomData }
    }

    /// Marks every memory buffer as consumed (its bytes were taken: the upstream may reuse it).
    pub fn consume(&self) {
        let mut cl = self.0;
        // SAFETY: as in `bufs`; only `pos` moves, to `last`.
        unsafe {
            while let Some(c) = cl.as_ref() {
                if let Some(b) = c.buf.as_mut() {
                    if b.in_file() == 0 || b.temporary() != 0 || b.memory() != 0 {
                        b.pos = b.last;
                    }
                    if b.in_file() != 0 {
                        b.file_pos = b.file_last;
                    }
                }
                cl = c.next;
            }
        }
    }

    /// A new chain of one buffer holding `pieces` (copied into the request pool), flushed, and
    /// the last of the answer if `last`.
    pub fn of(r: &Request, pieces: &[&[u8]], last: bool) -> Option<Chain> {
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        let pool = r.as_ref().pool;
        // SAFETY: a temporary buffer and a chain link from the request pool, filled before they
        // are handed on.
        unsafe {
            let b = nginx_sys::ngx_create_temp_buf(pool, len.max(1)).as_mut()?;
            for p in pieces {
                ptr::copy_nonoverlapping(p.as_ptr(), b.last, p.len());
                b.last = b.last.add(p.len());
            }
            if len == 0 {
                b.set_temporary(0);
                b.set_sync(1);
            }
            b.set_flush(1);
            b.set_last_buf(u32::from(last));
            b.set_last_in_chain(u32::from(last));
            let cl = nginx_sys::ngx_alloc_chain_link(pool).as_mut()?;
            cl.buf = b;
            cl.next = ptr::null_mut();
            Some(Chain(cl))
        }
    }

    pub fn is_null(&self) -> bool {
        self.0.is_null()
    }

    /// This chain (of one link, as [`Chain::of`] makes) followed by `next`.
    pub fn then(self, next: Chain) -> Chain {
        // SAFETY: a link of the request pool; only its `next` is set.
        if let Some(cl) = unsafe { self.0.as_mut() } {
            cl.next = next.0;
        }
        self
    }
}

/// Makes the response length unknown (the body will differ from what the upstream announced):
/// nginx then sends it chunked (HTTP/1.1) or until the connection closes.
pub fn clear_content_length(r: &mut Request) {
    let out = &mut r.as_mut().headers_out;
    out.content_length_n = -1;
    // SAFETY: NULL or the response's Content-Length header entry.
    if let Some(h) = unsafe { out.content_length.as_mut() } {
        h.hash = 0;
    }
    out.content_length = ptr::null_mut();
}

/// The response's `Content-Encoding`, if one is set.
pub fn content_encoding(r: &Request) -> Option<&[u8]> {
    // SAFETY: NULL or the response's Content-Encoding header entry.
    unsafe { r.as_ref().headers_out.content_encoding.as_ref() }
        .filter(|h| h.hash != 0)
        .map(|h| h.value.as_bytes())
}

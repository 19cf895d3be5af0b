//! The thin layer over raw nginx FFI: small safe wrappers used by the rest of the module.
//! All `unsafe` that touches nginx structures lives here (plus the module tables in `lib.rs`).

use core::ffi::c_void;
use core::panic::AssertUnwindSafe;
use core::{mem, ptr, slice};

use nginx_sys::{
    ngx_array_t, ngx_buf_t, ngx_chain_t, ngx_conf_t, ngx_http_complex_value_t,
    ngx_http_core_loc_conf_t, ngx_http_err_page_t, ngx_http_request_t, ngx_int_t, ngx_list_part_t,
    ngx_module_t, ngx_str_t, ngx_table_elt_t, ngx_uint_t, NGX_ERROR, NGX_HTTP_HEAD,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleServerConf, NgxHttpCoreModule};

/// Runs `f`, turning a panic into `on_panic` so that no unwinding ever crosses into nginx.
/// The panic itself is logged by the hook installed in `init_process`.
#[inline]
pub fn guard<R>(on_panic: R, f: impl FnOnce() -> R) -> R {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

/// The current time (nginx's cached clock, updated once per event loop iteration).
#[inline]
pub fn now() -> u64 {
    // SAFETY: ngx_cached_time always points at a valid slot once nginx has started.
    let sec = unsafe { ptr::read_volatile(ptr::addr_of!((*nginx_sys::ngx_cached_time).sec)) };
    u64::try_from(sec).unwrap_or(0)
}

/// Configuration directive arguments (`args[0]` is the directive name).
pub fn conf_args(cf: &ngx_conf_t) -> &[ngx_str_t] {
    // SAFETY: cf.args is an array of ngx_str_t while a directive is being parsed.
    unsafe { cf.args.as_ref().map(|a| a.as_slice()).unwrap_or_default() }
}

/// `file:line` of the directive being parsed.
pub fn conf_source(cf: &ngx_conf_t) -> (String, usize) {
    // SAFETY: conf_file is valid while parsing.
    unsafe {
        match cf.conf_file.as_ref() {
            Some(f) => (String::from_utf8_lossy(f.file.name.as_bytes()).into_owned(), f.line),
            None => (String::new(), 0),
        }
    }
}

/// Resolves a path relative to nginx's configuration prefix, as nginx does for its own files.
pub fn conf_full_path(cf: &mut ngx_conf_t, name: &[u8]) -> Option<String> {
    let mut s = ngx_str_t { len: name.len(), data: name.as_ptr().cast_mut() };
    // SAFETY: ngx_conf_full_name allocates the result from the cycle pool; it does not write
    // through the original data pointer.
    let rc = unsafe { nginx_sys::ngx_conf_full_name(cf.cycle, &mut s, 1) };
    if rc != NGX_OK as ngx_int_t {
        return None;
    }
    Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
}

/// Iterates over the request headers as (lower-case name, value).
pub fn request_headers(r: &ngx_http_request_t) -> impl Iterator<Item = (&[u8], &[u8])> {
    HeaderIter { part: &r.headers_in.headers.part, idx: 0 }
}

struct HeaderIter<'a> {
    part: &'a ngx_list_part_t,
    idx: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.idx >= self.part.nelts {
                // SAFETY: list parts are chained through `next` and end with NULL.
                self.part = unsafe { self.part.next.as_ref()? };
                self.idx = 0;
                continue;
            }
            // SAFETY: elts holds nelts initialised ngx_table_elt_t entries.
            let h = unsafe { &*self.part.elts.cast::<ngx_table_elt_t>().add(self.idx) };
            self.idx += 1;
            if h.hash == 0 || h.lowcase_key.is_null() {
                continue; // removed header
            }
            // SAFETY: lowcase_key has key.len bytes.
            let name = unsafe { slice::from_raw_parts(h.lowcase_key, h.key.len) };
            return Some((name, h.value.as_bytes()));
        }
    }
}

/// Is this the main request (not a subrequest)?
pub fn is_main(r: &ngx_http_request_t) -> bool {
    ptr::eq(r, r.main)
}

/// The main request of `r`.
pub fn main_request(r: &ngx_http_request_t) -> &ngx_http_request_t {
    // SAFETY: r.main is the main request, alive as long as any of its subrequests.
    unsafe { &*r.main }
}

pub fn is_get_or_head(r: &ngx_http_request_t) -> bool {
    r.method & (nginx_sys::NGX_HTTP_GET | NGX_HTTP_HEAD) as ngx_uint_t != 0
}

/// Whether the client connection uses TLS.
pub fn is_https(r: &ngx_http_request_t) -> bool {
    // SAFETY: a live request has a live connection.
    unsafe { !(*r.connection).ssl.is_null() }
}

/// The `Host` header as sent (with port), falling back to the server name.
pub fn host(r: &ngx_http_request_t) -> &[u8] {
    // SAFETY: headers_in.host is NULL or a header of this request.
    if let Some(h) = unsafe { r.headers_in.host.as_ref() } {
        return h.value.as_bytes();
    }
    r.headers_in.server.as_bytes()
}

/// The primary `server_name` of the server handling the request (not a regex or wildcard).
pub fn server_name(r: &ngx_http_request_t) -> Option<String> {
    let cscf: &nginx_sys::ngx_http_core_srv_conf_t = NgxHttpCoreModule::server_conf(r)?;
    let name = cscf.server_name.as_bytes();
    if name.is_empty() || name.starts_with(b"~") || name.contains(&b'*') || name == b"_" {
        return None;
    }
    Some(String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// The request line's URI as the client sent it (path and query).
pub fn unparsed_uri(r: &ngx_http_request_t) -> &[u8] {
    r.unparsed_uri.as_bytes()
}

/// Evaluates a complex value (a directive argument with variables).
pub fn complex_value<'r>(
    r: &'r mut ngx_http_request_t,
    cv: &ngx_http_complex_value_t,
) -> Option<&'r [u8]> {
    let mut out = ngx_str_t::default();
    // SAFETY: cv was compiled at configuration time; the result lives in the request pool.
    let rc =
        unsafe { nginx_sys::ngx_http_complex_value(r, ptr::from_ref(cv).cast_mut(), &mut out) };
    (rc == NGX_OK as ngx_int_t).then(|| {
        // SAFETY: `out` points into the request pool, which outlives the borrow of `r`.
        unsafe { slice::from_raw_parts(out.data, out.len) }
    })
}

/// Copies bytes into the request pool, for a value that must live as long as the request.
pub fn pool_bytes(r: &ngx_http_request_t, bytes: &[u8]) -> Option<&'static [u8]> {
    let s = pool_copy(r, bytes)?;
    // SAFETY: pool memory of `s.len` bytes, alive until the request ends.
    Some(unsafe { slice::from_raw_parts(s.data, s.len) })
}

/// Copies bytes into the request pool.
fn pool_copy(r: &ngx_http_request_t, bytes: &[u8]) -> Option<ngx_str_t> {
    // SAFETY: allocation from the request pool; the copy fits.
    unsafe {
        let p = nginx_sys::ngx_pnalloc(r.pool, bytes.len().max(1)).cast::<u8>();
        if p.is_null() {
            return None;
        }
        ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
        Some(ngx_str_t { len: bytes.len(), data: p })
    }
}

/// Adds a response header.
pub fn add_response_header(
    r: &mut ngx_http_request_t,
    name: &'static str,
    value: &[u8],
) -> Option<*mut ngx_table_elt_t> {
    let value = pool_copy(r, value)?;
    // SAFETY: headers_out.headers is an initialised list of ngx_table_elt_t.
    unsafe {
        let h = nginx_sys::ngx_list_push(&mut r.headers_out.headers).cast::<ngx_table_elt_t>();
        let h = h.as_mut()?;
        h.hash = 1;
        h.key = ngx_str_t { len: name.len(), data: name.as_ptr().cast_mut() };
        h.value = value;
        h.lowcase_key = ptr::null_mut();
        Some(h)
    }
}

/// Sets the `Location` header of a redirect. Control characters, spaces and DEL are
/// percent-encoded, so nothing taken from a request (e.g. `$uri` in a configured URL) can end
/// the header line or add another header.
pub fn set_location(r: &mut ngx_http_request_t, url: &[u8]) -> Option<()> {
    let mut safe = Vec::with_capacity(url.len());
    for &b in url {
        if b <= b' ' || b == 0x7f {
            safe.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            safe.push(b);
        }
    }
    let h = add_response_header(r, "Location", &safe)?;
    r.headers_out.location = h;
    Some(())
}

/// Whether an `error_page` for `status` applies in this location (then nginx should produce the
/// response, not the module).
pub fn has_error_page(r: &ngx_http_request_t, status: ngx_uint_t) -> bool {
    let Some(clcf) = NgxHttpCoreModule::location_conf(r) else { return false };
    let clcf: &ngx_http_core_loc_conf_t = clcf;
    // SAFETY: error_pages is NULL or an array of ngx_http_err_page_t.
    let Some(pages) = (unsafe { clcf.error_pages.as_ref() }) else { return false };
    let pages: &ngx_array_t = pages;
    // SAFETY: see above.
    unsafe { pages.as_slice::<ngx_http_err_page_t>() }
        .iter()
        .any(|p| p.status as ngx_uint_t == status)
}

/// Sends a complete small response (status, body; headers added before) without finalizing:
/// returns the code to finalize the request with (a content handler returns it).
pub fn send_response(
    r: &mut ngx_http_request_t,
    status: ngx_uint_t,
    content_type: &'static str,
    body: &[u8],
) -> ngx_int_t {
    // SAFETY: plain nginx response API on a live request.
    unsafe {
        let rc = nginx_sys::ngx_http_discard_request_body(r);
        if rc != NGX_OK as ngx_int_t {
            return rc;
        }
        if add_response_header(r, "Cache-Control", b"no-store").is_none() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
        r.headers_out.status = status;
        r.headers_out.content_type =
            ngx_str_t { len: content_type.len(), data: content_type.as_ptr().cast_mut() };
        r.headers_out.content_type_len = content_type.len();
        r.headers_out.content_length_n = body.len() as i64;

        let rc = nginx_sys::ngx_http_send_header(r);
        if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || r.header_only() != 0 {
            return rc;
        }

        let b: *mut ngx_buf_t = nginx_sys::ngx_create_temp_buf(r.pool, body.len().max(1));
        let Some(b) = b.as_mut() else { return NGX_ERROR as ngx_int_t };
        ptr::copy_nonoverlapping(body.as_ptr(), b.last, body.len());
        b.last = b.last.add(body.len());
        b.set_last_buf(if is_main(r) { 1 } else { 0 });
        b.set_last_in_chain(1);
        let mut out = ngx_chain_t { buf: b, next: ptr::null_mut() };
        nginx_sys::ngx_http_output_filter(r, &mut out)
    }
}

/// Finalizes the request with `rc` (ends a request that was suspended, or one answered from a
/// phase other than the content phase).
pub fn finalize(r: &mut ngx_http_request_t, rc: ngx_int_t) {
    // SAFETY: live request.
    unsafe { nginx_sys::ngx_http_finalize_request(r, rc) }
}

/// Keeps the main request alive across a suspension: a content handler that returns `NGX_DONE`
/// must have taken this extra reference, which nginx drops when it sees `NGX_DONE`.
pub fn hold(r: &mut ngx_http_request_t) {
    // SAFETY: r.main is live; count is the main request's reference count.
    unsafe {
        let main = &mut *r.main;
        main.set_count(main.count() + 1);
    }
}

/// Sets the handler nginx calls when the request is woken (e.g. after a subrequest finished).
pub fn set_wake_handler(r: &mut ngx_http_request_t, h: extern "C" fn(*mut ngx_http_request_t)) {
    // Wrap to the exact C signature nginx stores.
    r.write_event_handler = Some(h);
}

/// Allocates `value` on the heap, owned by the request pool: dropped when the request ends.
pub fn pool_box<T>(r: &ngx_http_request_t, value: T) -> Option<&'static mut T> {
    unsafe extern "C" fn drop_box<T>(data: *mut c_void) {
        // SAFETY: `data` came from Box::into_raw below and is dropped exactly once.
        drop(unsafe { Box::from_raw(data.cast::<T>()) });
    }
    let raw = Box::into_raw(Box::new(value));
    // SAFETY: registering a cleanup on the live request pool.
    unsafe {
        let Some(cln) = nginx_sys::ngx_pool_cleanup_add(r.pool, 0).as_mut() else {
            drop(Box::from_raw(raw));
            return None;
        };
        cln.handler = Some(drop_box::<T>);
        cln.data = raw.cast();
        Some(&mut *raw)
    }
}

/// A pool cleanup used as a mark: its handler identifies it, its data holds a value.
pub type Mark = unsafe extern "C" fn(*mut c_void);

/// Attaches a value to the request's pool under `mark`. Unlike module contexts, it survives
/// internal redirects.
pub fn pool_mark<T: Copy>(r: &ngx_http_request_t, mark: Mark, value: T) -> Option<&'static mut T> {
    // SAFETY: a cleanup with room for T (pool allocations are NGX_ALIGNMENT aligned, enough for
    // plain data); the no-op handler only marks it.
    unsafe {
        debug_assert!(mem::align_of::<T>() <= nginx_sys::NGX_ALIGNMENT);
        let cln = nginx_sys::ngx_pool_cleanup_add(r.pool, mem::size_of::<T>()).as_mut()?;
        let slot = cln.data.cast::<T>();
        ptr::write(slot, value);
        cln.handler = Some(mark);
        slot.as_mut()
    }
}

/// The value attached under `mark`, if any.
pub fn pool_find_mark<T: Copy>(r: &ngx_http_request_t, mark: Mark) -> Option<&'static mut T> {
    // SAFETY: walks the pool's cleanup list; entries with our mark hold a T (see pool_mark).
    unsafe {
        let mut c = (*r.pool).cleanup;
        while let Some(cln) = c.as_ref() {
            if cln.handler.is_some_and(|h| core::ptr::fn_addr_eq(h, mark)) {
                return cln.data.cast::<T>().as_mut();
            }
            c = cln.next;
        }
        None
    }
}

/// Post-subrequest callback signature.
pub type PostSubrequest =
    unsafe extern "C" fn(*mut ngx_http_request_t, *mut c_void, ngx_int_t) -> ngx_int_t;

/// Starts an in-memory subrequest to `uri` (an internal location): its response body is kept in
/// memory (up to `subrequest_output_buffer_size`) for `done`, called with `data` when it ends.
/// The parent is woken afterwards through its write event handler.
pub fn start_subrequest(
    r: &mut ngx_http_request_t,
    uri: &str,
    done: PostSubrequest,
    data: *mut c_void,
) -> Option<&'static mut ngx_http_request_t> {
    // SAFETY: allocations from the request pool; ngx_http_subrequest as nginx's own
    // auth_request module uses it.
    unsafe {
        let uri = pool_copy(r, uri.as_bytes())?;
        let uri = nginx_sys::ngx_palloc(r.pool, mem::size_of::<ngx_str_t>())
            .cast::<ngx_str_t>()
            .as_mut()
            .map(|p| {
                *p = uri;
                p
            })?;
        let ps =
            nginx_sys::ngx_palloc(r.pool, mem::size_of::<nginx_sys::ngx_http_post_subrequest_t>())
                .cast::<nginx_sys::ngx_http_post_subrequest_t>()
                .as_mut()?;
        ps.handler = Some(done);
        ps.data = data;

        let mut sr: *mut ngx_http_request_t = ptr::null_mut();
        let rc = nginx_sys::ngx_http_subrequest(
            r,
            uri,
            ptr::null_mut(),
            &mut sr,
            ps,
            (nginx_sys::NGX_HTTP_SUBREQUEST_IN_MEMORY | nginx_sys::NGX_HTTP_SUBREQUEST_WAITED)
                as ngx_uint_t,
        );
        if rc != NGX_OK as ngx_int_t {
            return None;
        }
        let sr = sr.as_mut()?;
        // A fake, empty request body: the subrequest must never read or forward the client's.
        sr.request_body =
            nginx_sys::ngx_pcalloc(r.pool, mem::size_of::<nginx_sys::ngx_http_request_body_t>())
                .cast();
        if sr.request_body.is_null() {
            return None;
        }
        Some(sr)
    }
}

/// Lets an in-memory subrequest whose output failed (nginx refuses a body larger than
/// `subrequest_output_buffer_size` with NGX_ERROR) end as a normal subrequest instead of taking
/// the main request down with it: nginx's output filter marks the shared client connection as
/// failed (`c->error`) on any filter error, although the client was never written to; undo that,
/// and drop the output still buffered for the subrequest.
pub fn forgive_subrequest_output_error(sr: &mut ngx_http_request_t) {
    sr.set_buffered(0);
    // SAFETY: a live request has a live connection.
    unsafe { (*sr.connection).set_error(0) };
}

/// Whether the request's connection is marked as failed.
pub fn connection_error(r: &ngx_http_request_t) -> bool {
    // SAFETY: a live request has a live connection.
    unsafe { (*r.connection).error() != 0 }
}

/// What an in-memory subrequest produced.
pub struct SubrequestResult<'a> {
    pub status: ngx_uint_t,
    pub body: &'a [u8],
}

/// Reads the outcome of a finished in-memory subrequest (`rc` as passed to the post handler).
pub fn subrequest_result(sr: &ngx_http_request_t, rc: ngx_int_t) -> SubrequestResult<'_> {
    let status = if rc == NGX_ERROR as ngx_int_t {
        nginx_sys::NGX_HTTP_BAD_GATEWAY as ngx_uint_t
    } else if rc >= nginx_sys::NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
        rc as ngx_uint_t
    } else if sr.headers_out.status != 0 {
        sr.headers_out.status
    } else {
        nginx_sys::NGX_HTTP_BAD_GATEWAY as ngx_uint_t
    };
    // SAFETY: for in-memory subrequests nginx collects the body in one buffer at sr.out.
    let body = unsafe {
        match sr.out.as_ref().and_then(|c| c.buf.as_ref()) {
            Some(b) if !b.pos.is_null() && b.last >= b.pos => {
                slice::from_raw_parts(b.pos, b.last.offset_from(b.pos) as usize)
            }
            _ => &[],
        }
    };
    SubrequestResult { status, body }
}

/// Whether a proxied (sub)request's response body ended before its announced end: the
/// upstream closed the connection before `Content-Length` bytes or the last chunk arrived. nginx
/// ends an in-memory subrequest normally in that case, with what it got.
pub fn upstream_cut_off(r: &ngx_http_request_t) -> bool {
    // SAFETY: `upstream` is null or the request's upstream, and `pipe` null or its event pipe,
    // both from the request's pool. The body is read through the pipe (in-memory subrequests
    // go through the output filters); its `length` is what the upstream module still expects
    // (0 once the body is complete, -1 for a body that ends with the connection).
    unsafe { r.upstream.as_ref().and_then(|u| u.pipe.as_ref()).is_some_and(|p| p.length > 0) }
}

/// First response header called `name` (case-insensitive) of a (sub)request.
pub fn response_header<'a>(r: &'a ngx_http_request_t, name: &str) -> Option<&'a [u8]> {
    let mut part = &r.headers_out.headers.part;
    loop {
        for i in 0..part.nelts {
            // SAFETY: elts holds nelts ngx_table_elt_t entries.
            let h = unsafe { &*part.elts.cast::<ngx_table_elt_t>().add(i) };
            if h.hash != 0 && h.key.as_bytes().eq_ignore_ascii_case(name.as_bytes()) {
                return Some(h.value.as_bytes());
            }
        }
        // SAFETY: list parts end with NULL.
        part = unsafe { part.next.as_ref()? };
    }
}

/// Reads the whole client request body (up to `client_max_body_size`), then calls `done`.
/// Returns what the content handler should return (`NGX_DONE`, or an error status).
pub fn read_request_body(
    r: &mut ngx_http_request_t,
    done: extern "C" fn(*mut ngx_http_request_t),
) -> ngx_int_t {
    // Keep the body in memory: it is a small form.
    r.set_request_body_in_single_buf(1);
    // SAFETY: standard body reading on a live request.
    let rc = unsafe { nginx_sys::ngx_http_read_client_request_body(r, Some(done)) };
    if rc >= nginx_sys::NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
        return rc;
    }
    nginx_sys::NGX_DONE as ngx_int_t
}

/// The client request body once read (in memory), or `None` if it went to a file or is absent.
pub fn request_body(r: &ngx_http_request_t) -> Option<Vec<u8>> {
    // SAFETY: request_body and its buffer chain belong to this request.
    unsafe {
        let rb = r.request_body.as_ref()?;
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
                    out.extend_from_slice(slice::from_raw_parts(
                        b.pos,
                        b.last.offset_from(b.pos) as usize,
                    ));
                }
            }
            cl = c.next;
        }
        Some(out)
    }
}

/// The request's query string (without `?`).
pub fn args(r: &ngx_http_request_t) -> &[u8] {
    r.args.as_bytes()
}

/// Whether the request method is POST.
pub fn is_post(r: &ngx_http_request_t) -> bool {
    r.method & nginx_sys::NGX_HTTP_POST as ngx_uint_t != 0
}

/// The per-request context slot of `module` on request `r`.
pub fn request_ctx<T>(r: &ngx_http_request_t, module: &ngx_module_t) -> Option<&'static mut T> {
    // SAFETY: r.ctx has one slot per module; the slot is NULL or a T set by `set_request_ctx`,
    // allocated from the request pool (valid for the request's lifetime).
    unsafe { (*r.ctx.add(module.ctx_index)).cast::<T>().as_mut() }
}

/// Allocates a zeroed `T` in the request pool and stores it as the module's context.
/// `T` must be valid when all-zero (plain data).
pub fn new_request_ctx<T: Copy>(
    r: &ngx_http_request_t,
    module: &ngx_module_t,
    value: T,
) -> Option<&'static mut T> {
    // SAFETY: pool allocation sized and aligned for T (pool allocations are NGX_ALIGNMENT
    // aligned, which covers T's alignment for plain data); stored in our own ctx slot.
    unsafe {
        debug_assert!(mem::align_of::<T>() <= nginx_sys::NGX_ALIGNMENT);
        let p = nginx_sys::ngx_palloc(r.pool, mem::size_of::<T>()).cast::<T>();
        let slot = p.as_mut()?;
        ptr::write(slot, value);
        *r.ctx.add(module.ctx_index) = p.cast::<c_void>();
        Some(slot)
    }
}

/// Sets a variable value to bytes that live at least as long as the request.
pub fn set_variable(v: &mut nginx_sys::ngx_variable_value_t, bytes: &[u8]) {
    v.set_valid(1);
    v.set_no_cacheable(0);
    v.set_not_found(0);
    v.set_len(bytes.len() as u32);
    v.data = bytes.as_ptr().cast_mut();
}

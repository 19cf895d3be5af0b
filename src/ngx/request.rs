//! What the module reads from a request, as methods on `ngx::http::Request` ([`RequestExt`]):
//! headers by lower-case name, the `Cookie` headers, host and scheme, the method, the query,
//! `error_page` lookups, and the state of a proxied subrequest.

use core::{ptr, slice};

use gpt_auth_core::navigation::RequestKind;
use nginx_sys::{
    ngx_array_t, ngx_http_complex_value_t, ngx_http_core_loc_conf_t, ngx_http_err_page_t,
    ngx_http_request_t, ngx_list_part_t, ngx_log_t, ngx_table_elt_t, ngx_uint_t,
    ngx_variable_value_t, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_POST,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleServerConf, NgxHttpCoreModule, Request};

/// Request headers as (lower-case name, value), in order, skipping removed ones.
pub struct Headers<'a> {
    part: &'a ngx_list_part_t,
    idx: usize,
}

impl<'a> Headers<'a> {
    fn new(part: &'a ngx_list_part_t) -> Headers<'a> {
        Headers { part, idx: 0 }
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.idx >= self.part.nelts {
                // SAFETY: list parts are chained through `next` and end with NULL.
                self.part = unsafe { self.part.next.as_ref()? };
                self.idx = 0;
                continue;
            }
            // SAFETY: `elts` holds `nelts` initialised ngx_table_elt_t.
            let h = unsafe { &*self.part.elts.cast::<ngx_table_elt_t>().add(self.idx) };
            self.idx += 1;
            if h.hash == 0 || h.lowcase_key.is_null() {
                continue; // removed, or not a parsed request header
            }
            // SAFETY: `lowcase_key` has `key.len` bytes.
            let name = unsafe { slice::from_raw_parts(h.lowcase_key, h.key.len) };
            return Some((name, h.value.as_bytes()));
        }
    }
}

/// The values of the request's `Cookie` headers, straight from nginx's own index of them (no
/// scan of the other headers). nginx 1.23 turned the array into a linked list.
pub struct Cookies<'a> {
    #[cfg(not(ngx_cookie_list))]
    rest: &'a [*mut ngx_table_elt_t],
    #[cfg(ngx_cookie_list)]
    next: *mut ngx_table_elt_t,
    #[cfg(ngx_cookie_list)]
    _r: core::marker::PhantomData<&'a ngx_http_request_t>,
}

impl<'a> Iterator for Cookies<'a> {
    type Item = &'a [u8];

    #[cfg(not(ngx_cookie_list))]
    fn next(&mut self) -> Option<&'a [u8]> {
        let (first, rest) = self.rest.split_first()?;
        self.rest = rest;
        // SAFETY: the array holds pointers to live headers of this request.
        unsafe { first.as_ref().map(|h| h.value.as_bytes()) }
    }

    #[cfg(ngx_cookie_list)]
    fn next(&mut self) -> Option<&'a [u8]> {
        // SAFETY: NULL or a live header of this request, chained through `next`.
        let h = unsafe { self.next.as_ref()? };
        self.next = h.next;
        Some(h.value.as_bytes())
    }
}

pub trait RequestExt {
    /// Request headers as (lower-case name, value).
    fn headers(&self) -> Headers<'_>;
    /// The values of the `Cookie` headers.
    fn cookies(&self) -> Cookies<'_>;
    /// The main request of this (sub)request.
    fn main_request(&self) -> &Request;
    fn is_get_or_head(&self) -> bool;
    fn is_post(&self) -> bool;
    /// nginx's method bit (`NGX_HTTP_GET`, ...).
    fn method_bit(&self) -> ngx_uint_t;
    /// Whether the client connection uses TLS.
    fn is_https(&self) -> bool;
    /// The `Host` header as sent (with port), falling back to the server name.
    fn host(&self) -> &[u8];
    /// The primary `server_name` of the server block (lower case), unless it is a regex, a
    /// wildcard or `_`.
    fn server_name(&self) -> Option<String>;
    /// The query string (without `?`).
    fn args(&self) -> &[u8];
    /// A compiled complex value (a directive argument with variables), evaluated.
    fn complex_value(&self, cv: &ngx_http_complex_value_t) -> Option<&[u8]>;
    /// The connection's log.
    fn log_ptr(&self) -> *mut ngx_log_t;
    /// Whether an `error_page` for `status` applies here (then nginx should produce the
    /// response, not the module).
    fn has_error_page(&self, status: ngx_uint_t) -> bool;
    /// Whether the request is a browser navigation (see `gpt_auth_core::navigation`).
    fn is_navigation(&self) -> bool;
    /// Whether the (shared) connection is marked as failed.
    fn connection_error(&self) -> bool;
    /// Whether a proxied (sub)request's response body ended before its announced end (the
    /// upstream closed the connection before `Content-Length` bytes or the last chunk).
    fn upstream_cut_off(&self) -> bool;
    /// The first response header called `name` (case-insensitive).
    fn response_header(&self, name: &str) -> Option<&[u8]>;
}

impl RequestExt for Request {
    fn headers(&self) -> Headers<'_> {
        Headers::new(&self.as_ref().headers_in.headers.part)
    }

    #[cfg(not(ngx_cookie_list))]
    fn cookies(&self) -> Cookies<'_> {
        let a: &ngx_array_t = &self.as_ref().headers_in.cookies;
        let rest = if a.elts.is_null() {
            &[][..]
        } else {
            // SAFETY: nginx's array of pointers to this request's Cookie headers.
            unsafe { slice::from_raw_parts(a.elts.cast::<*mut ngx_table_elt_t>(), a.nelts) }
        };
        Cookies { rest }
    }

    #[cfg(ngx_cookie_list)]
    fn cookies(&self) -> Cookies<'_> {
        Cookies { next: self.as_ref().headers_in.cookie, _r: core::marker::PhantomData }
    }

    fn main_request(&self) -> &Request {
        // SAFETY: `main` is the main request, alive as long as any of its subrequests.
        unsafe { Request::from_ngx_http_request(self.as_ref().main) }
    }

    fn is_get_or_head(&self) -> bool {
        self.method_bit() & (NGX_HTTP_GET | NGX_HTTP_HEAD) as ngx_uint_t != 0
    }

    fn is_post(&self) -> bool {
        self.method_bit() & NGX_HTTP_POST as ngx_uint_t != 0
    }

    fn method_bit(&self) -> ngx_uint_t {
        self.as_ref().method
    }

    fn is_https(&self) -> bool {
        // SAFETY: a live request has a live connection.
        unsafe { !(*self.as_ref().connection).ssl.is_null() }
    }

    fn host(&self) -> &[u8] {
        let r = self.as_ref();
        // SAFETY: `headers_in.host` is NULL or a header of this request.
        match unsafe { r.headers_in.host.as_ref() } {
            Some(h) => h.value.as_bytes(),
            None => r.headers_in.server.as_bytes(),
        }
    }

    fn server_name(&self) -> Option<String> {
        let cscf: &nginx_sys::ngx_http_core_srv_conf_t = NgxHttpCoreModule::server_conf(self)?;
        let name = cscf.server_name.as_bytes();
        if name.is_empty() || name.starts_with(b"~") || name.contains(&b'*') || name == b"_" {
            return None;
        }
        Some(String::from_utf8_lossy(name).to_ascii_lowercase())
    }

    fn args(&self) -> &[u8] {
        self.as_ref().args.as_bytes()
    }

    fn complex_value(&self, cv: &ngx_http_complex_value_t) -> Option<&[u8]> {
        self.get_complex_value(cv).map(|s| s.as_bytes())
    }

    fn log_ptr(&self) -> *mut ngx_log_t {
        self.log()
    }

    fn has_error_page(&self, status: ngx_uint_t) -> bool {
        let Some(clcf) = NgxHttpCoreModule::location_conf(self) else { return false };
        let clcf: &ngx_http_core_loc_conf_t = clcf;
        // SAFETY: `error_pages` is NULL or an array of ngx_http_err_page_t.
        let Some(pages) = (unsafe { clcf.error_pages.as_ref() }) else { return false };
        // SAFETY: see above.
        unsafe { pages.as_slice::<ngx_http_err_page_t>() }
            .iter()
            .any(|p| p.status as ngx_uint_t == status)
    }

    fn is_navigation(&self) -> bool {
        let mut kind = RequestKind { safe_method: self.is_get_or_head(), ..Default::default() };
        for (name, value) in self.headers() {
            match name {
                b"accept" => kind.accept = Some(value),
                b"sec-fetch-mode" => kind.sec_fetch_mode = Some(value),
                b"x-requested-with" => kind.x_requested_with = Some(value),
                _ => {}
            }
        }
        kind.is_navigation()
    }

    fn connection_error(&self) -> bool {
        // SAFETY: a live request has a live connection.
        unsafe { (*self.as_ref().connection).error() != 0 }
    }

    fn upstream_cut_off(&self) -> bool {
        // SAFETY: `upstream` is NULL or the request's upstream, `pipe` NULL or its event pipe,
        // both from the request's pool. An in-memory subrequest reads the body through the
        // pipe; its `length` is what the upstream module still expects (0 once the body is
        // complete, -1 for a body that ends with the connection).
        unsafe {
            self.as_ref()
                .upstream
                .as_ref()
                .and_then(|u| u.pipe.as_ref())
                .is_some_and(|p| p.length > 0)
        }
    }

    fn response_header(&self, name: &str) -> Option<&[u8]> {
        let mut part = &self.as_ref().headers_out.headers.part;
        loop {
            for i in 0..part.nelts {
                // SAFETY: `elts` holds `nelts` ngx_table_elt_t.
                let h = unsafe { &*part.elts.cast::<ngx_table_elt_t>().add(i) };
                if h.hash != 0 && h.key.as_bytes().eq_ignore_ascii_case(name.as_bytes()) {
                    return Some(h.value.as_bytes());
                }
            }
            // SAFETY: list parts end with NULL.
            part = unsafe { part.next.as_ref()? };
        }
    }
}

/// Sets a variable's value to bytes that live at least as long as the request.
pub fn set_variable(v: &mut ngx_variable_value_t, bytes: &[u8]) {
    v.set_valid(1);
    v.set_no_cacheable(0);
    v.set_not_found(0);
    v.set_len(bytes.len() as u32);
    v.data = bytes.as_ptr().cast_mut();
}

/// The raw request, for the few nginx calls that take a mutable pointer.
pub(super) fn raw(r: &mut Request) -> *mut ngx_http_request_t {
    ptr::from_mut(r.as_mut())
}

/// Takes a request header out of what is proxied: every header called `lower_name` gets the
/// name `Keep-Alive` and an empty value. nginx's proxy module sends the client's headers except
/// those it sets itself, and it always sets `Keep-Alive` (to nothing: not sent); removing the
/// entry from nginx's list instead would break the pointers nginx keeps into it. `$http_*` of
/// the old name is empty afterwards.
pub fn hide_header_in(r: &mut Request, lower_name: &[u8]) {
    const NAME: &str = "Keep-Alive";
    const LOWER: &[u8] = b"keep-alive\0";
    // SAFETY: the request's header list: parts chained through `next`, each with `nelts`
    // initialised ngx_table_elt_t; the new name and value are static.
    unsafe {
        let hash = nginx_sys::ngx_hash_key(LOWER.as_ptr().cast_mut(), LOWER.len() - 1);
        let mut part = ptr::addr_of_mut!(r.as_mut().headers_in.headers.part);
        while let Some(p) = part.as_mut() {
            for i in 0..p.nelts {
                let h = &mut *p.elts.cast::<ngx_table_elt_t>().add(i);
                if h.hash == 0 || h.lowcase_key.is_null() || h.key.len != lower_name.len() {
                    continue;
                }
                if slice::from_raw_parts(h.lowcase_key, h.key.len) != lower_name {
                    continue;
                }
                h.key = nginx_sys::ngx_str_t { len: NAME.len(), data: NAME.as_ptr().cast_mut() };
                h.lowcase_key = LOWER.as_ptr().cast_mut();
                h.hash = hash;
                h.value = nginx_sys::ngx_str_t::default();
            }
            part = p.next;
        }
        if lower_name == b"authorization" {
            r.as_mut().headers_in.authorization = ptr::null_mut();
        }
    }
}

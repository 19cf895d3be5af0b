//! Short client conversations through nginx's event loop: connect (TCP or a unix socket), write
//! a request, read until the caller says the answer is whole, close. Everything is
//! non-blocking: `ngx_event_connect_peer` makes the socket, nginx's event module reports when
//! it can be written and read, nginx timers bound each step.
//!
//! ngx 0.5.1 has no peer connection type outside its `async` runtime (whose wakes can re-enter
//! a task, see the field notes); nginx-acme wraps the same nginx calls for async use. A
//! conversation here is a callback state machine instead: one boxed [`Call`] whose pointer is
//! the connection's `data`, freed when the conversation ends.
//!
//! TLS is nginx's own (`ngx_event_openssl`), as the proxy module uses it for upstreams: a
//! client context made when the configuration is read ([`Tls::new`]), a handshake after the
//! connect, the peer's certificate checked against the trusted certificates and the name.

use core::cell::Cell;
use core::ffi::c_void;
use core::ptr;

use nginx_sys::{
    ngx_conf_t, ngx_connection_t, ngx_event_t, ngx_int_t, ngx_log_t, ngx_msec_t,
    ngx_peer_connection_t, ngx_resolver_ctx_t, ngx_resolver_t, ngx_ssl_t, ngx_str_t, ngx_url_t,
    NGX_AGAIN, NGX_ERROR, NGX_OK,
};

/// A peer's address: resolved when the configuration is read (as `proxy_pass` to a host name
/// without a resolver does), or, with `resolve`, looked up by nginx's resolver before each
/// conversation (as an upstream `server ... resolve` is).
pub struct Address {
    /// The socket address bytes (`socklen` of them; none when looked up at run time).
    sockaddr: Box<[u8]>,
    socklen: nginx_sys::socklen_t,
    /// As written in the configuration, for logs (and nginx's own connect errors).
    text: Box<[u8]>,
    name: Box<ngx_str_t>,
    lookup: Option<Lookup>,
}

/// A host name looked up at run time, and by which resolver (the http block's, set after the
/// configuration is read).
struct Lookup {
    host: Box<[u8]>,
    port: u16,
    resolver: Cell<*mut ngx_resolver_t>,
    timeout: Cell<ngx_msec_t>,
}

impl Address {
    /// Parses `host:port`, `ip:port` or `unix:/path` (`default_port` when none is given),
    /// resolving a host name now, or, with `resolve`, only checking it is one; `Err` says why
    /// not.
    pub fn parse(
        pool: *mut nginx_sys::ngx_pool_t,
        text: &str,
        default_port: u16,
        resolve: bool,
    ) -> Result<Address, String> {
        let mut bytes = text.as_bytes().to_vec().into_boxed_slice();
        // SAFETY: an all-zero ngx_url_t is what nginx's callers start from (ngx_memzero).
        let mut u: ngx_url_t = unsafe { core::mem::zeroed() };
        u.url = ngx_str_t { len: bytes.len(), data: bytes.as_mut_ptr() };
        u.default_port = default_port;
        u.set_no_resolve(u32::from(resolve));
        // SAFETY: `u` is filled as ngx_parse_url expects; it allocates the addresses from the
        // configuration's pool.
        let rc = unsafe { nginx_sys::ngx_parse_url(pool, &mut u) };
        if rc != NGX_OK as ngx_int_t {
            let why = if u.err.is_null() {
                "invalid address".to_owned()
            } else {
                // SAFETY: nginx sets `err` to a static C string.
                unsafe { core::ffi::CStr::from_ptr(u.err) }.to_string_lossy().into_owned()
            };
            return Err(why);
        }
        if resolve {
            // A literal address (or a socket) is in `addrs` even without resolving.
            if u.naddrs != 0 || text.starts_with("unix:") {
                return Err("resolve needs a host name".to_owned());
            }
            // SAFETY: ngx_parse_url set `host` within the URL it parsed.
            let host = unsafe { core::slice::from_raw_parts(u.host.data, u.host.len) };
            let lookup = Lookup {
                host: host.into(),
                port: u.port,
                resolver: Cell::new(ptr::null_mut()),
                timeout: Cell::new(0),
            };
            let name = Box::new(ngx_str_t { len: bytes.len(), data: bytes.as_mut_ptr() });
            return Ok(Address {
                sockaddr: Box::new([]),
                socklen: 0,
                text: bytes,
                name,
                lookup: Some(lookup),
            });
        }
        if u.naddrs == 0 || u.addrs.is_null() {
            return Err("host not found".to_owned());
        }
        // SAFETY: ngx_parse_url succeeded with `naddrs` addresses; the first one is used.
        let a = unsafe { &*u.addrs };
        let len = a.socklen as usize;
        // SAFETY: `sockaddr` points at `socklen` bytes.
        let sockaddr = unsafe { core::slice::from_raw_parts(a.sockaddr.cast::<u8>(), len) };
        let name = Box::new(ngx_str_t { len: bytes.len(), data: bytes.as_mut_ptr() });
        Ok(Address {
            sockaddr: sockaddr.into(),
            socklen: a.socklen,
            text: bytes,
            name,
            lookup: None,
        })
    }

    /// Whether the host is looked up at run time (`resolve`).
    pub fn resolves(&self) -> bool {
        self.lookup.is_some()
    }

    /// The resolver (and its timeout) that looks the host up, once the configuration is read.
    pub fn set_resolver(&self, resolver: *mut ngx_resolver_t, timeout: ngx_msec_t) {
        if let Some(l) = &self.lookup {
            l.resolver.set(resolver);
            l.timeout.set(timeout);
        }
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.text).unwrap_or("?")
    }

    /// The host as written (`None` for a unix socket): the name a TLS peer's certificate is
    /// checked against unless another is given.
    pub fn host(&self) -> Option<&str> {
        let text = self.as_str();
        if text.starts_with("unix:") {
            return None;
        }
        let host = match text.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => text.rsplit_once(':').map_or(text, |(h, _)| h),
        };
        Some(host)
    }
}

/// What a TLS client needs to know, from the configuration.
pub struct TlsOptions<'a> {
    /// Certificates the peer's must chain to (PEM); `None`: the peer is not verified.
    pub trusted: Option<&'a str>,
    /// The name the peer's certificate must carry, also sent as SNI unless an IP address.
    pub name: &'a str,
    /// This client's certificate and key (PEM), for peers that ask for one.
    pub certificate: Option<(&'a str, &'a str)>,
}

/// A TLS client context (nginx's `ngx_ssl_t`, in the configuration's pool and freed with it)
/// and how a peer is checked.
pub struct Tls {
    ssl: *mut ngx_ssl_t,
    verify: bool,
    /// NUL-terminated for OpenSSL (SNI); `name_str` points into it.
    name: Box<[u8]>,
    name_str: Box<ngx_str_t>,
    sni: bool,
}

/// How deep a peer's chain may be (leaf, intermediates, root): nginx's `proxy_ssl_verify_depth`
/// is 1, too short for a managed Redis with an intermediate CA.
const VERIFY_DEPTH: ngx_int_t = 3;

impl Tls {
    /// Makes the context; `Err` says why not (nginx has logged OpenSSL's reason at `emerg`).
    pub fn new(cf: &mut ngx_conf_t, o: &TlsOptions<'_>) -> Result<Tls, String> {
        let pool = cf.pool;
        // SAFETY: a zeroed ngx_ssl_t from the configuration's pool is what nginx's modules pass
        // to ngx_ssl_create; the cleanup frees the SSL_CTX with the pool (the cycle's life).
        let ssl = unsafe {
            let ssl =
                nginx_sys::ngx_pcalloc(pool, core::mem::size_of::<ngx_ssl_t>()).cast::<ngx_ssl_t>();
            if ssl.is_null() {
                return Err("out of memory".to_owned());
            }
            (*ssl).log = cf.log;
            let protocols = (nginx_sys::NGX_SSL_TLSv1_2 | nginx_sys::NGX_SSL_TLSv1_3) as usize;
            if nginx_sys::ngx_ssl_create(ssl, protocols, ptr::null_mut()) != NGX_OK as ngx_int_t {
                return Err("cannot create a TLS context".to_owned());
            }
            let cln = nginx_sys::ngx_pool_cleanup_add(pool, 0);
            if cln.is_null() {
                nginx_sys::ngx_ssl_cleanup_ctx(ssl.cast());
                return Err("out of memory".to_owned());
            }
            (*cln).handler = Some(nginx_sys::ngx_ssl_cleanup_ctx);
            (*cln).data = ssl.cast();
            ssl
        };
        if let Some((cert, key)) = o.certificate {
            let (mut cert_s, mut key_s) = (pool_cstr(pool, cert)?, pool_cstr(pool, key)?);
            // SAFETY: a live context and NUL-terminated paths from the pool; nginx resolves
            // them against its prefix and logs OpenSSL's reason on failure.
            let rc = unsafe {
                nginx_sys::ngx_ssl_certificate(cf, ssl, &mut cert_s, &mut key_s, ptr::null_mut())
            };
            if rc != NGX_OK as ngx_int_t {
                return Err(format!(
                    "ssl_certificate \"{cert}\" or its key \"{key}\" cannot be loaded"
                ));
            }
        }
        if let Some(trusted) = o.trusted {
            let mut t = pool_cstr(pool, trusted)?;
            // SAFETY: as above.
            let rc =
                unsafe { nginx_sys::ngx_ssl_trusted_certificate(cf, ssl, &mut t, VERIFY_DEPTH) };
            if rc != NGX_OK as ngx_int_t {
                return Err(format!("ssl_trusted_certificate \"{trusted}\" cannot be loaded"));
            }
        }
        let mut name = o.name.as_bytes().to_vec();
        let len = name.len();
        name.push(0);
        let mut name = name.into_boxed_slice();
        let name_str = Box::new(ngx_str_t { len, data: name.as_mut_ptr() });
        let sni = !o.name.is_empty() && o.name.parse::<std::net::IpAddr>().is_err();
        Ok(Tls { ssl, verify: o.trusted.is_some(), name, name_str, sni })
    }

    /// The name the peer's certificate is checked against.
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name.len().saturating_sub(1)]).unwrap_or("?")
    }
}

/// `s` copied into the pool with a NUL after it (nginx's SSL functions pass paths to OpenSSL
/// as C strings).
fn pool_cstr(pool: *mut nginx_sys::ngx_pool_t, s: &str) -> Result<ngx_str_t, String> {
    // SAFETY: a fresh allocation of len + 1 bytes, filled before use.
    unsafe {
        let p = nginx_sys::ngx_pnalloc(pool, s.len() + 1).cast::<u8>();
        if p.is_null() {
            return Err("out of memory".to_owned());
        }
        ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
        *p.add(s.len()) = 0;
        Ok(ngx_str_t { len: s.len(), data: p })
    }
}

/// Why a conversation ended without a whole answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("cannot connect")]
    Connect,
    #[error("timed out")]
    Timeout,
    #[error("connection closed before the whole answer")]
    Closed,
    #[error("send or receive failed")]
    Io,
    #[error("the answer is not understood")]
    Garbled,
    /// The worker exits ([`abort_all`]).
    #[error("the worker exits")]
    Aborted,
    /// nginx's resolver found no address (its reason).
    #[error("cannot resolve the host ({0})")]
    Resolve(&'static str),
    #[error("TLS handshake failed")]
    Handshake,
    #[error("the server's certificate is not trusted ({0})")]
    Untrusted(&'static str),
    /// (The caller knows the name: it says it.)
    #[error("the server's certificate does not match the name")]
    WrongName,
}

/// Whether the bytes read so far are a whole answer: `Ok(true)` yes, `Ok(false)` not yet,
/// `Err` never will be.
pub type Complete = Box<dyn FnMut(&[u8]) -> Result<bool, ()>>;

/// What is done with the outcome: the whole answer's bytes, or why not and what was read
/// (a peer may answer with an error and close before the rest).
pub type Done = Box<dyn FnOnce(Result<Vec<u8>, (Failure, Vec<u8>)>)>;

thread_local! {
    /// The connections of this worker's conversations under way (for [`abort_all`]).
    static LIVE: core::cell::RefCell<Vec<*mut ngx_connection_t>> =
        const { core::cell::RefCell::new(Vec::new()) };
}

/// How many conversations are under way in this worker.
pub fn under_way() -> usize {
    LIVE.with(|l| l.borrow().len()) + RESOLVING.with(|r| r.borrow().len())
}

/// At worker exit: ends every conversation under way (`done` gets [`Failure::Aborted`]).
/// nginx counts a socket still open at a graceful exit as a leak (an `alert`), and the
/// conversation's owner would never learn that its request may not have been answered.
pub fn abort_all() {
    for ctx in RESOLVING.with(|r| core::mem::take(&mut *r.borrow_mut())) {
        // SAFETY: listed by `resolve` while its lookup is under way; `on_resolved` unlists it.
        unsafe {
            let call = (*ctx).data.cast::<Call>();
            nginx_sys::ngx_resolve_name_done(ctx);
            fail(call, Failure::Aborted);
        }
    }
    for c in LIVE.with(|l| core::mem::take(&mut *l.borrow_mut())) {
        // SAFETY: listed by `call` while its conversation is under way; `finish` unlists it.
        if let Some(c) = unsafe { c.as_mut() } {
            finish(c, Err(Failure::Aborted));
        }
    }
}

struct Call {
    pc: ngx_peer_connection_t,
    /// The peer's address, `pc.sockaddr` (the configuration's, or the resolver's answer with
    /// `port`).
    sockaddr: Box<[u8]>,
    port: u16,
    /// TLS to the peer (the configuration's, alive as long as this cycle's connections).
    tls: Option<*const Tls>,
    /// Written first, then `out`; `sent` counts through both.
    head: &'static [u8],
    out: Vec<u8>,
    sent: usize,
    input: Vec<u8>,
    timeout: ngx_msec_t,
    complete: Complete,
    done: Option<Done>,
}

impl Call {
    /// What is still to be written (`None`: all of it is).
    fn unsent(&self) -> Option<&[u8]> {
        let rest = match self.sent.checked_sub(self.head.len()) {
            None => self.head.get(self.sent..)?,
            Some(o) => self.out.get(o..)?,
        };
        (!rest.is_empty()).then_some(rest)
    }
}

/// Starts a conversation: `head` then `out` are written (`head` is for what many
/// conversations send alike, kept by the caller), the answer read until `complete` says it is
/// whole, each step (connecting, writing, reading) within `timeout_ms`; `done` is called
/// exactly once, possibly before this returns (a peer refused at once).
#[allow(clippy::too_many_arguments)]
pub fn call(
    addr: &Address,
    tls: Option<&Tls>,
    log: *mut ngx_log_t,
    head: &'static [u8],
    out: Vec<u8>,
    timeout_ms: u64,
    complete: Complete,
    done: Done,
) {
    // SAFETY: an all-zero peer connection is how nginx's callers start (ngx_pcalloc).
    let mut pc: ngx_peer_connection_t = unsafe { core::mem::zeroed() };
    pc.socklen = addr.socklen;
    pc.name = ptr::from_ref::<ngx_str_t>(&addr.name).cast_mut();
    pc.get = Some(nginx_sys::ngx_event_get_peer);
    pc.log = log;
    // The caller logs one line when conversations start failing; what nginx says of each
    // failed send, receive or handshake is detail, at `info`.
    pc.set_log_error(nginx_sys::ngx_connection_log_error_e_NGX_ERROR_INFO);
    pc.tries = 1;
    let timeout = ngx_msec_t::try_from(timeout_ms).unwrap_or(ngx_msec_t::MAX);
    let tls = tls.map(ptr::from_ref);
    let call = Box::new(Call {
        pc,
        sockaddr: addr.sockaddr.clone(),
        port: 0,
        tls,
        head,
        out,
        sent: 0,
        input: Vec::new(),
        timeout,
        complete,
        done: Some(done),
    });
    let call = Box::into_raw(call);
    match &addr.lookup {
        Some(l) => resolve(call, l),
        None => connect(call),
    }
}

thread_local! {
    /// Lookups under way (for [`abort_all`]).
    static RESOLVING: core::cell::RefCell<Vec<*mut ngx_resolver_ctx_t>> =
        const { core::cell::RefCell::new(Vec::new()) };
}

/// Ends a call that never had a connection.
///
/// # Safety
/// `call` came from Box::into_raw in [`call`] and is not used again.
unsafe fn fail(call: *mut Call, why: Failure) {
    // SAFETY: by the caller's contract.
    let mut call = unsafe { Box::from_raw(call) };
    if let Some(done) = call.done.take() {
        done(Err((why, Vec::new())));
    }
}

/// Looks the host up with nginx's resolver, then connects (`on_resolved`).
fn resolve(call: *mut Call, l: &Lookup) {
    let resolver = l.resolver.get();
    let ctx = if resolver.is_null() {
        ptr::null_mut()
    } else {
        // SAFETY: the http block's resolver, set after the configuration was read.
        unsafe { nginx_sys::ngx_resolve_start(resolver, ptr::null_mut()) }
    };
    // NGX_NO_RESOLVER is (void *) -1: a resolver without servers.
    if ctx.is_null() || ctx as usize == usize::MAX {
        // SAFETY: `call` is ours and not used again.
        return unsafe { fail(call, Failure::Resolve("no resolver")) };
    }
    // SAFETY: a fresh context, filled as nginx's modules fill it; the host lives in the
    // configuration. On NGX_ERROR ngx_resolve_name has freed the context.
    unsafe {
        (*ctx).name = ngx_str_t { len: l.host.len(), data: l.host.as_ptr().cast_mut() };
        (*ctx).handler = Some(on_resolved);
        (*ctx).data = call.cast();
        (*ctx).timeout = l.timeout.get();
        (*ctx).set_cancelable(1);
        (*call).port = l.port;
        gpt_auth_arena::outside(|| RESOLVING.with(|r| r.borrow_mut().push(ctx)));
        if nginx_sys::ngx_resolve_name(ctx) != NGX_OK as ngx_int_t {
            RESOLVING.with(|r| r.borrow_mut().retain(|&x| x != ctx));
            fail(call, Failure::Resolve("resolver error"));
        }
    }
}

ngx_entry! {
    /// The resolver answered (possibly at once, from its cache): connects to the first
    /// address, or ends the call with the resolver's reason.
    resolver fn on_resolved(ctx) {
        gpt_auth_arena::scope(|| {
            let ctx: &mut ngx_resolver_ctx_t = ctx;
            let cp = ptr::from_mut(ctx);
            RESOLVING.with(|r| r.borrow_mut().retain(|&x| x != cp));
            let call = ctx.data.cast::<Call>();
            let found = (ctx.state == 0 && ctx.naddrs > 0 && !ctx.addrs.is_null()).then(|| {
                // SAFETY: the resolver's answer holds `naddrs` addresses; the first is used.
                let a = unsafe { &*ctx.addrs };
                // SAFETY: `sockaddr` points at `socklen` bytes.
                let sa = unsafe { core::slice::from_raw_parts(a.sockaddr.cast::<u8>(), a.socklen as usize) };
                (Box::<[u8]>::from(sa), a.socklen)
            });
            let why = if found.is_some() {
                ""
            } else {
                // SAFETY: nginx returns a static C string for any state.
                let s = unsafe { core::ffi::CStr::from_ptr(nginx_sys::ngx_resolver_strerror(ctx.state)) };
                s.to_str().unwrap_or("resolver error")
            };
            // SAFETY: the context is ours, done with here (the answer was copied).
            unsafe { nginx_sys::ngx_resolve_name_done(ctx) };
            // SAFETY: `call` is the live box `resolve` gave the context.
            unsafe {
                let Some((mut sockaddr, socklen)) = found else {
                    return fail(call, Failure::Resolve(if ctx.state == 0 { "no address" } else { why }));
                };
                nginx_sys::ngx_inet_set_port(sockaddr.as_mut_ptr().cast(), (*call).port);
                (*call).sockaddr = sockaddr;
                (*call).pc.socklen = socklen;
                connect(call);
            }
        })
    }
}

/// Connects to the call's address, then writes (`on_write`).
fn connect(call: *mut Call) {
    // SAFETY: `call` is a live box; its peer connection is filled as nginx expects. The
    // connection it returns gets `call` as data until `finish` takes it back.
    unsafe {
        (*call).pc.sockaddr = (*call).sockaddr.as_mut_ptr().cast();
        let rc = nginx_sys::ngx_event_connect_peer(&mut (*call).pc);
        let c = (*call).pc.connection;
        if c.is_null() || (rc != NGX_OK as ngx_int_t && rc != NGX_AGAIN as ngx_int_t) {
            // NGX_ERROR, NGX_BUSY, NGX_DECLINED: nginx has closed any socket it made.
            if !c.is_null() {
                nginx_sys::ngx_close_connection(c);
            }
            return fail(call, Failure::Connect);
        }
        let log = (*call).pc.log;
        (*c).data = call.cast::<c_void>();
        // The list outlives the conversation: on the heap, not in the round's arena.
        gpt_auth_arena::outside(|| LIVE.with(|l| l.borrow_mut().push(c)));
        (*c).log = log;
        for ev in [(*c).read, (*c).write] {
            (*ev).log = log;
            // A conversation never delays a graceful shutdown.
            (*ev).set_cancelable(1);
        }
        (*(*c).read).handler = Some(on_read);
        (*(*c).write).handler = Some(on_write);
        nginx_sys::ngx_add_timer((*c).write, (*call).timeout);
        if rc == NGX_OK as ngx_int_t {
            on_write((*c).write);
        }
    }
}

/// The connection of an event, and the call it carries (`None` once finished).
///
/// # Safety
/// `ev` is a read or write event of a connection made by [`call`].
unsafe fn parts<'a>(ev: &ngx_event_t) -> Option<(&'a mut ngx_connection_t, &'a mut Call)> {
    // SAFETY: by the caller's contract `ev.data` is the connection, whose data is the call
    // (or null after `finish`).
    unsafe {
        let c = ev.data.cast::<ngx_connection_t>().as_mut()?;
        let call = c.data.cast::<Call>().as_mut()?;
        Some((c, call))
    }
}

/// Ends the conversation: closes the connection, frees the call, reports the outcome.
fn finish(c: &mut ngx_connection_t, outcome: Result<(), Failure>) {
    let call = c.data.cast::<Call>();
    if call.is_null() {
        return;
    }
    c.data = ptr::null_mut();
    let cp = ptr::from_mut(c);
    LIVE.with(|l| l.borrow_mut().retain(|&x| x != cp));
    // SAFETY: `call` came from Box::into_raw in `call`; `c.data` was its only copy. Closing
    // deletes the connection's timers and events; a TLS connection is freed first, without
    // waiting for the peer's close_notify.
    let mut call = unsafe {
        if let Some(ssl) = c.ssl.as_mut() {
            ssl.set_no_wait_shutdown(1);
            nginx_sys::ngx_ssl_shutdown(c);
        }
        let pool = core::mem::replace(&mut c.pool, ptr::null_mut());
        nginx_sys::ngx_close_connection(c);
        if !pool.is_null() {
            nginx_sys::ngx_destroy_pool(pool);
        }
        Box::from_raw(call)
    };
    let input = core::mem::take(&mut call.input);
    let result = match outcome {
        Ok(()) => Ok(input),
        Err(f) => Err((f, input)),
    };
    if let Some(done) = call.done.take() {
        done(result);
    }
}

ngx_entry! {
    /// The connection can be written (or connecting ended): sends what is left, then waits for
    /// the answer.
    timer fn on_write(ev) {
        // A conversation's memory is the round's arena (see `gpt_auth_arena`).
        gpt_auth_arena::scope(|| {
            // SAFETY: installed by `call` on its connection's write event.
            let Some((c, call)) = (unsafe { parts(ev) }) else { return };
            if ev.timedout() != 0 {
                return finish(c, Err(Failure::Timeout));
            }
            if call.tls.is_some() && c.ssl.is_null() {
                return start_tls(c, call);
            }
            let Some(send) = c.send else { return finish(c, Err(Failure::Io)) };
            while let Some(rest) = call.unsent() {
                // SAFETY: nginx's send function of this connection, with a live buffer (which it
                // reads only: the pointer is `*mut` in its signature).
                let n = unsafe { send(c, rest.as_ptr().cast_mut(), rest.len()) };
                if n == NGX_AGAIN as isize {
                    if ev.timer_set() == 0 {
                        // SAFETY: a live event of ours.
                        unsafe { nginx_sys::ngx_add_timer(ev, call.timeout) };
                    }
                    // SAFETY: as above; re-arms the write event where the event module needs it.
                    if unsafe { nginx_sys::ngx_handle_write_event(ev, 0) } != NGX_OK as ngx_int_t {
                        finish(c, Err(Failure::Io));
                    }
                    return;
                }
                if n <= 0 {
                    // Nothing could be sent on a fresh TCP connection: the connect failed (on TLS,
                    // the handshake has shown that it worked).
                    let refused = call.sent == 0 && call.tls.is_none();
                    let failure = if refused { Failure::Connect } else { Failure::Io };
                    return finish(c, Err(failure));
                }
                call.sent += n as usize;
            }
            if ev.timer_set() != 0 {
                // SAFETY: a live, armed event of ours.
                unsafe { nginx_sys::ngx_del_timer(ev) };
            }
            // SAFETY: the connection's read event, live as long as the connection.
            unsafe {
                let rev = &mut *c.read;
                if rev.timer_set() == 0 {
                    nginx_sys::ngx_add_timer(rev, call.timeout);
                }
                on_read(rev);
            }
        })
    }
}

/// The connect has ended: whether it worked (nginx's upstream module asks the same before its
/// TLS handshake, which would otherwise report a refused connection as a TLS failure).
fn connected(c: &ngx_connection_t) -> bool {
    let mut err: core::ffi::c_int = 0;
    let mut len = core::mem::size_of::<core::ffi::c_int>() as nginx_sys::socklen_t;
    // SAFETY: getsockopt on the connection's socket into a local int.
    let rc = unsafe {
        nginx_sys::getsockopt(
            c.fd,
            nginx_sys::SOL_SOCKET as core::ffi::c_int,
            nginx_sys::SO_ERROR as core::ffi::c_int,
            ptr::from_mut(&mut err).cast(),
            &mut len,
        )
    };
    rc == 0 && err == 0
}

/// Starts the TLS handshake on a connected socket; the conversation goes on in `on_secured`.
fn start_tls(c: &mut ngx_connection_t, call: &mut Call) {
    // SAFETY: `tls` is the configuration's, alive while this cycle's connections are.
    let Some(tls) = call.tls.and_then(|t| unsafe { t.as_ref() }) else {
        return finish(c, Err(Failure::Handshake));
    };
    if !connected(c) {
        return finish(c, Err(Failure::Connect));
    }
    // A peer connection has no pool; nginx's TLS state lives in one (as the upstream module
    // makes for its connections), destroyed in `finish`.
    // SAFETY: a small pool on the connection's log.
    c.pool = unsafe { nginx_sys::ngx_create_pool(512, c.log) };
    if c.pool.is_null() {
        return finish(c, Err(Failure::Handshake));
    }
    // Written with `c->send` only: no buffer for `send_chain` (NGX_SSL_BUFFER).
    let flags = nginx_sys::NGX_SSL_CLIENT as usize;
    // SAFETY: a connected socket and a live client context; nginx allocates the SSL object in
    // the connection's pool.
    if unsafe { nginx_sys::ngx_ssl_create_connection(tls.ssl, c, flags) } != NGX_OK as ngx_int_t {
        return finish(c, Err(Failure::Handshake));
    }
    if tls.sni {
        // SAFETY: SSL_set_tlsext_host_name is this SSL_ctrl call (a C macro); the name is
        // NUL-terminated and outlives the connection.
        let ok = unsafe {
            nginx_sys::SSL_ctrl(
                (*c.ssl).connection,
                nginx_sys::SSL_CTRL_SET_TLSEXT_HOSTNAME as core::ffi::c_int,
                nginx_sys::TLSEXT_NAMETYPE_host_name as core::ffi::c_long,
                tls.name.as_ptr().cast_mut().cast(),
            )
        };
        if ok == 0 {
            return finish(c, Err(Failure::Handshake));
        }
    }
    // SAFETY: as above; on NGX_AGAIN nginx's handshake handler runs the events until the
    // handshake ends, then calls `c->ssl->handler`.
    let rc = unsafe { nginx_sys::ngx_ssl_handshake(c) };
    if rc == NGX_AGAIN as ngx_int_t {
        // SAFETY: `c.ssl` was made above.
        unsafe { (*c.ssl).handler = Some(on_secured) };
        return;
    }
    on_secured(c);
}

ngx_entry! {
    /// The TLS handshake has ended: checks the peer, then writes the request.
    connection fn on_secured(c) {
        // A conversation's memory is the round's arena (see `gpt_auth_arena`).
        gpt_auth_arena::scope(|| {
            let c: &mut ngx_connection_t = c;
            // SAFETY: the connection's data is its call (or null once finished).
            let Some(call) = (unsafe { c.data.cast::<Call>().as_mut() }) else { return };
            // SAFETY: the call's TLS, as in `start_tls`.
            let Some(tls) = call.tls.and_then(|t| unsafe { t.as_ref() }) else { return };
            // SAFETY: the connection's live events and TLS state.
            let (timed_out, handshaked) = unsafe {
                (
                    (*c.write).timedout() != 0 || (*c.read).timedout() != 0,
                    c.ssl.as_ref().is_some_and(|s| s.handshaked() != 0),
                )
            };
            if !handshaked {
                let why = if timed_out { Failure::Timeout } else { Failure::Handshake };
                return finish(c, Err(why));
            }
            if tls.verify {
                // SAFETY: a finished handshake's SSL object.
                let rc = unsafe { nginx_sys::SSL_get_verify_result((*c.ssl).connection) };
                if rc != nginx_sys::X509_V_OK as core::ffi::c_long {
                    // SAFETY: OpenSSL returns a static string for any code.
                    let why = unsafe { core::ffi::CStr::from_ptr(nginx_sys::X509_verify_cert_error_string(rc)) };
                    return finish(c, Err(Failure::Untrusted(why.to_str().unwrap_or("?"))));
                }
                if !name_matches(c, tls) {
                    return finish(c, Err(Failure::WrongName));
                }
            }
            // SAFETY: the connection's live events; nginx's handshake handler had them.
            unsafe {
                (*c.read).handler = Some(on_read);
                (*c.write).handler = Some(on_write);
                on_write(c.write);
            }
        })
    }
}

/// Whether the peer's certificate carries the name: a host name as nginx checks it
/// (`ngx_ssl_check_host`, DNS names), an IP address against the certificate's IP addresses
/// (which nginx's check does not look at: a Redis is often named by its address).
fn name_matches(c: &mut ngx_connection_t, tls: &Tls) -> bool {
    if tls.name().parse::<std::net::IpAddr>().is_err() {
        let name = ptr::from_ref::<ngx_str_t>(&tls.name_str).cast_mut();
        // SAFETY: a finished handshake's connection and a live name.
        return unsafe { nginx_sys::ngx_ssl_check_host(c, name) } == NGX_OK as ngx_int_t;
    }
    // SAFETY: the handshake's SSL object; the certificate reference is released below; the
    // name is NUL-terminated.
    unsafe {
        let cert = nginx_sys::SSL_get1_peer_certificate((*c.ssl).connection);
        if cert.is_null() {
            return false;
        }
        let ok = nginx_sys::X509_check_ip_asc(cert, tls.name.as_ptr().cast(), 0) == 1;
        nginx_sys::X509_free(cert);
        ok
    }
}

/// Bytes read at once.
const READ_SIZE: usize = 4096;

ngx_entry! {
    /// The connection can be read: reads what came until the answer is whole.
    timer fn on_read(ev) {
        // A conversation's memory is the round's arena (see `gpt_auth_arena`).
        gpt_auth_arena::scope(|| {
            // SAFETY: installed by `call` on its connection's read event.
            let Some((c, call)) = (unsafe { parts(ev) }) else { return };
            if ev.timedout() != 0 {
                return finish(c, Err(Failure::Timeout));
            }
            if call.unsent().is_some() {
                // Not all written yet: the answer can wait (a peer that closes shows on write).
                return;
            }
            let Some(recv) = c.recv else { return finish(c, Err(Failure::Io)) };
            // Read into the stack, kept in a buffer as long as the answer: a round allocates no
            // more than its answer holds (a large buffer freed after each round only fragments
            // the heap the workers' request pools come from).
            let mut chunk = [0u8; READ_SIZE];
            loop {
                // SAFETY: nginx's recv function of this connection, into the stack buffer.
                let n = unsafe { recv(c, chunk.as_mut_ptr(), READ_SIZE) };
                if let Some(got) = usize::try_from(n).ok().filter(|&g| g > 0) {
                    call.input.extend_from_slice(&chunk[..got.min(READ_SIZE)]);
                }
                if n == NGX_AGAIN as isize {
                    // SAFETY: a live event of ours.
                    if unsafe { nginx_sys::ngx_handle_read_event(ev, 0) } != NGX_OK as ngx_int_t {
                        finish(c, Err(Failure::Io));
                    }
                    return;
                }
                if n == 0 {
                    return finish(c, Err(Failure::Closed));
                }
                if n < 0 || n == NGX_ERROR as isize {
                    return finish(c, Err(Failure::Io));
                }
                match (call.complete)(&call.input) {
                    Ok(true) => return finish(c, Ok(())),
                    Ok(false) => {}
                    Err(()) => return finish(c, Err(Failure::Garbled)),
                }
            }
        })
    }
}

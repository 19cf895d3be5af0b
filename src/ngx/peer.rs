//! Short client conversations through nginx's event loop: connect (TCP or a unix socket), write
//! a request, read until the caller says the answer is whole, close. Everything is
//! non-blocking: `ngx_event_connect_peer` makes the socket, nginx's event module reports when
//! it can be written and read, nginx timers bound each step.
//!
//! ngx 0.5.1 has no peer connection type outside its `async` runtime (whose wakes can re-enter
//! a task, see the field notes); nginx-acme wraps the same nginx calls for async use. A
//! conversation here is a callback state machine instead: one boxed [`Call`] whose pointer is
//! the connection's `data`, freed when the conversation ends.

use core::ffi::c_void;
use core::ptr;

use nginx_sys::{
    ngx_connection_t, ngx_event_t, ngx_int_t, ngx_log_t, ngx_msec_t, ngx_peer_connection_t,
    ngx_str_t, ngx_url_t, NGX_AGAIN, NGX_ERROR, NGX_OK,
};

/// A peer's address, resolved when the configuration is read (as `proxy_pass` to a host name
/// without a resolver does).
pub struct Address {
    /// The socket address bytes (`socklen` of them).
    sockaddr: Box<[u8]>,
    socklen: nginx_sys::socklen_t,
    /// As written in the configuration, for logs (and nginx's own connect errors).
    text: Box<[u8]>,
    name: Box<ngx_str_t>,
}

impl Address {
    /// Parses `host:port`, `ip:port` or `unix:/path` (`default_port` when none is given),
    /// resolving a host name now; `Err` says why not.
    pub fn parse(
        pool: *mut nginx_sys::ngx_pool_t,
        text: &str,
        default_port: u16,
    ) -> Result<Address, String> {
        let mut bytes = text.as_bytes().to_vec().into_boxed_slice();
        // SAFETY: an all-zero ngx_url_t is what nginx's callers start from (ngx_memzero).
        let mut u: ngx_url_t = unsafe { core::mem::zeroed() };
        u.url = ngx_str_t { len: bytes.len(), data: bytes.as_mut_ptr() };
        u.default_port = default_port;
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
        if u.naddrs == 0 || u.addrs.is_null() {
            return Err("host not found".to_owned());
        }
        // SAFETY: ngx_parse_url succeeded with `naddrs` addresses; the first one is used.
        let a = unsafe { &*u.addrs };
        let len = a.socklen as usize;
        // SAFETY: `sockaddr` points at `socklen` bytes.
        let sockaddr = unsafe { core::slice::from_raw_parts(a.sockaddr.cast::<u8>(), len) };
        let name = Box::new(ngx_str_t { len: bytes.len(), data: bytes.as_mut_ptr() });
        Ok(Address { sockaddr: sockaddr.into(), socklen: a.socklen, text: bytes, name })
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.text).unwrap_or("?")
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
}

/// Whether the bytes read so far are a whole answer: `Ok(true)` yes, `Ok(false)` not yet,
/// `Err` never will be.
pub type Complete = Box<dyn FnMut(&[u8]) -> Result<bool, ()>>;

/// What is done with the outcome: the whole answer's bytes, or why not and what was read
/// (a peer may answer with an error and close before the rest).
pub type Done = Box<dyn FnOnce(Result<Vec<u8>, (Failure, Vec<u8>)>)>;

struct Call {
    pc: ngx_peer_connection_t,
    out: Vec<u8>,
    sent: usize,
    input: Vec<u8>,
    timeout: ngx_msec_t,
    complete: Complete,
    done: Option<Done>,
}

/// Starts a conversation: `out` is written, the answer read until `complete` says it is
/// whole, each step (connecting, writing, reading) within `timeout_ms`; `done` is called
/// exactly once, possibly before this returns (a peer refused at once).
pub fn call(
    addr: &Address,
    log: *mut ngx_log_t,
    out: Vec<u8>,
    timeout_ms: u64,
    complete: Complete,
    done: Done,
) {
    // SAFETY: an all-zero peer connection is how nginx's callers start (ngx_pcalloc).
    let mut pc: ngx_peer_connection_t = unsafe { core::mem::zeroed() };
    pc.sockaddr = addr.sockaddr.as_ptr().cast_mut().cast();
    pc.socklen = addr.socklen;
    pc.name = ptr::from_ref::<ngx_str_t>(&addr.name).cast_mut();
    pc.get = Some(nginx_sys::ngx_event_get_peer);
    pc.log = log;
    pc.set_log_error(nginx_sys::ngx_connection_log_error_e_NGX_ERROR_ERR);
    pc.tries = 1;
    let timeout = ngx_msec_t::try_from(timeout_ms).unwrap_or(ngx_msec_t::MAX);
    let call =
        Box::new(Call { pc, out, sent: 0, input: Vec::new(), timeout, complete, done: Some(done) });
    let call = Box::into_raw(call);
    // SAFETY: `call` is a live box; its peer connection is filled as nginx expects. The
    // connection it returns gets `call` as data until `finish` takes it back.
    unsafe {
        let rc = nginx_sys::ngx_event_connect_peer(&mut (*call).pc);
        let c = (*call).pc.connection;
        if c.is_null() || (rc != NGX_OK as ngx_int_t && rc != NGX_AGAIN as ngx_int_t) {
            // NGX_ERROR, NGX_BUSY, NGX_DECLINED: nginx has closed any socket it made.
            let mut call = Box::from_raw(call);
            if !c.is_null() {
                nginx_sys::ngx_close_connection(c);
            }
            if let Some(done) = call.done.take() {
                done(Err((Failure::Connect, Vec::new())));
            }
            return;
        }
        (*c).data = call.cast::<c_void>();
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
    // SAFETY: `call` came from Box::into_raw in `call`; `c.data` was its only copy. Closing
    // deletes the connection's timers and events.
    let mut call = unsafe {
        nginx_sys::ngx_close_connection(c);
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
        // SAFETY: installed by `call` on its connection's write event.
        let Some((c, call)) = (unsafe { parts(ev) }) else { return };
        if ev.timedout() != 0 {
            return finish(c, Err(Failure::Timeout));
        }
        let Some(send) = c.send else { return finish(c, Err(Failure::Io)) };
        while call.sent < call.out.len() {
            let rest = &mut call.out[call.sent..];
            // SAFETY: nginx's send function of this connection, with a live buffer.
            let n = unsafe { send(c, rest.as_mut_ptr(), rest.len()) };
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
                let failure = if call.sent == 0 { Failure::Connect } else { Failure::Io };
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
    }
}

/// Bytes read at once.
const READ_SIZE: usize = 4096;

ngx_entry! {
    /// The connection can be read: reads what came until the answer is whole.
    timer fn on_read(ev) {
        // SAFETY: installed by `call` on its connection's read event.
        let Some((c, call)) = (unsafe { parts(ev) }) else { return };
        if ev.timedout() != 0 {
            return finish(c, Err(Failure::Timeout));
        }
        if call.sent < call.out.len() {
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
    }
}

//! nginx's clock, its worker and shutdown state, and timers.

use core::ptr;

use nginx_sys::{ngx_event_t, ngx_log_t, ngx_msec_t};

/// The current Unix time in seconds (nginx's cached clock, updated once per event loop
/// iteration; `ngx::core::time` has no such accessor in 0.5.1).
#[inline]
pub fn now() -> u64 {
    // SAFETY: `ngx_cached_time` points at a valid slot once nginx has started; it is read
    // volatile because the time handler replaces the slot.
    let sec = unsafe { ptr::read_volatile(ptr::addr_of!((*nginx_sys::ngx_cached_time).sec)) };
    u64::try_from(sec).unwrap_or(0)
}

/// This worker's number (0 in the first or only worker).
pub fn worker() -> usize {
    // SAFETY: written by nginx before the worker starts, read-only afterwards.
    unsafe { nginx_sys::ngx_worker }
}

/// Whether the worker is shutting down (graceful quit or exit).
pub fn stopping() -> bool {
    // SAFETY: nginx's process flags, only written by its signal handling in this process.
    unsafe { nginx_sys::ngx_exiting != 0 || nginx_sys::ngx_quit != 0 }
}

/// A timer event owned by the module, alive as long as the cycle whose pool it is in.
pub struct Timer(&'static mut ngx_event_t);

impl Timer {
    /// A cancelable timer (it never delays a graceful shutdown) calling `handler` with `data`.
    pub fn new(
        pool: *mut nginx_sys::ngx_pool_t,
        log: *mut ngx_log_t,
        handler: extern "C" fn(*mut ngx_event_t),
        data: *mut core::ffi::c_void,
    ) -> Option<Timer> {
        // SAFETY: a zeroed event from the cycle pool (alive as long as the cycle), filled
        // before use.
        let ev = unsafe {
            nginx_sys::ngx_pcalloc(pool, core::mem::size_of::<ngx_event_t>())
                .cast::<ngx_event_t>()
                .as_mut()?
        };
        ev.handler = Some(handler);
        ev.data = data;
        ev.log = log;
        ev.set_cancelable(1);
        Some(Timer(ev))
    }

    pub fn arm(&mut self, secs: u64) {
        arm(self.0, secs)
    }

    /// (Re-)arms the timer for `ms` milliseconds.
    pub fn arm_ms(&mut self, ms: u64) {
        let msec = ngx_msec_t::try_from(ms).unwrap_or(ngx_msec_t::MAX);
        // SAFETY: nginx's timer tree; the event is ours and alive.
        unsafe { nginx_sys::ngx_add_timer(self.0, msec) }
    }
}

/// (Re-)arms a timer event for `secs` seconds.
pub fn arm(ev: &mut ngx_event_t, secs: u64) {
    let msec = ngx_msec_t::try_from(secs.saturating_mul(1000)).unwrap_or(ngx_msec_t::MAX);
    // SAFETY: nginx's timer tree; `ev` is a live event of ours.
    unsafe { nginx_sys::ngx_add_timer(ev, msec) }
}

/// The `data` of a timer event as `&T`.
///
/// # Safety
/// `ev.data` was set to a `T` that outlives the event.
pub unsafe fn event_data<'a, T>(ev: &ngx_event_t) -> Option<&'a T> {
    // SAFETY: by the caller's contract.
    unsafe { ev.data.cast::<T>().as_ref() }
}

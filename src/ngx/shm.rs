//! Shared memory zones holding one value of the module's, created in the zone's slab pool.

use nginx_sys::{ngx_log_t, ngx_shm_zone_t};
use ngx::core::SlabPool;

/// The value stored in a zone by [`init`], if the zone is ready.
///
/// # Safety
/// `shm` is NULL or a zone of this cycle initialised by [`init`] with a `T`.
pub unsafe fn data<T>(shm: *mut ngx_shm_zone_t) -> Option<&'static T> {
    // SAFETY: the zone stays mapped for the worker's lifetime; by the caller's contract its
    // slab pool's `data` is NULL or our `T`.
    unsafe {
        let shm = shm.as_ref()?;
        let pool = SlabPool::from_shm_zone(shm)?;
        pool.as_ref().data.cast::<T>().as_ref()
    }
}

/// What `init` found.
pub enum Init<'a, T> {
    /// The zone of the previous configuration, reused across a reload: its value carries on.
    Reused,
    /// A new zone: `make` built its value.
    Created(&'a T),
}

/// Sets up a zone's value at zone initialisation: keeps the existing one across a reload, or
/// allocates one built by `make` in the zone's slab pool. Out-of-memory in the pool is not
/// logged by nginx (the module logs a full zone itself).
pub fn init<T>(
    shm: &mut ngx_shm_zone_t,
    make: impl FnOnce(&SlabPool) -> Option<T>,
) -> Option<Init<'static, T>> {
    // SAFETY: during zone initialisation the zone is mapped and holds a slab pool.
    let mut pool = unsafe { SlabPool::from_shm_zone(shm) }?;
    if !pool.as_ref().data.is_null() {
        return Some(Init::Reused);
    }
    let value = make(&pool)?;
    let shared = ngx::allocator::allocate(value, &pool).ok()?;
    pool.as_mut().set_log_nomem(0);
    pool.as_mut().data = shared.as_ptr().cast();
    // SAFETY: just allocated and written in shared memory, mapped for the process lifetime.
    Some(Init::Created(unsafe { shared.as_ref() }))
}

/// The log of a zone (the cycle's, at init time).
pub fn log(shm: &ngx_shm_zone_t) -> *mut ngx_log_t {
    shm.shm.log
}

/// The module's description of a zone, set when the zone was added.
///
/// # Safety
/// `shm.data` was set to a `T` alive as long as the configuration.
pub unsafe fn zone_data<T>(shm: &ngx_shm_zone_t) -> Option<&T> {
    // SAFETY: by the caller's contract.
    unsafe { shm.data.cast::<T>().as_ref() }
}

/// The tag the module adds its zones with (the module itself, as nginx's modules do).
pub fn module_tag() -> *mut core::ffi::c_void {
    core::ptr::addr_of_mut!(crate::ngx_http_gpt_auth_module).cast()
}

/// During a reload, while nginx builds the new configuration: the value of the running
/// configuration's zone called `name` with `tag`, if there is one (its memory is still mapped
/// until the new configuration is complete).
///
/// # Safety
/// Zones with `tag` hold a `T` set by [`init`] (or nothing yet).
pub unsafe fn previous_zone_data<T>(
    name: &nginx_sys::ngx_str_t,
    tag: *mut core::ffi::c_void,
) -> Option<&'static T> {
    // SAFETY: `ngx_cycle` is the running cycle during ngx_init_cycle; its shared memory list
    // holds its zones (parts chained through `next`), whose `shm.addr` is mapped.
    unsafe {
        let cycle = nginx_sys::ngx_cycle.as_ref()?;
        let mut part = &cycle.shared_memory.part;
        loop {
            let zones = core::slice::from_raw_parts(part.elts.cast::<ngx_shm_zone_t>(), part.nelts);
            for z in zones {
                if z.tag == tag && z.shm.name.as_bytes() == name.as_bytes() && !z.shm.addr.is_null()
                {
                    let pool = SlabPool::from_shm_zone(z)?;
                    return pool.as_ref().data.cast::<T>().as_ref();
                }
            }
            part = part.next.as_ref()?;
        }
    }
}

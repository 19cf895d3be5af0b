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

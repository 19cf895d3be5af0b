//! Values that live as long as a request, in its pool: copies of bytes ([`PoolStr`]), the
//! module's context slot ([`module_ctx`]) and typed values that survive internal redirects
//! ([`stash`], [`stashed`]).
//!
//! Everything here hands out shared references only, tied to the request they belong to: what
//! changes during a request sits in a `Cell` or `RefCell` of the stored value, so two parts of
//! the module can never hold aliasing `&mut` to it.
//!
//! `ngx::core::Pool::allocate` does what [`stash`] needs but writes through the pointer before
//! checking the allocation for NULL, and its cleanups cannot be told apart from nginx's own:
//! hence our own versions.

use core::any::TypeId;
use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::{mem, slice};

use nginx_sys::{ngx_module_t, ngx_pool_t};
use ngx::http::Request;

/// Bytes copied into a request's pool: valid as long as the request, read through the
/// reference of whatever holds them.
#[derive(Clone, Copy)]
pub struct PoolStr {
    ptr: NonNull<u8>,
    len: usize,
}

impl PoolStr {
    /// Copies `bytes` into the pool of `r` (`None` when out of memory).
    pub fn copy(r: &Request, bytes: &[u8]) -> Option<PoolStr> {
        // SAFETY: an allocation of `len` bytes from the live request pool, filled before use.
        unsafe {
            let p = nginx_sys::ngx_pnalloc(r.as_ref().pool, bytes.len().max(1)).cast::<u8>();
            let ptr = NonNull::new(p)?;
            ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len());
            Some(PoolStr { ptr, len: bytes.len() })
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `len` initialised bytes in a request pool; a PoolStr is only kept in values
        // stored in the same request (its context or stash), which the pool outlives.
        unsafe { slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

/// Copies `bytes` into the pool of `r`, for a value that must live as long as the request
/// (a variable's value, say).
pub fn copy<'r>(r: &'r Request, bytes: &[u8]) -> Option<&'r [u8]> {
    let s = PoolStr::copy(r, bytes)?;
    // SAFETY: the bytes are in the pool of `r`, which lives at least as long as `r` itself.
    Some(unsafe { slice::from_raw_parts(s.ptr.as_ptr(), s.len) })
}

impl core::fmt::Debug for PoolStr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        String::from_utf8_lossy(self.as_bytes()).fmt(f)
    }
}

/// The value in `module`'s context slot of `r`, set by [`set_module_ctx`]. nginx clears the
/// slot on an internal redirect.
///
/// # Safety
/// Every value ever stored in `module`'s slot is a `T` (one type per module).
pub unsafe fn module_ctx<'r, T>(r: &'r Request, module: &ngx_module_t) -> Option<&'r T> {
    r.get_module_ctx::<T>(module)
}

/// Stores `value` (plain data, no `Drop`) in `module`'s context slot of `r`.
///
/// # Safety
/// As for [`module_ctx`]: `T` is the one type of this module's slot.
pub unsafe fn set_module_ctx<'r, T: Copy>(
    r: &'r Request,
    module: &ngx_module_t,
    value: T,
) -> Option<&'r T> {
    const { assert!(mem::align_of::<T>() <= nginx_sys::NGX_ALIGNMENT) };
    // SAFETY: a pool allocation sized and aligned for T (pool allocations are NGX_ALIGNMENT
    // aligned), written before it is published in our slot.
    unsafe {
        let p = nginx_sys::ngx_palloc(r.as_ref().pool, mem::size_of::<T>()).cast::<T>();
        let p = NonNull::new(p)?;
        ptr::write(p.as_ptr(), value);
        r.set_module_ctx(p.as_ptr().cast(), module);
        Some(&*p.as_ptr())
    }
}

/// A stashed value: its type's id first, so that [`stashed`] can tell our values apart.
#[repr(C)]
struct Tagged<T> {
    id: TypeId,
    value: T,
}

/// Drops a stashed value when the request's pool is destroyed.
unsafe extern "C" fn drop_tagged<T>(data: *mut c_void) {
    let p = data.cast::<Tagged<T>>();
    // SAFETY: `data` is the Tagged<T> written by `stash`, dropped exactly once (nginx runs
    // each cleanup once); the id is cleared first so that the handler's code is never empty
    // and so never shares an address with another module's no-op cleanup.
    unsafe {
        ptr::write_volatile(ptr::addr_of_mut!((*p).id), TypeId::of::<()>());
        ptr::drop_in_place(ptr::addr_of_mut!((*p).value));
    }
}

/// Attaches `value` to the request (its pool, so it survives internal redirects, which reset
/// module contexts) and drops it when the request ends. At most one value per type: a second
/// `stash` of the same type shadows the first for [`stashed`].
pub fn stash<T: 'static>(r: &Request, value: T) -> Option<&T> {
    const { assert!(mem::align_of::<Tagged<T>>() <= nginx_sys::NGX_ALIGNMENT) };
    let pool: *mut ngx_pool_t = r.as_ref().pool;
    // SAFETY: a cleanup with room for a Tagged<T> (pool memory, NGX_ALIGNMENT aligned), written
    // before its handler is set.
    unsafe {
        let cln = nginx_sys::ngx_pool_cleanup_add(pool, mem::size_of::<Tagged<T>>()).as_mut()?;
        let slot = cln.data.cast::<Tagged<T>>();
        ptr::write(slot, Tagged { id: TypeId::of::<T>(), value });
        cln.handler = Some(drop_tagged::<T>);
        Some(&(*slot).value)
    }
}

/// The value of type `T` attached to the request by [`stash`], if any.
pub fn stashed<T: 'static>(r: &Request) -> Option<&T> {
    let handler: unsafe extern "C" fn(*mut c_void) = drop_tagged::<T>;
    // SAFETY: walks the pool's cleanup list. A cleanup whose handler is one of our
    // `drop_tagged` (identical functions may share an address, hence the id check) holds a
    // Tagged value, whose id tells its type.
    unsafe {
        let mut c = (*r.as_ref().pool).cleanup;
        while let Some(cln) = c.as_ref() {
            if cln.handler.is_some_and(|h| ptr::fn_addr_eq(h, handler)) {
                let t = cln.data.cast::<Tagged<T>>();
                if (*t).id == TypeId::of::<T>() {
                    return Some(&(*t).value);
                }
            }
            c = cln.next;
        }
        None
    }
}

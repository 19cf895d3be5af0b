//! The memory of the Redis rounds: an arena of its own, apart from the C heap that nginx's
//! connection and request pools come from.
//!
//! A round allocates and frees a few kilobytes (its commands, the answer, the entries, the
//! decoded replies) while requests are served. On glibc's heap that leaves free chunks between
//! chunks still in use; the pools of later requests are then cut from those chunks through
//! malloc's bins instead of from the top of the heap, some 250 instructions more for *every*
//! request (seen with callgrind in `make bench`: nothing of it with the rounds off). Inside
//! [`scope`] the module's Rust allocations come from a region mapped for them alone: a bump
//! pointer, reset when everything allocated there has been freed, so the rounds never touch
//! the heap and the heap never sees them.
//!
//! The region is one block of 16 MiB taken from the system allocator on first use (glibc maps
//! a block that large on its own, outside the heap; its pages become memory only as rounds touch
//! them, and stay with the worker: the most one round used). Only worker 0 runs rounds, so only
//! it has a region. Whatever does not fit, or is allocated outside a scope, comes from the C
//! allocator as before. A value that
//! must outlive the round (a state kept between rounds) is allocated in [`outside`], or it
//! keeps the region from being reset (the region then fills and later rounds use the heap:
//! slower requests, never wrong ones).
//!
//! Only the worker's event-loop thread runs module code; the scope is per thread all the same.
//! The accounting is process-wide (a thread that never enters a scope never touches it).
//! No nginx types: the module makes [`ModuleAlloc`] its global allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::alloc::System;

/// The arena's size.
const SIZE: usize = 16 << 20;
/// `BASE` when the region could not be had (then every allocation uses the heap).
const FAILED: usize = usize::MAX;

/// The module's allocator: [`System`], or the arena inside a [`scope`].
pub struct ModuleAlloc;

std::thread_local! {
    /// Nested scopes on this thread (0: allocations use the heap). `const`: no lazy
    /// initialisation and no destructor, so the allocator can read it at any time.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// The region's address (0 until first used).
static BASE: AtomicUsize = AtomicUsize::new(0);
/// The next free offset, the allocations not yet freed, and the highest offset used since the
/// last reset.
static NEXT: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static HIGH: AtomicUsize = AtomicUsize::new(0);

fn depth() -> u32 {
    DEPTH.try_with(Cell::get).unwrap_or(0)
}

fn set_depth(d: u32) {
    let _ = DEPTH.try_with(|c| c.set(d));
}

/// Runs `f` with the module's allocations in the arena.
pub fn scope<R>(f: impl FnOnce() -> R) -> R {
    struct Leave(u32);
    impl Drop for Leave {
        fn drop(&mut self) {
            set_depth(self.0);
        }
    }
    let d = depth();
    let _leave = Leave(d);
    set_depth(d.saturating_add(1));
    f()
}

/// Runs `f` with the module's allocations on the heap (for what outlives a round).
pub fn outside<R>(f: impl FnOnce() -> R) -> R {
    struct Back(u32);
    impl Drop for Back {
        fn drop(&mut self) {
            set_depth(self.0);
        }
    }
    let _back = Back(depth());
    set_depth(0);
    f()
}

/// The region, taken on first use (`None`: it could not be).
fn base() -> Option<usize> {
    match BASE.load(Relaxed) {
        FAILED => None,
        0 => {
            // SAFETY: a non-zero size and a valid alignment; the block is never freed.
            let p = unsafe { System.alloc(Layout::from_size_align_unchecked(SIZE, 4096)) };
            let b = if p.is_null() { FAILED } else { p as usize };
            BASE.store(b, Relaxed);
            (b != FAILED).then_some(b)
        }
        b => Some(b),
    }
}

fn in_arena(p: *mut u8) -> bool {
    let b = BASE.load(Relaxed);
    b != 0 && b != FAILED && (p as usize) >= b && (p as usize) < b + SIZE
}

/// A block of the arena, or null when it is full (or not mapped).
fn arena_alloc(layout: Layout) -> *mut u8 {
    let Some(base) = base() else { return ptr::null_mut() };
    let align = layout.align();
    let start = (NEXT.load(Relaxed) + align - 1) & !(align - 1);
    let Some(end) = start.checked_add(layout.size()).filter(|&e| e <= SIZE) else {
        return ptr::null_mut();
    };
    NEXT.store(end, Relaxed);
    LIVE.fetch_add(1, Relaxed);
    if end > HIGH.load(Relaxed) {
        HIGH.store(end, Relaxed);
    }
    (base + start) as *mut u8
}

/// One block of the arena freed: the last one resets it.
fn arena_free() {
    if LIVE.fetch_sub(1, Relaxed) != 1 {
        return;
    }
    NEXT.store(0, Relaxed);
    HIGH.store(0, Relaxed);
}

/// What the arena holds now: blocks not yet freed, bytes in use, the most used since it was
/// last reset (for tests and the benchmark's checks).
pub fn usage() -> (usize, usize, usize) {
    (LIVE.load(Relaxed), NEXT.load(Relaxed), HIGH.load(Relaxed))
}

// SAFETY: blocks of the arena are distinct ranges of a block of our own, aligned as asked;
// everything else is the system allocator's, freed by it.
unsafe impl GlobalAlloc for ModuleAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if depth() > 0 {
            let p = arena_alloc(layout);
            if !p.is_null() {
                return p;
            }
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if depth() > 0 {
            let p = arena_alloc(layout);
            if !p.is_null() {
                // SAFETY: a fresh block of `size` bytes (reused memory: not zero already).
                unsafe { ptr::write_bytes(p, 0, layout.size()) };
                return p;
            }
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if in_arena(p) {
            arena_free();
        } else {
            // SAFETY: not the arena's: the system allocator's block.
            unsafe { System.dealloc(p, layout) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !in_arena(p) {
            // SAFETY: the system allocator's block (a heap block stays on the heap).
            return unsafe { System.realloc(p, layout, new_size) };
        }
        // SAFETY: the caller's contract: `new_size` with the old alignment is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a fresh block (arena or heap, by the current scope), then the old one freed.
        unsafe {
            let q = self.alloc(new_layout);
            if !q.is_null() {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
            q
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static TEST_ALLOC: ModuleAlloc = ModuleAlloc;

    #[test]
    fn scoped_allocations_use_the_arena_and_reset_it() {
        let outside_before = Box::new(1u64);
        let (a, b) = scope(|| (vec![1u8; 100], String::from("round")));
        assert!(in_arena(a.as_ptr().cast_mut()), "a Vec made in a scope lives in the arena");
        assert!(in_arena(b.as_ptr().cast_mut()));
        assert!(!in_arena(ptr::from_ref(&*outside_before).cast_mut().cast()));
        let kept = scope(|| outside(|| String::from("kept")));
        assert!(!in_arena(kept.as_ptr().cast_mut()), "outside() allocates on the heap");
        let live = LIVE.load(Relaxed);
        drop(a);
        drop(b);
        assert_eq!(LIVE.load(Relaxed), live - 2);
        assert_eq!(NEXT.load(Relaxed), 0, "the last block freed resets the arena");
        let mut grown = scope(|| vec![0u8; 8]);
        grown.extend_from_slice(&[7; 64]); // realloc outside the scope: moves to the heap
        assert!(!in_arena(grown.as_mut_ptr()));
        assert_eq!(grown[8..], [7; 64]);
        assert_eq!(LIVE.load(Relaxed), 0);
    }
}

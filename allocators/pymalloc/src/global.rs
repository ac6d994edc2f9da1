//! TEMPORARY STAND-IN for the `GlobalAlloc` type.
use crate::{Config, Heap, Snapshot, Stats};
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// pymalloc as a thread-safe allocator: one [`Heap`] behind a spin lock.
pub struct PyMalloc {
    config: Config,
    locked: AtomicBool,
    heap: UnsafeCell<Option<Heap>>,
}

// SAFETY: the heap is only reached while `locked` is held.
unsafe impl Sync for PyMalloc {}

impl PyMalloc {
    pub const fn new() -> Self {
        Self::with_config(Config::CPYTHON_3_10)
    }
    pub const fn with_config(config: Config) -> Self {
        PyMalloc { config, locked: AtomicBool::new(false), heap: UnsafeCell::new(None) }
    }
    fn with<R>(&self, f: impl FnOnce(&mut Heap) -> R) -> R {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // SAFETY: lock held.
        let h = unsafe { &mut *self.heap.get() };
        let r = f(h.get_or_insert_with(|| Heap::new(self.config)));
        self.locked.store(false, Ordering::Release);
        r
    }
    pub fn stats(&self) -> Stats {
        self.with(|h| h.stats())
    }
    pub fn snapshot(&self) -> Snapshot {
        self.with(|h| h.snapshot())
    }
}

impl Default for PyMalloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: stand-in forwarding to the heap.
unsafe impl GlobalAlloc for PyMalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with(|h| h.alloc_aligned(layout.size(), layout.align()))
    }
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: caller's contract.
        self.with(|h| unsafe { h.free(ptr) })
    }
}

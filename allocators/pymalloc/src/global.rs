//! [`PyMalloc`]: a [`Heap`] behind a lock, usable as `#[global_allocator]`.
//!
//! One heap serves every thread, as one interpreter's pymalloc serves every thread under the
//! GIL. The lock is a test-and-test-and-set spin lock that yields to the scheduler after a
//! short spin: uncontended, it costs one atomic exchange per call.

use crate::snapshot::ArenaSnapshot;
use crate::{Config, Heap, InvariantError, Snapshot, Stats};
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// pymalloc as a thread-safe allocator.
///
/// ```
/// use pymalloc::PyMalloc;
/// use std::alloc::{GlobalAlloc, Layout};
/// static PY: PyMalloc = PyMalloc::new();
/// let layout = Layout::from_size_align(32, 8).unwrap();
/// // SAFETY: the layout has non-zero size; the block is freed once with the same layout.
/// unsafe {
///     let p = PY.alloc(layout);
///     assert!(!p.is_null());
///     assert_eq!(PY.stats().classes[1].blocks_in_use, 1);
///     PY.dealloc(p, layout);
/// }
/// ```
///
/// As the process allocator: `#[global_allocator] static GLOBAL: PyMalloc = PyMalloc::new();`
pub struct PyMalloc {
    locked: AtomicBool,
    /// Only touched while `locked` is held.
    heap: UnsafeCell<Heap>,
}

// SAFETY: every access to `heap` happens inside `with`, which holds the lock; the heap itself
// is `Send`.
unsafe impl Sync for PyMalloc {}

impl PyMalloc {
    /// pymalloc with the CPython 3.10+ layout.
    pub const fn new() -> Self {
        Self::with_config(Config::CPYTHON_3_10)
    }

    /// pymalloc with another (validated) layout.
    pub const fn with_config(config: Config) -> Self {
        PyMalloc { locked: AtomicBool::new(false), heap: UnsafeCell::new(Heap::new(config)) }
    }

    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut Heap) -> R) -> R {
        if self.locked.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err()
        {
            self.lock_contended();
        }
        // Released on every exit from this function, a panic included (a debug build's
        // overflow check), so a panic message can still be allocated and printed.
        struct Unlock<'a>(&'a AtomicBool);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _unlock = Unlock(&self.locked);
        // SAFETY: the lock is held, so this is the only reference to the heap until release.
        f(unsafe { &mut *self.heap.get() })
    }

    #[cold]
    fn lock_contended(&self) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if spins < 64 {
                    core::hint::spin_loop();
                    spins += 1;
                } else {
                    // SAFETY: sched_yield has no preconditions and does not allocate.
                    unsafe { libc::sched_yield() };
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// The heap's statistics now.
    pub fn stats(&self) -> Stats {
        self.with(|h| h.stats())
    }

    /// Checks every invariant of the heap now.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        self.with(|h| h.check_invariants())
    }

    /// The layout in force.
    pub fn config(&self) -> Config {
        self.with(|h| *h.config())
    }

    /// The occupancy of every arena now. The buffers are allocated before the lock is taken
    /// (they may come from this very allocator), then filled under the lock without allocating.
    pub fn snapshot(&self) -> Snapshot {
        let per_arena = self.config().pools_per_arena();
        loop {
            let want = self.with(|h| h.arenas_current()) + 2;
            let mut arenas: Vec<ArenaSnapshot> = (0..want)
                .map(|_| ArenaSnapshot { address: 0, pools: Vec::with_capacity(per_arena) })
                .collect();
            if let Some(used) = self.with(|h| h.fill_snapshot(&mut arenas)) {
                arenas.truncate(used);
                arenas.sort_unstable_by_key(|a| a.address);
                return Snapshot { pools_per_arena: per_arena, arenas };
            }
        }
    }
}

impl Default for PyMalloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: blocks come from the heap, aligned to at least the layout's alignment: pool blocks and
// libc blocks are aligned to the granularity (8 or 16, within malloc's guarantee), debug headers
// keep that alignment, and larger alignments go to posix_memalign; every block is at least
// `layout.size()` long; dealloc and realloc pass back blocks of this allocator.
unsafe impl GlobalAlloc for PyMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with(|h| h.alloc_aligned(layout.size(), layout.align()))
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: GlobalAlloc contract: ptr is a live block of this allocator.
        self.with(|h| unsafe { h.free(ptr) })
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.with(|h| {
            if layout.align() <= h.config().alignment() {
                // SAFETY: GlobalAlloc contract: ptr is a live block of this allocator.
                unsafe { h.realloc(ptr, new_size) }
            } else {
                let new = h.alloc_aligned(new_size, layout.align());
                if !new.is_null() {
                    // SAFETY: both blocks live and distinct; the copy fits in both.
                    unsafe {
                        core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        h.free(ptr);
                    }
                }
                new
            }
        })
    }
}

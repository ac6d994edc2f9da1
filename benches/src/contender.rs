//! The contenders: every allocator a benchmark compares, behind one small trait.
//!
//! The four process-global allocators come from the [`lineup`] registry and are called through
//! `&'static dyn GlobalAlloc`; the fifth contender is a [`pymalloc::Heap`] called directly, with no
//! lock and no `Layout`. A benchmark is written once, generic over [`Contender`], and run for each.

use core::alloc::{GlobalAlloc, Layout};

/// The alignment every benchmark asks the global allocators for: a machine word, what most Rust
/// small objects need. pymalloc's `Heap` always aligns to its own 16-byte granularity.
pub const ALIGN: usize = 8;

/// The benchmark-id name of the direct, unlocked pymalloc heap.
pub const HEAP_NAME: &str = "pymalloc-heap";

/// The benchmark-id name of the same heap with an arena cache (not CPython's behaviour).
pub const CACHED_HEAP_NAME: &str = "pymalloc-heap-cached";

/// Arenas the cached heap keeps mapped: 64 MiB of 1 MiB arenas, enough for every workload here
/// (the largest, `scaling` at a million 64 B blocks, needs 63).
pub const CACHED_ARENAS: usize = 64;

/// An allocator under test: allocate `size` bytes, free a block given its size.
pub trait Contender {
    /// Allocates `size` bytes (`size > 0`); never returns null (aborts on out-of-memory).
    fn alloc(&mut self, size: usize) -> *mut u8;

    /// Frees a block.
    ///
    /// # Safety
    /// `p` was returned by [`Contender::alloc`] on this same contender with this same `size`, and
    /// has not been freed since.
    unsafe fn free(&mut self, p: *mut u8, size: usize);
}

/// A process-global allocator from the registry: name and `GlobalAlloc`.
#[derive(Clone, Copy)]
pub struct Global {
    /// The registry entry.
    pub allocator: lineup::Allocator,
    inner: &'static dyn GlobalAlloc,
}

impl Global {
    /// The registry entry's allocator.
    pub fn new(allocator: lineup::Allocator) -> Global {
        Global { allocator, inner: allocator.global() }
    }

    /// Its benchmark-id name (`system`, `mimalloc`, `jemalloc`, `pymalloc`).
    pub fn name(&self) -> &'static str {
        self.allocator.name()
    }
}

#[inline(always)]
fn layout(size: usize) -> Layout {
    debug_assert!(size > 0, "GlobalAlloc needs a non-zero size");
    match Layout::from_size_align(size, ALIGN) {
        Ok(l) => l,
        Err(_) => panic!("benchmark size {size} is not a valid layout"),
    }
}

impl Contender for Global {
    #[inline]
    fn alloc(&mut self, size: usize) -> *mut u8 {
        let layout = layout(size);
        // SAFETY: `layout` has a non-zero size (every benchmark size is at least 8 bytes).
        let p = unsafe { self.inner.alloc(layout) };
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        p
    }

    #[inline]
    unsafe fn free(&mut self, p: *mut u8, size: usize) {
        // SAFETY: the caller guarantees `p` came from this allocator with this size, so the layout
        // is the one it was allocated with.
        unsafe { self.inner.dealloc(p, layout(size)) }
    }
}

impl<S: pymalloc::ArenaSource> Contender for pymalloc::Heap<S> {
    #[inline]
    fn alloc(&mut self, size: usize) -> *mut u8 {
        let p = pymalloc::Heap::<S>::alloc(self, size);
        if p.is_null() {
            std::alloc::handle_alloc_error(layout(size));
        }
        p
    }

    #[inline]
    unsafe fn free(&mut self, p: *mut u8, _size: usize) {
        // SAFETY: the caller guarantees `p` is a live block of this heap.
        unsafe { pymalloc::Heap::<S>::free(self, p) }
    }
}

/// A fresh pymalloc heap with CPython 3.10's parameters, as the fifth contender.
pub fn heap() -> pymalloc::Heap {
    pymalloc::Heap::new(pymalloc::Config::CPYTHON_3_10)
}

/// A fresh pymalloc heap with CPython 3.10's parameters whose arena source keeps up to
/// [`CACHED_ARENAS`] released arenas mapped instead of unmapping them ([`pymalloc::os::Cached`]).
/// Not CPython's behaviour: it measures what giving arenas back to the OS costs.
pub fn cached_heap() -> pymalloc::Heap<pymalloc::os::Cached> {
    pymalloc::Heap::with_source(
        pymalloc::Config::CPYTHON_3_10,
        pymalloc::os::Cached::new(CACHED_ARENAS),
    )
}

/// The four process-global allocators of the registry, in registry order.
pub fn globals() -> Vec<Global> {
    lineup::Allocator::ALL.into_iter().map(Global::new).collect()
}

/// The cache-line stride [`touch`] writes with.
pub const CACHE_LINE: usize = 64;

/// Writes one byte per cache line and the last byte of a fresh block, so that no allocator wins
/// by handing out pages nobody touches.
///
/// # Safety
/// `p` points to a live block of at least `size > 0` writable bytes.
#[inline]
pub unsafe fn touch(p: *mut u8, size: usize, value: u8) {
    let mut offset = 0;
    while offset < size {
        // SAFETY: `offset < size` and the block has `size` writable bytes.
        unsafe { p.add(offset).write_volatile(value) };
        offset += CACHE_LINE;
    }
    // SAFETY: `size > 0`, so `size - 1` is the block's last byte.
    unsafe { p.add(size - 1).write_volatile(value) };
}

/// Allocates a block on `c` and touches it: the unit every workload is made of.
#[inline]
pub fn alloc_touched<C: Contender + ?Sized>(c: &mut C, size: usize) -> *mut u8 {
    let p = c.alloc(size);
    // SAFETY: `alloc` returned a live, non-null block of `size` bytes.
    unsafe { touch(p, size, size as u8) };
    p
}

//! The `ArenaSource` contract lets arena memory start uninitialised. Debug mode must then tell
//! a never-carved pool from a carved one without reading the never-carved pool's memory. Under
//! Miri, reading it is a read of uninitialised memory, and this test fails.

use pymalloc::{ArenaSource, Config, Heap, HeapError, Preset};
use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;

/// Arenas straight from `System.alloc`: uninitialised memory, as the contract allows.
#[derive(Default)]
struct Uninit {
    /// The alignment of every arena (the heap asks the same for each).
    align: usize,
}

// SAFETY: `System.alloc` returns `size` writable bytes aligned to `align`, or null (mapped to
// `None`), owned by the caller until `dealloc`; `System` is not the global allocator's heap.
unsafe impl ArenaSource for Uninit {
    fn map(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        self.align = align;
        // SAFETY: a non-zero size with a valid alignment.
        NonNull::new(unsafe { System.alloc(Layout::from_size_align(size, align).ok()?) })
    }

    unsafe fn unmap(&mut self, ptr: NonNull<u8>, size: usize) {
        let layout = Layout::from_size_align(size, self.align).unwrap();
        // SAFETY: one whole allocation made by `map` with this layout.
        unsafe { System.dealloc(ptr.as_ptr(), layout) };
    }
}

#[test]
fn a_pointer_into_a_never_carved_pool_of_uninitialised_memory_is_not_allocated() {
    let config = Config::builder(Preset::Cpython310).debug(true).build().unwrap();
    let mut h = Heap::with_source(config, Uninit::default());
    let p = h.alloc(16);
    // Several pools further into the same arena: never carved, never written.
    let far = p.wrapping_add(20 * config.pool_size());
    assert!(h.owns(far));
    // SAFETY: inside a live arena; debug mode validates it without reading the pool.
    let e = unsafe { h.try_free(far) }.unwrap_err();
    assert_eq!(e, HeapError::NotAllocated { address: far.addr() });
    // SAFETY: p is live and freed once.
    unsafe { h.try_free(p) }.unwrap();
    h.check_invariants().unwrap();
}

//! Debug mode reports a free of a pointer the heap never gave out.

use pymalloc::{Config, Heap, HeapError, Preset};

fn debug_heap() -> Heap {
    Heap::new(Config::builder(Preset::Cpython310).debug(true).build().unwrap())
}

#[test]
fn pointer_inside_a_block_is_not_allocated() {
    let mut h = debug_heap();
    let p = h.alloc(64);
    // SAFETY: p + 16 is inside a live block of this heap; debug mode validates it against the
    // pool before reading anything.
    let e = unsafe { h.try_free(p.add(16)) }.unwrap_err();
    assert_eq!(e, HeapError::NotAllocated { address: p as usize + 16 });
    // SAFETY: p is live and freed once.
    unsafe { h.try_free(p) }.unwrap();
    h.check_invariants().unwrap();
}

#[test]
fn pointer_to_memory_outside_the_heap_is_not_allocated() {
    let mut h = debug_heap();
    let stack = [0u8; 64];
    let p = stack.as_ptr().wrapping_add(32).cast_mut();
    // SAFETY: the 32 bytes before p are readable stack memory; nothing is written.
    let e = unsafe { h.try_free(p) }.unwrap_err();
    assert_eq!(e, HeapError::NotAllocated { address: p as usize });
}

#[test]
fn pointer_into_a_never_carved_pool_is_not_allocated() {
    let mut h = debug_heap();
    let p = h.alloc(16);
    // Far into the same arena, in a pool never carved: zeros, no class.
    let far = p.wrapping_add(20 * 16384);
    assert!(h.owns(far));
    // SAFETY: inside a live arena's mapping (checked), validated against its pool header.
    let e = unsafe { h.try_free(far) }.unwrap_err();
    assert_eq!(e, HeapError::NotAllocated { address: far as usize });
    // SAFETY: p is live and freed once.
    unsafe { h.try_free(p) }.unwrap();
}

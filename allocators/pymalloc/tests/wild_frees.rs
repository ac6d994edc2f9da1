//! No input pointer makes the free path panic: it runs under the global allocator's lock,
//! where a panic (its hook and message allocate) would deadlock. Arithmetic on a wild pointer
//! is checked, and what cannot be a block is reported as an error. Run in a build with
//! overflow checks (or under Miri) to see the overflows these tests guard against.

use pymalloc::{Config, Heap, HeapError, Preset};

fn debug_heap() -> Heap {
    Heap::new(Config::builder(Preset::Cpython310).debug(true).build().unwrap())
}

#[test]
fn a_free_of_a_pointer_near_the_top_of_the_address_space_is_not_allocated() {
    let mut h = debug_heap();
    let live = h.alloc(32); // the heap has an arena and an ownership map
    for address in [usize::MAX - 8, usize::MAX, usize::MAX - 4096, 1 << 63] {
        let p = core::ptr::without_provenance_mut::<u8>(address);
        // SAFETY: debug mode validates the pointer before reading anything; this one is in no
        // arena and in no mapping, so nothing is read.
        let e = unsafe { h.try_free(p) }.unwrap_err();
        assert_eq!(e, HeapError::NotAllocated { address });
    }
    // SAFETY: live is freed once.
    unsafe { h.try_free(live) }.unwrap();
    h.check_invariants().unwrap();
}

#[test]
fn a_raw_block_of_another_heap_freed_here_leaves_the_counts_at_zero() {
    let mut a = debug_heap();
    let mut b = debug_heap();
    let p = a.alloc(4000); // above the threshold: a raw (libc) block with a debug header
    assert_eq!(a.stats().raw_blocks_current, 1);
    // SAFETY: p is a live debug block (of `a`, but a valid libc block for `b` to free).
    unsafe { b.try_free(p) }.unwrap();
    let s = b.stats();
    assert_eq!((s.raw_blocks_current, s.raw_bytes_current), (0, 0));
}

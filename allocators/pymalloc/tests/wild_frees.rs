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
    // Without debug mode the heap cannot tell: it hands the block to libc and its own counters
    // must not wrap below zero.
    let plain = || Heap::new(Config::builder(Preset::Cpython310).build().unwrap());
    let (mut a, mut b) = (plain(), plain());
    let p = a.alloc(4000); // above the threshold: a raw (libc) block
    assert_eq!(a.stats().raw_blocks_current, 1);
    // SAFETY: p is a live libc block, valid for any heap to give back to libc; `a` never
    // frees it afterwards.
    unsafe { b.try_free(p) }.unwrap();
    let s = b.stats();
    assert_eq!((s.raw_blocks_current, s.raw_bytes_current), (0, 0));
    std::mem::forget(a);
}

#[test]
fn in_debug_mode_a_raw_block_of_another_heap_is_not_allocated_here() {
    let (mut a, mut b) = (debug_heap(), debug_heap());
    let p = a.alloc(4000);
    // SAFETY: debug mode checks `p` against its own records of raw blocks before reading it.
    let e = unsafe { b.try_free(p) }.unwrap_err();
    assert_eq!(e, HeapError::NotAllocated { address: p as usize });
    let s = b.stats();
    assert_eq!((s.raw_blocks_current, s.raw_bytes_current), (0, 0));
    // SAFETY: p is still a live block of `a`.
    unsafe { a.try_free(p) }.unwrap();
    a.check_invariants().unwrap();
}

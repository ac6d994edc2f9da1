//! Pointer provenance: every block the heap hands out carries the provenance of its arena's
//! mapping, never that of the pointer it was last freed through. Run under Miri (Stacked
//! Borrows), these tests fail when the free list hands back the freeing caller's pointer.

use pymalloc::{Config, Heap};

/// Frees `p` through a pointer derived from an 8-byte reference: its provenance covers only
/// those 8 bytes of the 16-byte block.
///
/// # Safety
/// `p` is a live 16-byte-class block of `h`, at least 8 bytes written.
unsafe fn free_through_a_narrow_reference(h: &mut Heap, p: *mut u8) {
    // SAFETY: p is live, aligned for u64 and its first 8 bytes are initialised (caller).
    let narrow: &mut u64 = unsafe { &mut *p.cast::<u64>() };
    let narrow = core::ptr::from_mut(narrow).cast::<u8>();
    // SAFETY: the block is live and freed once.
    unsafe { h.free(narrow) };
}

#[test]
fn a_block_freed_through_a_narrow_reference_is_handed_out_valid_for_its_whole_size() {
    let mut h = Heap::new(Config::CPYTHON_3_10);
    let p = h.alloc(8);
    // SAFETY: p is a live block of 16 bytes.
    unsafe {
        p.write_bytes(1, 16);
        free_through_a_narrow_reference(&mut h, p);
    }
    let q = h.alloc(16);
    assert_eq!(q, p, "the freed block is the first one handed out again");
    // SAFETY: q is a live 16-byte block: all of it may be written and read.
    unsafe {
        q.write_bytes(0xAB, 16);
        assert!(core::slice::from_raw_parts(q, 16).iter().all(|&b| b == 0xAB));
        h.free(q);
    }
    h.check_invariants().unwrap();
}

#[test]
fn realloc_into_a_block_freed_through_a_narrow_reference_copies_the_whole_request() {
    let mut h = Heap::new(Config::CPYTHON_3_10);
    let keep = h.alloc(16); // keeps the 16-byte pool in use once `x` is freed
    let x = h.alloc(16);
    // SAFETY: x is a live 16-byte block.
    unsafe {
        x.write_bytes(0, 16);
        free_through_a_narrow_reference(&mut h, x);
    }
    // A 32-byte block shrunk to 16 bytes no longer fits well (16 <= 3/4 of 32), so realloc
    // moves it into the 16-byte block freed above, copying 16 bytes.
    let y = h.alloc(32);
    // SAFETY: y is a live 32-byte block.
    unsafe { y.write_bytes(7, 32) };
    // SAFETY: y is live.
    let z = unsafe { h.realloc(y, 16) };
    assert_eq!(z, x);
    // SAFETY: z is a live 16-byte block holding the 16 bytes copied.
    unsafe {
        assert!(core::slice::from_raw_parts(z, 16).iter().all(|&b| b == 7));
        z.write_bytes(9, 16);
        h.free(z);
        h.free(keep);
    }
    h.check_invariants().unwrap();
}

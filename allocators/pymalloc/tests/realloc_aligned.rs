//! `Heap::realloc_aligned` keeps the alignment of blocks from `alloc_aligned`, in plain and
//! debug mode, growing and shrinking, and keeps their bytes.

mod common;
use pymalloc::{Config, Heap, Preset};

#[test]
fn realloc_aligned_keeps_alignment_and_contents() {
    for debug in [false, true] {
        let mut h = Heap::new(Config::builder(Preset::Cpython310).debug(debug).build().unwrap());
        for align in [8usize, 16, 32, 64, 4096, 65536] {
            let mut p = h.alloc_aligned(100, align);
            let mut len = 100;
            // SAFETY: 100 live bytes.
            unsafe { common::fill(p, len, align as u64) };
            for size in [50usize, 3000, 100_000, 24, 700] {
                // SAFETY: p is live, allocated with `align`, resized once.
                let q = unsafe { h.realloc_aligned(p, size, align) };
                assert!(!q.is_null());
                assert_eq!(q as usize % align, 0, "debug {debug}, align {align}, size {size}");
                let kept = len.min(size);
                // SAFETY: q holds at least `kept` bytes copied from p.
                assert!(unsafe { common::holds(q, kept, align as u64) });
                // SAFETY: `size` live bytes.
                unsafe { common::fill(q, size, align as u64) };
                (p, len) = (q, size);
                h.check_invariants().unwrap();
            }
            // SAFETY: p is live and freed once.
            unsafe { h.try_free(p) }.unwrap();
        }
        let s = h.stats();
        assert_eq!((s.raw_blocks_current, s.blocks_in_use()), (0, 0));
        h.check_invariants().unwrap();
    }
}

#[test]
fn realloc_aligned_of_null_allocates_aligned() {
    let mut h = Heap::new(Config::CPYTHON_3_10);
    // SAFETY: null is allowed.
    let p = unsafe { h.realloc_aligned(std::ptr::null_mut(), 10, 256) };
    assert_eq!(p as usize % 256, 0);
    // SAFETY: p is live and freed once.
    unsafe { h.free(p) };
}

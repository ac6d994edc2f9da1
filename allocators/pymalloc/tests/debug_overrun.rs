//! Debug mode reports a one-byte write past the end of a block.

use pymalloc::{CLEAN_BYTE, Config, DEAD_BYTE, Heap, HeapError, Preset};

fn debug_heap() -> Heap {
    Heap::new(Config::builder(Preset::Cpython310).debug(true).build().unwrap())
}

#[test]
fn one_byte_overrun_is_reported_with_address_and_size() {
    for overhead in [24, 32] {
        let c = Config::builder(Preset::Cpython310).debug(true).debug_overhead(overhead);
        one_byte_overrun_is_reported(Heap::new(c.build().unwrap()), overhead);
    }
}

fn one_byte_overrun_is_reported(mut h: Heap, overhead: usize) {
    // 512 - overhead: the largest pool request (with 24 bytes its guard ends the block).
    for size in [1usize, 17, 100, 470, 512 - overhead, 1000] {
        let p = h.alloc(size);
        // SAFETY: writing one byte past the block is the bug under test; it lands on the guard,
        // which debug mode placed there.
        unsafe {
            p.add(size).write(0);
            let e = h.try_free(p).unwrap_err();
            assert_eq!(e, HeapError::Overrun { address: p as usize, size });
            // Mend the guard so the block can be freed and the heap left clean.
            p.add(size).write(pymalloc::FORBIDDEN_BYTE);
            h.try_free(p).unwrap();
        }
    }
    h.check_invariants().unwrap();
}

#[test]
fn fresh_bytes_are_poisoned_and_freed_bytes_too() {
    let mut h = debug_heap();
    let p = h.alloc(64);
    // SAFETY: 64 live bytes.
    assert!(unsafe { std::slice::from_raw_parts(p, 64) }.iter().all(|&b| b == CLEAN_BYTE));
    let keep = h.alloc(64); // keeps the pool in use so its memory stays readable
    // SAFETY: p is live and freed once; afterwards its bytes (past the free-list word, which is
    // in the header) are still inside a live pool and readable.
    unsafe {
        h.free(p);
        assert!(std::slice::from_raw_parts(p, 64).iter().all(|&b| b == DEAD_BYTE));
        h.free(keep);
    }
}

//! `Heap::block_size` answers only for carved pools of a size class.
//!
//! Before the fix it read the header of any pool of the arena, carved or not: for a pool never
//! carved that is uninitialised memory (zero in a fresh mapping, so it answered the smallest
//! class). (`PyMalloc::block_size`, which reads another thread's pool header, is `unsafe`
//! since the same review; its doc has a `compile_fail` example that safe code cannot call it.)

use pymalloc::{Config, Heap};

#[test]
fn block_size_is_none_outside_a_carved_pool() {
    let config = Config::CPYTHON_3_10;
    let ps = config.pool_size();
    let mut heap = Heap::new(config);
    let p = heap.alloc(16);
    assert!(!p.is_null());
    assert_eq!(heap.block_size(p), Some(16));
    // The arena's first carved pool holds `p`; the pools after the next few are not carved.
    let pool = p.addr() & !(ps - 1);
    let uncarved = p.with_addr(pool + 4 * ps + 64);
    assert!(heap.owns(uncarved), "still inside the arena");
    assert_eq!(heap.block_size(uncarved), None, "a pool never carved has no block size");
    // SAFETY: `p` is a live block of `heap`, freed once.
    unsafe { heap.free(p) };
}

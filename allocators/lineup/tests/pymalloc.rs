//! pymalloc: 64 MiB of 256-byte blocks (small objects, served from arenas) shows in its
//! statistics; freeing them all unmaps every arena but the one it keeps, with no release call.
mod common;
use common::*;
use lineup::{Allocator, Release};

#[test]
fn pymalloc_counts_64_mib_of_small_blocks_and_unmaps_empty_arenas_at_free() {
    let a = Allocator::Pymalloc;
    let before = a.stats();
    let blocks = Blocks::allocate(a, TOTAL, 256);
    let during = a.stats();
    assert_grew(&before, &during, TOTAL);
    let arena = during.counter("arena_size").unwrap();
    assert!(during.counter("arenas_current").unwrap() * arena >= TOTAL as u64);
    blocks.free();
    assert!(matches!(a.release(), Release::NotAvailable { .. }));
    let after = a.stats();
    let (u0, h0) = figures(&before);
    let (u2, h2) = figures(&after);
    assert_eq!(u2, u0, "every block freed");
    // At most the one empty arena CPython 3.9+ keeps stays mapped.
    assert!(h2 <= h0 + arena, "held {h0} -> {h2} after free");
    assert!(
        after.counter("arenas_reclaimed").unwrap() > before.counter("arenas_reclaimed").unwrap()
    );
}

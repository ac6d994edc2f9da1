//! mimalloc: 64 MiB of 4 KiB blocks shows in its heap walk and commit count, and after free +
//! `mi_collect(true)` the blocks are gone and the process's resident set falls back.
mod common;
use common::*;
use lineup::{Allocator, Release};

#[test]
fn mimalloc_counts_64_mib_of_4_kib_blocks_and_collects_them() {
    let a = Allocator::Mimalloc;
    let before = a.stats();
    let rss0 = rss();
    let blocks = Blocks::allocate(a, TOTAL, 4096);
    let during = a.stats();
    assert_grew(&before, &during, TOTAL);
    assert_eq!(during.counter("heap.visit_complete"), Some(1));
    assert!(rss() >= rss0 + TOTAL as u64 - SLACK);
    blocks.free();
    let release = a.release();
    assert!(matches!(&release, Release::Called { call, .. } if call == "mi_collect(true)"));
    let after = a.stats();
    let (u0, _) = figures(&before);
    let (u2, _) = figures(&after);
    assert!(u2 <= u0 + SLACK, "in use {u0} -> {u2} after free");
    assert_eq!(after.counter("heap.committed_bytes"), Some(0), "no page left in the heap");
    // On Linux mimalloc purges with MADV_DONTNEED and does not count that as a decommit, so its
    // commit figure stays up: the kernel's resident set is the figure that must fall.
    assert!(rss() <= rss0 + RSS_SLACK, "RSS {rss0} -> {} after free + collect", rss());
}

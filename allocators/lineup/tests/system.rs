//! glibc: 64 MiB of 4 KiB blocks shows in `mallinfo2`, and after free + `malloc_trim(0)` the
//! process's resident set falls back.
mod common;
use common::*;
use lineup::{Allocator, Release};

#[test]
fn glibc_counts_64_mib_of_4_kib_blocks_and_trims_them() {
    let a = Allocator::System;
    let before = a.stats();
    let rss0 = rss();
    let blocks = Blocks::allocate(a, TOTAL, 4096);
    let during = a.stats();
    assert_grew(&before, &during, TOTAL);
    assert!(rss() >= rss0 + TOTAL as u64 - SLACK);
    blocks.free();
    let release = a.release();
    assert!(matches!(&release, Release::Called { call, .. } if call == "malloc_trim(0)"));
    let after = a.stats();
    let (u0, _) = figures(&before);
    let (u2, _) = figures(&after);
    assert!(u2 <= u0 + SLACK, "in use {u0} -> {u2} after free");
    // glibc may keep address space (`arena`) whose pages malloc_trim madvised away, so the kernel's
    // resident set is the figure that must fall.
    assert!(rss() <= rss0 + RSS_SLACK, "RSS {rss0} -> {} after free + trim", rss());
    for k in ["arena", "uordblks", "fordblks", "hblkhd", "keepcost"] {
        assert!(after.counters.contains_key(k), "{k} missing");
    }
}

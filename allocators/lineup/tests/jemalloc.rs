//! jemalloc: 64 MiB of 4 KiB blocks shows in `stats.allocated` and `stats.resident`, and after
//! free + tcache flush + purge both fall back.
mod common;
use common::*;
use lineup::{Allocator, Release};

#[test]
fn jemalloc_counts_64_mib_of_4_kib_blocks_and_purges_them() {
    let a = Allocator::Jemalloc;
    let before = a.stats();
    let blocks = Blocks::allocate(a, TOTAL, 4096);
    let during = a.stats();
    assert_grew(&before, &during, TOTAL);
    blocks.free();
    let release = a.release();
    assert!(
        matches!(&release, Release::Called { call, .. } if call.contains("purge")),
        "{release}"
    );
    let after = a.stats();
    let (u0, h0) = figures(&before);
    let (u2, h2) = figures(&after);
    assert!(u2 <= u0 + SLACK, "allocated {u0} -> {u2} after free");
    assert!(h2 <= h0 + SLACK, "resident {h0} -> {h2} after free + purge");
    for k in ["stats.active", "stats.mapped", "stats.retained"] {
        assert!(after.counters.contains_key(k), "{k} missing");
    }
}

//! Shared by the per-allocator test binaries. Each allocator is process-global, so each one is
//! tested in its own binary with a single test function: no other test allocates through it
//! meanwhile.

use core::alloc::Layout;
use lineup::{Allocator, AllocatorStats};

/// 64 MiB, the amount each test allocates and frees.
pub const TOTAL: usize = 64 << 20;

/// Figures below this many bytes are noise: the harness's own allocations, allocator metadata.
pub const SLACK: u64 = 4 << 20;

/// The OS view is noisier (allocator metadata, pages the allocator keeps on purpose, the test
/// harness): after a release the resident set must come back within 8 MiB, 1/8 of [`TOTAL`].
#[allow(dead_code)] // not every binary reads the OS view
pub const RSS_SLACK: u64 = 8 << 20;

/// Blocks allocated through one allocator and written, freed on [`Blocks::free`].
pub struct Blocks {
    alloc: Allocator,
    layout: Layout,
    ptrs: Vec<*mut u8>,
}

impl Blocks {
    /// Allocates `total / block` blocks of `block` bytes and writes every byte of each.
    pub fn allocate(alloc: Allocator, total: usize, block: usize) -> Blocks {
        let layout = Layout::from_size_align(block, 8).unwrap();
        let mut ptrs = Vec::with_capacity(total / block);
        for i in 0..total / block {
            // SAFETY: the layout has a non-zero size.
            let p = unsafe { alloc.global().alloc(layout) };
            assert!(!p.is_null(), "{alloc} returned null for block {i}");
            // SAFETY: `p` is a fresh block of `block` bytes.
            unsafe { p.write_bytes(i as u8 | 1, block) };
            ptrs.push(p);
        }
        Blocks { alloc, layout, ptrs }
    }

    /// Frees every block.
    pub fn free(self) {
        for p in self.ptrs {
            // SAFETY: each pointer came from this allocator with this layout and is freed once.
            unsafe { self.alloc.global().dealloc(p, self.layout) };
        }
    }
}

/// Both summary figures, which every allocator reports.
pub fn figures(s: &AllocatorStats) -> (u64, u64) {
    (s.in_use_bytes.expect("in_use_bytes"), s.held_bytes.expect("held_bytes"))
}

/// The process's resident set from /proc/self/statm, in bytes.
#[allow(dead_code)] // not every binary reads the OS view
pub fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The allocator's figures grow by the whole allocation while it is live.
pub fn assert_grew(before: &AllocatorStats, during: &AllocatorStats, total: usize) {
    let (u0, h0) = figures(before);
    let (u1, h1) = figures(during);
    let a = before.allocator;
    assert!(u1 >= u0 + total as u64, "{a}: in use {u0} -> {u1}, expected +{total}");
    // Held memory may have included some free memory before; allow SLACK of it to be reused.
    assert!(h1 + SLACK >= h0 + total as u64, "{a}: held {h0} -> {h1}, expected about +{total}");
}

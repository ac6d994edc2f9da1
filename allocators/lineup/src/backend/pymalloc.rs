//! pymalloc: statistics from `pymalloc::Stats`; no release call and no run-time knobs.

use crate::{Allocator, AllocatorStats, Release};

pub(crate) fn stats() -> AllocatorStats {
    let s = Allocator::pymalloc().stats();
    let counters = [
        ("arena_size", s.arena_size as u64),
        ("pool_size", s.pool_size as u64),
        ("arenas_allocated_total", s.arenas_allocated_total),
        ("arenas_reclaimed", s.arenas_reclaimed),
        ("arenas_highwater", s.arenas_highwater as u64),
        ("arenas_current", s.arenas_current as u64),
        ("pools_used", s.pools_used as u64),
        ("pools_full", s.pools_full as u64),
        ("pools_empty", s.pools_empty as u64),
        ("pools_never_carved", s.pools_never_carved as u64),
        ("bytes_in_allocated_blocks", s.bytes_in_allocated_blocks as u64),
        ("bytes_in_available_blocks", s.bytes_in_available_blocks as u64),
        ("bytes_in_unused_pools", s.bytes_in_unused_pools as u64),
        ("raw_allocations_total", s.raw_allocations_total),
        ("raw_blocks_current", s.raw_blocks_current as u64),
        ("raw_bytes_current", s.raw_bytes_current as u64),
    ];
    AllocatorStats {
        allocator: Allocator::Pymalloc,
        in_use_bytes: Some((s.bytes_in_allocated_blocks + s.raw_bytes_current) as u64),
        // Arena memory, plus the raw allocator's live bytes (CPython's raw domain is malloc,
        // which holds at least what it hands out).
        held_bytes: Some((s.arena_bytes() + s.raw_bytes_current) as u64),
        counters: counters.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
    }
}

pub(crate) fn release() -> Release {
    Release::NotAvailable {
        reason: "pymalloc has no release call: an arena is unmapped as soon as its last block is \
                 freed, except the one empty arena it keeps (CPython 3.9+); an arena with a live \
                 block cannot be returned"
            .into(),
    }
}

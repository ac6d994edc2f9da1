//! The keep-one rule (3.9+) on arenas that hold a single pool.
//!
//! An 8 KiB pool in a 16 KiB arena placed one page past a pool boundary leaves room for one
//! pool. Such an arena goes from full (on no list) straight to wholly free in one free, so
//! "the last arena of `usable_arenas`" has to be decided for an arena that is not on the list:
//! it would go to the head (CPython's order puts a newly usable arena first, 1 free pool being
//! the fewest), so it is the last only when no other arena is usable. Freeing everything must
//! leave exactly one arena, as the rule gives for CPython's own layouts.

mod common;
use common::{Placed, Placement};
use pymalloc::{ArenaPolicy, Config, Heap, Preset};

const POOL: usize = 8192;
const ARENA: usize = 16384;
const ARENAS: usize = 5;

fn config(policy: ArenaPolicy, keep: bool) -> Config {
    Config::builder(Preset::Cpython310)
        .pool_size(POOL)
        .arena_size(ARENA)
        .policy(policy)
        .keep_last_empty_arena(keep)
        .build()
        .unwrap()
}

/// Fills `ARENAS` one-pool arenas with 32-byte blocks, checks the layout, frees every block
/// (oldest first, or newest first) and returns the heap.
fn fill_and_free(policy: ArenaPolicy, keep: bool, newest_first: bool) -> Heap<Placed> {
    let cfg = config(policy, keep);
    let mut h = Heap::with_source(cfg, Placed::new(Placement::Misaligned, POOL));
    let per_pool = cfg.blocks_per_pool(cfg.size_class(32).unwrap());
    assert_eq!(per_pool, (POOL - 48) / 32);
    let mut ptrs: Vec<*mut u8> = (0..ARENAS * per_pool).map(|_| h.alloc(32)).collect();
    let s = h.stats();
    // One pool per arena: the page lost to misalignment costs the second pool.
    assert_eq!((s.arenas_current, s.pools_full, s.pools_never_carved), (ARENAS, ARENAS, 0));
    assert_eq!(s.bytes_lost_to_arena_alignment, ARENAS * POOL);
    h.check_invariants().unwrap();
    if newest_first {
        ptrs.reverse();
    }
    for p in ptrs {
        // SAFETY: each block is live and freed once.
        unsafe { h.free(p) };
        h.check_invariants().unwrap();
    }
    h
}

#[test]
fn freeing_every_one_pool_arena_keeps_exactly_one() {
    for newest_first in [false, true] {
        let h = fill_and_free(ArenaPolicy::MostUsedFirst, true, newest_first);
        let s = h.stats();
        assert_eq!(s.arenas_current, 1, "newest first: {newest_first}");
        assert_eq!(s.arenas_reclaimed, ARENAS as u64 - 1);
        assert_eq!(h.source().unmaps, ARENAS - 1);
        assert_eq!((s.pools_empty, s.blocks_in_use()), (1, 0));
    }
}

#[test]
fn the_newest_first_policy_treats_one_pool_arenas_like_larger_ones() {
    // Freed oldest first, each emptied arena has an older usable arena after it except the
    // last: one is kept.
    let h = fill_and_free(ArenaPolicy::NewestFirst, true, false);
    assert_eq!(h.stats().arenas_current, 1);
    assert_eq!(h.source().unmaps, ARENAS - 1);
    // Freed newest first, each emptied arena is the oldest usable one, so that policy keeps
    // every one, exactly as it does with 2-pool (pool-aligned) arenas of the same layout.
    let h = fill_and_free(ArenaPolicy::NewestFirst, true, true);
    let one_pool = h.stats().arenas_current;
    let cfg = config(ArenaPolicy::NewestFirst, true);
    let mut two = Heap::with_source(cfg, Placed::new(Placement::PoolAligned, POOL));
    let per_pool = cfg.blocks_per_pool(cfg.size_class(32).unwrap());
    let mut ptrs: Vec<*mut u8> = (0..2 * ARENAS * per_pool).map(|_| two.alloc(32)).collect();
    assert_eq!(two.stats().arenas_current, ARENAS);
    ptrs.reverse();
    for p in ptrs {
        // SAFETY: each block is live and freed once.
        unsafe { two.free(p) };
    }
    two.check_invariants().unwrap();
    assert_eq!(one_pool, two.stats().arenas_current);
    assert_eq!(one_pool, ARENAS);
}

#[test]
fn without_keep_one_every_one_pool_arena_is_released() {
    for policy in [ArenaPolicy::MostUsedFirst, ArenaPolicy::NewestFirst] {
        let h = fill_and_free(policy, false, false);
        assert_eq!(h.stats().arenas_current, 0);
        assert_eq!(h.source().unmaps, ARENAS);
    }
}

#[test]
fn a_kept_one_pool_arena_is_reused_then_kept_again_without_thrashing() {
    let cfg = config(ArenaPolicy::MostUsedFirst, true);
    let mut h = Heap::with_source(cfg, Placed::new(Placement::Misaligned, POOL));
    for _ in 0..100 {
        let p = h.alloc(32);
        // SAFETY: p is live and freed once.
        unsafe { h.free(p) };
        h.check_invariants().unwrap();
    }
    assert_eq!((h.source().maps, h.source().unmaps, h.stats().arenas_current), (1, 0, 1));
}

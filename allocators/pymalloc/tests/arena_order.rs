//! Why the arena order matters: CPython takes new pools from the most-used arena, so a nearly
//! empty arena drains and can be released; taking them from the newest arena keeps it alive.

mod common;
use common::{Placed, Placement};
use pymalloc::{ArenaPolicy, Config, Heap, Preset};

const PER_POOL: usize = 510; // 32-byte blocks in a 16 KiB pool
const POOLS: usize = 63; // pools in a misaligned 1 MiB arena

/// Three full arenas; arena 0 keeps 53 full pools, arena 2 (the newest) keeps 3; ten pools'
/// worth of new blocks arrive; then arena 2's last old blocks die. Returns arenas left.
fn scenario(policy: ArenaPolicy) -> (usize, usize) {
    // Without the keep-last rule, so that an emptied arena is always released.
    let cfg = Config::builder(Preset::Cpython310)
        .policy(policy)
        .keep_last_empty_arena(false)
        .build()
        .unwrap();
    let mut h = Heap::with_source(cfg, Placed::new(Placement::Misaligned, cfg.pool_size()));
    let ptrs: Vec<*mut u8> = (0..3 * POOLS * PER_POOL).map(|_| h.alloc(32)).collect();
    assert_eq!(h.stats().arenas_current, 3);
    let pool = |arena: usize, j: usize| &ptrs[(arena * POOLS + j) * PER_POOL..][..PER_POOL];
    let free_pools = |h: &mut Heap<Placed>, arena: usize, range: std::ops::Range<usize>| {
        for j in range {
            for &p in pool(arena, j) {
                // SAFETY: each block is live and freed once.
                unsafe { h.free(p) };
            }
        }
        h.check_invariants().unwrap();
    };
    free_pools(&mut h, 0, 0..10);
    free_pools(&mut h, 2, 0..60);
    let _new: Vec<*mut u8> = (0..10 * PER_POOL).map(|_| h.alloc(32)).collect();
    h.check_invariants().unwrap();
    let before = h.stats().arenas_current;
    free_pools(&mut h, 2, 60..63);
    (before, h.stats().arenas_current)
}

#[test]
fn most_used_first_lets_a_nearly_empty_arena_drain_and_be_released() {
    assert_eq!(scenario(ArenaPolicy::MostUsedFirst), (3, 2));
}

#[test]
fn newest_first_puts_new_pools_in_the_nearly_empty_arena_and_keeps_it() {
    assert_eq!(scenario(ArenaPolicy::NewestFirst), (3, 3));
}

#[test]
fn the_last_empty_arena_is_kept_only_from_3_9_on() {
    for (preset, left) in [(Preset::Cpython310, 1), (Preset::Cpython38, 0)] {
        let cfg = Config::preset(preset);
        let mut h = Heap::with_source(cfg, Placed::new(Placement::Misaligned, cfg.pool_size()));
        let p = h.alloc(64);
        // SAFETY: live block freed once.
        unsafe { h.free(p) };
        assert_eq!(h.stats().arenas_current, left, "{preset:?}");
        // Allocating again after the release maps a fresh arena only when none was kept.
        let q = h.alloc(64);
        assert_eq!(h.stats().arenas_allocated_total, 2 - left as u64, "{preset:?}");
        // SAFETY: live block freed once.
        unsafe { h.free(q) };
    }
}

#[test]
fn requests_outside_the_small_range_go_to_the_raw_allocator_and_are_counted() {
    let mut h = Heap::new(Config::CPYTHON_3_10);
    let zero = h.alloc(0);
    let big = h.alloc(513);
    let aligned = h.alloc_aligned(64, 64);
    assert!(!h.owns(zero) && !h.owns(big) && !h.owns(aligned));
    assert_eq!(aligned as usize % 64, 0);
    let s = h.stats();
    assert_eq!((s.raw_blocks_current, s.raw_allocations_total, s.arenas_current), (3, 3, 0));
    assert!(s.raw_bytes_current >= 1 + 513 + 64);
    // SAFETY: live blocks freed once.
    unsafe {
        h.free(zero);
        h.free(big);
        h.free(aligned);
    }
    let s = h.stats();
    assert_eq!((s.raw_blocks_current, s.raw_bytes_current, s.raw_allocations_total), (0, 0, 3));
}

#[test]
fn realloc_keeps_a_block_that_still_fits_well_and_moves_one_that_does_not() {
    let mut h = Heap::new(Config::CPYTHON_3_10);
    let p = h.alloc(100); // 112-byte class
    // SAFETY: p is live; each realloc returns the live block.
    unsafe {
        p.write_bytes(7, 100);
        assert_eq!(h.realloc(p, 112), p, "fits");
        assert_eq!(h.realloc(p, 85), p, "85 > 3/4 of 112: kept");
        let q = h.realloc(p, 84);
        assert_ne!(q, p, "84 <= 3/4 of 112: moved to a smaller class");
        assert!(std::slice::from_raw_parts(q, 84).iter().all(|&b| b == 7));
        let r = h.realloc(q, 4000);
        assert!(!h.owns(r), "too large for pools: raw");
        assert!(std::slice::from_raw_parts(r, 84).iter().all(|&b| b == 7));
        h.free(r);
    }
    h.check_invariants().unwrap();
    assert_eq!(h.stats().blocks_in_use(), 0);
}

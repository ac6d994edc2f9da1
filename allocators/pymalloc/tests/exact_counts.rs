//! Exact arena and pool counts computed from the layout (3.10: 16 KiB pools, 1 MiB arenas).
//!
//! 1,000,000 blocks of 32 B at 510 blocks per pool fill ceil(1e6 / 510) = 1,961 pools: 1,960
//! full pools and one holding 400 blocks. Arenas that start one page past a pool boundary hold
//! 63 pools (one is lost to alignment), so the blocks need ceil(1961 / 63) = 32 arenas;
//! pool-aligned arenas hold 64, so ceil(1961 / 64) = 31.

mod common;
use common::{Placed, Placement};
use pymalloc::{Config, Heap, PoolState, Preset};

const N: usize = 1_000_000;

fn heap(placement: Placement, config: Config) -> Heap<Placed> {
    Heap::with_source(config, Placed::new(placement, config.pool_size()))
}

fn alloc_all(h: &mut Heap<Placed>, n: usize, size: usize) -> Vec<*mut u8> {
    (0..n)
        .map(|i| {
            let p = h.alloc(size);
            assert!(!p.is_null());
            // SAFETY: a live block of `size` bytes.
            unsafe { p.cast::<u64>().write(i as u64) };
            p
        })
        .collect()
}

#[test]
fn a_million_32_byte_blocks_fill_1961_pools_in_32_misaligned_arenas() {
    let mut h = heap(Placement::Misaligned, Config::CPYTHON_3_10);
    let _ptrs = alloc_all(&mut h, N, 32);
    let s = h.stats();
    assert_eq!(s.classes[1].pools, 1961);
    assert_eq!((s.pools_full, s.pools_used), (1960, 1));
    assert_eq!(s.classes[1].blocks_in_use, N);
    assert_eq!(s.classes[1].blocks_available, 1961 * 510 - N);
    assert_eq!(s.arenas_current, 32);
    assert_eq!(s.arenas_allocated_total, 32);
    assert_eq!(s.pools_never_carved, 32 * 63 - 1961);
    assert_eq!(s.bytes_lost_to_arena_alignment, 32 * 16384);
    assert_eq!(s.bytes_lost_to_quantization, 1961 * 16);
    assert_eq!(s.accounted_bytes(), 32 << 20);
    assert_eq!(h.source().maps, 32);
    h.check_invariants().unwrap();
}

#[test]
fn pool_aligned_arenas_lose_no_pool_and_need_31() {
    let cfg = Config::builder(Preset::Cpython310).aligned_arenas(true).build().unwrap();
    let mut h = heap(Placement::PoolAligned, cfg);
    let _ptrs = alloc_all(&mut h, N, 32);
    let s = h.stats();
    assert_eq!((s.arenas_current, s.classes[1].pools), (31, 1961));
    assert_eq!(s.bytes_lost_to_arena_alignment, 0);
    assert_eq!(s.pools_never_carved, 31 * 64 - 1961);
    h.check_invariants().unwrap();
}

#[test]
fn freeing_everything_releases_every_arena_but_one() {
    let mut h = heap(Placement::Misaligned, Config::CPYTHON_3_10);
    let ptrs = alloc_all(&mut h, N, 32);
    for p in ptrs {
        // SAFETY: each block is live and freed once.
        unsafe { h.free(p) };
    }
    let s = h.stats();
    assert_eq!(s.arenas_current, 1, "3.9+ keeps the last empty arena");
    assert_eq!(s.arenas_reclaimed, 31);
    assert_eq!(s.arenas_highwater, 32);
    assert_eq!(s.blocks_in_use(), 0);
    assert_eq!(h.source().unmaps, 31);
    h.check_invariants().unwrap();
}

#[test]
fn cpython_3_8_releases_every_empty_arena_at_once() {
    let mut h = heap(Placement::Misaligned, Config::CPYTHON_3_8);
    // 3.8: 4 KiB pools hold 126 blocks of 32 B; 256 KiB arenas hold 63 pools when misaligned.
    let n = 126 * 63 * 3;
    let ptrs = alloc_all(&mut h, n, 32);
    assert_eq!(h.stats().arenas_current, 3);
    for p in ptrs {
        // SAFETY: each block is live and freed once.
        unsafe { h.free(p) };
    }
    let s = h.stats();
    assert_eq!((s.arenas_current, s.arenas_reclaimed), (0, 3));
    assert_eq!(h.source().unmaps, 3);
    h.check_invariants().unwrap();
}

#[test]
fn freeing_every_other_block_releases_no_arena() {
    let mut h = heap(Placement::Misaligned, Config::CPYTHON_3_10);
    let ptrs = alloc_all(&mut h, N, 32);
    for p in ptrs.iter().step_by(2) {
        // SAFETY: each block is live and freed once.
        unsafe { h.free(*p) };
    }
    let s = h.stats();
    assert_eq!(s.arenas_current, 32);
    assert_eq!(s.arenas_reclaimed, 0);
    assert_eq!(s.classes[1].blocks_in_use, N / 2);
    // Every pool still holds live blocks: none is empty, so RSS cannot drop at all.
    assert_eq!(s.pools_empty, 0);
    assert_eq!(s.pools_used, 1961);
    h.check_invariants().unwrap();
}

#[test]
fn refilling_half_a_million_after_every_other_free_needs_no_new_arena() {
    let mut h = heap(Placement::Misaligned, Config::CPYTHON_3_10);
    let ptrs = alloc_all(&mut h, N, 32);
    for p in ptrs.iter().step_by(2) {
        // SAFETY: each block is live and freed once.
        unsafe { h.free(*p) };
    }
    let _more = alloc_all(&mut h, N / 2, 32);
    let s = h.stats();
    assert_eq!(s.arenas_allocated_total, 32, "the freed blocks are reused: no new arena");
    assert_eq!(s.classes[1].blocks_in_use, N);
    assert_eq!(s.pools_full, 1960);
    for (i, p) in ptrs.iter().enumerate().skip(1).step_by(2) {
        // SAFETY: odd-indexed blocks were never freed.
        assert_eq!(unsafe { p.cast::<u64>().read() }, i as u64);
    }
    h.check_invariants().unwrap();
}

#[test]
fn one_survivor_per_pool_pins_every_arena() {
    // Keep the first block of each pool: 1961 survivors hold all 32 arenas (about 32 MiB)
    // for 1961 × 32 B = 61 KiB of live data.
    let mut h = heap(Placement::Misaligned, Config::CPYTHON_3_10);
    let ptrs = alloc_all(&mut h, N, 32);
    for (i, p) in ptrs.iter().enumerate() {
        if i % 510 != 0 {
            // SAFETY: each block is live and freed once.
            unsafe { h.free(*p) };
        }
    }
    let s = h.stats();
    assert_eq!(s.classes[1].blocks_in_use, 1961);
    assert_eq!(s.arenas_current, 32);
    assert_eq!(s.pools_used, 1961);
    h.check_invariants().unwrap();
}

#[test]
fn snapshot_shows_every_pool_state() {
    let mut h = heap(Placement::Misaligned, Config::CPYTHON_3_10);
    // Two full pools, one used pool, then empty the first pool.
    let ptrs = alloc_all(&mut h, 510 * 2 + 10, 32);
    for p in &ptrs[..510] {
        // SAFETY: each block is live and freed once.
        unsafe { h.free(*p) };
    }
    let snap = h.snapshot();
    assert_eq!(snap.arenas.len(), 1);
    assert_eq!(snap.arenas[0].pools.len(), 63);
    assert_eq!(snap.count(PoolState::Empty), 1);
    assert_eq!(snap.count(PoolState::Full), 1);
    assert_eq!(snap.count(PoolState::Used), 1);
    assert_eq!(snap.count(PoolState::NeverCarved), 60);
    assert_eq!(snap.arenas[0].pools[2].blocks_in_use, 10);
}

#[test]
fn an_empty_pool_is_reused_for_another_size_class() {
    let mut h = heap(Placement::Misaligned, Config::CPYTHON_3_10);
    let a = h.alloc(32);
    // SAFETY: live block freed once.
    unsafe { h.free(a) };
    let b = h.alloc(100);
    assert_eq!(a, b, "the pool, now empty, is re-initialised for the 112-byte class");
    let s = h.stats();
    assert_eq!((s.classes[1].pools, s.classes[6].pools, s.pools_empty), (0, 1, 0));
    h.check_invariants().unwrap();
}

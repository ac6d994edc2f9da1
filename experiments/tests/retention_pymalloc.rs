//! pymalloc's counters, as a retention worker reports them, against the exact figures the
//! CPython 3.10 layout predicts for a million 32-byte objects.

use arenalab::procs::Spawn;
use arenalab::retention::{PymallocCounters, Run};
use pymalloc::Config;

const N: usize = 1_000_000;
const SIZE: usize = 32;

fn run(workload: &str) -> Run {
    Spawn::worker("retention")
        .exe(env!("CARGO_BIN_EXE_arenalab"))
        .args(["--allocator", "pymalloc", "--workload", workload])
        .args(["--objects", &N.to_string(), "--size", &SIZE.to_string()])
        .run_json()
        .unwrap()
}

fn counters(run: &Run, phase: &str) -> PymallocCounters {
    run.phases
        .iter()
        .find(|p| p.name == phase)
        .and_then(|p| p.pymalloc)
        .unwrap_or_else(|| panic!("no pymalloc counters for phase {phase}"))
}

/// Pools a million 32-byte blocks need: 510 blocks per 16 KiB pool → 1,961 pools.
fn pools_needed() -> u64 {
    let cfg = Config::CPYTHON_3_10;
    let per_pool = cfg.blocks_per_pool(cfg.size_class(SIZE).unwrap());
    assert_eq!(per_pool, 510);
    N.div_ceil(per_pool) as u64
}

/// The fewest arenas that hold `pools`, given how many of them lost a pool to alignment: an
/// arena holds 64 pools, 63 when its mmap'd start is not 16 KiB-aligned.
fn check_arena_count(c: &PymallocCounters, pools: u64) {
    let pools_per_arena = c.arena_size / c.pool_size;
    let misaligned = c.bytes_lost_to_arena_alignment / c.pool_size;
    let capacity = c.arenas_current * pools_per_arena - misaligned;
    assert!(capacity >= pools, "{c:?}: {capacity} pool slots for {pools} pools");
    assert!(capacity - (pools_per_arena - 1) < pools, "{c:?}: one arena more than needed");
    if misaligned == c.arenas_current {
        // The usual case: every arena misaligned, 63 pools each → ceil(1961 / 63) = 32.
        assert_eq!(c.arenas_current, pools.div_ceil(63));
        assert_eq!(c.arenas_current, 32);
    }
}

#[test]
fn seed_maps_the_predicted_arenas_and_frees_all_but_one() {
    let r = run("seed");
    let pools = pools_needed();
    assert_eq!(pools, 1961);
    let base = counters(&r, "baseline");
    // The warm-up block's arena is kept empty (CPython 3.9+ keeps the last empty arena).
    assert_eq!(base.arenas_current, 1);
    let a = counters(&r, "alloc");
    assert_eq!(a.blocks_in_use, N as u64);
    assert_eq!(a.pools_used + a.pools_full, pools);
    assert_eq!(a.pools_full, pools - 1, "1,000,000 = 1,960 × 510 + 400: one pool part-full");
    check_arena_count(&a, pools);
    assert_eq!(a.arenas_allocated_total, a.arenas_current, "nothing released while allocating");
    assert_eq!(a.arenas_highwater, a.arenas_current);
    let f = counters(&r, "full free");
    assert_eq!(f.blocks_in_use, 0);
    assert_eq!(f.arenas_current, 1, "every arena but one is released");
    assert_eq!(f.arenas_reclaimed, a.arenas_current - 1);
    assert_eq!(f.arenas_allocated_total, a.arenas_allocated_total);
    assert_eq!(f.arenas_highwater, a.arenas_current);
    // pymalloc has no release call: nothing changes.
    assert_eq!(counters(&r, "release"), f);
}

#[test]
fn every_other_releases_no_arena_and_refills_without_a_new_one() {
    let r = run("every-other");
    let pools = pools_needed();
    let a = counters(&r, "alloc");
    check_arena_count(&a, pools);
    let p = counters(&r, "partial free");
    assert_eq!(p.blocks_in_use, N as u64 / 2);
    assert_eq!(p.arenas_reclaimed, 0, "every pool keeps live blocks, so no arena can go");
    assert_eq!(p.arenas_current, a.arenas_current);
    assert_eq!(p.pools_used + p.pools_full, pools);
    assert_eq!(p.pools_full, 0);
    let occ = r.phases.iter().find(|ph| ph.name == "partial free").unwrap().occupancy.clone();
    assert_eq!(occ.expect("occupancy recorded").pools_in_use() as u64, pools);
    let f = counters(&r, "refill");
    assert_eq!(f.blocks_in_use, N as u64);
    assert_eq!(f.arenas_allocated_total, a.arenas_allocated_total, "the refill needs no new arena");
    assert_eq!(f.arenas_current, a.arenas_current);
    let e = counters(&r, "full free");
    assert_eq!(e.arenas_current, 1);
    assert_eq!(e.arenas_reclaimed, a.arenas_current - 1);
}

#[test]
fn resident_memory_matches_the_pools_pymalloc_carved() {
    // Cross-check of the two views: a pool is touched when carved, so the RSS the workload adds
    // is its carved pools (16 KiB each), within 2 MiB of noise.
    let r = run("seed");
    let base = &r.phases[0];
    let alloc = r.phases.iter().find(|p| p.name == "alloc").unwrap();
    let c = alloc.pymalloc.unwrap();
    let b = base.pymalloc.unwrap();
    let carved = |c: &PymallocCounters| c.pools_used + c.pools_full + c.pools_empty;
    let expected = ((carved(&c) - carved(&b)) * c.pool_size) as f64 / (1 << 20) as f64;
    let measured = (alloc.rss_bytes as f64 - base.rss_bytes as f64) / (1 << 20) as f64;
    assert!(
        (measured - expected).abs() <= 2.0,
        "RSS +{measured:.2} MiB, carved pools {expected:.2} MiB"
    );
}

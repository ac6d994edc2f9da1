//! `retention`'s memory check counts what the allocators really use: each one's smallest block
//! and per-block overhead, pymalloc's pools and arenas, and the bookkeeping arrays. The case
//! that once passed as 9.5 MiB (ten million 1-byte objects under glibc, objects × size) and
//! peaked at 424 MiB is refused when it does not fit.

use arenalab::retention::{
    RetentionArgs, block_bytes, footprint, peak_bytes, plan_with, workloads::Workload,
};
use lineup::Allocator;

const MIB: u64 = 1 << 20;

fn seed_system(objects: u64, size: u64) -> RetentionArgs {
    RetentionArgs {
        allocators: vec![Allocator::System],
        workloads: vec![Workload::Seed],
        objects,
        size,
        json: false,
        preset: Default::default(),
    }
}

#[test]
fn ten_million_one_byte_objects_under_glibc_need_32_byte_chunks_and_bookkeeping() {
    // glibc: an 8-byte header, 16-byte granularity, 32 bytes at least.
    assert_eq!(block_bytes(Allocator::System, 1), 32);
    // A pointer and a 4-byte size per object, in a page-rounded mapping.
    let bookkeeping = (10_000_000u64 * 12).div_ceil(4096) * 4096;
    let peak = peak_bytes(Allocator::System, Workload::Seed, 10_000_000, 1);
    assert_eq!(peak, 10_000_000 * 32 + bookkeeping);
    // The measured peak was 424 MiB: the estimate is within the worker's own few MiB of it.
    assert!((415 * MIB..=424 * MIB).contains(&peak), "{} MiB", peak / MIB);
}

#[test]
fn the_check_refuses_what_objects_times_size_let_through() {
    let args = seed_system(10_000_000, 1);
    // objects × size is 9.5 MiB: 100 MiB would have been plenty for the old check.
    let err = plan_with(&args, 100 * MIB).unwrap_err().to_string();
    assert!(err.starts_with("--objects must be at most "), "{err}");
    assert!(err.contains("got 10000000") && err.contains("32 bytes per block"), "{err}");
    assert!(err.contains("MemAvailable (100.0 MiB)"), "{err}");
    // The largest count the message offers does fit, and one more does not.
    let most: u64 =
        err["--objects must be at most ".len()..].split(' ').next().unwrap().parse().unwrap();
    assert!(plan_with(&seed_system(most, 1), 100 * MIB).is_ok());
    assert!(plan_with(&seed_system(most + 1, 1), 100 * MIB).is_err());
    assert!(plan_with(&args, 500 * MIB).is_ok());
}

/// RSS the `alloc` phase adds, in bytes per object, as the kernel measures it.
fn measured_per_object(allocator: Allocator, n: u64, size: u64) -> f64 {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_arenalab"))
        .args(["retention", "--json", "--workload", "seed", "--allocator", allocator.name()])
        .args(["--objects", &n.to_string(), "--size", &size.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: arenalab::retention::RetentionResults = serde_json::from_slice(&out.stdout).unwrap();
    let rss = doc.runs[0].rss_above_baseline();
    rss[1] as f64 / n as f64
}

#[test]
fn the_estimates_are_what_the_kernel_measures() {
    // The bookkeeping is mapped before the baseline, so the alloc phase shows the blocks alone;
    // allocator metadata (jemalloc's slabs, mimalloc's page headers) adds a few percent.
    let n = 2_000_000;
    for a in Allocator::ALL {
        for size in [1, 24, 48, 100, 129] {
            let estimate = footprint(a, n, size) as f64 / n as f64;
            let measured = measured_per_object(a, n, size);
            assert!(
                (0.9 * estimate..=1.1 * estimate).contains(&measured),
                "{a} {size} B: estimated {estimate:.1} B per object, measured {measured:.1}"
            );
        }
    }
}

#[test]
fn each_allocator_rounds_to_its_own_size_classes() {
    // (size, glibc, mimalloc, jemalloc, pymalloc block)
    for (size, system, mimalloc, jemalloc, pymalloc) in [
        (1, 32, 32, 8, 16),
        (8, 32, 8, 8, 16),
        (24, 32, 32, 32, 32),
        (25, 48, 32, 32, 32),
        (48, 64, 64, 48, 48),
        (64, 80, 64, 64, 64),
        (80, 96, 96, 80, 80),
        (100, 112, 112, 112, 112),
        (129, 144, 160, 160, 144),
        (513, 528, 640, 640, 528),
        (4097, 4112, 5120, 5120, 4112),
        (200 << 10, (200 << 10) + 4096, 224 << 10, 224 << 10, (200 << 10) + 4096),
    ] {
        assert_eq!(block_bytes(Allocator::System, size), system, "system {size}");
        assert_eq!(block_bytes(Allocator::Mimalloc, size), mimalloc, "mimalloc {size}");
        assert_eq!(block_bytes(Allocator::Jemalloc, size), jemalloc, "jemalloc {size}");
        assert_eq!(block_bytes(Allocator::Pymalloc, size), pymalloc, "pymalloc {size}");
    }
    // pymalloc: 510 blocks of 32 bytes per 16 KiB pool, 64 pools per 1 MiB arena; a million
    // objects take 1961 pools, so 31 arenas.
    assert_eq!(footprint(Allocator::Pymalloc, 1_000_000, 32), 31 * MIB);
}

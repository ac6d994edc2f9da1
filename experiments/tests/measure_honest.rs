//! Honest measurement: a worker that allocates nothing shows (almost) nothing above its
//! baseline, and one that allocates and touches a known amount shows that amount.

use arenalab::procs::Spawn;
use arenalab::retention::Run;

const MIB: f64 = (1 << 20) as f64;

fn run(allocator: &str, objects: u64, size: u64) -> Run {
    Spawn::worker("retention")
        .exe(env!("CARGO_BIN_EXE_arenalab"))
        .args(["--allocator", allocator, "--workload", "seed"])
        .args(["--objects", &objects.to_string(), "--size", &size.to_string()])
        .run_json()
        .unwrap()
}

#[test]
fn a_worker_that_allocates_one_small_object_shows_nothing_above_baseline() {
    for allocator in ["system", "mimalloc", "jemalloc", "pymalloc"] {
        let r = run(allocator, 1, 8);
        for (phase, above) in r.phases.iter().zip(r.rss_above_baseline()) {
            let mib = above as f64 / MIB;
            assert!(mib.abs() < 1.0, "{allocator} {}: {mib:.2} MiB above baseline", phase.name);
        }
    }
}

#[test]
fn sixty_four_mib_of_touched_blocks_show_as_sixty_four_mib() {
    // 16 blocks of 4 MiB: above every allocator's small-object range, each page written.
    for allocator in ["system", "jemalloc"] {
        let r = run(allocator, 16, 4 << 20);
        let above = r.rss_above_baseline();
        let alloc = above[1] as f64 / MIB;
        assert!(
            (alloc - 64.0).abs() <= 3.0,
            "{allocator}: alloc phase {alloc:.2} MiB, expected 64 ± 3"
        );
        let anon = (r.phases[1].anon_bytes as f64 - r.phases[0].anon_bytes as f64) / MIB;
        assert!((anon - 64.0).abs() <= 3.0, "{allocator}: anonymous +{anon:.2} MiB");
    }
    // glibc serves 4 MiB blocks with their own mmap and unmaps them at free.
    let r = run("system", 16, 4 << 20);
    let freed = r.rss_above_baseline()[2] as f64 / MIB;
    assert!(freed.abs() <= 3.0, "system after free: {freed:.2} MiB");
}

#[test]
fn the_worker_peak_rss_covers_its_largest_phase() {
    let mut child = Spawn::worker("retention")
        .exe(env!("CARGO_BIN_EXE_arenalab"))
        .args(["--allocator", "system", "--workload", "seed", "--objects", "16", "--size"])
        .arg((4u64 << 20).to_string())
        .spawn()
        .unwrap();
    let r: Run = child.read_json().unwrap();
    let exit = child.finish().unwrap();
    let top = r.phases.iter().map(|p| p.rss_bytes).max().unwrap();
    // ru_maxrss is the status counter's peak: it may lag smaps_rollup slightly.
    assert!(
        exit.maxrss_bytes + (2 << 20) >= top,
        "maxrss {} < phase peak {top}",
        exit.maxrss_bytes
    );
}

//! The benchmarks' clock (`ARENALAB_BENCH_CLOCK`): what each clock counts, and the run log that
//! `arenalab bench-report` reads back.

use arenalab_benches::clock::{self, Clock};
use std::time::Duration;

/// Spins until this thread has used `cpu` of CPU time (however long that takes on a loaded
/// machine).
fn burn(cpu: Duration) {
    let t0 = Clock::ThreadCpu.now();
    while Clock::ThreadCpu.now() - t0 < cpu {
        std::hint::black_box(0u64);
    }
}

#[test]
fn both_clocks_never_go_backwards() {
    for c in Clock::ALL {
        let mut last = c.now();
        for _ in 0..100_000 {
            let now = c.now();
            assert!(now >= last, "{} went back from {last:?} to {now:?}", c.name());
            last = now;
        }
    }
}

#[test]
fn a_sleeping_thread_accrues_no_thread_cpu_time_but_wall_time() {
    let (cpu0, wall0) = (Clock::ThreadCpu.now(), Clock::Wall.now());
    std::thread::sleep(Duration::from_millis(200));
    let (cpu, wall) = (Clock::ThreadCpu.now() - cpu0, Clock::Wall.now() - wall0);
    assert!(wall >= Duration::from_millis(200), "{wall:?}");
    assert!(cpu < Duration::from_millis(10), "sleeping cost {cpu:?} of CPU time");
}

#[test]
fn thread_cpu_time_is_the_calling_threads_only() {
    let t0 = Clock::ThreadCpu.now();
    // Another thread works 150 ms of CPU while this one waits for it.
    std::thread::spawn(|| burn(Duration::from_millis(150))).join().unwrap();
    let mine = Clock::ThreadCpu.now() - t0;
    assert!(mine < Duration::from_millis(10), "the other thread's work counted: {mine:?}");
}

#[test]
fn the_threads_group_under_thread_cpu_counts_every_threads_cpu_time() {
    let work = || {
        let other = std::thread::spawn(|| burn(Duration::from_millis(100)));
        burn(Duration::from_millis(50));
        other.join().unwrap();
        Duration::from_secs(1_000) // the body's own wall time, which this clock ignores
    };
    let cpu = Clock::ThreadCpu.threads(work);
    assert!(cpu >= Duration::from_millis(150) && cpu < Duration::from_secs(100), "{cpu:?}");
    // Under wall time, the body's own figure is the result.
    assert_eq!(Clock::Wall.threads(work), Duration::from_secs(1_000));
}

#[test]
fn the_variable_takes_the_clock_names_and_nothing_else() {
    for c in Clock::ALL {
        assert_eq!(Clock::parse(c.name()), Ok(c));
    }
    assert_eq!(Clock::parse(" "), Ok(Clock::Wall));
    let err = Clock::parse("cpu").unwrap_err();
    assert!(err.contains("ARENALAB_BENCH_CLOCK") && err.contains("thread-cpu"), "{err}");
}

#[test]
fn each_run_appends_its_clocks_in_the_format_bench_report_reads() {
    let dir = std::env::temp_dir().join(format!("arenalab-clock-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    clock::record(Clock::Wall, &dir).unwrap();
    clock::record(Clock::ThreadCpu, &dir).unwrap();
    let runs = arenalab::bench_report::read_clock_log(&dir).unwrap();
    let names: Vec<(&str, &str)> =
        runs.iter().map(|r| (r.clock.as_str(), r.threads_clock.as_str())).collect();
    assert_eq!(names, [("wall", "wall"), ("thread-cpu", "process-cpu")]);
    assert_eq!(clock::LOG_NAME, arenalab::bench_report::CLOCK_LOG);
    std::fs::remove_dir_all(dir).unwrap();
}

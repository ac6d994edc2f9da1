//! `arenalab cpython` against the machine's python3, at small sizes. Every test is skipped, with
//! the reason printed, when no python3 runs here.

use arenalab::cpython::CpythonResults;
use arenalab::cpython::retention::Run;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_arenalab");

fn python3() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import sys; sys.exit(sys.version_info < (3, 8))"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: no python3 3.8+ on PATH");
    }
    ok
}

fn cpython(args: &[&str]) -> CpythonResults {
    let out = Command::new(BIN)
        .args(["cpython", "--python", "python3", "--json"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "arenalab cpython {args:?} failed: {}", out.status);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn arenas(run: &Run, phase: &str) -> u64 {
    run.phase(phase).and_then(|p| p.stats.as_ref()).expect("pymalloc statistics").arenas_current
}

fn rss(run: &Run, phase: &str) -> f64 {
    let base = run.phases[0].rss_bytes as f64;
    run.phase(phase).unwrap().rss_bytes as f64 - base
}

const N: u64 = 200_000;

#[test]
fn deleting_half_the_floats_frees_no_arena_and_deleting_all_brings_them_back() {
    if !python3() {
        return;
    }
    let r = cpython(&["--part", "retention", "--objects", &N.to_string()]);
    let find = |alloc: &str| {
        r.retention
            .iter()
            .find(|x| x.allocator == alloc && x.kind == "floats" && x.survivors == "none")
            .unwrap()
    };
    let py = find("pymalloc");
    let reclaimed = |p: &str| py.phase(p).unwrap().stats.as_ref().unwrap().arenas_reclaimed;
    assert!(arenas(py, "build") > arenas(py, "baseline"), "building floats maps arenas");
    assert_eq!(arenas(py, "del-half"), arenas(py, "build"), "del lst[::2] frees no arena");
    assert_eq!(reclaimed("del-half"), reclaimed("build"), "nothing reclaimed by del lst[::2]");
    assert_eq!(arenas(py, "refill"), arenas(py, "build"), "the refill maps no arena");
    assert!(
        arenas(py, "del-all") <= arenas(py, "baseline") + 2,
        "del lst: {} arenas, baseline {}",
        arenas(py, "del-all"),
        arenas(py, "baseline")
    );

    // PYTHONMALLOC=malloc: the floats' memory stays in glibc's heap until malloc_trim. The
    // list's own pointer array (8 bytes a slot, at most 1/8 over-allocated) is one large block
    // glibc maps apart and unmaps at `del`, so it is taken out of the peak.
    let m = find("malloc");
    assert!(m.phases.iter().all(|p| p.stats.is_none()), "no pymalloc statistics under malloc");
    let list_bytes = 8.0 * N as f64 * 9.0 / 8.0;
    let peak = rss(m, "refill") - list_bytes;
    assert!(
        rss(m, "gc-collect") >= 0.9 * peak,
        "RSS after del + gc.collect {} B, peak without the list {} B",
        rss(m, "gc-collect"),
        peak
    );
    assert!(rss(m, "malloc-trim") < 0.5 * peak, "malloc_trim gives the freed floats back");
}

#[test]
fn an_idle_pool_dies_with_its_killed_parent_and_a_busy_one_outlives_it() {
    if !python3() {
        return;
    }
    let r = cpython(&[
        "--part",
        "pool",
        "--start-method",
        "fork",
        "--scenario",
        "killed-idle",
        "--scenario",
        "killed-busy",
        "--pool-mib",
        "4",
    ]);
    let idle = r.pool.iter().find(|x| x.scenario == "killed-idle").unwrap();
    assert_eq!(idle.live_at_ready, r.pool_workers);
    let gone = idle.to_zero_ms.expect("idle workers end when their parent is killed");
    assert!(gone < 2000.0, "idle workers gone after {gone} ms");
    assert!(idle.timeline.iter().filter(|p| p.t_ms >= 2000.0).all(|p| p.live == 0));

    let busy = r.pool.iter().find(|x| x.scenario == "killed-busy").unwrap();
    let during: Vec<_> = busy
        .timeline
        .iter()
        .filter(|p| p.t_ms > 0.0 && p.t_ms < r.pool_busy_ms as f64 - 500.0)
        .collect();
    assert!(!during.is_empty());
    assert!(
        during.iter().all(|p| p.live == r.pool_workers),
        "busy workers outlive the parent while their task runs"
    );
}

/// Processes that carry arenalab's lifeline (`ARENALAB_LIFELINE=<pid>:...`) and are not
/// zombies: every process of the run, at any depth.
fn pythons_of(pid: u32) -> Vec<i32> {
    let needle = format!("ARENALAB_LIFELINE={pid}:");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let env = std::fs::read(format!("/proc/{p}/environ")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let zombie = stat.rfind(')').is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&env).contains(&needle) {
            out.push(p);
        }
    }
    out
}

fn no_python_survives(signal: i32) {
    let mut child = Command::new(BIN)
        .args(["cpython", "--python", "python3", "--part", "pool", "--start-method", "fork"])
        .args(["--scenario", "killed-busy", "--pool-mib", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until the 4 workers exist (with their parent, or already orphaned: the scenario
    // kills the parent soon after they are busy, so on a loaded machine the scan may never see
    // all five at once; the orphans are what must not survive).
    let until = Instant::now() + Duration::from_secs(30);
    // Counted by name: every child of arenalab carries the lifeline, the short-lived probes of
    // the interpreter (and a pyenv shim's own processes) included.
    let workers = || {
        pythons_of(pid)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "alab-pyworker")
            })
            .count()
    };
    while workers() < 4 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(workers() >= 4, "the pool never came up ({:?})", child.try_wait());
    // SAFETY: kill has no memory-safety preconditions; pid is our own child.
    unsafe { libc::kill(pid as i32, signal) };
    let _ = child.wait();
    let until = Instant::now() + Duration::from_secs(2);
    while !pythons_of(pid).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = pythons_of(pid);
    for p in &left {
        // SAFETY: as above; clean up before failing.
        unsafe { libc::kill(*p, libc::SIGKILL) };
    }
    assert!(left.is_empty(), "Python processes outlived arenalab (signal {signal}): {left:?}");
}

#[test]
fn no_python_process_survives_sigkill_of_arenalab() {
    if python3() {
        no_python_survives(libc::SIGKILL);
    }
}

#[test]
fn no_python_process_survives_sigint_of_arenalab() {
    if python3() {
        no_python_survives(libc::SIGINT);
    }
}

#[test]
fn a_python_that_is_not_one_is_a_usage_error() {
    for bad in ["/bin/true", "/nonexistent/python3"] {
        let out = Command::new(BIN).args(["cpython", "--python", bad]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "--python {bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(bad), "{err}");
    }
}

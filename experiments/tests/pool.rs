//! `arenalab pool`: a correct shutdown or Drop leaves no worker, a naive Drop and a killed
//! parent leave workers holding memory (which arenalab then cleans up), the two fixes end the
//! orphans, and Ctrl-C leaves no descendant behind. Pools are small (2 × 16 MiB).

use arenalab::pool::{PoolResults, Scenario};
use arenalab::procs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn pool(scenarios: &[&str]) -> PoolResults {
    let mut args = vec!["pool", "--workers", "2", "--mib", "16", "--json"];
    for s in scenarios {
        args.extend(["--scenario", s]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_arenalab")).args(&args).output().unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

/// Every pid is gone (or goes within two seconds: a zombie re-parented to init is reaped by it).
fn assert_all_gone(pids: &[i32]) {
    let until = Instant::now() + Duration::from_secs(2);
    for &pid in pids {
        while procs::state(pid).is_some() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(procs::state(pid), None, "pid {pid} is still there");
    }
}

#[test]
fn a_correct_shutdown_or_drop_leaves_zero_workers() {
    let r = pool(&["shutdown-join", "drop-correct"]);
    assert_eq!(r.scenarios.len(), 2);
    for s in &r.scenarios {
        assert_eq!(s.worker_pids.len(), 2);
        assert!(s.rss_peak_bytes >= 2 * 16 * MIB, "{:?}: peak {}", s.scenario, s.rss_peak_bytes);
        assert_eq!(s.live_at_end, 0, "{:?}", s.scenario);
        assert_eq!(s.rss_at_end_bytes, 0);
        assert!(s.to_zero_ms.is_some());
        assert_eq!(s.left_for_clean_up, 0);
        assert_all_gone(&s.worker_pids);
    }
}

#[test]
fn a_naive_drop_leaves_workers_holding_memory_until_arenalab_cleans_up() {
    let r = pool(&["drop-naive"]);
    let s = &r.scenarios[0];
    assert_eq!(s.scenario, Scenario::DropNaive);
    assert_eq!(s.live_at_end, 2);
    assert!(s.rss_at_end_bytes >= 2 * 16 * MIB, "RSS at end {}", s.rss_at_end_bytes);
    assert_eq!(s.to_zero_ms, None);
    assert_eq!(s.left_for_clean_up, 2);
    assert_all_gone(&s.worker_pids);
}

#[test]
fn orphans_of_a_killed_parent_keep_their_memory_unless_a_fix_ends_them() {
    let r = pool(&["parent-killed-none", "parent-killed-pdeathsig", "parent-killed-pipe"]);
    let [none, pdeathsig, pipe] = &r.scenarios[..] else { panic!("three scenarios") };
    assert_eq!(none.live_at_end, 2);
    assert!(none.rss_at_end_bytes >= 2 * 16 * MIB);
    assert_eq!(none.left_for_clean_up, 2);
    for fixed in [pdeathsig, pipe] {
        assert_eq!(fixed.live_at_end, 0, "{:?}", fixed.scenario);
        assert!(fixed.to_zero_ms.is_some());
        assert_eq!(fixed.left_for_clean_up, 0);
    }
    for s in &r.scenarios {
        assert_all_gone(&s.worker_pids);
    }
}

fn is_pool_worker(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("pool\0worker"))
}

#[test]
fn sigint_while_orphans_live_leaves_no_descendant() {
    let mut top = Command::new(env!("CARGO_BIN_EXE_arenalab"))
        .args(["pool", "--workers", "2", "--mib", "16", "--scenario", "parent-killed-none"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = top.id() as i32;
    let mut seen: Vec<i32> = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    // Wait until the pool parent is dead and its two workers were re-parented to `arenalab pool`.
    loop {
        for d in procs::descendants(pid) {
            if !seen.contains(&d) {
                seen.push(d);
            }
        }
        let orphans = procs::descendants(pid)
            .into_iter()
            .filter(|&d| is_pool_worker(d) && procs::parent_of(d) == Some(pid))
            .count();
        if orphans == 2 {
            break;
        }
        assert!(Instant::now() < until, "no orphans appeared; seen {seen:?}");
        assert!(top.try_wait().unwrap().is_none(), "arenalab pool ended early");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(seen.len() >= 3, "pool parent and two workers: {seen:?}");
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = top.wait().unwrap();
    assert_eq!(status.code(), Some(130), "status {status:?}");
    assert_all_gone(&seen);
}

#[test]
fn zero_workers_or_too_much_memory_exits_2_naming_the_value() {
    for (args, named) in [
        (vec!["pool", "--workers", "0"], "--workers must be between 1 and 64, got 0"),
        (vec!["pool", "--mib", "50000000"], "got 50000000"),
        (vec!["pool", "--scenario", "teleport"], "teleport"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_arenalab")).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
    }
}

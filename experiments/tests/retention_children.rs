//! No worker process outlives `arenalab retention`: not after a normal run, not when a worker
//! fails, not on Ctrl-C, not when the parent is killed outright.
//!
//! Each test tags the processes it starts with a unique environment variable (inherited by the
//! workers) and afterwards looks through /proc for any process still carrying the tag.

use arenalab::procs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TAG: &str = "ARENALAB_TEST_TAG";

fn tagged(tag: &str) -> Vec<i32> {
    let needle = format!("{TAG}={tag}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ"))
            && env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

fn unique_tag(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

fn arenalab(tag: &str, fault: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_arenalab"));
    cmd.arg("retention").args(args).env(TAG, tag);
    if let Some(f) = fault {
        cmd.env(arenalab::retention::FAULT_ENV, f);
    }
    cmd
}

/// Waits (up to 10 s) until a tagged worker, a child of `parent`, exists; returns its pid.
fn wait_for_worker(tag: &str, parent: i32) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(&w) = tagged(tag).iter().find(|&&p| procs::parent_of(p) == Some(parent)) {
            return w;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no worker appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (up to 5 s) for no tagged process to remain. (A zombie's environment cannot be read,
/// so a zombie is not seen here; the tests check zombies of known pids themselves.)
fn assert_none_left(tag: &str) {
    let start = Instant::now();
    while !tagged(tag).is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(tagged(tag), Vec::<i32>::new(), "processes left behind");
}

#[test]
fn a_successful_run_leaves_no_worker() {
    let tag = unique_tag("ok");
    let out = arenalab(&tag, None, &["--workload", "seed", "--objects", "1000"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_none_left(&tag);
}

#[test]
fn a_failing_worker_fails_the_run_with_its_stderr_and_leaves_nothing() {
    let tag = unique_tag("exit");
    let out = arenalab(&tag, Some("exit"), &["--workload", "seed", "--objects", "1000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("exit status 1") && err.contains("failing on purpose"), "{err}");
    assert_none_left(&tag);
}

#[test]
fn a_worker_printing_garbage_fails_the_run_and_leaves_nothing() {
    let tag = unique_tag("garbage");
    let out = arenalab(&tag, Some("garbage"), &["--workload", "seed", "--objects", "1000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("this is not JSON"), "{err}");
    assert_none_left(&tag);
}

#[test]
fn ctrl_c_kills_the_hanging_worker_and_exits_130() {
    let tag = unique_tag("sigint");
    let mut parent = arenalab(&tag, Some("hang"), &["--workload", "seed", "--objects", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let worker = wait_for_worker(&tag, parent.id() as i32);
    procs::send_signal(parent.id() as i32, libc::SIGINT).unwrap();
    let status = parent.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(procs::state(worker), None, "worker {worker} still exists");
    assert_none_left(&tag);
}

#[test]
fn killing_the_parent_outright_takes_the_worker_with_it() {
    let tag = unique_tag("sigkill");
    let mut parent = arenalab(&tag, Some("hang"), &["--workload", "seed", "--objects", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let worker = wait_for_worker(&tag, parent.id() as i32);
    parent.kill().unwrap();
    parent.wait().unwrap();
    // PR_SET_PDEATHSIG: the kernel SIGKILLs the worker. Its new parent (init) reaps it in its
    // own time; until then it is a zombie, which holds no memory.
    assert_none_left(&tag);
    let start = Instant::now();
    while procs::is_running(worker) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!procs::is_running(worker), "worker {worker} survived its parent");
}

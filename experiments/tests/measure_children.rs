//! Child processes: reports read, failures explained, and never one left behind.

use arenalab::procs::{self, ExitStatus, Spawn};
use std::time::Duration;

fn sh(script: &str) -> Spawn {
    Spawn::program("/bin/sh").args(["-c", script])
}

#[derive(Debug, serde::Deserialize, PartialEq)]
struct Report {
    a: u64,
}

#[test]
fn a_json_report_is_read_and_the_child_reaped() {
    let mut child = sh("echo '{\"a\": 7}'").spawn().unwrap();
    let pid = child.pid();
    assert_eq!(child.read_json::<Report>().unwrap(), Report { a: 7 });
    let exit = child.finish().unwrap();
    assert_eq!(exit.status, ExitStatus::Exited(0));
    assert_eq!(procs::state(pid), None, "reaped: no /proc entry left");
}

#[test]
fn a_non_zero_exit_is_a_failure_quoting_stderr() {
    let err =
        sh("echo '{\"a\": 1}'; echo 'disk on fire' >&2; exit 3").run_json::<Report>().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("exit status 3") && msg.contains("disk on fire"), "{msg}");
}

#[test]
fn bad_json_is_a_failure_quoting_the_line_and_stderr() {
    let err = sh("echo 'not json'; echo 'why' >&2").run_json::<Report>().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("not json") && msg.contains("why"), "{msg}");
}

#[test]
fn no_report_at_all_is_a_failure() {
    let err = sh("exit 0").run_json::<Report>().unwrap_err();
    assert!(err.to_string().contains("without a report"), "{err}");
}

#[test]
fn a_signal_death_is_reported_as_such() {
    let mut child = sh("kill -9 $$").spawn().unwrap();
    assert_eq!(child.wait().unwrap().status, ExitStatus::Signaled(libc::SIGKILL));
}

#[test]
fn dropping_a_child_kills_and_reaps_it_and_its_pid_leaves_the_registry() {
    let child = Spawn::program("/bin/sleep").arg("100").spawn().unwrap();
    let pid = child.pid();
    assert!(procs::is_running(pid));
    assert!(procs::live_children().contains(&pid));
    drop(child);
    assert_eq!(procs::state(pid), None);
    assert!(!procs::live_children().contains(&pid));
}

#[test]
fn an_unreaped_dead_child_is_a_zombie_until_waited_for() {
    let mut child = sh("exit 0").spawn().unwrap();
    let pid = child.pid();
    let mut zombie = false;
    for _ in 0..2000 {
        if procs::is_zombie(pid) {
            zombie = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(zombie, "an exited child stays a zombie until reaped");
    assert!(!procs::is_running(pid));
    child.wait().unwrap();
    assert_eq!(procs::state(pid), None);
}

#[test]
fn descendants_include_grandchildren() {
    let mut child = sh("sleep 100 & sleep 100 & echo ready; wait").spawn().unwrap();
    assert_eq!(child.read_line().unwrap().as_deref(), Some("ready"));
    let me = std::process::id() as i32;
    let found = procs::descendants(child.pid());
    assert_eq!(found.len(), 2, "two sleeps under the shell: {found:?}");
    assert!(procs::descendants(me).contains(&child.pid()));
    for p in &found {
        assert_eq!(procs::parent_of(*p), Some(child.pid()));
    }
    // The grandchildren were spawned by sh without PDEATHSIG: kill them explicitly.
    for p in found {
        procs::send_signal(p, libc::SIGKILL).unwrap();
    }
    drop(child);
}

#[test]
fn wait_timeout_returns_none_while_the_child_runs() {
    let mut child = Spawn::program("/bin/sleep").arg("100").spawn().unwrap();
    assert_eq!(child.wait_timeout(Duration::from_millis(20)).unwrap(), None);
    let exit = child.kill().unwrap();
    assert_eq!(exit.status, ExitStatus::Signaled(libc::SIGKILL));
}

#[test]
fn wait4_reports_the_childs_peak_rss() {
    // A shell that does nothing: its peak RSS is small but not zero.
    let mut child = sh("exit 0").spawn().unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.maxrss_bytes > 0 && exit.maxrss_bytes < 64 << 20, "{exit:?}");
}

//! `arenalab exit`: children give their memory back however they end, zombies hold none, and
//! bad input is refused with exit code 2. Sizes are the smallest accepted
//! (64 MiB, `exit::MIN_MIB`) so the tests are quick.

use arenalab::exit::{Ending, ExitResults, MIN_MIB};
use std::process::{Command, Output};

fn arenalab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arenalab")).args(args).output().expect("run arenalab")
}

fn exit_json(allocator: &str, ending: &str) -> ExitResults {
    let mib = MIN_MIB.to_string();
    let out = arenalab(&[
        "exit",
        "--allocator",
        allocator,
        "--ending",
        ending,
        "--mib",
        &mib,
        "--repeats",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

const MIB: u64 = 1 << 20;

#[test]
fn a_child_that_exits_without_freeing_held_its_objects_and_gave_them_back() {
    let r = exit_json("jemalloc", "exit");
    assert_eq!(r.cells.len(), 1);
    let cell = &r.cells[0];
    assert_eq!(cell.ending, Ending::Exit);
    let run = &cell.runs[0];
    // The child's own accounting: MIN_MIB MiB of objects, resident, before it ended.
    let arenalab::exit::worker::Report::Ready { requested_bytes, process, stats, .. } = &run.ready
    else {
        panic!("first report is not `ready`")
    };
    assert!(*requested_bytes >= MIN_MIB * MIB);
    assert!(process.rss_bytes >= MIN_MIB * MIB, "child RSS {} while alive", process.rss_bytes);
    assert!(stats.in_use_bytes.unwrap() >= MIN_MIB * MIB);
    assert!(run.alive.anon_bytes >= MIN_MIB * MIB, "parent's read {:?}", run.alive);
    assert!(run.peak_rss_bytes >= MIN_MIB * MIB);
    // ... and once it ended it held nothing: its zombie had no resident memory left.
    assert!(run.zombie_seen);
    assert_eq!(run.zombie_vm_rss_bytes, None, "{:?}", run.zombie_status_lines);
    assert_eq!(run.status, arenalab::procs::ExitStatus::Exited(0));
    assert!(!run.timeline.is_empty());
}

#[test]
fn a_killed_childs_zombie_holds_no_resident_memory() {
    let r = exit_json("system", "sigkill");
    let run = &r.cells[0].runs[0];
    assert!(run.alive.rss_bytes >= MIN_MIB * MIB);
    assert!(run.zombie_seen, "the parent holds the zombie unreaped for a while");
    assert!(run.zombie_status_lines.iter().any(|l| l.starts_with("State:") && l.contains('Z')));
    assert!(!run.zombie_status_lines.iter().any(|l| l.starts_with("VmRSS")));
    assert_eq!(run.zombie_vm_rss_bytes, None);
    assert_eq!(run.status, arenalab::procs::ExitStatus::Signaled(libc::SIGKILL));
}

#[test]
fn free_return_reports_the_frees_and_panic_exits_101() {
    let r = exit_json("pymalloc", "free-return");
    let run = &r.cells[0].runs[0];
    let Some(arenalab::exit::worker::Report::Freed { stats, .. }) = &run.freed else {
        panic!("no `freed` report")
    };
    // pymalloc's own accounting: every block freed, at most the one kept arena still mapped.
    assert_eq!(stats.in_use_bytes, Some(0));
    assert!(stats.held_bytes.unwrap() <= MIB);
    let r = exit_json("mimalloc", "panic");
    assert_eq!(r.cells[0].runs[0].status, arenalab::procs::ExitStatus::Exited(101));
}

#[test]
fn results_render_a_page_with_timelines() {
    let r = exit_json("system", "abort");
    let dir = std::env::temp_dir().join(format!("arenalab-exit-render-{}", std::process::id()));
    arenalab::exit::render(&r, &dir).unwrap();
    let md = std::fs::read_to_string(dir.join("process-exit.md")).unwrap();
    let command =
        format!("arenalab exit --allocator system --ending abort --mib {MIN_MIB} --repeats 1");
    assert!(md.contains(&command), "{command}");
    assert!(md.contains("| system | abort |"));
    let svg = std::fs::read_to_string(dir.join("process-exit/abort.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("system MemAvailable + per-CPU rise"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn assert_usage(args: &[&str], named: &str) {
    let out = arenalab(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {err}");
    assert!(err.contains(named), "{args:?}: stderr does not name {named:?}: {err}");
}

#[test]
fn an_unknown_allocator_exits_2_naming_it() {
    assert_usage(&["exit", "--allocator", "tcmalloc"], "tcmalloc");
}

#[test]
fn an_unknown_ending_exits_2_naming_it() {
    assert_usage(&["exit", "--ending", "vanish"], "vanish");
}

#[test]
fn a_size_beyond_mem_available_exits_2_naming_it() {
    assert_usage(&["exit", "--mib", "100000000"], "--mib must be at most");
    assert_usage(&["exit", "--mib", "100000000"], "got 100000000");
}

#[test]
fn zero_repeats_exits_2_naming_it() {
    assert_usage(&["exit", "--repeats", "0"], "--repeats must be at least 1, got 0");
}

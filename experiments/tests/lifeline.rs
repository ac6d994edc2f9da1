//! The lifeline contract (`ARENALAB_LIFELINE=<pid>:<starttime>`): a process that joined it dies
//! as soon as the named process ends, leaves at once if that process is already gone or the pid
//! now belongs to another process, and a malformed value is an error naming the variable.
//!
//! A pool worker joins the lifeline and otherwise lives until killed (`--watch nothing`), so it
//! shows the contract alone: its own parent here is the test, which stays alive throughout.

use arenalab::procs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn worker(lifeline: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_arenalab"))
        .args(["worker", "pool", "worker", "--mib", "1", "--watch", "nothing"])
        .env(procs::LIFELINE_VAR, lifeline)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits up to `limit` for `child` to end; its status, or `None` if it still runs.
fn ended_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn lifeline_of(pid: u32) -> String {
    format!("{pid}:{}", procs::start_time(pid as i32).expect("a live process has a start time"))
}

#[test]
fn a_worker_dies_as_soon_as_its_lifeline_ends() {
    let mut line = Command::new("/bin/sleep").arg("100").spawn().unwrap();
    let mut w = worker(&lifeline_of(line.id()));
    // Ready: its memory allocated, the watcher running.
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(w.stdout.take().unwrap()), &mut first)
        .unwrap();
    assert!(first.contains("requested_bytes"), "{first:?}");
    assert_eq!(
        ended_within(&mut w, Duration::from_millis(300)),
        None,
        "it lives while the lifeline does"
    );
    line.kill().unwrap();
    // The lifeline is our child, so it stays a zombie until we reap it: that counts as ended.
    let status = ended_within(&mut w, Duration::from_secs(2));
    let _ = line.wait();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.and_then(|s| s.signal()), Some(libc::SIGKILL), "{status:?}");
}

#[test]
fn a_lifeline_whose_pid_was_reused_or_is_gone_ends_the_worker_at_once() {
    let me = std::process::id();
    let start = procs::start_time(me as i32).unwrap();
    // Our own pid with another start time: the pid "was reused".
    let mut reused = worker(&format!("{me}:{}", start + 1));
    // A pid no process can have: above the largest pid_max a kernel allows (2^22).
    let mut gone = worker("4194305:1");
    for w in [&mut reused, &mut gone] {
        let status = ended_within(w, Duration::from_secs(2));
        assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    }
}

#[test]
fn a_malformed_lifeline_is_an_error_naming_the_variable() {
    let mut w = worker("12345");
    let status = ended_within(&mut w, Duration::from_secs(2)).expect("it ends");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut w.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("ARENALAB_LIFELINE") && err.contains("<pid>:<starttime>"), "{err}");
}

#[test]
fn spawned_children_get_this_process_as_their_lifeline() {
    let mut child = procs::Spawn::program("/bin/sh")
        .args(["-c", "echo \"$ARENALAB_LIFELINE\""])
        .spawn()
        .unwrap();
    let line = child.read_line().unwrap().unwrap();
    child.finish().unwrap();
    assert_eq!(line, lifeline_of(std::process::id()));
    assert_eq!(procs::parse_lifeline(&line).map(|(p, _)| p as u32), Some(std::process::id()));
}

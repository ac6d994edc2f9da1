//! A panic inside a `PyMalloc` call stops the process with a message instead of deadlocking.
//!
//! The panic hook allocates (its message, `RUST_BACKTRACE`, the thread's name) while the panicking
//! thread still holds the allocator's lock. The lock records its owner, so that re-entry is
//! detected: the process writes `pymalloc: fatal error: ...` to stderr and aborts. Each case runs
//! in a child process (this test binary again) that must end by `SIGABRT` within
//! `PYMALLOC_CHILD_TIMEOUT_MS` milliseconds (default 10,000); before the fix it hung.
//!
//! The panic comes from [`PyMalloc::panic_while_locked`], a hook for this test, so the test
//! does not depend on any one panic site of the heap (a debug build's overflow checks, a
//! `debug_assert`): the mechanism must hold for every one of them.

use pymalloc::PyMalloc;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: PyMalloc = PyMalloc::new();

/// How a child ended, and what it wrote to stderr.
struct Ended {
    signal: Option<i32>,
    code: Option<i32>,
    stderr: String,
}

/// Runs test `name` of this binary in a child with `PYMALLOC_PANIC_CHILD` set; kills it after
/// the timeout and returns `None` if it had not ended by then.
fn run_child(name: &str) -> Option<Ended> {
    let timeout = Duration::from_millis(
        std::env::var("PYMALLOC_CHILD_TIMEOUT_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10_000),
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("PYMALLOC_PANIC_CHILD", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    Some(Ended { signal: status.signal(), code: status.code(), stderr })
}

fn in_child() -> bool {
    std::env::var_os("PYMALLOC_PANIC_CHILD").is_some()
}

#[test]
fn a_panic_while_the_lock_is_held_aborts_with_a_message() {
    if in_child() {
        GLOBAL.panic_while_locked();
    }
    let ended = run_child("a_panic_while_the_lock_is_held_aborts_with_a_message")
        .expect("the child hung: the panic hook waited for the lock its own thread holds");
    assert_eq!(
        ended.signal,
        Some(libc::SIGABRT),
        "exit code {:?}, stderr: {}",
        ended.code,
        ended.stderr
    );
    assert!(ended.stderr.contains("pymalloc: fatal error: "), "stderr: {}", ended.stderr);
    assert!(ended.stderr.contains("aborting"), "stderr: {}", ended.stderr);
}

//! Running one test of this test binary again in a child process, for cases that must abort or
//! could hang: the child is told it is the child by an environment variable, and killed after
//! `PYMALLOC_CHILD_TIMEOUT_MS` milliseconds (default 10,000) plus any extra a case asks for.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a child ended, and what it wrote to stderr.
pub struct Ended {
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Its exit code, if it exited.
    pub code: Option<i32>,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Ended {
    /// Asserts that the child was ended by `SIGABRT` after writing pymalloc's fatal-error
    /// message (`pymalloc: fatal error: ...`) to stderr.
    pub fn assert_fatal_abort(&self) {
        assert_eq!(
            self.signal,
            Some(libc::SIGABRT),
            "exit code {:?}, stderr: {}",
            self.code,
            self.stderr
        );
        assert!(self.stderr.contains("pymalloc: fatal error: "), "stderr: {}", self.stderr);
    }
}

/// Runs test `name` of this binary in a child with the environment variable `marker` set; kills
/// it after the timeout (plus `extra_ms`) and returns `None` if it had not ended by then.
pub fn run_child(name: &str, marker: &str, extra_ms: u64) -> Option<Ended> {
    let timeout = Duration::from_millis(
        std::env::var("PYMALLOC_CHILD_TIMEOUT_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10_000)
            + extra_ms,
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(marker, "1")
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

/// Whether this process is a child started by [`run_child`] with `marker`.
pub fn in_child(marker: &str) -> bool {
    std::env::var_os(marker).is_some()
}

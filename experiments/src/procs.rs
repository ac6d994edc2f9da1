//! Child processes: spawned, read, waited for, and always killed and reaped.
//!
//! Every measurement runs in a fresh child process (`arenalab worker <kind> <args>`), because a
//! process's memory only tells the truth about one allocator if nothing else ever ran in it. The
//! parent reads the child's report as JSON lines on its stdout, and the child's stderr is kept
//! (its last 16 KiB) to explain a failure.
//!
//! ## No process outlives the experiment
//!
//! Some experiments create processes at more than one level (the pool experiment's pool parent
//! starts workers, and then is killed on purpose so that they become orphans), and some processes
//! are *meant* to outlive their own parent for a while. None may outlive `arenalab` itself,
//! however it ends:
//!
//! | how `arenalab` ends | what ends every process it created, at any depth |
//! | --- | --- |
//! | normally, or by an error (`?`) | [`Child`]'s `Drop` (SIGKILL, then `wait4`) and the experiment's own clean-up of orphans; anything missed dies by the lifeline below |
//! | SIGINT (Ctrl-C), SIGTERM or SIGHUP | the handler: SIGKILL to every live child, reap, repeat until no child is left; exit 128 + signal |
//! | SIGKILL, a crash, anything else | the kernel and the lifeline: direct children have `PR_SET_PDEATHSIG = SIGKILL`; a process that can outlive its parent watches the lifeline and kills itself when `arenalab` is gone |
//!
//! Why the handler finds everything: the first [`Spawn::spawn`] makes the process a *child
//! subreaper* (`PR_SET_CHILD_SUBREAPER`), so a process whose parent dies is re-parented to the
//! nearest living subreaper above it (never to init). The kernel re-parents a dying process's
//! children *before* it becomes a zombie. So a live descendant at any depth has a chain of live
//! parents up to a live child of ours, and "no live child" means "no live descendant". The
//! handler scans `/proc` for processes whose parent is this process and SIGKILLs every one that
//! is not yet a zombie, reaps what has died, and repeats until a scan finds no live child:
//! grandchildren show up as children as soon as their parent is killed, and a process forked
//! during the loop is found by the next scan. No registry is involved, so there is no window
//! between a fork and anyone "knowing" the new pid. A process group per run would not be enough
//! on its own (a process may leave its group), and is not needed. The signal is sent through a
//! pidfd opened before checking that the pid is still our live child, so a pid reused by an
//! unrelated process is never signalled. The handler uses only async-signal-safe calls (raw
//! `open`, `getdents64`, `read`, `pidfd_open`, `pidfd_send_signal`, `waitpid`, `_exit`), with
//! buffers on its stack.
//!
//! ## The lifeline: `ARENALAB_LIFELINE=<pid>:<starttime>`
//!
//! `PR_SET_PDEATHSIG` only covers a parent and its direct children, and the orphans that an
//! experiment shows on purpose must not die with their own parent. So every child [`Spawn`]
//! starts gets the environment variable
//!
//! ```text
//! ARENALAB_LIFELINE=<pid>:<starttime>
//! ```
//!
//! naming the process that runs the experiment (`arenalab` itself, not the intermediate worker
//! that may have spawned the child): `<pid>` in decimal, and `<starttime>` its start time, field
//! 22 of `/proc/<pid>/stat` (clock ticks since boot, decimal), which tells that process apart
//! from a later one reusing the pid. Children inherit it, and [`Spawn`] passes it on unchanged
//! from a process that has [joined](join_lifeline) a lifeline. A process that can outlive its
//! parent (in any language) must watch it:
//!
//! 1. open a pidfd for `<pid>` (`pidfd_open`; Python's `os.pidfd_open`); if there is no such
//!    process, exit now;
//! 2. read field 22 of `/proc/<pid>/stat`; if it is missing or differs from `<starttime>`, the
//!    pid was reused: `arenalab` is gone, exit now;
//! 3. wait until the pidfd is readable (`poll`), in a thread that does nothing else: the
//!    process has ended; exit at once (this module's watcher sends itself SIGKILL).
//!
//! Checking the start time *after* opening the pidfd closes the reuse race: the pidfd refers to
//! whatever process had the pid when it was opened, and the start time proves it is the right
//! one. [`join_lifeline`] does this for arenalab's own workers; a Python script would do the same
//! with `os.pidfd_open`, `select.poll` and `os._exit` (or `os.kill(os.getpid(), signal.SIGKILL)`).
//!
//! | process | parent's death | `arenalab`'s death |
//! | --- | --- | --- |
//! | a direct child of `arenalab` | `PR_SET_PDEATHSIG` | the same |
//! | a worker started with [`Spawn::die_with_parent`]`(true)` (the default) | `PR_SET_PDEATHSIG` | through its parent, and the lifeline if it joined it |
//! | a deliberate orphan (`die_with_parent(false)`, e.g. the pool's "no fix" workers) | nothing: it lives on, re-parented to `arenalab` | the lifeline |
//!
//! ```no_run
//! use arenalab::procs::Spawn;
//! # #[derive(serde::Deserialize)] struct Report { rss: u64 }
//! // Runs `arenalab worker retention --allocator system`, parses its one JSON line, checks it
//! // exited with status 0 and reaps it. A failure carries the child's stderr tail.
//! let report: Report = Spawn::worker("retention").args(["--allocator", "system"]).run_json()?;
//! # Ok::<(), arenalab::error::Error>(())
//! ```
//!
//! Caveat of `PR_SET_PDEATHSIG`: it fires when the *thread* that spawned the child ends, not
//! the process. Spawn from a thread that outlives the child (the main thread, or a scoped thread
//! that also waits for it), or turn it off with [`Spawn::die_with_parent`]`(false)`.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// How much of a child's stderr is kept for error messages.
const STDERR_TAIL: usize = 16 * 1024;

/// How a child is to be started. Build with [`Spawn::worker`] or [`Spawn::program`].
#[derive(Clone, Debug)]
#[must_use]
pub struct Spawn {
    program: Option<PathBuf>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    die_with_parent: bool,
    label: String,
}

impl Spawn {
    /// `current_exe() worker <kind>`: a worker of this very program.
    pub fn worker(kind: &str) -> Spawn {
        Spawn {
            program: None,
            args: vec!["worker".into(), kind.into()],
            envs: Vec::new(),
            die_with_parent: true,
            label: format!("worker {kind}"),
        }
    }

    /// Any program (tests use it for `sh -c ...` or the `arenalab` binary itself).
    pub fn program(path: impl AsRef<Path>) -> Spawn {
        let path = path.as_ref().to_path_buf();
        Spawn {
            label: path.display().to_string(),
            program: Some(path),
            args: Vec::new(),
            envs: Vec::new(),
            die_with_parent: true,
        }
    }

    /// Runs `path` instead of `current_exe()`, keeping the arguments (for integration tests,
    /// whose own executable is the test harness: pass `env!("CARGO_BIN_EXE_arenalab")`).
    pub fn exe(mut self, path: impl AsRef<Path>) -> Spawn {
        self.program = Some(path.as_ref().to_path_buf());
        self
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Spawn {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Spawn
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Spawn {
        self.envs.push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Whether the kernel kills the child (SIGKILL) when the spawning thread dies. Default
    /// `true`; turn off only to study orphans on purpose.
    pub fn die_with_parent(mut self, on: bool) -> Spawn {
        self.die_with_parent = on;
        self
    }

    /// Starts the child with stdin, stdout and stderr piped. The first spawn of a process makes
    /// it a child subreaper and installs the handler that ends every descendant on SIGINT,
    /// SIGTERM and SIGHUP; the child gets [`LIFELINE_VAR`] (see the module docs).
    pub fn spawn(self) -> Result<Child> {
        become_responsible();
        let program = match &self.program {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(Error::failed("finding arenalab's binary"))?,
        };
        let mut cmd = Command::new(&program);
        cmd.args(&self.args)
            .env(LIFELINE_VAR, lifeline())
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let die_with_parent = self.die_with_parent;
        // SAFETY: getpid only reads the process id.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // async-signal-safe functions (sigprocmask, prctl, getppid, _exit); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                // The child starts with no signal blocked, whatever the spawning thread blocked.
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                if die_with_parent {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The parent may have died before prctl took effect: then nobody will
                    // send the signal, so leave now.
                    if libc::getppid() != parent {
                        libc::_exit(1);
                    }
                }
                Ok(())
            });
        }
        let mut std_child =
            cmd.spawn().map_err(Error::failed(format!("starting {}", program.display())))?;
        let pid = std_child.id() as i32;
        let slot = match register(pid) {
            Some(slot) => slot,
            None => {
                kill_and_reap(pid);
                return Err(Error::Failed(format!(
                    "more than {REGISTRY_SLOTS} child processes at once"
                )));
            }
        };
        let stdin = std_child.stdin.take();
        let stdout = std_child.stdout.take().map(BufReader::new);
        let stderr_buf = Arc::new(Mutex::new(Vec::new()));
        let stderr_thread = std_child.stderr.take().map(|mut err| {
            let buf = Arc::clone(&stderr_buf);
            std::thread::spawn(move || {
                block_handled_signals();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = err.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    let mut b = buf.lock().unwrap_or_else(|p| p.into_inner());
                    b.extend_from_slice(&chunk[..n]);
                    if b.len() > 2 * STDERR_TAIL {
                        let cut = b.len() - STDERR_TAIL;
                        b.drain(..cut);
                    }
                }
            })
        });
        // `std::process::Child` neither kills nor waits on drop; from here on this module owns
        // the pid and reaps it with wait4.
        drop(std_child);
        Ok(Child {
            pid,
            slot,
            label: format!("{} (pid {pid})", self.label),
            stdin,
            stdout,
            stderr_buf,
            stderr_thread,
            reaped: None,
        })
    }

    /// Spawns, reads one JSON line from stdout, waits for the child and requires exit status 0.
    /// Anything else (no line, bad JSON, non-zero status, a signal) is [`Error::Failed`] with
    /// the child's stderr tail.
    pub fn run_json<T: DeserializeOwned>(self) -> Result<T> {
        let mut child = self.spawn()?;
        let value = child.read_json()?;
        child.finish()?;
        Ok(value)
    }
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// It called `exit(code)`.
    Exited(i32),
    /// A signal ended it.
    Signaled(i32),
}

impl ExitStatus {
    /// Exited with status 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exit status {c}"),
            ExitStatus::Signaled(s) => write!(f, "signal {s}"),
        }
    }
}

/// What `wait4` reports about a reaped child.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exit {
    /// How it ended.
    pub status: ExitStatus,
    /// Its peak resident set (`ru_maxrss`, converted from KiB to bytes).
    pub maxrss_bytes: u64,
    /// Minor page faults (pages first touched or reclaimed without I/O).
    pub minor_faults: u64,
    /// Major page faults (pages read from disk).
    pub major_faults: u64,
    /// User CPU time in microseconds.
    pub user_us: u64,
    /// System CPU time in microseconds.
    pub system_us: u64,
}

/// A running child. Dropping it kills (SIGKILL) and reaps it unless it was already reaped.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    slot: usize,
    label: String,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
    stderr_buf: Arc<Mutex<Vec<u8>>>,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
    /// `Some` once wait4 has reaped the pid: then the pid may belong to someone else.
    reaped: Option<Exit>,
}

impl Child {
    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The child's stdin, to send it commands (closed when the `Child` is dropped).
    pub fn stdin(&mut self) -> Option<&mut ChildStdin> {
        self.stdin.as_mut()
    }

    /// Writes one line to the child's stdin and flushes it.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let label = self.label.clone();
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| Error::Failed(format!("{label}: stdin already closed")))?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(Error::failed(format!("writing to {label}")))
    }

    /// Closes the child's stdin (it reads end-of-file).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line of the child's stdout, without its newline; `None` at end of file.
    pub fn read_line(&mut self) -> Result<Option<String>> {
        let Some(out) = self.stdout.as_mut() else { return Ok(None) };
        let mut line = String::new();
        let n =
            out.read_line(&mut line).map_err(Error::failed(format!("reading {}", self.label)))?;
        if n == 0 {
            return Ok(None);
        }
        while line.ends_with('\n') || line.ends_with('\r') {
            line.pop();
        }
        Ok(Some(line))
    }

    /// The next stdout line parsed as JSON. End of file or bad JSON is [`Error::Failed`]
    /// carrying how the child ended and its stderr tail (the child is killed and reaped first
    /// if it is still running).
    pub fn read_json<T: DeserializeOwned>(&mut self) -> Result<T> {
        match self.read_line()? {
            Some(line) => match serde_json::from_str(&line) {
                Ok(v) => Ok(v),
                Err(e) => {
                    let shown: String = line.chars().take(200).collect();
                    Err(self.failure(&format!(
                        "printed a line that is not the expected JSON ({e}): {shown:?}"
                    )))
                }
            },
            None => Err(self.failure("ended its output without a report")),
        }
    }

    /// Sends `signal` to the child (no-op error if it was already reaped).
    pub fn signal(&self, signal: i32) -> Result<()> {
        if self.reaped.is_some() {
            return Err(Error::Failed(format!("{}: already reaped", self.label)));
        }
        send_signal(self.pid, signal)
    }

    /// Waits for the child to end (blocking) and reaps it; returns its status and rusage.
    /// Idempotent: a second call returns the same [`Exit`].
    pub fn wait(&mut self) -> Result<Exit> {
        if let Some(e) = self.reaped {
            return Ok(e);
        }
        let exit = wait4(self.pid, false)?.ok_or_else(|| {
            Error::Failed(format!("{}: wait4 returned without a status", self.label))
        })?;
        self.mark_reaped(exit);
        Ok(exit)
    }

    /// Reaps the child if it has ended, without blocking.
    pub fn try_wait(&mut self) -> Result<Option<Exit>> {
        if let Some(e) = self.reaped {
            return Ok(Some(e));
        }
        let exit = wait4(self.pid, true)?;
        if let Some(e) = exit {
            self.mark_reaped(e);
        }
        Ok(exit)
    }

    /// Waits at most `timeout` for the child to end (polling every millisecond).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<Exit>> {
        let start = Instant::now();
        loop {
            if let Some(e) = self.try_wait()? {
                return Ok(Some(e));
            }
            if start.elapsed() >= timeout {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Closes stdin, waits for the child and requires exit status 0; otherwise
    /// [`Error::Failed`] with the stderr tail.
    pub fn finish(mut self) -> Result<Exit> {
        self.close_stdin();
        let exit = self.wait()?;
        if exit.status.success() { Ok(exit) } else { Err(self.failure("failed")) }
    }

    /// Kills the child with SIGKILL and reaps it (what `Drop` does), returning how it ended.
    pub fn kill(mut self) -> Result<Exit> {
        if self.reaped.is_none() {
            let _ = send_signal(self.pid, libc::SIGKILL);
        }
        self.wait()
    }

    /// The child's stderr so far (its last 16 KiB at most), lossily decoded.
    pub fn stderr_tail(&self) -> String {
        let b = self.stderr_buf.lock().unwrap_or_else(|p| p.into_inner());
        let start = b.len().saturating_sub(STDERR_TAIL);
        String::from_utf8_lossy(&b[start..]).into_owned()
    }

    /// An [`Error::Failed`] for this child: makes sure it is reaped (killing it if it still
    /// runs), waits for its stderr to close, and quotes how it ended and the stderr tail.
    fn failure(&mut self, what: &str) -> Error {
        if self.reaped.is_none() {
            // Give a child that is exiting a moment to finish by itself, so its status is its
            // own and not our SIGKILL.
            if !matches!(self.wait_timeout(Duration::from_millis(500)), Ok(Some(_))) {
                let _ = send_signal(self.pid, libc::SIGKILL);
                let _ = self.wait();
            }
        }
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        let how =
            self.reaped.map_or_else(|| "status unknown".to_string(), |e| e.status.to_string());
        let tail = self.stderr_tail();
        let tail = tail.trim();
        if tail.is_empty() {
            Error::Failed(format!("{} {what} ({how}); it wrote nothing on stderr", self.label))
        } else {
            Error::Failed(format!("{} {what} ({how}); its stderr ends:\n{tail}", self.label))
        }
    }

    fn mark_reaped(&mut self, exit: Exit) {
        self.reaped = Some(exit);
        unregister(self.slot, self.pid);
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stdin = None;
        if self.reaped.is_none() {
            let _ = send_signal(self.pid, libc::SIGKILL);
            let _ = self.wait();
        }
        // Stop reading stdout before joining stderr: the pipes close as the child is gone.
        self.stdout = None;
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `signal` to `pid`.
pub fn send_signal(pid: i32, signal: i32) -> Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "sending signal {signal} to pid {pid}: {}",
            std::io::Error::last_os_error()
        )))
    }
}

/// `wait4(pid)`: reaps a child of this process and returns its status and rusage. With
/// `nohang`, returns `Ok(None)` if it has not ended yet.
pub fn wait4(pid: i32, nohang: bool) -> Result<Option<Exit>> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if nohang { libc::WNOHANG } else { 0 };
    loop {
        // SAFETY: both pointers are to live locals of the right types.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        if r == pid {
            break;
        }
        if r == 0 {
            return Ok(None);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::Failed(format!("wait4({pid}): {err}")));
        }
    }
    let st = if libc::WIFEXITED(status) {
        ExitStatus::Exited(libc::WEXITSTATUS(status))
    } else {
        ExitStatus::Signaled(libc::WTERMSIG(status))
    };
    let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    Ok(Some(Exit {
        status: st,
        maxrss_bytes: ru.ru_maxrss as u64 * 1024,
        minor_faults: ru.ru_minflt as u64,
        major_faults: ru.ru_majflt as u64,
        user_us: us(ru.ru_utime),
        system_us: us(ru.ru_stime),
    }))
}

/// The one-letter state of `pid` from `/proc/<pid>/stat` (`R`, `S`, `D`, `Z`, ...), or `None`
/// if there is no such process.
pub fn state(pid: i32) -> Option<char> {
    stat_fields(pid).map(|(state, _)| state)
}

/// Whether `pid` is a zombie: ended, its memory freed, but not yet reaped by its parent.
pub fn is_zombie(pid: i32) -> bool {
    state(pid) == Some('Z')
}

/// Whether `pid` exists and is not a zombie.
pub fn is_running(pid: i32) -> bool {
    matches!(state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// The parent pid of `pid`, from `/proc/<pid>/stat`.
pub fn parent_of(pid: i32) -> Option<i32> {
    stat_fields(pid).map(|(_, ppid)| ppid)
}

/// Every descendant of `pid` (children, grandchildren, ...), zombies included, found by
/// following the ppid field of `/proc/*/stat`. A snapshot: processes may come and go meanwhile.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Some((_, ppid)) = stat_fields(p) {
                parents.push((p, ppid));
            }
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, ppid) in &parents {
            if ppid == p && !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found.sort_unstable();
    found
}

/// (state, ppid) from `/proc/<pid>/stat`. The command name is in parentheses and may contain
/// spaces or parentheses, so the fields are read after the *last* `)`.
fn stat_fields(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The start time of `pid`: field 22 of `/proc/<pid>/stat`, in clock ticks since boot. Two
/// processes that had the same pid at different times have different start times.
pub fn start_time(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name start with field 3 (the state), so field 22 is the 20th.
    text[text.rfind(')')? + 1..].split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Makes the kernel SIGKILL this process when its parent dies (`PR_SET_PDEATHSIG`). Children
/// spawned by [`Spawn`] already have it; call this at the start of a process started some
/// other way. Exits at once if the parent is already gone (we were re-parented to init, or the
/// parent changed while the call was made).
pub fn die_with_parent() {
    // SAFETY: getppid only reads the parent id.
    let before = unsafe { libc::getppid() };
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    // SAFETY: as above.
    if before == 1 || unsafe { libc::getppid() } != before {
        std::process::exit(1);
    }
}

// ---- the lifeline ----

/// The environment variable naming the process whose end ends every process of the experiment:
/// `<pid>:<starttime>` (see the module docs).
pub const LIFELINE_VAR: &str = "ARENALAB_LIFELINE";

/// The lifeline this process joined ([`join_lifeline`]), passed on to its children unchanged.
static JOINED: OnceLock<String> = OnceLock::new();

/// The value of [`LIFELINE_VAR`] this process gives its children: the lifeline it joined, or
/// else itself (`<own pid>:<own start time>`): the process running the experiment.
pub fn lifeline() -> String {
    if let Some(joined) = JOINED.get() {
        return joined.clone();
    }
    static OWN: OnceLock<String> = OnceLock::new();
    OWN.get_or_init(|| {
        let pid = std::process::id() as i32;
        // /proc/self/stat always exists; 0 would only make every watcher leave at once.
        format!("{pid}:{}", start_time(pid).unwrap_or(0))
    })
    .clone()
}

/// Parses a [`LIFELINE_VAR`] value, `<pid>:<starttime>`.
///
/// ```
/// assert_eq!(arenalab::procs::parse_lifeline("4242:123456"), Some((4242, 123456)));
/// assert_eq!(arenalab::procs::parse_lifeline("4242"), None);
/// ```
pub fn parse_lifeline(value: &str) -> Option<(i32, u64)> {
    let (pid, start) = value.split_once(':')?;
    let pid: i32 = pid.parse().ok()?;
    (pid > 0).then_some(())?;
    Some((pid, start.parse().ok()?))
}

/// Joins the lifeline this process was started with ([`LIFELINE_VAR`]): from now on this
/// process kills itself (SIGKILL) as soon as the process it names has ended, and its own
/// children are given the same lifeline. Returns `Ok(false)` when the variable is not set (the
/// process was not started by an experiment: nothing to watch), and an error when it is
/// malformed. Exits at once if the lifeline's process is already gone.
///
/// The watch is a thread blocked in `poll` on a pidfd (or, on kernels before 5.3 without
/// `pidfd_open`, reading the start time every 20 ms). It allocates nothing after it starts.
pub fn join_lifeline() -> Result<bool> {
    let Some(value) = std::env::var_os(LIFELINE_VAR) else { return Ok(false) };
    let value = value.to_string_lossy().into_owned();
    let (pid, start) = parse_lifeline(&value).ok_or_else(|| {
        Error::Failed(format!("{LIFELINE_VAR}={value:?}: expected <pid>:<starttime>"))
    })?;
    let _ = JOINED.set(value);
    // SAFETY: pidfd_open takes a pid and flags and touches no memory of ours.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    let no_pidfd =
        pidfd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS);
    if pidfd < 0 && !no_pidfd {
        lifeline_ended();
    }
    // The pidfd names whatever process had `pid` when it was opened; the start time proves it
    // is the one the lifeline means (and not a later process reusing the pid).
    if start_time(pid) != Some(start) {
        lifeline_ended();
    }
    let watcher = std::thread::Builder::new().name("lifeline".into());
    let spawned = if no_pidfd {
        watcher.spawn(move || {
            block_handled_signals();
            loop {
                std::thread::sleep(Duration::from_millis(20));
                if start_time(pid) != Some(start) {
                    lifeline_ended();
                }
            }
        })
    } else {
        watcher.spawn(move || {
            block_handled_signals();
            let mut pfd = libc::pollfd { fd: pidfd, events: libc::POLLIN, revents: 0 };
            loop {
                // SAFETY: `pfd` is a live local; one entry; no timeout.
                let r = unsafe { libc::poll(&mut pfd, 1, -1) };
                if r > 0 {
                    lifeline_ended();
                }
                if r < 0
                    && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
                {
                    // A pidfd poll cannot fail but by EINTR; if it did, leave rather than
                    // risk outliving the experiment.
                    lifeline_ended();
                }
            }
        })
    };
    spawned.map_err(Error::failed("starting the lifeline watcher"))?;
    Ok(true)
}

/// The lifeline's process is gone: end this process at once, as if killed with it.
fn lifeline_ended() -> ! {
    // SAFETY: kill and getpid have no memory-safety preconditions; SIGKILL to ourselves ends
    // the whole process (every thread) without running anything more of ours.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    // SAFETY: _exit only ends the process (not reached: SIGKILL is delivered first).
    unsafe { libc::_exit(128 + libc::SIGKILL) }
}

// ---- the registry of live children (for [`live_children`]) ----

/// At most this many children are alive at once.
pub const REGISTRY_SLOTS: usize = 256;

/// Live children's pids; 0 marks a free slot.
static REGISTRY: [AtomicI32; REGISTRY_SLOTS] = [const { AtomicI32::new(0) }; REGISTRY_SLOTS];

fn register(pid: i32) -> Option<usize> {
    REGISTRY
        .iter()
        .position(|slot| slot.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst).is_ok())
}

fn unregister(slot: usize, pid: i32) {
    let _ = REGISTRY[slot].compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst);
}

/// Pids of the children this process has spawned through [`Spawn`] and not yet reaped.
/// (Orphans re-parented to this process are not among them; the signal handler does not rely on
/// this list but on `/proc`.)
pub fn live_children() -> Vec<i32> {
    REGISTRY.iter().map(|s| s.load(Ordering::SeqCst)).filter(|&p| p != 0).collect()
}

fn kill_and_reap(pid: i32) {
    let _ = send_signal(pid, libc::SIGKILL);
    let _ = wait4(pid, false);
}

// ---- the end of every descendant on SIGINT, SIGTERM, SIGHUP ----

/// The signals whose handler ends every descendant.
const HANDLED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Makes this process responsible for its descendants, once: a child subreaper (orphans at any
/// depth are re-parented to it, never to init) with the handler for SIGINT, SIGTERM and SIGHUP installed.
/// [`Spawn::spawn`] calls it before the first fork; until then there is no descendant to end.
pub fn install_signal_handlers() {
    become_responsible();
}

/// Blocks SIGINT, SIGTERM and SIGHUP on the calling thread, for this module's helper threads
/// (stderr readers, the lifeline watcher): the handler then runs on a thread of the program
/// (the main thread, normally), which it suspends while it ends every descendant, rather than
/// on a helper while the program goes on and perhaps exits with a status of its own.
fn block_handled_signals() {
    // SAFETY: an all-zero sigset is a valid value, initialised by sigemptyset before use;
    // pthread_sigmask only changes the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in HANDLED {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn become_responsible() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes an integer flag and touches no memory.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) };
        for sig in HANDLED {
            // SAFETY: an all-zero sigaction is a valid starting value, initialised below; the
            // handler is an `extern "C" fn(c_int)` that only calls async-signal-safe functions;
            // while it runs, every handled signal is blocked on its thread (sa_mask).
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                libc::sigemptyset(&mut sa.sa_mask);
                for s in HANDLED {
                    libc::sigaddset(&mut sa.sa_mask, s);
                }
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    });
}

/// Set by the first thread that runs the handler; a second one waits for it to end the process.
static ENDING: AtomicBool = AtomicBool::new(false);

/// Ends every descendant, reaps them, then leaves with status 128 + signal (130 for Ctrl-C), as
/// a shell reports a process ended by that signal. Only async-signal-safe calls, no allocation.
extern "C" fn on_signal(sig: libc::c_int) {
    if ENDING.swap(true, Ordering::SeqCst) {
        loop {
            // SAFETY: pause only suspends this thread; the first handler ends the process.
            unsafe { libc::pause() };
        }
    }
    // SAFETY: called from the signal handler, as end_descendants requires.
    unsafe { end_descendants() };
    let msg = b"\narenalab: interrupted; every child process killed and reaped\n";
    // SAFETY: write and _exit are async-signal-safe; the buffer is a static byte string.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(128 + sig);
    }
}

/// SIGKILLs every live child of this process, reaps the dead ones, and repeats until a scan of
/// `/proc` finds no live child (for at most 30 s, in case a process is stuck in the kernel).
/// As this process is a child subreaper, that leaves no live descendant at any depth.
///
/// # Safety
///
/// Meant for the signal handler: it reaps *every* child with `waitpid(-1)`, so any [`Child`]
/// of this process is left with a pid it may no longer own. Call it only when the process is
/// about to exit.
unsafe fn end_descendants() {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    for _ in 0..30_000 {
        // SAFETY: the path is a NUL-terminated static string.
        let dir = unsafe {
            libc::open(c"/proc".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)
        };
        let mut live = 0usize;
        if dir >= 0 {
            let mut buf = [0u8; 8192];
            loop {
                // SAFETY: the buffer is a live local of the length given.
                let n = unsafe {
                    libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len())
                };
                if n <= 0 {
                    break;
                }
                let mut off = 0usize;
                while off + 19 < n as usize {
                    // linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name.
                    let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
                    if reclen == 0 {
                        break;
                    }
                    let name = &buf[off + 19..(off + reclen).min(n as usize)];
                    if let Some(pid) = parse_pid(name)
                        && pid != me
                        && signal_if_live_child(pid, me)
                    {
                        live += 1;
                    }
                    off += reclen;
                }
            }
            // SAFETY: `dir` is an fd this function opened.
            unsafe { libc::close(dir) };
        }
        // Reap whatever has died (our children and re-parented orphans alike).
        loop {
            let mut st = 0;
            // SAFETY: waitpid writes only the status int on our stack.
            if unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) } <= 0 {
                break;
            }
        }
        if live == 0 || dir < 0 {
            break;
        }
        let pause = libc::timespec { tv_sec: 0, tv_nsec: 1_000_000 };
        // SAFETY: nanosleep reads the local timespec; a null remainder is allowed.
        unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
    }
}

/// A `/proc` entry name as a pid (digits, then NUL), or `None`.
fn parse_pid(name: &[u8]) -> Option<i32> {
    let mut pid: i32 = 0;
    let mut digits = 0;
    for &b in name {
        match b {
            0 => break,
            b'0'..=b'9' => {
                pid = pid.checked_mul(10)?.checked_add((b - b'0') as i32)?;
                digits += 1;
            }
            _ => return None,
        }
    }
    (digits > 0).then_some(pid)
}

/// If `pid` is a child of `me`, SIGKILLs it; returns whether it is a live one (not a zombie).
/// Zombies are signalled too: a process whose main thread has ended shows `Z` while its other
/// threads run, and SIGKILL ends them all (it does nothing to a real zombie). The signal goes
/// through a pidfd opened *before* the check, so that if the pid was reused meanwhile the signal
/// reaches the (dead) process the check was about, never a stranger. Async-signal-safe.
fn signal_if_live_child(pid: i32, me: i32) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and touches no memory of ours.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    let (child, live) = match raw_stat(pid) {
        Some((state, ppid)) if ppid == me => (true, state != b'Z' && state != b'X'),
        _ => (false, false),
    };
    if child {
        if pidfd >= 0 {
            // SAFETY: pidfd_send_signal with a null siginfo sends a plain SIGKILL.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd,
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
        } else {
            // No pidfd support (or the process just ended): fall back to the pid.
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    if pidfd >= 0 {
        // SAFETY: an fd this function opened.
        unsafe { libc::close(pidfd) };
    }
    live
}

/// (state, ppid) of `pid` from `/proc/<pid>/stat`, read with raw syscalls into stack buffers
/// (async-signal-safe). Only the start of the line is read: the fields after the command name
/// are numbers, so the last `)` within it is the command name's end.
fn raw_stat(pid: i32) -> Option<(u8, i32)> {
    let mut path = [0u8; 32];
    let prefix = b"/proc/";
    path[..prefix.len()].copy_from_slice(prefix);
    let mut len = prefix.len();
    let mut digits = [0u8; 10];
    let mut n = 0;
    let mut p = pid;
    loop {
        digits[n] = b'0' + (p % 10) as u8;
        n += 1;
        p /= 10;
        if p == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        path[len] = digits[i];
        len += 1;
    }
    let suffix = b"/stat\0";
    path[len..len + suffix.len()].copy_from_slice(suffix);
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is a live local of the length given; `fd` is ours.
    let got = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: as above.
    unsafe { libc::close(fd) };
    if got <= 0 {
        return None;
    }
    let text = &buf[..got as usize];
    let close = text.iter().rposition(|&b| b == b')')?;
    let mut fields = text[close + 1..].split(|&b| b == b' ').filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    let ppid = parse_pid(fields.next()?)?;
    Some((state, ppid))
}

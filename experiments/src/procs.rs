//! Child processes: spawned, read, waited for, and always killed and reaped.
//!
//! Every measurement runs in a fresh child process (`arenalab worker <kind> <args>`), because a
//! process's memory only tells the truth about one allocator if nothing else ever ran in it. The
//! parent reads the child's report as JSON lines on its stdout, and the child's stderr is kept
//! (its last 16 KiB) to explain a failure.
//!
//! A child must never outlive the experiment, whatever happens:
//!
//! | how the parent ends | what kills the child |
//! | --- | --- |
//! | normally, or by an error (`?`) | [`Child`]'s `Drop`: SIGKILL, then `wait4` to reap it |
//! | Ctrl-C (SIGINT), SIGTERM or SIGHUP | the handler installed by the first spawn: SIGKILL to every registered pid, reap, exit 128 + signal |
//! | SIGKILL, a crash | the kernel: children get `PR_SET_PDEATHSIG = SIGKILL`, set between fork and exec |
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
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Once};
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

    /// Starts the child with stdin, stdout and stderr piped, and registers it so Ctrl-C kills it.
    pub fn spawn(self) -> Result<Child> {
        install_signal_handlers();
        let program = match &self.program {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(Error::failed("finding arenalab's binary"))?,
        };
        // Ctrl-C between fork and `register` would find the new pid in no slot, so the
        // signals the handler catches are blocked on this thread until the child is registered
        // (a signal that arrives meanwhile is delivered on unblocking). The stderr reader thread
        // is started inside that window and keeps the mask, so it never runs the handler itself.
        let _blocked = BlockSignals::new();
        let mut cmd = Command::new(&program);
        cmd.args(&self.args)
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
                // The child starts with the signals the parent blocked for the spawn unblocked.
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

/// Makes the kernel SIGKILL this process when its parent dies (`PR_SET_PDEATHSIG`). Children
/// spawned by [`Spawn`] already have it; call this at the start of a process started some
/// other way. Exits at once if the parent is already gone (we were re-parented to init).
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

// ---- the registry of live children, for the signal handler ----

/// At most this many children are alive at once.
pub const REGISTRY_SLOTS: usize = 256;

/// Live children's pids; 0 marks a free slot. Atomics, so the signal handler can read them
/// without locks (async-signal-safe).
static REGISTRY: [AtomicI32; REGISTRY_SLOTS] = [const { AtomicI32::new(0) }; REGISTRY_SLOTS];

fn register(pid: i32) -> Option<usize> {
    REGISTRY
        .iter()
        .position(|slot| slot.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst).is_ok())
}

fn unregister(slot: usize, pid: i32) {
    let _ = REGISTRY[slot].compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst);
}

/// Pids of the children this process has spawned and not yet reaped.
pub fn live_children() -> Vec<i32> {
    REGISTRY.iter().map(|s| s.load(Ordering::SeqCst)).filter(|&p| p != 0).collect()
}

fn kill_and_reap(pid: i32) {
    let _ = send_signal(pid, libc::SIGKILL);
    let _ = wait4(pid, false);
}

/// The signals whose handler kills the registered children.
const HANDLED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Blocks [`HANDLED`] on the calling thread while alive; restores the previous mask on drop.
struct BlockSignals {
    old: libc::sigset_t,
}

impl BlockSignals {
    fn new() -> BlockSignals {
        // SAFETY: all-zero sigsets are valid values, initialised by sigemptyset before use;
        // pthread_sigmask only changes this thread's mask and writes the old one into `old`.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in HANDLED {
                libc::sigaddset(&mut set, sig);
            }
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            BlockSignals { old }
        }
    }
}

impl Drop for BlockSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`; the guard is a local of `Spawn::spawn`, so
        // it is dropped on the thread that made it.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// Installs the SIGINT/SIGTERM handler once per process (done by the first [`Spawn::spawn`]).
pub fn install_signal_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for sig in HANDLED {
            // SAFETY: an all-zero sigaction is a valid starting value; the handler is an
            // `extern "C" fn(c_int)` that only calls async-signal-safe functions.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    });
}

/// Kills and reaps every registered child, then leaves with status 128 + signal (130 for
/// Ctrl-C), as a shell reports a process ended by that signal. Only async-signal-safe calls:
/// atomic loads, kill, waitpid, write, _exit.
extern "C" fn on_signal(sig: libc::c_int) {
    for slot in &REGISTRY {
        let pid = slot.swap(0, Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill and waitpid are async-signal-safe and touch no shared memory but the
            // status int on our stack.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                let mut st = 0;
                libc::waitpid(pid, &mut st, 0);
            }
        }
    }
    let msg = b"\narenalab: interrupted; child processes killed\n";
    // SAFETY: write and _exit are async-signal-safe; the buffer is a static byte string.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(128 + sig);
    }
}

/// Registers a process that was not spawned through [`Spawn`] (a grandchild about to be
/// orphaned onto this process as its subreaper, say) so the Ctrl-C handler kills and reaps it
/// too. Returns the registry slot to pass to [`forget_adopted`] once it is reaped, or `None`
/// when the registry is full. (Added for the pool experiment's orphans.)
pub fn adopt(pid: i32) -> Option<usize> {
    install_signal_handlers();
    register(pid)
}

/// Takes an [`adopt`]ed pid out of the registry (call it after reaping the process).
pub fn forget_adopted(slot: usize, pid: i32) {
    unregister(slot, pid);
}

//! The pool part: `multiprocessing.Pool` workers' memory, scenario by scenario.
//!
//! One child per (interpreter, start method, scenario) runs `python/pool.py`, the *pool parent*.
//! It opens the pool, gives every worker a task that leaves it holding M MiB, prints its
//! workers' pids and waits for a line on stdin. This side samples, every 10 ms, the workers
//! (the processes named `alab-pyworker` among arenalab's descendants, so replacement workers are
//! seen too) and their summed `VmRSS`; then it triggers the scenario's key event (a line on
//! stdin, or SIGKILL to the pool parent) and watches until no worker is left or the observation
//! ends. arenalab is the child subreaper ([`crate::procs`] makes it one at its first spawn), so
//! orphaned workers are re-parented to it (not to init): it can still see them, reap them, and
//! finally kill and reap every leftover. The scripts also watch arenalab's own life
//! (`ARENALAB_LIFELINE`, which [`crate::procs`] gives every child).

use super::find::Interpreter;
use crate::error::Result;
use crate::procs::{self, Child, Spawn};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

/// The scenarios of `pool.py`, in table order.
pub const SCENARIOS: [&str; 9] = [
    "open-idle",
    "close-join",
    "terminate",
    "with-block",
    "del-gc",
    "maxtasks1",
    "parent-exits",
    "killed-idle",
    "killed-busy",
];

/// What each scenario does, for tables and the page.
pub fn describe(scenario: &str) -> &'static str {
    match scenario {
        "open-idle" => "pool left open, parent idle",
        "close-join" => "`pool.close(); pool.join()`",
        "terminate" => "`pool.terminate()`",
        "with-block" => "leaving `with Pool(...) as pool:`",
        "del-gc" => "`del pool; gc.collect()`, never closed",
        "maxtasks1" => "`Pool(maxtasksperchild=1)`, then close + join",
        "parent-exits" => "parent returns from main, pool open",
        "killed-idle" => "parent SIGKILLed, workers idle",
        "killed-busy" => "parent SIGKILLed, workers busy in a task",
        _ => "?",
    }
}

/// How long the pool parent may take to report that every worker holds its memory.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the child's next JSON line, but kills it and all its descendants when none comes
/// within `timeout` (forked workers hold the parent's stdout, so killing the parent alone
/// would not end the read).
fn read_within(child: &mut Child, timeout: Duration) -> Result<serde_json::Value> {
    let pid = child.pid();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&done);
    let watchdog = std::thread::spawn(move || {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in procs::descendants(pid).into_iter().chain([pid]) {
            let _ = procs::send_signal(p, libc::SIGKILL);
        }
    });
    let value = child.read_json();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = watchdog.join();
    value
}

/// Sampling period.
const STEP: Duration = Duration::from_millis(10);
/// How long the pool is watched before its key event.
const BEFORE: Duration = Duration::from_millis(100);

/// The sizes of the pool part.
#[derive(Clone, Copy, Debug)]
pub struct PoolSize {
    /// Workers per pool.
    pub workers: usize,
    /// MiB each worker holds.
    pub mib: u64,
    /// Longest observation after the key event, ms (killed-busy: plus the task's length).
    pub observe_ms: u64,
    /// killed-busy: how long the workers' task lasts, ms.
    pub busy_ms: u64,
}

/// One timeline sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// ms since the scenario's key event (negative: before).
    pub t_ms: f64,
    /// Workers alive (not zombies).
    pub live: usize,
    /// Their summed VmRSS, MiB.
    pub rss_mib: f64,
}

/// One scenario's run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    /// `3.11.2`.
    pub version: String,
    /// `fork`, `spawn` or `forkserver`.
    pub start_method: String,
    /// The scenario.
    pub scenario: String,
    /// Workers alive when every one held its memory.
    pub live_at_ready: usize,
    /// Their summed RSS then, MiB.
    pub rss_at_ready_mib: f64,
    /// Key event → no worker alive, ms; `None`: they outlived the observation.
    pub to_zero_ms: Option<f64>,
    /// Workers alive at the last sample before clean-up.
    pub live_at_end: usize,
    /// Their summed RSS then, MiB.
    pub rss_at_end_mib: f64,
    /// How long the observation after the key event lasted, ms.
    pub observed_ms: f64,
    /// Processes arenalab had to kill at clean-up (workers and multiprocessing's helpers).
    pub left_for_clean_up: usize,
    /// The timeline (every sample).
    pub timeline: Vec<Sample>,
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

fn vm_rss(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib << 10)
}

/// Reaps every zombie that is our own child, except `keep` (the pool parent, which its
/// [`Child`] reaps). (The signal handler of [`crate::procs`] finds living descendants itself.)
fn reap_adopted(keep: i32) {
    // SAFETY: getpid only reads the process id.
    let me = unsafe { libc::getpid() };
    for pid in procs::descendants(me) {
        if pid == keep {
            continue;
        }
        if procs::is_zombie(pid) && procs::parent_of(pid) == Some(me) {
            let _ = procs::wait4(pid, true);
        }
    }
}

/// (live workers, summed VmRSS bytes), reaping adopted zombies on the way.
fn sample(keep: i32) -> (usize, u64) {
    reap_adopted(keep);
    // SAFETY: getpid only reads the process id.
    let me = unsafe { libc::getpid() };
    let mut live = 0;
    let mut rss = 0;
    for pid in procs::descendants(me) {
        if procs::is_running(pid) && comm(pid) == "alab-pyworker" {
            live += 1;
            rss += vm_rss(pid);
        }
    }
    (live, rss)
}

/// Kills the pool parent, then every descendant left (workers, multiprocessing's resource
/// tracker and fork server), reaping each; returns how many were still running.
fn clean_up(parent: Child) -> usize {
    let parent_pid = parent.pid();
    drop(parent); // procs::Child's Drop: SIGKILL, wait4.
    // SAFETY: getpid only reads the process id.
    let me = unsafe { libc::getpid() };
    let mut killed: Vec<i32> = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let left: Vec<i32> =
            procs::descendants(me).into_iter().filter(|&p| p != parent_pid).collect();
        if left.is_empty() || Instant::now() > until {
            break;
        }
        for pid in left {
            if procs::is_running(pid) && !killed.contains(&pid) {
                killed.push(pid);
            }
            let _ = procs::send_signal(pid, libc::SIGKILL);
            if procs::parent_of(pid) == Some(me) {
                let _ = procs::wait4(pid, false);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    killed.len()
}

/// Runs every scenario for one interpreter and start method.
pub fn run_all(
    py: &Interpreter,
    script: &Path,
    method: &str,
    scenarios: &[String],
    size: PoolSize,
) -> Result<Vec<Run>> {
    scenarios.iter().map(|s| run_one(py, script, method, s, size)).collect()
}

fn run_one(
    py: &Interpreter,
    script: &Path,
    method: &str,
    scenario: &str,
    size: PoolSize,
) -> Result<Run> {
    let mut parent = Spawn::program(&py.executable)
        .arg(script)
        .args(["--scenario", scenario, "--start-method", method])
        .args(["--workers", &size.workers.to_string(), "--mib", &size.mib.to_string()])
        .args(["--busy-ms", &size.busy_ms.to_string()])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .spawn()?;
    let ppid = parent.pid();
    let result = observe(&mut parent, scenario, size);
    let left = clean_up(parent);
    let mut run = result?;
    run.version = py.version.clone();
    run.start_method = method.to_string();
    run.left_for_clean_up = left;
    let _ = ppid;
    Ok(run)
}

fn observe(parent: &mut Child, scenario: &str, size: PoolSize) -> Result<Run> {
    let ready: serde_json::Value = read_within(parent, READY_TIMEOUT)?;
    if ready.get("event").and_then(|e| e.as_str()) != Some("ready") {
        return Err(crate::error::Error::Failed(format!(
            "pool.py {scenario}: expected the ready line, got {ready}"
        )));
    }
    let ppid = parent.pid();
    let mut raw: Vec<(Instant, usize, u64)> = Vec::new();
    let started = Instant::now();
    let (live_at_ready, rss_at_ready) = sample(ppid);
    while started.elapsed() < BEFORE {
        let (l, r) = sample(ppid);
        raw.push((Instant::now(), l, r));
        std::thread::sleep(STEP);
    }
    let key = Instant::now();
    match scenario {
        "killed-idle" | "killed-busy" => {
            parent.signal(libc::SIGKILL)?;
            let _ = parent.wait();
        }
        "open-idle" => {}
        _ => parent.send_line("go")?,
    }
    let limit = Duration::from_millis(
        size.observe_ms + if scenario == "killed-busy" { size.busy_ms } else { 0 },
    );
    let mut zero_at = None;
    loop {
        let (l, r) = sample(ppid);
        let now = Instant::now();
        raw.push((now, l, r));
        if l == 0 && zero_at.is_none() {
            zero_at = Some(now);
        }
        let tail_done = zero_at.is_some_and(|z| now - z >= Duration::from_millis(50));
        if now - key >= limit || (scenario != "open-idle" && tail_done) {
            break;
        }
        std::thread::sleep(STEP);
    }
    let ms = |t: Instant| {
        if t >= key { (t - key).as_secs_f64() * 1e3 } else { -((key - t).as_secs_f64() * 1e3) }
    };
    let last = raw.last().copied().unwrap_or((key, 0, 0));
    Ok(Run {
        version: String::new(),
        start_method: String::new(),
        scenario: scenario.to_string(),
        live_at_ready,
        rss_at_ready_mib: crate::measure::mib(rss_at_ready),
        to_zero_ms: if scenario == "open-idle" { None } else { zero_at.map(ms) },
        live_at_end: last.1,
        rss_at_end_mib: crate::measure::mib(last.2),
        observed_ms: ms(last.0),
        left_for_clean_up: 0,
        timeline: raw
            .iter()
            .map(|&(t, l, r)| Sample {
                t_ms: (ms(t) * 10.0).round() / 10.0,
                live: l,
                rss_mib: (crate::measure::mib(r) * 10.0).round() / 10.0,
            })
            .collect(),
    })
}

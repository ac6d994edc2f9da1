//! The exit part: memory given back when a Python process ends, however it ends.
//!
//! One child per (interpreter, ending) runs `python/exit.py`: it builds about M MiB of floats,
//! prints that it is ready and waits. This side reads its memory from outside
//! (`/proc/PID/smaps_rollup`), then ends it (a line on stdin for the endings the script performs
//! itself, a signal for the others) and samples every ~0.5 ms: the child's state, the machine's
//! `MemAvailable` and the free pages on per-CPU lists (the `exit` experiment's accounting,
//! [`crate::exit::RELEASE_RULE`]). The zombie is read before it is reaped. The endings the
//! script performs report the moment they begin, so "end → zombie" for `normal` is the time the
//! interpreter's finalization spends destroying objects, and `os-exit` is the same without it.

use super::find::Interpreter;
use crate::error::{Error, Result};
use crate::exit::{RELEASE_FRACTION, mono_ns};
use crate::measure::{self, SystemMemory};
use crate::procs::{self, Spawn};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

/// The endings, in table order.
pub const ENDINGS: [&str; 5] = ["normal", "os-exit", "exception", "sigkill", "sigterm"];

/// How long a zombie is left unreaped, so the machine can be read while it exists.
const ZOMBIE_HOLD: Duration = Duration::from_millis(20);

/// One child's end.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    /// `3.11.2`.
    pub version: String,
    /// The ending.
    pub ending: String,
    /// Floats the child built.
    pub objects: u64,
    /// The child's RSS while alive (read from outside), MiB.
    pub alive_rss_mib: f64,
    /// Its anonymous memory then, MiB.
    pub alive_anon_mib: f64,
    /// How it ended (`exit status 0`, `signal 9`, ...).
    pub status: String,
    /// Its peak RSS (`ru_maxrss`), MiB.
    pub peak_rss_mib: f64,
    /// The end (the signal, or the script's word that it is ending) → zombie seen, ms.
    pub end_to_zombie_ms: Option<f64>,
    /// Whether the zombie's status had a `VmRSS` line (a zombie has no memory map left).
    pub zombie_has_rss: Option<bool>,
    /// Share of the child's anonymous memory available again (MemAvailable + per-CPU free
    /// pages) while it was an unreaped zombie, percent.
    pub back_before_reap_pct: Option<f64>,
    /// The end → 90 % of its anonymous memory available again (accounted), ms.
    pub end_to_back_ms: Option<f64>,
}

/// Runs one child to its end.
pub fn run_one(py: &Interpreter, script: &Path, ending: &str, mib: u64) -> Result<Run> {
    let signal = match ending {
        "sigkill" => Some(libc::SIGKILL),
        "sigterm" => Some(libc::SIGTERM),
        _ => None,
    };
    let script_ending = if signal.is_some() { "wait" } else { ending };
    let mut child = Spawn::program(&py.executable)
        .arg(script)
        .args(["--mib", &mib.to_string(), "--ending", script_ending])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .spawn()?;
    let pid = child.pid();
    let ready: serde_json::Value = child.read_json()?;
    let objects = ready.get("objects").and_then(|v| v.as_u64()).unwrap_or(0);
    let alive = measure::process(pid)?;
    let sys_alive = measure::system()?;
    let expected = alive.anon_bytes as f64;
    let base = sys_alive.mem_available_bytes as f64 + sys_alive.pcp_free_bytes as f64;
    let gain = |s: &SystemMemory| s.mem_available_bytes as f64 + s.pcp_free_bytes as f64 - base;
    let cmd_ns = mono_ns();
    match signal {
        Some(sig) => child.signal(sig)?,
        None => child.send_line("end")?,
    }
    let started = Instant::now();
    let timeout = Duration::from_millis(5000 + 40 * mib);
    let mut zombie: Option<(Instant, u64)> = None;
    let mut zombie_has_rss = None;
    let mut back_before_reap = None;
    let mut back_ns = None;
    let mut exit = None;
    loop {
        let now_ns = mono_ns();
        let sys = measure::system()?;
        if exit.is_none() && zombie.is_none() && procs::is_zombie(pid) {
            zombie = Some((Instant::now(), now_ns));
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            zombie_has_rss = Some(status.lines().any(|l| l.starts_with("VmRSS:")));
        }
        let ended = zombie.is_some() || exit.is_some();
        if ended && back_ns.is_none() && gain(&sys) >= RELEASE_FRACTION * expected {
            back_ns = Some(now_ns);
        }
        if exit.is_none() && zombie.is_some_and(|(z, _)| z.elapsed() >= ZOMBIE_HOLD) {
            back_before_reap = Some(100.0 * gain(&sys) / expected.max(1.0));
            exit = Some(child.wait()?);
        }
        if exit.is_some() && back_ns.is_some() {
            break;
        }
        if started.elapsed() > timeout {
            if exit.is_none() {
                let tail = child.stderr_tail();
                let _ = child.kill();
                return Err(Error::Failed(format!(
                    "{} exit.py --ending {ending}: did not end within {} ms; stderr: {tail}",
                    py.version,
                    timeout.as_millis()
                )));
            }
            break; // the memory never showed up in time (others on the machine took it)
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let exit = match exit {
        Some(e) => e,
        None => child.wait()?,
    };
    let mut end_ns = cmd_ns;
    while let Ok(Some(line)) = child.read_line() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v.get("event").and_then(|e| e.as_str()) == Some("ending")
            && let Some(ns) = v.get("mono_ns").and_then(|n| n.as_u64())
        {
            end_ns = ns;
        }
    }
    let since = |ns: u64| ((ns as f64 - end_ns as f64) / 1e6 * 100.0).round() / 100.0;
    Ok(Run {
        version: py.version.clone(),
        ending: ending.to_string(),
        objects,
        alive_rss_mib: measure::mib(alive.rss_bytes),
        alive_anon_mib: measure::mib(alive.anon_bytes),
        status: exit.status.to_string(),
        peak_rss_mib: measure::mib(exit.maxrss_bytes),
        end_to_zombie_ms: zombie.map(|(_, ns)| since(ns)),
        zombie_has_rss,
        back_before_reap_pct: back_before_reap.map(|p| (p * 10.0).round() / 10.0),
        end_to_back_ms: back_ns.map(since),
    })
}

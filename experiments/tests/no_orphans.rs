//! No process of a run outlives `arenalab`, whatever signal ends it and whenever it comes.
//!
//! Each trial starts the real `arenalab` binary on one pool scenario or one exit ending with a
//! unique `ARENALAB_TEST_RUN=<marker>` in its environment (every process it creates, at any
//! depth, inherits it), sends it SIGINT, SIGTERM, SIGHUP or SIGKILL after a delay (from "at once",
//! while the first children start, to the middle of the run), waits for it to end, waits two
//! seconds more, and then looks for the marker in `/proc/*/environ`: any live process still
//! carrying it is an orphan left behind. (A zombie has no environment left to read; its memory is
//! already back, and whoever inherited it reaps it.)
//!
//! Trials run a dozen at a time, since most of their time is the two-second wait.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The delays before the signal: every scenario sees three of them per signal and all six over
/// its four signals (the parent-killed scenarios, whose workers are started by a child of
/// arenalab, see all six with every signal).
const DELAYS_MS: [u64; 6] = [0, 30, 100, 200, 350, 600];
/// The signals sent to `arenalab`.
const SIGNALS: [(i32, &str); 4] = [
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGKILL, "SIGKILL"),
];
/// How long after `arenalab` ends every process of the run must be gone.
const SETTLE: Duration = Duration::from_secs(2);
/// Trials at once.
const PARALLEL: usize = 12;

struct Trial {
    args: Vec<String>,
    signal: (i32, &'static str),
    delay_ms: u64,
}

impl Trial {
    fn label(&self) -> String {
        format!("{} at {} ms: arenalab {}", self.signal.1, self.delay_ms, self.args.join(" "))
    }
}

/// How a trial went.
enum Outcome {
    /// The signal arrived while arenalab ran, and nothing was left.
    Hit,
    /// arenalab had already finished when the signal came (nothing to test).
    Missed,
}

fn trials() -> Vec<Trial> {
    let pool = [
        "open-idle",
        "shutdown-join",
        "drop-naive",
        "drop-correct",
        "parent-killed-none",
        "parent-killed-pdeathsig",
        "parent-killed-pipe",
    ]
    .map(|s| format!("pool --workers 2 --mib 4 --scenario {s}"));
    let exit = ["free-return", "return", "exit", "abort", "panic", "sigkill", "sigterm"]
        .map(|e| format!("exit --allocator system --ending {e} --mib 64 --repeats 4"));
    let mut out = Vec::new();
    for (i, cmd) in pool.iter().chain(exit.iter()).enumerate() {
        for (j, &signal) in SIGNALS.iter().enumerate() {
            let per_signal = if cmd.contains("parent-killed") { DELAYS_MS.len() } else { 3 };
            for k in 0..per_signal {
                let delay_ms = DELAYS_MS[(i + j + 2 * k + k / 3) % DELAYS_MS.len()];
                let args = cmd.split(' ').map(str::to_string).collect();
                out.push(Trial { args, signal, delay_ms });
            }
        }
    }
    out
}

/// Live processes whose environment carries `ARENALAB_TEST_RUN=<marker>`: (pid, command line).
fn processes_of(marker: &str) -> Vec<(i32, String)> {
    let needle = format!("ARENALAB_TEST_RUN={marker}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        if env.split(|&b| b == 0).any(|var| var == needle.as_bytes()) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            found.push((pid, cmd.trim().to_string()));
        }
    }
    found
}

fn run(trial: &Trial, marker: &str) -> Result<Outcome, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arenalab"))
        .args(&trial.args)
        .env("ARENALAB_TEST_RUN", marker)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting arenalab: {e}"))?;
    std::thread::sleep(Duration::from_millis(trial.delay_ms));
    let finished_before = child.try_wait().map_err(|e| e.to_string())?.is_some();
    // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
    unsafe { libc::kill(child.id() as i32, trial.signal.0) };
    let until = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return Err("arenalab did not end within 15 s of the signal".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(SETTLE);
    let left = processes_of(marker);
    for &(pid, _) in &left {
        // SAFETY: as above; the test cleans up what arenalab left.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    if !left.is_empty() {
        return Err(format!(
            "{} process(es) left {SETTLE:?} after arenalab ended: {left:?}",
            left.len()
        ));
    }
    use std::os::unix::process::ExitStatusExt;
    let by_signal =
        status.signal() == Some(trial.signal.0) || status.code() == Some(128 + trial.signal.0);
    if by_signal {
        Ok(Outcome::Hit)
    } else if finished_before || status.success() {
        Ok(Outcome::Missed)
    } else {
        Err(format!("arenalab ended with {status:?}, not by the signal"))
    }
}

#[test]
fn no_process_of_a_run_outlives_arenalab_on_any_signal() {
    let trials = trials();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let hits = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(trial) = trials.get(i) else { break };
                    let marker = format!("{}-{i}", std::process::id());
                    match run(trial, &marker) {
                        Ok(Outcome::Hit) => {
                            hits.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Outcome::Missed) => {}
                        Err(e) => failures.lock().unwrap().push(format!("{}: {e}", trial.label())),
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    let hits = hits.into_inner();
    eprintln!(
        "{} trials, {hits} signalled while arenalab ran, {} failed, in {:.1} s",
        trials.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} trials failed:\n{}",
        failures.len(),
        trials.len(),
        failures.join("\n")
    );
    // Most signals must land while arenalab runs, or the test would test nothing (the shortest
    // runs last about 0.4 s, so the later delays miss them).
    assert!(
        hits * 3 >= trials.len() * 2,
        "only {hits} of {} trials hit a running arenalab",
        trials.len()
    );
}

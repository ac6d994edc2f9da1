//! The clock the criterion benchmarks are timed with, chosen by `ARENALAB_BENCH_CLOCK`.
//!
//! Wall time counts everything that happens while a benchmark runs, including the minutes the
//! thread spends waiting for a core. On a 2-core machine shared with builds and other jobs that
//! moves absolute times (and, when the load changes between two contenders, ratios) by up to 4×.
//! **Thread CPU time** (`CLOCK_THREAD_CPUTIME_ID`) counts only the time the benchmark's thread
//! was running, in user and kernel mode: the allocator's page faults and `mmap`/`munmap` calls
//! are in it, being descheduled is not. It is what keeps ratios stable across rounds.
//!
//! | `ARENALAB_BENCH_CLOCK` | single-thread groups | `threads` group |
//! |---|---|---|
//! | unset, empty or `wall` (the default) | wall time (`CLOCK_MONOTONIC`) | wall time, from hand-over start to the last free |
//! | `thread-cpu` | `CLOCK_THREAD_CPUTIME_ID` | `CLOCK_PROCESS_CPUTIME_ID` around the whole round |
//!
//! The `threads` group cannot use one thread's CPU time: its work is split between two threads
//! and the timing thread's clock would miss the other's half. Under `thread-cpu` it is timed
//! with **process CPU time**, the sum over both threads (the benchmark process runs no other
//! thread while a benchmark is timed). That sum includes what the two threads spend waiting for
//! each other (64 spins, then `sched_yield`), so it is the CPU a round costs, not its latency,
//! and it includes starting the two threads and filling larson's working sets (once per
//! criterion sample, spread over its iterations).
//!
//! [`Clock`] is a criterion [`Measurement`] whose value is a [`Duration`], so criterion's own
//! time formatting applies and `bench-report` reads it like wall time. Each benchmark run appends
//! a line to [`LOG_NAME`] in criterion's folder ([`record`]): its start time and clocks, from
//! which `arenalab bench-report` tells, for every estimate it reads, which clock measured it.
//!
//! ```
//! use arenalab_benches::clock::Clock;
//! assert_eq!(Clock::parse("thread-cpu"), Ok(Clock::ThreadCpu));
//! assert_eq!(Clock::parse(""), Ok(Clock::Wall));
//! assert!(Clock::parse("cycles").is_err());
//! let c = Clock::ThreadCpu;
//! let t0 = c.now();
//! let mut x = 0u64;
//! for i in 0..100_000u64 { x = std::hint::black_box(x.wrapping_add(i)); }
//! assert!(c.now() > t0, "a thread that works accrues CPU time");
//! ```

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable that selects the clock.
pub const ENV: &str = "ARENALAB_BENCH_CLOCK";

/// The file in criterion's output folder where each run records its clocks, one line per run:
/// `<unix seconds at start> <clock> <threads-group clock>`.
pub const LOG_NAME: &str = "arenalab-clock.log";

/// What the benchmarks are timed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Elapsed real time (`CLOCK_MONOTONIC`, what `Instant` reads).
    Wall,
    /// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`); the `threads` group uses
    /// the process's CPU time instead.
    ThreadCpu,
}

impl Clock {
    /// Every clock, in the order `--help` texts list them.
    pub const ALL: [Clock; 2] = [Clock::Wall, Clock::ThreadCpu];

    /// The name `ARENALAB_BENCH_CLOCK` takes and the clock log records.
    pub const fn name(self) -> &'static str {
        match self {
            Clock::Wall => "wall",
            Clock::ThreadCpu => "thread-cpu",
        }
    }

    /// The name of the clock the `threads` group is timed with under this setting.
    pub const fn threads_name(self) -> &'static str {
        match self {
            Clock::Wall => "wall",
            Clock::ThreadCpu => "process-cpu",
        }
    }

    /// Parses a value of `ARENALAB_BENCH_CLOCK`; empty means the default, wall time.
    pub fn parse(value: &str) -> Result<Clock, String> {
        match value.trim() {
            "" => Ok(Clock::Wall),
            v => Clock::ALL.into_iter().find(|c| c.name() == v).ok_or_else(|| {
                format!(
                    "{ENV}={v:?} is not a clock: use {}",
                    Clock::ALL.map(|c| c.name()).join(" or ")
                )
            }),
        }
    }

    /// The clock `ARENALAB_BENCH_CLOCK` selects (wall time when it is unset).
    pub fn from_env() -> Result<Clock, String> {
        match std::env::var(ENV) {
            Ok(v) => Clock::parse(&v),
            Err(std::env::VarError::NotPresent) => Ok(Clock::Wall),
            Err(std::env::VarError::NotUnicode(v)) => Err(format!("{ENV}={v:?} is not a clock")),
        }
    }

    fn id(self) -> libc::clockid_t {
        match self {
            Clock::Wall => libc::CLOCK_MONOTONIC,
            Clock::ThreadCpu => libc::CLOCK_THREAD_CPUTIME_ID,
        }
    }

    /// The clock's reading now, from its own origin (only differences mean anything).
    #[inline]
    pub fn now(self) -> Duration {
        read(self.id())
    }

    /// Times one call of a `threads` benchmark body `f`, which returns its own wall time.
    ///
    /// Under [`Clock::Wall`] that wall time is the figure, as measured by `f` (from the start
    /// of the hand-over to the last free). Under [`Clock::ThreadCpu`] the figure is the
    /// process's CPU time around the whole call: both threads' work.
    pub fn threads(self, f: impl FnOnce() -> Duration) -> Duration {
        match self {
            Clock::Wall => f(),
            Clock::ThreadCpu => {
                let t0 = read(libc::CLOCK_PROCESS_CPUTIME_ID);
                f();
                read(libc::CLOCK_PROCESS_CPUTIME_ID).saturating_sub(t0)
            }
        }
    }
}

/// Reads clock `id` (`clock_gettime`).
fn read(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live, writable timespec; `id` is one of the clocks Linux always has
    // (monotonic, this thread's and this process's CPU time), so the call only writes `ts`.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime({id}) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// criterion's wall-time measurement, kept only for its formatter (nanoseconds to ns/µs/ms/s).
static WALL: WallTime = WallTime;

impl Measurement for Clock {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        self.now()
    }

    fn end(&self, start: Duration) -> Duration {
        self.now().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Both clocks count nanoseconds, so criterion's duration formatting is the right one.
        WALL.formatter()
    }
}

/// criterion's output folder, found the way criterion finds it: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else `criterion/` in the target folder this benchmark
/// binary was built into (`<target>/release/deps/allocators-…`).
pub fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(home));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(target).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// Appends this run's line to `dir/`[`LOG_NAME`]: the start time (unix seconds) and the clocks.
pub fn record(clock: Clock, dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(LOG_NAME);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
    writeln!(f, "{secs} {} {}", clock.name(), clock.threads_name())?;
    Ok(path)
}

/// The clock for a benchmark run: read from the environment (a bad value is a message on
/// stderr and exit code 2) and recorded in criterion's folder (a failure to record is a
/// warning: the figures are still good, `bench-report` will say their clock is not recorded).
pub fn for_bench_run() -> Clock {
    let clock = Clock::from_env().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    match criterion_dir().map(|d| record(clock, &d)) {
        Some(Ok(_)) => {}
        Some(Err(e)) => eprintln!("warning: could not record the clock in {LOG_NAME}: {e}"),
        None => eprintln!("warning: criterion's folder not found: the clock is not recorded"),
    }
    eprintln!(
        "timing with the {} clock (threads group: {}); set {ENV}=thread-cpu or wall to choose",
        clock.name(),
        clock.threads_name()
    );
    clock
}

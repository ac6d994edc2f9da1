//! The `exit` experiment: memory given back when a process ends, however it ends.
//!
//! Whatever an allocator keeps after `free`, the kernel takes every page back when the process
//! ends: `exit_mm` tears down the address space before the process becomes a zombie, so a dead
//! child that nobody has reaped yet holds no memory (its `/proc/PID/status` has no `VmRSS` line
//! any more). How the process ends changes only what happens *before* that: `free`ing a million
//! objects one by one (returning from `main` after freeing, or an unhandled panic whose unwinding
//! runs the destructors) costs time the kernel's teardown does not, while `exit`, `abort`,
//! SIGKILL and SIGTERM skip the program's own cleanup entirely.
//!
//! For each allocator and ending, a fresh child (`arenalab worker exit`, [`worker`]) allocates
//! `--mib` MiB of small objects through [`lineup::Allocator::global`], writes every byte, reports
//! its own accounting and waits. The parent then reads the child's memory (`/proc/PID`), ends it
//! (a line on stdin, or a signal), and samples every millisecond: the system's `MemAvailable`,
//! the free pages parked on per-CPU lists (`/proc/zoneinfo` pagesets), the child's state and
//! `VmRSS`. When the child turns into a zombie the parent reads its status and `MemAvailable`
//! *before* reaping it, holds it unreaped a little longer, then reaps it with `wait4` (whose
//! `ru_maxrss` is the child's peak).
//!
//! **When is the memory back?** `MemAvailable` lags a large release: freed pages first land on
//! per-CPU free lists, which `MemFree` (and so `MemAvailable`) does not count until they drain
//! to the buddy allocator. Each run therefore records two times from the end (the signal, or the
//! child's last word before it ended by itself): `MemAvailable` alone recovering 90 % of the
//! child's anonymous memory, and `MemAvailable` plus the per-CPU free pages doing so (the
//! accounted figure; see [`RELEASE_RULE`]). On a shared machine other processes move these
//! system-wide figures, so the child's own accounting (its RSS while alive, its peak, its
//! zombie status) is reported beside them.
//!
//! | function | does |
//! | --- | --- |
//! | [`measure()`] | validates [`ExitArgs`], runs every cell `--repeats` times, returns [`ExitResults`] |
//! | [`run()`] | `arenalab exit`: `measure`, then a table or `--json` |
//! | [`worker::run_worker`] | `arenalab worker exit`: the child |
//! | [`render()`] | `docs/process-exit.md` and its SVG timelines, from saved results only |

pub(crate) mod page;
pub mod worker;

use crate::error::{Error, Result};
use crate::measure::{self, ProcessMemory, SystemMemory};
use crate::procs::{self, Spawn};
use crate::results::Meta;
use lineup::Allocator;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use worker::Report;

pub use page::render;
pub use worker::{WorkerArgs, run_worker};

/// Default size of the child's objects, in MiB.
pub const DEFAULT_MIB: u64 = 256;
/// Smallest `--mib`: below it the system-wide figures cannot resolve a child's release.
///
/// A run decides "memory is back" from `MemAvailable` plus the per-CPU free pages, figures of the
/// whole machine that other processes move too. Sampled every millisecond for 60 s on the 2-core
/// machine of docs/ while other builds ran (load about 6), their sum moved within 50 ms (about
/// the time from a 256 MiB child's end to its zombie) by a median of 5 MiB, 18 MiB at the 90th
/// percentile and 76 MiB at the 99th. With `--mib 8` or `16` that noise is a third to a half of
/// the child, and "back before reap" read anything from −266 % to +539 %; at 64 MiB the median
/// noise is under a tenth of the child, the margin the 90 % rule ([`RELEASE_FRACTION`]) leaves.
pub const MIN_MIB: u64 = 64;
/// Default repeats of each (allocator, ending) cell.
pub const DEFAULT_REPEATS: usize = 3;
/// Fraction of the child's anonymous memory that must show up again as available.
pub const RELEASE_FRACTION: f64 = 0.9;
/// How the release time is decided, as the results and the page state it.
pub const RELEASE_RULE: &str = "memory is back when MemAvailable plus the free pages on per-CPU \
    lists (/proc/zoneinfo pagesets) has risen by 90% of the child's anonymous memory (its \
    smaps_rollup while alive) above its value while the child was alive: the per-CPU lists are \
    accounted for, not waited out (raw MemAvailable can take seconds to follow; the share it \
    showed when sampling stopped, 25 ms later, is given beside). Times are from the end (the \
    signal, or the child's last word before ending by itself), sampled every ~1 ms";
/// How long a zombie is left unreaped, so `MemAvailable` can be read while it exists.
const ZOMBIE_HOLD: Duration = Duration::from_millis(20);
/// How long sampling goes on after the accounted release is found, for the timeline's tail.
const TAIL: Duration = Duration::from_millis(25);
/// Timeline points kept per run (the first repeat of each cell only).
const MAX_POINTS: usize = 100;

/// How the child process ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Ending {
    /// Frees every object, then returns from `main` (exit status 0).
    FreeReturn,
    /// Returns from `main` without freeing (the objects are leaked; exit status 0).
    Return,
    /// `std::process::exit(0)` with the objects live: no destructor runs.
    Exit,
    /// `std::process::abort()`: SIGABRT, no cleanup at all.
    Abort,
    /// An unhandled panic: unwinding runs the destructors (freeing every object), exit status 101.
    Panic,
    /// SIGKILL from the parent.
    Sigkill,
    /// SIGTERM from the parent (default action: terminate; no handler runs).
    Sigterm,
}

impl Ending {
    /// Every ending, in table order.
    pub const ALL: [Ending; 7] = [
        Ending::FreeReturn,
        Ending::Return,
        Ending::Exit,
        Ending::Abort,
        Ending::Panic,
        Ending::Sigkill,
        Ending::Sigterm,
    ];

    /// The command-line name.
    pub const fn name(self) -> &'static str {
        match self {
            Ending::FreeReturn => "free-return",
            Ending::Return => "return",
            Ending::Exit => "exit",
            Ending::Abort => "abort",
            Ending::Panic => "panic",
            Ending::Sigkill => "sigkill",
            Ending::Sigterm => "sigterm",
        }
    }

    /// The signal the parent sends, for the endings that are signals.
    pub const fn signal(self) -> Option<i32> {
        match self {
            Ending::Sigkill => Some(libc::SIGKILL),
            Ending::Sigterm => Some(libc::SIGTERM),
            _ => None,
        }
    }
}

/// Arguments of `arenalab exit`. `Default` equals the command-line defaults.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct ExitArgs {
    /// Allocator to test (repeatable): system, mimalloc, jemalloc, pymalloc. Default: all.
    #[arg(long = "allocator", value_name = "A",
        value_parser = crate::cli::choice("--allocator", &Allocator::ALL, Allocator::name))]
    pub allocators: Vec<Allocator>,
    /// How the child ends (repeatable). Default: all seven.
    #[arg(long = "ending", value_name = "E",
        value_parser = crate::cli::choice("--ending", &Ending::ALL, Ending::name))]
    pub endings: Vec<Ending>,
    /// MiB of small objects each child allocates and writes.
    #[arg(long, value_name = "M", default_value_t = DEFAULT_MIB, allow_negative_numbers = true,
        value_parser = crate::cli::whole::<u64>("--mib", MIN_MIB, None))]
    pub mib: u64,
    /// Runs of each (allocator, ending) cell; the table shows median and range.
    #[arg(long, value_name = "R", default_value_t = DEFAULT_REPEATS, allow_negative_numbers = true,
        value_parser = crate::cli::whole::<usize>("--repeats", 1, None))]
    pub repeats: usize,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Default for ExitArgs {
    fn default() -> Self {
        ExitArgs {
            allocators: Vec::new(),
            endings: Vec::new(),
            mib: DEFAULT_MIB,
            repeats: DEFAULT_REPEATS,
            json: false,
        }
    }
}

impl ExitArgs {
    /// The allocators to run: those given, or all.
    pub fn allocators(&self) -> Vec<Allocator> {
        if self.allocators.is_empty() { Allocator::ALL.to_vec() } else { dedup(&self.allocators) }
    }
    /// The endings to run: those given, or all.
    pub fn endings(&self) -> Vec<Ending> {
        if self.endings.is_empty() { Ending::ALL.to_vec() } else { dedup(&self.endings) }
    }
}

fn dedup<T: PartialEq + Copy>(v: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for &x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// Everything `arenalab exit` measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExitResults {
    /// Command, machine and date.
    pub meta: Meta,
    /// MiB each child allocated.
    pub mib: u64,
    /// Runs per cell.
    pub repeats: usize,
    /// How "memory is back" was decided ([`RELEASE_RULE`]).
    pub release_rule: String,
    /// Wall time of the whole measurement, seconds.
    pub elapsed_s: f64,
    /// The transparent-huge-page mode in force (`/sys/kernel/mm/transparent_hugepage/enabled`,
    /// the bracketed word: `always`, `madvise` or `never`).
    pub thp_mode: String,
    /// One per (allocator, ending).
    pub cells: Vec<Cell>,
}

/// The runs of one (allocator, ending) and their summary.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    /// The allocator under test.
    pub allocator: Allocator,
    /// How the child ended.
    pub ending: Ending,
    /// Median and range over the runs.
    pub summary: Summary,
    /// Every run; the first carries a timeline.
    pub runs: Vec<Run>,
}

/// Median, smallest and largest of one figure over the runs of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// Runs that had a value (a release never seen leaves a run out).
    pub n: usize,
}

impl Spread {
    /// The spread of the values present; `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = Option<f64>>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().flatten().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Spread { median, min: v[0], max: v[n - 1], n })
    }
}

/// The summary of a cell (MiB and milliseconds).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// The child's RSS while alive (parent's read of smaps_rollup), MiB.
    pub alive_rss_mib: Option<Spread>,
    /// Of the alive RSS, MiB on transparent huge pages.
    pub alive_huge_mib: Option<Spread>,
    /// The child's peak RSS (`ru_maxrss` from `wait4`), MiB.
    pub peak_rss_mib: Option<Spread>,
    /// End → the child seen as a zombie, ms.
    pub exit_ms: Option<Spread>,
    /// End → MemAvailable recovered, ms.
    pub release_raw_ms: Option<Spread>,
    /// End → MemAvailable + per-CPU free pages recovered, ms.
    pub release_accounted_ms: Option<Spread>,
    /// Share of the child's anonymous memory already available again while it was an unreaped
    /// zombie (accounted figure), percent.
    pub recovered_before_reap_pct: Option<Spread>,
    /// Share raw MemAvailable showed again when sampling stopped, percent.
    pub raw_at_stop_pct: Option<Spread>,
    /// The zombie's VmRSS, MiB (0 where the line was absent, as it is for a zombie).
    pub zombie_rss_mib: Option<Spread>,
    /// MemAvailable after the run minus before the child started, MiB (noise on a shared
    /// machine shows here).
    pub avail_after_minus_before_mib: Option<Spread>,
}

/// One child's life, as both sides saw it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    /// What the child said when everything was allocated (its own accounting).
    pub ready: Report,
    /// What the child said after freeing (`free-return` only).
    pub freed: Option<Report>,
    /// The child's memory read by the parent while it was alive and waiting.
    pub alive: ProcessMemory,
    /// Of that, anonymous memory on transparent huge pages (`AnonHugePages` of smaps_rollup),
    /// bytes: 2 MiB pages are torn down 512 times faster per byte than 4 KiB ones.
    pub alive_huge_bytes: u64,
    /// The machine before the child started.
    pub system_before: SystemMemory,
    /// The machine while the child was alive.
    pub system_alive: SystemMemory,
    /// The machine while the child was an unreaped zombie (`None` if no zombie was seen).
    pub system_zombie: Option<SystemMemory>,
    /// The machine at the end of sampling.
    pub system_after: SystemMemory,
    /// How it ended.
    pub status: procs::ExitStatus,
    /// `ru_maxrss` from `wait4`, bytes.
    pub peak_rss_bytes: u64,
    /// Whether the child was seen as a zombie before it was reaped.
    pub zombie_seen: bool,
    /// The zombie's `VmRSS` in bytes, or `None` when its status had no `VmRSS` line.
    pub zombie_vm_rss_bytes: Option<u64>,
    /// The zombie's `/proc/PID/status` lines about memory (`Vm*`, `Rss*`), verbatim.
    pub zombie_status_lines: Vec<String>,
    /// End → zombie seen, ms.
    pub exit_ms: Option<f64>,
    /// End → raw MemAvailable recovered, ms.
    pub release_raw_ms: Option<f64>,
    /// End → MemAvailable + per-CPU free pages recovered, ms.
    pub release_accounted_ms: Option<f64>,
    /// End → reaped, ms.
    pub reap_ms: Option<f64>,
    /// Share of the child's anonymous memory available again (accounted) when it was reaped.
    pub recovered_before_reap: Option<f64>,
    /// Share of the child's anonymous memory raw MemAvailable showed again when sampling
    /// stopped (the rest was still on per-CPU free lists, or taken by someone else).
    pub raw_recovered_at_stop: Option<f64>,
    /// Samples around the end (first run of each cell only).
    pub timeline: Vec<Sample>,
}

/// One sample of the timeline, relative to the end.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Milliseconds since the end (negative: before it).
    pub t_ms: f64,
    /// MemAvailable minus its value while the child was alive, MiB.
    pub avail_gain_mib: f64,
    /// Free pages on per-CPU lists minus their amount while the child was alive, MiB.
    pub pcp_gain_mib: f64,
    /// The child's VmRSS, MiB (`None` once it is a zombie or gone).
    pub child_rss_mib: Option<f64>,
    /// The child's state letter (`R`, `S`, `Z`; `-` once reaped).
    pub state: char,
}

/// `CLOCK_MONOTONIC` in nanoseconds, the clock parent and child share.
pub fn mono_ns() -> u64 {
    // SAFETY: an all-zero timespec is a valid value of this plain C struct.
    let mut ts: libc::timespec = unsafe { core::mem::zeroed() };
    // SAFETY: the pointer is to a live local of the right type.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Checks the arguments against each other and the machine; a problem is [`Error::Usage`].
pub fn validate(args: &ExitArgs) -> Result<()> {
    crate::cli::check_range("--repeats", args.repeats, 1, None)?;
    crate::cli::check_range("--mib", args.mib, MIN_MIB, None)?;
    crate::fit::check_fits(args.mib, 1)
}

/// Runs every cell and returns the results. Shows a progress bar on a terminal.
pub fn measure(args: &ExitArgs) -> Result<ExitResults> {
    validate(args)?;
    let started = Instant::now();
    let allocators = args.allocators();
    let endings = args.endings();
    let bar = indicatif::ProgressBar::new((allocators.len() * endings.len() * args.repeats) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("exit {bar:30} {pos}/{len} {msg}")
            .expect("static template"),
    );
    let mut cells = Vec::new();
    for &allocator in &allocators {
        for &ending in &endings {
            let mut runs = Vec::with_capacity(args.repeats);
            for r in 0..args.repeats {
                bar.set_message(format!("{allocator} {}", ending.name()));
                runs.push(one_run(allocator, ending, args.mib, r == 0)?);
                bar.inc(1);
            }
            cells.push(Cell { allocator, ending, summary: summarize(&runs), runs });
        }
    }
    bar.finish_and_clear();
    Ok(ExitResults {
        meta: Meta::collect(&command_line(args)),
        mib: args.mib,
        repeats: args.repeats,
        release_rule: RELEASE_RULE.to_string(),
        elapsed_s: started.elapsed().as_secs_f64(),
        thp_mode: thp_mode(),
        cells,
    })
}

/// The bracketed word of `/sys/kernel/mm/transparent_hugepage/enabled`, or `unknown`.
fn thp_mode() -> String {
    let text =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .unwrap_or("unknown")
        .to_string()
}

/// The command that reproduces this run.
fn command_line(args: &ExitArgs) -> String {
    let mut s = "arenalab exit".to_string();
    for a in &args.allocators {
        s.push_str(&format!(" --allocator {a}"));
    }
    for e in &args.endings {
        s.push_str(&format!(" --ending {}", e.name()));
    }
    if args.mib != DEFAULT_MIB {
        s.push_str(&format!(" --mib {}", args.mib));
    }
    if args.repeats != DEFAULT_REPEATS {
        s.push_str(&format!(" --repeats {}", args.repeats));
    }
    s
}

/// Two decimals are plenty for a timeline point and keep the results file small.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn mib(bytes: u64) -> f64 {
    measure::mib(bytes)
}

fn summarize(runs: &[Run]) -> Summary {
    let f = |g: &dyn Fn(&Run) -> Option<f64>| Spread::of(runs.iter().map(g));
    Summary {
        alive_rss_mib: f(&|r| Some(mib(r.alive.rss_bytes))),
        alive_huge_mib: f(&|r| Some(mib(r.alive_huge_bytes))),
        peak_rss_mib: f(&|r| Some(mib(r.peak_rss_bytes))),
        exit_ms: f(&|r| r.exit_ms),
        release_raw_ms: f(&|r| r.release_raw_ms),
        release_accounted_ms: f(&|r| r.release_accounted_ms),
        recovered_before_reap_pct: f(&|r| r.recovered_before_reap.map(|x| 100.0 * x)),
        raw_at_stop_pct: f(&|r| r.raw_recovered_at_stop.map(|x| 100.0 * x)),
        zombie_rss_mib: f(&|r| r.zombie_seen.then(|| mib(r.zombie_vm_rss_bytes.unwrap_or(0)))),
        avail_after_minus_before_mib: f(&|r| {
            Some(measure::mib_above(
                r.system_after.mem_available_bytes,
                r.system_before.mem_available_bytes,
            ))
        }),
    }
}

/// The zombie's memory lines of `/proc/PID/status` and its VmRSS, if the line is there.
fn zombie_status(pid: i32) -> (Vec<String>, Option<u64>) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("Vm") || l.starts_with("Rss") || l.starts_with("State"))
        .map(str::to_string)
        .collect();
    (lines, vm_rss(&text))
}

fn vm_rss(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| {
        v.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kib| kib * 1024)
    })
}

/// `AnonHugePages` of `/proc/PID/smaps_rollup` in bytes (0 when absent).
fn anon_huge(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The child's VmRSS now (`None` when it has none: a zombie, or gone).
fn child_rss(pid: i32) -> Option<u64> {
    vm_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// A raw sample before it is placed relative to the end.
struct Raw {
    at_ns: u64,
    sys: SystemMemory,
    child_rss: Option<u64>,
    state: char,
}

/// One child: start, measure alive, end, sample until the memory is back, reap.
fn one_run(allocator: Allocator, ending: Ending, mib_: u64, keep_timeline: bool) -> Result<Run> {
    let system_before = measure::system()?;
    let mut child = Spawn::worker("exit")
        .args(["--allocator", allocator.name(), "--ending", ending.name()])
        .args(["--mib", &mib_.to_string()])
        // A panic ending should cost what a panic costs, not a backtrace's symbolisation.
        .env("RUST_BACKTRACE", "0")
        .spawn()?;
    let pid = child.pid();
    let ready: Report = child.read_json()?;
    let alive = measure::process(pid)?;
    let alive_huge_bytes = anon_huge(pid);
    let system_alive = measure::system()?;
    let expected = alive.anon_bytes as f64;
    let base_raw = system_alive.mem_available_bytes as f64;
    let base_acc = base_raw + system_alive.pcp_free_bytes as f64;
    let raw_gain = |s: &SystemMemory| s.mem_available_bytes as f64 - base_raw;
    let acc_gain =
        |s: &SystemMemory| s.mem_available_bytes as f64 + s.pcp_free_bytes as f64 - base_acc;

    // A few samples of the living child, so the timeline starts before the end.
    let mut raws: Vec<Raw> = Vec::new();
    if keep_timeline {
        for _ in 0..5 {
            raws.push(Raw {
                at_ns: mono_ns(),
                sys: measure::system()?,
                child_rss: child_rss(pid),
                state: procs::state(pid).unwrap_or('?'),
            });
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // The end, for the signal endings; for the others the child's own word replaces it below.
    let cmd_ns = mono_ns();
    match ending.signal() {
        Some(sig) => child.signal(sig)?,
        None => child.send_line("end")?,
    }
    let timeout = Duration::from_millis(3000 + 20 * mib_);
    let started = Instant::now();
    let mut zombie_at: Option<Instant> = None;
    let mut zombie_ns = None;
    let mut system_zombie = None;
    let mut zombie_lines = Vec::new();
    let mut zombie_vm_rss = None;
    let mut exit = None;
    let mut reap_ns = None;
    let mut recovered_before_reap = None;
    let mut raw_ns = None;
    let mut acc_ns = None;
    let mut done_at: Option<Instant> = None;
    let mut reaped_at: Option<Instant> = None;
    loop {
        let at_ns = mono_ns();
        let sys = measure::system()?;
        let state = if exit.is_some() { '-' } else { procs::state(pid).unwrap_or('?') };
        // Reading /proc/PID/status pins the child's mm for a moment (the kernel takes a
        // reference), which could move its teardown into our context: only the run that keeps a
        // timeline reads it.
        let rss =
            if !keep_timeline || exit.is_some() || state == 'Z' { None } else { child_rss(pid) };
        if state == 'Z' && zombie_at.is_none() {
            zombie_at = Some(Instant::now());
            zombie_ns = Some(at_ns);
            let (lines, vm) = zombie_status(pid);
            zombie_lines = lines;
            zombie_vm_rss = vm;
            system_zombie = Some(measure::system()?);
        }
        let gained_raw = raw_gain(&sys) >= RELEASE_FRACTION * expected;
        let gained_acc = acc_gain(&sys) >= RELEASE_FRACTION * expected;
        // A release only counts once the child has ended (a child that frees may return much
        // of its memory while still running; that shows in the timeline, not in these times).
        let ended = zombie_at.is_some() || exit.is_some();
        if ended && gained_raw && raw_ns.is_none() {
            raw_ns = Some(at_ns);
        }
        if ended && gained_acc && acc_ns.is_none() {
            acc_ns = Some(at_ns);
        }
        if exit.is_none() && zombie_at.is_some_and(|z| z.elapsed() >= ZOMBIE_HOLD) {
            recovered_before_reap = Some(acc_gain(&sys) / expected.max(1.0));
            exit = Some(child.wait()?);
            reap_ns = Some(mono_ns());
            reaped_at = Some(Instant::now());
        }
        raws.push(Raw { at_ns, sys, child_rss: rss, state });
        // Stop once the child is reaped and the accounted figure is back. Raw MemAvailable may
        // take seconds more (until the per-CPU lists drain); its share so far is recorded.
        if exit.is_some() && acc_ns.is_some() {
            let d = *done_at.get_or_insert_with(Instant::now);
            if d.elapsed() >= TAIL {
                break;
            }
        }
        // Reaped a second ago and the memory still has not shown up: something else on the
        // machine took it (or less came back than expected); stop rather than wait it out.
        if reaped_at.is_some_and(|r| r.elapsed() > Duration::from_secs(1)) {
            break;
        }
        if started.elapsed() > timeout {
            if exit.is_none() {
                // The child never ended: kill it and report the failure.
                let tail = child.stderr_tail();
                let _ = child.kill();
                return Err(Error::Failed(format!(
                    "{allocator} {}: the child did not end within {} ms; stderr: {tail}",
                    ending.name(),
                    timeout.as_millis()
                )));
            }
            // The memory never showed up again in time (noise from other processes, or less
            // came back than expected): the release times stay unknown.
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let exit = match exit {
        Some(e) => e,
        None => child.wait()?,
    };
    let system_after = measure::system()?;
    let raw_at_stop = raws.last().map(|r| raw_gain(&r.sys) / expected.max(1.0));
    // The child's remaining lines: `freed` (free-return) and `ending` (self-endings).
    let mut freed = None;
    let mut ending_ns = None;
    while let Ok(Some(line)) = child.read_line() {
        match serde_json::from_str::<Report>(&line) {
            Ok(r @ Report::Freed { .. }) => freed = Some(r),
            Ok(Report::Ending { mono_ns }) => ending_ns = Some(mono_ns),
            _ => {}
        }
    }
    let end_ns = if ending.signal().is_some() { cmd_ns } else { ending_ns.unwrap_or(cmd_ns) };
    let since_end = |ns: u64| (ns as f64 - end_ns as f64) / 1e6;
    let timeline = if keep_timeline {
        let step = raws.len().div_ceil(MAX_POINTS).max(1);
        raws.iter()
            .step_by(step)
            .map(|r| Sample {
                t_ms: round2(since_end(r.at_ns)),
                avail_gain_mib: round2(raw_gain(&r.sys) / (1u64 << 20) as f64),
                pcp_gain_mib: round2(
                    (r.sys.pcp_free_bytes as f64 - system_alive.pcp_free_bytes as f64)
                        / (1u64 << 20) as f64,
                ),
                child_rss_mib: r.child_rss.map(|b| round2(mib(b))),
                state: r.state,
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Run {
        ready,
        freed,
        alive,
        alive_huge_bytes,
        system_before,
        system_alive,
        system_zombie,
        system_after,
        status: exit.status,
        peak_rss_bytes: exit.maxrss_bytes,
        zombie_seen: zombie_ns.is_some(),
        zombie_vm_rss_bytes: zombie_vm_rss,
        zombie_status_lines: zombie_lines,
        exit_ms: zombie_ns.map(since_end),
        release_raw_ms: raw_ns.map(since_end),
        release_accounted_ms: acc_ns.map(since_end),
        reap_ms: reap_ns.map(since_end),
        recovered_before_reap,
        raw_recovered_at_stop: raw_at_stop,
        timeline,
    })
}

/// `median (min–max)` with one decimal, or `-`.
pub fn spread_text(s: &Option<Spread>) -> String {
    // Rounded before printing and `+ 0.0`, so a tiny negative value never prints as "-0.0".
    let f = |v: f64| format!("{:.1}", (v * 10.0).round() / 10.0 + 0.0);
    match s {
        None => "-".into(),
        Some(s) if s.n == 1 || f(s.min) == f(s.max) => f(s.median),
        Some(s) => format!("{} ({}–{})", f(s.median), f(s.min), f(s.max)),
    }
}

/// Whether a run's system-wide figures can resolve its child: the machine's available memory
/// (with the per-CPU free pages) must have moved by less than the release rule's margin,
/// `1 - RELEASE_FRACTION` of the child's anonymous memory, between before the child started and
/// after it was reaped. When it moved more, other activity on the machine was as large as the
/// effect measured, and the system-wide columns of that run mean little.
pub fn resolved(run: &Run) -> bool {
    let acc = |s: &SystemMemory| s.mem_available_bytes as f64 + s.pcp_free_bytes as f64;
    let drift = (acc(&run.system_after) - acc(&run.system_before)).abs();
    drift <= (1.0 - RELEASE_FRACTION) * run.alive.anon_bytes as f64
}

/// The note of a cell: runs that did not meet the release rule, and runs the system-wide
/// figures could not resolve ([`resolved`]); empty when every run is clean.
pub fn cell_note(c: &Cell) -> String {
    let m = c.runs.len();
    let unmet = c.runs.iter().filter(|r| r.release_accounted_ms.is_none()).count();
    let noisy = c.runs.iter().filter(|r| !resolved(r)).count();
    let mut notes = Vec::new();
    if unmet > 0 {
        notes.push(format!("† rule unmet in {unmet} of {m}"));
    }
    if noisy > 0 {
        notes.push(format!("≈ noisy in {noisy} of {m}"));
    }
    notes.join("; ")
}

/// How the runs of a results file split: seen back at the first zombie sample (within 1 ms),
/// back later, never seen back (the release rule unmet), and reaped before any sample showed
/// a zombie. The four add up to every run.
pub fn run_counts(results: &ExitResults) -> [usize; 4] {
    let mut n = [0; 4];
    for run in results.cells.iter().flat_map(|c| &c.runs) {
        let k = match (run.exit_ms, run.release_accounted_ms) {
            (None, _) => 3,
            (Some(_), None) => 2,
            (Some(z), Some(b)) if b <= z + 1.0 => 0,
            (Some(_), Some(_)) => 1,
        };
        n[k] += 1;
    }
    n
}

/// The table's header and rows (terminal and page share them). A figure taken over fewer runs
/// than the cell has says so (`[2 of 3]`), and the last column notes runs that failed the
/// release rule or that the system-wide figures could not resolve ([`cell_note`]).
pub fn table(results: &ExitResults) -> (Vec<String>, Vec<Vec<String>>) {
    let header = [
        "allocator",
        "ending",
        "status",
        "alive RSS MiB",
        "on huge pages MiB",
        "peak MiB",
        "end→zombie ms",
        "end→back ms",
        "MemAvailable alone %",
        "zombie VmRSS MiB",
        "back before reap %",
        "note",
    ]
    .map(str::to_string)
    .to_vec();
    let rows = results
        .cells
        .iter()
        .map(|c| {
            let s = &c.summary;
            let m = c.runs.len();
            let of = |x: &Option<Spread>| match x {
                Some(sp) if sp.n < m => format!("{} [{} of {m}]", spread_text(x), sp.n),
                _ => spread_text(x),
            };
            let statuses: Vec<String> =
                c.runs.iter().map(|r| r.status.to_string()).fold(Vec::new(), |mut v, st| {
                    if !v.contains(&st) {
                        v.push(st);
                    }
                    v
                });
            vec![
                c.allocator.to_string(),
                c.ending.name().to_string(),
                if statuses.is_empty() { "-".into() } else { statuses.join(", ") },
                of(&s.alive_rss_mib),
                of(&s.alive_huge_mib),
                of(&s.peak_rss_mib),
                of(&s.exit_ms),
                of(&s.release_accounted_ms),
                of(&s.raw_at_stop_pct),
                of(&s.zombie_rss_mib),
                of(&s.recovered_before_reap_pct),
                cell_note(c),
            ]
        })
        .collect();
    (header, rows)
}

/// Runs `arenalab exit`.
pub fn run(args: &ExitArgs) -> Result<()> {
    let results = measure(args)?;
    if args.json {
        print!("{}", crate::results::to_json(&results)?);
        return Ok(());
    }
    let (header, rows) = table(&results);
    println!(
        "Process exit: {} MiB of small objects per child, {} run(s) per cell, median (range).",
        results.mib, results.repeats
    );
    print!("{}", crate::render::text_table(&header, &rows));
    println!("Release rule: {}.", results.release_rule);
    println!(
        "Note: † runs that never met the release rule; ≈ runs whose machine-wide memory moved by \
         more than {:.0} % of the child's memory (too noisy to resolve at this size).",
        (1.0 - RELEASE_FRACTION) * 100.0
    );
    println!("Measured in {:.1} s.", results.elapsed_s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ExitArgs,
    }

    #[test]
    fn default_equals_the_command_line_defaults() {
        assert_eq!(Cli::parse_from(["exit"]).args, ExitArgs::default());
    }

    #[test]
    fn spreads_take_median_and_range_of_present_values() {
        let s = Spread::of([Some(3.0), None, Some(1.0), Some(2.0)]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Spread::of([Some(1.0), Some(4.0)]).unwrap().median, 2.5);
        assert_eq!(Spread::of([None]), None);
    }

    #[test]
    fn zombie_status_without_vm_rss_reads_as_none() {
        assert_eq!(vm_rss("Name:\tx\nState:\tZ (zombie)\nThreads:\t1\n"), None);
        assert_eq!(vm_rss("VmRSS:\t  2048 kB\n"), Some(2 << 20));
    }
}

//! `arenalab bench-report`: criterion's results to `docs/benchmarks.md`.
//!
//! `cargo bench` (the `arenalab-benches` crate) leaves one folder per benchmark under
//! `<target>/criterion/`, each with `new/benchmark.json` (the id: group, `pattern/allocator`,
//! size, and the throughput in elements) and `new/estimates.json` (criterion's statistics of the
//! time per iteration, in nanoseconds). This module does two separate things:
//!
//! * [`collect`] reads those files into [`BenchResults`]: one [`Benchmark`] per id, with the
//!   **median** time per operation (per element of throughput) and its 95 % confidence interval.
//!   The median, not the mean, because the benchmark machine has two cores shared with other
//!   work, and a median shrugs off the samples a neighbour's burst spoils. The results are saved
//!   as `docs/results/benchmarks.json`.
//! * [`render()`] reads only those results and writes the page: a table per group, each time also
//!   given as a ratio to mimalloc (ratios from one run are what survives a noisy machine) and,
//!   where CPython's real obmalloc was measured, a second table of the pymalloc rows as ratios to
//!   it; an SVG chart per group; the **Targets** section, the model against the real obmalloc
//!   ([`obmalloc_targets`]); and the older targets against mimalloc and jemalloc ([`targets`]).
//!   Every verdict is computed from the figures, never typed in; with no obmalloc figures the
//!   targets that need them read "not measured". Sections that other modules compute from their
//!   own results (instruction counts, RSS) are appended in one place, [`appended_sections`].

use crate::error::{Error, Result};
use crate::render::{self, chart};
use crate::results::{self, Meta};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The name of the results file: `docs/results/benchmarks.json`.
pub const RESULTS_NAME: &str = "benchmarks";

/// The allocator every ratio is taken against.
pub const BASELINE: &str = "mimalloc";

/// The direct, unlocked pymalloc heap's name in benchmark ids.
pub const HEAP: &str = "pymalloc-heap";

/// The thread-safe pymalloc global's name in benchmark ids.
pub const GLOBAL: &str = "pymalloc";

/// The pymalloc heap whose emptied arenas stay mapped in a cache (not CPython's behaviour).
pub const CACHED_HEAP: &str = "pymalloc-heap-cached";

/// The pymalloc heap holding one live block per size class (warm, like an initialised
/// interpreter's); measured in `size` only.
pub const WARM_HEAP: &str = "pymalloc-heap-warm";
/// The global `pymalloc` holding one live block per size class (in `size` only).
pub const WARM_GLOBAL: &str = "pymalloc-warm";

/// CPython's real obmalloc is named this followed by `major.minor`: `cpython-obmalloc-3.11`.
pub const OBMALLOC_PREFIX: &str = "cpython-obmalloc-";

/// Allocators in the order tables and charts show them (the real obmallocs come last, oldest
/// version first).
const ALLOCATOR_ORDER: [&str; 8] =
    ["system", "mimalloc", "jemalloc", GLOBAL, WARM_GLOBAL, HEAP, WARM_HEAP, CACHED_HEAP];

/// The single-threaded groups, where every `Heap` and the real obmalloc run.
pub const HEAP_GROUPS: [&str; 5] = ["size", "order", "churn", "scaling", "ports"];

/// `(major, minor)` of a real obmalloc's name, `None` for any other allocator.
fn obmalloc_version(name: &str) -> Option<(u32, u32)> {
    let (major, minor) = name.strip_prefix(OBMALLOC_PREFIX)?.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Where an allocator sorts: registry and heaps in [`ALLOCATOR_ORDER`], then the real
/// obmallocs by version, then anything else by name.
fn allocator_key(name: &str) -> (usize, (u32, u32), String) {
    let version = obmalloc_version(name);
    let place = match version {
        Some(_) => ALLOCATOR_ORDER.len(),
        None if ALLOCATOR_ORDER.contains(&name) => rank(&ALLOCATOR_ORDER, name),
        None => ALLOCATOR_ORDER.len() + 1,
    };
    (place, version.unwrap_or((0, 0)), name.to_string())
}

/// Groups, each with its patterns, in the order the page shows them, and what each measures.
const GROUPS: [(&str, &[&str], &str); 6] = [
    ("size", &["pair"], "one alloc+free pair at each size; 1024 B is above pymalloc's threshold"),
    ("order", &["lifo", "fifo", "shuffled"], "a batch of 64 B blocks freed LIFO, FIFO or shuffled"),
    ("churn", &["random"], "a live working set; each step frees a random block, allocates 8-512 B"),
    ("scaling", &["alloc-all-free-all"], "allocate N 64 B blocks, free them all; per element"),
    (
        "threads",
        &["producer-consumer", "larson", "mstress", "mleak"],
        "cross-thread frees; threads that come and go",
    ),
    ("ports", &["glibc-simple", "sh6bench"], "glibc's bench-malloc-simple, sh6bench-style sweep"),
];

/// Arguments of `arenalab bench-report`.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct BenchReportArgs {
    /// criterion's output folder. Default: $CARGO_TARGET_DIR/criterion if that variable is set,
    /// else the workspace's target/criterion.
    #[arg(long, value_name = "DIR")]
    pub criterion_dir: Option<PathBuf>,
    /// Where to write benchmarks.md, its charts and results/benchmarks.json. Default: the
    /// workspace's docs/.
    #[arg(long, value_name = "DIR")]
    pub docs: Option<PathBuf>,
    /// Re-render docs/benchmarks.md from docs/results/benchmarks.json without reading criterion.
    #[arg(long)]
    pub render_only: bool,
}

/// One benchmark's figures, per operation (criterion's time per iteration divided by the
/// benchmark's throughput in elements).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Benchmark {
    /// The group: `size`, `order`, `churn`, `scaling`, `threads`, `ports`.
    pub group: String,
    /// The pattern within the group, e.g. `shuffled`.
    pub pattern: String,
    /// The allocator, e.g. `mimalloc` or `pymalloc-heap`.
    pub allocator: String,
    /// The last id field as criterion wrote it (a size, a count).
    pub size: String,
    /// Operations per iteration (criterion's `Throughput::Elements`; 1 without throughput).
    pub elements: u64,
    /// Median time per operation, nanoseconds.
    pub ns_per_op: f64,
    /// Lower bound of the median's 95 % confidence interval, ns per operation.
    pub ns_low: f64,
    /// Upper bound of the median's 95 % confidence interval, ns per operation.
    pub ns_high: f64,
    /// Mean time per operation, nanoseconds (for comparison with criterion's own output).
    pub mean_ns_per_op: f64,
    /// The clock that timed it (`wall`, `thread-cpu`, `process-cpu`: see the benches'
    /// `clock` module), from the clock log of the run that wrote it; `None` if not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
}

impl Benchmark {
    /// The id as criterion shows it: `group/pattern/allocator/size`.
    pub fn id(&self) -> String {
        format!("{}/{}/{}/{}", self.group, self.pattern, self.allocator, self.size)
    }
}

/// Everything `bench-report` read from criterion: saved as `docs/results/benchmarks.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchResults {
    /// The commands, this machine, and the date of the newest criterion estimate.
    pub meta: Meta,
    /// The folder the figures were read from.
    pub criterion_dir: String,
    /// One entry per benchmark, sorted by group, pattern, size, allocator.
    pub benchmarks: Vec<Benchmark>,
    /// The callgrind instruction counts (`docs/results/instructions.json`, a file of its own,
    /// not saved in this one), attached by whoever loads both; shown in their own section.
    #[serde(skip)]
    pub instructions: Option<crate::bench_instr::InstrResults>,
    /// Resident memory after `mstress` and `mleak` (see [`crate::bench_rss`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rss: Vec<crate::bench_rss::RssRow>,
}

impl BenchResults {
    /// The benchmark with this id, if measured.
    pub fn get(
        &self,
        group: &str,
        pattern: &str,
        allocator: &str,
        size: &str,
    ) -> Option<&Benchmark> {
        self.benchmarks.iter().find(|b| {
            b.group == group && b.pattern == pattern && b.allocator == allocator && b.size == size
        })
    }

    /// `allocator`'s time divided by mimalloc's on the same group, pattern and size.
    pub fn ratio_to_baseline(&self, b: &Benchmark) -> Option<f64> {
        let base = self.get(&b.group, &b.pattern, BASELINE, &b.size)?;
        ratio(b.ns_per_op, base.ns_per_op)
    }

    /// The (pattern, size) rows of a group, in page order.
    pub fn rows(&self, group: &str) -> Vec<(String, String)> {
        let mut rows: Vec<(String, String)> = Vec::new();
        for b in self.benchmarks.iter().filter(|b| b.group == group) {
            let row = (b.pattern.clone(), b.size.clone());
            if !rows.contains(&row) {
                rows.push(row);
            }
        }
        rows
    }

    /// The allocators measured in a group, in page order.
    pub fn allocators(&self, group: &str) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for b in self.benchmarks.iter().filter(|b| b.group == group) {
            if !names.contains(&b.allocator) {
                names.push(b.allocator.clone());
            }
        }
        names.sort_by_key(|n| allocator_key(n));
        names
    }

    /// The real obmalloc the model is held against: the oldest measured CPython 3.10 or newer
    /// (the model's `Heap` has 3.10's parameters, which 3.11 to 3.13 keep), else the newest
    /// measured. `None` when no real obmalloc was measured.
    pub fn reference_obmalloc(&self) -> Option<String> {
        let mut versions: Vec<((u32, u32), &str)> = Vec::new();
        for b in &self.benchmarks {
            if let Some(v) = obmalloc_version(&b.allocator)
                && !versions.iter().any(|(_, n)| *n == b.allocator)
            {
                versions.push((v, &b.allocator));
            }
        }
        versions.sort();
        let chosen = versions.iter().find(|(v, _)| *v >= (3, 10)).or(versions.last());
        chosen.map(|(_, n)| n.to_string())
    }

    /// `b`'s time divided by `other`'s on the same group, pattern and size.
    pub fn ratio_to(&self, b: &Benchmark, other: &str) -> Option<f64> {
        let base = self.get(&b.group, &b.pattern, other, &b.size)?;
        ratio(b.ns_per_op, base.ns_per_op)
    }

    /// The groups measured, in page order.
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = Vec::new();
        for b in &self.benchmarks {
            if !groups.contains(&b.group) {
                groups.push(b.group.clone());
            }
        }
        groups
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

fn rank(order: &[&str], name: &str) -> usize {
    order.iter().position(|o| *o == name).unwrap_or(order.len())
}

fn group_rank(group: &str) -> usize {
    GROUPS.iter().position(|(g, _, _)| *g == group).unwrap_or(GROUPS.len())
}

fn pattern_rank(group: &str, pattern: &str) -> usize {
    GROUPS.iter().find(|(g, _, _)| *g == group).map_or(usize::MAX, |(_, p, _)| rank(p, pattern))
}

/// Sizes sort as numbers when they are numbers.
fn size_key(size: &str) -> (u64, String) {
    (size.parse::<u64>().unwrap_or(u64::MAX), size.to_string())
}

/// The criterion folder: the flag, else `$CARGO_TARGET_DIR/criterion`, else the workspace's
/// `target/criterion`.
pub fn default_criterion_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => PathBuf::from(t).join("criterion"),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join("criterion"),
    }
}

fn criterion_dir(args: &BenchReportArgs) -> PathBuf {
    args.criterion_dir.clone().unwrap_or_else(default_criterion_dir)
}

fn docs_dir(args: &BenchReportArgs) -> PathBuf {
    args.docs.clone().unwrap_or_else(results::default_docs_dir)
}

/// The command line that stands for this run, for the page header.
fn command(args: &BenchReportArgs) -> String {
    let mut cmd = String::from("cargo bench && arenalab bench-report");
    if let Some(d) = &args.criterion_dir {
        cmd.push_str(&format!(" --criterion-dir {}", d.display()));
    }
    cmd
}

fn no_results(dir: &Path, why: &str) -> Error {
    Error::Usage(format!(
        "no criterion results in {} ({why}). Run `cargo bench` from the workspace root first \
         (it takes a few minutes; with CARGO_TARGET_DIR set, results go to \
         $CARGO_TARGET_DIR/criterion), or point --criterion-dir at criterion's folder.",
        dir.display()
    ))
}

/// Reads every `new/benchmark.json` + `new/estimates.json` pair under the criterion folder.
///
/// A missing or empty folder is a usage error (exit code 2) that says how to produce results;
/// ids that do not read `group/pattern/allocator/size` (another crate's benchmarks) are skipped.
pub fn collect(args: &BenchReportArgs) -> Result<BenchResults> {
    let dir = criterion_dir(args);
    if !dir.is_dir() {
        return Err(no_results(&dir, "the folder does not exist"));
    }
    let mut found = Vec::new();
    find_new_dirs(&dir, &mut found)?;
    let clocks = read_clock_log(&dir)?;
    let mut newest: Option<i64> = None;
    let mut benchmarks = Vec::new();
    for new in found {
        let Some(mut b) = read_benchmark(&new)? else { continue };
        if let Some(t) = modified_secs(&new.join("estimates.json")) {
            newest = Some(newest.map_or(t, |n: i64| n.max(t)));
            b.clock = clock_at(&clocks, t, &b.group);
        }
        benchmarks.push(b);
    }
    if benchmarks.is_empty() {
        return Err(no_results(&dir, "no benchmark.json and estimates.json found"));
    }
    benchmarks.sort_by(|a, b| {
        (group_rank(&a.group), &a.group, pattern_rank(&a.group, &a.pattern), &a.pattern)
            .cmp(&(group_rank(&b.group), &b.group, pattern_rank(&b.group, &b.pattern), &b.pattern))
            .then_with(|| size_key(&a.size).cmp(&size_key(&b.size)))
            .then_with(|| allocator_key(&a.allocator).cmp(&allocator_key(&b.allocator)))
    });
    let mut meta = Meta::collect(&command(args));
    if let Some(t) = newest {
        meta.date = utc_date(t);
    }
    // No RSS file: the benches were run without the `threads` group (the page says so); a file
    // that is there but unreadable is bad input.
    let rss = if dir.join(crate::bench_rss::FILE).exists() {
        crate::bench_rss::read(&dir).map_err(Error::Usage)?
    } else {
        Vec::new()
    };
    Ok(BenchResults {
        meta,
        criterion_dir: dir.display().to_string(),
        benchmarks,
        instructions: None,
        rss,
    })
}

/// The clock log the benchmark binary appends to at the start of each run (the benches'
/// `clock::LOG_NAME`): one line per run, `<unix seconds> <clock> <threads-group clock>`.
pub const CLOCK_LOG: &str = "arenalab-clock.log";

/// One run's line of the clock log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockRun {
    /// When the run started, seconds since the epoch.
    pub started: i64,
    /// The clock of the single-thread groups.
    pub clock: String,
    /// The clock of the `threads` group.
    pub threads_clock: String,
}

/// Reads `dir/`[`CLOCK_LOG`], sorted by start time; a missing log is empty (runs from before
/// the clock was recorded), a malformed line is bad input (exit code 2).
pub fn read_clock_log(dir: &Path) -> Result<Vec<ClockRun>> {
    let path = dir.join(CLOCK_LOG);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::failed(path.display())(e)),
    };
    let mut runs = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let started = f.first().and_then(|s| s.parse::<i64>().ok());
        match (started, f.len()) {
            (Some(started), 3) => runs.push(ClockRun {
                started,
                clock: f[1].to_string(),
                threads_clock: f[2].to_string(),
            }),
            _ => {
                return Err(Error::Usage(format!(
                    "{}:{}: {line:?} is not `<unix seconds> <clock> <threads clock>`; delete                      the file (the clock of older results is then not recorded) or fix the line",
                    path.display(),
                    i + 1
                )));
            }
        }
    }
    runs.sort_by_key(|r| r.started);
    Ok(runs)
}

/// The clock of an estimate written at `written` (seconds) in `group`: that of the last run
/// started at or before it.
pub fn clock_at(runs: &[ClockRun], written: i64, group: &str) -> Option<String> {
    let run = runs.iter().rev().find(|r| r.started <= written)?;
    Some(if group == "threads" { run.threads_clock.clone() } else { run.clock.clone() })
}

/// What each clock name means, for the page.
fn clock_meaning(clock: Option<&str>) -> String {
    match clock {
        Some("wall") => "wall time".into(),
        Some("thread-cpu") => "thread CPU time (`CLOCK_THREAD_CPUTIME_ID`: the benchmark \
                              thread's user and kernel time, its page faults included, time \
                              spent waiting for a core not)"
            .into(),
        Some("process-cpu") => "process CPU time (`CLOCK_PROCESS_CPUTIME_ID`: both threads' \
                               CPU time summed, waiting for each other included)"
            .into(),
        Some(other) => format!("`{other}`"),
        None => "a clock not recorded (no run in the clock log before these results: they \
                 come from benchmarks older than the log, which timed with wall time)"
            .into(),
    }
}

/// The page's line on which clock timed which benchmarks (`ARENALAB_BENCH_CLOCK`).
pub fn clock_note(r: &BenchResults) -> String {
    let mut by_clock: Vec<(Option<&str>, usize, Vec<&str>)> = Vec::new();
    for b in &r.benchmarks {
        let clock = b.clock.as_deref();
        let i = match by_clock.iter().position(|(c, _, _)| *c == clock) {
            Some(i) => i,
            None => {
                by_clock.push((clock, 0, Vec::new()));
                by_clock.len() - 1
            }
        };
        let entry = &mut by_clock[i];
        entry.1 += 1;
        if !entry.2.contains(&b.group.as_str()) {
            entry.2.push(&b.group);
        }
    }
    let parts: Vec<String> = by_clock
        .iter()
        .map(|(clock, n, groups)| {
            format!(
                "{} for {} ({})",
                clock_meaning(*clock),
                render::plural(*n as u64, "benchmark"),
                groups.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    format!(
        "**Clock**: {}. Choose it with `ARENALAB_BENCH_CLOCK=thread-cpu` or `wall` (the default) \
         when running `cargo bench`; see `benches/README.md`.\n\n",
        parts.join("; ")
    )
}

/// Every `new` folder holding a benchmark.json, below `dir` (criterion's `report` folders and
/// `base`/`change` copies are not results of the latest run).
fn find_new_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(Error::failed(dir.display()))?;
    let mut subdirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::failed(dir.display()))?;
        if entry.file_type().map_err(Error::failed(entry.path().display()))?.is_dir() {
            subdirs.push(entry.path());
        }
    }
    subdirs.sort();
    for sub in subdirs {
        match sub.file_name().and_then(|n| n.to_str()) {
            Some("new") if sub.join("benchmark.json").is_file() => out.push(sub),
            Some("report" | "base" | "change") => {}
            _ => find_new_dirs(&sub, out)?,
        }
    }
    Ok(())
}

/// criterion's `benchmark.json` (the fields this report needs).
#[derive(Deserialize)]
struct IdFile {
    group_id: String,
    function_id: Option<String>,
    value_str: Option<String>,
    throughput: Option<ThroughputFile>,
}

#[derive(Deserialize)]
enum ThroughputFile {
    Elements(u64),
    #[serde(other)]
    Other,
}

/// One statistic of criterion's `estimates.json`.
#[derive(Deserialize)]
struct Estimate {
    confidence_interval: Interval,
    point_estimate: f64,
}

#[derive(Deserialize)]
struct Interval {
    lower_bound: f64,
    upper_bound: f64,
}

#[derive(Deserialize)]
struct EstimatesFile {
    mean: Estimate,
    median: Estimate,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(Error::failed(path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Failed(format!("{}: not criterion's format: {e}", path.display())))
}

/// Reads one benchmark; `None` if its id is not `group/pattern/allocator/size` or it has no
/// estimates yet (criterion's `--test` mode writes none).
fn read_benchmark(new: &Path) -> Result<Option<Benchmark>> {
    let estimates = new.join("estimates.json");
    if !estimates.is_file() {
        return Ok(None);
    }
    let id: IdFile = read_json(&new.join("benchmark.json"))?;
    let (Some(function), Some(size)) = (id.function_id, id.value_str) else { return Ok(None) };
    let Some((pattern, allocator)) = function.split_once('/') else { return Ok(None) };
    if allocator.contains('/') {
        return Ok(None);
    }
    let elements = match id.throughput {
        Some(ThroughputFile::Elements(n)) if n > 0 => n,
        _ => 1,
    };
    let e: EstimatesFile = read_json(&estimates)?;
    let per = |ns: f64| ns / elements as f64;
    Ok(Some(Benchmark {
        group: id.group_id,
        pattern: pattern.to_string(),
        allocator: allocator.to_string(),
        size,
        elements,
        ns_per_op: per(e.median.point_estimate),
        ns_low: per(e.median.confidence_interval.lower_bound),
        ns_high: per(e.median.confidence_interval.upper_bound),
        mean_ns_per_op: per(e.mean.point_estimate),
        clock: None,
    }))
}

fn modified_secs(path: &Path) -> Option<i64> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// `YYYY-MM-DD HH:MM UTC` for seconds since the epoch (civil-from-days, proleptic Gregorian).
fn utc_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// One performance target and where the figures stand.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetCheck {
    /// What is promised, in words.
    pub goal: String,
    /// The worst figure over the rows the target covers (a time ratio or a spread).
    pub worst: Option<f64>,
    /// The limit the worst figure must stay within.
    pub limit: f64,
    /// Whether a larger figure is better (speed-ups) or worse (time ratios).
    pub higher_is_better: bool,
    /// Where the worst figure comes from.
    pub worst_at: String,
    /// Rows measured for this target.
    pub rows: usize,
}

impl TargetCheck {
    /// `Some(true)` if met, `Some(false)` if not, `None` if nothing was measured.
    pub fn met(&self) -> Option<bool> {
        let w = self.worst?;
        Some(if self.higher_is_better { w >= self.limit } else { w <= self.limit })
    }
}

/// Folds figures into the worst one: the largest time ratio, or the smallest speed-up.
fn check(
    goal: String,
    limit: f64,
    higher_is_better: bool,
    figures: impl IntoIterator<Item = (f64, String)>,
) -> TargetCheck {
    let mut t = TargetCheck {
        goal,
        worst: None,
        limit,
        higher_is_better,
        worst_at: String::new(),
        rows: 0,
    };
    for (v, at) in figures {
        t.rows += 1;
        let worse = match t.worst {
            None => true,
            Some(w) => (higher_is_better && v < w) || (!higher_is_better && v > w),
        };
        if worse {
            t.worst = Some(v);
            t.worst_at = at;
        }
    }
    t
}

/// `who`'s time over the better (faster) of mimalloc and jemalloc, for every row of the
/// small-object `order` and `churn` groups.
fn vs_best(r: &BenchResults, who: &str) -> Vec<(f64, String)> {
    let mut out = Vec::new();
    for group in ["order", "churn"] {
        for (pattern, size) in r.rows(group) {
            let time = |a: &str| r.get(group, &pattern, a, &size).map(|b| b.ns_per_op);
            let best = match (time("mimalloc"), time("jemalloc")) {
                (Some(m), Some(j)) => m.min(j),
                (Some(x), None) | (None, Some(x)) => x,
                (None, None) => continue,
            };
            if let Some(v) = time(who).and_then(|t| ratio(t, best)) {
                out.push((v, format!("{group}/{pattern}/{size}")));
            }
        }
    }
    out
}

/// glibc's time over `who`'s on shuffled free.
fn speedup_vs_glibc(r: &BenchResults, who: &str) -> Vec<(f64, String)> {
    r.rows("order")
        .into_iter()
        .filter(|(p, _)| p == "shuffled")
        .filter_map(|(p, size)| {
            let sys = r.get("order", &p, "system", &size)?.ns_per_op;
            let mine = r.get("order", &p, who, &size)?.ns_per_op;
            Some((ratio(sys, mine)?, format!("order/{p}/{size}")))
        })
        .collect()
}

/// Slowest over fastest time per element across the `scaling` counts.
fn scaling_spread(r: &BenchResults, who: &str) -> Vec<(f64, String)> {
    let times: Vec<(f64, String)> = r
        .benchmarks
        .iter()
        .filter(|b| b.group == "scaling" && b.allocator == who)
        .map(|b| (b.ns_per_op, b.size.clone()))
        .collect();
    if times.len() < 2 {
        return Vec::new();
    }
    let lo = times.iter().min_by(|a, b| a.0.total_cmp(&b.0));
    let hi = times.iter().max_by(|a, b| a.0.total_cmp(&b.0));
    let (Some(lo), Some(hi)) = (lo, hi) else { return Vec::new() };
    ratio(hi.0, lo.0).map(|v| (v, format!("N={} vs N={}", hi.1, lo.1))).into_iter().collect()
}

/// pymalloc's performance targets, each checked against the figures.
pub fn targets(r: &BenchResults) -> Vec<TargetCheck> {
    vec![
        check(
            format!(
                "`{HEAP}` time ≤ 0.8× the better of mimalloc and jemalloc on `order` and `churn`"
            ),
            0.8,
            false,
            vs_best(r, HEAP),
        ),
        check(
            format!(
                "`{GLOBAL}` (locked) time ≤ 1.0× the better of mimalloc and jemalloc on `order` and `churn`"
            ),
            1.0,
            false,
            vs_best(r, GLOBAL),
        ),
        check(
            format!("`{HEAP}` ≥ 3× faster than glibc on shuffled free (`order/shuffled`)"),
            3.0,
            true,
            speedup_vs_glibc(r, HEAP),
        ),
        check(
            format!("`{GLOBAL}` ≥ 3× faster than glibc on shuffled free (`order/shuffled`)"),
            3.0,
            true,
            speedup_vs_glibc(r, GLOBAL),
        ),
        check(
            format!(
                "`{HEAP}` `scaling` flat: slowest/fastest ns per element ≤ 1.2 from 1e3 to 1e6"
            ),
            1.2,
            false,
            scaling_spread(r, HEAP),
        ),
        check(
            format!(
                "`{GLOBAL}` `scaling` flat: slowest/fastest ns per element ≤ 1.2 from 1e3 to 1e6"
            ),
            1.2,
            false,
            scaling_spread(r, GLOBAL),
        ),
    ]
}

/// The heap targets again for the cached heap: how far keeping emptied arenas mapped (not
/// CPython's behaviour) would take pymalloc. Empty when the cached heap was not measured.
pub fn cached_targets(r: &BenchResults) -> Vec<TargetCheck> {
    let checks = vec![
        check(
            format!(
                "`{CACHED_HEAP}` time ≤ 0.8× the better of mimalloc and jemalloc on `order` and `churn`"
            ),
            0.8,
            false,
            vs_best(r, CACHED_HEAP),
        ),
        check(
            format!("`{CACHED_HEAP}` ≥ 3× faster than glibc on shuffled free (`order/shuffled`)"),
            3.0,
            true,
            speedup_vs_glibc(r, CACHED_HEAP),
        ),
        check(
            format!(
                "`{CACHED_HEAP}` `scaling` flat: slowest/fastest ns per element ≤ 1.2 from 1e3 to 1e6"
            ),
            1.2,
            false,
            scaling_spread(r, CACHED_HEAP),
        ),
    ];
    if checks.iter().all(|t| t.rows == 0) { Vec::new() } else { checks }
}

/// `who`'s time over `other`'s on every row of `groups` where both were measured, named
/// `group/pattern/size`.
fn ratios_to(r: &BenchResults, who: &str, other: &str, groups: &[&str]) -> Vec<(f64, String)> {
    let mut out = Vec::new();
    for &group in groups {
        for (pattern, size) in r.rows(group) {
            if let Some(v) = r.get(group, &pattern, who, &size).and_then(|b| r.ratio_to(b, other)) {
                out.push((v, format!("{group}/{pattern}/{size}")));
            }
        }
    }
    out
}

/// The targets of issue 11, the model against the original measured in the same run:
///
/// 1. `pymalloc-heap` ≤ 1.0× the real obmalloc on every row of `size`, `order`, `churn`,
///    `scaling` and `ports`, like against like: in `size` the warm heap (one live block per
///    class) against the initialised, warm interpreter; elsewhere a fresh heap per benchmark,
///    whose rounds of hundreds to a million blocks set its state, against the interpreter's.
/// 2. `pymalloc` (the locked global, one thread) ≤ 1.3× the real obmalloc on the same rows
///    (`size` as it is: the global is one long-lived heap).
/// 3. `pymalloc` ≤ 1.0× mimalloc on `threads`.
///
/// The real obmalloc is [`BenchResults::reference_obmalloc`]; without one, targets 1 and 2 have
/// no rows and read "not measured", as does 3 without `threads` rows.
pub fn obmalloc_targets(r: &BenchResults) -> Vec<TargetCheck> {
    let reference = r.reference_obmalloc();
    let real = reference.as_deref().unwrap_or("cpython-obmalloc");
    let (heap_rows, global_rows) = match &reference {
        Some(o) => {
            let mut heap = ratios_to(r, WARM_HEAP, o, &["size"]);
            heap.extend(ratios_to(r, HEAP, o, &HEAP_GROUPS[1..]));
            let mut global = ratios_to(r, WARM_GLOBAL, o, &["size"]);
            global.extend(ratios_to(r, GLOBAL, o, &HEAP_GROUPS[1..]));
            (heap, global)
        }
        None => (Vec::new(), Vec::new()),
    };
    vec![
        check(
            format!(
                "`{HEAP}` ≤ 1.0× `{real}` on every row of size, order, churn, scaling, ports \
                 (size: `{WARM_HEAP}` against the initialised interpreter, both warm)"
            ),
            1.0,
            false,
            heap_rows,
        ),
        check(
            format!(
                "`{GLOBAL}` (one thread) ≤ 1.3× `{real}` on the same rows (size: `{WARM_GLOBAL}`, \
                 warm likewise)"
            ),
            1.3,
            false,
            global_rows,
        ),
        check(
            format!("`{GLOBAL}` ≤ 1.0× `{BASELINE}` on `threads`"),
            1.0,
            false,
            ratios_to(r, GLOBAL, BASELINE, &["threads"]),
        ),
        instruction_target(r, reference.as_deref()),
    ]
}

/// Target 4: `pymalloc-heap`'s instructions per pair ≤ the real obmalloc's on every callgrind
/// pattern, the empty-pool cycle included, compared as allocator shares (the harness-only
/// baseline taken out of both). The obmalloc is the timed reference where the counts have it,
/// else the first one counted.
fn instruction_target(r: &BenchResults, reference: Option<&str>) -> TargetCheck {
    let mut rows = Vec::new();
    let mut real = reference.unwrap_or("cpython-obmalloc").to_string();
    if let Some(i) = &r.instructions {
        let counted: Vec<&str> =
            i.contenders().into_iter().filter(|c| c.starts_with(OBMALLOC_PREFIX)).collect();
        if let Some(o) = reference.filter(|o| counted.contains(o)).or(counted.first().copied()) {
            real = o.to_string();
            for p in &i.patterns {
                let share = |c: &str| i.get(&p.name, c).and_then(|row| i.allocator_share(row));
                if let (Some(h), Some(o)) = (share(HEAP), share(o))
                    && o > 0.0
                {
                    rows.push((h / o, format!("callgrind {}", p.name)));
                }
            }
        }
    }
    check(
        format!(
            "`{HEAP}` instructions per pair ≤ `{real}`'s on every callgrind pattern, the \
             empty-pool cycle included (allocator shares)"
        ),
        1.0,
        false,
        rows,
    )
}

/// The sections other modules compute from their own results and append to the page (e.g.
/// instruction counts per pair, RSS after the thread benchmarks): each module adds one line
/// here, pushing its Markdown (starting with its `## ` heading, or empty when it has nothing).
pub fn appended_sections(r: &BenchResults, docs: &Path) -> Result<String> {
    let mut out = String::new();
    // One line per module, e.g. `out.push_str(&crate::<module>::section(r, docs)?);`
    out.push_str(&crate::bench_instr::section(r.instructions.as_ref()));
    out.push('\n');
    out.push_str(&crate::bench_rss::section(&r.rss));
    let _ = docs;
    Ok(out)
}

/// One group's times as ratios to the real obmalloc: a row per (pattern, size), a column per
/// pymalloc contender. Empty when the group has no real obmalloc figures.
fn obmalloc_table(r: &BenchResults, group: &str, reference: &str) -> String {
    let rows = r.rows(group);
    if !rows.iter().any(|(p, s)| r.get(group, p, reference, s).is_some()) {
        return String::new();
    }
    let ours: Vec<String> =
        r.allocators(group).into_iter().filter(|a| a.starts_with(GLOBAL)).collect();
    let mut header: Vec<String> = vec!["pattern".into(), "size".into(), reference.to_string()];
    header.extend(ours.iter().map(|a| format!("{a} / obmalloc")));
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(pattern, size)| {
            let mut row = vec![pattern.clone(), size.clone()];
            row.push(
                r.get(group, &pattern, reference, &size)
                    .map_or("–".into(), |b| fmt_ns(b.ns_per_op)),
            );
            for a in &ours {
                row.push(
                    r.get(group, &pattern, a, &size)
                        .and_then(|b| r.ratio_to(b, reference))
                        .map_or("–".into(), |x| format!("{x:.2}×")),
                );
            }
            row
        })
        .collect();
    render::markdown_table(&header, &rows)
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 100.0 { format!("{ns:.0}") } else { format!("{ns:.1}") }
}

/// A table of target checks.
fn target_table(checks: Vec<TargetCheck>) -> String {
    let header: Vec<String> =
        ["target", "worst figure", "where", "rows", "status"].map(String::from).to_vec();
    let rows: Vec<Vec<String>> = checks
        .into_iter()
        .map(|t| {
            let status = match t.met() {
                Some(true) => "met",
                Some(false) => "**not met**",
                None => "not measured",
            };
            vec![
                t.goal.clone(),
                t.worst.map_or("–".into(), |w| format!("{w:.2}")),
                t.worst_at.clone(),
                t.rows.to_string(),
                status.to_string(),
            ]
        })
        .collect();
    render::markdown_table(&header, &rows)
}

/// One group's table: a row per (pattern, size), a column per allocator, each cell the median ns
/// per operation and the ratio to mimalloc.
fn group_table(r: &BenchResults, group: &str) -> String {
    let allocators = r.allocators(group);
    let mut header: Vec<String> = vec!["pattern".into(), "size".into()];
    header.extend(allocators.iter().cloned());
    let rows: Vec<Vec<String>> = r
        .rows(group)
        .into_iter()
        .map(|(pattern, size)| {
            let mut row = vec![pattern.clone(), size.clone()];
            for a in &allocators {
                row.push(match r.get(group, &pattern, a, &size) {
                    Some(b) => match r.ratio_to_baseline(b) {
                        Some(x) => format!("{} ({x:.2}×)", fmt_ns(b.ns_per_op)),
                        None => fmt_ns(b.ns_per_op),
                    },
                    None => "–".into(),
                });
            }
            row
        })
        .collect();
    render::markdown_table(&header, &rows)
}

/// One group's chart: ns per element over N for `scaling` (flat is O(1)), else the ratio to
/// mimalloc per row as grouped bars.
fn group_chart(r: &BenchResults, group: &str) -> Result<String> {
    let rows = r.rows(group);
    let allocators = r.allocators(group);
    let categories: Vec<String> =
        rows.iter()
            .map(|(p, s)| {
                if r.rows(group).iter().all(|(q, _)| q == p) {
                    s.clone()
                } else {
                    format!("{p} {s}")
                }
            })
            .collect();
    // One series per allocator, with `value` taken from each row's figure.
    let series = |value: &dyn Fn(&Benchmark) -> Option<f64>| -> Vec<chart::Series> {
        allocators
            .iter()
            .map(|a| chart::Series {
                label: a.clone(),
                values: rows.iter().map(|(p, s)| r.get(group, p, a, s).and_then(value)).collect(),
            })
            .collect()
    };
    if group == "scaling" {
        return chart::line_chart(
            "scaling: ns per element, allocate N then free N (flat = O(1))",
            &categories,
            "ns per element",
            &series(&|b| Some(b.ns_per_op)),
        );
    }
    let series = series(&|b| r.ratio_to_baseline(b));
    chart::bar_chart(
        &format!("{group}: time relative to mimalloc (lower is faster)"),
        &categories,
        "time / mimalloc's",
        &series,
    )
}

/// The page's title.
pub const TITLE: &str = "Benchmarks: allocation speed, pymalloc against the field";

impl crate::results::Checked for BenchResults {
    /// At least one benchmark, and every group a plain name (each becomes a chart's file name).
    fn check(&self) -> std::result::Result<(), String> {
        if self.benchmarks.is_empty() {
            return Err("no benchmarks".into());
        }
        for g in self.groups() {
            results::check_slug("benchmark group", &g)?;
        }
        Ok(())
    }
}

/// The **Targets** section: the model against the real obmalloc ([`obmalloc_targets`]).
fn targets_section(r: &BenchResults) -> String {
    let mut md = String::from("## Targets: the model against the real obmalloc\n\n");
    match r.reference_obmalloc() {
        Some(o) => md.push_str(&format!(
            "Each target is a time ratio from this run (lower is better), taken over every row \
             it covers; \"worst figure\" is the largest and \"where\" its row. The real obmalloc \
             is `{o}`. States compared: in `size`, `{WARM_HEAP}` and `{WARM_GLOBAL}` against \
             the initialised interpreter (all warm: a pair never empties a pool); in the other \
             groups, a fresh `{HEAP}` per benchmark and the long-lived `{GLOBAL}` against the \
             interpreter's heap, each in the state the \
             workload's own rounds leave.\n\n"
        )),
        None => md.push_str(
            "CPython's real obmalloc was not measured in this run (no embeddable CPython \
             was found, or `ARENALAB_BENCH_PYTHON=none`): the targets against it are not \
             measured and carry no verdict.\n\n",
        ),
    }
    md.push_str(&target_table(obmalloc_targets(r)));
    md.push('\n');
    md
}

/// Writes `docs/benchmarks.md` and `docs/benchmarks/<group>.svg` from saved results.
pub fn render(results: &BenchResults, docs: &Path) -> Result<()> {
    let r = results;
    let mut md = render::page_header(TITLE, &r.meta);
    md.push_str(
        "Criterion benchmarks from `benches/` (see `benches/README.md` for what each group does and \
         the fairness caveats). Each cell is the **median time per operation** (one alloc+free \
         pair, one churn step) in nanoseconds, and in brackets that time **relative to mimalloc** \
         on the same row: below 1 is faster than mimalloc. `pymalloc` is the thread-safe global \
         (one heap per thread); `pymalloc-heap` is one such heap called directly, with no \
         lock, fresh for each benchmark; `pymalloc-heap-warm` (in `size` only) holds one live \
         block per size class, as an initialised interpreter does; `pymalloc-heap-cached` is \
         the heap with emptied arenas kept mapped for reuse instead of returned to the OS (not \
         CPython's behaviour). `cpython-obmalloc-X.Y` is CPython's real `PyObject_Malloc` / \
         `PyObject_Free`, from that interpreter's libpython loaded into the benchmark process \
         and initialised: called through function pointers, its GIL held for the whole \
         benchmark, not taken per call. Where it was measured, each group has a second table \
         with the pymalloc rows as ratios to it. Compare ratios within this page; absolute \
         nanoseconds move between runs on a shared 2-core machine.\n\n",
    );
    md.push_str(&clock_note(r));
    let reference = r.reference_obmalloc();
    for group in r.groups() {
        let what = GROUPS.iter().find(|(g, _, _)| *g == group).map_or("", |(_, _, w)| *w);
        md.push_str(&format!("## `{group}`\n\n"));
        if !what.is_empty() {
            md.push_str(&format!("{what}.\n\n"));
        }
        if group == "threads" {
            md.push_str(
                "The heaps and the real obmalloc are absent: a `Heap` is single-threaded \
                 (`&mut self`), its thread-safe form is `pymalloc`; obmalloc relies on the GIL.\n\n",
            );
        }
        if group == "size" {
            md.push_str(&format!(
                "Two states of the model: in a fresh `{HEAP}` every pair empties its pool and \
                 takes it back from the arena on the next allocation (the empty-pool cycle); \
                 `{WARM_HEAP}` keeps a block live in every class, so a pair is the fast path \
                 alone. The global `{GLOBAL}` holds nothing but the benchmark's blocks (the \
                 benchmark program allocates with glibc), so it too cycles a pool per pair; \
                 `{WARM_GLOBAL}` is it with a block live in every class. An initialised \
                 interpreter is warm: compare the real obmalloc with `{WARM_HEAP}` and \
                 `{WARM_GLOBAL}`.\n\n"
            ));
        }
        md.push_str(&group_table(r, &group));
        if let Some(o) = &reference {
            let t = obmalloc_table(r, &group, o);
            if !t.is_empty() {
                md.push_str(&format!(
                    "\nThe same rows against the real obmalloc: ns per operation of `{o}`, and \
                     each pymalloc contender's time over it (below 1 is faster than CPython's \
                     own):\n\n"
                ));
                md.push_str(&t);
            }
        }
        let file = format!("benchmarks/{group}.svg");
        render::write_file(&docs.join(&file), &group_chart(r, &group)?)?;
        md.push_str(&format!("\n![{group}]({file})\n\n"));
    }
    md.push_str(&targets_section(r));
    md.push_str(&appended_sections(r, docs)?);
    md.push_str(
        "## Appendix: the earlier targets, against mimalloc and jemalloc\n\nThe goals arenalab \
         first set its pymalloc model, kept for comparison with earlier runs. They asked a \
         faithful model to beat mimalloc and jemalloc, including where CPython's own obmalloc \
         does not (it pays the same arena unmap and map on large batches): the targets above, \
         against the original measured in the same run, replace them. \"Worst figure\" is a \
         time ratio (lower is better) or, for \"faster than glibc\", a speed-up (higher is \
         better), taken over every row the target covers.\n\n",
    );
    md.push_str(&target_table(targets(r)));
    let cached = cached_targets(r);
    if !cached.is_empty() {
        md.push_str(&format!(
            "\nThe same heap with emptied arenas kept mapped (`{CACHED_HEAP}`, \
             `pymalloc::os::Cached`; not CPython's behaviour, which returns every emptied arena \
             but one to the OS) shows how much of the gap is the price of giving memory back:\n\n"
        ));
        md.push_str(&target_table(cached));
    }
    md.push('\n');
    md.push_str(&format!(
        "\n---\nRead from criterion's output folder ({} benchmarks); figures saved in \
         `docs/results/{RESULTS_NAME}.json`. Re-render with `arenalab bench-report --render-only`.\n",
        r.benchmarks.len()
    ));
    render::write_file(&docs.join("benchmarks.md"), &md)
}

/// Runs `arenalab bench-report`: collect (unless `--render-only`), save, render, and print the
/// targets.
pub fn run(args: &BenchReportArgs) -> Result<()> {
    let docs = docs_dir(args);
    let results = if args.render_only {
        results::load::<BenchResults>(&docs, RESULTS_NAME)?.ok_or_else(|| {
            Error::Usage(format!(
                "{} does not exist: run `cargo bench` and then `arenalab bench-report` without \
                 --render-only",
                results::results_path(&docs, RESULTS_NAME).display()
            ))
        })?
    } else {
        let r = collect(args)?;
        results::save(&docs, RESULTS_NAME, &r)?;
        // Render from the file just written, not from memory, so the page is exactly what
        // `--render-only` (and `arenalab render`) make of the committed JSON.
        results::load::<BenchResults>(&docs, RESULTS_NAME)?.unwrap_or(r)
    };
    let results = BenchResults {
        instructions: results::load(&docs, crate::bench_instr::RESULTS_NAME)?,
        ..results
    };
    // Into a staging folder first, so a failure leaves the previous page and charts intact.
    let staging = render::install::Staging::new(&docs)?;
    render(&results, staging.path())?;
    staging.install()?;
    let by_group: BTreeMap<&str, usize> =
        results.benchmarks.iter().fold(BTreeMap::new(), |mut m, b| {
            *m.entry(b.group.as_str()).or_default() += 1;
            m
        });
    println!(
        "{} benchmarks ({}) -> {}",
        results.benchmarks.len(),
        by_group.iter().map(|(g, n)| format!("{g}: {n}")).collect::<Vec<_>>().join(", "),
        docs.join("benchmarks.md").display()
    );
    let all = obmalloc_targets(&results).into_iter().chain(targets(&results));
    for t in all.chain(cached_targets(&results)) {
        let status = match t.met() {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "not measured",
        };
        let worst = t.worst.map_or("-".into(), |w| format!("{w:.2}"));
        println!("  {status:>12}  {worst:>6}  {}  ({})", t.goal.replace('`', ""), t.worst_at);
    }
    Ok(())
}

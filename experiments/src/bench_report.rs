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
//!   given as a ratio to mimalloc (ratios from one run are what survives a noisy machine), an SVG
//!   chart per group, and a summary that checks pymalloc against its performance targets
//!   ([`targets`]), computed from the figures, never typed in.

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

/// Allocators in the order tables and charts show them.
const ALLOCATOR_ORDER: [&str; 6] = ["system", "mimalloc", "jemalloc", GLOBAL, HEAP, CACHED_HEAP];

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
        names.sort_by_key(|n| (rank(&ALLOCATOR_ORDER, n), n.clone()));
        names
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
    let mut newest: Option<i64> = None;
    let mut benchmarks = Vec::new();
    for new in found {
        let Some(b) = read_benchmark(&new)? else { continue };
        if let Some(t) = modified_secs(&new.join("estimates.json")) {
            newest = Some(newest.map_or(t, |n: i64| n.max(t)));
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
            .then_with(|| {
                (rank(&ALLOCATOR_ORDER, &a.allocator), &a.allocator)
                    .cmp(&(rank(&ALLOCATOR_ORDER, &b.allocator), &b.allocator))
            })
    });
    let mut meta = Meta::collect(&command(args));
    if let Some(t) = newest {
        meta.date = utc_date(t);
    }
    let rss = crate::bench_rss::read(&dir).unwrap_or_default();
    Ok(BenchResults { meta, criterion_dir: dir.display().to_string(), benchmarks, rss })
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

/// Writes `docs/benchmarks.md` and `docs/benchmarks/<group>.svg` from saved results.
pub fn render(results: &BenchResults, docs: &Path) -> Result<()> {
    let r = results;
    let mut md = render::page_header(TITLE, &r.meta);
    md.push_str(
        "Criterion benchmarks from `benches/` (see `benches/README.md` for what each group does and \
         the fairness caveats). Each cell is the **median time per operation** (one alloc+free \
         pair, one churn step) in nanoseconds, and in brackets that time **relative to mimalloc** \
         on the same row: below 1 is faster than mimalloc. `pymalloc` is the thread-safe global \
         (one heap per thread); `pymalloc-heap` is one heap called directly, with no \
         lock; `pymalloc-heap-cached` is that heap with emptied arenas kept mapped for reuse \
         instead of returned to the OS (not CPython's behaviour). Compare ratios within this page; absolute nanoseconds move between runs on a \
         shared 2-core machine.\n\n",
    );
    for group in r.groups() {
        let what = GROUPS.iter().find(|(g, _, _)| *g == group).map_or("", |(_, _, w)| *w);
        md.push_str(&format!("## `{group}`\n\n"));
        if !what.is_empty() {
            md.push_str(&format!("{what}.\n\n"));
        }
        if group == "threads" {
            md.push_str(
                "`pymalloc-heap` and `pymalloc-heap-cached` are absent: a `Heap` is \
                 single-threaded (`&mut self`); its thread-safe form is `pymalloc`.\n\n",
            );
        }
        md.push_str(&group_table(r, &group));
        let file = format!("benchmarks/{group}.svg");
        render::write_file(&docs.join(&file), &group_chart(r, &group)?)?;
        md.push_str(&format!("\n![{group}]({file})\n\n"));
    }
    md.push_str(&crate::bench_rss::section(&r.rss));
    md.push_str(
        "## Appendix: the project's own targets\n\nThe goals arenalab set itself for its \
         pymalloc model's speed, for the project's maintainers rather than the reader: each is \
         checked against the figures above. \"Worst figure\" is a time ratio (lower is better) \
         or, for \"faster than glibc\", a speed-up (higher is better), taken over every row the \
         target covers.\n\n",
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
    for t in targets(&results).into_iter().chain(cached_targets(&results)) {
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

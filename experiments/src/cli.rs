//! Command-line parsing and dispatch. Each subcommand's arguments live in its own module.
//!
//! Bad input has one shape, whichever flag it concerns and whether clap or an experiment's own
//! check finds it: `arenalab: --FLAG must be ..., got VALUE` on stderr and exit code 2. Numbers
//! and names are parsed by [`whole`] and [`choice`], whose messages give the accepted range or
//! values; an experiment's later checks (memory, minimum sizes) use [`check_range`] or say the
//! same things in their own words. Negative numbers reach the parser (`--workers -1` is a bad
//! value, not an unknown flag).
//!
//! Each subcommand's `--help` (long help) explains its experiment, lists what every workload,
//! ending or scenario means (from the enums' own descriptions), gives defaults and ranges (from
//! the code's constants), how long a run takes and where its output goes, and ends with
//! examples; `-h` stays a short summary. The texts are built in [`help`].

use crate::error::Error;
use clap::{Parser, Subcommand};
use std::fmt::Display;
use std::str::FromStr;

/// arenalab: where freed memory goes, measured.
#[derive(Debug, Parser)]
#[command(name = "arenalab", version, about, long_about = help::wrap(help::ARENALAB_ABOUT),
    after_long_help = help::wrap(&help::arenalab()))]
pub struct Cli {
    /// What to do; with none, `report`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every experiment at default sizes and regenerate docs/.
    #[command(long_about = help::wrap(help::REPORT_ABOUT), after_long_help = help::wrap(&help::report()))]
    Report(crate::report::ReportArgs),
    /// Re-render docs/ from the saved results JSON only (no measuring).
    #[command(long_about = help::wrap(help::RENDER_ABOUT), after_long_help = help::wrap(&help::render()))]
    Render(crate::report::RenderArgs),
    /// What each allocator keeps after free, side by side.
    #[command(long_about = help::wrap(help::RETENTION_ABOUT), after_long_help = help::wrap(&help::retention()))]
    Retention(crate::retention::RetentionArgs),
    /// Memory given back when a process ends, however it ends.
    #[command(long_about = help::wrap(help::EXIT_ABOUT), after_long_help = help::wrap(&help::exit()))]
    Exit(crate::exit::ExitArgs),
    /// Memory held by worker-process pools, closed properly or not.
    #[command(long_about = help::wrap(help::POOL_ABOUT), after_long_help = help::wrap(&help::pool()))]
    Pool(crate::pool::PoolArgs),
    /// The pymalloc model step by step, with any CPython's layout.
    #[command(long_about = help::wrap(help::TOUR_ABOUT), after_long_help = help::wrap(&help::tour()))]
    Tour(crate::tour::TourArgs),
    /// The seed's three questions answered by real CPython interpreters.
    #[command(long_about = crate::cpython::HELP, after_long_help = crate::cpython::EXAMPLES)]
    Cpython(crate::cpython::CpythonArgs),
    /// Record a real CPython's calls into pymalloc; replay them on the model.
    #[command(long_about = TRACE_ABOUT, after_long_help = TRACE_EXAMPLES)]
    Trace(crate::trace::TraceArgs),
    /// Turn criterion's results into docs/benchmarks.md.
    #[command(long_about = help::wrap(help::BENCH_REPORT_ABOUT), after_long_help = help::wrap(&help::bench_report()))]
    BenchReport(crate::bench_report::BenchReportArgs),
    /// Internal: a child process running one measurement.
    #[command(hide = true, subcommand)]
    Worker(Worker),
}

/// `arenalab trace --help`: what the two steps do together.
const TRACE_ABOUT: &str = "\
Record what a real CPython asks of pymalloc, then replay it exactly.

`trace record` runs a Python script in a real interpreter (loaded at run time from its shared
libpython; nothing is linked at build time) and writes every call into pymalloc's MEM and OBJ
domains and every arena mapped or unmapped to a trace file. At marks the script sets
(`arenalab_trace.mark(\"label\")`), the interpreter's own counters go into the trace too.

`trace replay` gives the same calls, in the same order, to the pymalloc model with the layout
detected from the interpreter, and compares the model's counters with the interpreter's at every
mark (exit code 1 when any differs): the evidence that the model is CPython's behaviour. With
--allocator it also replays the calls on glibc, mimalloc or jemalloc, each in a fresh child, and
reports resident memory at each mark: what the same program would keep under another allocator.

Each subcommand's own --help gives its flags, defaults and run time.";

/// `arenalab trace --help`'s examples.
const TRACE_EXAMPLES: &str = "\
Examples:
  arenalab trace record -o floats.trace -- experiments/python/trace_seed.py floats 100000
  arenalab trace replay floats.trace
  arenalab trace replay floats.trace --allocator system --allocator mimalloc --json";

/// The child-process entry points, one per experiment.
#[derive(Debug, Subcommand)]
pub enum Worker {
    /// A retention workload under one allocator.
    Retention(crate::retention::WorkerArgs),
    /// An exit-experiment child.
    Exit(crate::exit::WorkerArgs),
    /// A pool parent or worker.
    Pool(crate::pool::WorkerArgs),
}

/// The message for a number outside its range: `--FLAG must be between LO and HI, got V` (or
/// `at least LO` when there is no upper bound).
pub fn range_message(
    flag: &str,
    lo: impl Display,
    hi: Option<impl Display>,
    got: impl Display,
) -> String {
    match hi {
        Some(hi) => format!("{flag} must be between {lo} and {hi}, got {got}"),
        None => format!("{flag} must be at least {lo}, got {got}"),
    }
}

/// [`Error::Usage`] with [`range_message`] unless `lo <= value` (and `value <= hi`).
pub fn check_range<T: PartialOrd + Display>(
    flag: &str,
    value: T,
    lo: T,
    hi: Option<T>,
) -> crate::error::Result<()> {
    let above = hi.as_ref().is_some_and(|hi| value > *hi);
    if value < lo || above {
        return Err(Error::Usage(range_message(flag, lo, hi, value)));
    }
    Ok(())
}

/// A clap value parser for a whole number of `flag` from `lo` to `hi` (no upper bound if
/// `None`). Anything else, a negative number or a word included, is refused with
/// [`range_message`].
///
/// ```
/// let workers = arenalab::cli::whole("--workers", 1usize, Some(64));
/// assert_eq!(workers("4"), Ok(4));
/// assert_eq!(workers("-1").unwrap_err(), "--workers must be between 1 and 64, got -1");
/// ```
pub fn whole<T>(
    flag: &'static str,
    lo: T,
    hi: Option<T>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |s: &str| match s.trim().parse::<T>() {
        Ok(v) if v >= lo && hi.is_none_or(|hi| v <= hi) => Ok(v),
        _ => Err(range_message(flag, lo, hi, s)),
    }
}

/// A clap value parser for one of `all`, by `name`; anything else is refused with the list.
///
/// ```
/// use lineup::Allocator;
/// let allocator = arenalab::cli::choice("--allocator", &Allocator::ALL, Allocator::name);
/// assert_eq!(allocator("jemalloc"), Ok(Allocator::Jemalloc));
/// assert_eq!(
///     allocator("tcmalloc").unwrap_err(),
///     "--allocator must be one of system, mimalloc, jemalloc, pymalloc, got \"tcmalloc\""
/// );
/// ```
pub fn choice<T: Copy + Send + Sync + 'static>(
    flag: &'static str,
    all: &'static [T],
    name: fn(T) -> &'static str,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        all.iter().copied().find(|&v| name(v) == s).ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|&v| name(v)).collect();
            format!("{flag} must be one of {}, got {s:?}", names.join(", "))
        })
    }
}

/// A clap error in the program's one style: `arenalab: ...` and where to read more.
fn clap_message(e: &clap::Error) -> String {
    use std::error::Error as _;
    if e.kind() == clap::error::ErrorKind::ValueValidation
        && let Some(source) = e.source()
    {
        // The parsers above already name the flag, the accepted values and the bad one.
        return source.to_string();
    }
    // clap's own wording: the first line without its "error: ", its tips, and its usage line.
    let text = e.to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("bad arguments");
    let mut out = first.strip_prefix("error: ").unwrap_or(first).to_string();
    for l in lines {
        if l.starts_with("tip:") {
            out.push_str(&format!("; {l}"));
        } else if let Some(usage) = l.strip_prefix("Usage: ") {
            let command = usage.split(" [").next().unwrap_or(usage).split(" <").next();
            out.push_str(&format!(" (usage: {usage}; see `{} --help`)", command.unwrap_or(usage)));
        }
    }
    out
}

/// Parses the command line, runs the command and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            eprintln!("arenalab: {}", clap_message(&e));
            return 2;
        }
        Err(e) => {
            let _ = e.print();
            return 0;
        }
    };
    let result = match cli.command.unwrap_or(Command::Report(Default::default())) {
        Command::Report(a) => crate::report::run(&a),
        Command::Render(a) => crate::report::render(&a),
        Command::Retention(a) => crate::retention::run(&a),
        Command::Exit(a) => crate::exit::run(&a),
        Command::Pool(a) => crate::pool::run(&a),
        Command::BenchReport(a) => crate::bench_report::run(&a),
        Command::Tour(a) => crate::tour::run(&a),
        Command::Cpython(a) => crate::cpython::run(&a),
        Command::Trace(a) => crate::trace::run(&a),
        Command::Worker(Worker::Retention(a)) => crate::retention::run_worker(&a),
        Command::Worker(Worker::Exit(a)) => crate::exit::run_worker(&a),
        Command::Worker(Worker::Pool(a)) => crate::pool::run_worker(&a),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("arenalab: {e}");
            Error::exit_code(&e)
        }
    }
}

pub mod help;

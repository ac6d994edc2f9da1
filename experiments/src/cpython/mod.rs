//! The `cpython` experiment: the seed's three questions answered by real interpreters.
//!
//! Every other experiment answers with Rust processes and a model of pymalloc; this one runs
//! the CPython interpreters installed on the machine, as child processes only (libpython is
//! never linked), on readable scripts in `experiments/python/` that a learner can also run by
//! hand:
//!
//! | part | script | question |
//! | --- | --- | --- |
//! | `retention` | `retention.py` | I deleted my big list: why didn't memory go down? |
//! | `pool` | `pool.py` | does a `multiprocessing.Pool` that is not closed keep its memory? |
//! | `exit` | `exit.py` | if I kill the Python process, is its memory released? |
//!
//! Figures are the child's own (its RSS read from `/proc/PID/smaps_rollup` by arenalab while
//! the child waits at a barrier, the interpreter's `sys._debugmallocstats()` text parsed here),
//! except in `exit`, where the question is system-wide. Interpreters are found by [`find`].
//!
//! Python processes that may outlive their parent (the pool parent and its workers) watch
//! arenalab's own life through `ARENALAB_LIFELINE=<pid>:<start time>` (set by [`crate::procs`]) and
//! leave when it ends, even by SIGKILL; the others die with arenalab through
//! `PR_SET_PDEATHSIG` like every child of [`crate::procs`].

pub mod exit;
pub mod find;
pub mod page;
pub mod pool;
pub mod retention;

use crate::error::{Error, Result};
use crate::results::Meta;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use page::render;

/// Default objects per retention run.
pub const DEFAULT_OBJECTS: u64 = 1_000_000;
/// Default MiB per pool worker.
pub const DEFAULT_POOL_MIB: u64 = 64;
/// Default MiB of objects in an exit child.
pub const DEFAULT_EXIT_MIB: u64 = 256;

/// The parts of the experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// What the interpreter keeps after `del`, phase by phase.
    Retention,
    /// `multiprocessing.Pool` workers' memory, scenario by scenario.
    Pool,
    /// Memory given back when the interpreter ends, however it ends.
    Exit,
}

/// Arguments of `arenalab cpython`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct CpythonArgs {
    /// An interpreter to run (repeatable); default: python3 and every python3.X found on PATH,
    /// in pyenv's versions and in /usr/bin, CPython 3.8 or newer.
    #[arg(long = "python", value_name = "PATH")]
    pub python: Vec<PathBuf>,
    /// Part to run (repeatable): retention, pool, exit. Default: all three.
    #[arg(long = "part", value_name = "PART", value_enum)]
    pub parts: Vec<Part>,
    /// Objects per retention run (1,000 to 50,000,000).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_OBJECTS)]
    pub objects: u64,
    /// Start method of the pool part (repeatable): fork, spawn, forkserver. Default: all three.
    #[arg(long = "start-method", value_name = "M", value_parser = ["fork", "spawn", "forkserver"])]
    pub start_methods: Vec<String>,
    /// Pool scenario to run (repeatable); default: all nine.
    #[arg(long = "scenario", value_name = "S", value_parser = pool::SCENARIOS)]
    pub scenarios: Vec<String>,
    /// MiB each pool worker holds (1 to 4096).
    #[arg(long, value_name = "M", default_value_t = DEFAULT_POOL_MIB)]
    pub pool_mib: u64,
    /// MiB of objects each exit child builds (64 to 65536: below 64 the system-wide figures
    /// are noise, as for `arenalab exit`).
    #[arg(long, value_name = "M", default_value_t = DEFAULT_EXIT_MIB)]
    pub exit_mib: u64,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
}

impl Default for CpythonArgs {
    fn default() -> Self {
        CpythonArgs {
            python: Vec::new(),
            parts: Vec::new(),
            objects: DEFAULT_OBJECTS,
            start_methods: Vec::new(),
            scenarios: Vec::new(),
            pool_mib: DEFAULT_POOL_MIB,
            exit_mib: DEFAULT_EXIT_MIB,
            json: false,
        }
    }
}

/// The sizes of one measurement (the command line's, or the report's smaller ones).
#[derive(Clone, Debug)]
struct Plan {
    parts: Vec<Part>,
    objects: u64,
    survivor_kinds: Vec<&'static str>,
    /// Retention: run every kind (not only floats) for the default interpreter only.
    all_kinds_default_only: bool,
    start_methods: Vec<String>,
    scenarios: Vec<String>,
    /// Pool part: which interpreters (indices into the found list); `None`: all.
    pool_interpreters: Option<Vec<usize>>,
    pool: pool::PoolSize,
    exit_mib: u64,
}

/// Everything `arenalab cpython` measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CpythonResults {
    /// Command, machine and date.
    pub meta: Meta,
    /// The interpreters measured and the candidates skipped.
    pub found: find::Found,
    /// Why nothing (or a part) was measured, when so.
    pub skipped_parts: Vec<String>,
    /// Objects per retention run.
    pub objects: u64,
    /// Retention runs.
    pub retention: Vec<retention::Run>,
    /// Pool: workers per pool and MiB each.
    pub pool_workers: usize,
    /// MiB each pool worker held.
    pub pool_mib: u64,
    /// killed-busy: the task's length, ms.
    pub pool_busy_ms: u64,
    /// Pool runs.
    pub pool: Vec<pool::Run>,
    /// MiB each exit child built.
    pub exit_mib: u64,
    /// Exit runs.
    pub exit: Vec<exit::Run>,
    /// Wall time of the whole measurement, seconds.
    pub elapsed_s: f64,
}

/// The folder holding the scripts: the repository's `experiments/python/`, or, when the binary
/// runs away from its source tree, a temporary copy of the scripts compiled into it.
pub fn scripts_dir() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    if dir.join("retention.py").is_file() {
        return Ok(dir);
    }
    let tmp = std::env::temp_dir().join(format!("arenalab-python-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(Error::failed(tmp.display()))?;
    for (name, text) in [
        ("retention.py", include_str!("../../python/retention.py")),
        ("pool.py", include_str!("../../python/pool.py")),
        ("exit.py", include_str!("../../python/exit.py")),
    ] {
        std::fs::write(tmp.join(name), text).map_err(Error::failed(tmp.join(name).display()))?;
    }
    Ok(tmp)
}

/// Checks the sizes; a problem is [`Error::Usage`].
pub fn validate(args: &CpythonArgs) -> Result<()> {
    crate::cli::check_range("--objects", args.objects, 1_000, Some(50_000_000))?;
    crate::cli::check_range("--pool-mib", args.pool_mib, 1, Some(4096))?;
    // The exit part's figures are system-wide, as in `arenalab exit`: below its floor the
    // machine's own noise is as large as the child (see `crate::exit::MIN_MIB`).
    crate::cli::check_range("--exit-mib", args.exit_mib, crate::exit::MIN_MIB, Some(65536))?;
    crate::fit::check_fits(args.exit_mib, 1)?;
    crate::fit::check_fits(args.pool_mib, 4)
}

fn plan_of(args: &CpythonArgs) -> Plan {
    let parts = if args.parts.is_empty() {
        vec![Part::Retention, Part::Pool, Part::Exit]
    } else {
        let mut v = args.parts.clone();
        v.dedup();
        v
    };
    let start_methods = if args.start_methods.is_empty() {
        vec!["fork".into(), "spawn".into(), "forkserver".into()]
    } else {
        args.start_methods.clone()
    };
    let scenarios = if args.scenarios.is_empty() {
        pool::SCENARIOS.iter().map(|s| s.to_string()).collect()
    } else {
        args.scenarios.clone()
    };
    Plan {
        parts,
        scenarios,
        objects: args.objects,
        survivor_kinds: vec!["floats"],
        all_kinds_default_only: false,
        start_methods,
        pool_interpreters: None,
        pool: pool::PoolSize { workers: 4, mib: args.pool_mib, observe_ms: 2000, busy_ms: 3000 },
        exit_mib: args.exit_mib,
    }
}

/// The report's plan: small sizes, so every interpreter fits in about a minute. The pool part
/// runs every interpreter with `fork`; the default `python3` also with `spawn` and
/// `forkserver`, the newest version also with `spawn`.
fn report_plan() -> Plan {
    Plan {
        parts: vec![Part::Retention, Part::Pool, Part::Exit],
        objects: 100_000,
        survivor_kinds: vec!["floats"],
        all_kinds_default_only: true,
        start_methods: vec!["fork".into(), "spawn".into(), "forkserver".into()],
        scenarios: pool::SCENARIOS.iter().map(|s| s.to_string()).collect(),
        pool_interpreters: Some(Vec::new()),
        pool: pool::PoolSize { workers: 4, mib: 16, observe_ms: 600, busy_ms: 600 },
        exit_mib: crate::exit::MIN_MIB,
    }
}

/// The start methods the report's pool part runs for `py`: every one of `all` for the default
/// `python3`, `fork` and `spawn` for the newest version, `fork` for the others.
fn report_methods(py: &find::Interpreter, newest: bool, all: &[String]) -> Vec<String> {
    all.iter()
        .filter(|m| py.is_default || m.as_str() == "fork" || (newest && m.as_str() == "spawn"))
        .cloned()
        .collect()
}

fn measure_plan(found: find::Found, plan: &Plan, command: &str) -> Result<CpythonResults> {
    let started = Instant::now();
    let mut out = CpythonResults {
        meta: Meta::collect(command),
        found,
        skipped_parts: Vec::new(),
        objects: plan.objects,
        retention: Vec::new(),
        pool_workers: plan.pool.workers,
        pool_mib: plan.pool.mib,
        pool_busy_ms: plan.pool.busy_ms,
        pool: Vec::new(),
        exit_mib: plan.exit_mib,
        exit: Vec::new(),
        elapsed_s: 0.0,
    };
    let interps = out.found.interpreters.clone();
    if interps.is_empty() {
        out.skipped_parts.push(no_python_message(&out.found));
        return Ok(out);
    }
    let scripts = scripts_dir()?;
    let scratch = std::env::temp_dir().join(format!("arenalab-cpython-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(Error::failed(scratch.display()))?;
    let progress = |what: String| eprintln!("      cpython {what}");
    if plan.parts.contains(&Part::Retention) {
        let script = scripts.join("retention.py");
        for py in &interps {
            progress(format!("retention {}", py.version));
            let detail = !plan.all_kinds_default_only || py.is_default;
            for alloc in ["pymalloc", "malloc"] {
                for kind in retention::KINDS.iter().filter(|k| detail || **k == "floats") {
                    out.retention.push(retention::run_one(
                        py,
                        &script,
                        alloc,
                        kind,
                        "none",
                        plan.objects,
                        &scratch,
                    )?);
                }
                for kind in plan.survivor_kinds.iter().filter(|_| detail) {
                    for surv in ["spread", "packed"] {
                        out.retention.push(retention::run_one(
                            py,
                            &script,
                            alloc,
                            kind,
                            surv,
                            plan.objects,
                            &scratch,
                        )?);
                    }
                }
            }
        }
    }
    if plan.parts.contains(&Part::Pool) {
        let script = scripts.join("pool.py");
        let newest = interps.last().map(|i| i.executable.clone());
        for py in &interps {
            let methods = match &plan.pool_interpreters {
                None => plan.start_methods.clone(),
                Some(_) => {
                    report_methods(py, newest.as_ref() == Some(&py.executable), &plan.start_methods)
                }
            };
            for method in &methods {
                progress(format!("pool {} {method}", py.version));
                out.pool.extend(pool::run_all(py, &script, method, &plan.scenarios, plan.pool)?);
            }
        }
    }
    if plan.parts.contains(&Part::Exit) {
        let script = scripts.join("exit.py");
        for py in &interps {
            progress(format!("exit {}", py.version));
            for ending in exit::ENDINGS {
                out.exit.push(exit::run_one(py, &script, ending, plan.exit_mib)?);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    out.elapsed_s = started.elapsed().as_secs_f64();
    Ok(out)
}

fn no_python_message(found: &find::Found) -> String {
    let mut s = "no usable CPython 3.8 or newer was found (looked for python3 and python3.X on \
                 PATH, in pyenv's versions and in /usr/bin)"
        .to_string();
    if !found.skipped.is_empty() {
        s.push_str("; skipped: ");
        let list: Vec<String> =
            found.skipped.iter().map(|k| format!("{} ({})", k.path.display(), k.reason)).collect();
        s.push_str(&list.join(", "));
    }
    s
}

fn command_line(args: &CpythonArgs) -> String {
    let mut s = "arenalab cpython".to_string();
    for p in &args.python {
        s.push_str(&format!(" --python {}", p.display()));
    }
    for p in &args.parts {
        s.push_str(match p {
            Part::Retention => " --part retention",
            Part::Pool => " --part pool",
            Part::Exit => " --part exit",
        });
    }
    if args.objects != DEFAULT_OBJECTS {
        s.push_str(&format!(" --objects {}", args.objects));
    }
    for m in &args.start_methods {
        s.push_str(&format!(" --start-method {m}"));
    }
    for m in &args.scenarios {
        s.push_str(&format!(" --scenario {m}"));
    }
    if args.pool_mib != DEFAULT_POOL_MIB {
        s.push_str(&format!(" --pool-mib {}", args.pool_mib));
    }
    if args.exit_mib != DEFAULT_EXIT_MIB {
        s.push_str(&format!(" --exit-mib {}", args.exit_mib));
    }
    s
}

/// Measures with the command line's sizes. No usable Python is [`Error::Usage`].
pub fn measure(args: &CpythonArgs) -> Result<CpythonResults> {
    validate(args)?;
    let found = find::find(&args.python)?;
    if found.interpreters.is_empty() {
        return Err(Error::Usage(no_python_message(&found)));
    }
    measure_plan(found, &plan_of(args), &command_line(args))
}

/// Runs `arenalab cpython`.
pub fn run(args: &CpythonArgs) -> Result<()> {
    let results = measure(args)?;
    if args.json {
        print!("{}", crate::results::to_json(&results)?);
        return Ok(());
    }
    print!("{}", page::text_summary(&results));
    println!("Measured in {:.1} s.", results.elapsed_s);
    Ok(())
}

/// `arenalab report`'s step: measures at report size and saves `docs/results/cpython.json`.
/// With no usable Python the results say so (and the page shows what was skipped); nothing
/// here stops the rest of the report.
pub fn report_step(docs: &Path, command: &str) -> Result<()> {
    let found = find::find(&[]).unwrap_or_default();
    let results = match measure_plan(found, &report_plan(), command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("      cpython: {e}; its page keeps the previous results");
            return Ok(());
        }
    };
    for s in &results.skipped_parts {
        eprintln!("      cpython skipped: {s}");
    }
    crate::results::save(docs, "cpython", &results)?;
    Ok(())
}

/// The real interpreters' verdicts for claims.md and docs/README.md, in claims order ((a)
/// exit, (b) the list, (c) the pool); `None` where there is no measurement.
pub fn site_verdicts(r: Option<&CpythonResults>) -> [Option<String>; 3] {
    match r {
        Some(r) => page::verdicts(r),
        None => [None, None, None],
    }
}

/// The paragraph claims.md and docs/README.md put first under a claim: the real
/// interpreters' figures, or that they were not measured.
pub fn site_line(verdict: Option<&str>) -> String {
    match verdict {
        Some(v) => format!(
            "**Real CPython:** {v} See [cpython.md](cpython.md).\n\n**The mechanism (Rust \
             experiments and the pymalloc model):**\n\n"
        ),
        None => "_Real CPython: not measured (no usable interpreter, or `arenalab cpython` not \
                 run yet)._\n\n**The mechanism (Rust experiments and the pymalloc model):**\n\n"
            .to_string(),
    }
}

/// `arenalab cpython --help`.
pub const HELP: &str = "\
The seed's three questions answered by real CPython interpreters, run as child processes on
the scripts in experiments/python/ (each runnable by hand; its docstring says how).

Interpreters: python3 and every python3.X on PATH, every $(pyenv root)/versions/*/bin/python3.X
and /usr/bin/python3.X; the same executable is measured once; CPython 3.8 or newer only.
--python PATH (repeatable) replaces the search. No usable interpreter: exit code 2.

Parts (--part, repeatable; default all three):
  retention  For PYTHONMALLOC=pymalloc and =malloc, one child per object kind (floats, 28-byte
             ints, 2-tuples, 100-byte bytes, a dict of N ints): phases baseline, build N,
             del lst[::2], refill N/2, del lst, gc.collect(), malloc_trim(0); and for floats,
             1 in 1000 kept (spread, packed). At each phase the child waits while arenalab reads
             its /proc/PID/smaps_rollup, and its sys._debugmallocstats() text (arenas allocated,
             reclaimed, highwater, current; pools; blocks). The pymalloc model runs the same
             shape beside it. --objects N (1000 to 50000000, default 1000000).
  pool       multiprocessing.Pool(4) whose tasks leave each worker holding --pool-mib MiB
             (1 to 4096, default 64); scenarios open-idle, close-join, terminate, with-block,
             del-gc, maxtasks1, parent-exits, killed-idle, killed-busy (3 s task); --scenario S
             (repeatable) picks some; for each --start-method (fork, spawn, forkserver;
             default all). Workers' count and summed VmRSS every 10 ms, time until none is
             left; leftovers killed and reaped.
  exit       a child builds --exit-mib MiB of floats (64 to 65536, default 256) and ends by a
             normal exit, os._exit(0), an unhandled exception, SIGKILL or SIGTERM: end to
             zombie, whether the zombie holds memory, memory back (MemAvailable plus per-CPU
             free pages) before the reap.

Time: at the defaults about 1 to 3 minutes per interpreter (the pool part dominates);
`arenalab report` runs it smaller (100,000 objects; pools of 16 MiB, every interpreter with
fork, python3 also with spawn and forkserver, the newest version also with spawn; exit at
64 MiB). Output: tables, or --json; the report writes
docs/results/cpython.json and docs/cpython.md.";

/// The examples at the end of `arenalab cpython --help`.
pub const EXAMPLES: &str = "\
Examples:
  arenalab cpython --part retention --objects 200000
  arenalab cpython --python /usr/bin/python3.11 --part pool --start-method spawn --pool-mib 16
  arenalab cpython --part exit --exit-mib 512 --json > exit.json";

impl crate::results::Checked for CpythonResults {
    /// The page turns allocator names, versions and start methods into chart file names, and
    /// reads the first phase of a retention run as its baseline.
    fn check(&self) -> std::result::Result<(), String> {
        let version_ok = |v: &str| {
            !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !v.contains("..")
        };
        for run in &self.retention {
            crate::results::check_slug("retention allocator", &run.allocator)?;
            if !version_ok(&run.version) {
                return Err(format!("retention run version {:?} is not a version", run.version));
            }
            if run.phases.is_empty() {
                return Err(format!(
                    "retention run {} {} {} has no phases",
                    run.version, run.allocator, run.kind
                ));
            }
        }
        for run in &self.pool {
            crate::results::check_slug("pool start method", &run.start_method)?;
            if !version_ok(&run.version) {
                return Err(format!("pool run version {:?} is not a version", run.version));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The help text gives the report's sizes in words; they must be the plan's own.
    #[test]
    fn the_help_states_the_report_plan_sizes() {
        let p = report_plan();
        let help = HELP.replace('\n', " ");
        assert!(help.contains(&format!("{} objects", crate::render::group_digits(p.objects))));
        assert!(help.contains(&format!("pools of {} MiB", p.pool.mib)));
        assert!(help.contains(&format!("exit at {} MiB", p.exit_mib)));
        assert_eq!(p.start_methods, ["fork", "spawn", "forkserver"]);
    }
}

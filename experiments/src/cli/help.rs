//! The long help (`--help`) of each subcommand: a paragraph on the experiment (`*_ABOUT`), then
//! a generated part (the functions) listing what each workload, ending or scenario does from
//! the enums' own descriptions, the defaults and ranges from the code's constants, how long a
//! run takes, where its output goes, and examples.
//!
//! The run times are rough figures measured on the 2-core machine the results in docs/ come
//! from, while other jobs shared it (the quiet-machine figure is the `elapsed` of the committed
//! docs/results; the busy one, a run timed while other builds were running).

use crate::exit::{self, Ending};
use crate::pool::{self, Scenario};
use crate::retention::{self, workloads::Workload};
use clap::ValueEnum;
use lineup::Allocator;

/// The allocator names, comma-separated.
fn allocator_names() -> String {
    Allocator::ALL.map(Allocator::name).join(", ")
}

/// `  name  description` lines, the names padded to one column, descriptions wrapped.
fn list<'a>(items: impl IntoIterator<Item = (&'a str, String)>) -> String {
    let items: Vec<(&str, String)> = items.into_iter().collect();
    let width = items.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (name, text) in items {
        let mut line = format!("  {name:width$}  ");
        let indent = line.len();
        let mut col = indent;
        for word in text.split_whitespace() {
            if col + word.len() > 96 && col > indent {
                out.push_str(line.trim_end());
                out.push('\n');
                line = " ".repeat(indent);
                col = indent;
            }
            line.push_str(word);
            line.push(' ');
            col += word.len() + 1;
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Wraps every line longer than 96 columns at spaces; continuation lines keep the line's
/// indentation (two more under a `--flag` line).
pub fn wrap(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let lead = line.len() - line.trim_start().len();
        let indent = if line.trim_start().starts_with("--") { lead + 2 } else { lead };
        let mut col = 0;
        for (i, word) in line.split(' ').enumerate() {
            if i > 0 {
                if col + 1 + word.len() > 96 && col > indent {
                    out.push('\n');
                    out.push_str(&" ".repeat(indent));
                    col = indent;
                } else {
                    out.push(' ');
                    col += 1;
                }
            }
            out.push_str(word);
            col += word.len();
        }
        out.push('\n');
    }
    out
}

/// The help text of a `ValueEnum` value: its doc comment.
fn value_help<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value().and_then(|p| p.get_help().map(|h| h.to_string())).unwrap_or_default()
}

fn examples(lines: &[&str]) -> String {
    let mut out = String::from("Examples:\n");
    for l in lines {
        out.push_str(&format!("  {l}\n"));
    }
    out
}

/// `arenalab --help`'s paragraph.
pub const ARENALAB_ABOUT: &str = "arenalab: where freed memory goes, measured.\n\n\
Freed memory is kept by the allocator for reuse, given back to the operating system while the \
process runs, or taken back by the kernel when the process ends. arenalab measures which, side \
by side, for glibc malloc (system), mimalloc, jemalloc and a model of CPython's pymalloc, and \
asks the real CPython interpreters on the machine the same questions (`cpython`). `trace` records \
what a real interpreter asks of pymalloc and replays it on the model, counter for counter: the \
evidence that the model is CPython's behaviour. Every measurement runs in fresh child \
processes; the kernel's figures (/proc) are set beside the allocator's own counters.";

/// The rest of `arenalab --help`.
pub fn arenalab() -> String {
    format!(
        "With no subcommand, arenalab runs `report` (what `cargo run --release` does): every \
         experiment, then docs/ regenerated. `arenalab <command> --help` explains each.\n\n{}",
        examples(&[
            "arenalab                       # = arenalab report: measure everything, rewrite docs/",
            "arenalab retention --workload seed",
            "arenalab exit --allocator pymalloc --ending sigkill",
            "arenalab pool --scenario parent-killed-none",
            "arenalab cpython --part retention",
            "arenalab tour --preset 32c-4k-256k",
            "arenalab trace record -o seed.trace -- experiments/python/trace_seed.py floats 100000",
            "arenalab render                # docs/ again from docs/results/*.json, no measuring",
        ])
    )
}

/// `retention --help`'s paragraph.
pub const RETENTION_ABOUT: &str = "What each allocator keeps after free, side by side.\n\n\
\"I deleted my big list; why is my process still using the memory?\" For every allocator and \
workload a fresh child process allocates N objects of S bytes, frees them in the workload's \
pattern, and after each phase records its RSS as the kernel counts it, beside the allocator's \
own statistics; the last phase calls the allocator's release function (malloc_trim, \
mi_collect, jemalloc's purge, pymalloc's arena release). What to look for: the phases after a \
free where RSS stays high (the allocator keeps the memory for reuse), which allocator gives \
memory back on its own and which only on release, and how a few surviving objects (survivors, \
every-other) pin whole pages or pymalloc arenas.";

/// The rest of `retention --help`.
pub fn retention() -> String {
    let workloads = list(Workload::ALL.map(|w| (w.name(), w.description().replace('`', ""))));
    let minimums = list(Workload::ALL.into_iter().filter_map(|w| {
        let n = retention::minimum_objects(w, retention::DEFAULT_SIZE)?;
        let why = retention::minimum_why(w)?;
        Some((w.name(), format!("at least {n} objects at the default size: {why}")))
    }));
    format!(
        "Workloads (--workload W, repeatable; default: all):\n{workloads}\n\
         Allocators (--allocator A, repeatable; default: all): {alloc}. policy runs under \
         pymalloc only.\n\n\
         {presets}\n\
         Defaults and ranges:\n\
         \x20 --objects N  default {objects}; from 1 to {max_objects}\n\
         \x20 --size S     default {size} bytes; from 1 to {max_size} (64 MiB)\n\
         \x20 Some workloads need enough objects to show their effect:\n{minimums}\
         \x20 The memory a run needs (each allocator's real block for S bytes, its per-block \
         overhead, plus the bookkeeping arrays) must fit in MemAvailable.\n\n\
         Time and output: at the defaults, 28 runs of about 0.2 s each: about 5 s on 2 idle \
         cores, 13 s on a busy machine. Prints one table per workload on stdout: RSS in MiB \
         above the run's baseline after each phase (negative: below it, when the allocator \
         returned memory it held before the baseline). --json prints one JSON document instead \
         (meta: command, machine and date; objects, size, runs, elapsed_ms), the shape of \
         docs/results/retention.json. Nothing is written to disk: `arenalab report` saves and \
         renders docs/retention.md.\n\n{examples}",
        alloc = allocator_names(),
        presets = crate::preset::help(),
        objects = retention::DEFAULT_OBJECTS,
        max_objects = retention::MAX_OBJECTS,
        size = retention::DEFAULT_SIZE,
        max_size = retention::MAX_SIZE,
        examples = examples(&[
            "arenalab retention",
            "arenalab retention --workload seed --allocator system --allocator pymalloc",
            "arenalab retention --workload survivors --objects 5000000 --size 64",
            "arenalab retention --workload mixed --json > mixed.json",
            "arenalab retention --allocator pymalloc --preset 32c-4k-256k",
            "arenalab retention --allocator pymalloc --python python3.9",
        ]),
    )
}

/// `tour --help`'s paragraph.
pub const TOUR_ABOUT: &str = "The pymalloc model step by step, with any CPython's layout.\n\n\
Runs arenalab's model of pymalloc (in this process; no child, nothing measured from the kernel) \
through the tour of docs/pymalloc.md: allocate small objects with medium ones interleaved, free \
every other small one, free the medium ones, refill with another size, free everything. After \
each step it prints how many arenas are mapped and reclaimed, the pools by state (used, full, \
empty, never carved), the blocks in use and the pools of each size class. What to look for: \
how little every-other free gives back (every pool keeps live blocks), how empty pools are \
reused by another size class, and how the layout (pool and arena size, the keep-one rule) \
changes the arena counts.";

/// The rest of `tour --help`.
pub fn tour() -> String {
    format!(
        "{presets}\n\
         Output: a table of the steps, then each step's caption and its pools per size class \
         (block size: pools), on stdout. --json prints one JSON document instead (meta: command, \
         machine and date; layout; steps with their occupancy maps and \
         sys._debugmallocstats()-style reports), the shape of docs/results/pymalloc.json. It \
         takes well under a second. Nothing is written to disk: `arenalab report` saves the \
         default layout's tour and renders docs/pymalloc.md.\n\n{examples}",
        presets = crate::preset::help(),
        examples = examples(&[
            "arenalab tour",
            "arenalab tour --preset 32c-4k-256k",
            "arenalab tour --python python3.9",
            "arenalab tour --preset 64c-4k-256k --json > tour.json",
        ]),
    )
}

/// `exit --help`'s paragraph.
pub const EXIT_ABOUT: &str = "Memory given back when a process ends, however it ends.\n\n\
\"If I kill the process, is the memory released?\" For each allocator and ending, a fresh child \
allocates --mib MiB of small objects, writes every byte and waits; the parent ends it (a line \
on its stdin, or a signal) and samples every millisecond the system's MemAvailable, the free \
pages on per-CPU lists and the child's state, reading MemAvailable once more while the child is \
an unreaped zombie. What to look for: every ending gives all the memory back, before the \
zombie is reaped (\"back before reap\" near 100 %); the endings that free object by object \
(free-return, panic) take longer; the zombie holds no RSS.";

/// The rest of `exit --help`.
pub fn exit() -> String {
    let endings = list(Ending::ALL.iter().map(|e| (e.name(), value_help(e))));
    format!(
        "Endings (--ending E, repeatable; default: all {n}):\n{endings}\n\
         Allocators (--allocator A, repeatable; default: all): {alloc}.\n\n\
         Defaults and ranges:\n\
         \x20 --mib M      default {mib}; at least {min_mib}, at most what fits in MemAvailable \
         (1.5 × M + 256 MiB). Below {min_mib} MiB the system-wide figures cannot resolve the \
         release: MemAvailable plus the per-CPU free pages moved by a median 5 MiB (18 MiB at \
         the 90th percentile) within 50 ms on the busy 2-core machine this was measured on, \
         a third of a 16 MiB child and more than half of an 8 MiB one.\n\
         \x20 --repeats R  default {repeats}; at least 1. The table shows the median and range \
         of R runs per cell.\n\n\
         Time and output: at the defaults, {cells} runs (4 allocators × {n} endings × {repeats}): \
         about 25 s on 2 idle cores, 50 s on a busy machine; time grows with M. Prints a table on \
         stdout (ms from the end to zombie and to memory back, share back before reap, peak \
         RSS), then the release rule; --json prints one JSON document instead (meta: command, \
         machine and date, then every run), the shape of docs/results/exit.json. Nothing is \
         written to disk: `arenalab report` saves and renders docs/process-exit.md.\n\n\
         {examples}",
        n = Ending::ALL.len(),
        alloc = allocator_names(),
        mib = exit::DEFAULT_MIB,
        min_mib = exit::MIN_MIB,
        repeats = exit::DEFAULT_REPEATS,
        cells = Allocator::ALL.len() * Ending::ALL.len() * exit::DEFAULT_REPEATS,
        examples = examples(&[
            "arenalab exit",
            "arenalab exit --allocator pymalloc --ending free-return --ending sigkill",
            "arenalab exit --mib 1024 --repeats 5",
            "arenalab exit --json > exit.json",
        ]),
    )
}

/// `pool --help`'s paragraph.
pub const POOL_ABOUT: &str = "Memory held by worker-process pools, closed properly or not.\n\n\
\"Does an unclosed worker pool keep its memory?\" A pool of --workers processes each holding \
--mib MiB is opened, then closed, dropped or orphaned in each scenario, while the experiment \
samples every 10 ms how many workers are alive and their summed RSS. What to look for: memory \
comes back only when the workers end, never while they live; a handle dropped without closing \
leaves its workers (and their memory) behind, and so does a parent killed while its workers \
have no way to notice. arenalab cleans up every leftover worker itself at the end.";

/// The rest of `pool --help`.
pub fn pool() -> String {
    let scenarios = list(Scenario::ALL.iter().map(|s| (s.name(), s.description().to_string())));
    format!(
        "Scenarios (--scenario S, repeatable; default: all {n}):\n{scenarios}\n\
         Defaults and ranges:\n\
         \x20 --workers K    default {workers}; from 1 to {max_workers}\n\
         \x20 --mib M        default {mib}; at least 1, at most what K workers fit in \
         MemAvailable (K × 1.5 × M + 256 MiB)\n\
         \x20 --allocator A  default {alloc_default}; one of {alloc}. It does not change when \
         memory comes back: the worker's end does.\n\n\
         Time and output: at the defaults, about 6 s on 2 idle cores, 9 s on a busy machine \
         (each scenario watches its pool for about a second). Prints a table on stdout \
         (workers alive and their RSS at the end of the observation, time to zero, workers \
         left for clean-up); --json prints one JSON document instead (meta: command, machine \
         and date, then every scenario's timeline), the shape of docs/results/pool.json. \
         Nothing is written to disk: `arenalab report` saves and renders \
         docs/process-pool.md.\n\n{examples}",
        n = Scenario::ALL.len(),
        workers = pool::DEFAULT_WORKERS,
        max_workers = pool::MAX_WORKERS,
        mib = pool::DEFAULT_MIB,
        alloc_default = Allocator::System.name(),
        alloc = allocator_names(),
        examples = examples(&[
            "arenalab pool",
            "arenalab pool --scenario drop-naive --scenario drop-correct",
            "arenalab pool --workers 8 --mib 128 --allocator jemalloc",
            "arenalab pool --json > pool.json",
        ]),
    )
}

/// `report --help`'s paragraph.
pub const REPORT_ABOUT: &str = "Run every experiment at default sizes and regenerate docs/.\n\n\
What `cargo run --release` runs: retention, exit and pool at their default sizes, the pymalloc \
model step by step, and criterion's benchmark results if there are any; each one's results \
are saved as docs/results/<name>.json (with the machine and date), then every page of docs/ is \
rendered from those files.";

/// Where criterion's results are read from by default, in words and for this environment.
fn criterion_default() -> String {
    format!(
        "--criterion-dir defaults to $CARGO_TARGET_DIR/criterion when CARGO_TARGET_DIR is set, \
         else the workspace's target/criterion (here: {}).",
        crate::bench_report::default_criterion_dir().display()
    )
}

/// The rest of `report --help`.
pub fn report() -> String {
    format!(
        "{criterion} Without benchmark results, docs/benchmarks.md is left as it is.\n\n\
         Time and output: about 40 s on 2 idle cores, 1 to 2 minutes on a busy machine, once built. \
         Progress goes to stderr. It rewrites the committed files in docs/ (results/*.json, \
         *.md, *.svg) with this machine's measurements; `git diff docs/` shows what changed \
         and `git checkout docs/` undoes it.\n\n{examples}",
        criterion = criterion_default(),
        examples = examples(&[
            "cargo run --release                  # the same as: arenalab report",
            "arenalab report --docs /tmp/docs     # leave the committed docs/ alone",
            "arenalab report --criterion-dir other-target/criterion",
        ]),
    )
}

/// `render --help`'s paragraph.
pub const RENDER_ABOUT: &str = "Re-render docs/ from the saved results JSON only (no \
measuring).\n\n\
Reads docs/results/<name>.json (retention, exit, pool, pymalloc, benchmarks) and writes every \
page and chart of docs/ from them: the second half of `report`. A test renders the committed \
results and compares them with the committed pages, so this is how a change to the rendering \
reaches docs/.";

/// The rest of `render --help`.
pub fn render() -> String {
    format!(
        "Time and output: well under a second. Writes docs/*.md and their SVG charts and prints the \
         path of each page written; `git checkout docs/` undoes it.\n\n{}",
        examples(&["arenalab render", "arenalab render --docs /tmp/docs"]),
    )
}

/// `bench-report --help`'s paragraph.
pub const BENCH_REPORT_ABOUT: &str = "Turn criterion's results into docs/benchmarks.md.\n\n\
`cargo bench` times the allocators in criterion benchmarks (see benches/README.md); this reads \
criterion's estimates (new/estimates.json of every benchmark), saves them as \
docs/results/benchmarks.json and renders docs/benchmarks.md with its charts. Compare \
allocators within one run as ratios, not across machines.\n\n\
The page says which clock timed each benchmark (ARENALAB_BENCH_CLOCK=wall or thread-cpu when \
running `cargo bench`, recorded in criterion's arenalab-clock.log), and shows the callgrind \
instruction counts per alloc+free pair of docs/results/instructions.json, written by \
`cargo run --release -p arenalab-benches --bin instructions`.";

/// The rest of `bench-report --help`.
pub fn bench_report() -> String {
    format!(
        "{criterion}\n\n\
         Time and output: well under a second (the benchmarks take many minutes). Writes \
         docs/results/benchmarks.json, docs/benchmarks.md and its charts (--docs elsewhere); \
         with --render-only, re-renders from the saved JSON without reading criterion.\n\n\
         {examples}",
        criterion = criterion_default(),
        examples = examples(&[
            "cargo bench && cargo run --release -- bench-report",
            "ARENALAB_BENCH_CLOCK=thread-cpu cargo bench && cargo run --release -- bench-report",
            "arenalab bench-report --render-only",
            "arenalab bench-report --criterion-dir /tmp/target/criterion --docs /tmp/docs",
        ]),
    )
}

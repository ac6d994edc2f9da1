//! `instructions`: instructions per alloc+free pair, counted under callgrind.
//!
//! Times on a shared machine move with the neighbours' load; the instructions a pattern
//! executes do not. For each (pattern, contender) this program re-runs itself twice under
//! `valgrind --tool=callgrind`, as `instructions __count PATTERN CONTENDER UNITS`: once with
//! `N` repetitions of the pattern and once with `2N`. Only [`arenalab_counted_loop`] is counted
//! (`--toggle-collect`), and the figure is
//!
//! ```text
//! instructions per pair = (Ir(2N) - Ir(N)) / (N × pairs per repetition)
//! ```
//!
//! so the one-time costs of the first repetition (mapping the first arena, lazy setup inside an
//! allocator) cancel and the steady state is left. Each count runs in a fresh process, so no
//! contender sees another's leftovers. The contenders are the benches' [`Contender`]s plus a
//! harness-only `baseline` that hands out one static buffer: its count is the loop and the
//! writes to each block, and a contender's count minus it is the allocator's share.
//!
//! The results go to `docs/results/instructions.json` in arenalab's results format
//! ([`arenalab::bench_instr`]), which `arenalab bench-report` renders into docs/benchmarks.md.

use arenalab::bench_instr::{self, InstrResults, InstrRow, Pattern};
use arenalab::render::text_table;
use arenalab::results::{self, Meta};
use arenalab_benches::contender::{self, Contender, Global};
use arenalab_benches::{Visit, churn, order, size};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The seed of every random input: the benches' own, so the churn steps are the same.
const SEED: u64 = 0x5eed_a110c;

/// The block size of the single-pair patterns.
const PAIR_SIZE: usize = 32;

/// The block size of `pair-1024`: above the small-object threshold.
const RAW_SIZE: usize = 1024;

/// The hidden subcommand the parent runs under valgrind.
const CHILD: &str = "__count";

/// A pattern: its name, what one repetition does, pairs per repetition, and `N`.
struct Spec {
    name: &'static str,
    what: &'static str,
    pairs_per_unit: u64,
    /// `N` by default: enough repetitions that the count is the steady state, few enough that
    /// the whole run stays near a minute under valgrind on a shared machine.
    units: u64,
}

const PATTERNS: [Spec; 5] = [
    Spec {
        name: "pair-fresh",
        what: "one 32 B alloc+free in a fresh heap (`size/pair/32`). For pymalloc every pair \
               empties its pool, which goes back to the arena and is taken again: the \
               empty-pool cycle. CPython's real obmalloc is fresh up to 3.11 (its libpython \
               loaded, never initialised); from 3.12 it can only allocate once initialised, \
               so its row there is the warm fast path",
        pairs_per_unit: 1,
        units: 2_000,
    },
    Spec {
        name: "pair-warm",
        what: "one 32 B alloc+free in a warm heap, holding one live block per size class (16 to \
               512 B) as an initialised interpreter does: the fast path",
        pairs_per_unit: 1,
        units: 2_000,
    },
    Spec {
        name: "pair-1024",
        what: "one 1024 B alloc+free (`size/pair/1024`): above pymalloc's 512 B threshold, where \
               the model and CPython both hand the request to glibc `malloc`",
        pairs_per_unit: 1,
        units: 2_000,
    },
    Spec {
        name: "lifo-1000",
        what: "1000 blocks of 64 B allocated, then freed last-first (`order/lifo/1000`)",
        pairs_per_unit: 1_000,
        units: 4,
    },
    Spec {
        name: "churn-1000",
        what: "1000 live blocks of 8-512 B; each step frees a random one and allocates a random \
               size in its place (`churn/random/1000`, 10000 steps per repetition)",
        pairs_per_unit: churn::STEPS as u64,
        units: 2,
    },
];

/// The harness-only contender.
const BASELINE: &str = bench_instr::BASELINE;

/// The contenders counted by default, in the order the table shows them (the baseline last).
/// A contender added here must also have an arm in [`with_contender`].
const CONTENDERS: [&str; 5] = [contender::HEAP_NAME, "pymalloc", "mimalloc", "system", BASELINE];

/// The largest block any pattern asks for (churn's sizes go up to pymalloc's threshold).
const BASELINE_BYTES: usize = 4096;

/// The harness alone: every allocation is the same static buffer, every free does nothing.
/// Blocks overlap, which is harmless: the patterns only write to their blocks.
struct Baseline {
    buf: Box<[u8; BASELINE_BYTES]>,
}

impl Contender for Baseline {
    #[inline]
    fn alloc(&mut self, size: usize) -> *mut u8 {
        debug_assert!(size <= BASELINE_BYTES);
        self.buf.as_mut_ptr()
    }

    #[inline]
    unsafe fn free(&mut self, _p: *mut u8, _size: usize) {}
}

/// Runs `v` on the contender named `name`; `false` if there is none by that name.
/// `fresh`: the pattern wants an allocator in its initial state (only the real obmalloc has a
/// second way to be made for that).
fn with_contender<V: Visit>(name: &str, fresh: bool, v: &mut V) -> bool {
    match name {
        BASELINE => v.visit(name, &mut Baseline { buf: Box::new([0; BASELINE_BYTES]) }),
        contender::HEAP_NAME => v.visit(name, &mut contender::heap()),
        // CPython's real obmalloc. For `pair-fresh`, up to 3.11, its libpython loaded and never
        // initialised (a fresh obmalloc, no arena yet); otherwise an initialised interpreter,
        // which is warm. Those that cannot be loaded are not contenders.
        _ if name.starts_with(contender::OBMALLOC_PREFIX) && fresh => {
            let python =
                contender::chosen(&std::env::var(contender::PYTHON_ENV).unwrap_or_default())
                    .0
                    .into_iter()
                    .find(|p| name == format!("{}{}", contender::OBMALLOC_PREFIX, p.major_minor()));
            match python.map(|p| obmalloc::FreshHeap::load(&p)) {
                Some(Ok(mut heap)) => v.visit(name, &mut heap),
                Some(Err(_)) => return with_contender(name, false, v),
                None => return false,
            }
        }
        _ if name.starts_with(contender::OBMALLOC_PREFIX) => {
            let Some(real) = contender::real_obmallocs().iter().find(|r| r.name == name) else {
                return false;
            };
            match real.obmalloc.heap() {
                Ok(mut heap) => v.visit(name, &mut heap),
                Err(e) => {
                    eprintln!("{name}: {e}");
                    return false;
                }
            }
        }
        _ => match lineup::Allocator::ALL.into_iter().find(|a| a.name() == name) {
            Some(a) => v.visit(name, &mut Global::new(a)),
            None => return false,
        },
    }
    true
}

/// The loop callgrind counts (`--toggle-collect=*arenalab_counted_loop*`): `units` calls of
/// `step`, and nothing else. Never inlined, so that it exists under its own name.
#[inline(never)]
fn arenalab_counted_loop(units: u64, mut step: impl FnMut()) {
    for _ in 0..units {
        step();
    }
}

/// The child's work: set the pattern up (not counted), run it `units` times (counted).
struct Count {
    pattern: &'static str,
    units: u64,
}

impl Visit for Count {
    fn visit<C: Contender>(&mut self, _name: &str, c: &mut C) {
        let units = self.units;
        match self.pattern {
            "pair-fresh" => arenalab_counted_loop(units, || size::pair(c, black_box(PAIR_SIZE))),
            "pair-warm" => {
                let config = pymalloc::Config::CPYTHON_3_10;
                let sizes: Vec<usize> =
                    (1..=config.num_classes()).map(|i| i * config.alignment()).collect();
                let live: Vec<*mut u8> = sizes.iter().map(|&s| c.alloc(s)).collect();
                arenalab_counted_loop(units, || size::pair(c, black_box(PAIR_SIZE)));
                for (p, s) in live.into_iter().zip(sizes) {
                    // SAFETY: each block was allocated above on `c` with this size, freed once.
                    unsafe { c.free(p, s) };
                }
            }
            "pair-1024" => arenalab_counted_loop(units, || size::pair(c, black_box(RAW_SIZE))),
            "lifo-1000" => {
                let mut batch = order::Batch::new(order::Order::Lifo, 1_000, SEED);
                arenalab_counted_loop(units, || batch.run(c));
            }
            "churn-1000" => {
                let plan = churn::Plan::new(1_000, churn::STEPS, SEED);
                let mut set = churn::WorkingSet::fill(c, &plan);
                arenalab_counted_loop(units, || set.churn(&plan.steps));
            }
            other => unreachable!("pattern {other} was checked by the parent"),
        }
    }
}

/// Bad input: the message and exit code 2.
struct Usage(String);

/// What the parent was asked to do.
struct Args {
    patterns: Vec<&'static Spec>,
    contenders: Vec<String>,
    units: Option<u64>,
    out: PathBuf,
    valgrind: String,
}

fn default_out() -> PathBuf {
    let benches = Path::new(env!("CARGO_MANIFEST_DIR"));
    benches
        .parent()
        .unwrap_or(benches)
        .join("docs")
        .join("results")
        .join(format!("{}.json", bench_instr::RESULTS_NAME))
}

fn pattern_names() -> String {
    PATTERNS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

fn contender_names() -> String {
    let mut names: Vec<&str> = CONTENDERS.to_vec();
    names.extend(contender::real_obmallocs().iter().map(|r| r.name));
    for a in lineup::Allocator::ALL {
        if !names.contains(&a.name()) {
            names.push(a.name());
        }
    }
    names.join(", ")
}

fn help() -> String {
    format!(
        "Counts instructions per alloc+free pair with valgrind's callgrind.

Times on a shared machine move with other load; instruction counts do not. For each pattern
and contender, this program runs itself twice under `valgrind --tool=callgrind`, with N and
with 2N repetitions of the pattern, counting only the loop that repeats it. Per pair:
(Ir(2N) - Ir(N)) / (N x pairs per repetition), so one-time setup cancels. `baseline` is the
harness alone (one static buffer, frees nothing); a contender's count minus the baseline's is
the allocator's share. Results go to docs/results/instructions.json, which
`arenalab bench-report` shows on docs/benchmarks.md; a table is printed.

Usage: instructions [OPTIONS]

Options:
  --pattern NAME     count only this pattern (repeat or comma-separate); default: all of
                     {patterns}
  --contender NAME   count only this contender (repeat or comma-separate); default: {default}
                     and CPython's real obmalloc (cpython-obmalloc-X.Y, one per interpreter
                     chosen by ARENALAB_BENCH_PYTHON: python3 unless set) (also: {all})
  --units N          N repetitions for every pattern (default: each pattern's own, 2 to 2000)
  --out PATH         where to write the results (default: docs/results/instructions.json)
  --valgrind PATH    the valgrind to run (default: valgrind, found on PATH)
  -h, --help         this text

Needs valgrind (apt-get install valgrind). The whole default run takes about a minute.

Examples:
  cargo run --release -p arenalab-benches --bin instructions
  cargo run --release -p arenalab-benches --bin instructions -- --pattern pair-fresh,pair-warm
  cargo run --release -p arenalab-benches --bin instructions -- --contender pymalloc-heap,baseline --out /tmp/i.json
  cargo run --release -- bench-report --render-only     # then show them on docs/benchmarks.md
",
        patterns = pattern_names(),
        default = CONTENDERS.join(", "),
        all = contender_names(),
    )
}

/// Parses the parent's arguments; `Ok(None)` for `--help`.
fn parse(args: &[String]) -> Result<Option<Args>, Usage> {
    let mut patterns: Vec<&'static Spec> = Vec::new();
    let mut contenders: Vec<String> = Vec::new();
    let mut units = None;
    let mut out = None;
    let mut valgrind = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| Usage(format!("{flag} needs a value (see --help)")))
        };
        match flag {
            "--pattern" => {
                for name in value()?.split(',').filter(|n| !n.is_empty()) {
                    let p = PATTERNS.iter().find(|p| p.name == name).ok_or_else(|| {
                        Usage(format!("no pattern {name:?}: choose from {}", pattern_names()))
                    })?;
                    if !patterns.iter().any(|q| q.name == p.name) {
                        patterns.push(p);
                    }
                }
            }
            "--contender" => {
                for name in value()?.split(',').filter(|n| !n.is_empty()) {
                    if !with_contender(name, false, &mut Nothing) {
                        return Err(Usage(format!(
                            "no contender {name:?}: choose from {}",
                            contender_names()
                        )));
                    }
                    if !contenders.iter().any(|c| c == name) {
                        contenders.push(name.to_string());
                    }
                }
            }
            "--units" => {
                let v = value()?;
                match v.parse::<u64>() {
                    Ok(n) if (1..=1_000_000).contains(&n) => units = Some(n),
                    _ => {
                        return Err(Usage(format!(
                            "--units {v:?}: expected a whole number from 1 to 1000000"
                        )));
                    }
                }
            }
            "--out" => out = Some(PathBuf::from(value()?)),
            "--valgrind" => valgrind = Some(value()?),
            _ => return Err(Usage(format!("unknown argument {arg:?} (see --help)"))),
        }
    }
    if patterns.is_empty() {
        patterns = PATTERNS.iter().collect();
    }
    if contenders.is_empty() {
        contenders = CONTENDERS.iter().map(|c| c.to_string()).collect();
        // The real obmallocs chosen by ARENALAB_BENCH_PYTHON, before the baseline.
        let at = contenders.len() - 1;
        for (i, r) in contender::real_obmallocs().iter().enumerate() {
            contenders.insert(at + i, r.name.to_string());
        }
    }
    Ok(Some(Args {
        patterns,
        contenders,
        units,
        out: out.unwrap_or_else(default_out),
        valgrind: valgrind.unwrap_or_else(|| "valgrind".into()),
    }))
}

/// A visitor that does nothing: to ask whether a contender exists.
struct Nothing;

impl Visit for Nothing {
    fn visit<C: Contender>(&mut self, _: &str, _: &mut C) {}
}

/// `valgrind --version`, or why it cannot be run.
fn valgrind_version(valgrind: &str) -> Result<String, Usage> {
    let out = Command::new(valgrind).arg("--version").output().map_err(|e| {
        Usage(format!(
            "cannot run {valgrind:?} ({e}): this program counts instructions under valgrind's \
             callgrind. Install it (apt-get install valgrind) or pass --valgrind PATH"
        ))
    })?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !version.starts_with("valgrind") {
        return Err(Usage(format!(
            "{valgrind:?} --version did not answer like valgrind ({}): pass --valgrind PATH",
            out.status
        )));
    }
    Ok(version)
}

/// Runs one count under callgrind and returns the instructions of the counted loop.
fn spawn_count(
    args: &Args,
    exe: &Path,
    tmp: &Path,
    spec: &Spec,
    contender: &str,
    units: u64,
) -> Result<std::process::Child, String> {
    let out = tmp.join(format!("{}-{contender}-{units}.out", spec.name));
    Command::new(&args.valgrind)
        .arg("--tool=callgrind")
        .arg("-q")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--toggle-collect=*arenalab_counted_loop*")
        .arg(exe)
        .args([CHILD, spec.name, contender, &units.to_string()])
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", args.valgrind))
}

/// Waits for a count and reads its total from callgrind's output file.
fn finish_count(
    mut child: std::process::Child,
    tmp: &Path,
    spec: &Spec,
    contender: &str,
    units: u64,
) -> Result<u64, String> {
    let at = format!("{}/{contender} with {units} repetitions", spec.name);
    let status = child.wait().map_err(|e| format!("{at}: {e}"))?;
    if !status.success() {
        return Err(format!("{at}: the counting process failed ({status})"));
    }
    let path = tmp.join(format!("{}-{contender}-{units}.out", spec.name));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let total = text
        .lines()
        .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    total.ok_or_else(|| format!("{at}: no instruction total in {}", path.display()))
}

fn command_line(raw: &[String]) -> String {
    let mut cmd = bench_instr::COMMAND.to_string();
    if !raw.is_empty() {
        cmd.push_str(" --");
        for a in raw {
            cmd.push(' ');
            cmd.push_str(a);
        }
    }
    cmd
}

/// The parent: count every (pattern, contender), save, print.
fn run(args: &Args, valgrind: String, raw: &[String]) -> Result<InstrResults, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let tmp = std::env::temp_dir().join(format!("arenalab-instructions-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut rows = Vec::new();
    let result = (|| {
        for spec in &args.patterns {
            let units = args.units.unwrap_or(spec.units);
            for c in &args.contenders {
                eprintln!("counting {} on {c} ({units} and {} repetitions)", spec.name, 2 * units);
                // The two counts are independent processes: run them side by side.
                let small = spawn_count(args, &exe, &tmp, spec, c, units)?;
                let large = spawn_count(args, &exe, &tmp, spec, c, 2 * units)?;
                let ir_n = finish_count(small, &tmp, spec, c, units);
                let ir_2n = finish_count(large, &tmp, spec, c, 2 * units);
                rows.push(InstrRow {
                    pattern: spec.name.into(),
                    contender: c.clone(),
                    units,
                    ir_n: ir_n?,
                    ir_2n: ir_2n?,
                });
            }
        }
        Ok::<(), String>(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    Ok(InstrResults {
        meta: Meta::collect(&command_line(raw)),
        valgrind,
        patterns: args
            .patterns
            .iter()
            .map(|s| Pattern {
                name: s.name.into(),
                what: s.what.into(),
                pairs_per_unit: s.pairs_per_unit,
            })
            .collect(),
        rows,
    })
}

/// The printed table: one line per (pattern, contender).
fn print_table(r: &InstrResults) {
    let header: Vec<String> =
        ["pattern", "contender", "instructions/pair", "allocator share"].map(String::from).into();
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| {
            let per = r.per_pair(&row.pattern, &row.contender).unwrap_or(f64::NAN);
            let share = r.allocator_share(row).map_or("-".into(), |s| format!("{s:.1}"));
            vec![row.pattern.clone(), row.contender.clone(), format!("{per:.1}"), share]
        })
        .collect();
    print!("{}", text_table(&header, &rows));
}

/// The child: `__count PATTERN CONTENDER UNITS`, run by the parent under valgrind.
fn child(args: &[String]) -> ExitCode {
    let [pattern, contender, units] = args else {
        eprintln!("{CHILD} takes PATTERN CONTENDER UNITS");
        return ExitCode::from(2);
    };
    let (Some(spec), Ok(units)) =
        (PATTERNS.iter().find(|p| p.name == pattern.as_str()), units.parse::<u64>())
    else {
        eprintln!("{CHILD}: bad pattern {pattern:?} or repetitions {units:?}");
        return ExitCode::from(2);
    };
    if !with_contender(
        contender,
        spec.name == "pair-fresh",
        &mut Count { pattern: spec.name, units },
    ) {
        eprintln!("{CHILD}: no contender {contender:?}");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().map(String::as_str) == Some(CHILD) {
        return child(&raw[1..]);
    }
    let args = match parse(&raw) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{}", help());
            return ExitCode::SUCCESS;
        }
        Err(Usage(m)) => {
            eprintln!("error: {m}");
            return ExitCode::from(2);
        }
    };
    // No valgrind, or a folder for --out that cannot be made, is bad input (exit code 2),
    // found before a minute of counting.
    let checked = valgrind_version(&args.valgrind).and_then(|v| {
        let dir = args.out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map(|()| v).map_err(|e| {
            Usage(format!("--out {}: cannot create {} ({e})", args.out.display(), dir.display()))
        })
    });
    let valgrind = match checked {
        Ok(v) => v,
        Err(Usage(m)) => {
            eprintln!("error: {m}");
            return ExitCode::from(2);
        }
    };
    let results = match run(&args, valgrind, &raw) {
        Ok(r) => r,
        Err(m) => {
            eprintln!("error: {m}");
            return ExitCode::FAILURE;
        }
    };
    print_table(&results);
    let saved = results::to_json(&results).map_err(|e| e.to_string()).and_then(|json| {
        std::fs::write(&args.out, json).map_err(|e| format!("{}: {e}", args.out.display()))
    });
    match saved {
        Ok(()) => {
            eprintln!("wrote {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(m) => {
            eprintln!("error: {m}");
            ExitCode::FAILURE
        }
    }
}

//! `arenalab trace`: record what a real CPython asks of pymalloc, replay it on the model and on
//! the other allocators.
//!
//! ```text
//!  arenalab trace record -- script.py        arenalab trace replay trace.bin
//!  ┌────────────── child ──────────────┐     ┌──────────── parent ────────────┐
//!  │ libpython (loaded at run time)    │     │ compile: addresses → slots     │
//!  │  MEM/OBJ allocators ── wrapped ───┼──>  │ model: same layout, same calls,│
//!  │  arena allocator ───── wrapped ───┼──>  │   arenas at the same offsets   │
//!  │  arenalab_trace.mark("x") ────────┼──>  │ at each mark: model counters   │
//!  │   + _PyObject_DebugMallocStats    │     │   == interpreter's counters?   │
//!  └───────────────────────────────────┘     │ children: system, mimalloc,    │
//!                                            │   jemalloc: RSS at each mark   │
//!                                            └────────────────────────────────┘
//! ```
//!
//! * [`record`]: embedding the interpreter, the wrappers, the marks.
//! * [`format`](mod@format): the trace file (versioned; header, then 3–6 bytes per call).
//! * [`program`]: a trace compiled to slot numbers, replayable without a hash table.
//! * [`replay`]: the model replay and the comparison; [`counters`]: the counters compared.
//! * [`lineup`]: the same calls on the other allocators, each in a fresh child.
//! * [`python`]: finding interpreters and their layouts.
//! * [`page`]: the seed workloads, `arenalab report`'s measurement, docs/trace.md.
//! * [`native`]: real programs through the preload library: a native trace, python3 on the model.
//!
//! A trace proves the model when every mark is equal: same arenas allocated, reclaimed, current
//! and high-water, same pools and blocks per size class, same unused pools, same bytes lost to
//! pool headers, quantization and arena alignment.

pub mod counters;
pub mod format;
pub mod lineup;
pub mod native;
pub mod page;
pub mod program;
pub mod python;
pub mod record;
pub mod replay;

use crate::error::{Error, Result};
use clap::Subcommand;
use pymalloc::{ArenaPolicy, Layout};
use std::path::{Path, PathBuf};

/// Arguments of `arenalab trace`.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TraceCommand,
}

/// `arenalab trace` subcommands.
#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Run a Python script in a real CPython and record every call into pymalloc.
    #[command(after_help = RECORD_HELP)]
    Record(RecordArgs),
    /// Replay a trace on the pymalloc model (compared with the interpreter at every mark) and
    /// on other allocators.
    #[command(after_help = REPLAY_HELP)]
    Replay(ReplayArgs),
    /// Internal: the child that embeds the interpreter.
    #[command(hide = true)]
    RecordChild(record::ChildArgs),
    /// Internal: the child that replays a trace on one allocator.
    #[command(hide = true)]
    ReplayChild(lineup::ChildArgs),
}

const RECORD_HELP: &str = "\
The script runs in the chosen CPython (3.8 or newer, with a shared libpython), embedded in a
child arenalab process whose MEM, OBJ and arena allocators are wrapped (PEP 445). Inside the
script, `import arenalab_trace; arenalab_trace.mark(\"label\")` stores the interpreter's own
counters (sys._debugmallocstats) in the trace, for `arenalab trace replay` to compare with.

A script that exits with an error keeps its trace up to that point; arenalab then exits with 2.

Examples:
  arenalab trace record -o floats.trace -- experiments/python/trace_seed.py floats 100000
  arenalab trace record --python ~/.pyenv/versions/3.9.18/bin/python3.9 -- my_script.py";

const REPLAY_HELP: &str = "\
The model takes the layout named in the trace header; every call is replayed in order and, at
each mark, the model's counters are compared with the interpreter's. Exit status 1 when any mark
differs, 2 when the file is not a complete trace.

A native trace (recorded by libarenalab_preload.so with ARENALAB_TRACE=FILE; its header says
\"source\": \"native\") has no interpreter counters: its marks (one every 65,536 calls and at
exit) show the model's counters and each --allocator's memory, with nothing to compare. It is
replayed in the recorded order on one thread, whatever threads the program had.

--preset, --keep-one and --policy change the model on purpose (negative controls: the replay
must then report differences).

Examples:
  arenalab trace replay floats.trace
  arenalab trace replay floats.trace --allocator system --allocator mimalloc --allocator jemalloc
  arenalab trace replay floats.trace --json
  arenalab trace replay floats.trace --keep-one false
  ARENALAB_TRACE=git.trace LD_PRELOAD=target/release/libarenalab_preload.so git log
  arenalab trace replay git.trace --allocator system --allocator mimalloc --allocator jemalloc";

/// Arguments of `arenalab trace record`.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// The CPython to run: python3 on PATH, or any python3.X (3.8 or newer).
    #[arg(long, value_name = "PATH", default_value = "python3")]
    pub python: PathBuf,
    /// The trace file to write.
    #[arg(short = 'o', long, value_name = "FILE", default_value = "arenalab.trace")]
    pub output: PathBuf,
    /// The script and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "SCRIPT [ARGS]"
    )]
    pub command: Vec<String>,
}

/// Arguments of `arenalab trace replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The trace file.
    pub file: PathBuf,
    /// Also replay on this allocator in a fresh child, measuring its memory at each mark:
    /// system, mimalloc, jemalloc, or pymalloc (the model with real memory); repeatable.
    #[arg(long = "allocator", value_name = "A")]
    pub allocators: Vec<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Model another layout than the header's (negative control).
    #[arg(long, value_name = "LAYOUT")]
    pub preset: Option<String>,
    /// Force the keep-last-empty-arena rule on or off (negative control).
    #[arg(long, value_name = "BOOL")]
    pub keep_one: Option<bool>,
    /// Another arena policy: most-used-first (CPython's) or newest-first (negative control).
    #[arg(long, value_name = "POLICY")]
    pub policy: Option<String>,
}

/// Runs `arenalab trace ...`; returns the exit code for the internal children.
pub fn run(args: &TraceArgs) -> Result<()> {
    match &args.command {
        TraceCommand::Record(a) => run_record(a),
        TraceCommand::Replay(a) => run_replay(a),
        TraceCommand::RecordChild(a) => std::process::exit(record::record_child(a)),
        TraceCommand::ReplayChild(a) => lineup::run_child(a),
    }
}

fn run_record(a: &RecordArgs) -> Result<()> {
    let script = PathBuf::from(&a.command[0]);
    let r = record::record(&a.python, &a.output, &script, &a.command[1..])?;
    let data = std::fs::read(&r.path).map_err(Error::failed(r.path.display()))?;
    let summary = match program::compile(&data) {
        Ok(p) => format!(
            "{} calls, {} arenas, {} marks; {} bytes ({:.1} MB per million calls)",
            p.calls,
            p.arenas,
            p.marks.len(),
            r.bytes,
            r.bytes as f64 / (p.calls.max(1) as f64)
        ),
        Err(e) => format!("{} bytes ({e})", r.bytes),
    };
    eprintln!("arenalab trace: recorded {} in {:.2} s: {summary}", r.path.display(), r.seconds);
    if r.status != 0 {
        return Err(Error::Usage(format!(
            "the script exited with status {} (an uncaught exception or sys.exit); \
             the trace of the run up to that point is in {}",
            r.status,
            r.path.display()
        )));
    }
    Ok(())
}

/// Reads and compiles a trace file; bad input is [`Error::Usage`].
pub fn load(path: &Path) -> Result<(program::Program, Layout)> {
    let data = std::fs::read(path)
        .map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
    let p =
        program::compile(&data).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let Some(layout) = Layout::from_name(&p.header.layout) else {
        return Err(Error::Usage(format!(
            "{}: the trace names layout {:?}, which this arenalab does not model (known: {})",
            path.display(),
            p.header.layout,
            Layout::ALL.map(|l| l.name()).join(", ")
        )));
    };
    Ok((p, layout))
}

fn parse_overrides(a: &ReplayArgs) -> Result<replay::Overrides> {
    let layout = match &a.preset {
        None => None,
        Some(n) => Some(Layout::from_name(n).ok_or_else(|| {
            Error::Usage(format!(
                "unknown layout {n:?}; known: {}",
                Layout::ALL.map(|l| l.name()).join(", ")
            ))
        })?),
    };
    let policy = match a.policy.as_deref() {
        None => None,
        Some("most-used-first") => Some(ArenaPolicy::MostUsedFirst),
        Some("newest-first") => Some(ArenaPolicy::NewestFirst),
        Some(p) => {
            return Err(Error::Usage(format!(
                "unknown policy {p:?}; known: most-used-first, newest-first"
            )));
        }
    };
    Ok(replay::Overrides { layout, keep_one: a.keep_one, policy })
}

/// What `arenalab trace replay --json` prints.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ReplayOutput {
    /// The trace header.
    pub trace: format::Header,
    /// The interpreter's exit status.
    pub status: i32,
    /// Calls left out because the trace never saw their block allocated.
    pub unknown: u64,
    /// The model replay; its `marks` are the per-mark comparison.
    #[serde(flatten)]
    pub model: replay::ModelReplay,
    /// The other allocators.
    pub allocators: Vec<lineup::AllocatorReplay>,
}

fn run_replay(a: &ReplayArgs) -> Result<()> {
    let overrides = parse_overrides(a)?;
    for n in &a.allocators {
        if ::lineup::Allocator::from_name(n).is_none() {
            return Err(Error::Usage(format!(
                "unknown allocator {n:?}; known: system, mimalloc, jemalloc, pymalloc \
                 (the model in a child, measured like the others)"
            )));
        }
    }
    let (p, layout) = load(&a.file)?;
    let config = replay::config(layout, &overrides);
    let name = overrides.layout.unwrap_or(layout).name();
    let model = replay::replay_model(&p, name, config);
    let mut others = Vec::new();
    for n in &a.allocators {
        let name = if n == "pymalloc" { format!("pymalloc:{}", layout.name()) } else { n.clone() };
        others.push(lineup::replay_program(&p, &name)?);
    }
    let out = ReplayOutput {
        trace: p.header.clone(),
        status: p.status,
        unknown: p.unknown,
        model,
        allocators: others,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out).expect("serialises"));
    } else {
        print_tables(&out);
    }
    let differ = out.model.marks.iter().filter(|m| !m.equal).count();
    if differ > 0 {
        return Err(Error::Failed(format!(
            "{differ} of {} marks differ between the interpreter and the model",
            out.model.marks.len()
        )));
    }
    Ok(())
}

fn print_tables(out: &ReplayOutput) {
    let h = &out.trace;
    let v = h.python_version;
    let native = h.source == format::Source::Native;
    if native {
        println!(
            "native trace of {} {} ({}), recorded by the preload library; model layout {}",
            h.script,
            h.args.join(" "),
            h.executable,
            h.layout
        );
    } else {
        println!(
            "trace of {} {} under CPython {}.{}.{} ({}), layout {}",
            h.script,
            h.args.join(" "),
            v[0],
            v[1],
            v[2],
            h.executable,
            h.layout
        );
    }
    let m = &out.model;
    println!(
        "model: layout {}, {}, last empty arena {}; {} calls replayed in {:.3} s",
        m.layout,
        m.policy,
        if m.keep_one { "kept" } else { "released" },
        m.calls,
        m.seconds
    );
    if native {
        println!(
            "placement: not compared (the real allocator has no arenas; every recorded block \
             lies outside them)"
        );
    } else {
        println!(
            "placement: {} blocks compared with the interpreter's (arena by order of mapping, \
             offset in it); {} elsewhere",
            m.placed, m.misplaced
        );
    }
    if let Some(f) = &m.first_misplaced {
        println!("  first: {f}");
    }
    if out.status != 0 {
        println!("the script exited with status {}: the trace ends there", out.status);
    }
    if out.unknown > 0 {
        println!("{} calls named blocks never seen allocated and were left out", out.unknown);
    }
    println!();
    println!(
        "{:<28} {:>6} {:>7} {:>7} {:>9} {:>10}  verdict",
        "mark", "arenas", "total", "reclaim", "highwater", "unused"
    );
    for mk in &m.marks {
        let verdict = if !mk.compared && mk.equal {
            "nothing to compare".to_string()
        } else if mk.equal {
            "equal".to_string()
        } else {
            format!("{} counters differ", mk.differences.len())
        };
        println!(
            "{:<28} {:>6} {:>7} {:>7} {:>9} {:>10}  {verdict}",
            mk.label,
            mk.model.arenas_current,
            mk.model.arenas_total,
            mk.model.arenas_reclaimed,
            mk.model.arenas_highwater,
            mk.model.unused_pools
        );
        for (name, real, model) in &mk.differences {
            println!("    {name}: interpreter {real}, model {model}");
        }
    }
    for r in &out.allocators {
        println!();
        println!(
            "{} (fresh child, {:.2} s; anonymous memory above the child's {} KiB at start):",
            r.allocator,
            r.seconds,
            r.baseline_anon_bytes / 1024
        );
        println!(
            "{:<28} {:>16} {:>14} {:>14}",
            "mark", "anon RSS (KiB)", "in use (KiB)", "held (KiB)"
        );
        for mk in &r.marks {
            let kib = |v: Option<u64>| v.map_or("-".to_string(), |v| (v / 1024).to_string());
            println!(
                "{:<28} {:>16} {:>14} {:>14}",
                mk.label,
                mk.anon_bytes.saturating_sub(r.baseline_anon_bytes) / 1024,
                kib(mk.in_use_bytes),
                kib(mk.held_bytes)
            );
        }
    }
    let differ = m.marks.iter().filter(|x| !x.equal).count();
    let compared = m.marks.iter().filter(|x| x.compared).count();
    println!();
    if compared == 0 && differ == 0 {
        println!(
            "{} marks, nothing to compare: a native trace has no interpreter counters",
            m.marks.len()
        );
    } else {
        println!("{} of {} marks equal", m.marks.len() - differ, m.marks.len());
    }
}

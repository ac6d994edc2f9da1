//! What `arenalab report` measures with traces, and docs/trace.md.
//!
//! 1. **Faithfulness.** Every CPython 3.8+ on the machine ([`super::python::installed`]) runs the
//!    seed workloads of `experiments/python/trace_seed.py` under the recorder; each trace is
//!    replayed on the model and every counter compared at every mark.
//! 2. **The four allocators.** The machine's `python3` runs the 1,000,000-float seed once more;
//!    its trace is replayed in fresh children on glibc, mimalloc, jemalloc and the pymalloc model
//!    (with real memory), measuring each child's anonymous resident memory at every mark. The
//!    same script then runs for real under `PYTHONMALLOC=malloc`, reading its own memory at each
//!    mark, to say how close the glibc replay comes to the real thing.
//! 3. **Cost.** The recording's time against the same script run without it, and the trace size.
//! 4. **Real programs through the preload library** ([`super::native`]): a native program's trace
//!    on the four allocators, and the seed workload in real python3 served by the model.

use super::lineup::AllocatorReplay;
use super::native::{NativeRun, PreloadSeed, Section};
use super::python::{self, Python, Recordable};
use super::replay::ModelReplay;
use crate::cpython::retention::Run;
use crate::error::{Error, Result};
use crate::render::chart::{Series, line_chart};
use crate::render::{group_digits, markdown_table, page_header, write_file};
use crate::results::Meta;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The seed workloads and their object counts for the faithfulness check.
pub const WORKLOADS: [(&str, usize); 5] = [
    ("floats", 50_000),
    ("ints", 50_000),
    ("spread", 50_000),
    ("packed", 50_000),
    ("mixed", 10_000),
];

/// Objects of the allocator comparison (the issue's 1,000,000-object seed).
pub const LINEUP_OBJECTS: usize = 1_000_000;

/// One workload recorded and replayed on the model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkloadRun {
    /// Workload name.
    pub workload: String,
    /// Objects.
    pub objects: usize,
    /// Calls recorded.
    pub calls: u64,
    /// Trace size.
    pub trace_bytes: u64,
    /// The model replay, with the interpreter's and the model's counters per mark.
    pub model: ModelReplay,
}

/// One interpreter's runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VersionRun {
    /// `3.11.7`.
    pub python: String,
    /// Detected layout.
    pub layout: String,
    /// The runs.
    pub workloads: Vec<WorkloadRun>,
}

/// The allocator comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LineupRun {
    /// The interpreter (`3.11.7`).
    pub python: String,
    /// Objects of the floats seed.
    pub objects: usize,
    /// Calls recorded.
    pub calls: u64,
    /// Trace size.
    pub trace_bytes: u64,
    /// Seconds the recorded run took.
    pub record_seconds: f64,
    /// Seconds the same script took without the recorder.
    pub plain_seconds: f64,
    /// Whether every mark of its model replay was equal.
    pub model_equal: bool,
    /// Mark labels.
    pub marks: Vec<String>,
    /// The replays, one per allocator.
    pub allocators: Vec<AllocatorReplay>,
    /// The real run under `PYTHONMALLOC=malloc`: anonymous resident bytes at each mark.
    pub real_malloc_anon_bytes: Vec<u64>,
}

/// docs/results/trace.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TraceResults {
    /// Machine and date.
    pub meta: Meta,
    /// One entry per interpreter found.
    pub versions: Vec<VersionRun>,
    /// The allocator comparison, when python3 could be recorded.
    pub lineup: Option<LineupRun>,
    /// A native program recorded by the preload library and replayed on four allocators
    /// (absent in results written before it was measured).
    #[serde(default)]
    pub native: Option<Section<NativeRun>>,
    /// The seed workload in real python3 with pymalloc, on the model via the preload, on glibc.
    #[serde(default)]
    pub preload_seed: Option<Section<PreloadSeed>>,
    /// The interpreters found that could not be recorded, each with the reason (absent in
    /// results written before they were listed).
    #[serde(default)]
    pub not_recorded: Vec<String>,
}

fn helper_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("arenalab-trace-page-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(Error::failed(dir.display()))?;
    std::fs::write(dir.join("arenalab_trace.py"), super::record::HELPER)
        .map_err(Error::failed(dir.display()))?;
    std::fs::write(dir.join("trace_seed.py"), SEED).map_err(Error::failed(dir.display()))?;
    Ok(dir)
}

/// The seed script, built in so that the report runs from any folder.
pub const SEED: &str = include_str!("../../python/trace_seed.py");

fn record_and_load(
    py: &Python,
    dir: &Path,
    workload: &str,
    n: usize,
) -> Result<(super::program::Program, super::record::Recorded)> {
    let out = dir.join(format!("{workload}-{}.trace", py.version_string()));
    let r = super::record::record(
        &py.executable,
        &out,
        &dir.join("trace_seed.py"),
        &[workload.to_string(), n.to_string()],
    )?;
    if r.status != 0 {
        return Err(Error::Failed(format!(
            "the seed script {workload} failed under {} (status {})",
            py.version_string(),
            r.status
        )));
    }
    let loaded = super::load(&out);
    let _ = std::fs::remove_file(&out);
    Ok((loaded?.0, r))
}

/// Records and replays the seed workloads under every CPython 3.8+ found, then the allocator
/// comparison under `python3`.
pub fn measure(command: &str) -> Result<TraceResults> {
    let started = Instant::now();
    let dir = helper_dir()?;
    let result = measure_in(command, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("      traces: {:.1} s", started.elapsed().as_secs_f64());
    result
}

fn measure_in(command: &str, dir: &Path) -> Result<TraceResults> {
    let mut versions = Vec::new();
    let (pythons, not_recorded) = python::installed();
    for py in pythons {
        let Ok((layout, _)) = py.recordable() else { continue };
        let mut workloads = Vec::new();
        for (w, n) in WORKLOADS {
            let (p, r) = record_and_load(&py, dir, w, n)?;
            let model = super::replay::replay_model(&p, layout.name(), layout.config());
            workloads.push(WorkloadRun {
                workload: w.to_string(),
                objects: n,
                calls: p.calls,
                trace_bytes: r.bytes,
                model,
            });
        }
        eprintln!(
            "      CPython {}: {} workloads, {} of {} marks equal",
            py.version_string(),
            workloads.len(),
            workloads.iter().flat_map(|w| &w.model.marks).filter(|m| m.equal).count(),
            workloads.iter().map(|w| w.model.marks.len()).sum::<usize>()
        );
        versions.push(VersionRun {
            python: py.version_string(),
            layout: layout.name().to_string(),
            workloads,
        });
    }
    let lineup = match Python::probe(Path::new("python3")) {
        Ok(py) if py.recordable().is_ok() => Some(measure_lineup(&py, dir)?),
        _ => None,
    };
    let native = Some(super::native::measure_native(dir)?);
    let preload_seed = Some(super::native::measure_seed(dir)?);
    Ok(TraceResults {
        meta: Meta::collect(command),
        versions,
        lineup,
        native,
        preload_seed,
        not_recorded,
    })
}

fn measure_lineup(py: &Python, dir: &Path) -> Result<LineupRun> {
    let (layout, _) = py.recordable()?;
    let (p, r) = record_and_load(py, dir, "floats", LINEUP_OBJECTS)?;
    let model = super::replay::replay_model(&p, layout.name(), layout.config());
    let script = dir.join("trace_seed.py");
    let n = LINEUP_OBJECTS.to_string();
    // The same script without the recorder (the helper's marks do nothing).
    let started = Instant::now();
    let status = std::process::Command::new(&py.executable)
        .arg(&script)
        .args(["floats", &n])
        .env("PYTHONPATH", dir)
        .env_remove("PYTHONMALLOC")
        .status()
        .map_err(Error::failed("running python3"))?;
    let plain_seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(Error::Failed(format!("python3 trace_seed.py floats {n}: {status}")));
    }
    // For real under PYTHONMALLOC=malloc, reading its own memory at each mark.
    let rss_file = dir.join("malloc-rss.tsv");
    let _ = std::fs::remove_file(&rss_file);
    let status = std::process::Command::new(&py.executable)
        .arg(&script)
        .args(["floats", &n])
        .env("PYTHONPATH", dir)
        .env("PYTHONMALLOC", "malloc")
        .env("ARENALAB_TRACE_RSS", &rss_file)
        .status()
        .map_err(Error::failed("running python3"))?;
    if !status.success() {
        return Err(Error::Failed(format!("PYTHONMALLOC=malloc python3 trace_seed.py: {status}")));
    }
    let text = std::fs::read_to_string(&rss_file).map_err(Error::failed(rss_file.display()))?;
    let real_malloc_anon_bytes: Vec<u64> =
        text.lines().filter_map(|l| l.split('\t').nth(1)?.parse().ok()).collect();
    let mut allocators = Vec::new();
    for a in ["system", "mimalloc", "jemalloc"] {
        allocators.push(super::lineup::replay_program(&p, a)?);
    }
    allocators.push(super::lineup::replay_program(&p, &format!("pymalloc:{}", layout.name()))?);
    Ok(LineupRun {
        python: py.version_string(),
        objects: LINEUP_OBJECTS,
        calls: p.calls,
        trace_bytes: r.bytes,
        record_seconds: r.seconds,
        plain_seconds,
        model_equal: model.all_equal(),
        marks: p.marks.iter().map(|m| m.label.clone()).collect(),
        allocators,
        real_malloc_anon_bytes,
    })
}

/// MiB with one decimal (a rounding `-0.0` shows as `0.0`).
fn mib(bytes: f64) -> String {
    let m = bytes / (1u64 << 20) as f64;
    format!("{:.1}", if m.abs() < 0.05 { 0.0 } else { m })
}

fn cell(real: u64, model: u64) -> String {
    if real == model {
        group_digits(real)
    } else {
        format!("**{} ≠ {}**", group_digits(real), group_digits(model))
    }
}

/// The page's title.
pub const TITLE: &str = "Traces: the model against real CPython";

/// The folder of the page's charts, under docs/.
pub const IMG_DIR: &str = "trace";

/// Writes docs/trace.md and docs/trace/rss.svg.
pub fn render(r: &TraceResults, docs: &Path) -> Result<()> {
    let mut md = page_header(TITLE, &r.meta);
    md.push_str(
        "Every verdict arenalab gives about Python rests on the pymalloc model. This page is the \
         evidence that the model does what CPython does. A real interpreter runs a script while \
         `arenalab trace record` records every call it makes into pymalloc (the MEM and OBJ \
         domains and every arena mapped or unmapped, through CPython's own allocator hooks, PEP \
         445). At marks the script sets, the interpreter's own counters \
         (`sys._debugmallocstats()`) go into the trace too. `arenalab trace replay` then gives \
         the same calls, in the same order, to the model with the layout detected from that \
         interpreter, and compares all the counters at each mark: arenas allocated in total, \
         reclaimed, high-water and current; pools, blocks in use and blocks available per size \
         class; unused pools; bytes in allocated and available blocks and lost to pool headers, \
         quantization and arena alignment.\n\n",
    );
    let marks: usize =
        r.versions.iter().flat_map(|v| &v.workloads).map(|w| w.model.marks.len()).sum();
    let equal: usize = r
        .versions
        .iter()
        .flat_map(|v| &v.workloads)
        .flat_map(|w| &w.model.marks)
        .filter(|m| m.equal)
        .count();
    let placed: u64 = r.versions.iter().flat_map(|v| &v.workloads).map(|w| w.model.placed).sum();
    let misplaced: u64 =
        r.versions.iter().flat_map(|v| &v.workloads).map(|w| w.model.misplaced).sum();
    if r.versions.is_empty() {
        md.push_str(
            "**No CPython 3.8 or newer with a shared libpython was found on this machine.**\n\n",
        );
    } else {
        let names: Vec<String> = r.versions.iter().map(|v| v.python.clone()).collect();
        let _ = writeln!(
            md,
            "**{equal} of {marks} marks equal** over {} interpreters ({}) and {} workloads each{}.\n",
            r.versions.len(),
            names.join(", "),
            WORKLOADS.len(),
            if equal == marks { ": the model reproduces every counter of every run" } else { "" }
        );
        let _ = writeln!(
            md,
            "**{} of {} blocks placed alike**: {}.\n",
            group_digits(placed.saturating_sub(misplaced)),
            group_digits(placed),
            if misplaced == 0 {
                "each block the model handed out lies in the same arena, at the same offset, as \
                 the block the interpreter handed out for the same call"
            } else {
                "some blocks lie elsewhere in the model than in the interpreter"
            }
        );
    }
    if !r.not_recorded.is_empty() {
        md.push_str("Found but not recorded:\n\n");
        for why in &r.not_recorded {
            let _ = writeln!(md, "- {why}");
        }
        md.push('\n');
    }
    md.push_str("## Real against model, per interpreter\n\n");
    md.push_str(
        "The seed workloads (`experiments/python/trace_seed.py`): floats and ints allocated, every \
         other one deleted, half refilled, all deleted, `gc.collect()`; survivors kept spread \
         (every 64th) or packed (the first 1/64); a mix of dicts, tuples, strings and bytes of \
         1–600 B. *Blocks placed alike*: every block the interpreter handed out, compared \
         with the model's for the same call: the same arena (by order of mapping) at the same \
         offset, or outside every arena on both sides. In the tables per mark, each cell is the \
         interpreter's figure; a bold `a ≠ b` would be the interpreter's and the model's where \
         they differ.\n\n",
    );
    let mut summary = Vec::new();
    for v in &r.versions {
        for w in &v.workloads {
            let eq = w.model.marks.iter().filter(|m| m.equal).count();
            summary.push(vec![
                format!("{} ({})", v.python, v.layout),
                format!("{} × {}", w.workload, group_digits(w.objects as u64)),
                group_digits(w.calls),
                format!("{eq} of {}", w.model.marks.len()),
                format!(
                    "{} of {}",
                    group_digits(w.model.placed - w.model.misplaced),
                    group_digits(w.model.placed)
                ),
            ]);
        }
    }
    let head = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    md.push_str(&markdown_table(
        &head(&["CPython (layout)", "workload", "calls", "marks equal", "blocks placed alike"]),
        &summary,
    ));
    md.push('\n');
    for v in &r.versions {
        let _ = writeln!(
            md,
            "<details><summary>CPython {} ({}): every mark</summary>\n",
            v.python, v.layout
        );
        for w in &v.workloads {
            let _ = writeln!(
                md,
                "**{}** ({} objects, {} calls)\n",
                w.workload,
                group_digits(w.objects as u64),
                group_digits(w.calls)
            );
            let rows: Vec<Vec<String>> = w
                .model
                .marks
                .iter()
                .map(|m| {
                    let real = m.real.clone().unwrap_or_default();
                    let md_ = &m.model;
                    let blocks = |c: &super::counters::Counters| {
                        c.classes.iter().map(|x| x.blocks_in_use).sum::<u64>()
                    };
                    vec![
                        m.label.clone(),
                        cell(real.arenas_total, md_.arenas_total),
                        cell(real.arenas_reclaimed, md_.arenas_reclaimed),
                        cell(real.arenas_highwater, md_.arenas_highwater),
                        cell(real.arenas_current, md_.arenas_current),
                        cell(real.unused_pools, md_.unused_pools),
                        cell(blocks(&real), blocks(md_)),
                        cell(real.bytes_lost_to_arena_alignment, md_.bytes_lost_to_arena_alignment),
                        if m.equal {
                            "yes".into()
                        } else {
                            format!("no ({} differ)", m.differences.len())
                        },
                    ]
                })
                .collect();
            md.push_str(&markdown_table(
                &head(&[
                    "mark",
                    "arenas total",
                    "reclaimed",
                    "high-water",
                    "current",
                    "unused pools",
                    "blocks in use",
                    "lost to alignment",
                    "all equal",
                ]),
                &rows,
            ));
            md.push('\n');
        }
        md.push_str("</details>\n\n");
    }
    if let Some(l) = &r.lineup {
        render_lineup(&mut md, l, docs)?;
    }
    if let Some(n) = &r.native {
        render_native(&mut md, n);
    }
    if let Some(s) = &r.preload_seed {
        render_preload_seed(&mut md, s);
    }
    md.push_str(
        "## Reproduce\n\n```sh\ncargo run --release -- trace record -o floats.trace -- \
         experiments/python/trace_seed.py floats 1000000\ncargo run --release -- trace replay \
         floats.trace --allocator system --allocator mimalloc --allocator jemalloc --allocator \
         pymalloc\n# any interpreter, any script that imports arenalab_trace and calls mark():\n\
         cargo run --release -- trace record --python ~/.pyenv/versions/3.9.18/bin/python3.9 -o \
         my.trace -- my_script.py\n# a native program, recorded by the preload library:\n\
         cargo build --release\nARENALAB_TRACE=git.trace \
         LD_PRELOAD=target/release/libarenalab_preload.so git log\ncargo run --release -- trace \
         replay git.trace --allocator system --allocator mimalloc --allocator jemalloc\n```\n\n\
         The trace format and the recorder are described in \
         the `arenalab::trace` module documentation.\n",
    );
    write_file(&docs.join("trace.md"), &md)
}

fn render_lineup(md: &mut String, l: &LineupRun, docs: &Path) -> Result<()> {
    let _ = writeln!(
        md,
        "## The same program on four allocators\n\nCPython {} ran `trace_seed.py floats {}` \
         once under the recorder ({} calls; the model replay {}). The trace was then replayed in \
         a fresh child per allocator: the same calls with the same sizes, in the same order, \
         each block written when allocated, as CPython would under `PYTHONMALLOC=malloc` with \
         glibc, or with mimalloc or jemalloc preloaded; and on the pymalloc model with real \
         memory. Anonymous resident memory of each child above its level before the first call, \
         MiB:\n",
        l.python,
        group_digits(l.objects as u64),
        group_digits(l.calls),
        if l.model_equal { "equal at every mark" } else { "DIFFERENT from the interpreter" }
    );
    let mut header = vec!["mark".to_string()];
    header.extend(
        l.allocators.iter().map(|a| a.allocator.split(':').next().unwrap_or("").to_string()),
    );
    let rows: Vec<Vec<String>> = l
        .marks
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut row = vec![m.clone()];
            for a in &l.allocators {
                row.push(a.marks.get(i).map_or("-".into(), |x| {
                    mib(x.anon_bytes.saturating_sub(a.baseline_anon_bytes) as f64)
                }));
            }
            row
        })
        .collect();
    md.push_str(&markdown_table(&header, &rows));
    let series: Vec<Series> = l
        .allocators
        .iter()
        .map(|a| Series {
            label: a.allocator.split(':').next().unwrap_or("").to_string(),
            values: a
                .marks
                .iter()
                .map(|x| {
                    Some(
                        x.anon_bytes.saturating_sub(a.baseline_anon_bytes) as f64
                            / (1u64 << 20) as f64,
                    )
                })
                .collect(),
        })
        .collect();
    let svg = line_chart(
        &format!(
            "trace_seed.py floats {} (CPython {}), replayed",
            group_digits(l.objects as u64),
            l.python
        ),
        &l.marks,
        "anonymous RSS above start, MiB",
        &series,
    )?;
    std::fs::create_dir_all(docs.join("trace")).map_err(Error::failed("docs/trace"))?;
    write_file(&docs.join("trace/rss.svg"), &svg)?;
    md.push_str("\n![resident memory per mark, four allocators](trace/rss.svg)\n\n");

    // glibc replay against the real PYTHONMALLOC=malloc run, both relative to their "start".
    if let Some(sys) = l.allocators.iter().find(|a| a.allocator == "system")
        && l.real_malloc_anon_bytes.len() == sys.marks.len()
        && !sys.marks.is_empty()
    {
        md.push_str(
            "### glibc replay against a real `PYTHONMALLOC=malloc` run\n\nThe same script run \
             for real with `PYTHONMALLOC=malloc` reads its own anonymous resident memory at each \
             mark. Both columns are relative to the mark `start` (the interpreter's own start-up \
             memory differs from the replay child's), MiB. The two programs are not quite the \
             same at marks: the real run's marks open and write a file, which allocates; the \
             recorded marks' own allocations are in the trace.\n\n",
        );
        let r0 = l.real_malloc_anon_bytes[0] as f64;
        let s0 = sys.marks[0].anon_bytes as f64;
        let rows: Vec<Vec<String>> = l
            .marks
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let real = l.real_malloc_anon_bytes[i] as f64 - r0;
                let rep = sys.marks[i].anon_bytes as f64 - s0;
                vec![m.clone(), mib(real), mib(rep), mib(rep - real)]
            })
            .collect();
        md.push_str(&markdown_table(
            &["mark", "real run", "glibc replay", "replay − real"].map(String::from),
            &rows,
        ));
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "### What recording costs\n\nThe same {}-float script took {:.2} s without the recorder \
         and {:.2} s recorded (both including interpreter start-up); its trace holds {} calls in \
         {} bytes: {:.1} MB per million calls.\n",
        group_digits(l.objects as u64),
        l.plain_seconds,
        l.record_seconds,
        group_digits(l.calls),
        group_digits(l.trace_bytes),
        l.trace_bytes as f64 / l.calls.max(1) as f64
    );
    Ok(())
}

/// An allocator's short name (`pymalloc:32c-16k-1m-keep` → `pymalloc`).
fn short(a: &AllocatorReplay) -> &str {
    a.allocator.split(':').next().unwrap_or("")
}

fn render_native(md: &mut String, n: &Section<NativeRun>) {
    md.push_str("## A native program on four allocators\n\n");
    let Some(r) = n.measured_or_note(md) else { return };
    let _ = writeln!(
        md,
        "The preload library in mode `record` (`ARENALAB_TRACE=FILE \
         LD_PRELOAD=libarenalab_preload.so`) passes every malloc, calloc, realloc and free of a \
         program to glibc and writes it down in this trace format, with a mark every 65,536 \
         calls and one at exit. Recorded: `{}`, {} calls in {} bytes, {:.2} s{}. The trace was \
         replayed in a fresh child per allocator (the same calls, sizes and order, each block \
         written when allocated; the model with layout {} and real memory). A native trace has \
         no interpreter counters: nothing is compared, only measured. Anonymous resident memory \
         of each child above its level before the first call, MiB; the peak is the largest \
         reading at a mark (the true peak between marks may be higher):\n",
        r.command,
        group_digits(r.calls),
        group_digits(r.trace_bytes),
        r.record_seconds,
        if r.unknown > 0 {
            format!(
                "; {} calls named blocks allocated before the recording started and are left out",
                group_digits(r.unknown)
            )
        } else {
            String::new()
        },
        r.layout
    );
    let above = |a: &AllocatorReplay, i: usize| {
        a.marks[i].anon_bytes.saturating_sub(a.baseline_anon_bytes) as f64
    };
    let last = r.marks.len().saturating_sub(1);
    let mut rows = Vec::new();
    let mut ends = Vec::new();
    for a in &r.allocators {
        let Some(peak_at) = (0..a.marks.len()).max_by(|&i, &j| above(a, i).total_cmp(&above(a, j)))
        else {
            continue;
        };
        let own = |v: Option<u64>| v.map_or("-".to_string(), |v| mib(v as f64));
        ends.push((short(a).to_string(), above(a, last)));
        rows.push(vec![
            short(a).to_string(),
            mib(above(a, peak_at)),
            r.marks[peak_at].clone(),
            mib(above(a, last)),
            own(a.marks[last].in_use_bytes),
            own(a.marks[last].held_bytes),
        ]);
    }
    md.push_str(&markdown_table(
        &[
            "allocator",
            "peak at a mark",
            "peak mark",
            "at exit",
            "in use at exit (its own count)",
            "held at exit (its own count)",
        ]
        .map(String::from),
        &rows,
    ));
    ends.sort_by(|a, b| a.1.total_cmp(&b.1));
    if let (Some(lo), Some(hi)) = (ends.first(), ends.last()) {
        let _ = writeln!(
            md,
            "\nAt exit, after the program's last free, {} keeps the least ({} MiB) and {} the \
             most ({} MiB) of the same calls.\n",
            lo.0,
            mib(lo.1),
            hi.0,
            mib(hi.1)
        );
    }
    if r.program == "sqlite3" {
        let _ = writeln!(md, "The SQL:\n\n```sql\n{}```\n", super::native::SQL);
    }
}

fn render_preload_seed(md: &mut String, s: &Section<PreloadSeed>) {
    md.push_str("## Real python3 on the model, through the preload library\n\n");
    let Some(r) = s.measured_or_note(md) else { return };
    let _ = writeln!(
        md,
        "The seed workload (`experiments/python/retention.py`, {} floats, its phases) ran in \
         CPython {} three times: with its own pymalloc; with `PYTHONMALLOC=malloc \
         LD_PRELOAD=libarenalab_preload.so ARENALAB_PRESET={}`, so that every request of 512 \
         bytes or less is served by the model instead; and with `PYTHONMALLOC=malloc` on glibc. \
         arenalab read each process's resident memory (`smaps_rollup` Rss) from outside at \
         every phase, MiB:\n",
        group_digits(r.objects),
        r.python,
        r.preset
    );
    let [py, pre, libc] = [0, 1, 2].map(|i| r.runs.get(i));
    let (Some(py), Some(pre), Some(libc)) = (py, pre, libc) else { return };
    let m = |b: u64| b as f64;
    let rows: Vec<Vec<String>> = py
        .phases
        .iter()
        .zip(&pre.phases)
        .zip(&libc.phases)
        .map(|((a, b), c)| {
            vec![
                a.name.clone(),
                mib(m(a.rss_bytes)),
                mib(m(b.rss_bytes)),
                mib(m(b.rss_bytes) - m(a.rss_bytes)),
                mib(m(c.rss_bytes)),
            ]
        })
        .collect();
    md.push_str(&markdown_table(
        &["phase", "pymalloc", "model via preload", "model − pymalloc", "glibc (malloc)"]
            .map(String::from),
        &rows,
    ));
    let diffs: Vec<(f64, &str)> = py
        .phases
        .iter()
        .zip(&pre.phases)
        .map(|(a, b)| ((m(b.rss_bytes) - m(a.rss_bytes)).abs(), a.name.as_str()))
        .collect();
    let Some(&(worst, at)) = diffs.iter().max_by(|a, b| a.0.total_cmp(&b.0)) else { return };
    let peak = py.phases.iter().map(|p| p.rss_bytes).max().unwrap_or(0) as f64;
    let glibc_worst = py
        .phases
        .iter()
        .zip(&libc.phases)
        .map(|(a, c)| (m(c.rss_bytes) - m(a.rss_bytes)).abs())
        .fold(0.0, f64::max);
    let _ = writeln!(
        md,
        "\nThe model through the preload and CPython's own pymalloc agree within {} MiB at every \
         phase (the largest gap at `{at}`, {:.1}% of pymalloc's largest resident size, {} MiB); \
         glibc differs from pymalloc by up to {} MiB. They may differ because the two runs do \
         not send the model the same requests: under `PYTHONMALLOC=malloc` every small request \
         of the process reaches the model, those of the raw domain (`PyMem_RawMalloc`, which \
         CPython always sends to libc) and those of libc itself and of extension modules \
         included, while CPython's pymalloc serves only the MEM and OBJ domains; and the \
         preloaded process maps one more library.\n",
        mib(worst),
        100.0 * worst / peak.max(1.0),
        mib(peak),
        mib(glibc_worst)
    );
}

impl crate::results::Checked for TraceResults {
    /// The page walks each allocator's marks beside the recorded marks, index by index.
    fn check(&self) -> std::result::Result<(), String> {
        if let Some(l) = &self.lineup {
            for a in &l.allocators {
                if a.marks.len() != l.marks.len() {
                    return Err(format!(
                        "the {} replay has {} marks where the trace has {}",
                        a.allocator,
                        a.marks.len(),
                        l.marks.len()
                    ));
                }
            }
            if !l.real_malloc_anon_bytes.is_empty()
                && l.real_malloc_anon_bytes.len() != l.marks.len()
            {
                return Err(format!(
                    "the real PYTHONMALLOC=malloc run has {} marks where the trace has {}",
                    l.real_malloc_anon_bytes.len(),
                    l.marks.len()
                ));
            }
        }
        if let Some(Section::Measured(n)) = &self.native {
            if n.marks.is_empty() {
                return Err("the native trace has no marks".into());
            }
            for a in &n.allocators {
                if a.marks.len() != n.marks.len() {
                    return Err(format!(
                        "the native trace's {} replay has {} marks where the trace has {}",
                        a.allocator,
                        a.marks.len(),
                        n.marks.len()
                    ));
                }
            }
        }
        if let Some(Section::Measured(s)) = &self.preload_seed {
            // The page walks the three runs' phases side by side.
            let names = |r: &Run| r.phases.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
            if s.runs.len() != 3 || s.runs.iter().any(|r| names(r) != names(&s.runs[0])) {
                return Err(
                    "the python3 runs through the preload are not three runs with the same \
                     phases"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

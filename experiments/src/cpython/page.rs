//! `docs/cpython.md`, its charts, the terminal summary and the verdict lines for claims.md and
//! docs/README.md, written from saved results only.

use super::{CpythonResults, pool, retention};
use crate::error::Result;
use crate::render::chart::{Series, bar_chart, line_chart};
use crate::render::timeline::{Line, timeline_svg};
use crate::render::{group_digits, markdown_table, page_header, text_table, write_file};
use std::fmt::Write as _;
use std::path::Path;

const PHASES: [&str; 7] =
    ["baseline", "build", "del-half", "refill", "del-all", "gc-collect", "malloc-trim"];

fn f1(x: f64) -> String {
    format!("{:.1}", (x * 10.0).round() / 10.0 + 0.0)
}

fn above_mib(run: &retention::Run, phase: &str) -> Option<f64> {
    let base = run.phases.first()?.rss_bytes as f64;
    run.phase(phase).map(|p| (p.rss_bytes as f64 - base) / (1u64 << 20) as f64)
}

fn arenas(run: &retention::Run, phase: &str) -> Option<u64> {
    run.phase(phase).and_then(|p| p.stats.as_ref()).map(|s| s.arenas_current)
}

fn runs<'a>(
    r: &'a CpythonResults,
    alloc: &'a str,
    kind: &'a str,
    surv: &'a str,
) -> impl Iterator<Item = &'a retention::Run> + 'a {
    r.retention
        .iter()
        .filter(move |x| x.allocator == alloc && x.kind == kind && x.survivors == surv)
}

fn versions(r: &CpythonResults) -> String {
    let v: Vec<String> = r.found.interpreters.iter().map(|i| i.version.clone()).collect();
    match v.len() {
        0 => String::new(),
        1 => v[0].clone(),
        n => format!("{} and {}", v[..n - 1].join(", "), v[n - 1]),
    }
}

/// An interpreter's path as a reader can follow it: from `.pyenv/` on under the home folder
/// (`~/.pyenv/versions/3.12.1/bin/python3.12`), system paths as they are, anything else by its
/// file name only, so that no page carries the measuring machine's own folders.
fn shown(path: &Path) -> String {
    let text = path.to_string_lossy();
    if let Some(i) = text.find("/.pyenv/") {
        format!("~{}", &text[i..])
    } else if ["/usr/", "/bin/", "/opt/"].iter().any(|p| text.starts_with(p)) {
        text.into_owned()
    } else {
        path.file_name().map_or_else(|| "python".into(), |n| n.to_string_lossy().into_owned())
    }
}

fn range(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        "-".into()
    } else if f1(lo) == f1(hi) {
        f1(lo)
    } else {
        format!("{}–{}", f1(lo), f1(hi))
    }
}

// ------------------------------------------------------------------ verdicts

/// The real interpreters' verdict on each claim of the seed question, in claims order ((a)
/// exit, (b) the list, (c) the pool); `None` where nothing was measured.
pub fn verdicts(r: &CpythonResults) -> [Option<String>; 3] {
    [verdict_exit(r), verdict_list(r), verdict_pool(r)]
}

fn verdict_list(r: &CpythonResults) -> Option<String> {
    let floats: Vec<&retention::Run> = runs(r, "pymalloc", "floats", "none").collect();
    if floats.is_empty() {
        return None;
    }
    let kept_all = floats
        .iter()
        .filter(|x| {
            arenas(x, "del-half") == arenas(x, "build") && arenas(x, "refill") == arenas(x, "build")
        })
        .count();
    let back: Vec<f64> = floats
        .iter()
        .filter_map(|x| Some(arenas(x, "del-all")? as f64 - arenas(x, "baseline")? as f64))
        .collect();
    let rss_half: Vec<f64> = floats.iter().filter_map(|x| above_mib(x, "del-half")).collect();
    let rss_all: Vec<f64> = floats.iter().filter_map(|x| above_mib(x, "del-all")).collect();
    let peak: Vec<f64> = floats.iter().filter_map(|x| above_mib(x, "build")).collect();
    let malloc: Vec<&retention::Run> = runs(r, "malloc", "floats", "none").collect();
    let mal_kept: Vec<f64> = malloc
        .iter()
        .filter_map(|x| Some(100.0 * above_mib(x, "gc-collect")? / above_mib(x, "refill")?))
        .collect();
    let mal_trim: Vec<f64> = malloc.iter().filter_map(|x| above_mib(x, "malloc-trim")).collect();
    // The list's own pointer array (8 bytes a slot) is one large block glibc maps apart and
    // unmaps at `del`: the part of the peak that does not stay.
    let list_mib = 8.0 * r.objects as f64 / (1u64 << 20) as f64;
    let mut s = format!(
        "CPython {}, measured ({} floats): `del lst[::2]` freed no arena and the refill mapped \
         none in {kept_all} of {} interpreters (RSS stayed {} MiB above baseline after the del, \
         of {} MiB at the peak); `del lst` gave the arenas back (current arenas {} above \
         baseline) and RSS fell to {} MiB above baseline.",
        versions(r),
        group_digits(r.objects),
        floats.len(),
        range(&rss_half),
        range(&peak),
        range(&back),
        range(&rss_all),
    );
    if !malloc.is_empty() {
        let _ = write!(
            s,
            " With `PYTHONMALLOC=malloc` the freed floats stayed in glibc's heap ({} % of the \
             peak above baseline was still resident after `del` and `gc.collect()`; most of the \
             rest is the list's pointer array, {} MiB, unmapped at `del`) until \
             `malloc_trim(0)` ({} MiB above baseline after it).",
            range(&mal_kept),
            f1(list_mib),
            range(&mal_trim)
        );
    }
    Some(s)
}

fn verdict_exit(r: &CpythonResults) -> Option<String> {
    if r.exit.is_empty() {
        return None;
    }
    let n = r.exit.len();
    let no_rss = r.exit.iter().filter(|x| x.zombie_has_rss == Some(false)).count();
    let back = r.exit.iter().filter(|x| x.back_before_reap_pct.is_some_and(|p| p >= 90.0)).count();
    let t = |e: &str| -> Vec<f64> {
        r.exit.iter().filter(|x| x.ending == e).filter_map(|x| x.end_to_zombie_ms).collect()
    };
    Some(format!(
        "CPython {}, measured ({} MiB of floats, five endings each): in {no_rss} of {n} runs the \
         unreaped zombie had no memory map left, and in {back} of {n} at least 90 % of the \
         child's memory was available again before it was reaped. A normal exit first spent {} \
         ms destroying the objects (end → zombie), `os._exit(0)` {} ms, SIGKILL {} ms.",
        versions(r),
        r.exit_mib,
        range(&t("normal")),
        range(&t("os-exit")),
        range(&t("sigkill")),
    ))
}

fn verdict_pool(r: &CpythonResults) -> Option<String> {
    if r.pool.is_empty() {
        return None;
    }
    let by = |s: &'static str| r.pool.iter().filter(move |x| x.scenario == s);
    let zero = |s: &'static str| -> Vec<f64> { by(s).filter_map(|x| x.to_zero_ms).collect() };
    let open: Vec<f64> = by("open-idle").map(|x| x.rss_at_end_mib).collect();
    let busy_alive =
        by("killed-busy").filter(|x| x.timeline.iter().any(|p| p.t_ms > 0.0 && p.live > 0)).count();
    let mut vs: Vec<String> = r.pool.iter().map(|x| x.version.clone()).collect();
    vs.dedup();
    let mut methods: Vec<String> = r.pool.iter().map(|x| x.start_method.clone()).collect();
    methods.sort();
    methods.dedup();
    let closers = ["close-join", "terminate", "with-block", "del-gc", "parent-exits"];
    let all_closed: Vec<f64> = closers.iter().flat_map(|s| zero(s)).collect();
    let closed_runs: usize = closers.iter().map(|s| by(s).count()).sum();
    Some(format!(
        "CPython {}, measured (`multiprocessing.Pool({})`, {} MiB per worker, start methods {}): an \
         open idle pool kept {} MiB in its workers (summed VmRSS: the held bytes plus each \
         worker's interpreter); `close()`+`join()`, `terminate()`, a `with` block, `del pool` + \
         `gc.collect()` and a normal parent exit all ended the workers ({} of {closed_runs} \
         runs, within {} ms); after `del pool` and at a normal exit it is the pool's finalizer \
         that terminates them. A SIGKILLed parent's idle workers were gone {} ms later (end of \
         file on the task pipe); busy ones outlived it in {busy_alive} of {} runs, holding their \
         memory until their {} ms task ended ({} ms after the kill).",
        vs.join(", "),
        r.pool_workers,
        r.pool_mib,
        methods.join(", "),
        range(&open),
        all_closed.len(),
        range(&all_closed),
        range(&zero("killed-idle")),
        by("killed-busy").count(),
        r.pool_busy_ms,
        range(&zero("killed-busy")),
    ))
}

// ------------------------------------------------------------------ tables

fn retention_table(
    r: &CpythonResults,
    kind: &str,
    per_kind: bool,
) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header: Vec<String> =
        vec![if per_kind { "kind" } else { "CPython" }.into(), "PYTHONMALLOC".into()];
    header.extend(PHASES[1..].iter().map(|p| format!("{p} MiB")));
    header.extend(["arenas base→build→half→refill→del".to_string()]);
    let mut rows = Vec::new();
    for x in r.retention.iter().filter(|x| x.survivors == "none" && (per_kind || x.kind == kind)) {
        if per_kind
            && r.found.interpreters.iter().find(|i| i.is_default).map(|i| &i.version)
                != Some(&x.version)
        {
            continue;
        }
        let mut row =
            vec![if per_kind { x.kind.clone() } else { x.version.clone() }, x.allocator.clone()];
        row.extend(PHASES[1..].iter().map(|p| above_mib(x, p).map_or("-".into(), f1)));
        let a: Vec<String> = PHASES[..5]
            .iter()
            .map(|p| arenas(x, p).map_or("-".into(), |v| v.to_string()))
            .collect();
        row.push(if a.iter().all(|s| s == "-") { "-".into() } else { a.join("→") });
        rows.push(row);
    }
    (header, rows)
}

fn model_table(r: &CpythonResults) -> (Vec<String>, Vec<Vec<String>>) {
    let header =
        ["CPython", "arena size", "phase", "real arenas", "real − baseline", "model arenas"]
            .map(str::to_string)
            .to_vec();
    let mut rows = Vec::new();
    for x in runs(r, "pymalloc", "floats", "none") {
        let base = arenas(x, "baseline").unwrap_or(0) as i64;
        let size = x.phases.first().and_then(|p| p.stats.as_ref()).map_or(0, |s| s.arena_bytes);
        for p in &x.phases[1..5.min(x.phases.len())] {
            let real = p.stats.as_ref().map(|s| s.arenas_current as i64);
            rows.push(vec![
                x.version.clone(),
                format!("{} KiB", size >> 10),
                p.name.clone(),
                real.map_or("-".into(), |v| v.to_string()),
                real.map_or("-".into(), |v| (v - base).to_string()),
                p.model_arenas.map_or("-".into(), |v| v.to_string()),
            ]);
        }
    }
    (header, rows)
}

fn survivors_table(r: &CpythonResults) -> (Vec<String>, Vec<Vec<String>>) {
    let header = [
        "CPython",
        "PYTHONMALLOC",
        "survivors",
        "build MiB",
        "keep-1-in-1000 MiB",
        "malloc-trim MiB",
        "arenas build→keep",
        "model build→keep",
    ]
    .map(str::to_string)
    .to_vec();
    let rows = r
        .retention
        .iter()
        .filter(|x| x.survivors != "none")
        .map(|x| {
            let m = |p: &str| x.phase(p).and_then(|q| q.model_arenas);
            vec![
                x.version.clone(),
                x.allocator.clone(),
                x.survivors.clone(),
                above_mib(x, "build").map_or("-".into(), f1),
                above_mib(x, "keep-1-in-1000").map_or("-".into(), f1),
                above_mib(x, "malloc-trim").map_or("-".into(), f1),
                match (arenas(x, "build"), arenas(x, "keep-1-in-1000")) {
                    (Some(a), Some(b)) => format!("{a}→{b}"),
                    _ => "-".into(),
                },
                match (m("build"), m("keep-1-in-1000")) {
                    (Some(a), Some(b)) => format!("{a}→{b}"),
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    (header, rows)
}

fn pool_table(r: &CpythonResults) -> (Vec<String>, Vec<Vec<String>>) {
    let header = [
        "CPython",
        "start",
        "scenario",
        "workers at ready",
        "RSS at ready MiB",
        "to zero workers ms",
        "live at end",
        "RSS at end MiB",
        "left for clean-up",
    ]
    .map(str::to_string)
    .to_vec();
    let rows = r
        .pool
        .iter()
        .map(|x| {
            vec![
                x.version.clone(),
                x.start_method.clone(),
                format!("{} ({})", x.scenario, pool::describe(&x.scenario)),
                x.live_at_ready.to_string(),
                f1(x.rss_at_ready_mib),
                x.to_zero_ms
                    .map_or(format!("never (watched {:.0})", x.observed_ms), |t| format!("{t:.0}")),
                x.live_at_end.to_string(),
                f1(x.rss_at_end_mib),
                x.left_for_clean_up.to_string(),
            ]
        })
        .collect();
    (header, rows)
}

fn exit_table(r: &CpythonResults) -> (Vec<String>, Vec<Vec<String>>) {
    let header = [
        "CPython",
        "ending",
        "status",
        "alive RSS MiB",
        "peak MiB",
        "end→zombie ms",
        "zombie has VmRSS",
        "back before reap %",
        "end→back ms",
    ]
    .map(str::to_string)
    .to_vec();
    let o = |v: Option<f64>| v.map_or("-".into(), f1);
    let rows = r
        .exit
        .iter()
        .map(|x| {
            vec![
                x.version.clone(),
                x.ending.clone(),
                x.status.clone(),
                f1(x.alive_rss_mib),
                f1(x.peak_rss_mib),
                o(x.end_to_zombie_ms),
                x.zombie_has_rss.map_or("-".into(), |b| if b { "yes".into() } else { "no".into() }),
                o(x.back_before_reap_pct),
                o(x.end_to_back_ms),
            ]
        })
        .collect();
    (header, rows)
}

/// The tables as plain text, for `arenalab cpython`.
pub fn text_summary(r: &CpythonResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Interpreters: {}",
        r.found
            .interpreters
            .iter()
            .map(|i| format!("{} ({})", i.version, i.path.display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !r.retention.is_empty() {
        let _ = writeln!(
            s,
            "\nRetention: {} floats, RSS above baseline per phase",
            group_digits(r.objects)
        );
        let (h, rows) = retention_table(r, "floats", false);
        s.push_str(&text_table(&h, &rows));
    }
    if !r.pool.is_empty() {
        let _ = writeln!(s, "\nPool: {} workers × {} MiB", r.pool_workers, r.pool_mib);
        let (h, rows) = pool_table(r);
        s.push_str(&text_table(&h, &rows));
    }
    if !r.exit.is_empty() {
        let _ = writeln!(s, "\nExit: {} MiB of floats", r.exit_mib);
        let (h, rows) = exit_table(r);
        s.push_str(&text_table(&h, &rows));
    }
    s
}

// ------------------------------------------------------------------ page

/// The page's title.
pub const TITLE: &str = "Real CPython: the three questions, measured";

/// The folder of the page's charts, under docs/.
pub const IMG_DIR: &str = "cpython";

/// Writes `docs/cpython.md` and `docs/cpython/*.svg`.
pub fn render(r: &CpythonResults, docs: &Path) -> Result<()> {
    let mut md = page_header(TITLE, &r.meta);
    md.push_str(INTRO);
    md.push_str("\n## The interpreters\n\n");
    for i in &r.found.interpreters {
        let _ = writeln!(
            md,
            "- CPython {} (`{}`){}",
            i.version,
            shown(&i.path),
            if i.is_default { ", what `python3` runs" } else { "" }
        );
    }
    // pyenv's shims of versions that are installed but not selected fail by design; the
    // versions themselves are found in pyenv's folder, so one line says so.
    let (shims, other): (Vec<_>, Vec<_>) = r
        .found
        .skipped
        .iter()
        .partition(|k| k.reason.contains("pyenv: ") && k.reason.contains("command not found"));
    for k in other {
        let _ = writeln!(md, "- skipped `{}`: {}", shown(&k.path), k.reason);
    }
    if !shims.is_empty() {
        let names: Vec<String> = shims
            .iter()
            .filter_map(|k| k.path.file_name().map(|n| format!("`{}`", n.to_string_lossy())))
            .collect();
        let _ = writeln!(
            md,
            "- skipped pyenv's shims {} (\"command not found\": that version is not the selected \
             one; the installed versions are found in pyenv's own folder instead)",
            names.join(", ")
        );
    }
    for s in &r.skipped_parts {
        let _ = write!(md, "\n**Not measured:** {s}.\n");
    }
    let _ = write!(md, "\nMeasuring took {:.1} s.\n", r.elapsed_s);
    let [v_exit, v_list, v_pool] = verdicts(r);

    // Question 1
    md.push_str("\n## 1. I deleted my big list: why didn't memory go down?\n\n");
    md.push_str(SNIPPET_LIST);
    let _ = write!(
        md,
        "**Measured:** {}\n\n",
        v_list.unwrap_or_else(|| "nothing was measured.".into())
    );
    if !r.retention.is_empty() {
        let _ = write!(
            md,
            "RSS above the baseline phase (MiB, read by arenalab from `/proc/PID/smaps_rollup` while the script waited), and pymalloc's current arenas from `sys._debugmallocstats()`; {} floats:\n\n",
            group_digits(r.objects)
        );
        let (h, rows) = retention_table(r, "floats", false);
        md.push_str(&markdown_table(&h, &rows));
        for alloc in ["pymalloc", "malloc"] {
            let series: Vec<Series> = runs(r, alloc, "floats", "none")
                .map(|x| Series {
                    label: format!("CPython {}", x.version),
                    values: PHASES.iter().map(|p| above_mib(x, p)).collect(),
                })
                .collect();
            if series.is_empty() {
                continue;
            }
            let cats: Vec<String> = PHASES.iter().map(|s| s.to_string()).collect();
            let svg = line_chart(
                &format!(
                    "{} floats, PYTHONMALLOC={alloc}: RSS above baseline",
                    group_digits(r.objects)
                ),
                &cats,
                "MiB",
                &series,
            )?;
            let file = format!("cpython/retention-{alloc}.svg");
            write_file(&docs.join(&file), &svg)?;
            let _ = write!(md, "\n![floats under {alloc}]({file})\n");
        }
        md.push_str("\n### Every kind, for what `python3` runs\n\n");
        let (h, rows) = retention_table(r, "", true);
        md.push_str(&markdown_table(&h, &rows));
        md.push_str(KINDS_NOTE);
        md.push_str("\n### One object in a thousand survives\n\n");
        let (h, rows) = survivors_table(r);
        md.push_str(&markdown_table(&h, &rows));
        md.push_str(SURVIVORS_NOTE);
        md.push_str("\n### The model beside the real counters\n\n");
        md.push_str(MODEL_NOTE);
        let (h, rows) = model_table(r);
        md.push_str(&markdown_table(&h, &rows));
    }

    // Question 2
    md.push_str("\n## 2. Does a multiprocessing pool that is not closed keep its memory?\n\n");
    md.push_str(SNIPPET_POOL);
    let _ = write!(
        md,
        "**Measured:** {}\n\n",
        v_pool.unwrap_or_else(|| "nothing was measured.".into())
    );
    if !r.pool.is_empty() {
        let (h, rows) = pool_table(r);
        md.push_str(&markdown_table(&h, &rows));
        md.push_str(POOL_NOTE);
        let mut keys: Vec<(String, String)> =
            r.pool.iter().map(|x| (x.version.clone(), x.start_method.clone())).collect();
        keys.dedup();
        for (v, m) in keys {
            let lines: Vec<Line> = r
                .pool
                .iter()
                .filter(|x| {
                    x.version == v && x.start_method == m && CHARTED.contains(&x.scenario.as_str())
                })
                .map(|x| Line {
                    label: x.scenario.clone(),
                    points: x.timeline.iter().map(|p| (p.t_ms, p.rss_mib)).collect(),
                    thin: false,
                })
                .collect();
            let svg = timeline_svg(
                &format!("CPython {v}, {m}: workers' summed RSS"),
                "ms from the key event",
                "MiB",
                &lines,
                &[(0.0, "key event".to_string())],
            )?;
            let file = format!("cpython/pool-{v}-{m}.svg");
            write_file(&docs.join(&file), &svg)?;
            let _ = write!(md, "\n![pool, CPython {v}, {m}]({file})\n");
        }
    }

    // Question 3
    md.push_str("\n## 3. If I kill the Python process, is its memory released?\n\n");
    md.push_str(SNIPPET_EXIT);
    let _ = write!(
        md,
        "**Measured:** {}\n\n",
        v_exit.unwrap_or_else(|| "nothing was measured.".into())
    );
    if !r.exit.is_empty() {
        let (h, rows) = exit_table(r);
        md.push_str(&markdown_table(&h, &rows));
        md.push_str(EXIT_NOTE);
        let cats: Vec<String> = super::exit::ENDINGS.iter().map(|s| s.to_string()).collect();
        let mut vs: Vec<String> = r.exit.iter().map(|x| x.version.clone()).collect();
        vs.dedup();
        let series: Vec<Series> = vs
            .iter()
            .map(|v| Series {
                label: format!("CPython {v}"),
                values: cats
                    .iter()
                    .map(|e| {
                        r.exit
                            .iter()
                            .find(|x| &x.version == v && &x.ending == e)
                            .and_then(|x| x.end_to_zombie_ms)
                    })
                    .collect(),
            })
            .collect();
        let svg = bar_chart(
            &format!("{} MiB of floats: from the end to the zombie", r.exit_mib),
            &cats,
            "ms",
            &series,
        )?;
        write_file(&docs.join("cpython/exit.svg"), &svg)?;
        md.push_str("\n![end to zombie](cpython/exit.svg)\n");
    }
    md.push_str(ANALOG);
    write_file(&docs.join("cpython.md"), &md)
}

/// The scenarios drawn on the pool timelines: all of them, one colour each.
const CHARTED: [&str; pool::SCENARIOS.len()] = pool::SCENARIOS;

const INTRO: &str = "\
The other pages answer with Rust processes and a model of pymalloc. This one runs the CPython \
interpreters installed on the machine, as child processes, on three scripts in \
[`experiments/python/`](../experiments/python/) that you can run by hand: each starts with a \
docstring saying what it shows and how to run it. Figures are the child's own: its RSS, read by \
arenalab from `/proc/PID/smaps_rollup` while the script waits at a barrier, and the \
interpreter's own counters from `sys._debugmallocstats()` (raw text, parsed by arenalab after \
the fact so parsing allocates nothing in the process under test). Only the exit question is \
system-wide, and uses the machine's `MemAvailable` plus the per-CPU free pages, as \
[process-exit.md](process-exit.md) does.
";

const SNIPPET_LIST: &str = "\
```python
import gc, sys
lst = [i + 0.5 for i in range(1_000_000)]   # 1M floats: 32-byte blocks in pymalloc pools
del lst[::2]                                 # half freed: RSS barely moves
lst.extend(i + 0.5 for i in range(500_000))  # refill: reuses the holes, maps nothing new
del lst; gc.collect()                        # all freed: empty arenas are unmapped
sys._debugmallocstats()                      # '# arenas allocated current' on stderr
```

";

const SNIPPET_POOL: &str = "\
```python
import multiprocessing as mp
HELD = []
def work(mib):
    HELD.append(b'x' * (mib << 20))  # the worker keeps it, like a cache would
if __name__ == '__main__':
    pool = mp.Pool(4)
    pool.map(work, [64] * 4)
    # pool.close(); pool.join()      # or terminate(), or `with mp.Pool(4) as pool:`
```

";

const SNIPPET_EXIT: &str = "\
```python
import os
lst = [i + 0.5 for i in range(7_000_000)]   # about 256 MiB of floats
input('kill -9 %d from another terminal, or press Enter' % os.getpid())
```

";

const KINDS_NOTE: &str = "
Floats and 28-byte ints share the 32-byte size class, 2-tuples (with their GC header) the \
64-byte class, 100-byte `bytes` the 144-byte class. For the dict, only the int keys come from \
pymalloc; the hash table is one large block from `malloc`, and deleting keys never shrinks it \
(that is why `del-half` moves nothing and the trim at the end gives most back).
";

const SURVIVORS_NOTE: &str = "
*spread*: every 1000th float is kept, so every arena keeps a few live blocks and none can be \
unmapped; *packed*: the first N/1000 floats are kept, all in the first arena or two, and the \
rest go back. Under `PYTHONMALLOC=malloc` glibc's heap can only shrink from its top, and a \
survivor near the top pins everything below it until `malloc_trim` releases the free pages \
inside the heap.
";

const MODEL_NOTE: &str = "\
The model ([pymalloc.md](pymalloc.md)) ran the same shape (N blocks of 24 bytes, the same \
deletions) from an empty heap with the preset of the version's geometry (1 MiB arenas and \
16 KiB pools from 3.10, 256 KiB arenas and 4 KiB pools before). Compare the model's count with \
the real count *minus the baseline*: the interpreter already holds arenas for its own objects \
before the script builds anything, and those arenas also have free room that the first floats \
fill, so the real rise can be smaller than the model's. Other differences: the float free list \
keeps the last freed floats (up to 100) out of pymalloc, and when the mapping is not \
arena-aligned one pool per arena is lost to alignment (\"bytes lost to arena alignment\"), which \
the model's preset includes. At `del-all` the model keeps its last empty arena (the 3.9+ rule, \
1 arena), while the interpreter keeps its baseline arenas.
";

const POOL_NOTE: &str = "
*to zero workers*: from the key event (the line that tells the parent to close, terminate, \
leave the block, `del`, return; or the parent's SIGKILL) until no `alab-pyworker` process was \
alive. `open-idle` has no key event: its workers are watched and then cleaned up. *left for \
clean-up*: processes arenalab had to SIGKILL afterwards (workers and multiprocessing's helper \
processes: the resource tracker, the fork server). arenalab is the child subreaper during this \
part, so orphans are re-parented to it and can be seen, and every Python process also watches \
arenalab's own life, so none outlives it. A worker's `VmRSS` counts every page it maps, \
including those a forked worker still shares with its parent (the interpreter itself), so the \
sum is more than workers × M MiB.
";

const EXIT_NOTE: &str = "
*end*: the signal, or the moment the script said it was ending (so for `normal` and `exception`, \
end → zombie is the time the interpreter's finalization spent destroying every float before the \
kernel's teardown). *zombie has VmRSS*: `no` means the process's memory map was already gone \
while it waited to be reaped. *back before reap*: `MemAvailable` plus per-CPU free pages, \
regained while the zombie still existed, as a share of the child's anonymous memory. The \
machine is shared, so system-wide figures move with other processes.
";

const ANALOG: &str = "
## Where Python and the Rust analogs differ

- **The pool's finalizer.** [process-pool.md](process-pool.md)'s `drop-naive` pool forgets its \
workers when the handle is dropped; `multiprocessing.Pool` does not: it registers a finalizer \
(`multiprocessing.util.Finalize`) that terminates the workers when the pool object is garbage \
collected, and an `atexit` hook that runs it when the parent exits normally. So `del pool` and \
a normal exit end the workers (CPython 3.8+ also warns with a `ResourceWarning` when an \
unclosed pool is collected). What Python cannot do is run a finalizer when the parent is \
SIGKILLed: then idle workers leave on their own, because their blocking read of the task pipe \
returns end of file (the same mechanism as the Rust `parent-killed-pipe` fix), while busy \
workers keep running, and holding their memory, until their task ends.
- **Retention.** The Rust model and the real interpreters agree on the mechanism: freeing \
every other block frees no arena, refilling reuses the holes, and only empty arenas are \
unmapped. The real interpreter adds its own baseline arenas and free lists \
([retention.md](retention.md) and [pymalloc.md](pymalloc.md) explain the model).
- **Exit.** Identical to the Rust children of [process-exit.md](process-exit.md): the kernel \
takes everything back however the process ends; only the time spent before differs.
";

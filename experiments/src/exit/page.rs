//! `docs/process-exit.md` and its timelines, written from saved results only.

use super::{Ending, ExitResults, table};
use crate::error::{Error, Result};
use crate::render::{self, markdown_table, page_header, write_file};
use plotters::prelude::*;
use std::path::Path;

/// A line on a timeline chart: label, points (ms, MiB), dashed or not.
pub(crate) struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub thin: bool,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Failed(format!("drawing a timeline: {e}"))
}

/// A time chart (x in ms, y in MiB) with one line per entry; colours follow the allocator named
/// first in each label. Thin lines are drawn lighter, for secondary figures.
/// Vertical markers (x, label) are drawn as grey lines with their label at the top.
pub(crate) fn timeline_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[Line],
    markers: &[(f64, String)],
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let pts = lines.iter().flat_map(|l| l.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, 0.0f64, 1.0f64);
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            (x0, x1) = (0.0, 1.0);
        }
        if !markers.is_empty() {
            // Room on the right for the last marker's label.
            x1 += 0.22 * (x1 - x0);
        }
        let pad = 0.06 * (y1 - y0).max(1.0);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
            .map_err(err)?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(err)?;
        for (k, l) in lines.iter().enumerate() {
            let (r, g, b) = render::series_color(&l.label, k);
            let color =
                if l.thin { RGBColor(r, g, b).mix(0.45) } else { RGBColor(r, g, b).mix(1.0) };
            let width = if l.thin { 1 } else { 2 };
            chart
                .draw_series(LineSeries::new(l.points.clone(), color.stroke_width(width)))
                .map_err(err)?
                .label(l.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(width))
                });
        }
        let grey = BLACK.mix(0.45);
        for (i, (x, label)) in markers.iter().enumerate() {
            if *x < x0 || *x > x1 {
                continue;
            }
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(*x, y0 - pad), (*x, y1 + pad)],
                    grey.stroke_width(1),
                )))
                .map_err(err)?;
            // Stagger labels so neighbouring markers stay readable.
            let y = y1 + pad - (i % 3) as f64 * 0.07 * (y1 - y0 + 2.0 * pad);
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(" {label}"),
                    (*x, y),
                    ("sans-serif", 12).into_font().color(&BLACK),
                )))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::MiddleRight)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Writes `docs/process-exit.md` and `docs/process-exit/<ending>.svg`.
pub fn render(results: &ExitResults, docs: &Path) -> Result<()> {
    let mut md = page_header("What a process gives back when it ends", &results.meta);
    md.push_str(INTRO);
    md.push_str(&format!(
        "\n## The measurements\n\nEach child allocated **{} MiB** of small objects (32–512 \
         bytes, every byte written) through the allocator under test and then ended as the row \
         says. {} run(s) per cell; each figure is the median, with the range in brackets when the \
         runs differ. Measuring took {:.1} s.\n\n",
        results.mib, results.repeats, results.elapsed_s
    ));
    let (header, rows) = table(results);
    md.push_str(&markdown_table(&header, &rows));
    md.push_str(&format!("\n_Release rule_: {}.\n\n", results.release_rule));
    md.push_str(&format!(
        "Transparent huge pages were in `{}` mode{}.\n\n",
        results.thp_mode,
        if results.thp_mode == "madvise" {
            ": only memory an allocator asks for with `madvise(MADV_HUGEPAGE)` gets them"
        } else {
            ""
        }
    ));
    md.push_str(COLUMNS);
    let (mut same, mut all) = (0, 0);
    for run in results.cells.iter().flat_map(|c| &c.runs) {
        if let (Some(z), Some(b)) = (run.exit_ms, run.release_accounted_ms) {
            all += 1;
            if b <= z + 1.0 {
                same += 1;
            }
        }
    }
    md.push_str(&format!(
        "\nIn {same} of {all} runs the memory was already back (by the rule above) at the first \
         sample that showed the child as a zombie, within 1 ms: the teardown happens before the \
         process becomes a zombie, not at `wait`.\n"
    ));

    md.push_str("\n## The child's own accounting\n\n");
    md.push_str(
        "What the child said about itself while alive (first run of each cell): its RSS read from \
         its own `/proc/self/smaps_rollup`, and the allocator's figures from \
         `lineup::Allocator::stats` (their own accounting: block sizes are rounded up to size \
         classes, and per-thread counters may be merged lazily, so they differ from the \
         requested total by a few percent). For `free-return`, the same after freeing, just \
         before it returned: this is what the allocator kept, which the exit then gave back \
         anyway.\n\n",
    );
    let h: Vec<String> = [
        "allocator",
        "ending",
        "objects",
        "alloc ms",
        "RSS MiB",
        "allocator in use MiB",
        "allocator holds MiB",
        "after free: RSS MiB",
        "after free: holds MiB",
        "free ms",
    ]
    .map(str::to_string)
    .to_vec();
    let mut rows = Vec::new();
    for c in &results.cells {
        let Some(run) = c.runs.first() else { continue };
        let super::Report::Ready { objects, alloc_ms, stats, process, .. } = &run.ready else {
            continue;
        };
        let opt =
            |v: Option<u64>| v.map_or("-".into(), |b| format!("{:.1}", crate::measure::mib(b)));
        let (frss, fheld, fms) = match &run.freed {
            Some(super::Report::Freed { free_ms, stats, process }) => {
                (opt(Some(process.rss_bytes)), opt(stats.held_bytes), format!("{free_ms:.0}"))
            }
            _ => ("-".into(), "-".into(), "-".into()),
        };
        rows.push(vec![
            c.allocator.to_string(),
            c.ending.name().to_string(),
            objects.to_string(),
            format!("{alloc_ms:.0}"),
            opt(Some(process.rss_bytes)),
            opt(stats.in_use_bytes),
            opt(stats.held_bytes),
            frss,
            fheld,
            fms,
        ]);
    }
    md.push_str(&markdown_table(&h, &rows));

    md.push_str("\n## The system's view\n\n");
    md.push_str(
        "`MemAvailable` around each child (first run of each cell), in MiB, alone and with the \
         free pages on the per-CPU lists added (`+pcp`): how far it fell while the child was alive \
         (before → alive), and how much came back by the time the child was an unreaped zombie \
         (alive → zombie). `MemAvailable` alone can look as if nothing happened: a child that \
         takes its pages from the per-CPU lists (filled by the previous child's exit) does not \
         lower it, and a dying child's pages go back to those lists first. On a shared machine \
         every other process moves these figures too.\n\n",
    );
    let h: Vec<String> = [
        "allocator",
        "ending",
        "before → alive",
        "before → alive +pcp",
        "alive → zombie",
        "alive → zombie +pcp",
    ]
    .map(str::to_string)
    .to_vec();
    let mut rows = Vec::new();
    let raw = |s: &crate::measure::SystemMemory| s.mem_available_bytes as f64;
    let acc = |s: &crate::measure::SystemMemory| (s.mem_available_bytes + s.pcp_free_bytes) as f64;
    let d = |from: f64, to: f64| {
        format!("{:+.1}", ((to - from) / (1u64 << 20) as f64 * 10.0).round() / 10.0 + 0.0)
    };
    for c in &results.cells {
        let Some(run) = c.runs.first() else { continue };
        let (b, a) = (&run.system_before, &run.system_alive);
        let z = run.system_zombie.as_ref();
        rows.push(vec![
            c.allocator.to_string(),
            c.ending.name().to_string(),
            d(raw(b), raw(a)),
            d(acc(b), acc(a)),
            z.map_or("-".into(), |z| d(raw(a), raw(z))),
            z.map_or("-".into(), |z| d(acc(a), acc(z))),
        ]);
    }
    md.push_str(&markdown_table(&h, &rows));

    md.push_str("\n## Timelines\n\n");
    md.push_str(
        "One chart per ending, from the first run of each cell. x: milliseconds from the end \
         (the signal, or the child's last word before it ended by itself). Thick lines: how much \
         `MemAvailable` plus the free pages on per-CPU lists has risen above its value while \
         the child was alive (`MemAvailable` alone lags behind, see the table). Thin lines: the \
         child's `VmRSS` until it became a zombie. For `free-return` and `panic` the time before \
         0 is the child freeing its objects.\n\n",
    );
    let mut endings: Vec<Ending> = Vec::new();
    for c in &results.cells {
        if !endings.contains(&c.ending) {
            endings.push(c.ending);
        }
    }
    for ending in endings {
        let mut lines = Vec::new();
        for c in results.cells.iter().filter(|c| c.ending == ending) {
            let Some(run) = c.runs.first() else { continue };
            lines.push(Line {
                label: format!("{} MemAvailable + per-CPU rise", c.allocator),
                points: run
                    .timeline
                    .iter()
                    .map(|s| (s.t_ms, s.avail_gain_mib + s.pcp_gain_mib))
                    .collect(),
                thin: false,
            });
            lines.push(Line {
                label: format!("{} child RSS", c.allocator),
                points: run
                    .timeline
                    .iter()
                    .filter_map(|s| s.child_rss_mib.map(|r| (s.t_ms, r)))
                    .collect(),
                thin: true,
            });
        }
        let svg = timeline_svg(
            &format!("{}: memory around the end of the child", ending.name()),
            "ms from the end",
            "MiB",
            &lines,
            &[(0.0, "end".to_string())],
        )?;
        let file = format!("process-exit/{}.svg", ending.name());
        write_file(&docs.join(&file), &svg)?;
        md.push_str(&format!("### {}\n\n![{}]({file})\n\n", ending.name(), ending.name()));
    }
    write_file(&docs.join("process-exit.md"), &md)
}

const INTRO: &str = "\
Whatever an allocator keeps after `free` — glibc's fragmented heap, mimalloc's pages waiting for \
their purge delay, jemalloc's dirty pages, pymalloc's pinned arenas — is the process's memory \
only while the process lives. When it ends, the kernel tears the whole address space down \
(`exit_mm`) *before* the process becomes a zombie, so every anonymous page goes back to the \
free lists however the process ended and whichever allocator it used. What the ending changes \
is the time spent before that:

- **free-return** frees every object one by one, then returns from `main`: the program pays for \
  the frees, and the allocator may give some memory back while still running (or keep it: it \
  does not matter, the exit follows).
- **panic** unwinds, and unwinding runs the destructors: an unhandled panic frees everything \
  just like `free-return` before the process ends with status 101.
- **return** (objects leaked), **exit** (`std::process::exit` skips destructors), **abort** \
  (SIGABRT) and the signals **sigkill** and **sigterm** (default action, no handler) skip the \
  program's cleanup: the kernel's teardown is all there is, and it is fast.

A zombie — ended, not yet reaped by its parent — holds no memory: its `/proc/PID/status` has no \
`VmRSS` line at all, and `MemAvailable` has already risen before the parent calls `wait`. A \
parent that never reaps its children leaks process-table entries (a little kernel memory each), not
the memory its children used.

The kernel's teardown itself costs time in proportion to the pages it frees, and page size \
matters: an allocator whose memory sits on transparent huge pages (2 MiB each; the **on huge \
pages** column, `AnonHugePages` of `smaps_rollup`) is torn down hundreds of times faster per \
byte than one on 4 KiB pages.

`MemAvailable` lags a large release: freed pages first go to per-CPU free lists, which \
`MemFree` and `MemAvailable` do not count until they drain (on this kernel the lists can hold \
over a hundred MiB per CPU, and drain over seconds). The release time is therefore taken on \
`MemAvailable` *plus* the per-CPU free pages (`/proc/zoneinfo`, `pagesets`, `count:`); the \
table also shows how much of the memory `MemAvailable` alone showed by the end of sampling.
";

const COLUMNS: &str = "\
Columns: **status** how the child ended (`wait4`); **alive RSS** the child's RSS read by the \
parent from `/proc/PID/smaps_rollup` while it waited; **on huge pages** how much of it was on \
transparent huge pages; **peak** `ru_maxrss` from `wait4`; \
**end→zombie** from the end until `/proc/PID/stat` showed `Z`; **end→back** until the \
release rule was met; **MemAvailable alone** the share of the child's anonymous memory raw \
`MemAvailable` showed when sampling stopped (the rest still on per-CPU lists); **zombie VmRSS** the zombie's `VmRSS` (0 when \
the line is absent, as it is for every zombie); **back before reap** the share of the child's \
anonymous memory already available again (MemAvailable plus per-CPU pages) when the parent \
reaped it, after holding the zombie for 20 ms. System-wide figures move with everything else \
on the machine; the child's own figures do not.
";

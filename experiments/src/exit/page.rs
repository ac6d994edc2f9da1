//! `docs/process-exit.md` and its timelines, written from saved results only.

use super::{Ending, ExitResults, table};
use crate::error::Result;
use crate::render::timeline::{Line, timeline_svg};
use crate::render::{markdown_table, page_header, plural, write_file};
use std::path::Path;

/// The page's title.
pub const TITLE: &str = "What a process gives back when it ends";

impl crate::results::Checked for ExitResults {
    /// At least 1 MiB and 1 run per cell; each (allocator, ending) once, with `repeats` runs;
    /// no summary counting more runs than the cell has.
    fn check(&self) -> std::result::Result<(), String> {
        if self.mib == 0 || self.repeats == 0 {
            return Err(format!(
                "{} MiB and {} runs per cell were measured",
                self.mib, self.repeats
            ));
        }
        let mut seen = Vec::new();
        for c in &self.cells {
            let label = format!("cell {} / {}", c.allocator, c.ending.name());
            if seen.contains(&(c.allocator, c.ending)) {
                return Err(format!("{label} appears twice"));
            }
            seen.push((c.allocator, c.ending));
            if c.runs.len() != self.repeats {
                return Err(format!(
                    "{label} has {} runs; the file says {} per cell",
                    c.runs.len(),
                    self.repeats
                ));
            }
            let s = &c.summary;
            let spreads = [
                s.alive_rss_mib,
                s.alive_huge_mib,
                s.peak_rss_mib,
                s.exit_ms,
                s.release_raw_ms,
                s.release_accounted_ms,
                s.recovered_before_reap_pct,
                s.raw_at_stop_pct,
                s.zombie_rss_mib,
                s.avail_after_minus_before_mib,
            ];
            if spreads.iter().flatten().any(|x| x.n == 0 || x.n > c.runs.len() || x.min > x.max) {
                return Err(format!("{label}: a summary does not match its {} runs", c.runs.len()));
            }
        }
        Ok(())
    }
}

/// Writes `docs/process-exit.md` and `docs/process-exit/<ending>.svg`.
pub fn render(results: &ExitResults, docs: &Path) -> Result<()> {
    let mut md = page_header(TITLE, &results.meta);
    md.push_str(INTRO);
    md.push_str(&format!(
        "\n## The measurements\n\nEach child allocated **{} MiB** of small objects (32–512 \
         bytes, every byte written) through the allocator under test and then ended as the row \
         says. {} run(s) per cell; each figure is the median, with the range in brackets when the \
         runs differ. Measuring took {:.1} s.\n\n",
        results.mib, results.repeats, results.elapsed_s
    ));
    if results.cells.is_empty() {
        md.push_str("_No data: the results file holds no (allocator, ending) cell, so there is nothing to show._\n\n");
    }
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
    md.push_str(&COLUMNS.replace("{hold}", &super::ZOMBIE_HOLD.as_millis().to_string()));
    md.push_str(&notes_legend(results));
    let [same, later, unmet, no_zombie] = super::run_counts(results);
    let total = same + later + unmet + no_zombie;
    md.push_str(&format!(
        "\nOf the {}, {same} had the memory back (by the rule above) at the first sample that \
         showed the child as a zombie, within 1 ms: the teardown happens before the process \
         becomes a zombie, not at `wait`. {later} had it back later than that, {unmet} never met \
         the rule while sampling, and {} reaped before any sample saw {}.\n",
        plural(total as u64, "run"),
        if no_zombie == 1 { "1 was".to_string() } else { format!("{no_zombie} were") },
        if no_zombie == 1 { "it as a zombie" } else { "them as zombies" }
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
         child's `VmRSS` until it became a zombie. For `free-return` the time before 0 is the \
         child freeing its objects (its last word comes after the frees); for `panic` the \
         freeing comes after 0, during the unwinding, before the kernel's teardown.\n\n",
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

/// What the note column means, with the threshold it uses and how many cells carry each mark.
fn notes_legend(results: &ExitResults) -> String {
    let unmet = results
        .cells
        .iter()
        .filter(|c| c.runs.iter().any(|r| r.release_accounted_ms.is_none()))
        .count();
    let noisy = results.cells.iter().filter(|c| !c.runs.iter().all(super::resolved)).count();
    format!(
        "\n_Note column_: **†** runs that never met the release rule while sampling: their \
         time-to-back is missing, and a figure over fewer runs than the cell has says so, e.g. \
         `[2 of 3]`. **≈** runs the system-wide figures could not resolve: between before the \
         child started and after it was reaped, the machine's available memory (with per-CPU \
         pages) moved by more than {:.0} % of the child's anonymous memory, the release rule's \
         margin, so other activity was as large as the effect measured; that cell's end→back, \
         MemAvailable alone and back before reap mean little. The smaller `--mib`, the more \
         cells carry it. Here: {} marked †, {} marked ≈.\n",
        (1.0 - super::RELEASE_FRACTION) * 100.0,
        plural(unmet as u64, "cell"),
        plural(noisy as u64, "cell"),
    )
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
  like `free-return` before the process ends with status 101. The child writes its last word \
  (the end, time 0) just before `panic!`, so here the freeing comes *after* 0 and is part of \
  the panic's end→zombie and end→back times.
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
reaped it, after holding the zombie for {hold} ms. System-wide figures move with everything else \
on the machine; the child's own figures do not. The percentages compare the whole machine's \
available memory with the child's own anonymous memory, so they can read above 100 % (the \
kernel also frees the child's page tables and other bookkeeping, and other processes free \
memory too) or below 0 (other processes took memory meanwhile): a figure far from 100 % is \
noise, which the note column flags.
";

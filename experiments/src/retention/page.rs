//! `docs/retention.md`: the retention results as tables, charts and occupancy maps.

use super::workloads::{self, Workload};
use super::{RetentionResults, Run};
use crate::error::Result;
use crate::render::{self, chart, occupancy};
use std::fmt::Write as _;
use std::path::Path;

/// Folder (under docs/) of the page's pictures.
pub const IMG_DIR: &str = "retention";

/// The page's title.
pub const TITLE: &str = "Retention: what each allocator keeps after free";

impl crate::results::Checked for RetentionResults {
    /// Every run names a known workload and one of its variants, and has exactly that
    /// workload's phases in order (the tables index them); every occupancy map can be drawn.
    fn check(&self) -> std::result::Result<(), String> {
        if self.objects == 0 || self.size == 0 {
            return Err(format!(
                "{} of {} B were measured",
                render::plural(self.objects, "object"),
                self.size
            ));
        }
        let mut seen = Vec::new();
        for r in &self.runs {
            let w = Workload::from_name(&r.workload)
                .ok_or_else(|| format!("run {:?} names an unknown workload", r.workload))?;
            let label = format!("run {} under {}", r.workload, r.label());
            match (&r.variant, w.variants()) {
                (None, []) => {}
                (Some(v), vs) if vs.contains(&v.as_str()) => {}
                (v, vs) => {
                    return Err(format!(
                        "{label}: variant {v:?}; the workload's variants are {vs:?}"
                    ));
                }
            }
            let got: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
            if got != workloads::phase_names(w) {
                return Err(format!(
                    "{label} has phases {got:?}, expected {:?}",
                    workloads::phase_names(w)
                ));
            }
            for p in &r.phases {
                if let Some(o) = &p.occupancy {
                    o.check().map_err(|e| format!("{label}, phase {}: {e}", p.name))?;
                }
            }
            let key = (r.allocator, r.workload.as_str(), r.variant.as_deref());
            if seen.contains(&key) {
                return Err(format!("{label} appears twice"));
            }
            seen.push(key);
        }
        Ok(())
    }
}

/// "pymalloc runs with the layout ...": the layout of the results' pymalloc runs, described from
/// [`pymalloc::Layout`] (or named as recorded, if this build does not know it).
fn layout_sentence(name: &str) -> String {
    match pymalloc::Layout::from_name(name) {
        Some(l) => format!(
            "pymalloc runs with layout `{}` ({}; `--preset` and `--python` choose another).",
            l.name(),
            crate::preset::describe(l)
        ),
        None => format!("pymalloc runs with layout `{name}`."),
    }
}

/// Writes `docs/retention.md` and its SVGs under `docs/retention/` from saved results.
pub fn render(results: &RetentionResults, docs: &Path) -> Result<()> {
    let mut md = render::page_header(TITLE, &results.meta);
    let _ = write!(
        md,
        "{}",
        concat!(
            "Freeing a block makes it reusable *by the allocator*. Whether its pages also leave the ",
            "process's resident set (RSS) depends on where the block sat and on the allocator's policy. ",
            "This page runs the same workloads under glibc (`system`), mimalloc, jemalloc and pymalloc ",
            "and records, after every phase, the kernel's view (RSS from `/proc/self/smaps_rollup`) and ",
            "the allocator's own counters.\n\n",
            "How it is measured:\n\n",
            "- every (allocator, workload) pair runs in a fresh child process (`arenalab worker retention`);\n",
            "- the workload's bookkeeping (pointer and size arrays) lives in its own `mmap`, touched before ",
            "the baseline, so it never comes from the allocator under test;\n",
            "- the allocator is warmed up (one allocation and free) before the baseline, so its one-off ",
            "start-up cost is not counted;\n",
            "- every byte of every object is written when allocated and checked before it is freed;\n",
            "- the last phase, `release`, calls the allocator's own give-back function ",
            "(`malloc_trim(0)`, `mi_collect(true)`, jemalloc's tcache flush and arena purge; pymalloc has none).\n\n",
        )
    );
    let _ = writeln!(md, "{}\n", layout_sentence(&results.pymalloc_layout));
    let _ = writeln!(
        md,
        "Figures are **MiB of RSS above the baseline**; {} of {} bytes unless the workload says otherwise. \
         A negative figure means RSS fell below the baseline: the allocator gave back pages that \
         were already resident when the baseline was taken (from its start-up and warm-up). \
         The whole matrix took {:.1} s.\n",
        render::plural(results.objects, "object"),
        results.size,
        results.elapsed_ms as f64 / 1000.0
    );
    summary(&mut md, results);
    for w in Workload::ALL {
        let runs: Vec<&Run> = results.runs.iter().filter(|r| r.workload == w.name()).collect();
        if runs.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## `{}`\n\n{}\n\n{}\n", w.name(), w.description(), reading(w));
        let (header, rows) = super::table_rows(w, &runs);
        md.push_str(&render::markdown_table(&header, &rows));
        md.push('\n');
        lazyfree_note(&mut md, w, &runs);
        let phases: Vec<String> = workloads::phase_names(w).iter().map(|p| p.to_string()).collect();
        let series: Vec<chart::Series> = runs
            .iter()
            .map(|r| chart::Series {
                label: r.label(),
                values: r
                    .rss_above_baseline()
                    .iter()
                    .map(|&b| Some(b as f64 / (1u64 << 20) as f64))
                    .collect(),
            })
            .collect();
        let svg = chart::line_chart(
            &format!("{}: RSS above baseline by phase", w.name()),
            &phases,
            "MiB",
            &series,
        )?;
        let file = format!("{IMG_DIR}/{}.svg", w.name());
        render::write_file(&docs.join(&file), &svg)?;
        let _ = writeln!(md, "![RSS by phase, {}]({file})\n", w.name());
        pymalloc_counters(&mut md, w, &runs);
        occupancy_maps(&mut md, w, &runs, docs)?;
        release_calls(&mut md, &runs);
    }
    render::write_file(&docs.join("retention.md"), &md)
}

/// A second table when some allocator left pages as LazyFree (counted in RSS until the kernel
/// needs them).
fn lazyfree_note(md: &mut String, w: Workload, runs: &[&Run]) {
    let any = runs.iter().flat_map(|r| &r.phases).any(|p| p.lazyfree_bytes > 512 << 10);
    if !any {
        return;
    }
    let phases = &workloads::phase_names(w)[1..];
    let header: Vec<String> = std::iter::once("LazyFree, MiB".to_string())
        .chain(phases.iter().map(|p| p.to_string()))
        .collect();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            std::iter::once(r.label())
                .chain(
                    r.phases[1..]
                        .iter()
                        .map(|p| format!("{:.1}", p.lazyfree_bytes as f64 / (1u64 << 20) as f64)),
                )
                .collect()
        })
        .collect();
    md.push_str("Of that RSS, pages marked `MADV_FREE` (LazyFree: the kernel takes them back only under memory pressure):\n\n");
    md.push_str(&render::markdown_table(&header, &rows));
    md.push('\n');
}

fn pymalloc_counters(md: &mut String, w: Workload, runs: &[&Run]) {
    for r in runs.iter().filter(|r| r.phases.iter().any(|p| p.pymalloc.is_some())) {
        let phases = workloads::phase_names(w);
        let header: Vec<String> = std::iter::once(format!("{}: arenas", r.label()))
            .chain(phases.iter().map(|p| p.to_string()))
            .collect();
        let row = |name: &str, f: &dyn Fn(&super::PymallocCounters) -> u64| -> Vec<String> {
            std::iter::once(name.to_string())
                .chain(
                    r.phases
                        .iter()
                        .map(|p| p.pymalloc.as_ref().map_or("–".into(), |c| f(c).to_string())),
                )
                .collect()
        };
        let rows = vec![
            row("current", &|c| c.arenas_current),
            row("allocated total", &|c| c.arenas_allocated_total),
            row("reclaimed", &|c| c.arenas_reclaimed),
            row("highwater", &|c| c.arenas_highwater),
            row("pools in use", &|c| c.pools_used + c.pools_full),
            row("pools empty", &|c| c.pools_empty),
        ];
        md.push_str(&render::markdown_table(&header, &rows));
        md.push('\n');
    }
}

fn occupancy_maps(md: &mut String, w: Workload, runs: &[&Run], docs: &Path) -> Result<()> {
    for r in runs {
        let panels: Vec<(String, &occupancy::Occupancy)> = r
            .phases
            .iter()
            .filter_map(|p| p.occupancy.as_ref().map(|o| (p.name.clone(), o)))
            .filter(|(name, _)| name != "baseline" && name != "release")
            .collect();
        if panels.is_empty() {
            continue;
        }
        let slug = match &r.variant {
            Some(v) => format!("{}-{v}", w.name()),
            None => w.name().to_string(),
        };
        let file = format!("{IMG_DIR}/occupancy-{slug}.svg");
        let svg = occupancy::svg(
            &format!(
                "pymalloc occupancy, {}: one row per arena (highest address on top), one cell per pool",
                r.label().replace("pymalloc", w.name())
            ),
            &panels,
        );
        render::write_file(&docs.join(&file), &svg)?;
        let _ = writeln!(
            md,
            "![pymalloc occupancy, {slug}]({file})\n\n_Occupancy of {}: rows are arenas ordered \
             by address, the highest on top (the kernel maps each new arena below the last, so \
             the top row is usually the first allocated); cells are pools in address order._\n",
            r.label()
        );
    }
    Ok(())
}

/// How to read a workload's figures: the mechanisms behind them (the figures themselves are
/// in the tables, measured).
fn reading(w: Workload) -> &'static str {
    match w {
        Workload::Seed => concat!(
            "What to look for: the `full free` column is the \"I deleted my big list\" answer. ",
            "glibc puts small freed chunks on its tcache and fastbins, which are not merged back into the top ",
            "of the heap until something consolidates them, so the heap cannot shrink; `malloc_trim(0)` ",
            "consolidates and returns the pages. mimalloc purges a freed page only after its purge delay and ",
            "only when the allocator is called again; jemalloc lets dirty pages decay over seconds. ",
            "pymalloc unmaps each arena the moment its last block is freed and keeps one empty arena."
        ),
        Workload::EveryOther => concat!(
            "What to look for: after `partial free` half the objects are gone but no page or pool is empty, ",
            "so no allocator can give anything back, and the `refill` fits into the holes without growing. ",
            "The occupancy map shows every pool of every arena half full."
        ),
        Workload::Survivors => concat!(
            "What to look for: the same number of survivors pins very different amounts of memory. Spread, ",
            "one live object in every pool (pymalloc) or page (mimalloc, jemalloc) keeps it; packed, almost ",
            "everything can go. A release call can return whole free pages between survivors (glibc's ",
            "`malloc_trim` does), but not a pymalloc arena holding a live block."
        ),
        Workload::FifoHalf => concat!(
            "What to look for: freeing the oldest half empties whole pools and arenas at the start of memory, ",
            "so an allocator that returns empty spans can give back about half at `partial free`."
        ),
        Workload::Mixed => concat!(
            "What to look for: many size classes freed in random order. Pools and pages empty only when all ",
            "their blocks have gone, so little can be returned at `partial free`; pymalloc needs no release ",
            "call for the rest."
        ),
        Workload::Large => concat!(
            "What to look for: glibc serves blocks at or above its mmap threshold (128 KiB at start) with their ",
            "own mapping and unmaps them at free. Freeing such a 200 KiB block raises the threshold above it, ",
            "so the second round of 200 KiB blocks comes from the heap, and one live block at the top keeps ",
            "the freed ones below it resident until `malloc_trim`. pymalloc passes these sizes to the system ",
            "`malloc` (as CPython does) and has no release call of its own."
        ),
        Workload::Policy => concat!(
            "What to look for: the `old die` column. CPython takes new pools from the most used arena, so the ",
            "churn lands in the dense older arenas and the sparse ones can drain and be unmapped when their ",
            "old objects die; taking pools from the newest arena puts the churn into the sparse arenas and ",
            "pins them. The arena tables give the counts."
        ),
    }
}

/// The overview: per allocator and workload, what is kept just before the release call and
/// what is left after it.
fn summary(md: &mut String, results: &RetentionResults) {
    let labels: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for r in &results.runs {
            if !v.contains(&r.allocator.to_string()) {
                v.push(r.allocator.to_string());
            }
        }
        v
    };
    let mut header = vec!["workload".to_string()];
    for l in &labels {
        header.push(format!("{l}: kept"));
        header.push(format!("{l}: after release"));
    }
    let mut rows = Vec::new();
    for r in &results.runs {
        let name = match &r.variant {
            Some(v) => format!("{} ({v})", r.workload),
            None => r.workload.clone(),
        };
        let above = r.rss_above_baseline();
        let n = above.len();
        if n < 3 {
            continue;
        }
        let row = match rows.iter().position(|row: &Vec<String>| row[0] == name) {
            Some(i) => i,
            None => {
                rows.push(
                    std::iter::once(name)
                        .chain(labels.iter().flat_map(|_| ["–".to_string(), "–".to_string()]))
                        .collect(),
                );
                rows.len() - 1
            }
        };
        let col = 1 + 2 * labels.iter().position(|l| *l == r.allocator.to_string()).unwrap_or(0);
        rows[row][col] = fmt_mib(above[n - 2]);
        rows[row][col + 1] = fmt_mib(above[n - 1]);
    }
    md.push_str("## Summary\n\nRSS above the baseline just before the release call (`kept`: what the program holds after its own frees, plus what the allocator keeps) and after it. The phase before `release` is the workload's last free; `survivors`, `large` and `policy` still hold live objects there, as each section explains.\n\n");
    md.push_str(&render::markdown_table(&header, &rows));
    md.push('\n');
}

/// Bytes as MiB with one decimal, never "-0.0".
pub fn fmt_mib(bytes: i64) -> String {
    let v = bytes as f64 / (1u64 << 20) as f64;
    if v.abs() < 0.05 { "0.0".to_string() } else { format!("{v:.1}") }
}

fn release_calls(md: &mut String, runs: &[&Run]) {
    let mut lines = Vec::new();
    for r in runs {
        match r.phases.iter().find_map(|p| p.release.as_ref()) {
            Some(lineup::Release::NotAvailable { reason }) => {
                lines.push(format!("- {}: no call made; {reason}", r.label()))
            }
            Some(rel) => lines.push(format!("- {}: {rel}", r.label())),
            None => {}
        }
    }
    if !lines.is_empty() {
        md.push_str("<details><summary>What each release call did</summary>\n\n");
        md.push_str(&lines.join("\n"));
        md.push_str("\n\n</details>\n\n");
    }
}

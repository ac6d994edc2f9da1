//! The pages that gather the experiments: docs/README.md (the index), docs/claims.md and
//! docs/allocators.md. Every figure and every verdict is computed here from the results files;
//! nothing is typed in by hand.

use crate::error::Result;
use crate::render::{group_digits, markdown_table, write_file};
use crate::retention::{RetentionResults, Run};
use lineup::Allocator;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Every results file that exists.
#[derive(Debug, Default)]
pub struct Results {
    /// docs/results/retention.json.
    pub retention: Option<RetentionResults>,
    /// docs/results/exit.json.
    pub exit: Option<crate::exit::ExitResults>,
    /// docs/results/pool.json.
    pub pool: Option<crate::pool::PoolResults>,
    /// docs/results/pymalloc.json.
    pub tour: Option<crate::tour::TourResults>,
    /// docs/results/benchmarks.json.
    pub bench: Option<crate::bench_report::BenchResults>,
}

/// A claim of the seed question, with the verdict the measurements give.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// `true`, `false` or `true only when ...`.
    pub short: String,
    /// The figures behind it, as Markdown.
    pub evidence: String,
    /// The page with the full measurements.
    pub page: &'static str,
}

/// Writes docs/claims.md, docs/allocators.md and docs/README.md. Returns the pages written.
pub fn render(r: &Results, docs: &Path) -> Result<Vec<PathBuf>> {
    let claims = claims(r);
    let mut written = Vec::new();
    if let Some(page) = claims_page(r, &claims) {
        write_file(&docs.join("claims.md"), &page)?;
        written.push(docs.join("claims.md"));
    }
    if let Some(ret) = &r.retention {
        write_file(&docs.join("allocators.md"), &allocators_page(ret))?;
        written.push(docs.join("allocators.md"));
    }
    write_file(&docs.join("README.md"), &index_page(r, &claims))?;
    written.push(docs.join("README.md"));
    Ok(written)
}

// ------------------------------------------------------------------ figures

/// MiB with one decimal, from bytes (a rounding `-0.0` shows as `0.0`).
fn mib(bytes: f64) -> String {
    let m = bytes / (1u64 << 20) as f64;
    format!("{:.1} MiB", if m.abs() < 0.05 { 0.0 } else { m })
}

fn run<'a>(
    r: &'a RetentionResults,
    a: Allocator,
    workload: &str,
    variant: Option<&str>,
) -> Option<&'a Run> {
    r.runs
        .iter()
        .find(|x| x.allocator == a && x.workload == workload && x.variant.as_deref() == variant)
}

/// RSS above the run's baseline at a phase, bytes.
fn above(run: &Run, phase: &str) -> Option<f64> {
    let base = run.phases.first()?.rss_bytes as f64;
    run.phases.iter().find(|p| p.name == phase).map(|p| p.rss_bytes as f64 - base)
}

/// The RSS of the first phase named `alloc...` above baseline: the peak of the workload.
fn peak(run: &Run) -> Option<f64> {
    let name = &run.phases.iter().find(|p| p.name.starts_with("alloc"))?.name;
    above(run, name)
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole <= 0.0 { 0.0 } else { 100.0 * part / whole }
}

// ------------------------------------------------------------------ claims

/// The three claims of the seed question and what the results say of each.
pub fn claims(r: &Results) -> [(&'static str, Option<Verdict>); 3] {
    [
        (
            "(a) Memory is released when a process is closed or killed.",
            r.exit.as_ref().map(claim_exit),
        ),
        (
            "(b) After deleting a big list, memory never returns to where it was, because the runtime \"thinks ahead\" and keeps it in case it is needed again.",
            r.retention.as_ref().and_then(claim_list),
        ),
        (
            "(c) If a worker pool is not closed correctly, the memory used by its worker processes may not be released.",
            r.pool.as_ref().map(claim_pool),
        ),
    ]
}

fn claim_exit(e: &crate::exit::ExitResults) -> Verdict {
    let mut back = 0;
    let mut zombie_zero = 0;
    let mut slowest: Option<(f64, String)> = None;
    let mut rows = Vec::new();
    for c in &e.cells {
        let s = &c.summary;
        let recovered = s.recovered_before_reap_pct.map(|x| x.median);
        let released = s.release_accounted_ms.is_some() || recovered.is_some_and(|p| p >= 90.0);
        back += usize::from(released);
        let zombie = s.zombie_rss_mib.map_or(0.0, |x| x.max);
        zombie_zero += usize::from(zombie == 0.0);
        if let Some(ms) = s.release_accounted_ms.map(|x| x.median)
            && slowest.as_ref().is_none_or(|(m, _)| ms > *m)
        {
            slowest = Some((ms, format!("{} / {}", c.allocator, c.ending.name())));
        }
        rows.push(vec![
            c.allocator.to_string(),
            c.ending.name().to_string(),
            s.alive_rss_mib.map_or("-".into(), |x| format!("{:.0}", x.median)),
            format!("{zombie:.0}"),
            recovered.map_or("-".into(), |p| format!("{p:.0} %")),
            s.release_accounted_ms.map_or("not seen".into(), |x| format!("{:.0}", x.median)),
        ]);
    }
    let n = e.cells.len();
    let short = if back == n && zombie_zero == n {
        "True, for every ending and every allocator measured.".to_string()
    } else if back == 0 {
        "False in these measurements.".to_string()
    } else {
        format!("True only partly: memory was seen back in {back} of {n} cases.")
    };
    let header: Vec<String> = [
        "allocator",
        "ending",
        "RSS alive (MiB)",
        "zombie RSS (MiB)",
        "back before reaping",
        "back after (ms)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut evidence = format!(
        "Each child allocated and wrote {} MiB of small objects, then ended; medians of {} runs. \
         In {zombie_zero} of {n} cases the dead, not yet reaped child (a zombie) held no resident memory: \
         the kernel tears the address space down when the process dies, before anyone reaps it. \
         Whatever the allocator kept after `free` goes with it.",
        e.mib, e.repeats
    );
    if let Some((ms, cell)) = slowest {
        let _ = write!(evidence, " The slowest return measured took {ms:.0} ms ({cell}).");
    }
    evidence.push_str("\n\n");
    evidence.push_str(&markdown_table(&header, &rows));
    Verdict { short, evidence, page: "process-exit.md" }
}

fn claim_list(r: &RetentionResults) -> Option<Verdict> {
    let py = Allocator::Pymalloc;
    let seed = run(r, py, "seed", None)?;
    let p = peak(seed)?;
    let full = above(seed, "full free")?;
    let spread = run(r, py, "survivors", Some("spread"));
    let kept_spread = spread.and_then(|s| Some((above(s, "partial free")?, peak(s)?)));
    let every =
        run(r, py, "every-other", None).and_then(|s| Some((above(s, "partial free")?, peak(s)?)));
    let arenas_left = seed
        .phases
        .iter()
        .find(|x| x.name == "full free")
        .and_then(|x| x.pymalloc.as_ref())
        .map(|c| c.arenas_current);
    let full_pct = pct(full, p);
    let pins = kept_spread.is_some_and(|(k, pk)| pct(k, pk) > 50.0);
    let short = if full_pct < 10.0 && pins {
        "True only when some objects of the list survive (pymalloc, CPython's allocator): freeing the whole list gives the memory back, all but one arena; a few survivors scattered through it keep almost all of it.".to_string()
    } else if full_pct < 10.0 {
        "False for pymalloc here: freeing the whole list gave the memory back.".to_string()
    } else {
        "True: memory stayed after freeing the whole list.".to_string()
    };
    let mut ev = format!(
        "With pymalloc (CPython's allocator, modelled), {} objects of {} B took {} above the baseline. \
         After freeing all of them, {} ({:.0} %) stayed",
        group_digits(r.objects),
        r.size,
        mib(p),
        mib(full),
        full_pct
    );
    if let Some(a) = arenas_left {
        let _ = write!(
            ev,
            ": {a} arena kept, the last usable one, which CPython 3.9+ keeps on purpose"
        );
    }
    ev.push_str(". ");
    if let Some((k, pk)) = kept_spread {
        let _ = write!(
            ev,
            "Keeping 1 object in 1000, spread through the list, kept {} of {} ({:.0} %): one live object pins its 16 KiB pool, and one used pool pins its 1 MiB arena. ",
            mib(k),
            mib(pk),
            pct(k, pk)
        );
    }
    if let Some((k, pk)) = every {
        let _ = write!(ev, "Freeing every other object kept {} of {}. ", mib(k), mib(pk));
    }
    ev.push_str(
        "So the memory is not kept because the runtime \"thinks ahead\": pymalloc returns an arena as soon as every pool in it is empty, and keeps what is pinned by live objects. ",
    );
    if let Some(g) = run(r, Allocator::System, "seed", None)
        && let (Some(gf), Some(gr)) = (above(g, "full free"), above(g, "release"))
    {
        let _ = write!(
            ev,
            "For comparison, glibc `malloc`, which serves CPython's objects above 512 B (the list's own pointer array among them), kept {} after the same objects were freed, until `malloc_trim(0)` brought it to {}.",
            mib(gf),
            mib(gr)
        );
    }
    Some(Verdict { short, evidence: ev, page: "retention.md" })
}

fn claim_pool(p: &crate::pool::PoolResults) -> Verdict {
    use crate::pool::Scenario;
    let get = |s: Scenario| p.scenarios.iter().find(|x| x.scenario == s);
    let kept = |s: Scenario| get(s).is_some_and(|x| x.live_at_end > 0 && x.rss_at_end_bytes > 0);
    let freed = |s: Scenario| get(s).is_some_and(|x| x.live_at_end == 0);
    let unclosed_keeps = kept(Scenario::DropNaive) || kept(Scenario::ParentKilledNone);
    let closed_frees = freed(Scenario::ShutdownJoin) && freed(Scenario::DropCorrect);
    let short = match (unclosed_keeps, closed_frees) {
        (true, true) => "True while the workers live: a pool that is not shut down leaves its worker processes running, holding their memory, until something ends them; a pool shut down (or dropped by a correct Drop) gives it all back.".to_string(),
        (true, false) => "True: the workers of an unclosed pool kept their memory.".to_string(),
        (false, _) => "False in these measurements: no worker outlived its pool.".to_string(),
    };
    let header: Vec<String> =
        ["scenario", "workers alive at the end", "their RSS (MiB)", "all gone after (ms)"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let rows: Vec<Vec<String>> = p
        .scenarios
        .iter()
        .map(|s| {
            vec![
                format!("`{}`: {}", s.scenario.name(), s.description),
                format!("{} of {}", s.live_at_end, p.workers),
                format!("{:.0}", s.rss_at_end_bytes as f64 / (1u64 << 20) as f64),
                s.to_zero_ms.map_or("outlived the observation".into(), |ms| format!("{ms:.0}")),
            ]
        })
        .collect();
    let evidence = format!(
        "A pool of {} worker processes, each holding {} MiB, in each scenario; the workers' summed RSS \
         read from /proc. The memory is never lost: it belongs to live processes, and the kernel \
         takes it back when they end (claim (a)). What matters is whether anything ends them: a \
         shutdown, a Drop that signals and reaps, or, when the parent dies, `PR_SET_PDEATHSIG` or a \
         pipe the workers watch. (arenalab kills and reaps every leftover worker afterwards.)\n\n{}",
        p.workers,
        p.mib,
        markdown_table(&header, &rows)
    );
    Verdict { short, evidence, page: "process-pool.md" }
}

fn claims_page(r: &Results, claims: &[(&'static str, Option<Verdict>); 3]) -> Option<String> {
    let meta = r.retention.as_ref().map(|x| &x.meta).or(r.exit.as_ref().map(|x| &x.meta))?;
    let mut md = crate::render::page_header("The seed question's claims, tested", meta);
    md.push_str(
        "The question that started arenalab (`shared/reference/seed-question.html`): *when a Python \
         session is closed or killed, is the memory of its lists released?* The answers made three \
         claims. Each verdict below is computed from the measurements, not written by hand; the \
         linked pages hold every figure.\n\n",
    );
    md.push_str("The pymalloc figures come from a model of CPython's allocator; [trace.md](trace.md) is the evidence that the model is CPython's behaviour: real interpreters' calls replayed on it give the interpreters' own counters at every mark.\n\n");
    for (claim, verdict) in claims {
        let _ = write!(md, "## {claim}\n\n");
        match verdict {
            Some(v) => {
                let _ = write!(
                    md,
                    "**Verdict: {}**\n\n{}\n\nMeasured in [{}]({}).\n\n",
                    v.short, v.evidence, v.page, v.page
                );
            }
            None => md.push_str("_Not measured yet: run `cargo run --release`._\n\n"),
        }
    }
    Some(md)
}

// ------------------------------------------------------------------ allocators

fn allocators_page(r: &RetentionResults) -> String {
    let mut md = crate::render::page_header("When each allocator gives memory back", &r.meta);
    md.push_str(
        "For each allocator: when freed memory goes back to the OS, and which call or knob forces \
         it. Every figure is RSS above the worker's baseline, measured in the retention experiment \
         ([retention.md](retention.md)).\n\n",
    );
    for a in Allocator::ALL {
        let _ = write!(md, "## {a}\n\n{}\n\n", intro(a));
        let mut facts = Vec::new();
        if let Some(s) = run(r, a, "seed", None)
            && let (Some(p), Some(f), Some(rel)) =
                (peak(s), above(s, "full free"), above(s, "release"))
        {
            facts.push(format!(
                "`seed` ({} × {} B): {} after allocating, **{}** after freeing everything, **{}** after {}.",
                group_digits(r.objects),
                r.size,
                mib(p),
                mib(f),
                mib(rel),
                release_name(s)
            ));
        }
        if let Some(s) = run(r, a, "every-other", None)
            && let (Some(p), Some(f)) = (peak(s), above(s, "partial free"))
        {
            facts.push(format!(
                "`every-other`: freeing half the objects, every second one, left {} of {}.",
                mib(f),
                mib(p)
            ));
        }
        if let Some(s) = run(r, a, "survivors", Some("spread"))
            && let (Some(p), Some(f), Some(rel)) =
                (peak(s), above(s, "partial free"), above(s, "release"))
        {
            facts.push(format!(
                "`survivors` (1 in 1000 kept, spread): {} of {} stayed, {} after the release call.",
                mib(f),
                mib(p),
                mib(rel)
            ));
        }
        if let Some(s) = run(r, a, "large", None)
            && let (Some(p), Some(f)) = (above(s, "alloc 4M"), above(s, "free 4M"))
        {
            let mut t =
                format!("`large`: 4 MiB blocks took {} and left {} once freed", mib(p), mib(f));
            if let (Some(p2), Some(f2)) =
                (above(s, "alloc 200K again"), above(s, "free all but last"))
            {
                let _ = write!(
                    t,
                    "; 200 KiB blocks (second round) took {} and left {} with one still alive",
                    mib(p2),
                    mib(f2)
                );
            }
            t.push('.');
            facts.push(t);
        }
        for f in facts {
            let _ = writeln!(md, "- {f}");
        }
        let knobs = a.knobs();
        if knobs.is_empty() {
            md.push_str("\nKnobs: none at run time; the layout is fixed when the allocator is built (`pymalloc::Config`).\n\n");
        } else {
            md.push_str("\nKnobs:\n\n");
            for k in knobs {
                let default =
                    k.default.map_or(String::new(), |d| format!(" (default {d} {})", k.unit));
                let _ = writeln!(md, "- `{}`{}: {}", k.name, default, k.description);
            }
            md.push('\n');
        }
    }
    md.push_str(GLOSSARY);
    md
}

fn release_name(run: &Run) -> String {
    run.phases.iter().find_map(|p| p.release.as_ref()).map_or("the release call".into(), |rel| {
        match rel.call() {
            Some(c) => format!("`{c}`"),
            None => "the release phase (pymalloc has no release call)".into(),
        }
    })
}

fn intro(a: Allocator) -> &'static str {
    match a {
        Allocator::System => {
            "glibc `malloc` serves small blocks from heaps (the main one grown with `brk`, others \
             with `mmap`) and blocks above the mmap threshold (128 KiB at first) from their own \
             mappings, which `free` returns at once. Freeing such a block raises the threshold to \
             its size, so later blocks that size come from the heap. Freed heap memory returns only \
             from the top of the heap, when it exceeds the trim threshold, or on `malloc_trim(0)`, \
             which also releases whole free pages inside the heap."
        }
        Allocator::Mimalloc => {
            "mimalloc keeps free memory in its pages and segments and purges it (decommit or \
             reset) after a delay, `purge_delay` (10 ms by default), checked when the allocator \
             runs; `mi_collect(true)` purges at once."
        }
        Allocator::Jemalloc => {
            "jemalloc turns freed pages into dirty pages that decay to the OS over \
             `dirty_decay_ms` (10 s by default), then muzzy ones over `muzzy_decay_ms`. The decay \
             clock advances with allocation activity (or a background thread, off by default); \
             `arena.<i>.purge` purges at once."
        }
        Allocator::Pymalloc => {
            "pymalloc (CPython's small-object allocator, modelled in this workspace) returns memory \
             only as whole 1 MiB arenas, and only when every pool in an arena is empty; since 3.9 \
             it keeps the last usable arena even then. Empty pools inside a live arena stay \
             resident. There is no call that gives back more: a live object pins its arena."
        }
    }
}

const GLOSSARY: &str = "\
## Glossary

| term | meaning |
|---|---|
| RSS | Resident set size: the process's pages in RAM now (`Rss` in `/proc/PID/smaps_rollup`). |
| anonymous | Resident memory not backed by a file: the heap, `mmap(MAP_ANONYMOUS)` (`Anonymous`). |
| LazyFree | Pages the allocator marked `MADV_FREE`: still counted in RSS, but the kernel may take them without asking when memory is short. |
| dirty / muzzy / retained | jemalloc: dirty pages are freed but still backed; muzzy pages were `MADV_FREE`d; retained virtual memory was given back but the address range is kept for reuse. |
| mmap threshold | glibc: requests at least this large get their own mapping (128 KiB at first, raised dynamically up to 32 MiB). |
| trim | glibc: returning free memory at the top of the heap to the OS (`M_TRIM_THRESHOLD`, `malloc_trim`). |
| purge | mimalloc and jemalloc: returning free pages to the OS (decommit, `MADV_DONTNEED` or `MADV_FREE`). |
| arena | pymalloc: a 1 MiB mapping cut into pools (glibc and jemalloc use the word for their own, larger structures). |
| pool | pymalloc: 16 KiB holding blocks of one size class. |
| size class | the block size a request is rounded up to (pymalloc: multiples of 16 B up to 512 B). |
";

// ------------------------------------------------------------------ index

fn index_page(r: &Results, claims: &[(&'static str, Option<Verdict>); 3]) -> String {
    let mut md = String::from("# arenalab: where freed memory goes\n\n");
    md.push_str(
        "_Generated by `arenalab report` (`cargo run --release`) from the results in \
         [results/](results/)._\n\n",
    );
    let questions = [
        ("Does memory go back to the system after I free (delete) my objects?", 1),
        ("Is the memory released when the process ends, or is killed?", 0),
        ("Does an unclosed worker pool keep its memory?", 2),
    ];
    for (q, i) in questions {
        let _ = write!(md, "## {q}\n\n");
        match &claims[i].1 {
            Some(v) => {
                let _ = write!(
                    md,
                    "The seed question's answer claimed: *{}*\n\n**Verdict: {}** See [{}]({}) and \
                     [claims.md](claims.md).\n\n",
                    claims[i].0.split_once(' ').map_or(claims[i].0, |(_, rest)| rest),
                    v.short,
                    v.page,
                    v.page
                );
            }
            None => md.push_str("_Not measured yet._\n\n"),
        }
        if i == 1
            && let Some(ret) = &r.retention
        {
            md.push_str(&seed_table(ret));
        }
    }
    md.push_str("## The pages\n\n");
    let pages = [
        (
            "claims.md",
            "the seed question's three claims, with verdicts computed from the measurements",
        ),
        (
            "retention.md",
            "what each allocator keeps after free, workload by workload, with occupancy maps",
        ),
        (
            "allocators.md",
            "for each allocator, when freed memory goes back and which call or knob forces it; glossary",
        ),
        ("process-exit.md", "memory given back when a process ends, for seven ways of ending"),
        ("process-pool.md", "memory held by worker pools, closed, left open, dropped, orphaned"),
        (
            "pymalloc.md",
            "how pymalloc works: blocks, pools, arenas, the arena order, with pictures of the model",
        ),
        ("benchmarks.md", "speed: the allocators compared in criterion benchmarks, as ratios"),
        (
            "trace.md",
            "the evidence that the model is CPython's behaviour: real interpreters' calls replayed on it, every counter equal at every mark; the same programs on the four allocators",
        ),
    ];
    for (p, what) in pages {
        let _ = writeln!(md, "- [{p}]({p}): {what}");
    }
    md.push_str("\n## Reproduce\n\n```sh\ncargo run --release                   # measure everything, regenerate docs/\ncargo run --release -- render         # regenerate docs/ from docs/results/ only\ncargo bench && cargo run --release -- bench-report\n```\n\n");
    md.push_str("## Where the figures come from\n\n");
    let mut metas: Vec<(&str, &crate::results::Meta)> = Vec::new();
    if let Some(x) = &r.retention {
        metas.push(("retention", &x.meta));
    }
    if let Some(x) = &r.exit {
        metas.push(("exit", &x.meta));
    }
    if let Some(x) = &r.pool {
        metas.push(("pool", &x.meta));
    }
    if let Some(x) = &r.tour {
        metas.push(("pymalloc tour", &x.meta));
    }
    if let Some(x) = &r.bench {
        metas.push(("benchmarks", &x.meta));
    }
    for (what, m) in metas {
        let _ = writeln!(md, "- {what}: `{}`, {}", m.command, m.describe());
    }
    md
}

/// The seed workload for every allocator: the short answer's numbers.
fn seed_table(r: &RetentionResults) -> String {
    let header: Vec<String> = ["allocator", "after alloc", "after free", "after release call"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let rows: Vec<Vec<String>> = Allocator::ALL
        .iter()
        .filter_map(|&a| {
            let s = run(r, a, "seed", None)?;
            Some(vec![
                a.to_string(),
                mib(peak(s)?),
                mib(above(s, "full free")?),
                mib(above(s, "release")?),
            ])
        })
        .collect();
    format!(
        "RSS above baseline, {} objects of {} B, freed all at once (the `seed` workload):\n\n{}\n",
        group_digits(r.objects),
        r.size,
        markdown_table(&header, &rows)
    )
}

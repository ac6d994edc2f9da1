//! The pages that gather the experiments: docs/README.md (the index), docs/claims.md and
//! docs/allocators.md. Every figure and every verdict is computed here from the results files;
//! nothing is typed in by hand.

use crate::error::Result;
use crate::render::{markdown_table, plural, write_file};
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
    /// docs/results/cpython.json.
    pub cpython: Option<crate::cpython::CpythonResults>,
    /// docs/results/trace.json.
    pub trace: Option<crate::trace::page::TraceResults>,
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

/// What the results say of a claim.
#[derive(Clone, Debug, PartialEq)]
pub enum Finding {
    /// The results file the claim needs does not exist.
    NotMeasured,
    /// The file exists but holds nothing the claim can be judged on; why, in a sentence.
    NoData(String),
    /// A verdict computed from the measurements.
    Verdict(Verdict),
}

impl Finding {
    /// The verdict, if there is one.
    pub fn verdict(&self) -> Option<&Verdict> {
        match self {
            Finding::Verdict(v) => Some(v),
            _ => None,
        }
    }

    /// The Markdown said in place of a verdict when there is none.
    fn no_verdict(&self) -> String {
        match self {
            Finding::NotMeasured => {
                "_Not measured yet: run `cargo run --release` (`arenalab report`)._".into()
            }
            Finding::NoData(why) => format!("_No verdict: {why}_"),
            Finding::Verdict(v) => format!("**Verdict: {}**", v.short),
        }
    }
}

/// The question that started arenalab, quoted from the Q&A thread it was asked in.
pub const SEED_QUESTION: &str = "When a python session/terminal is closed or killed forcefully \
does the memory occupied by lists other data structures in the code released automatically (I \
mean the garbage collection)?";

/// Writes claims.md, allocators.md and README.md into `dir`. Returns the pages written,
/// relative to `dir`.
pub fn render(r: &Results, dir: &Path) -> Result<Vec<PathBuf>> {
    let claims = claims(r);
    let py = crate::cpython::site_verdicts(r.cpython.as_ref());
    write_file(&dir.join("claims.md"), &claims_page(r, &claims, &py))?;
    let allocators = match &r.retention {
        Some(ret) => allocators_page(ret),
        None => crate::render::not_measured(ALLOCATORS_TITLE, "retention"),
    };
    write_file(&dir.join("allocators.md"), &allocators)?;
    write_file(&dir.join("README.md"), &index_page(r, &claims, &py))?;
    Ok(["claims.md", "allocators.md", "README.md"].map(PathBuf::from).to_vec())
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
pub fn claims(r: &Results) -> [(&'static str, Finding); 3] {
    let found = |x: Option<Finding>| x.unwrap_or(Finding::NotMeasured);
    [
        (
            "(a) Memory is released when a process is closed or killed.",
            found(r.exit.as_ref().map(claim_exit)),
        ),
        (
            "(b) After deleting a big list, memory never returns to where it was, because the runtime \"thinks ahead\" and keeps it in case it is needed again.",
            found(r.retention.as_ref().map(claim_list)),
        ),
        (
            "(c) If a worker pool is not closed correctly, the memory used by its worker processes may not be released.",
            found(r.pool.as_ref().map(claim_pool)),
        ),
    ]
}

fn claim_exit(e: &crate::exit::ExitResults) -> Finding {
    let n = e.cells.len();
    if n == 0 {
        return Finding::NoData(
            "`results/exit.json` holds no (allocator, ending) cell, so nothing was measured to judge this claim on.".into(),
        );
    }
    let mut back = 0;
    let mut zombie_zero = 0;
    // The slowest end → back, apart for `panic`: its child unwinds after its last word, so its
    // time includes the frees (`free-return` frees before its last word).
    let mut slowest: Option<(f64, String)> = None;
    let mut slowest_panic: Option<(f64, String)> = None;
    let mut rows = Vec::new();
    for c in &e.cells {
        let s = &c.summary;
        let recovered = s.recovered_before_reap_pct.map(|x| x.median);
        let released = s.release_accounted_ms.is_some() || recovered.is_some_and(|p| p >= 90.0);
        back += usize::from(released);
        let zombie = s.zombie_rss_mib.map_or(0.0, |x| x.max);
        zombie_zero += usize::from(zombie == 0.0);
        let slot =
            if c.ending == crate::exit::Ending::Panic { &mut slowest_panic } else { &mut slowest };
        if let Some(ms) = s.release_accounted_ms.map(|x| x.median)
            && slot.as_ref().is_none_or(|(m, _)| ms > *m)
        {
            *slot = Some((ms, format!("{} / {}", c.allocator, c.ending.name())));
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
    let short = if back == n && zombie_zero == n {
        format!("True, for every ending and every allocator measured ({n} cases).")
    } else if back == 0 {
        format!("False in these measurements: in none of {n} cases was the memory seen back.")
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
        "Each child allocated and wrote {} MiB of small objects, then ended; medians of {}. \
         In {zombie_zero} of {n} cases the dead, not yet reaped child (a zombie) held no resident memory: \
         the kernel tears the address space down when the process dies, before anyone reaps it. \
         Whatever the allocator kept after `free` goes with it. \"Back before reaping\" can read a \
         little above 100 %: it compares the whole machine's available memory with the child's \
         own anonymous memory, and the kernel frees the child's page tables and other bookkeeping \
         too.",
        e.mib,
        plural(e.repeats as u64, "run")
    );
    if let Some((ms, cell)) = slowest {
        let _ = write!(
            evidence,
            " From the end to the memory being back took at most {ms:.0} ms ({cell}) for every ending \
             but `panic`: the kernel's teardown alone."
        );
    }
    if let Some((ms, cell)) = slowest_panic {
        let _ = write!(
            evidence,
            " `panic` took up to {ms:.0} ms ({cell}): its child writes its last word just before \
             `panic!`, so the time includes the unwinding, which frees every object before the \
             process exits."
        );
    }
    evidence.push_str("\n\n");
    evidence.push_str(&markdown_table(&header, &rows));
    Finding::Verdict(Verdict { short, evidence, page: "process-exit.md" })
}

/// An allocator's `seed` run: peak, kept after freeing everything, after the release call
/// (bytes above baseline).
fn seed_figures(r: &RetentionResults, a: Allocator) -> Option<(f64, f64, f64)> {
    let s = run(r, a, "seed", None)?;
    Some((peak(s)?, above(s, "full free")?, above(s, "release")?))
}

/// Below this share of its peak, an allocator "gave the memory back".
const GAVE_BACK_PCT: f64 = 10.0;

fn claim_list(r: &RetentionResults) -> Finding {
    let py = Allocator::Pymalloc;
    let Some((p, full, _)) = seed_figures(r, py) else {
        return Finding::NoData(
            "`results/retention.json` has no `seed` run under pymalloc (CPython's allocator), the workload this claim is about.".into(),
        );
    };
    let spread = run(r, py, "survivors", Some("spread"))
        .and_then(|s| Some((above(s, "partial free")?, peak(s)?)));
    let every =
        run(r, py, "every-other", None).and_then(|s| Some((above(s, "partial free")?, peak(s)?)));
    let arenas_left = run(r, py, "seed", None)
        .and_then(|s| s.phases.iter().find(|x| x.name == "full free"))
        .and_then(|x| x.pymalloc.as_ref())
        .map(|c| c.arenas_current);
    let full_pct = pct(full, p);
    let py_gives_back = full_pct < GAVE_BACK_PCT;
    // The other allocators that kept memory after the whole list was freed.
    let keepers: Vec<(Allocator, f64, f64)> = Allocator::ALL
        .iter()
        .filter(|&&a| a != py)
        .filter_map(|&a| {
            let (pk, f, rel) = seed_figures(r, a)?;
            (pct(f, pk) >= GAVE_BACK_PCT).then_some((a, f, rel))
        })
        .collect();
    let survivors_pin = spread.map(|(k, pk)| pct(k, pk));

    // The verdict: which allocator, then whether survivors pin memory.
    let mut short = String::from(
        "Not as stated. What stays depends on the allocator and on survivors, not on foresight. ",
    );
    if py_gives_back {
        let _ = write!(
            short,
            "Freed whole, the list's memory came back under pymalloc (CPython's allocator), all but {}",
            arenas_left.map_or("a little".to_string(), |a| plural(a, "arena"))
        );
    } else {
        let _ =
            write!(short, "Freed whole, the list's memory stayed under pymalloc ({full_pct:.0} %)");
    }
    if keepers.is_empty() {
        short.push_str("; so it did under every other allocator measured.");
    } else {
        let names: Vec<String> =
            keepers.iter().map(|(a, f, _)| format!("{a} ({})", mib(*f))).collect();
        let _ = write!(
            short,
            "; it stayed under {} until their release call or purge.",
            names.join(", ")
        );
    }
    if let Some(k) = survivors_pin {
        let _ = write!(
            short,
            " With 1 object in 1000 left alive, spread through the list, pymalloc kept {k:.0} % of it: survivors pin memory."
        );
    }

    let mut ev = format!(
        "With pymalloc (CPython's allocator, modelled), {} of {} B took {} above the baseline. \
         After freeing all of them, {} ({:.0} %) stayed",
        plural(r.objects, "object"),
        r.size,
        mib(p),
        mib(full),
        full_pct
    );
    if let Some(a) = arenas_left {
        let _ = write!(
            ev,
            ": {} kept, the last usable one, which CPython 3.9+ keeps on purpose",
            plural(a, "arena")
        );
    }
    ev.push_str(". ");
    if let Some((k, pk)) = spread {
        let _ = write!(
            ev,
            "Keeping 1 object in 1000, spread through the list, kept {} of {} ({:.0} %): one live object pins its pool, and one used pool pins its arena. ",
            mib(k),
            mib(pk),
            pct(k, pk)
        );
    }
    if let Some((k, pk)) = every {
        let _ = write!(ev, "Freeing every other object kept {} of {}. ", mib(k), mib(pk));
    }
    ev.push_str(
        "So pymalloc does not keep memory \"in case it is needed again\": it returns an arena as soon as every pool in it is empty, and keeps what live objects pin. ",
    );
    if !keepers.is_empty() {
        let names: Vec<String> = keepers.iter().map(|(a, _, _)| a.to_string()).collect();
        let _ = write!(
            ev,
            "The other allocators are another matter, as the table shows: freed all at once, the same objects stayed with {} until their own policy (a trim, a purge delay, a decay) or an explicit release call gave them back (see [allocators.md](allocators.md)). That is the nearest thing to \"thinking ahead\", and it belongs to the allocator, not to Python. ",
            names.join(", ")
        );
    }
    if let Some(g) = run(r, Allocator::System, "large", None)
        && let (Some(a4), Some(f4)) = (above(g, "alloc 4M"), above(g, "free 4M"))
    {
        let array = r.objects.saturating_mul(std::mem::size_of::<usize>() as u64);
        let _ = write!(
            ev,
            "glibc `malloc` serves CPython's objects above 512 B, among them the list's own pointer array ({} for {}): a block that large gets its own mapping, which `free` returns at once (the `large` workload: 4 MiB blocks took {} and left {} once freed).",
            mib(array as f64),
            plural(r.objects, "item"),
            mib(a4),
            mib(f4)
        );
    }
    ev.push_str("\n\n");
    ev.push_str(&list_table(r));
    Finding::Verdict(Verdict { short, evidence: ev, page: "retention.md" })
}

/// Per allocator: the `seed` figures and what 1 in 1000 survivors (spread) kept.
fn list_table(r: &RetentionResults) -> String {
    let header: Vec<String> = [
        "allocator",
        "after alloc",
        "after freeing all",
        "after the release call",
        "1 in 1000 survive (spread): kept",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = Allocator::ALL
        .iter()
        .filter_map(|&a| {
            let (p, f, rel) = seed_figures(r, a)?;
            let kept = run(r, a, "survivors", Some("spread"))
                .and_then(|s| Some((above(s, "partial free")?, peak(s)?)))
                .map_or("-".into(), |(k, pk)| format!("{} of {}", mib(k), mib(pk)));
            Some(vec![a.to_string(), mib(p), mib(f), mib(rel), kept])
        })
        .collect();
    format!(
        "RSS above the baseline ({} of {} B):\n\n{}",
        plural(r.objects, "object"),
        r.size,
        markdown_table(&header, &rows)
    )
}

fn claim_pool(p: &crate::pool::PoolResults) -> Finding {
    use crate::pool::Scenario;
    if p.scenarios.is_empty() {
        return Finding::NoData(
            "`results/pool.json` holds no scenario, so nothing was measured to judge this claim on."
                .into(),
        );
    }
    let get = |s: Scenario| p.scenarios.iter().find(|x| x.scenario == s);
    let unclosed = [Scenario::DropNaive, Scenario::ParentKilledNone];
    if unclosed.iter().all(|&s| get(s).is_none()) {
        return Finding::NoData(format!(
            "neither scenario that leaves a pool unclosed without a fix (`{}`, `{}`) was measured.",
            Scenario::DropNaive.name(),
            Scenario::ParentKilledNone.name()
        ));
    }
    let kept = |s: Scenario| get(s).is_some_and(|x| x.live_at_end > 0 && x.rss_at_end_bytes > 0);
    let freed = |s: Scenario| get(s).is_some_and(|x| x.live_at_end == 0);
    let unclosed_keeps = unclosed.iter().any(|&s| kept(s));
    let closed_frees = freed(Scenario::ShutdownJoin) && freed(Scenario::DropCorrect);
    let short = match (unclosed_keeps, closed_frees) {
        (true, true) => "True while the workers live: a pool that is not shut down leaves its worker processes running, holding their memory, until something ends them; a pool shut down (or dropped by a correct Drop) gives it all back.".to_string(),
        (true, false) => "True: the workers of an unclosed pool kept their memory.".to_string(),
        (false, _) => "False in these measurements: no worker of an unclosed pool outlived it.".to_string(),
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
    Finding::Verdict(Verdict { short, evidence, page: "process-pool.md" })
}

/// The sentence on why the model's figures stand for CPython's: the trace replays, counted
/// from their results (or that they were not measured).
fn model_evidence(t: Option<&crate::trace::page::TraceResults>) -> String {
    let Some(t) = t else {
        return "_The model has not been checked against real interpreters on this machine yet \
                (`arenalab trace` not run): [trace.md](trace.md)._\n\n"
            .into();
    };
    let runs = t.versions.iter().flat_map(|v| &v.workloads);
    let (marks, equal) = runs
        .clone()
        .flat_map(|w| &w.model.marks)
        .fold((0, 0), |(n, e), m| (n + 1, e + usize::from(m.equal)));
    let (placed, misplaced) =
        runs.fold((0, 0), |(p, m), w| (p + w.model.placed, m + w.model.misplaced));
    if marks == 0 {
        return "_No trace replay holds a mark yet: [trace.md](trace.md)._\n\n".into();
    }
    let versions: Vec<&str> = t.versions.iter().map(|v| v.python.as_str()).collect();
    format!(
        "The pymalloc figures below come from a model of CPython's allocator. The evidence that \
         the model is CPython's behaviour is in [trace.md](trace.md): every call real \
         interpreters (CPython {}) made into pymalloc, replayed on the model, gave the \
         interpreters' own counters at {equal} of {marks} marks, and put {} of {} blocks in the \
         same arena at the same offset.\n\n",
        versions.join(", "),
        crate::render::group_digits(placed.saturating_sub(misplaced)),
        crate::render::group_digits(placed),
    )
}

/// The page's title.
const CLAIMS_TITLE: &str = "The seed question's claims, tested";

fn claims_page(
    r: &Results,
    claims: &[(&'static str, Finding); 3],
    py: &[Option<String>; 3],
) -> String {
    let meta = r.retention.as_ref().map(|x| &x.meta).or(r.exit.as_ref().map(|x| &x.meta));
    let mut md = match meta {
        Some(m) => crate::render::page_header(CLAIMS_TITLE, m),
        None => format!("# {CLAIMS_TITLE}\n\n"),
    };
    let _ = write!(
        md,
        "The question that started arenalab, asked in a Q&A thread:\n\n> {SEED_QUESTION}\n\n\
         The answers made three claims. Each verdict below is computed from the measurements, not \
         written by hand; the linked pages hold every figure.\n\n"
    );
    md.push_str(&model_evidence(r.trace.as_ref()));
    for ((claim, finding), py) in claims.iter().zip(py) {
        let _ = write!(md, "## {claim}\n\n");
        md.push_str(&crate::cpython::site_line(py.as_deref()));
        match finding {
            Finding::Verdict(v) => {
                let _ = write!(
                    md,
                    "**Verdict: {}**\n\n{}\n\nMeasured in [{}]({}).\n\n",
                    v.short, v.evidence, v.page, v.page
                );
            }
            other => {
                let _ = write!(md, "{}\n\n", other.no_verdict());
            }
        }
    }
    md
}

// ------------------------------------------------------------------ allocators

/// The title of allocators.md.
const ALLOCATORS_TITLE: &str = "When each allocator gives memory back";

fn allocators_page(r: &RetentionResults) -> String {
    let mut md = crate::render::page_header(ALLOCATORS_TITLE, &r.meta);
    md.push_str(
        "For each allocator: when freed memory goes back to the OS, and which call or knob forces \
         it. Every figure is RSS above the worker's baseline, measured in the retention experiment \
         ([retention.md](retention.md)). A negative figure means RSS fell below the baseline: the \
         release call also gave back pages that were already resident when the baseline was \
         taken (the allocator's start-up and warm-up). Defaults are read from the knob table of \
         the `lineup` crate, the same one the experiments use.\n\n",
    );
    for a in Allocator::ALL {
        let _ = write!(md, "## {a}\n\n{}\n\n", intro(a));
        let mut facts = Vec::new();
        if let Some(s) = run(r, a, "seed", None)
            && let (Some(p), Some(f), Some(rel)) =
                (peak(s), above(s, "full free"), above(s, "release"))
        {
            facts.push(format!(
                "`seed` ({} of {} B): {} after allocating, **{}** after freeing everything, **{}** after {}.",
                plural(r.objects, "object"),
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
    md.push_str(&glossary());
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

/// An allocator's built-in default for a knob, from `lineup`'s knob table.
fn knob_default(a: Allocator, name: &str) -> Option<i64> {
    a.knobs().iter().find(|k| k.name == name).and_then(|k| k.default)
}

/// A knob's default in words: "1000 ms", "10 s", "128 KiB"; "its default" when unknown.
fn knob_text(a: Allocator, name: &str) -> String {
    let Some(k) = a.knobs().iter().find(|k| k.name == name) else {
        return "its default".into();
    };
    match (knob_default(a, name), k.unit) {
        (Some(v), "ms") if v >= 1000 && v % 1000 == 0 => format!("{} s", v / 1000),
        (Some(v), "bytes") if v >= 1024 && v % 1024 == 0 => format!("{} KiB", v / 1024),
        (Some(v), unit) => format!("{v} {unit}"),
        (None, _) => "its default".into(),
    }
}

fn intro(a: Allocator) -> String {
    match a {
        Allocator::System => format!(
            "glibc `malloc` serves small blocks from heaps (the main one grown with `brk`, others \
             with `mmap`) and blocks above the mmap threshold (`M_MMAP_THRESHOLD`, {} at first) \
             from their own mappings, which `free` returns at once. Freeing such a block raises \
             the threshold to its size, so later blocks that size come from the heap. Freed heap \
             memory returns only from the top of the heap, when it exceeds the trim threshold \
             (`M_TRIM_THRESHOLD`, {}), or on `malloc_trim(0)`, which also releases whole free \
             pages inside the heap.",
            knob_text(a, "M_MMAP_THRESHOLD"),
            knob_text(a, "M_TRIM_THRESHOLD")
        ),
        Allocator::Mimalloc => format!(
            "mimalloc keeps free memory in its pages and segments and purges it (decommit or \
             reset) after a delay, `purge_delay` ({} by default), checked when the allocator \
             runs; `mi_collect(true)` purges at once.",
            knob_text(a, "purge_delay")
        ),
        Allocator::Jemalloc => format!(
            "jemalloc turns freed pages into dirty pages that decay to the OS over \
             `dirty_decay_ms` ({} by default), then muzzy ones over `muzzy_decay_ms` ({} by default). The \
             decay clock advances with allocation activity (or a background thread, off by \
             default); `arena.<i>.purge` purges at once.",
            knob_text(a, "dirty_decay_ms"),
            knob_text(a, "muzzy_decay_ms")
        ),
        Allocator::Pymalloc => "pymalloc (CPython's small-object allocator, modelled in this workspace) returns memory \
             only as whole arenas, and only when every pool in an arena is empty; since 3.9 \
             it keeps the last usable arena even then. Empty pools inside a live arena stay \
             resident. There is no call that gives back more: a live object pins its arena."
            .to_string(),
    }
}

/// 1048576 → "1 MiB", 16384 → "16 KiB", 100 → "100 B".
fn size_text(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// The glossary, with pymalloc's layout (CPython 3.10+) and glibc's threshold from the code.
fn glossary() -> String {
    let c = pymalloc::Config::preset(pymalloc::Preset::Cpython310);
    GLOSSARY
        .replace("{mmap}", &knob_text(Allocator::System, "M_MMAP_THRESHOLD"))
        .replace("{arena}", &size_text(c.arena_size()))
        .replace("{pool}", &size_text(c.pool_size()))
        .replace("{align}", &c.alignment().to_string())
        .replace("{max}", &c.small_request_threshold().to_string())
}

const GLOSSARY: &str = "\
## Glossary

| term | meaning |
|---|---|
| RSS | Resident set size: the process's pages in RAM now (`Rss` in `/proc/PID/smaps_rollup`). |
| anonymous | Resident memory not backed by a file: the heap, `mmap(MAP_ANONYMOUS)` (`Anonymous`). |
| LazyFree | Pages the allocator marked `MADV_FREE`: still counted in RSS, but the kernel may take them without asking when memory is short. |
| dirty / muzzy / retained | jemalloc: dirty pages are freed but still backed; muzzy pages were `MADV_FREE`d; retained virtual memory was given back but the address range is kept for reuse. |
| mmap threshold | glibc: requests at least this large get their own mapping ({mmap} at first, raised dynamically as large blocks are freed). |
| trim | glibc: returning free memory at the top of the heap to the OS (`M_TRIM_THRESHOLD`, `malloc_trim`). |
| purge | mimalloc and jemalloc: returning free pages to the OS (decommit, `MADV_DONTNEED` or `MADV_FREE`). |
| arena | pymalloc: a {arena} mapping cut into pools (glibc and jemalloc use the word for their own, larger structures). |
| pool | pymalloc: {pool} holding blocks of one size class. |
| size class | the block size a request is rounded up to (pymalloc: multiples of {align} B up to {max} B). |
";

// ------------------------------------------------------------------ index

fn index_page(
    r: &Results,
    claims: &[(&'static str, Finding); 3],
    py: &[Option<String>; 3],
) -> String {
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
        md.push_str(&crate::cpython::site_line(py[i].as_deref()));
        match &claims[i].1 {
            Finding::Verdict(v) => {
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
            other => {
                let _ = write!(md, "{}\n\n", other.no_verdict());
            }
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
            "cpython.md",
            "the three questions answered by the real CPython interpreters on the machine",
        ),
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
        "RSS above baseline, {} of {} B, freed all at once (the `seed` workload); a negative \
         figure means the release call gave back pages already resident at the baseline:\n\n{}\n",
        plural(r.objects, "object"),
        r.size,
        markdown_table(&header, &rows)
    )
}

//! `arenalab report` (what `cargo run --release` runs) and `arenalab render`.
//!
//! `report` measures every experiment at its default size, saves each one's results as
//! `docs/results/<name>.json` (with the machine and date), then renders all of docs/ from
//! those files. `render` does only the second half, so the pages can be regenerated, and
//! checked against the committed copy, without measuring anything.
//!
//! What can go wrong, and what each does:
//!
//! | case | outcome |
//! | --- | --- |
//! | docs/ or docs/results/ not writable | `report` stops before measuring: exit code 2, naming the folder |
//! | a results file not JSON, of the wrong shape, or failing its check ([`results::Checked`]) | exit code 2 naming the file and the remedy ([`results::REMEDY`]); no page changes |
//! | a results file missing | its page (and any verdict that needs it) says it was not measured, its pictures go, and a warning names the page |
//! | no results file at all | exit code 2: nothing to render |
//! | a failure while writing the pages | the previous set stays as it was ([`crate::render::install`]) |
//!
//! One function per page: an experiment's page is one `page(...)` line in [`render_all`], and
//! the pages that gather the experiments are in [`crate::site`].

use crate::error::{Error, Result};
use crate::render::install::{Staging, check_writable};
use crate::render::{not_measured, write_file};
use crate::results::{self, default_docs_dir};
use crate::{bench_report, exit, pool, retention, tour};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `arenalab report`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ReportArgs {
    /// Where to write the pages (default: the workspace's docs/).
    #[arg(long, value_name = "DIR")]
    pub docs: Option<PathBuf>,
    /// Criterion's output folder to read benchmark results from. Default: $CARGO_TARGET_DIR/criterion
    /// if that variable is set, else the workspace's target/criterion.
    #[arg(long, value_name = "DIR")]
    pub criterion_dir: Option<PathBuf>,
}

/// Arguments of `arenalab render`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RenderArgs {
    /// The docs folder: results are read from DIR/results, pages written to DIR.
    #[arg(long, value_name = "DIR")]
    pub docs: Option<PathBuf>,
}

fn docs_dir(arg: &Option<PathBuf>) -> PathBuf {
    arg.clone().unwrap_or_else(default_docs_dir)
}

fn step(n: usize, of: usize, what: &str) {
    eprintln!("[{n}/{of}] {what}");
}

/// Runs `arenalab report`: every experiment, then every page.
pub fn run(args: &ReportArgs) -> Result<()> {
    let docs = docs_dir(&args.docs);
    // Minutes of measuring must not end in "cannot write": check both folders first.
    check_writable(&docs)?;
    check_writable(&docs.join("results"))?;
    let started = Instant::now();
    let total = 8;
    let command = "arenalab report";

    step(1, total, "retention: what each allocator keeps after free (one child per run)");
    let mut r = crate::retention::measure(&Default::default())?;
    r.meta.command = command.into();
    results::save(&docs, "retention", &r)?;

    step(2, total, "exit: memory given back when a process ends, however it ends");
    let mut e = crate::exit::measure(&Default::default())?;
    e.meta.command = command.into();
    results::save(&docs, "exit", &e)?;

    step(3, total, "pool: memory held by worker processes");
    let mut p = crate::pool::measure(&Default::default())?;
    p.meta.command = command.into();
    results::save(&docs, "pool", &p)?;

    step(4, total, "cpython: the three questions answered by real interpreters");
    crate::cpython::report_step(&docs, command)?;

    step(5, total, "the pymalloc model, step by step");
    let t = crate::tour::measure(command, lineup::DEFAULT_PYMALLOC_LAYOUT)?;
    results::save(&docs, "pymalloc", &t)?;

    step(6, total, "traces: real CPython runs recorded, replayed on the model and the allocators");
    let tr = crate::trace::page::measure(command)?;
    results::save(&docs, "trace", &tr)?;

    step(7, total, "benchmarks: reading criterion's results");
    let bench_args = crate::bench_report::BenchReportArgs {
        criterion_dir: args.criterion_dir.clone(),
        ..Default::default()
    };
    match crate::bench_report::collect(&bench_args) {
        Ok(b) => {
            results::save(&docs, "benchmarks", &b)?;
        }
        Err(e) => eprintln!(
            "      no benchmark results ({e}); keeping docs/benchmarks.md as it is. \
             Run `cargo bench`, then `cargo run --release -- bench-report` (or this report again)."
        ),
    }

    step(8, total, "rendering docs/ from the results");
    let written = render_all(&docs)?;
    eprintln!(
        "done in {:.0} s: {} pages in {}",
        started.elapsed().as_secs_f64(),
        written.len(),
        docs.display()
    );
    Ok(())
}

/// Runs `arenalab render`.
pub fn render(args: &RenderArgs) -> Result<()> {
    let docs = docs_dir(&args.docs);
    let written = render_all(&docs)?;
    for page in written {
        println!("{}", page.display());
    }
    Ok(())
}

/// Loads and checks every results file of `docs/results/` (a missing one is `None`).
pub fn load_all(docs: &Path) -> Result<crate::site::Results> {
    let instructions = results::load(docs, crate::bench_instr::RESULTS_NAME)?;
    Ok(crate::site::Results {
        retention: results::load(docs, "retention")?,
        exit: results::load(docs, "exit")?,
        pool: results::load(docs, "pool")?,
        tour: results::load(docs, "pymalloc")?,
        // The callgrind counts are a section of the benchmarks page.
        bench: results::load::<bench_report::BenchResults>(docs, bench_report::RESULTS_NAME)?
            .map(|b| bench_report::BenchResults { instructions, ..b }),
        cpython: results::load(docs, "cpython")?,
        trace: results::load(docs, "trace")?,
    })
}

/// Renders one experiment page into `dir`: from its results, or, when they are missing, a page
/// that says so (and a warning on stderr naming the page and the file).
fn page<T>(
    results: &Option<T>,
    (name, file, pictures, title): (&str, &str, &str, &str),
    staging: &mut Staging,
    render: impl FnOnce(&T, &Path) -> Result<()>,
) -> Result<PathBuf> {
    let dir = staging.path().to_path_buf();
    match results {
        Some(r) => render(r, &dir)?,
        None => {
            eprintln!(
                "arenalab: warning: {file} not rendered: results/{name}.json is missing; the page \
                 now says it was not measured ({})",
                results::REMEDY
            );
            write_file(&dir.join(file), &not_measured(title, name))?;
            staging.retire(pictures);
        }
    }
    Ok(PathBuf::from(file))
}

/// Renders every page from the results in `docs/results/` and returns the pages written.
///
/// Every results file is loaded and checked first: a file that cannot be used stops everything
/// with exit code 2 before any page changes. The pages are rendered into a staging folder and
/// moved into place together ([`crate::render::install`]), so a failure leaves the previous set
/// intact. A missing results file is not an error: its page (and any verdict that needs it)
/// says it was not measured, and a warning names it. With no results file at all, there is
/// nothing to render: exit code 2.
pub fn render_all(docs: &Path) -> Result<Vec<PathBuf>> {
    let set = load_all(docs)?;
    if set.retention.is_none()
        && set.exit.is_none()
        && set.pool.is_none()
        && set.tour.is_none()
        && set.bench.is_none()
        && set.cpython.is_none()
        && set.trace.is_none()
    {
        return Err(Error::Usage(format!(
            "{} holds no results file: nothing to render; {}",
            docs.join("results").display(),
            results::REMEDY
        )));
    }
    let mut staging = Staging::new(docs)?;
    let st = &mut staging;
    let mut pages = vec![
        page(
            &set.retention,
            ("retention", "retention.md", retention::page::IMG_DIR, retention::page::TITLE),
            st,
            retention::render,
        )?,
        page(
            &set.exit,
            ("exit", "process-exit.md", "process-exit", exit::page::TITLE),
            st,
            exit::render,
        )?,
        page(
            &set.pool,
            ("pool", "process-pool.md", "process-pool", pool::page::TITLE),
            st,
            pool::render,
        )?,
        page(&set.tour, ("pymalloc", "pymalloc.md", tour::IMG_DIR, tour::TITLE), st, tour::render)?,
        page(
            &set.bench,
            (bench_report::RESULTS_NAME, "benchmarks.md", "benchmarks", bench_report::TITLE),
            st,
            bench_report::render,
        )?,
        page(
            &set.cpython,
            ("cpython", "cpython.md", crate::cpython::page::IMG_DIR, crate::cpython::page::TITLE),
            st,
            crate::cpython::page::render,
        )?,
        page(
            &set.trace,
            ("trace", "trace.md", crate::trace::page::IMG_DIR, crate::trace::page::TITLE),
            st,
            crate::trace::page::render,
        )?,
    ];
    let dir = staging.path();
    pages.extend(crate::site::render(&set, dir)?);
    staging.install()?;
    Ok(pages.into_iter().map(|p| docs.join(p)).collect())
}

//! `arenalab report` (what `cargo run --release` runs) and `arenalab render`.
//!
//! `report` measures every experiment at its default size, saves each one's results as
//! `docs/results/<name>.json` (with the machine and date), then renders all of docs/ from
//! those files. `render` does only the second half, so the pages can be regenerated, and
//! checked against the committed copy, without measuring anything.

use crate::error::{Error, Result};
use crate::results::{self, default_docs_dir};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `arenalab report`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ReportArgs {
    /// Where to write the pages (default: the workspace's docs/).
    #[arg(long, value_name = "DIR")]
    pub docs: Option<PathBuf>,
    /// Criterion's output folder to read benchmark results from (default: target/criterion).
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

fn docs_dir(arg: &Option<PathBuf>) -> Result<PathBuf> {
    let dir = arg.clone().unwrap_or_else(default_docs_dir);
    std::fs::create_dir_all(&dir).map_err(Error::failed(dir.display()))?;
    Ok(dir)
}

fn step(n: usize, of: usize, what: &str) {
    eprintln!("[{n}/{of}] {what}");
}

/// Runs `arenalab report`: every experiment, then every page.
pub fn run(args: &ReportArgs) -> Result<()> {
    let docs = docs_dir(&args.docs)?;
    let started = Instant::now();
    let total = 7;
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

    step(4, total, "the pymalloc model, step by step");
    let t = crate::tour::measure(command)?;
    results::save(&docs, "pymalloc", &t)?;

    step(5, total, "traces: real CPython runs recorded, replayed on the model and the allocators");
    let tr = crate::trace::page::measure(command)?;
    results::save(&docs, "trace", &tr)?;

    step(6, total, "benchmarks: reading criterion's results");
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

    step(7, total, "rendering docs/ from the results");
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
    let docs = docs_dir(&args.docs)?;
    let written = render_all(&docs)?;
    for page in written {
        println!("{}", page.display());
    }
    Ok(())
}

/// Renders every page whose results exist in `docs/results/`. Returns the pages written.
pub fn render_all(docs: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let retention: Option<crate::retention::RetentionResults> = results::load(docs, "retention")?;
    if let Some(r) = &retention {
        crate::retention::render(r, docs)?;
        written.push(docs.join("retention.md"));
    }
    let exit: Option<crate::exit::ExitResults> = results::load(docs, "exit")?;
    if let Some(e) = &exit {
        crate::exit::render(e, docs)?;
        written.push(docs.join("process-exit.md"));
    }
    let pool: Option<crate::pool::PoolResults> = results::load(docs, "pool")?;
    if let Some(p) = &pool {
        crate::pool::render(p, docs)?;
        written.push(docs.join("process-pool.md"));
    }
    let tour: Option<crate::tour::TourResults> = results::load(docs, "pymalloc")?;
    if let Some(t) = &tour {
        crate::tour::render(t, docs)?;
        written.push(docs.join("pymalloc.md"));
    }
    let trace: Option<crate::trace::page::TraceResults> = results::load(docs, "trace")?;
    if let Some(t) = &trace {
        crate::trace::page::render(t, docs)?;
        written.push(docs.join("trace.md"));
    }
    let bench: Option<crate::bench_report::BenchResults> = results::load(docs, "benchmarks")?;
    if let Some(b) = &bench {
        crate::bench_report::render(b, docs)?;
        written.push(docs.join("benchmarks.md"));
    }
    let set = crate::site::Results { retention, exit, pool, tour, bench };
    written.extend(crate::site::render(&set, docs)?);
    Ok(written)
}

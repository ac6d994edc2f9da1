//! Command-line parsing and dispatch. Each subcommand's arguments live in its own module.

use crate::error::Error;
use clap::{Parser, Subcommand};

/// arenalab: where freed memory goes, measured.
#[derive(Debug, Parser)]
#[command(name = "arenalab", version, about, long_about = None)]
pub struct Cli {
    /// What to do; with none, `report`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every experiment at default sizes and regenerate docs/.
    Report(crate::report::ReportArgs),
    /// Re-render docs/ from the saved results JSON only (no measuring).
    Render(crate::report::RenderArgs),
    /// What each allocator keeps after free, side by side.
    Retention(crate::retention::RetentionArgs),
    /// Memory given back when a process ends, however it ends.
    Exit(crate::exit::ExitArgs),
    /// Memory held by worker-process pools, closed properly or not.
    Pool(crate::pool::PoolArgs),
    /// Record a Python program's calls into pymalloc; replay them on the model and other allocators.
    Trace(crate::trace::TraceArgs),
    /// Turn criterion's results into docs/benchmarks.md.
    BenchReport(crate::bench_report::BenchReportArgs),
    /// Internal: a child process running one measurement.
    #[command(hide = true, subcommand)]
    Worker(Worker),
}

/// The child-process entry points, one per experiment.
#[derive(Debug, Subcommand)]
pub enum Worker {
    /// A retention workload under one allocator.
    Retention(crate::retention::WorkerArgs),
    /// An exit-experiment child.
    Exit(crate::exit::WorkerArgs),
    /// A pool parent or worker.
    Pool(crate::pool::WorkerArgs),
}

/// Parses the command line, runs the command and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.command.unwrap_or(Command::Report(Default::default())) {
        Command::Report(a) => crate::report::run(&a),
        Command::Render(a) => crate::report::render(&a),
        Command::Retention(a) => crate::retention::run(&a),
        Command::Exit(a) => crate::exit::run(&a),
        Command::Pool(a) => crate::pool::run(&a),
        Command::BenchReport(a) => crate::bench_report::run(&a),
        Command::Trace(a) => crate::trace::run(&a),
        Command::Worker(Worker::Retention(a)) => crate::retention::run_worker(&a),
        Command::Worker(Worker::Exit(a)) => crate::exit::run_worker(&a),
        Command::Worker(Worker::Pool(a)) => crate::pool::run_worker(&a),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("arenalab: {e}");
            Error::exit_code(&e)
        }
    }
}

//! `arenalab bench-report`: criterion results to docs/benchmarks.md. (SKELETON)

use crate::error::Result;

/// Arguments of `arenalab bench-report`.
#[derive(Debug, Default, clap::Args)]
pub struct BenchReportArgs {}

/// Runs `arenalab bench-report`.
pub fn run(_args: &BenchReportArgs) -> Result<()> {
    Err(crate::error::Error::Failed("not yet".into()))
}

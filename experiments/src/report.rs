//! `arenalab report` and `arenalab render`. (SKELETON)

use crate::error::Result;

/// Arguments of `arenalab report`.
#[derive(Debug, Default, clap::Args)]
pub struct ReportArgs {}

/// Arguments of `arenalab render`.
#[derive(Debug, Default, clap::Args)]
pub struct RenderArgs {}

/// Runs `arenalab report`.
pub fn run(_args: &ReportArgs) -> Result<()> {
    Err(crate::error::Error::Failed("not yet".into()))
}

/// Runs `arenalab render`.
pub fn render(_args: &RenderArgs) -> Result<()> {
    Err(crate::error::Error::Failed("not yet".into()))
}

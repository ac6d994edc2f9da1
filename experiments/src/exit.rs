//! The `exit` experiment. (SKELETON: owned by its author; replace freely.)

use crate::error::Result;

/// Arguments of `arenalab exit`.
#[derive(Debug, Default, clap::Args)]
pub struct ExitArgs {}

/// Arguments of the hidden `arenalab worker exit`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {}

/// Runs `arenalab exit`.
pub fn run(_args: &ExitArgs) -> Result<()> {
    Err(crate::error::Error::Failed("not yet".into()))
}

/// Runs one worker child.
pub fn run_worker(_args: &WorkerArgs) -> Result<()> {
    Err(crate::error::Error::Failed("not yet".into()))
}

//! The `retention` experiment. (SKELETON: owned by its author; replace freely.)

use crate::error::Result;

/// Arguments of `arenalab retention`.
#[derive(Debug, Default, clap::Args)]
pub struct RetentionArgs {}

/// Arguments of the hidden `arenalab worker retention`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {}

/// Runs `arenalab retention`.
pub fn run(_args: &RetentionArgs) -> Result<()> {
    Err(crate::error::Error::Failed("not yet".into()))
}

/// Runs one worker child.
pub fn run_worker(_args: &WorkerArgs) -> Result<()> {
    Err(crate::error::Error::Failed("not yet".into()))
}

//! The `pool` experiment. (SKELETON: owned by its author; replace freely.)

use crate::error::Result;

/// Arguments of `arenalab pool`.
#[derive(Debug, Default, clap::Args)]
pub struct PoolArgs {}

/// Arguments of the hidden `arenalab worker pool`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {}

/// Runs `arenalab pool`.
pub fn run(_args: &PoolArgs) -> Result<()> {
    Err(crate::error::Error::Failed("not yet".into()))
}

/// Runs one worker child.
pub fn run_worker(_args: &WorkerArgs) -> Result<()> {
    Err(crate::error::Error::Failed("not yet".into()))
}

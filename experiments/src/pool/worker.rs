//! The child processes of the pool experiment: `arenalab worker pool worker` (a pool worker
//! holding its memory) and `arenalab worker pool parent` (a pool owner that the experiment kills
//! while its workers are busy).

use super::{Fix, Pool, Watch};
use crate::error::Result;
use crate::procs;
use crate::worker::{Objects, say};
use lineup::Allocator;
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::time::Duration;

/// Arguments of the hidden `arenalab worker pool`.
#[derive(Clone, Debug, clap::Args)]
pub struct WorkerArgs {
    /// Which kind of pool process.
    #[command(subcommand)]
    pub role: Role,
}

/// The two kinds of pool process.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Role {
    /// A pool worker: allocates `--mib` MiB, says it is ready, then holds the memory.
    Worker {
        /// MiB of small objects to allocate and hold.
        #[arg(long)]
        mib: u64,
        /// The allocator the objects come from.
        #[arg(long, default_value = "system")]
        allocator: Allocator,
        /// What the worker watches to know its parent is gone.
        #[arg(long, value_enum, default_value = "nothing")]
        watch: Watch,
    },
    /// A pool owner: opens a pool, prints its workers' pids, then stays busy until killed.
    Parent {
        /// Workers in the pool.
        #[arg(long)]
        workers: usize,
        /// MiB per worker.
        #[arg(long)]
        mib: u64,
        /// The workers' allocator.
        #[arg(long, default_value = "system")]
        allocator: Allocator,
        /// How the workers learn that this parent died.
        #[arg(long, value_enum)]
        fix: Fix,
    },
}

/// The line a pool worker prints when its memory is allocated and written.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerReady {
    /// Its pid.
    pub pid: i32,
    /// Bytes of objects it holds.
    pub requested_bytes: u64,
}

/// The line a pool parent prints when every worker is ready.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ParentReady {
    /// The pool parent's pid.
    pub pid: i32,
    /// Its workers' pids.
    pub worker_pids: Vec<i32>,
}

/// Runs a pool worker or a pool parent.
///
/// Both join `arenalab`'s lifeline first ([`procs::join_lifeline`]): a worker may outlive its
/// pool parent (that is what the "no fix" scenario shows), but never `arenalab`; and the pool
/// parent passes the same lifeline on to its workers.
pub fn run_worker(args: &WorkerArgs) -> Result<()> {
    procs::join_lifeline()?;
    match &args.role {
        Role::Worker { mib, allocator, watch } => {
            let objects = Objects::allocate(*allocator, *mib)?;
            say(&WorkerReady { pid: std::process::id() as i32, requested_bytes: *mib << 20 })?;
            match watch {
                // Busy "forever": only a signal ends it.
                Watch::Nothing => loop {
                    std::thread::sleep(Duration::from_secs(3600));
                },
                // The pipe fix: stdin's write end is held by the parent alone, so end of file
                // means the parent is gone (or closed it on purpose): then leave.
                Watch::Stdin => {
                    let mut sink = Vec::new();
                    let _ = std::io::stdin().lock().read_until(0xff, &mut sink);
                    objects.leak();
                    Ok(())
                }
            }
        }
        Role::Parent { workers, mib, allocator, fix } => {
            // A naive pool's Drop never runs here: the experiment SIGKILLs this process.
            let pool = Pool::open_with(*workers, *mib, *allocator, *fix, super::OnDrop::Naive)?;
            say(&ParentReady { pid: std::process::id() as i32, worker_pids: pool.pids() })?;
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

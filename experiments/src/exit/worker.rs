//! The child side of the exit experiment: `arenalab worker exit`.
//!
//! The child allocates `--mib` MiB of small objects through the allocator under test (sizes 32
//! to 512 bytes, every byte written), keeps their addresses in memory mapped with `mmap` (so its
//! own bookkeeping never goes through the allocator it measures), prints a [`Report::Ready`]
//! line with its own accounting, and waits for one line on stdin. Then it ends the way
//! `--ending` says. Just before it ends by itself it prints a [`Report::Ending`] line carrying
//! the monotonic clock, so the parent can time the kernel's part from that instant.

use super::Ending;
use crate::error::{Error, Result};
use crate::measure::{self, ProcessMemory};
use crate::worker::{Objects, say};
use lineup::{Allocator, AllocatorStats};
use serde::{Deserialize, Serialize};
use std::io::BufRead;

/// Arguments of the hidden `arenalab worker exit`.
#[derive(Clone, Debug, clap::Args)]
pub struct WorkerArgs {
    /// The allocator under test.
    #[arg(long)]
    pub allocator: Allocator,
    /// How the process ends.
    #[arg(long, value_enum)]
    pub ending: Ending,
    /// MiB of small objects to allocate.
    #[arg(long)]
    pub mib: u64,
}

/// One line the child prints (JSON, one per line).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    /// Everything is allocated and written.
    Ready {
        /// Objects allocated.
        objects: u64,
        /// Bytes requested (the sum of object sizes).
        requested_bytes: u64,
        /// Bytes of the mmapped address array (the child's bookkeeping).
        bookkeeping_bytes: u64,
        /// Milliseconds the allocation took.
        alloc_ms: f64,
        /// The allocator's own statistics now.
        stats: AllocatorStats,
        /// The kernel's view of the child, read by the child itself.
        process: ProcessMemory,
    },
    /// The `free-return` ending: every object freed, the process still alive.
    Freed {
        /// Milliseconds the frees took.
        free_ms: f64,
        /// The allocator's statistics after the frees.
        stats: AllocatorStats,
        /// The child's memory after the frees, before exit.
        process: ProcessMemory,
    },
    /// About to end by itself now; `CLOCK_MONOTONIC` in nanoseconds.
    Ending {
        /// The instant, comparable with [`super::mono_ns`] in the parent.
        mono_ns: u64,
    },
}

/// Runs one exit child.
pub fn run_worker(args: &WorkerArgs) -> Result<()> {
    let start = std::time::Instant::now();
    let objects = Objects::allocate(args.allocator, args.mib)?;
    let alloc_ms = start.elapsed().as_secs_f64() * 1e3;
    say(&Report::Ready {
        objects: objects.len() as u64,
        requested_bytes: objects.requested_bytes(),
        bookkeeping_bytes: objects.bookkeeping_bytes(),
        alloc_ms,
        stats: args.allocator.stats(),
        process: measure::this_process()?,
    })?;
    // Wait for the parent's word (or for its signal, which ends us here).
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    let ending = || say(&Report::Ending { mono_ns: super::mono_ns() });
    match args.ending {
        Ending::FreeReturn => {
            let t = std::time::Instant::now();
            drop(objects);
            let free_ms = t.elapsed().as_secs_f64() * 1e3;
            say(&Report::Freed {
                free_ms,
                stats: args.allocator.stats(),
                process: measure::this_process()?,
            })?;
            ending()?;
            Ok(())
        }
        Ending::Return => {
            objects.leak();
            ending()?;
            Ok(())
        }
        Ending::Exit => {
            ending()?;
            // Skips every destructor: `objects` is never freed.
            std::process::exit(0)
        }
        Ending::Abort => {
            ending()?;
            std::process::abort()
        }
        Ending::Panic => {
            ending()?;
            // Unwinding runs `objects`' destructor, which frees every object, as it would free a
            // `Vec<Box<_>>` in a real program; then the process exits with status 101.
            let _keep = objects;
            panic!("arenalab exit worker: the unhandled panic this ending asks for")
        }
        Ending::Sigkill | Ending::Sigterm => {
            // The parent signals instead of writing; a line here means it gave up on us.
            Err(Error::Failed("expected a signal, got a line on stdin".into()))
        }
    }
}

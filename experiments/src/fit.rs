//! Whether an experiment's child processes fit in the machine's memory, checked before any is
//! started, so that a size too big for the machine is a usage error (exit 2) naming the value
//! instead of a child killed by the OOM killer halfway through.
//!
//! The check reads `MemAvailable` ([`crate::measure::system`]) and allows half as much again as
//! the objects themselves for allocator overhead and bookkeeping, plus 256 MiB for everything
//! else.
//!
//! ```no_run
//! // One child of 64 MiB: fits unless MemAvailable is below 64 × 3/2 + 256 MiB.
//! arenalab::fit::check_fits(64, 1)?;
//! # Ok::<(), arenalab::error::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::measure;

/// Fails with [`Error::Usage`] when `processes` children of `mib` MiB each would not fit in
/// MemAvailable (allowing half as much again for allocator overhead and bookkeeping, plus
/// 256 MiB for everything else).
pub fn check_fits(mib: u64, processes: u64) -> Result<()> {
    let avail = measure::system()?.mem_available_bytes >> 20;
    let need = mib
        .checked_mul(3)
        .map(|m| m / 2)
        .and_then(|m| m.checked_mul(processes))
        .and_then(|m| m.checked_add(256));
    match need {
        Some(need) if need <= avail => Ok(()),
        _ => {
            // The largest size that passes the same test: (m × 3/2) × processes + 256 ≤ avail.
            let most = (avail.saturating_sub(256) / processes.max(1)) * 2 / 3;
            Err(Error::Usage(format!(
                "--mib must be at most {most} here ({processes} process(es) of M MiB need about \
                 1.5 × M each plus 256 MiB, and MemAvailable is {avail} MiB), got {mib}"
            )))
        }
    }
}

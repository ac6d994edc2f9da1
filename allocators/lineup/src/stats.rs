//! What an allocator says about itself: [`AllocatorStats`].

use crate::Allocator;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One reading of an allocator's own statistics, taken by [`Allocator::stats`].
///
/// The two summary figures are each allocator's best answer to the same two questions; the raw
/// figures they come from are all kept in `counters` under the allocator's own names:
///
/// | allocator | `in_use_bytes` | `held_bytes` |
/// | --- | --- | --- |
/// | system (glibc) | `mallinfo2`: `uordblks + hblkhd` | `mallinfo2`: `arena + hblkhd` |
/// | mimalloc | Σ used blocks × block size over the main heap's pages | `mi_process_info` current commit |
/// | jemalloc | `stats.allocated` | `stats.resident` |
/// | pymalloc | bytes in allocated blocks + raw bytes | `arenas_current × arena_size` (+ raw bytes) |
///
/// These are the allocator's accounting, not the kernel's: mimalloc's commit count does not fall
/// when it purges with `MADV_DONTNEED` on Linux; a page the allocator holds may not be
/// resident (never touched, or purged with `MADV_FREE` and not yet reclaimed), and glibc's figures
/// include every `malloc` in the process (Rust's `System` *is* `malloc`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatorStats {
    /// Which allocator this reading is of.
    pub allocator: Allocator,
    /// Bytes the allocator says are handed out to the program now (block sizes, so a little
    /// more than the sum of the requests). `None` when the allocator cannot say.
    pub in_use_bytes: Option<u64>,
    /// Bytes the allocator holds from the OS now: resident, committed or mapped, as it best
    /// reports. `None` when the allocator cannot say.
    pub held_bytes: Option<u64>,
    /// Every raw named figure the reading came from, e.g. `uordblks` or `stats.retained`.
    pub counters: BTreeMap<String, u64>,
}

impl AllocatorStats {
    /// `held_bytes − in_use_bytes`: memory the allocator keeps that the program is not using.
    /// `None` when either side is unknown; 0 when the estimate of in-use memory exceeds the
    /// held figure (possible where the two come from different sources).
    pub fn kept_bytes(&self) -> Option<u64> {
        Some(self.held_bytes?.saturating_sub(self.in_use_bytes?))
    }

    /// One raw counter by name.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters.get(name).copied()
    }
}

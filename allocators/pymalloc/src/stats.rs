//! Counters and the `sys._debugmallocstats()`-style report.

use crate::config::MAX_CLASSES;

/// Per size class figures, as in the table at the top of `sys._debugmallocstats()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClassStats {
    /// Block size of the class in bytes.
    pub block_size: usize,
    /// Pools of this class that are used or full (empty pools belong to no class).
    pub pools: usize,
    /// Blocks handed out and not yet freed.
    pub blocks_in_use: usize,
    /// Free blocks in this class's used pools (blocks per pool × pools − in use).
    pub blocks_available: usize,
}

/// A snapshot of the allocator's statistics. Cheap to take and `Copy`: it never allocates.
///
/// Counters that only grow (`*_total`) are kept apart from gauges (current values and their
/// high-water marks). The byte accounting (`bytes_*`) follows `sys._debugmallocstats()` and sums
/// exactly to `arenas_current × arena_size` ([`Stats::accounted_bytes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    // --- layout ---
    /// Arena size in bytes.
    pub arena_size: usize,
    /// Pool size in bytes.
    pub pool_size: usize,
    /// Block granularity in bytes.
    pub alignment: usize,
    /// Largest request served from pools.
    pub small_request_threshold: usize,
    /// Number of size classes (entries of `classes` that are meaningful).
    pub num_classes: usize,

    // --- counters: only grow ---
    /// Arenas ever mapped from the OS.
    pub arenas_allocated_total: u64,
    /// Arenas given back to the OS (= total − current).
    pub arenas_reclaimed: u64,
    /// Requests ever passed to the raw allocator (0 bytes, too large, or over-aligned).
    pub raw_allocations_total: u64,

    // --- gauges ---
    /// Arenas mapped now.
    pub arenas_current: usize,
    /// The most arenas ever mapped at once.
    pub arenas_highwater: usize,
    /// Pools with at least one allocated and one free block.
    pub pools_used: usize,
    /// Pools with every block allocated.
    pub pools_full: usize,
    /// Carved pools with no allocated block (on an arena's free-pool list).
    pub pools_empty: usize,
    /// Pools of live arenas not yet carved.
    pub pools_never_carved: usize,
    /// Per size class; entries `num_classes..` are zero.
    pub classes: [ClassStats; MAX_CLASSES],

    // --- byte accounting of `sys._debugmallocstats()` ---
    /// Bytes in allocated blocks (block sizes, not request sizes).
    pub bytes_in_allocated_blocks: usize,
    /// Bytes in free blocks of used pools.
    pub bytes_in_available_blocks: usize,
    /// Empty plus never-carved pools, in bytes.
    pub bytes_in_unused_pools: usize,
    /// Pool headers of used and full pools.
    pub bytes_lost_to_pool_headers: usize,
    /// The tail of each used or full pool too small for another block.
    pub bytes_lost_to_quantization: usize,
    /// One pool per arena whose start is not pool-aligned.
    pub bytes_lost_to_arena_alignment: usize,

    // --- raw allocator ---
    /// Raw-allocator blocks live now.
    pub raw_blocks_current: usize,
    /// Usable bytes (`malloc_usable_size`) of live raw-allocator blocks.
    pub raw_bytes_current: usize,

    // --- outside the arenas ---
    /// Memory mapped for the ownership map. CPython reports its three-level radix tree as
    /// "bytes lost to arena map"; this model's two-level map is smaller, so the figures differ.
    pub arena_map_bytes: usize,
}

impl Stats {
    /// The zero statistics of a heap with the given layout.
    pub(crate) fn empty(config: &crate::Config) -> Stats {
        let mut classes = [ClassStats::default(); MAX_CLASSES];
        for (i, c) in classes.iter_mut().enumerate().take(config.num_classes()) {
            c.block_size = config.block_size(crate::SizeClass(i as u8));
        }
        Stats {
            arena_size: config.arena_size(),
            pool_size: config.pool_size(),
            alignment: config.alignment(),
            small_request_threshold: config.small_request_threshold(),
            num_classes: config.num_classes(),
            arenas_allocated_total: 0,
            arenas_reclaimed: 0,
            raw_allocations_total: 0,
            arenas_current: 0,
            arenas_highwater: 0,
            pools_used: 0,
            pools_full: 0,
            pools_empty: 0,
            pools_never_carved: 0,
            classes,
            bytes_in_allocated_blocks: 0,
            bytes_in_available_blocks: 0,
            bytes_in_unused_pools: 0,
            bytes_lost_to_pool_headers: 0,
            bytes_lost_to_quantization: 0,
            bytes_lost_to_arena_alignment: 0,
            raw_blocks_current: 0,
            raw_bytes_current: 0,
            arena_map_bytes: 0,
        }
    }

    /// The sum of the byte accounting, which equals `arenas_current × arena_size`.
    pub fn accounted_bytes(&self) -> usize {
        self.bytes_in_allocated_blocks
            + self.bytes_in_available_blocks
            + self.bytes_in_unused_pools
            + self.bytes_lost_to_pool_headers
            + self.bytes_lost_to_quantization
            + self.bytes_lost_to_arena_alignment
    }

    /// Bytes of arena memory mapped now.
    pub fn arena_bytes(&self) -> usize {
        self.arenas_current * self.arena_size
    }

    /// Blocks in use over all classes.
    pub fn blocks_in_use(&self) -> usize {
        self.classes.iter().map(|c| c.blocks_in_use).sum()
    }
}

/// Prints a report shaped like CPython's `sys._debugmallocstats()`.
impl core::fmt::Display for Stats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(
            f,
            "Small block threshold = {}, in {} size classes.",
            self.small_request_threshold, self.num_classes
        )?;
        writeln!(f)?;
        writeln!(f, "class   size   num pools   blocks in use  avail blocks")?;
        writeln!(f, "-----   ----   ---------   -------------  ------------")?;
        for (i, c) in self.classes.iter().enumerate().take(self.num_classes) {
            if c.pools == 0 {
                continue;
            }
            writeln!(
                f,
                "{:5} {:6} {:11} {:15} {:13}",
                i, c.block_size, c.pools, c.blocks_in_use, c.blocks_available
            )?;
        }
        writeln!(f)?;
        let row = |f: &mut core::fmt::Formatter<'_>, label: &str, v: usize| {
            writeln!(f, "{label:<40}= {:>15}", group(v))
        };
        row(f, "# arenas allocated total", self.arenas_allocated_total as usize)?;
        row(f, "# arenas reclaimed", self.arenas_reclaimed as usize)?;
        row(f, "# arenas highwater mark", self.arenas_highwater)?;
        row(f, "# arenas allocated current", self.arenas_current)?;
        row(
            f,
            &format_args!("{} arenas * {} bytes/arena", self.arenas_current, self.arena_size)
                .to_string(),
            self.arena_bytes(),
        )?;
        writeln!(f)?;
        row(f, "# bytes in allocated blocks", self.bytes_in_allocated_blocks)?;
        row(f, "# bytes in available blocks", self.bytes_in_available_blocks)?;
        let unused = self.pools_empty + self.pools_never_carved;
        row(
            f,
            &format_args!("{} unused pools * {} bytes", unused, self.pool_size).to_string(),
            self.bytes_in_unused_pools,
        )?;
        row(f, "# bytes lost to pool headers", self.bytes_lost_to_pool_headers)?;
        row(f, "# bytes lost to quantization", self.bytes_lost_to_quantization)?;
        row(f, "# bytes lost to arena alignment", self.bytes_lost_to_arena_alignment)?;
        row(f, "Total", self.accounted_bytes())?;
        writeln!(f)?;
        row(f, "# raw allocator blocks (current)", self.raw_blocks_current)?;
        row(f, "# raw allocator bytes (current)", self.raw_bytes_current)?;
        row(f, "# raw allocator requests (total)", self.raw_allocations_total as usize)?;
        row(f, "# bytes in the ownership map", self.arena_map_bytes)
    }
}

/// 1234567 → "1,234,567", as CPython prints its figures.
fn group(v: usize) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

//! Occupancy snapshots: the state of every pool of every arena, the data behind the
//! fragmentation pictures in the docs.

use crate::config::SizeClass;

/// The state of one pool slot of an arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolState {
    /// Beyond the arena's high-water mark: never carved, never touched.
    NeverCarved,
    /// Carved, now holding no block (on its arena's free-pool list). Still resident.
    Empty,
    /// At least one block allocated and at least one free (on `usedpools[class]`).
    Used,
    /// Every block allocated (on no list).
    Full,
}

impl PoolState {
    /// A short lowercase name: `never-carved`, `empty`, `used`, `full`.
    pub const fn name(self) -> &'static str {
        match self {
            PoolState::NeverCarved => "never-carved",
            PoolState::Empty => "empty",
            PoolState::Used => "used",
            PoolState::Full => "full",
        }
    }
}

/// One pool slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// Its state.
    pub state: PoolState,
    /// Its size class when used or full (an empty pool remembers its last class, shown here too).
    pub size_class: Option<SizeClass>,
    /// Blocks allocated in it.
    pub blocks_in_use: usize,
    /// Blocks it holds when full (0 for a pool without a class).
    pub blocks_per_pool: usize,
}

/// One arena: its address and its pool slots in address order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaSnapshot {
    /// Start of the arena's mapping.
    pub address: usize,
    /// Pool slots, lowest address first (63 or 64 with the 3.10 layout).
    pub pools: Vec<PoolSnapshot>,
}

/// Every live arena, in address order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The most pools any arena can hold (arena size / pool size).
    pub pools_per_arena: usize,
    /// Live arenas, lowest address first.
    pub arenas: Vec<ArenaSnapshot>,
}

impl Snapshot {
    /// How many pools are in `state`, over all arenas.
    pub fn count(&self, state: PoolState) -> usize {
        self.arenas.iter().flat_map(|a| &a.pools).filter(|p| p.state == state).count()
    }
}

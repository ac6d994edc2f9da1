//! A model of CPython's small-object allocator (pymalloc). FRONT PAGE WRITTEN LATER.
#![allow(missing_docs)]

mod arena;
pub mod config;
mod debug;
pub mod global;
pub mod heap;
mod invariants;
pub mod os;
mod pool;
mod radix;
pub mod snapshot;
pub mod stats;

pub use config::{ArenaPolicy, Config, ConfigBuilder, ConfigError, Preset, SizeClass};
pub use debug::{CLEAN_BYTE, DEAD_BYTE, FORBIDDEN_BYTE};
pub use global::PyMalloc;
pub use heap::{Heap, HeapError};
pub use invariants::InvariantError;
pub use os::{ArenaSource, Mmap};
pub use snapshot::{ArenaSnapshot, PoolSnapshot, PoolState, Snapshot};
pub use stats::{ClassStats, Stats};

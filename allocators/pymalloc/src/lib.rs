//! A model of CPython's small-object allocator (pymalloc). FRONT PAGE WRITTEN WITH THE HEAP.
#![allow(missing_docs)]

pub mod config;
pub mod global;
pub mod heap;
pub mod snapshot;
pub mod stats;

pub use config::{ArenaPolicy, Config, ConfigBuilder, ConfigError, Preset, SizeClass};
pub use global::PyMalloc;
pub use heap::{Heap, HeapError};
pub use snapshot::{ArenaSnapshot, PoolSnapshot, PoolState, Snapshot};
pub use stats::{ClassStats, Stats};

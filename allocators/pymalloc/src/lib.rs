//! # pymalloc: CPython's small-object allocator, modelled
//!
//! CPython serves every request of at most 512 bytes from its own allocator, *pymalloc*, and
//! only larger ones from libc `malloc`. This crate models it faithfully enough that what it
//! shows about memory kept after `del` is true of CPython: the same size classes, pools and
//! arenas, the same order of arenas, the same rule for giving an arena back.
//!
//! ## Blocks, pools, arenas
//!
//! ```text
//!  arena: 1 MiB from mmap, cut into 16 KiB pools (64; 63 when the mapping is not pool-aligned)
//!  +--------+--------+--------+--------+-- ... --+--------+
//!  | pool 0 | pool 1 | pool 2 | pool 3 |         | never  |   <- pools are carved lazily
//!  | 32 B   | 32 B   | 64 B   | empty  |         | carved |
//!  +--------+--------+--------+--------+-- ... --+--------+
//!       |
//!       v  pool: a 48-byte header, then blocks of ONE size class
//!  +--------+----+----+----+----+-- ... --+----+------+
//!  | header | b0 | b1 | b2 | b3 |         |b509| tail |   510 blocks of 32 B, 16 B unused
//!  +--------+----+----+----+----+-- ... --+----+------+
//! ```
//!
//! * A **block** is what a request gets: its size rounded up to the 16-byte granularity
//!   (32 classes: 16, 32, ..., 512 bytes). A free block's first word links to the next free
//!   block of its pool; there is no per-block header.
//! * A **pool** holds blocks of one class. It is *used* (some blocks free), *full*, or *empty*.
//!   Used pools of a class sit on `usedpools[class]`; an empty pool goes back to its arena and
//!   may later serve any class.
//! * An **arena** is one mapping from the OS. It is unmapped only when **every** pool in it is
//!   empty, and from CPython 3.9 on not even then if it is the last usable arena (a guard
//!   against mapping and unmapping on every cycle of a loop).
//!
//! ## Why memory stays resident after `del`
//!
//! Freeing a block only puts it on its pool's free list. Freeing all blocks of a pool only
//! puts the pool on its arena's free-pool list: the pages stay mapped and resident. Only an
//! arena with no live block at all goes back to the kernel. So one surviving 32-byte object
//! pins 1 MiB, and freeing every other object of a million gives back nothing:
//!
//! ```
//! use pymalloc::{Config, Heap};
//! let mut heap = Heap::new(Config::CPYTHON_3_10);
//! let blocks: Vec<*mut u8> = (0..100_000).map(|_| heap.alloc(32)).collect();
//! let full = heap.stats().arenas_current; // 196 pools of 510 blocks: 4 arenas
//! for p in blocks.iter().step_by(2) {
//!     // SAFETY: each block is live and freed once.
//!     unsafe { heap.free(*p) };
//! }
//! assert_eq!(heap.stats().arenas_current, full); // half the objects gone, no arena returned
//! for p in blocks.iter().skip(1).step_by(2) {
//!     // SAFETY: each remaining block is live and freed once.
//!     unsafe { heap.free(*p) };
//! }
//! assert_eq!(heap.stats().arenas_current, 1); // all gone: every arena but the last returned
//! ```
//!
//! ## Why the arena order matters
//!
//! New pools always come from the usable arena with the *fewest* free pools; `usable_arenas`
//! is kept sorted by free-pool count, re-positioned in O(1) through `nfp2lasta` search fingers.
//! Nearly empty arenas thus receive no new blocks and can drain completely. The alternative
//! policy [`ArenaPolicy::NewestFirst`] exists for comparison: it keeps arenas alive that
//! CPython's order would release (see `tests/arena_order.rs`).
//!
//! ## The crate
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | presets (3.10+, 3.9, 3.8, 3.7) and [`Layout`]s detected from an interpreter, validation, size classes, debug overhead |
//! | `pool` | the pool header, lazy carving, the `usedpools` lists |
//! | `arena` | arena descriptors, `usable_arenas`, `nfp2lasta` |
//! | [`heap`] | the alloc, free and realloc paths; the raw allocator |
//! | [`os`] | mmap/munmap: the [`ArenaSource`] trait |
//! | `radix` | the O(1) "is this pointer ours?" map |
//! | [`stats`] | counters and the `sys._debugmallocstats()` report |
//! | [`snapshot`] | the occupancy of every pool, for pictures |
//! | `debug` | debug mode: 24 bytes more per block (32 for 3.7 and earlier), poisoning, guard bytes, checked frees |
//! | [`global`] | [`PyMalloc`], the thread-safe `GlobalAlloc` type: one heap per thread |
//! | `owners` | the lock-free map from arenas to the heap that owns them, for frees from other threads |
//!
//! [`Heap`] is single-threaded, like one interpreter under its GIL; [`PyMalloc`] gives every
//! thread a heap of its own (as CPython 3.12 gives each interpreter with its own GIL its own
//! obmalloc state), sends blocks freed by other threads back to their owner without a lock, and
//! can be the `#[global_allocator]`. [`Heap::check_invariants`] walks every
//! structure against the invariants of the reference; the tests call it after every operation.
//!
//! ## Pointers and provenance
//!
//! A freed block goes on its pool's free list and is later handed out again, possibly for a
//! larger request of the same class. The pointer the caller freed it through may carry the
//! provenance of a small reference (an 8-byte `&mut u64` inside a 16-byte block); handing
//! *that* pointer out again would give the next owner a pointer not valid for its whole block.
//! So every pointer the heap reads, writes or returns is derived from its arena's base pointer,
//! the one the [`ArenaSource`] returned (`base.with_addr(address)`): the ownership map names
//! the arena of an address, its descriptor holds the base. No integer becomes a pointer
//! (strict provenance). `tests/provenance.rs` frees a block through a narrow reference and
//! uses it again in full; Miri rejects that when the heap keeps the caller's pointer.
//!
//! ## Soundness under Miri
//!
//! The heap logic runs under [Miri](https://github.com/rust-lang/miri) (Stacked Borrows, strict
//! provenance) on the fast test files:
//!
//! ```sh
//! rustup component add --toolchain nightly miri rust-src   # once
//! MIRIFLAGS=-Zmiri-strict-provenance cargo +nightly miri test -p pymalloc \
//!     --lib --test provenance --test uninit_arena --test wild_frees \
//!     --test debug_double_free --test debug_not_allocated --test debug_overrun \
//!     --test debug_underrun --test debug_overhead --test model
//! ```
//!
//! Miri implements neither `MAP_NORESERVE`, partial `munmap`, `msync` nor
//! `malloc_usable_size`, so under `cfg(miri)` the [`os`] module maps arenas and bookkeeping
//! with `std::alloc::System` (zeroed, aligned to their size), keeps the sizes of raw blocks in
//! a side table, and answers "is this header mapped?" from that table. `tests/model.rs` runs 1
//! property case under Miri instead of 1,707. Skipped under Miri, each with its reason: the
//! test that aborts a child process, and the double free of a raw block (it reads freed libc
//! memory by design). Left out for their length in an interpreter: `exact_counts` and
//! `arena_order` (hundreds of thousands of blocks) and `global_alloc` (four threads of
//! collections); they run natively in every `cargo test`. [`PyMalloc`] as the global
//! allocator is not run under Miri: Stacked Borrows protects a `Box` passed by value until its
//! drop returns, so the free-list link a free writes into the block through the arena's
//! pointer is reported while the protector stands, a known limit of the model that every
//! allocator threading its free list through freed blocks meets.

pub mod config;
mod debug;
pub mod global;
pub mod heap;
mod invariants;
pub mod os;
mod owners;
mod radix;
pub mod snapshot;
pub mod stats;

mod arena;
mod pool;

pub use config::{ArenaPolicy, Config, ConfigBuilder, ConfigError, Layout, Preset, SizeClass};
pub use debug::{CLEAN_BYTE, DEAD_BYTE, FORBIDDEN_BYTE};
pub use global::PyMalloc;
pub use heap::{Heap, HeapError};
pub use invariants::InvariantError;
pub use os::{ArenaSource, Mmap};
pub use snapshot::{ArenaSnapshot, PoolSnapshot, PoolState, Snapshot};
pub use stats::{ClassStats, Stats};

//! One interface over the four allocators arenalab compares: glibc's `malloc` (Rust's `System`),
//! mimalloc, jemalloc (tikv-jemallocator) and `pymalloc`, the workspace's model of CPython's
//! small-object allocator.
//!
//! Every allocator answers the same four questions through [`Allocator`]:
//!
//! | question | method |
//! | --- | --- |
//! | how do I allocate through it? | [`Allocator::global`] (a `&'static dyn GlobalAlloc`) |
//! | what does it say it hands out and holds? | [`Allocator::stats`] → [`AllocatorStats`] |
//! | how do I make it give freed memory back now? | [`Allocator::release`] → [`Release`] |
//! | which settings change when it gives memory back? | [`Allocator::knobs`], [`Allocator::set_knob`] |
//!
//! None of them is installed as the `#[global_allocator]` here: all four live side by side in one
//! process and are reached through [`Allocator::global`], so a program (or a test) can compare
//! them without being rebuilt. Each is still process-global: two threads allocating through
//! `Allocator::Jemalloc.global()` share jemalloc's arenas and its statistics.
//!
//! # When freed memory goes back to the OS
//!
//! A `free` makes memory reusable *by the allocator*; whether the pages also stop counting in the
//! process's resident set (RSS) depends on the allocator's policy. Each of the four keeps some
//! freed memory on purpose, because asking the kernel for it again costs a system call and page
//! faults.
//!
//! - **glibc** ([`Allocator::System`]). Blocks of at least `M_MMAP_THRESHOLD` (128 KiB at start;
//!   glibc raises it up to 32 MiB each time such a block is freed) get their own `mmap` and go back
//!   with `munmap` at `free`. Small blocks live in arenas carved from the heap (`brk`) or, for
//!   other threads, from 64 MiB mmapped heaps. Only the free space at the *top* of an arena is
//!   returned on `free`, and only when it exceeds `M_TRIM_THRESHOLD` (128 KiB, raised with the mmap
//!   threshold). Free chunks in the middle stay resident. `malloc_trim(0)` walks every arena and
//!   `madvise(MADV_DONTNEED)`s the whole free pages in the middle too. Knobs: `M_MMAP_THRESHOLD`,
//!   `M_TRIM_THRESHOLD` (setting either turns glibc's dynamic adjustment off).
//! - **mimalloc** ([`Allocator::Mimalloc`]). Memory comes in 64 KiB pages inside large reserved
//!   arenas. A page whose blocks are all free is retired and, after `purge_delay` milliseconds
//!   (1000 in the bundled v3), purged: decommitted (`MADV_DONTNEED`) so it leaves the RSS. Purging
//!   happens as a side effect of later allocator calls, so an idle process keeps its freed pages.
//!   `mi_collect(true)` collects and purges at once. Knob: `purge_delay` (0 purges at once, -1
//!   never). On Linux the bundled v3 also asks for transparent huge pages on its arena
//!   reservations (`madvise(MADV_HUGEPAGE)`, option `allow_thp`, on by default), so even in the
//!   kernel's `madvise` THP mode most of its memory can sit on 2 MiB pages (arenalab's `exit`
//!   experiment reports how much, from `AnonHugePages`).
//! - **jemalloc** ([`Allocator::Jemalloc`]). Freed small objects first sit in the thread's cache
//!   (tcache), then in their slab; empty extents become *dirty* pages, which decay over
//!   `dirty_decay_ms` (10 s) into *muzzy* pages (`MADV_FREE`, reclaimable by the kernel but still
//!   counted until reclaimed) and over `muzzy_decay_ms` (0 in jemalloc 5.3) into released pages.
//!   Without a background thread the decay only advances when the allocator is called. Flushing
//!   the tcache (`thread.tcache.flush`) and purging every arena (`arena.<all>.purge`) returns them
//!   at once. Knobs: `dirty_decay_ms`, `muzzy_decay_ms`.
//! - **pymalloc** ([`Allocator::Pymalloc`]). Small requests (≤ 512 bytes) are served from pools in
//!   1 MiB arenas; an arena goes back to the OS (`munmap`) the moment its last block is freed,
//!   except that the last empty arena is kept (CPython 3.9+, against thrashing). A single live
//!   block pins its whole arena. There is no call to force a release and no run-time knob: its
//!   geometry is a `pymalloc::Config`.
//!
//! At process exit none of this matters: the kernel takes back every page of the address space,
//! whatever the allocator kept (arenalab's `exit` experiment measures how fast).
//!
//! # Example
//!
//! Allocate through jemalloc, read what it says, give the memory back:
//!
//! ```
//! use core::alloc::Layout;
//! use lineup::Allocator;
//!
//! let je = Allocator::Jemalloc;
//! let before = je.stats();
//! let layout = Layout::from_size_align(1 << 20, 8).unwrap();
//! // SAFETY: the layout has a non-zero size.
//! let p = unsafe { je.global().alloc(layout) };
//! assert!(!p.is_null());
//! let during = je.stats();
//! assert!(during.in_use_bytes.unwrap() >= before.in_use_bytes.unwrap() + (1 << 20));
//! // SAFETY: `p` came from this allocator with this layout and is freed once.
//! unsafe { je.global().dealloc(p, layout) };
//! assert_eq!(je.release().call(), Some("thread.tcache.flush + arena.<all>.purge"));
//! assert!(during.counters.contains_key("stats.resident"));
//! ```
//!
//! Names round-trip, and knobs are checked:
//!
//! ```
//! use lineup::{Allocator, KnobError};
//!
//! for a in Allocator::ALL {
//!     assert_eq!(Allocator::from_name(a.name()), Some(a));
//! }
//! assert!(Allocator::System.knobs().iter().any(|k| k.name == "M_TRIM_THRESHOLD"));
//! let err = Allocator::Mimalloc.set_knob("no_such_knob", 1).unwrap_err();
//! assert!(matches!(err, KnobError::Unknown { .. }));
//! assert!(Allocator::Pymalloc.knobs().is_empty());
//! ```
//!
//! # Modules
//!
//! The per-allocator code lives in one private module each (`backend::glibc`, `backend::mimalloc`,
//! `backend::jemalloc`, `backend::pymalloc`); the shared types are [`AllocatorStats`] ([`stats`]),
//! [`Release`] ([`release`]) and [`Knob`] / [`KnobError`] ([`knob`]).

use core::alloc::GlobalAlloc;

mod backend;
pub mod knob;
pub mod release;
pub mod stats;

pub use knob::{Knob, KnobError};
pub use release::Release;
pub use stats::AllocatorStats;

static SYSTEM: std::alloc::System = std::alloc::System;
static MIMALLOC: ::mimalloc::MiMalloc = ::mimalloc::MiMalloc;
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
static PYMALLOC: ::pymalloc::PyMalloc = ::pymalloc::PyMalloc::new();

/// The allocators under comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Allocator {
    /// glibc's `malloc`, reached through Rust's `std::alloc::System`.
    System,
    /// Microsoft's mimalloc (the bundled v3 sources of `libmimalloc-sys`).
    Mimalloc,
    /// jemalloc 5.3 as built by `tikv-jemalloc-sys` (symbols prefixed, so it does not replace
    /// `malloc`).
    Jemalloc,
    /// The workspace's model of CPython's pymalloc, CPython 3.10 layout.
    Pymalloc,
}

impl Allocator {
    /// Every allocator, in the order reports list them.
    pub const ALL: [Allocator; 4] =
        [Allocator::System, Allocator::Mimalloc, Allocator::Jemalloc, Allocator::Pymalloc];

    /// The short lowercase name used on command lines and in results files.
    pub const fn name(self) -> &'static str {
        match self {
            Allocator::System => "system",
            Allocator::Mimalloc => "mimalloc",
            Allocator::Jemalloc => "jemalloc",
            Allocator::Pymalloc => "pymalloc",
        }
    }

    /// The allocator with this [`name`](Allocator::name), if any.
    pub fn from_name(name: &str) -> Option<Allocator> {
        Allocator::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The allocator itself, to allocate through.
    pub fn global(self) -> &'static dyn GlobalAlloc {
        match self {
            Allocator::System => &SYSTEM,
            Allocator::Mimalloc => &MIMALLOC,
            Allocator::Jemalloc => &JEMALLOC,
            Allocator::Pymalloc => &PYMALLOC,
        }
    }

    /// The pymalloc instance behind [`Allocator::Pymalloc`], for its detailed statistics and
    /// snapshots.
    pub fn pymalloc() -> &'static ::pymalloc::PyMalloc {
        &PYMALLOC
    }

    /// What the allocator says about itself now: bytes handed out, bytes held from the OS, and
    /// every raw figure it reports. See each field of [`AllocatorStats`] for the source.
    pub fn stats(self) -> AllocatorStats {
        match self {
            Allocator::System => backend::glibc::stats(),
            Allocator::Mimalloc => backend::mimalloc::stats(),
            Allocator::Jemalloc => backend::jemalloc::stats(),
            Allocator::Pymalloc => backend::pymalloc::stats(),
        }
    }

    /// Asks the allocator to give the free memory it holds back to the OS now, with the call it
    /// offers for that (`malloc_trim(0)`, `mi_collect(true)`, jemalloc's tcache flush and arena
    /// purge). pymalloc has none and says so with [`Release::NotAvailable`].
    pub fn release(self) -> Release {
        match self {
            Allocator::System => backend::glibc::release(),
            Allocator::Mimalloc => backend::mimalloc::release(),
            Allocator::Jemalloc => backend::jemalloc::release(),
            Allocator::Pymalloc => backend::pymalloc::release(),
        }
    }

    /// The run-time settings that change when this allocator gives memory back.
    pub fn knobs(self) -> &'static [Knob] {
        match self {
            Allocator::System => backend::glibc::KNOBS,
            Allocator::Mimalloc => backend::mimalloc::KNOBS,
            Allocator::Jemalloc => backend::jemalloc::KNOBS,
            Allocator::Pymalloc => &[],
        }
    }

    /// Sets one of [`knobs`](Allocator::knobs). An unknown name, a value outside the knob's range
    /// or a value the allocator refuses is an error naming it; nothing is changed then.
    pub fn set_knob(self, name: &str, value: i64) -> Result<(), KnobError> {
        let Some(knob) = self.knobs().iter().find(|k| k.name == name) else {
            return Err(KnobError::Unknown {
                allocator: self,
                name: name.to_string(),
                known: match self.knobs() {
                    [] => "none".to_string(),
                    knobs => knobs.iter().map(|k| k.name).collect::<Vec<_>>().join(", "),
                },
            });
        };
        if !(knob.min..=knob.max).contains(&value) {
            return Err(KnobError::Rejected {
                allocator: self,
                name: name.to_string(),
                value,
                reason: format!("outside {}..={} {}", knob.min, knob.max, knob.unit),
            });
        }
        let outcome = match self {
            Allocator::System => backend::glibc::set_knob(knob, value),
            Allocator::Mimalloc => backend::mimalloc::set_knob(knob, value),
            Allocator::Jemalloc => backend::jemalloc::set_knob(knob, value),
            Allocator::Pymalloc => unreachable!("pymalloc has no knobs, so none was found"),
        };
        outcome.map_err(|reason| KnobError::Rejected {
            allocator: self,
            name: name.to_string(),
            value,
            reason,
        })
    }
}

impl core::fmt::Display for Allocator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Allocator {
    type Err = String;
    /// Parses a [`name`](Allocator::name); the error names the bad value and the good ones.
    fn from_str(s: &str) -> Result<Self, String> {
        Allocator::from_name(s).ok_or_else(|| {
            let names: Vec<_> = Allocator::ALL.iter().map(|a| a.name()).collect();
            format!("unknown allocator {s:?}; expected one of {}", names.join(", "))
        })
    }
}

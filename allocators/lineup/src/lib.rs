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
use core::sync::atomic::{AtomicU8, Ordering};

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

/// One pymalloc per layout, in the order of [`pymalloc::Layout::ALL`]. A `PyMalloc` claims its
/// slot and maps memory only on first use, so the unused ones cost nothing.
static PYMALLOCS: [::pymalloc::PyMalloc; 4] = [
    ::pymalloc::PyMalloc::with_config(::pymalloc::Layout::ALL[0].config()),
    ::pymalloc::PyMalloc::with_config(::pymalloc::Layout::ALL[1].config()),
    ::pymalloc::PyMalloc::with_config(::pymalloc::Layout::ALL[2].config()),
    ::pymalloc::PyMalloc::with_config(::pymalloc::Layout::ALL[3].config()),
];

/// The layout [`Allocator::Pymalloc`] uses unless [`select_pymalloc_layout`] chooses another:
/// CPython 3.10+'s, 32 classes, 16 KiB pools, 1 MiB arenas, last empty arena kept.
pub const DEFAULT_PYMALLOC_LAYOUT: ::pymalloc::Layout = ::pymalloc::Layout::Classes32Pools16k;

/// Set in [`PYMALLOC_STATE`] once the chosen pymalloc has been handed out.
const HANDED_OUT: u8 = 0x80;

/// The index in [`pymalloc::Layout::ALL`] of the chosen layout, plus [`HANDED_OUT`] once
/// [`Allocator::Pymalloc`] has been handed out (from then on the choice is fixed).
static PYMALLOC_STATE: AtomicU8 = AtomicU8::new(layout_index(DEFAULT_PYMALLOC_LAYOUT));

const fn layout_index(layout: ::pymalloc::Layout) -> u8 {
    let mut i = 0;
    while i < ::pymalloc::Layout::ALL.len() {
        if ::pymalloc::Layout::ALL[i] as u8 == layout as u8 {
            return i as u8;
        }
        i += 1;
    }
    unreachable!()
}

/// Why [`select_pymalloc_layout`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "pymalloc is already in use with layout {}, so it cannot switch to {}",
    in_use.name(),
    requested.name()
)]
pub struct LayoutInUse {
    /// The layout already handed out.
    pub in_use: ::pymalloc::Layout,
    /// The layout asked for.
    pub requested: ::pymalloc::Layout,
}

/// Chooses the layout of [`Allocator::Pymalloc`] for the whole process: [`Allocator::global`],
/// [`Allocator::pymalloc`], [`Allocator::stats`] and [`Allocator::release`] follow it. Call it
/// before the first of those; once pymalloc has been handed out, asking for another layout is
/// an error (its blocks live in the first one), and asking for the same one is a no-op.
///
/// ```
/// use lineup::{Allocator, select_pymalloc_layout, pymalloc_layout};
/// use pymalloc::Layout;
///
/// select_pymalloc_layout(Layout::Classes32Pools4k).unwrap();
/// assert_eq!(Allocator::pymalloc().config().pool_size(), 4096);
/// assert_eq!(pymalloc_layout(), Layout::Classes32Pools4k);
/// assert!(select_pymalloc_layout(Layout::Classes32Pools4k).is_ok());
/// assert!(select_pymalloc_layout(Layout::Classes32Pools16k).is_err());
/// ```
pub fn select_pymalloc_layout(layout: ::pymalloc::Layout) -> Result<(), LayoutInUse> {
    let want = layout_index(layout);
    let mut state = PYMALLOC_STATE.load(Ordering::Acquire);
    loop {
        if state & HANDED_OUT != 0 {
            let in_use = ::pymalloc::Layout::ALL[(state & !HANDED_OUT) as usize];
            return if in_use == layout {
                Ok(())
            } else {
                Err(LayoutInUse { in_use, requested: layout })
            };
        }
        match PYMALLOC_STATE.compare_exchange(state, want, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(()),
            Err(now) => state = now,
        }
    }
}

/// The layout [`Allocator::Pymalloc`] uses (or will use): [`DEFAULT_PYMALLOC_LAYOUT`] unless
/// [`select_pymalloc_layout`] chose another.
pub fn pymalloc_layout() -> ::pymalloc::Layout {
    ::pymalloc::Layout::ALL[(PYMALLOC_STATE.load(Ordering::Acquire) & !HANDED_OUT) as usize]
}

/// The chosen pymalloc, marking the choice as fixed.
fn chosen_pymalloc() -> &'static ::pymalloc::PyMalloc {
    let mut state = PYMALLOC_STATE.load(Ordering::Acquire);
    if state & HANDED_OUT == 0 {
        state = PYMALLOC_STATE.fetch_or(HANDED_OUT, Ordering::AcqRel);
    }
    &PYMALLOCS[(state & !HANDED_OUT) as usize]
}

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
    /// The workspace's model of CPython's pymalloc, CPython 3.10 layout unless
    /// [`select_pymalloc_layout`] chose another.
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
            Allocator::Pymalloc => chosen_pymalloc(),
        }
    }

    /// The pymalloc instance behind [`Allocator::Pymalloc`], for its detailed statistics and
    /// snapshots: the one of the layout [`select_pymalloc_layout`] chose (by default
    /// [`DEFAULT_PYMALLOC_LAYOUT`]).
    pub fn pymalloc() -> &'static ::pymalloc::PyMalloc {
        chosen_pymalloc()
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

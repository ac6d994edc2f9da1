//! One interface over the allocators arenalab compares. (SKELETON: to be written.)
#![allow(missing_docs)]
use core::alloc::GlobalAlloc;

static SYSTEM: std::alloc::System = std::alloc::System;
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
static PYMALLOC: pymalloc::PyMalloc = pymalloc::PyMalloc::new();

/// The allocators under comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Allocator {
    System,
    Mimalloc,
    Jemalloc,
    Pymalloc,
}

impl Allocator {
    pub const ALL: [Allocator; 4] =
        [Allocator::System, Allocator::Mimalloc, Allocator::Jemalloc, Allocator::Pymalloc];
    pub const fn name(self) -> &'static str {
        match self {
            Allocator::System => "system",
            Allocator::Mimalloc => "mimalloc",
            Allocator::Jemalloc => "jemalloc",
            Allocator::Pymalloc => "pymalloc",
        }
    }
    pub fn from_name(name: &str) -> Option<Allocator> {
        Allocator::ALL.into_iter().find(|a| a.name() == name)
    }
    pub fn global(self) -> &'static dyn GlobalAlloc {
        match self {
            Allocator::System => &SYSTEM,
            Allocator::Mimalloc => &MIMALLOC,
            Allocator::Jemalloc => &JEMALLOC,
            Allocator::Pymalloc => &PYMALLOC,
        }
    }
    pub fn pymalloc() -> &'static pymalloc::PyMalloc {
        &PYMALLOC
    }
}

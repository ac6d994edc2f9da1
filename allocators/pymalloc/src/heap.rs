//! TEMPORARY STAND-IN: forwards to libc malloc until the real heap lands. Same public API.
use crate::{Config, Snapshot, Stats};

/// What a checked free found wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeapError {
    /// The block was already free.
    #[error("double free of block {address:#x} ({size} bytes)")]
    DoubleFree { address: usize, size: usize },
    /// A guard byte after the block was overwritten.
    #[error("write past the end of block {address:#x} ({size} bytes)")]
    Overrun { address: usize, size: usize },
    /// The pointer was never given out by this heap.
    #[error("free of pointer {address:#x} never allocated by this heap")]
    NotAllocated { address: usize },
}

/// A single-threaded pymalloc heap.
pub struct Heap {
    config: Config,
}

// SAFETY: the heap owns all memory it points into; nothing is shared with other threads.
unsafe impl Send for Heap {}

impl Heap {
    pub fn new(config: Config) -> Heap {
        Heap { config }
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn alloc(&mut self, size: usize) -> *mut u8 {
        // SAFETY: stand-in.
        unsafe { libc::malloc(size.max(1)) as *mut u8 }
    }
    pub fn alloc_aligned(&mut self, size: usize, align: usize) -> *mut u8 {
        let mut p = core::ptr::null_mut();
        // SAFETY: stand-in.
        unsafe { libc::posix_memalign(&mut p, align.max(8), size.max(1)) };
        p as *mut u8
    }
    /// # Safety
    /// `p` came from this heap and is live.
    pub unsafe fn free(&mut self, p: *mut u8) {
        // SAFETY: stand-in.
        unsafe { libc::free(p as *mut _) }
    }
    /// # Safety
    /// `p` came from this heap and is live.
    pub unsafe fn try_free(&mut self, p: *mut u8) -> Result<(), HeapError> {
        // SAFETY: stand-in.
        unsafe { libc::free(p as *mut _) };
        Ok(())
    }
    /// # Safety
    /// `p` came from this heap and is live.
    pub unsafe fn realloc(&mut self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: stand-in.
        unsafe { libc::realloc(p as *mut _, size.max(1)) as *mut u8 }
    }
    pub fn stats(&self) -> Stats {
        Stats::empty(&self.config)
    }
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::default()
    }
    pub fn check_invariants(&self) -> Result<(), String> {
        Ok(())
    }
}

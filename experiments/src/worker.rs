//! What the experiments' child processes share: bookkeeping outside the allocator under test,
//! objects that fill a process with a given amount of small-object memory, and the JSON lines a
//! child reports on.
//!
//! | item | is | used by |
//! | --- | --- | --- |
//! | [`MappedVec`] | a fixed-length array in its own anonymous mapping, never in the allocator under test | every worker's pointer arrays |
//! | [`Objects`] | `--mib` MiB of small objects (32 to 512 bytes, cycled, every byte written) from one allocator, freed on drop | the exit and pool workers |
//! | [`say`] | one value as one JSON line on stdout, flushed | every worker's reports |
//!
//! An experiment's worker code uses these shared pieces, never another experiment's module.
//!
//! ```no_run
//! use arenalab::worker::{Objects, say};
//! // Fill this process with 64 MiB of glibc malloc's small objects, report, then hold them.
//! let objects = Objects::allocate(lineup::Allocator::System, 64)?;
//! say(&serde_json::json!({ "objects": objects.len(), "bytes": objects.requested_bytes() }))?;
//! # Ok::<(), arenalab::error::Error>(())
//! ```

use crate::error::{Error, Result};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use lineup::Allocator;
use serde::Serialize;
use std::io::Write;

/// A fixed-length array in its own anonymous mapping: bookkeeping that never touches the
/// allocator under test. Every slot is written when it is created, so its pages are resident
/// before the baseline is taken and stay so.
pub struct MappedVec<T: Copy> {
    /// Start of the mapping; `len` initialised `T`s live there.
    ptr: NonNull<T>,
    len: usize,
    /// Length of the mapping in bytes (≥ `len × size_of::<T>()`, at least one byte).
    bytes: usize,
}

impl<T: Copy> MappedVec<T> {
    /// `len` copies of `value` in a fresh mapping.
    pub fn filled(len: usize, value: T) -> Result<MappedVec<T>> {
        let bytes = len
            .checked_mul(size_of::<T>())
            .ok_or_else(|| Error::Failed(format!("bookkeeping for {len} entries overflows")))?
            .max(1);
        // SAFETY: a new anonymous private mapping; it aliases nothing.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::Failed(format!(
                "mapping {bytes} bytes of bookkeeping: {}",
                std::io::Error::last_os_error()
            )));
        }
        let ptr = NonNull::new(p.cast::<T>()).expect("mmap never returns null on success");
        for i in 0..len {
            // SAFETY: i < len and the mapping holds len Ts; mmap's page alignment satisfies
            // any T's alignment.
            unsafe { ptr.as_ptr().add(i).write(value) };
        }
        Ok(MappedVec { ptr, len, bytes })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: Copy> core::ops::Deref for MappedVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised Ts at `ptr`, borrowed for the life of `&self`.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> core::ops::DerefMut for MappedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for MappedVec<T> {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `filled`; no reference to it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

/// The object sizes, cycled: 32 to 512 bytes in 32-byte steps (pymalloc's small-object range).
fn object_size(i: usize) -> usize {
    32 * (1 + i % 16)
}

/// The objects, freed on drop (as a `Vec<Box<_>>` would be) unless leaked with
/// [`Objects::leak`].
pub struct Objects {
    alloc: &'static dyn GlobalAlloc,
    ptrs: MappedVec<usize>,
    requested: u64,
}

impl Objects {
    /// Allocates and writes small objects from `allocator` until they add up to at least `mib`
    /// MiB requested (whole cycles of the 16 sizes); their addresses go into a [`MappedVec`].
    pub fn allocate(allocator: Allocator, mib: u64) -> Result<Objects> {
        let target = mib << 20;
        let mean = (1..=16).map(|k| 32 * k).sum::<u64>() / 16;
        // Whole cycles of the 16 sizes, so the requested total reaches the target.
        let count = (target.div_ceil(mean).div_ceil(16) * 16) as usize;
        let alloc = allocator.global();
        let mut ptrs = MappedVec::filled(count, 0usize)?;
        let mut requested = 0u64;
        for (i, slot) in ptrs.iter_mut().enumerate() {
            let size = object_size(i);
            let layout = Layout::from_size_align(size, 8).expect("small power-of-two alignment");
            // SAFETY: the layout has a non-zero size.
            let p = unsafe { alloc.alloc(layout) };
            if p.is_null() {
                return Err(Error::Failed(format!("{allocator}: out of memory at object {i}")));
            }
            // SAFETY: `p` is a fresh block of `size` bytes; writing every byte makes it resident.
            unsafe { p.write_bytes(i as u8 | 1, size) };
            *slot = p as usize;
            requested += size as u64;
        }
        Ok(Objects { alloc, ptrs, requested })
    }

    /// Forgets the objects without freeing them (as a process that exits holding them would).
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Objects {
    /// Number of objects.
    pub fn len(&self) -> usize {
        self.ptrs.len()
    }

    /// Whether there are none (never, for a non-zero `mib`).
    pub fn is_empty(&self) -> bool {
        self.ptrs.is_empty()
    }

    /// Bytes requested: the sum of the objects' sizes.
    pub fn requested_bytes(&self) -> u64 {
        self.requested
    }

    /// Bytes of the mapped address array (the bookkeeping, outside the allocator).
    pub fn bookkeeping_bytes(&self) -> u64 {
        (self.ptrs.len() * size_of::<usize>()) as u64
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        for (i, &p) in self.ptrs.iter().enumerate() {
            let layout = Layout::from_size_align(object_size(i), 8).expect("as allocated");
            // SAFETY: each address came from `self.alloc` with this layout and is freed once.
            unsafe { self.alloc.dealloc(p as *mut u8, layout) };
        }
    }
}

/// Prints `value` as one JSON line on stdout and flushes it (a parent reads it with
/// [`crate::procs::Child::read_json`]).
pub fn say<T: Serialize>(value: &T) -> Result<()> {
    let line = serde_json::to_string(value).map_err(|e| Error::Failed(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).map_err(Error::failed("writing stdout"))
}

//! Test helpers: an arena source that places arenas deterministically and counts every map and
//! unmap, and a shadow record of live blocks.
#![allow(dead_code)]

pub mod child;
use pymalloc::ArenaSource;
use std::ptr::NonNull;

/// Where [`Placed`] puts each arena relative to a pool boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Start exactly on a pool boundary: every arena has all its pools.
    PoolAligned,
    /// Start one page past a pool boundary: every arena loses one pool.
    Misaligned,
}

/// An arena source with deterministic placement that counts maps and unmaps.
pub struct Placed {
    pub placement: Placement,
    pub pool_size: usize,
    pub maps: usize,
    pub unmaps: usize,
    /// Under Miri: how far past its allocation's start each arena is placed.
    offset: usize,
}

impl Placed {
    pub fn new(placement: Placement, pool_size: usize) -> Self {
        Placed { placement, pool_size, maps: 0, unmaps: 0, offset: 0 }
    }
}

// SAFETY: returns fresh zeroed anonymous memory of exactly `size` bytes, page-aligned (and
// pool-aligned or pool+page as asked, which satisfies any `align` up to a page; for a larger
// `align` the pool-aligned placement is used); never allocates through the global allocator.
// Under Miri (no partial munmap) the memory is a zeroed `System` allocation of one pool more,
// pool-aligned, and the arena starts `offset` bytes into it.
#[cfg(miri)]
unsafe impl ArenaSource for Placed {
    fn map(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        use std::alloc::GlobalAlloc;
        let layout =
            std::alloc::Layout::from_size_align(size + self.pool_size, self.pool_size).ok()?;
        // SAFETY: a non-zero size; `System`, not the global allocator.
        let raw = NonNull::new(unsafe { std::alloc::System.alloc_zeroed(layout) })?;
        let offset = match self.placement {
            Placement::Misaligned if align <= 4096 => 4096,
            _ => 0,
        };
        self.offset = offset; // the heap asks every arena with the same alignment
        self.maps += 1;
        // SAFETY: offset + size <= size + pool size: inside the allocation.
        Some(unsafe { raw.add(offset) })
    }

    unsafe fn unmap(&mut self, ptr: NonNull<u8>, size: usize) {
        use std::alloc::GlobalAlloc;
        self.unmaps += 1;
        let layout =
            std::alloc::Layout::from_size_align(size + self.pool_size, self.pool_size).unwrap();
        let raw = ptr.as_ptr().wrapping_sub(self.offset);
        // SAFETY: `raw` is the start of the allocation `map` made with this layout.
        unsafe { std::alloc::System.dealloc(raw, layout) };
    }
}

// SAFETY: as above, natively.
#[cfg(not(miri))]
unsafe impl ArenaSource for Placed {
    fn map(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let slack = 2 * self.pool_size;
        // SAFETY: an anonymous mapping chosen by the kernel.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size + slack,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let raw = raw as usize;
        let aligned = (raw + self.pool_size - 1) & !(self.pool_size - 1);
        let start = match self.placement {
            Placement::Misaligned if align <= 4096 => aligned + 4096,
            _ => aligned,
        };
        // SAFETY: trimming the unused head and tail of the mapping just made.
        unsafe {
            if start > raw {
                libc::munmap(raw as *mut _, start - raw);
            }
            let end = raw + size + slack;
            if end > start + size {
                libc::munmap((start + size) as *mut _, end - start - size);
            }
        }
        self.maps += 1;
        NonNull::new(start as *mut u8)
    }

    unsafe fn unmap(&mut self, ptr: NonNull<u8>, size: usize) {
        self.unmaps += 1;
        // SAFETY: the caller passes back one whole mapping from `map`.
        unsafe { libc::munmap(ptr.as_ptr().cast(), size) };
    }
}

/// Fills `n` bytes at `p` with a pattern derived from `seed`.
///
/// # Safety
/// `p` is valid for `n` bytes of writes.
pub unsafe fn fill(p: *mut u8, n: usize, seed: u64) {
    for i in 0..n {
        // SAFETY: i < n.
        unsafe { p.add(i).write(pattern(seed, i)) };
    }
}

/// Checks the pattern written by [`fill`].
///
/// # Safety
/// `p` is valid for `n` bytes of reads.
pub unsafe fn holds(p: *const u8, n: usize, seed: u64) -> bool {
    // SAFETY: i < n.
    (0..n).all(|i| unsafe { p.add(i).read() } == pattern(seed, i))
}

fn pattern(seed: u64, i: usize) -> u8 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i as u64 * 31) >> 7) as u8
}

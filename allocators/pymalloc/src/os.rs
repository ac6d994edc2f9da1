//! Where arena memory comes from: the only module that talks to the kernel.
//!
//! Arenas are mapped through an [`ArenaSource`]: [`Mmap`] by default (anonymous private
//! `mmap`/`munmap`, as CPython does on Linux), or any other source a test supplies to count or
//! place mappings. The allocator's own bookkeeping (arena descriptors, the ownership map) is
//! mapped here directly with `map_zeroed`, never through the global allocator, so the
//! allocator can be the global allocator without re-entering itself.

use core::ptr::NonNull;

/// The size of an OS page on the platforms arenalab runs on.
pub const PAGE: usize = 4096;

/// A provider of arena memory.
///
/// # Safety
/// An implementation must return, from `map`, either `None` or the start of `size` bytes of
/// readable and writable memory, aligned to `align` (a power of two, at least [`PAGE`]), that
/// nothing else uses until it is passed back to `unmap`. Its contents may be anything (the heap
/// writes every header before reading it).
/// `map` and `unmap` must not allocate through the global allocator (the heap may *be* the
/// global allocator and holds its lock while calling them).
pub unsafe trait ArenaSource {
    /// Maps `size` bytes aligned to `align`.
    fn map(&mut self, size: usize, align: usize) -> Option<NonNull<u8>>;
    /// Gives back a mapping obtained from `map`.
    ///
    /// # Safety
    /// `ptr` and `size` describe one whole mapping returned by `map` and not yet unmapped, and
    /// no live reference points into it.
    unsafe fn unmap(&mut self, ptr: NonNull<u8>, size: usize);
}

/// Anonymous private mappings from the kernel: the default arena source.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mmap;

// SAFETY: `map_aligned` returns fresh zeroed anonymous memory of the requested size and
// alignment and does not allocate; `unmap` releases exactly one such mapping.
unsafe impl ArenaSource for Mmap {
    fn map(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        map_aligned(size, align)
    }
    unsafe fn unmap(&mut self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: the caller passes back one whole mapping from `map`.
        unsafe { unmap(ptr, size) }
    }
}

/// **Not CPython's behaviour**: an arena source that keeps up to `limit` released arenas mapped
/// and hands them out again, instead of returning them to the OS.
///
/// It exists to measure what pymalloc pays for giving memory back: with it, an arena that
/// empties stays resident (no `munmap`), and the next arena needs no `mmap` and no page faults.
/// The benchmarks run the heap with both sources; the retention experiments use only [`Mmap`].
///
/// ```
/// use pymalloc::{Config, Heap, os::Cached};
/// let mut heap = Heap::with_source(Config::CPYTHON_3_8, Cached::new(8));
/// let p = heap.alloc(32);
/// // SAFETY: p is live and freed once.
/// unsafe { heap.free(p) }; // 3.8 releases the emptied arena: into the cache, not to the OS
/// assert_eq!((heap.stats().arenas_current, heap.source().cached()), (0, 1));
/// let q = heap.alloc(32); // the cached arena comes back
/// assert_eq!(heap.source().cached(), 0);
/// # unsafe { heap.free(q) };
/// ```
#[derive(Debug)]
pub struct Cached {
    limit: usize,
    /// Arenas kept: (address, size). At most `limit`, and at most 64 entries.
    kept: [(usize, usize); 64],
    len: usize,
}

impl Cached {
    /// A cache keeping at most `limit` arenas (at most 64).
    pub const fn new(limit: usize) -> Cached {
        Cached { limit: if limit > 64 { 64 } else { limit }, kept: [(0, 0); 64], len: 0 }
    }

    /// Arenas kept mapped now.
    pub fn cached(&self) -> usize {
        self.len
    }
}

impl Drop for Cached {
    fn drop(&mut self) {
        for &(a, size) in &self.kept[..self.len] {
            // SAFETY: each kept arena is one whole mapping handed back by the heap, unused.
            unsafe { unmap(NonNull::new_unchecked(a as *mut u8), size) };
        }
    }
}

// SAFETY: hands out either a kept arena (a whole mapping the heap gave back and no longer
// uses) of the same size and alignment, or a fresh mapping from `map_aligned`; never allocates.
unsafe impl ArenaSource for Cached {
    fn map(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        if let Some(i) =
            self.kept[..self.len].iter().position(|&(a, s)| s == size && a % align == 0)
        {
            let (a, _) = self.kept[i];
            self.len -= 1;
            self.kept[i] = self.kept[self.len];
            return NonNull::new(a as *mut u8);
        }
        map_aligned(size, align)
    }

    unsafe fn unmap(&mut self, ptr: NonNull<u8>, size: usize) {
        if self.len < self.limit {
            self.kept[self.len] = (ptr.as_ptr() as usize, size);
            self.len += 1;
        } else {
            // SAFETY: the caller passes back one whole mapping, no longer used.
            unsafe { unmap(ptr, size) }
        }
    }
}

/// Maps `size` bytes of fresh zeroed memory (a multiple of [`PAGE`]).
pub(crate) fn map_zeroed(size: usize) -> Option<NonNull<u8>> {
    // SAFETY: an anonymous private mapping at an address the kernel chooses touches no existing
    // memory; the result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED { None } else { NonNull::new(p.cast()) }
}

/// Maps `size` bytes aligned to `align`: over-maps by `align - PAGE` and trims both ends.
pub(crate) fn map_aligned(size: usize, align: usize) -> Option<NonNull<u8>> {
    if align <= PAGE {
        return map_zeroed(size);
    }
    let extra = align - PAGE;
    let raw = map_zeroed(size + extra)?;
    let start = raw.as_ptr() as usize;
    let aligned = (start + align - 1) & !(align - 1);
    let head = aligned - start;
    let tail = extra - head;
    if head > 0 {
        // SAFETY: [start, start + head) is the front of the mapping just made, unused.
        unsafe { unmap(raw, head) };
    }
    if tail > 0 {
        // SAFETY: the tail past aligned + size is the end of the same fresh mapping, unused.
        unsafe { unmap(NonNull::new_unchecked((aligned + size) as *mut u8), tail) };
    }
    NonNull::new(aligned as *mut u8)
}

/// Unmaps `size` bytes at `ptr`.
///
/// # Safety
/// `[ptr, ptr + size)` is mapped memory owned by the caller with no live references into it.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, size: usize) {
    // SAFETY: the caller owns the range; munmap on it cannot affect other memory.
    let rc = unsafe { libc::munmap(ptr.as_ptr().cast(), size) };
    debug_assert_eq!(rc, 0, "munmap failed");
}

/// A growable array of plain values kept in mapped memory, not in the global allocator.
///
/// Invariant: `ptr` is null with `cap == 0`, or points at a mapping of `cap * size_of::<T>()`
/// bytes rounded up to pages, of which the first `len` elements are initialised.
pub(crate) struct OsVec<T: Copy> {
    ptr: *mut T,
    len: usize,
    cap: usize,
}

impl<T: Copy> OsVec<T> {
    pub(crate) const fn new() -> Self {
        OsVec { ptr: core::ptr::null_mut(), len: 0, cap: 0 }
    }

    fn bytes(cap: usize) -> usize {
        (cap * core::mem::size_of::<T>()).div_ceil(PAGE) * PAGE
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `value`, doubling the mapping when full (like CPython's `arenas` vector, which
    /// starts at 16 and doubles). Returns `false` when the OS refuses memory.
    pub(crate) fn push(&mut self, value: T) -> bool {
        if self.len == self.cap {
            let new_cap = if self.cap == 0 { 16 } else { self.cap * 2 };
            let Some(new) = map_zeroed(Self::bytes(new_cap)) else { return false };
            let new = new.as_ptr().cast::<T>();
            if !self.ptr.is_null() {
                // SAFETY: both regions are valid for `len` elements and distinct mappings; the
                // old one is then unmapped whole, and nothing points into it (callers use indices).
                unsafe {
                    core::ptr::copy_nonoverlapping(self.ptr, new, self.len);
                    unmap(NonNull::new_unchecked(self.ptr.cast()), Self::bytes(self.cap));
                }
            }
            self.ptr = new;
            self.cap = new_cap;
        }
        // SAFETY: len < cap after growing, so the slot is inside the mapping.
        unsafe { self.ptr.add(self.len).write(value) };
        self.len += 1;
        true
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: the first `len` elements are initialised (type invariant).
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        if self.ptr.is_null() {
            return &mut [];
        }
        // SAFETY: as in `as_slice`, and `&mut self` makes the access unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl<T: Copy> Drop for OsVec<T> {
    fn drop(&mut self) {
        if let Some(p) = NonNull::new(self.ptr) {
            // SAFETY: the mapping is ours and is dropped with the vector.
            unsafe { unmap(p.cast(), Self::bytes(self.cap)) };
        }
    }
}

//! Where arena memory comes from: the only module that talks to the kernel.
//!
//! Arenas are mapped through an [`ArenaSource`]: [`Mmap`] by default (anonymous private
//! `mmap`/`munmap`, as CPython does on Linux), or any other source a test supplies to count or
//! place mappings. The allocator's own bookkeeping (arena descriptors, the ownership map) is
//! mapped here directly with `map_zeroed`, never through the global allocator, so the
//! allocator can be the global allocator without re-entering itself.
//!
//! Nothing here panics: a size that would overflow is refused (`None`, `false`), and a
//! `munmap` the kernel refuses is counted ([`unmap_failures`]), since these functions run under
//! the global allocator's lock. Under Miri, which cannot map memory this way, the same
//! functions use `std::alloc::System` and a side table of raw blocks (see `cfg(miri)` below).

use core::ptr::NonNull;

/// The size of an OS page on the platforms arenalab runs on.
pub const PAGE: usize = 4096;

/// A provider of arena memory.
///
/// # Safety
/// An implementation must return, from `map`, either `None` or the start of `size` bytes of
/// readable and writable memory, aligned to `align` (a power of two, at least [`PAGE`]), that
/// nothing else uses until it is passed back to `unmap`. Its contents may be anything,
/// uninitialised included: the heap writes every pool header before reading it, and tells a
/// carved pool from a never-carved one by the arena's descriptor, never by reading the pool.
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

/// Anonymous private mappings from the kernel: the default arena source. (Under Miri: zeroed
/// `System` allocations aligned to their size.)
#[derive(Clone, Copy, Debug, Default)]
pub struct Mmap;

// SAFETY: `map_aligned` returns fresh zeroed memory of the requested size and alignment (an
// anonymous mapping; under Miri a `System` allocation) or `None`, and does not allocate through
// the global allocator; `unmap` releases exactly one such mapping.
unsafe impl ArenaSource for Mmap {
    fn map(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        map_aligned(size, align)
    }
    unsafe fn unmap(&mut self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: the caller passes back one whole mapping from `map`.
        unsafe { unmap(ptr, size) };
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
    /// Arenas kept: (start, size). At most `limit`, and at most 64 entries.
    kept: [(NonNull<u8>, usize); 64],
    len: usize,
}

// SAFETY: the kept arenas are owned by the cache alone (the heap gave them back), so moving
// the cache to another thread moves that ownership along.
unsafe impl Send for Cached {}

impl Cached {
    /// A cache keeping at most `limit` arenas (at most 64).
    pub const fn new(limit: usize) -> Cached {
        Cached {
            limit: if limit > 64 { 64 } else { limit },
            kept: [(NonNull::dangling(), 0); 64],
            len: 0,
        }
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
            unsafe { unmap(a, size) };
        }
    }
}

// SAFETY: hands out either a kept arena (a whole mapping the heap gave back and no longer
// uses) of the same size and alignment, or a fresh mapping from `map_aligned`; never allocates.
unsafe impl ArenaSource for Cached {
    fn map(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        if let Some(i) = self.kept[..self.len]
            .iter()
            .position(|&(a, s)| s == size && a.as_ptr().addr() % align == 0)
        {
            let (a, _) = self.kept[i];
            self.len -= 1;
            self.kept[i] = self.kept[self.len];
            return Some(a);
        }
        map_aligned(size, align)
    }

    unsafe fn unmap(&mut self, ptr: NonNull<u8>, size: usize) {
        if self.len < self.limit {
            self.kept[self.len] = (ptr, size);
            self.len += 1;
        } else {
            // SAFETY: the caller passes back one whole mapping, no longer used.
            unsafe { unmap(ptr, size) };
        }
    }
}

/// Maps `size` bytes of fresh zeroed memory (a multiple of [`PAGE`]).
#[cfg(not(miri))]
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
/// Returns `None` when the OS refuses memory or the sizes overflow.
#[cfg(not(miri))]
pub(crate) fn map_aligned(size: usize, align: usize) -> Option<NonNull<u8>> {
    if align <= PAGE {
        return map_zeroed(size);
    }
    let extra = align - PAGE;
    let raw = map_zeroed(size.checked_add(extra)?)?;
    let head = raw.as_ptr().addr().wrapping_neg() & (align - 1);
    let tail = extra - head;
    // SAFETY: head <= extra, so the aligned start and the tail start lie inside the mapping of
    // size + extra bytes just made.
    let (aligned, after) = unsafe { (raw.add(head), raw.add(head + size)) };
    if head > 0 {
        // SAFETY: [raw, raw + head) is the front of the mapping just made, unused.
        unsafe { unmap(raw, head) };
    }
    if tail > 0 {
        // SAFETY: the tail past aligned + size is the end of the same fresh mapping, unused.
        unsafe { unmap(after, tail) };
    }
    Some(aligned)
}

/// Unmaps `size` bytes at `ptr`. A refusal of the kernel (`munmap` fails, e.g. when splitting
/// a mapping would pass `vm.max_map_count`) is counted in [`unmap_failures`], never a panic:
/// this runs under the global allocator's lock, where a panic could not even print.
///
/// # Safety
/// `[ptr, ptr + size)` is mapped memory owned by the caller with no live references into it.
#[cfg(not(miri))]
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, size: usize) -> bool {
    // SAFETY: the caller owns the range; munmap on it cannot affect other memory.
    let ok = unsafe { libc::munmap(ptr.as_ptr().cast(), size) } == 0;
    if !ok {
        UNMAP_FAILURES.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
    ok
}

static UNMAP_FAILURES: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// How many times the kernel refused to unmap memory this process's heaps gave back (the memory
/// then stays mapped; the heap goes on). Process-wide, never reset.
pub fn unmap_failures() -> usize {
    UNMAP_FAILURES.load(core::sync::atomic::Ordering::Relaxed)
}

// ---------------------------------------------------------------- under Miri
//
// Miri implements neither `MAP_NORESERVE`, nor partial `munmap`, nor `msync`, nor
// `malloc_usable_size`. Under Miri every mapping is therefore a `System` allocation (zeroed, as
// mmap's) whose alignment is the largest power of two dividing its size, so that `unmap`, which
// is given only the size, rebuilds the same layout. Arena sizes are powers of two, so an arena
// is aligned to its size: every alignment the heap asks for (a page or a pool) is met. Raw
// blocks are recorded in a side table (`raw`) that answers for `malloc_usable_size` and `msync`.

/// The layout of a mapping of `size` bytes under Miri.
#[cfg(miri)]
fn miri_layout(size: usize) -> Option<std::alloc::Layout> {
    std::alloc::Layout::from_size_align(size, size & size.wrapping_neg()).ok()
}

/// Maps `size` bytes of fresh zeroed memory (a multiple of [`PAGE`]).
#[cfg(miri)]
pub(crate) fn map_zeroed(size: usize) -> Option<NonNull<u8>> {
    use std::alloc::GlobalAlloc;
    let layout = miri_layout(size)?;
    // SAFETY: the layout has a non-zero size (callers map at least a page). `System`, not the
    // global allocator, which may be this very heap.
    NonNull::new(unsafe { std::alloc::System.alloc_zeroed(layout) })
}

/// Maps `size` bytes aligned to `align` (see the section comment: the alignment is the size's).
#[cfg(miri)]
pub(crate) fn map_aligned(size: usize, align: usize) -> Option<NonNull<u8>> {
    if align > size & size.wrapping_neg() {
        return None;
    }
    map_zeroed(size)
}

/// Gives back a mapping of `size` bytes made by `map_zeroed` or `map_aligned`.
///
/// # Safety
/// `ptr` and `size` describe one whole such mapping, with no live references into it.
#[cfg(miri)]
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, size: usize) -> bool {
    use std::alloc::GlobalAlloc;
    let Some(layout) = miri_layout(size) else { return false };
    // SAFETY: the caller passes back one whole allocation made with this very layout.
    unsafe { std::alloc::System.dealloc(ptr.as_ptr(), layout) };
    true
}

/// The side table of live raw blocks under Miri: (address, requested size).
#[cfg(miri)]
mod raw {
    use super::OsVec;
    use std::sync::{Mutex, MutexGuard};

    struct Table(OsVec<(usize, usize)>);
    // SAFETY: the vector's memory is owned by the table and touched only under the mutex.
    unsafe impl Send for Table {}
    static TABLE: Mutex<Table> = Mutex::new(Table(OsVec::new()));

    fn table() -> MutexGuard<'static, Table> {
        TABLE.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn record(addr: usize, size: usize) {
        table().0.push((addr, size));
    }

    pub(super) fn forget(addr: usize) {
        let mut t = table();
        if let Some(i) = t.0.as_slice().iter().position(|&(a, _)| a == addr) {
            t.0.swap_remove(i);
        }
    }

    pub(super) fn size(addr: usize) -> usize {
        table().0.as_slice().iter().find(|&&(a, _)| a == addr).map_or(0, |&(_, s)| s)
    }
}

/// Notes a new raw block of `size` requested bytes (Miri's side table; nothing natively).
#[inline]
pub(crate) fn raw_made(p: *mut u8, size: usize) {
    #[cfg(miri)]
    raw::record(p.addr(), size.max(1));
    #[cfg(not(miri))]
    let _ = (p, size);
}

/// Notes that the raw block at `p` was freed or moved by `realloc` (Miri's side table; nothing
/// natively).
#[inline]
pub(crate) fn raw_gone(p: *mut u8) {
    #[cfg(miri)]
    raw::forget(p.addr());
    #[cfg(not(miri))]
    let _ = p;
}

/// The usable size of the live raw block `p`: natively `malloc_usable_size`, under Miri the
/// size recorded by [`raw_made`].
///
/// # Safety
/// `p` is a live block of the raw allocator (libc `malloc`).
#[inline]
pub(crate) unsafe fn raw_usable_size(p: *mut u8) -> usize {
    #[cfg(miri)]
    {
        raw::size(p.addr())
    }
    #[cfg(not(miri))]
    {
        // SAFETY: the caller passes a live libc block.
        unsafe { libc::malloc_usable_size(p.cast()) }
    }
}

/// `realloc` of the live raw block `p` to `size` bytes (0 asks for 1, as CPython's
/// `PyMem_RawRealloc` does), with the side table kept: the new block and the usable sizes of the
/// old and the new, for the caller's gauges. `None` when libc refuses, and `p` is then untouched.
///
/// # Safety
/// `p` is a live block of the raw allocator (libc `malloc`).
pub(crate) unsafe fn raw_realloc(p: *mut u8, size: usize) -> Option<(*mut u8, usize, usize)> {
    // SAFETY: caller contract: a live libc block.
    let old = unsafe { raw_usable_size(p) };
    // SAFETY: as above; on failure libc leaves p untouched.
    let new = unsafe { libc::realloc(p.cast(), size.max(1)) }.cast::<u8>();
    if new.is_null() {
        return None;
    }
    raw_gone(p);
    raw_made(new, size);
    // SAFETY: new is a live libc block.
    Some((new, old, unsafe { raw_usable_size(new) }))
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
        (cap * core::mem::size_of::<T>()).next_multiple_of(PAGE)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `value`, doubling the mapping when full (like CPython's `arenas` vector, which
    /// starts at 16 and doubles). Returns `false` when the OS refuses memory.
    pub(crate) fn push(&mut self, value: T) -> bool {
        if self.len == self.cap {
            let new_cap = if self.cap == 0 { 16 } else { self.cap * 2 };
            if new_cap
                .checked_mul(core::mem::size_of::<T>())
                .is_none_or(|b| b > isize::MAX as usize)
            {
                return false;
            }
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

    /// Removes element `i`, moving the last one into its place; `None` when out of range.
    #[cfg(miri)]
    pub(crate) fn swap_remove(&mut self, i: usize) -> Option<T> {
        let last = *self.as_slice().last()?;
        let slot = self.as_mut_slice().get_mut(i)?;
        let value = core::mem::replace(slot, last);
        self.len -= 1;
        Some(value)
    }

    /// Element `i` without a bounds check, for the hot path.
    ///
    /// # Safety
    /// `i < self.len()`.
    #[inline(always)]
    pub(crate) unsafe fn get_unchecked(&self, i: usize) -> &T {
        // SAFETY: i < len <= cap (caller), and the first `len` elements are initialised.
        unsafe { &*self.ptr.add(i) }
    }

    /// Element `i`, mutable, without a bounds check, for the hot path.
    ///
    /// # Safety
    /// `i < self.len()`.
    #[inline(always)]
    pub(crate) unsafe fn get_unchecked_mut(&mut self, i: usize) -> &mut T {
        // SAFETY: i < len <= cap (caller), the first `len` elements are initialised, and
        // `&mut self` makes the access unique.
        unsafe { &mut *self.ptr.add(i) }
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

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn a_refused_munmap_is_counted_not_a_panic() {
        let m = map_zeroed(2 * PAGE).unwrap();
        let before = unmap_failures();
        // SAFETY: one byte into a mapping of two pages: munmap refuses an address that is not
        // page-aligned (EINVAL) and changes nothing.
        let ok = unsafe { unmap(m.add(1), PAGE) };
        assert!(!ok);
        assert!(unmap_failures() > before);
        // SAFETY: the whole mapping, unused.
        assert!(unsafe { unmap(m, 2 * PAGE) });
    }
}

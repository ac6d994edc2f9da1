//! The heap: CPython's allocation and free paths over pools and arenas.
//!
//! `alloc(n)` for 1 ≤ n ≤ 512 (3.10 layout) serves size class `(n − 1) >> 4` from the first pool
//! on `usedpools[class]`; when that list is empty a pool comes from the head of
//! `usable_arenas`, and when no arena has a free pool a new arena is mapped. `free(p)` pushes the
//! block on its pool's free list; a pool that becomes empty goes to its arena's `freepools`, and
//! an arena whose pools are all empty is unmapped — unless (3.9+) it is the last usable arena.
//! Everything else (0 bytes, larger requests, over-aligned requests) goes to the raw allocator,
//! libc `malloc`, and is counted.
//!
//! ## The hot paths
//!
//! The model must cost no more than the original per operation, or its timings would measure
//! the model rather than CPython's design. So the paths a pair of `alloc` and `free` runs are
//! shaped the way obmalloc's are, in instructions (callgrind, per 32-byte pair, the allocator
//! only, in the same harness as 3.11's `PyObject_Malloc`/`PyObject_Free`):
//!
//! * **Fast paths** (`alloc` from a used pool, `free` into a pool that stays used) are inlined
//!   into the caller and make no call: the raw allocator and debug mode are out of line, and
//!   debug mode costs the fast path nothing (`fast_threshold` is 0 in debug mode, so its
//!   requests take the slow way round). No block size, pool mask or arena mask is computed
//!   there: the size comes from the class only when a pool must carve, the masks are fields.
//! * **The empty-pool cycle** (a class with no used pool takes an empty pool from the head of
//!   `usable_arenas`; freeing its last block gives it back) is one out-of-line function each
//!   way, `alloc_from_new_pool` and `pool_now_empty`. The rarer branches (mapping an arena,
//!   carving a pool, taking an arena's last free pool, moving an arena on `usable_arenas`,
//!   releasing an arena) are tail calls, so the common case saves few or no registers.
//! * **Descriptors** are reached by index without a bounds or null check. That rests on a type
//!   invariant of `Arenas`: every index held in a link (`usable`, `unused`, `next`/`prev`, the
//!   `nfp2lasta` fingers, a pool's `arenaindex`) is `NONE` or names a descriptor, and the
//!   descriptor vector never shrinks. Free-pool counts are `u8` (at most 255 pools per arena,
//!   config validation), so they index the 256 fingers with no check in safe code.
//!
//! None of this changes a count or an order: `benches/tests/heap_counters.rs` compares the
//! heap's counters, its occupancy and every pointer it hands out, over every benchmark
//! workload, with a record made before these paths were reshaped.

use crate::arena::{Arenas, NONE};
use crate::config::{Config, MAX_CLASSES, SizeClass};
use crate::os::{self, ArenaSource, Mmap, PAGE};
use crate::pool::{NO_CLASS, PoolHeader, PoolList};
use crate::radix::OwnershipMap;
use crate::snapshot::{ArenaSnapshot, PoolSnapshot, PoolState, Snapshot};
use crate::stats::Stats;
use core::ptr::NonNull;

use crate::debug::DebugState;
pub use crate::debug::HeapError;

/// A single-threaded pymalloc heap: one interpreter's allocator under its GIL.
///
/// ```
/// use pymalloc::{Config, Heap};
/// let mut heap = Heap::new(Config::CPYTHON_3_10);
/// let p = heap.alloc(32);
/// assert!(!p.is_null());
/// // SAFETY: `p` points at a live 32-byte block of this heap.
/// unsafe { p.write_bytes(0xAB, 32) };
/// let s = heap.stats();
/// assert_eq!((s.arenas_current, s.pools_used, s.classes[1].blocks_in_use), (1, 1, 1));
/// // SAFETY: `p` came from this heap and is freed once.
/// unsafe { heap.free(p) };
/// heap.check_invariants().unwrap();
/// ```
pub struct Heap<S: ArenaSource = Mmap> {
    // Hot fields first: the alloc and free fast paths read only these.
    /// `usedpools[c]`: pools of class `c` with at least one free and one allocated block.
    usedpools: [PoolList; MAX_CLASSES],
    map: OwnershipMap,
    alignment_shift: u32,
    /// `threshold`, or 0 in debug mode: the one comparison by which `alloc` picks its fast
    /// path, so that debug mode costs the fast path nothing (it goes the slow way round).
    fast_threshold: usize,
    threshold: usize,
    pool_size: usize,
    /// `!(pool_size - 1)`: a block's address masked with it is its pool's.
    pool_mask: usize,
    debug: bool,
    keep_last: bool,
    pub(crate) arenas: Arenas,
    config: Config,
    source: S,
    // Counters: only grow.
    arenas_total: u64,
    raw_total: u64,
    // Gauges.
    arenas_current: usize,
    arenas_highwater: usize,
    raw_blocks: usize,
    raw_bytes: usize,
    /// Debug mode only: the last arenas returned to the OS, so that a free into one of them can
    /// be reported as a double free rather than read unmapped memory.
    released: [usize; RELEASED_RING],
    released_next: usize,
    /// Debug mode only: its records of raw blocks.
    dbg: DebugState,
}

const RELEASED_RING: usize = 64;

// SAFETY: the heap exclusively owns every arena, pool and descriptor its pointers reach; moving
// it to another thread moves that ownership along (it is not `Sync`).
unsafe impl<S: ArenaSource + Send> Send for Heap<S> {}

impl Heap<Mmap> {
    /// An empty heap taking arenas from `mmap`. No memory is mapped until the first allocation.
    pub const fn new(config: Config) -> Heap<Mmap> {
        Heap::with_source(config, Mmap)
    }
}

impl<S: ArenaSource> Heap<S> {
    /// An empty heap taking arenas from `source`.
    pub const fn with_source(config: Config, source: S) -> Heap<S> {
        Heap {
            usedpools: [PoolList::EMPTY; MAX_CLASSES],
            map: OwnershipMap::new(config.arena_shift),
            alignment_shift: config.alignment_shift,
            fast_threshold: if config.debug { 0 } else { config.threshold },
            threshold: config.threshold,
            pool_size: config.pool_size(),
            pool_mask: !(config.pool_size() - 1),
            debug: config.debug,
            keep_last: config.keep_last_empty_arena,
            arenas: Arenas::new(config.policy),
            config,
            source,
            arenas_total: 0,
            raw_total: 0,
            arenas_current: 0,
            arenas_highwater: 0,
            raw_blocks: 0,
            raw_bytes: 0,
            released: [0; RELEASED_RING],
            released_next: 0,
            dbg: DebugState::new(),
        }
    }

    /// The layout this heap was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The arena source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Allocates `size` bytes aligned to the block granularity; null when the OS refuses memory.
    #[inline]
    pub fn alloc(&mut self, size: usize) -> *mut u8 {
        if size.wrapping_sub(1) < self.fast_threshold {
            self.alloc_small((size - 1) >> self.alignment_shift)
        } else {
            self.alloc_other(size)
        }
    }

    /// What `alloc` does off its fast path: debug mode, and requests for the raw allocator.
    #[inline(never)]
    fn alloc_other(&mut self, size: usize) -> *mut u8 {
        if self.debug {
            return crate::debug::alloc(self, size, 0);
        }
        self.alloc_plain(size)
    }

    /// Allocates `size` bytes aligned to `align` (a power of two). Alignments above the block
    /// granularity go to the raw allocator, as in CPython.
    pub fn alloc_aligned(&mut self, size: usize, align: usize) -> *mut u8 {
        if align <= 1 << self.alignment_shift {
            return self.alloc(size);
        }
        if self.debug {
            return crate::debug::alloc(self, size, align);
        }
        self.raw_alloc_aligned(size, align)
    }

    #[inline(always)]
    pub(crate) fn alloc_plain(&mut self, size: usize) -> *mut u8 {
        if size.wrapping_sub(1) < self.threshold {
            self.alloc_small((size - 1) >> self.alignment_shift)
        } else {
            self.raw_alloc(size)
        }
    }

    #[inline(always)]
    fn alloc_small(&mut self, class: usize) -> *mut u8 {
        let pool = self.usedpools[class & (MAX_CLASSES - 1)].head;
        if !pool.is_null() {
            // SAFETY: `pool` is the head of `usedpools[class]`.
            return unsafe { self.alloc_from_used(class, pool) };
        }
        self.alloc_from_new_pool(class)
    }

    /// The fast path of `alloc_small`: a block of `pool`, the head of `usedpools[class]`.
    /// Also called by the global allocator's fast path, which reads the head itself.
    ///
    /// # Safety
    /// `pool` is `usedpools[class].head` and not null.
    #[inline(always)]
    pub(crate) unsafe fn alloc_from_used(
        &mut self,
        class: usize,
        pool: *mut PoolHeader,
    ) -> *mut u8 {
        let list = &mut self.usedpools[class & (MAX_CLASSES - 1)];
        // SAFETY: a pool on usedpools is live and has a non-null free list (PoolHeader
        // invariant), whose head is a free block of this pool whose first word is a link.
        unsafe {
            (*pool).count += 1;
            let bp = (*pool).freeblock;
            let next = *bp.cast::<*mut u8>();
            (*pool).freeblock = next;
            if next.is_null() && !PoolHeader::extend(pool, (class + 1) << self.alignment_shift) {
                // Full: off the list (it is the head).
                list.unlink(pool);
            }
            bp
        }
    }

    /// `usedpools[class]` is empty: take a pool from the head of `usable_arenas` (mapping a
    /// new arena when none is usable) and serve the request from it.
    #[inline(never)]
    fn alloc_from_new_pool(&mut self, class: usize) -> *mut u8 {
        let i = self.arenas.usable;
        if i == NONE {
            return self.alloc_from_new_arena(class);
        }
        // SAFETY: `usable` is a link other than NONE: a descriptor (type invariant of Arenas).
        let a = unsafe { self.arenas.at(i) };
        if a.freepools.is_null() || a.nfreepools == 1 {
            return self.alloc_from_pool_rarely(class);
        }
        // SAFETY: `usable` is not NONE, has a pool on `freepools` and another free pool.
        unsafe { self.serve_from_pool(class, false, false) }
    }

    /// [`alloc_from_new_pool`](Self::alloc_from_new_pool) when the head arena has no empty
    /// pool (carve a new one: once per pool of an arena) or gives its last free pool (and
    /// leaves `usable_arenas`). Out of line, a tail call, so that the common case carries
    /// neither path.
    #[inline(never)]
    fn alloc_from_pool_rarely(&mut self, class: usize) -> *mut u8 {
        // SAFETY: only called when `usable` is not NONE (a descriptor, type invariant).
        let carve = unsafe { self.arenas.at(self.arenas.usable) }.freepools.is_null();
        // SAFETY: as above; `carve` is whether its `freepools` is empty.
        unsafe { self.serve_from_pool(class, carve, true) }
    }

    /// Takes a pool from the head arena (carving it when `carve`) and serves the request.
    ///
    /// # Safety
    /// `usable` is not NONE; `carve` is whether its `freepools` is empty; when `maybe_last` is
    /// false it has at least two free pools.
    #[inline(always)]
    unsafe fn serve_from_pool(&mut self, class: usize, carve: bool, maybe_last: bool) -> *mut u8 {
        let shift = self.alignment_shift;
        let list = &mut self.usedpools[class & (MAX_CLASSES - 1)];
        // SAFETY: `usable` is not NONE and `carve` says how to take its pool (caller). The
        // pool returned belongs to a live arena, has a header, and is on no list.
        unsafe {
            let pool = self.arenas.take_pool(self.pool_size, carve, maybe_last);
            list.push_front(pool);
            (*pool).count = 1;
            if (*pool).szidx == class as u32 {
                // Last used for the same class: header and free list are still valid.
                let bp = (*pool).freeblock;
                let next = *bp.cast::<*mut u8>();
                (*pool).freeblock = next;
                if next.is_null() && !PoolHeader::extend(pool, (class + 1) << shift) {
                    list.unlink(pool);
                }
                return bp;
            }
            PoolHeader::init_class(
                pool,
                SizeClass(class as u8),
                (class + 1) << shift,
                self.config.pool_overhead(),
                self.pool_size,
            )
        }
    }

    /// No arena has a free pool: map one, then serve the request from it (a tail call, so
    /// that `alloc_from_new_pool` itself makes no call and saves no registers).
    #[cold]
    #[inline(never)]
    fn alloc_from_new_arena(&mut self, class: usize) -> *mut u8 {
        if !self.new_arena() {
            return core::ptr::null_mut();
        }
        self.alloc_from_new_pool(class)
    }

    /// Maps a new arena and makes it the only usable one. CPython: `new_arena()`.
    #[cold]
    #[inline(never)]
    fn new_arena(&mut self) -> bool {
        let Some(i) = self.arenas.take_descriptor() else { return false };
        let size = self.config.arena_size();
        let align = if self.config.aligned_arenas { self.pool_size } else { PAGE };
        let Some(mem) = self.source.map(size, align) else {
            self.arenas.retire(i);
            return false;
        };
        if !self.map.insert(mem.as_ptr().addr(), i) {
            // SAFETY: the mapping was just made and nothing points into it.
            unsafe { self.source.unmap(mem, size) };
            self.arenas.retire(i);
            return false;
        }
        self.arenas.install(i, mem.as_ptr(), size, self.pool_size);
        self.arenas_total += 1;
        self.arenas_current += 1;
        self.arenas_highwater = self.arenas_highwater.max(self.arenas_current);
        true
    }

    /// Frees `p`. Null is ignored. In debug mode a bad free is reported and the process stops.
    ///
    /// # Safety
    /// `p` is null or was returned by this heap's `alloc*`/`realloc` and not freed since
    /// (in debug mode, violations are detected and reported instead of corrupting the heap,
    /// as far as the checks reach).
    #[inline]
    pub unsafe fn free(&mut self, p: *mut u8) {
        if p.is_null() {
            return;
        }
        if self.debug {
            // SAFETY: forwarded caller contract; debug::free_or_abort checks what it can.
            return unsafe { crate::debug::free_or_abort(self, p) };
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.free_plain(p) }
    }

    /// Frees `p` like [`free`](Self::free) but, in debug mode, returns what is wrong with the
    /// free instead of stopping the program (and then leaves the heap untouched).
    ///
    /// # Safety
    /// As for [`free`](Self::free). In debug mode any pointer is first checked against the
    /// heap's own records (pool geometry and free lists, the table of raw blocks), so a double
    /// free, an overrun or underrun block, or a pointer never allocated is returned as an error
    /// without reading memory the heap does not own.
    pub unsafe fn try_free(&mut self, p: *mut u8) -> Result<(), HeapError> {
        if p.is_null() {
            return Ok(());
        }
        if self.debug {
            // SAFETY: forwarded caller contract.
            return unsafe { crate::debug::try_free(self, p) };
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.free_plain(p) };
        Ok(())
    }

    /// `p`, when it lies in one of this heap's arenas, re-derived from that arena's base
    /// pointer: same address, the provenance of the whole mapping. The free path works only
    /// with such pointers, so the free lists hold them and `alloc` hands them out valid for the
    /// whole block, whatever reference the caller freed the block through.
    #[inline(always)]
    pub(crate) fn in_arena(&self, p: *const u8) -> Option<*mut u8> {
        let i = self.map.arena_of(p.addr())?;
        // SAFETY: the ownership map only names descriptors it was given by `new_arena`, and
        // descriptors are never removed (the vector only grows), so `i < len`.
        Some(unsafe { self.arenas.objs.get_unchecked(i as usize) }.ptr(p.addr()))
    }

    /// # Safety
    /// `p` is a live block of this heap (pool block or raw block), with no debug header.
    #[inline(always)]
    pub(crate) unsafe fn free_plain(&mut self, p: *mut u8) {
        let Some(p) = self.in_arena(p) else {
            // SAFETY: not in an arena, so it came from the raw allocator (caller contract).
            return unsafe { self.raw_free(p) };
        };
        // SAFETY: forwarded caller contract: a live pool block, re-derived from its arena.
        unsafe {
            let emptied = self.free_to_pool(p);
            if !emptied.is_null() {
                self.pool_now_empty(emptied);
            }
        }
    }

    /// The fast path of `free_plain` for a block of an arena: back on its pool's free list.
    /// Returns the pool when it has just become empty (the caller then calls
    /// `pool_now_empty`), null otherwise. Also called by the global allocator's fast path.
    ///
    /// # Safety
    /// `p` is a live block of one of this heap's arenas, with that arena's provenance (from
    /// [`in_arena`](Self::in_arena)).
    #[inline(always)]
    pub(crate) unsafe fn free_to_pool(&mut self, p: *mut u8) -> *mut PoolHeader {
        let pool = p.map_addr(|a| a & self.pool_mask).cast::<PoolHeader>();
        // SAFETY: p is a live block inside a live arena, so its pool is carved, classed and
        // live; the block is at least a word long and free to hold the list link.
        unsafe {
            let last = (*pool).freeblock;
            *p.cast::<*mut u8>() = last;
            (*pool).freeblock = p;
            (*pool).count -= 1;
            if last.is_null() {
                // It was full: back on usedpools, at the front, so this block is reused next.
                self.usedpools[(*pool).szidx as usize & (MAX_CLASSES - 1)].push_front(pool);
                return core::ptr::null_mut();
            }
            if (*pool).count != 0 {
                return core::ptr::null_mut();
            }
            pool
        }
    }

    /// # Safety
    /// `pool` is live, on `usedpools[its class]`, and has just become empty.
    #[inline(never)]
    pub(crate) unsafe fn pool_now_empty(&mut self, pool: *mut PoolHeader) {
        // SAFETY: caller contract: the pool is on its class list and live, so its class and
        // arena index are those it was given (`arenaindex` names a descriptor). When
        // `pool_emptied` says so, the arena is wholly empty and unlinked.
        unsafe {
            let (class, arena) = ((*pool).szidx as usize, (*pool).arenaindex);
            self.usedpools[class & (MAX_CLASSES - 1)].unlink(pool);
            if let Some(old) = self.arenas.pool_emptied(arena, pool, self.keep_last) {
                self.pool_emptied_rest(arena, old);
            }
        }
    }

    /// The less common cases of an emptied pool: its arena moves on `usable_arenas`, or is
    /// released. A tail call of `pool_now_empty`, so that its common case saves no registers.
    ///
    /// # Safety
    /// `arena` is a live arena whose pool just became empty, and `pool_emptied` returned
    /// `Some(old)` for it.
    #[inline(never)]
    unsafe fn pool_emptied_rest(&mut self, arena: u32, old: u8) {
        if self.arenas.pool_emptied_rest(arena, old, self.keep_last) {
            // SAFETY: `pool_emptied_rest` found every pool of the arena empty and unlinked it.
            unsafe { self.release_arena(arena) };
        }
    }

    /// Gives the wholly empty arena `arena` back to the source and retires its descriptor.
    ///
    /// # Safety
    /// `arena` is a live arena whose pools are all empty, already unlinked from `usable`
    /// (`pool_emptied` returned `true` for it).
    #[cold]
    #[inline(never)]
    unsafe fn release_arena(&mut self, arena: u32) {
        let (address, base) = (self.arenas.get(arena).address, self.arenas.get(arena).base);
        self.map.remove(address);
        if let Some(base) = NonNull::new(base) {
            // SAFETY: every pool of the arena is empty, so no live block points into it (caller);
            // the descriptor was unlinked by `pool_emptied` and the ownership map no longer has
            // it; `base` is the whole mapping as the source returned it.
            unsafe { self.source.unmap(base, self.config.arena_size()) };
        }
        self.arenas.retire(arena);
        self.arenas_current -= 1;
        if self.debug {
            self.released[self.released_next % RELEASED_RING] = address;
            self.released_next += 1;
        }
    }

    /// Debug mode: whether `p` lies in one of the last arenas returned to the OS.
    pub(crate) fn was_released(&self, p: usize) -> bool {
        let size = self.config.arena_size();
        self.released.iter().any(|&a| a != 0 && p >= a && p < a + size)
    }

    /// Whether `pool` is a carved pool of a live arena (so its header is initialised).
    /// Decided from the arena's descriptor, without reading the pool: a never-carved pool's
    /// memory may be uninitialised (the [`ArenaSource`] contract allows it).
    pub(crate) fn is_carved_pool(&self, pool: *const PoolHeader) -> bool {
        self.carved_pool(pool.addr()).is_some()
    }

    /// The header of the carved pool starting at `addr`, with its arena's provenance; `None`
    /// when `addr` is not the start of a carved pool of a live arena. Reads no pool memory.
    pub(crate) fn carved_pool(&self, addr: usize) -> Option<*mut PoolHeader> {
        let i = self.map.arena_of(addr)?;
        let a = self.arenas.objs.as_slice().get(i as usize)?;
        let first = a.first_pool(self.pool_size);
        let carved = a.address != 0
            && addr >= first
            && addr < a.pool_address
            && (addr - first).is_multiple_of(self.pool_size);
        carved.then(|| a.ptr(addr).cast())
    }

    /// Resizes `p` to `size` bytes, CPython's way: a pool block is kept when the new size still
    /// fits and is more than 3/4 of the block; otherwise allocate, copy, free.
    /// Null `p` behaves as `alloc`. On failure returns null and leaves `p` untouched.
    /// The new block is aligned to the granularity only: a block from
    /// [`alloc_aligned`](Self::alloc_aligned) with a larger alignment is resized with
    /// [`realloc_aligned`](Self::realloc_aligned), which keeps it.
    ///
    /// # Safety
    /// `p` is null or a live block of this heap.
    pub unsafe fn realloc(&mut self, p: *mut u8, size: usize) -> *mut u8 {
        if p.is_null() {
            return self.alloc(size);
        }
        if self.debug {
            // SAFETY: forwarded caller contract.
            return unsafe { crate::debug::realloc(self, p, size, 0) };
        }
        let Some(p) = self.in_arena(p) else {
            // SAFETY: p is a live raw block (caller contract); it stays with the raw allocator.
            return unsafe { self.raw_realloc(p, size) };
        };
        let pool = PoolHeader::of(p, self.pool_size);
        // SAFETY: a live pool block's pool header is live and classed.
        let block = unsafe { ((*pool).szidx as usize + 1) << self.alignment_shift };
        if size <= block && 4 * size > 3 * block {
            return p;
        }
        let new = self.alloc_plain(size);
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least min(size, block) long.
            unsafe {
                core::ptr::copy_nonoverlapping(p, new, size.min(block));
                self.free_plain(p);
            }
        }
        new
    }

    /// Resizes `p`, a block from [`alloc_aligned`](Self::alloc_aligned) with alignment
    /// `align`, keeping that alignment ([`realloc`](Self::realloc) keeps only the granularity).
    /// An alignment within the granularity is a plain `realloc`; a larger one (a raw block)
    /// always moves: a new aligned block, a copy of the smaller size, a free (libc's `realloc`
    /// keeps no alignment). Null `p` behaves as `alloc_aligned`. On failure returns null and
    /// leaves `p` untouched.
    ///
    /// ```
    /// use pymalloc::{Config, Heap};
    /// let mut heap = Heap::new(Config::CPYTHON_3_10);
    /// let p = heap.alloc_aligned(100, 4096);
    /// // SAFETY: p is a live block of this heap with alignment 4096, resized once.
    /// let q = unsafe { heap.realloc_aligned(p, 10_000, 4096) };
    /// assert_eq!(q as usize % 4096, 0);
    /// // SAFETY: q is live and freed once.
    /// unsafe { heap.free(q) };
    /// ```
    ///
    /// # Safety
    /// `p` is null or a live block of this heap allocated with alignment `align` (a power of
    /// two).
    pub unsafe fn realloc_aligned(&mut self, p: *mut u8, size: usize, align: usize) -> *mut u8 {
        if align <= 1 << self.alignment_shift {
            // SAFETY: forwarded caller contract.
            return unsafe { self.realloc(p, size) };
        }
        if p.is_null() {
            return self.alloc_aligned(size, align);
        }
        if self.debug {
            // SAFETY: forwarded caller contract.
            return unsafe { crate::debug::realloc(self, p, size, align) };
        }
        let old = if self.map.contains(p as usize) {
            let pool = PoolHeader::of(p, self.pool_size);
            // SAFETY: a live pool block's pool header is live and classed.
            unsafe { ((*pool).szidx as usize + 1) << self.alignment_shift }
        } else {
            // SAFETY: a live raw block (caller contract).
            unsafe { libc::malloc_usable_size(p.cast()) }
        };
        let new = self.raw_alloc_aligned(size, align);
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least min(size, old) long.
            unsafe {
                core::ptr::copy_nonoverlapping(p, new, size.min(old));
                self.free_plain(p);
            }
        }
        new
    }

    /// Whether `p` points inside one of this heap's arenas.
    pub fn owns(&self, p: *const u8) -> bool {
        self.map.contains(p.addr())
    }

    /// The size of the pool block `p` lies in (its usable size), or `None` when `p` is not
    /// inside a carved pool of a size class of one of this heap's arenas. `p` must be a live
    /// block for the answer to mean anything; it is only compared and its pool header read,
    /// never dereferenced itself.
    pub fn block_size(&self, p: *const u8) -> Option<usize> {
        let pool = self.carved_pool(self.in_arena(p)?.addr() & !(self.pool_size - 1))?;
        // SAFETY: a carved pool of a live arena of this heap: its header is mapped and was
        // initialised when the pool was carved (a pool beyond the carved ones is not read).
        let szidx = unsafe { (*pool).szidx };
        (szidx != NO_CLASS).then(|| (szidx as usize + 1) << self.alignment_shift)
    }

    // ---------------------------------------------------------------- raw allocator

    #[inline(never)]
    pub(crate) fn raw_alloc(&mut self, size: usize) -> *mut u8 {
        // CPython: PyMem_RawMalloc(0) becomes malloc(1).
        // SAFETY: plain libc malloc.
        let p = unsafe { libc::malloc(size.max(1)) }.cast::<u8>();
        self.raw_count_new(p, size);
        p
    }

    pub(crate) fn raw_alloc_aligned(&mut self, size: usize, align: usize) -> *mut u8 {
        let mut p = core::ptr::null_mut();
        let align = align.max(core::mem::size_of::<usize>());
        // SAFETY: align is a power of two multiple of the pointer size; p is a valid out-pointer.
        let rc = unsafe { libc::posix_memalign(&mut p, align, size.max(1)) };
        let p = if rc == 0 { p.cast::<u8>() } else { core::ptr::null_mut() };
        self.raw_count_new(p, size);
        p
    }

    fn raw_count_new(&mut self, p: *mut u8, size: usize) {
        if !p.is_null() {
            os::raw_made(p, size);
            self.raw_total += 1;
            self.raw_blocks += 1;
            // SAFETY: p is a live block just returned by libc.
            self.raw_bytes += unsafe { os::raw_usable_size(p) };
        }
    }

    /// Frees a raw block. The gauges saturate at zero rather than underflow: a debug-mode free
    /// can pass a valid libc block of *another* heap, and no free may panic under the global
    /// allocator's lock.
    ///
    /// # Safety
    /// `p` is a live block from the raw allocator.
    #[inline(never)]
    pub(crate) unsafe fn raw_free(&mut self, p: *mut u8) {
        // SAFETY: caller contract: a live libc block.
        let usable = unsafe { os::raw_usable_size(p) };
        self.raw_blocks = self.raw_blocks.saturating_sub(1);
        self.raw_bytes = self.raw_bytes.saturating_sub(usable);
        os::raw_gone(p);
        // SAFETY: caller contract: a live libc block.
        unsafe { libc::free(p.cast()) };
    }

    /// # Safety
    /// `p` is a live block from the raw allocator.
    unsafe fn raw_realloc(&mut self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: caller contract: a live libc block.
        let Some((new, old, now)) = (unsafe { os::raw_realloc(p, size) }) else {
            return core::ptr::null_mut();
        };
        self.raw_bytes = self.raw_bytes.saturating_sub(old).saturating_add(now);
        new
    }

    // ---------------------------------------------------------------- inspection

    /// Live arenas: (descriptor index, descriptor).
    fn live_arenas(&self) -> impl Iterator<Item = (u32, &crate::arena::ArenaObject)> {
        self.arenas
            .objs
            .as_slice()
            .iter()
            .enumerate()
            .filter(|(_, a)| a.address != 0)
            .map(|(i, a)| (i as u32, a))
    }

    /// Carved pools of an arena.
    fn carved_pools(&self, a: &crate::arena::ArenaObject) -> impl Iterator<Item = *mut PoolHeader> {
        let first = a.first_pool(self.pool_size);
        (first..a.pool_address).step_by(self.pool_size).map(move |p| a.ptr(p).cast())
    }

    /// The statistics of `sys._debugmallocstats()`. Walks every carved pool; never allocates.
    pub fn stats(&self) -> Stats {
        let c = &self.config;
        let mut s = Stats::empty(c);
        s.arenas_allocated_total = self.arenas_total;
        s.arenas_reclaimed = self.arenas_total - self.arenas_current as u64;
        s.arenas_current = self.arenas_current;
        s.arenas_highwater = self.arenas_highwater;
        s.raw_allocations_total = self.raw_total;
        s.raw_blocks_current = self.raw_blocks;
        s.raw_bytes_current = self.raw_bytes;
        s.arena_map_bytes = self.map.bytes();
        let overhead = c.pool_overhead();
        for (_, a) in self.live_arenas() {
            if a.ntotalpools as usize != c.pools_per_arena() {
                s.bytes_lost_to_arena_alignment += self.pool_size;
            }
            let carved = (a.pool_address - a.first_pool(self.pool_size)) / self.pool_size;
            s.pools_never_carved += a.ntotalpools as usize - carved;
            for pool in self.carved_pools(a) {
                // SAFETY: carved pools of live arenas have initialised headers.
                let (count, szidx) = unsafe { ((*pool).count as usize, (*pool).szidx) };
                if count == 0 {
                    s.pools_empty += 1;
                    continue;
                }
                let class = SizeClass(szidx as u8);
                let block = c.block_size(class);
                let per_pool = c.blocks_per_pool(class);
                let cs = &mut s.classes[class.index()];
                cs.pools += 1;
                cs.blocks_in_use += count;
                cs.blocks_available += per_pool - count;
                if count == per_pool {
                    s.pools_full += 1;
                } else {
                    s.pools_used += 1;
                }
                s.bytes_in_allocated_blocks += count * block;
                s.bytes_in_available_blocks += (per_pool - count) * block;
                s.bytes_lost_to_pool_headers += overhead;
                s.bytes_lost_to_quantization += self.pool_size - overhead - per_pool * block;
            }
        }
        s.bytes_in_unused_pools = (s.pools_empty + s.pools_never_carved) * self.pool_size;
        s
    }

    /// Every live arena and the state of each of its pool slots, lowest address first.
    pub fn snapshot(&self) -> Snapshot {
        let mut arenas = Vec::with_capacity(self.arenas_current);
        for _ in 0..self.arenas_current {
            arenas.push(ArenaSnapshot {
                address: 0,
                pools: Vec::with_capacity(self.config.pools_per_arena()),
            });
        }
        let used = self.fill_snapshot(&mut arenas).unwrap_or(0);
        arenas.truncate(used);
        arenas.sort_unstable_by_key(|a| a.address);
        Snapshot { pools_per_arena: self.config.pools_per_arena(), arenas }
    }

    /// Writes the occupancy of live arenas into `out` without allocating: `out` must hold at
    /// least `arenas_current` entries, each with room for `pools_per_arena` pools. Returns how
    /// many entries were filled, or `None` when `out` is too short.
    pub(crate) fn fill_snapshot(&self, out: &mut [ArenaSnapshot]) -> Option<usize> {
        let c = &self.config;
        let mut k = 0;
        for (_, a) in self.live_arenas() {
            let slot = out.get_mut(k)?;
            slot.address = a.address;
            slot.pools.clear();
            let first = a.first_pool(self.pool_size);
            for j in 0..a.ntotalpools as usize {
                let addr = first + j * self.pool_size;
                let snap = if addr >= a.pool_address {
                    PoolSnapshot {
                        state: PoolState::NeverCarved,
                        size_class: None,
                        blocks_in_use: 0,
                        blocks_per_pool: 0,
                    }
                } else {
                    let pool = a.ptr(addr).cast::<PoolHeader>();
                    // SAFETY: carved pools of live arenas have initialised headers.
                    let (count, szidx) = unsafe { ((*pool).count as usize, (*pool).szidx) };
                    let class = (szidx != NO_CLASS).then_some(SizeClass(szidx as u8));
                    let per_pool = class.map_or(0, |cl| c.blocks_per_pool(cl));
                    let state = if count == 0 {
                        PoolState::Empty
                    } else if count == per_pool {
                        PoolState::Full
                    } else {
                        PoolState::Used
                    };
                    PoolSnapshot {
                        state,
                        size_class: class,
                        blocks_in_use: count,
                        blocks_per_pool: per_pool,
                    }
                };
                if slot.pools.len() == slot.pools.capacity() {
                    return None;
                }
                slot.pools.push(snap);
            }
            k += 1;
        }
        Some(k)
    }

    /// Arenas mapped now (cheap).
    pub fn arenas_current(&self) -> usize {
        self.arenas_current
    }

    pub(crate) fn usedpools(&self) -> &[PoolList; MAX_CLASSES] {
        &self.usedpools
    }

    pub(crate) fn counters(&self) -> (u64, usize, usize) {
        (self.arenas_total, self.arenas_current, self.arenas_highwater)
    }
}

impl<S: ArenaSource> crate::debug::Backend for Heap<S> {
    fn config(&self) -> &Config {
        &self.config
    }
    fn alloc_plain(&mut self, size: usize) -> *mut u8 {
        Heap::alloc_plain(self, size)
    }
    fn raw_alloc(&mut self, size: usize) -> *mut u8 {
        Heap::raw_alloc(self, size)
    }
    fn raw_alloc_aligned(&mut self, size: usize, align: usize) -> *mut u8 {
        Heap::raw_alloc_aligned(self, size, align)
    }
    unsafe fn free_plain(&mut self, p: *mut u8) {
        // SAFETY: forwarded contract: a live block start of this heap.
        unsafe { Heap::free_plain(self, p) }
    }
    fn owns(&self, p: *const u8) -> bool {
        Heap::owns(self, p)
    }
    fn carved_pool(&self, addr: usize) -> Option<*mut PoolHeader> {
        Heap::carved_pool(self, addr)
    }
    fn in_arena(&self, p: *const u8) -> Option<*mut u8> {
        Heap::in_arena(self, p)
    }
    fn was_released(&self, p: usize) -> bool {
        Heap::was_released(self, p)
    }
    fn debug_state(&self) -> &DebugState {
        &self.dbg
    }
    fn debug_state_mut(&mut self) -> &mut DebugState {
        &mut self.dbg
    }
}

impl<S: ArenaSource> Drop for Heap<S> {
    /// Unmaps every arena. Raw blocks still live stay with libc (their owners free them).
    fn drop(&mut self) {
        let size = self.config.arena_size();
        for i in 0..self.arenas.objs.len() {
            if let Some(p) = NonNull::new(self.arenas.objs.as_slice()[i].base) {
                // SAFETY: the heap is being dropped, so no block it handed out may be used
                // again; each live arena is one whole mapping from the source.
                unsafe { self.source.unmap(p, size) };
            }
        }
    }
}

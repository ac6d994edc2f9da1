//! Pools: one size class's worth of equal blocks, with a 48-byte header at the pool's start.
//!
//! ```text
//!  pool (16 KiB, 3.10 layout), class 1 (32-byte blocks): 510 blocks, 16 bytes of tail waste
//!  +--------+-------+-------+-------+-----+-------+-------+--------------+----+
//!  | header | blk 0 | blk 1 | blk 2 | ... | blk k | (never carved: untouched) | tail |
//!  +--------+-------+-------+-------+-----+-------+-------+--------------+----+
//!  0        48      80     112           ^ nextoffset               ^ maxnextoffset
//! ```
//!
//! A free block's first word links to the next free block (no per-block header). Blocks are
//! carved lazily: `nextoffset` is the first never-used block, so the pages of a fresh pool are
//! only touched as its blocks are first handed out.

use crate::config::SizeClass;

/// `szidx` of a pool carved from its arena but never given a class.
pub(crate) const NO_CLASS: u32 = 0xffff;

/// The header at the start of every carved pool (48 bytes on 64-bit, as in CPython).
///
/// Invariants (checked by `Heap::check_invariants`):
/// - `count + len(freeblock list) + never-carved blocks == blocks per pool` of class `szidx`;
/// - the pool is on `usedpools[szidx]` iff `0 < count < blocks per pool`, on no list iff full,
///   on its arena's `freepools` iff `count == 0`;
/// - a pool on `usedpools` has a non-null `freeblock`.
#[repr(C)]
pub(crate) struct PoolHeader {
    /// Blocks handed out and not yet freed.
    pub(crate) count: u32,
    /// Size class index, or [`NO_CLASS`].
    pub(crate) szidx: u32,
    /// Head of the free-block list (through each free block's first word); null when none.
    pub(crate) freeblock: *mut u8,
    /// Next pool: in `usedpools[szidx]`, or in the arena's `freepools` when empty.
    pub(crate) nextpool: *mut PoolHeader,
    /// Previous pool in `usedpools[szidx]` (null at the head; unused when empty).
    pub(crate) prevpool: *mut PoolHeader,
    /// Index of the owning arena's descriptor.
    pub(crate) arenaindex: u32,
    /// Byte offset of the first never-carved block.
    pub(crate) nextoffset: u32,
    /// The largest valid `nextoffset`: pool size − block size.
    pub(crate) maxnextoffset: u32,
    _pad: u32,
}

const _: () = assert!(core::mem::size_of::<PoolHeader>() == crate::config::POOL_HEADER_BYTES);

impl PoolHeader {
    /// The header of the pool containing `p`, with `p`'s provenance: the heap passes pointers
    /// derived from the arena's base, so the header pointer may read and write the whole pool.
    #[inline(always)]
    pub(crate) fn of(p: *mut u8, pool_size: usize) -> *mut PoolHeader {
        p.map_addr(|a| a & !(pool_size - 1)).cast()
    }

    /// Writes the header of a pool freshly carved from its arena.
    ///
    /// # Safety
    /// `pool` points at the start of a pool-sized, writable, otherwise unused region.
    pub(crate) unsafe fn carve(pool: *mut PoolHeader, arenaindex: u32) {
        // SAFETY: the caller gives a writable pool-sized region; the header fits at its start.
        unsafe {
            pool.write(PoolHeader {
                count: 0,
                szidx: NO_CLASS,
                freeblock: core::ptr::null_mut(),
                nextpool: core::ptr::null_mut(),
                prevpool: core::ptr::null_mut(),
                arenaindex,
                nextoffset: 0,
                maxnextoffset: 0,
                _pad: 0,
            })
        }
    }

    /// Gives an empty pool the class `class` and hands out its first block, carving the second
    /// as the one-element free list (CPython's pool initialisation).
    ///
    /// # Safety
    /// `pool` is a carved pool with `count == 1` already set by the caller and no live blocks;
    /// two blocks of `block` bytes fit after `overhead` (guaranteed by config validation).
    pub(crate) unsafe fn init_class(
        pool: *mut PoolHeader,
        class: SizeClass,
        block: usize,
        overhead: usize,
        pool_size: usize,
    ) -> *mut u8 {
        let base = pool.cast::<u8>();
        // SAFETY: header and the first two blocks lie inside the pool (config validation).
        unsafe {
            (*pool).szidx = class.0 as u32;
            (*pool).nextoffset = (overhead + 2 * block) as u32;
            (*pool).maxnextoffset = (pool_size - block) as u32;
            let second = base.add(overhead + block);
            second.cast::<*mut u8>().write(core::ptr::null_mut());
            (*pool).freeblock = second;
            base.add(overhead)
        }
    }

    /// The free list ran dry: carve the next never-used block if any is left.
    /// Returns `false` when the pool is now full.
    ///
    /// # Safety
    /// `pool` is a live pool of block size `block` whose free list is empty.
    #[inline]
    pub(crate) unsafe fn extend(pool: *mut PoolHeader, block: usize) -> bool {
        // SAFETY: nextoffset <= maxnextoffset means a whole block is left inside the pool.
        unsafe {
            if (*pool).nextoffset <= (*pool).maxnextoffset {
                let bp = pool.cast::<u8>().add((*pool).nextoffset as usize);
                (*pool).nextoffset += block as u32;
                bp.cast::<*mut u8>().write(core::ptr::null_mut());
                (*pool).freeblock = bp;
                true
            } else {
                false
            }
        }
    }

    /// Never-carved blocks left in the pool.
    ///
    /// # Safety
    /// `pool` is a live pool with a class of block size `block`.
    pub(crate) unsafe fn virgin_blocks(pool: *const PoolHeader, block: usize) -> usize {
        // SAFETY: reading two header fields of a live pool.
        let (next, max) = unsafe { ((*pool).nextoffset as usize, (*pool).maxnextoffset as usize) };
        if next <= max { (max - next) / block + 1 } else { 0 }
    }
}

/// A doubly-linked list of pools through `nextpool`/`prevpool`, null-terminated: one per size
/// class (`usedpools`). CPython keeps fake headers so the list is circular; a null-terminated
/// list with a head pointer is the same structure without the trick.
#[derive(Clone, Copy)]
pub(crate) struct PoolList {
    pub(crate) head: *mut PoolHeader,
}

impl PoolList {
    pub(crate) const EMPTY: PoolList = PoolList { head: core::ptr::null_mut() };

    /// Links `pool` at the front.
    ///
    /// # Safety
    /// `pool` is a live pool on no list; every pool on this list is live.
    #[inline]
    pub(crate) unsafe fn push_front(&mut self, pool: *mut PoolHeader) {
        // SAFETY: all pools touched are live (caller), so their headers are writable.
        unsafe {
            (*pool).prevpool = core::ptr::null_mut();
            (*pool).nextpool = self.head;
            if !self.head.is_null() {
                (*self.head).prevpool = pool;
            }
        }
        self.head = pool;
    }

    /// Unlinks `pool` from wherever it is in the list.
    ///
    /// # Safety
    /// `pool` is on this list; every pool on it is live.
    #[inline]
    pub(crate) unsafe fn unlink(&mut self, pool: *mut PoolHeader) {
        // SAFETY: pool and its neighbours are live members of this list.
        unsafe {
            let (prev, next) = ((*pool).prevpool, (*pool).nextpool);
            if prev.is_null() {
                self.head = next;
            } else {
                (*prev).nextpool = next;
            }
            if !next.is_null() {
                (*next).prevpool = prev;
            }
        }
    }
}

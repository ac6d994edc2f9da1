//! Debug mode, like `PYTHONMALLOC=debug`: poisoned bytes, guard bytes and checked frees.
//!
//! As in CPython, each pool block carries [`Config::debug_overhead`] bytes more than asked
//! for: a 16-byte header in front of the caller's bytes and a trailer after them. CPython 3.8
//! and later add 3 words (24 bytes: an 8-byte trailer of guard bytes), 3.7 and earlier 4
//! words (32 bytes: the trailer also holds a serial number, here an unwritten padding word).
//! So a request of `n` bytes uses the size class of `n + 24` or `n + 32`: a 24-byte float
//! takes the 48-byte class on the 3.8+ presets, as it does under `PYTHONMALLOC=pymalloc_debug`
//! on CPython 3.8 and 3.11, and the 56-byte class on the 8-byte classes of the 3.7 preset (the
//! 64-byte class on a 3.7 with 16-byte classes).
//!
//! ```text
//!  block start                user
//!  +----------+----------+--------------------+-----------+----------+
//!  | size u64 |  tag u64 |  n bytes           | FD x 8    | pad u64  |
//!  |          |          |  fresh: CD         | (guard)   | (32-byte |
//!  |          |          |  freed: DD         |           | overhead |
//!  |          |          |                    |           |  only)   |
//!  +----------+----------+--------------------+-----------+----------+
//! ```
//!
//! `tag` holds a magic number saying live or freed, and the distance from the block's start to
//! the caller's bytes. On free the tag is checked first (freed: a double free; neither: a
//! pointer this heap never gave out, or an underrun that overwrote the tag), then the guard (an
//! overrun). A freed pool block's first word becomes its free-list link, which is why the size
//! comes first and the tag second: the tag survives the free. Raw (libc) blocks put the header
//! 48 bytes in (or at the requested alignment), past the words glibc writes into a freed chunk.
//!
//! ## What a free trusts
//!
//! Nothing in front of a block is believed before it is checked, because an underrun (a write
//! before the caller's bytes) can overwrite any of it:
//!
//! * **Is it ours?** From the heap's own records only, never from the bytes at the pointer: a
//!   pointer inside an arena must be a block boundary of a carved, classed pool, and below its
//!   pool's carving mark; any other pointer must be in the table of live raw blocks that debug
//!   mode keeps (in mapped memory, never through the global allocator). So a pointer into
//!   foreign memory, readable or not (a `PROT_NONE` mapping, a forged header), is
//!   [`HeapError::NotAllocated`] without one byte of it being read.
//! * **Is it live?** A pool block on its pool's free list is a double free (the list is walked,
//!   at most one link per block of the pool, each link checked before it is followed: debug
//!   mode pays for certainty, as CPython's debug hooks do). A raw block freed
//!   recently is remembered (address and size) in a ring of the last [`FREED_RING`] raw frees,
//!   which is how a raw double free is reported with its size: no freed libc memory is read
//!   (glibc may have reused, coalesced or unmapped the chunk). An older raw double free is
//!   reported as `NotAllocated`.
//! * **Is the header intact?** The tag must be exactly the live magic with the distance this
//!   kind of block has (16 for pool blocks; the recorded one for raw blocks), like CPython's
//!   debug hooks checking their pad bytes; the size must fit the block (pool: the class the
//!   request, or a realloc kept in place, can have; raw: the recorded size). Anything else is
//!   [`HeapError::HeaderCorrupted`] and the block is left alone: no guard is read at a wild
//!   offset, no pointer into the middle of a block reaches a free list.
//!
//! Debug mode drives the heap through the [`Backend`] trait, so this module never names the
//! heap type: the heap depends on debug mode, not the other way round.

use crate::config::{Config, SizeClass};
use crate::os::OsVec;
use crate::pool::PoolHeader;

/// CPython's `PYMEM_CLEANBYTE`: fresh bytes.
pub const CLEAN_BYTE: u8 = 0xCD;
/// CPython's `PYMEM_DEADBYTE`: freed bytes.
pub const DEAD_BYTE: u8 = 0xDD;
/// CPython's `PYMEM_FORBIDDENBYTE`: guard bytes after a block.
pub const FORBIDDEN_BYTE: u8 = 0xFD;

/// Header in front of the caller's bytes in a pool block.
const FRONT: usize = 16;
/// Guard bytes right after the caller's bytes: the whole trailer with a 24-byte overhead,
/// followed by a padding word with a 32-byte one.
const GUARD: usize = 8;

/// The trailer after the caller's bytes: the config's debug overhead less the header (8 or 16
/// bytes, of which the first [`GUARD`] are guard bytes).
const fn trailer(c: &Config) -> usize {
    c.debug_overhead() - FRONT
}
/// Header distance for raw blocks: glibc's free writes up to four words (fd, bk, fd_nextsize,
/// bk_nextsize) into a freed chunk, so the header sits past them to survive a free.
const RAW_FRONT: usize = 48;
const LIVE: u64 = 0xA110_C8ED_0000_0000;
const FREED: u64 = 0xDEAD_F8EE_0000_0000;

/// What a checked free found wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeapError {
    /// The block was already freed.
    #[error("double free of the {size}-byte block at {address:#x}")]
    DoubleFree {
        /// The pointer passed to free.
        address: usize,
        /// The size it was allocated with (for pool blocks, the most the block could hold).
        size: usize,
    },
    /// The block's arena was already returned to the OS: its last block was freed before.
    #[error("double free of {address:#x}: its arena was already returned to the OS")]
    FreeInReleasedArena {
        /// The pointer passed to free.
        address: usize,
    },
    /// A guard byte after the block was overwritten.
    #[error("write past the end of the {size}-byte block at {address:#x}")]
    Overrun {
        /// The pointer passed to free.
        address: usize,
        /// The size it was allocated with.
        size: usize,
    },
    /// The pointer was never given out by this heap.
    #[error("free of {address:#x}, which this heap never allocated")]
    NotAllocated {
        /// The pointer passed to free.
        address: usize,
    },
    /// The block is live but the header in front of it was overwritten (a write before the
    /// start of the block: an underrun). The block is left allocated.
    #[error("write before the start of the block at {address:#x}: its header is corrupted")]
    HeaderCorrupted {
        /// The pointer passed to free.
        address: usize,
    },
}

/// What debug mode needs from the heap under it. The heap implements it; this module never
/// names the heap type.
pub(crate) trait Backend {
    /// The layout.
    fn config(&self) -> &Config;
    /// A pool or raw block of `size` bytes, without debug header.
    fn alloc_plain(&mut self, size: usize) -> *mut u8;
    /// A raw (libc) block of `size` bytes.
    fn raw_alloc(&mut self, size: usize) -> *mut u8;
    /// A raw block of `size` bytes aligned to `align`.
    fn raw_alloc_aligned(&mut self, size: usize, align: usize) -> *mut u8;
    /// Frees a block start.
    ///
    /// # Safety
    /// `p` is the start of a live pool block or raw block of this heap.
    unsafe fn free_plain(&mut self, p: *mut u8);
    /// Whether `p` lies in a live arena.
    fn owns(&self, p: *const u8) -> bool;
    /// The header of the carved pool starting at `addr`, with its arena's provenance; `None`
    /// when `addr` is not the start of a carved pool of a live arena. Reads no pool memory.
    fn carved_pool(&self, addr: usize) -> Option<*mut PoolHeader>;
    /// `p` re-derived from its arena's base pointer (the arena's provenance), when `p` lies in
    /// a live arena.
    fn in_arena(&self, p: *const u8) -> Option<*mut u8>;
    /// Whether `p` lies in an arena recently returned to the OS.
    fn was_released(&self, p: usize) -> bool;
    /// Debug mode's own records.
    fn debug_state(&self) -> &DebugState;
    /// Debug mode's own records, to update.
    fn debug_state_mut(&mut self) -> &mut DebugState;
}

/// How many recent raw frees are remembered for double-free reports.
pub const FREED_RING: usize = 256;

/// Debug mode's records of raw blocks: the live ones (a hash table keyed by the caller's
/// pointer) and the last [`FREED_RING`] freed ones. Kept in mapped memory ([`OsVec`]) so that
/// debug mode never allocates through the global allocator it may be serving.
pub(crate) struct DebugState {
    live: RawTable,
    freed: [RawEntry; FREED_RING],
    freed_next: usize,
}

impl DebugState {
    pub(crate) const fn new() -> Self {
        DebugState { live: RawTable::new(), freed: [RawEntry::EMPTY; FREED_RING], freed_next: 0 }
    }

    /// Live raw blocks recorded.
    pub(crate) fn raw_live(&self) -> usize {
        self.live.len
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct RawEntry {
    /// The caller's pointer; [`EMPTY_KEY`] or [`TOMBSTONE`] for no block.
    key: usize,
    size: usize,
    front: usize,
}

const EMPTY_KEY: usize = 0;
const TOMBSTONE: usize = 1;

impl RawEntry {
    const EMPTY: RawEntry = RawEntry { key: EMPTY_KEY, size: 0, front: 0 };
}

/// An open-addressing hash table (linear probing, tombstones) of live raw blocks.
/// Invariant: `slots.len()` is 0 or a power of two; `len + tombstones < slots.len()`.
struct RawTable {
    slots: OsVec<RawEntry>,
    len: usize,
    tombstones: usize,
}

impl RawTable {
    const fn new() -> Self {
        RawTable { slots: OsVec::new(), len: 0, tombstones: 0 }
    }

    fn home(key: usize, mask: usize) -> usize {
        ((key >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) & mask
    }

    fn find(&self, key: usize) -> Option<RawEntry> {
        let slots = self.slots.as_slice();
        if slots.is_empty() {
            return None;
        }
        let mask = slots.len() - 1;
        let mut i = Self::home(key, mask);
        loop {
            let e = slots[i];
            if e.key == key {
                return Some(e);
            }
            if e.key == EMPTY_KEY {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// Records a block; `false` when the table could not grow (the OS refused memory).
    fn insert(&mut self, e: RawEntry) -> bool {
        let cap = self.slots.len();
        if 4 * (self.len + self.tombstones + 1) > 3 * cap && !self.grow() {
            return false;
        }
        let slots = self.slots.as_mut_slice();
        let mask = slots.len() - 1;
        let mut i = Self::home(e.key, mask);
        while slots[i].key > TOMBSTONE {
            i = (i + 1) & mask;
        }
        if slots[i].key == TOMBSTONE {
            self.tombstones -= 1;
        }
        slots[i] = e;
        self.len += 1;
        true
    }

    fn remove(&mut self, key: usize) {
        let slots = self.slots.as_mut_slice();
        if slots.is_empty() {
            return;
        }
        let mask = slots.len() - 1;
        let mut i = Self::home(key, mask);
        loop {
            if slots[i].key == key {
                slots[i] = RawEntry { key: TOMBSTONE, size: 0, front: 0 };
                self.len -= 1;
                self.tombstones += 1;
                return;
            }
            if slots[i].key == EMPTY_KEY {
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Rebuilds the table at twice the live count (at least 64 slots), dropping tombstones.
    fn grow(&mut self) -> bool {
        let cap = (4 * (self.len + 1)).next_power_of_two().max(64);
        let mut slots = OsVec::new();
        for _ in 0..cap {
            if !slots.push(RawEntry::EMPTY) {
                return false;
            }
        }
        let old = core::mem::replace(&mut self.slots, slots);
        self.len = 0;
        self.tombstones = 0;
        for &e in old.as_slice() {
            if e.key > TOMBSTONE {
                // Cannot fail: the new table has room for every live entry.
                let _ = self.insert(e);
            }
        }
        true
    }
}

/// Allocates `size` bytes with debug header and trailer; `align` 0 means the granularity.
pub(crate) fn alloc<H: Backend>(heap: &mut H, size: usize, align: usize) -> *mut u8 {
    let trailer = trailer(heap.config());
    let room = heap.config().small_request_threshold().saturating_sub(FRONT + trailer);
    let small = align == 0 && size <= room;
    let front = if small { FRONT } else { RAW_FRONT.next_multiple_of(align.max(16)) };
    let Some(total) = size.checked_add(front + trailer) else { return core::ptr::null_mut() };
    let base = if small {
        heap.alloc_plain(total)
    } else if align == 0 {
        heap.raw_alloc(total)
    } else {
        heap.raw_alloc_aligned(total, align)
    };
    if base.is_null() {
        return base;
    }
    // SAFETY: base is a fresh block of `total` bytes: header, user bytes and trailer fit.
    let user = unsafe { base.add(front) };
    if !small && !heap.debug_state_mut().live.insert(RawEntry { key: user as usize, size, front }) {
        // SAFETY: base is the raw block just allocated, unused.
        unsafe { heap.free_plain(base) };
        return core::ptr::null_mut();
    }
    // SAFETY: as above.
    unsafe {
        stamp(user, size, front);
        user.write_bytes(CLEAN_BYTE, size);
    }
    user
}

/// Writes the header and guard of a live block with `size` user bytes.
///
/// # Safety
/// `user - 16 .. user + size + GUARD` is writable memory of one block.
unsafe fn stamp(user: *mut u8, size: usize, front: usize) {
    // SAFETY: caller contract.
    unsafe {
        user.sub(16).cast::<u64>().write_unaligned(size as u64);
        user.sub(8).cast::<u64>().write_unaligned(LIVE | front as u64);
        user.add(size).write_bytes(FORBIDDEN_BYTE, GUARD);
    }
}

/// A live block's user size and front distance, once validated.
struct LiveBlock {
    size: usize,
    front: usize,
    /// For pool blocks, the block size; 0 for raw blocks.
    block: usize,
}

/// Where a pointer inside an arena stands, decided from the pool header and free list only.
enum PoolSlot {
    /// Not the user pointer of any block this pool can hold.
    Foreign,
    /// A block on the pool's free list, of this block size.
    Free(usize),
    /// An allocated block of this size.
    Allocated(usize),
}

/// Classifies `address` (a would-be user pointer inside a live arena) from the heap's records.
fn pool_slot<H: Backend>(heap: &H, address: usize) -> PoolSlot {
    let c = heap.config();
    let Some(block_start) = address.checked_sub(FRONT) else { return PoolSlot::Foreign };
    let Some(pool) = heap.carved_pool(block_start & !(c.pool_size() - 1)) else {
        return PoolSlot::Foreign;
    };
    // SAFETY: a carved pool of a live arena has an initialised header.
    let (szidx, nextoffset, head) =
        unsafe { ((*pool).szidx as usize, (*pool).nextoffset as usize, (*pool).freeblock) };
    if szidx >= c.num_classes() {
        return PoolSlot::Foreign;
    }
    let class = SizeClass(szidx as u8);
    let block = c.block_size(class);
    let per = c.blocks_per_pool(class);
    let off = block_start.wrapping_sub(pool.addr() + c.pool_overhead());
    if !off.is_multiple_of(block) || off / block >= per {
        return PoolSlot::Foreign;
    }
    if block_start - pool.addr() >= nextoffset {
        return PoolSlot::Foreign; // never carved, so never handed out
    }
    // The free list, bounded and checked link by link (a use after free can corrupt it).
    let first = pool.addr() + c.pool_overhead();
    let mut f = head.addr();
    for _ in 0..per {
        if f == 0 {
            break;
        }
        if f == block_start {
            return PoolSlot::Free(block);
        }
        if f < first || f >= pool.addr() + nextoffset || !(f - first).is_multiple_of(block) {
            break;
        }
        // SAFETY: f is a carved block boundary of this pool (checked above): its first word is
        // readable, and the pointer carries the pool's (the arena's) provenance.
        f = unsafe { *pool.cast::<u8>().with_addr(f).cast::<usize>() };
    }
    PoolSlot::Allocated(block)
}

/// Everything a free checks, without freeing. Reads only memory the heap's records show is
/// one of its live blocks (the 16-byte header and the guard bytes).
///
/// # Safety
/// None beyond the heap's own consistency: `p` may be any value.
unsafe fn validate<H: Backend>(heap: &H, p: *mut u8) -> Result<LiveBlock, HeapError> {
    let address = p as usize;
    let not_ours = HeapError::NotAllocated { address };
    let corrupted = HeapError::HeaderCorrupted { address };
    if address < RAW_FRONT {
        return Err(not_ours);
    }
    let (expect_front, block, recorded) = if heap.owns(p.wrapping_sub(FRONT)) || heap.owns(p) {
        match pool_slot(heap, address) {
            PoolSlot::Foreign => return Err(not_ours),
            PoolSlot::Free(block) => {
                let size = block - heap.config().debug_overhead();
                return Err(HeapError::DoubleFree { address, size });
            }
            PoolSlot::Allocated(block) => (FRONT, block, None),
        }
    } else if let Some(e) = heap.debug_state().live.find(address) {
        (e.front, 0, Some(e.size))
    } else {
        let st = heap.debug_state();
        return Err(if let Some(e) = st.freed.iter().find(|e| e.key == address) {
            HeapError::DoubleFree { address, size: e.size }
        } else if heap.was_released(address) {
            HeapError::FreeInReleasedArena { address }
        } else {
            not_ours
        });
    };
    // SAFETY: p is the user pointer of a live block of this heap (pool geometry and free list,
    // or the raw table), so the 16 header bytes before it are inside that block.
    let (size, tag) = unsafe {
        (p.sub(16).cast::<u64>().read_unaligned() as usize, p.sub(8).cast::<u64>().read_unaligned())
    };
    if tag != LIVE | expect_front as u64 {
        return Err(corrupted);
    }
    let size_ok = match recorded {
        Some(r) => size == r,
        None => {
            // The class a request of `size` takes, or a larger one that a realloc kept in
            // place (more than 3/4 full).
            let total = size.saturating_add(heap.config().debug_overhead());
            total <= block
                && (heap.config().size_class(total).map(|c| heap.config().block_size(c))
                    == Some(block)
                    || 4 * total > 3 * block)
        }
    };
    if !size_ok {
        return Err(corrupted);
    }
    // SAFETY: the size is validated: the guard lies inside the block.
    let guard = unsafe { core::slice::from_raw_parts(p.add(size), GUARD) };
    if guard.iter().any(|&b| b != FORBIDDEN_BYTE) {
        return Err(HeapError::Overrun { address, size });
    }
    Ok(LiveBlock { size, front: expect_front, block })
}

/// Checks a free; on success frees the block and poisons it. On error nothing changes.
///
/// # Safety
/// None beyond the heap's own consistency: any `p` is checked against the heap's records
/// before anything at it is read or written.
pub(crate) unsafe fn try_free<H: Backend>(heap: &mut H, p: *mut u8) -> Result<(), HeapError> {
    // A block of an arena is read and written with the arena's provenance, not the caller's.
    let p = heap.in_arena(p).unwrap_or(p);
    // SAFETY: forwarded contract.
    let b = unsafe { validate(heap, p) }?;
    if b.block == 0 {
        let st = heap.debug_state_mut();
        st.live.remove(p as usize);
        st.freed[st.freed_next % FREED_RING] = RawEntry { key: p as usize, size: b.size, front: 0 };
        st.freed_next += 1;
    }
    // SAFETY: the block is live and ours: poison it, mark it freed, free its start.
    unsafe {
        p.write_bytes(DEAD_BYTE, b.size + GUARD);
        p.sub(8).cast::<u64>().write_unaligned(FREED | b.front as u64);
        heap.free_plain(p.sub(b.front));
    }
    Ok(())
}

/// Frees `p` or, when the free is wrong, reports it on stderr and aborts.
///
/// # Safety
/// As for [`try_free`].
pub(crate) unsafe fn free_or_abort<H: Backend>(heap: &mut H, p: *mut u8) {
    // SAFETY: forwarded contract.
    if let Err(e) = unsafe { try_free(heap, p) } {
        fatal(&e);
    }
}

/// Debug-mode realloc, following CPython: the whole block (header and trailer included) is
/// resized by pymalloc's own rule, so a pool block that still fits and stays above 3/4 of its
/// class is kept in place; otherwise a new block (aligned to `align`, 0 for the granularity),
/// a copy, a checked free.
///
/// # Safety
/// As for [`try_free`].
pub(crate) unsafe fn realloc<H: Backend>(
    heap: &mut H,
    p: *mut u8,
    size: usize,
    align: usize,
) -> *mut u8 {
    // As in `try_free`: the arena's provenance, not the caller's.
    let p = heap.in_arena(p).unwrap_or(p);
    // SAFETY: forwarded contract.
    let old = match unsafe { validate(heap, p) } {
        Ok(b) => b,
        Err(e) => fatal(&e),
    };
    if old.block != 0
        && align == 0
        && let Some(total) = size.checked_add(heap.config().debug_overhead())
        && total <= old.block
        && 4 * total > 3 * old.block
    {
        // SAFETY: the block holds `total` bytes from its start: re-stamp it in place.
        unsafe {
            if size > old.size {
                p.add(old.size).write_bytes(CLEAN_BYTE, size - old.size);
            }
            stamp(p, size, old.front);
        }
        return p;
    }
    let new = alloc(heap, size, align);
    if !new.is_null() {
        // SAFETY: both blocks are live and distinct; min(old, size) bytes fit in each.
        unsafe {
            core::ptr::copy_nonoverlapping(p, new, old.size.min(size));
            free_or_abort(heap, p);
        }
    }
    new
}

/// Writes the error to stderr without allocating, then aborts: the heap is corrupt or the
/// program has a memory bug, and going on would hide it.
fn fatal(e: &HeapError) -> ! {
    let mut buf = StackWriter { buf: [0; 256], len: 0 };
    let _ = core::fmt::write(&mut buf, format_args!("pymalloc debug: fatal error: {e}\n"));
    // SAFETY: writing an initialised stack buffer to fd 2, then aborting.
    unsafe {
        libc::write(2, buf.buf.as_ptr().cast(), buf.len);
        libc::abort()
    }
}

struct StackWriter {
    buf: [u8; 256],
    len: usize,
}

impl core::fmt::Write for StackWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

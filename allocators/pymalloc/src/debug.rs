//! Debug mode, like `PYTHONMALLOC=debug`: poisoned bytes, guard bytes and checked frees.
//!
//! As in CPython, each pool block carries 32 bytes more than asked for: a 16-byte header in
//! front of the caller's bytes and a 16-byte trailer after them, so a request of `n` bytes uses
//! the size class of `n + 32` (a 105-byte request takes the 144-byte class).
//!
//! ```text
//!  block start                user
//!  +----------+----------+--------------------+-----------+----------+
//!  | size u64 |  tag u64 |  n bytes           | FD x 8    | pad u64  |
//!  |          |          |  fresh: CD         | (guard)   |          |
//!  |          |          |  freed: DD         |           |          |
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
//! A pointer outside every arena is read only when the kernel says its header is mapped; if its
//! page was an arena already returned to the OS, the free is reported as a double free.

use crate::heap::Heap;
use crate::os::{self, ArenaSource};
use crate::pool::PoolHeader;

/// CPython's `PYMEM_CLEANBYTE`: fresh bytes.
pub const CLEAN_BYTE: u8 = 0xCD;
/// CPython's `PYMEM_DEADBYTE`: freed bytes.
pub const DEAD_BYTE: u8 = 0xDD;
/// CPython's `PYMEM_FORBIDDENBYTE`: guard bytes after a block.
pub const FORBIDDEN_BYTE: u8 = 0xFD;

/// Header in front of the caller's bytes in a pool block.
const FRONT: usize = 16;
/// Guard bytes, then a padding word, after the caller's bytes.
const GUARD: usize = 8;
const TRAILER: usize = 16;
/// Header distance for raw blocks: glibc's free writes up to four words (fd, bk, fd_nextsize,
/// bk_nextsize) into a freed chunk, so the header sits past them to survive a free.
const RAW_FRONT: usize = 48;
const LIVE: u64 = 0xA110_C8ED_0000_0000;
const FREED: u64 = 0xDEAD_F8EE_0000_0000;
const MAGIC_MASK: u64 = 0xFFFF_FFFF_0000_0000;

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
    /// The pointer was never given out by this heap (or its header was overwritten).
    #[error("free of {address:#x}, which this heap never allocated")]
    NotAllocated {
        /// The pointer passed to free.
        address: usize,
    },
}

/// Allocates `size` bytes with debug header and trailer; `align` 0 means the granularity.
pub(crate) fn alloc<S: ArenaSource>(heap: &mut Heap<S>, size: usize, align: usize) -> *mut u8 {
    let room = heap.config().small_request_threshold().saturating_sub(FRONT + TRAILER);
    let small = align == 0 && size <= room;
    let front = if small { FRONT } else { RAW_FRONT.next_multiple_of(align.max(16)) };
    let Some(total) = size.checked_add(front + TRAILER) else { return core::ptr::null_mut() };
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
    unsafe {
        let user = base.add(front);
        stamp(user, size, front);
        user.write_bytes(CLEAN_BYTE, size);
        user
    }
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
}

/// Everything a free checks, without freeing.
///
/// # Safety
/// For a pointer outside every arena, the 16 bytes before it, when mapped, may be read.
unsafe fn validate<S: ArenaSource>(heap: &Heap<S>, p: *mut u8) -> Result<LiveBlock, HeapError> {
    let address = p as usize;
    let not_ours = HeapError::NotAllocated { address };
    if address < RAW_FRONT {
        return Err(not_ours);
    }
    if heap.owns(p) {
        // Inside an arena: the block must start on a block boundary of a carved, classed pool.
        let c = heap.config();
        let block_start = address - FRONT;
        let pool_start = block_start & !(c.pool_size() - 1);
        let Some(pool) = heap.carved_pool(pool_start) else { return Err(not_ours) };
        // SAFETY: a carved pool of a live arena has an initialised header.
        let szidx = unsafe { (*pool).szidx } as usize;
        if szidx >= c.num_classes() {
            return Err(not_ours);
        }
        let class = crate::SizeClass(szidx as u8);
        let block = c.block_size(class);
        let off = block_start.wrapping_sub(pool as usize + c.pool_overhead());
        if off % block != 0 || off / block >= c.blocks_per_pool(class) {
            return Err(not_ours);
        }
    } else if !os::is_mapped(address - 16, 16) {
        return Err(if heap.was_released(address) {
            HeapError::FreeInReleasedArena { address }
        } else {
            not_ours
        });
    }
    // SAFETY: the header words before p are mapped (a validated pool block, or checked with
    // the kernel), and reading them has no side effect.
    let (size, tag) = unsafe {
        (p.sub(16).cast::<u64>().read_unaligned() as usize, p.sub(8).cast::<u64>().read_unaligned())
    };
    let front = (tag & !MAGIC_MASK) as usize;
    match tag & MAGIC_MASK {
        LIVE => {}
        FREED => {
            // The size word of a freed pool block is now a list link: give the block's room.
            let size = if heap.owns(p) {
                let pool = PoolHeader::of(p.wrapping_sub(FRONT), heap.config().pool_size());
                // SAFETY: validated above: a classed pool header inside a live arena.
                let szidx = unsafe { (*pool).szidx } as usize;
                (szidx + 1) * heap.config().alignment() - FRONT - TRAILER
            } else {
                size
            };
            return Err(HeapError::DoubleFree { address, size });
        }
        _ => return Err(not_ours),
    }
    // SAFETY: a live debug block has `size` user bytes and a guard after them.
    let guard = unsafe { core::slice::from_raw_parts(p.add(size), GUARD) };
    if guard.iter().any(|&b| b != FORBIDDEN_BYTE) {
        return Err(HeapError::Overrun { address, size });
    }
    Ok(LiveBlock { size, front })
}

/// Checks a free; on success frees the block and poisons it. On error nothing changes.
///
/// # Safety
/// For a pointer outside every arena, the 16 bytes before it, when mapped, may be read.
pub(crate) unsafe fn try_free<S: ArenaSource>(
    heap: &mut Heap<S>,
    p: *mut u8,
) -> Result<(), HeapError> {
    // A block of an arena is read and written with the arena's provenance, not the caller's.
    let p = heap.in_arena(p).unwrap_or(p);
    // SAFETY: forwarded contract.
    let b = unsafe { validate(heap, p) }?;
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
pub(crate) unsafe fn free_or_abort<S: ArenaSource>(heap: &mut Heap<S>, p: *mut u8) {
    // SAFETY: forwarded contract.
    if let Err(e) = unsafe { try_free(heap, p) } {
        fatal(&e);
    }
}

/// Debug-mode realloc, following CPython: the whole block (header and trailer included) is
/// resized by pymalloc's own rule, so a pool block that still fits and stays above 3/4 of its
/// class is kept in place; otherwise a new block, a copy, a checked free.
///
/// # Safety
/// As for [`try_free`].
pub(crate) unsafe fn realloc<S: ArenaSource>(
    heap: &mut Heap<S>,
    p: *mut u8,
    size: usize,
) -> *mut u8 {
    // As in `try_free`: the arena's provenance, not the caller's.
    let p = heap.in_arena(p).unwrap_or(p);
    // SAFETY: forwarded contract.
    let old = match unsafe { validate(heap, p) } {
        Ok(b) => b,
        Err(e) => fatal(&e),
    };
    if heap.owns(p)
        && let Some(total) = size.checked_add(FRONT + TRAILER)
    {
        let pool = PoolHeader::of(p.wrapping_sub(FRONT), heap.config().pool_size());
        // SAFETY: validated: a classed pool header inside a live arena.
        let block = (unsafe { (*pool).szidx } as usize + 1) * heap.config().alignment();
        if total <= block && 4 * total > 3 * block {
            // SAFETY: the block holds `total` bytes from its start: re-stamp it in place.
            unsafe {
                if size > old.size {
                    p.add(old.size).write_bytes(CLEAN_BYTE, size - old.size);
                }
                stamp(p, size, old.front);
            }
            return p;
        }
    }
    let new = alloc(heap, size, 0);
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

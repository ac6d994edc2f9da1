//! Debug mode, like `PYTHONMALLOC=debug`: poisoned bytes, guard bytes and checked frees.
//!
//! Each block gets a header in front of the caller's bytes and a guard after them:
//!
//! ```text
//!  base                            user = base + front
//!  +----------------+------+------+----------------------+----------+
//!  | pad (free-list | size |  tag |  n bytes, fresh: CD  | FD x 8   |
//!  |  link on free) |  u64 |  u64 |  freed: DD           | (guard)  |
//!  +----------------+------+------+----------------------+----------+
//! ```
//!
//! `tag` holds a magic number saying live or freed, and the distance `front` from the block's
//! start (32 in pools; 48, or the alignment if larger, for raw blocks). On free the tag is checked first
//! (freed: a double free; neither: a pointer this heap never gave out), then the guard (an
//! overrun). The first word is left as padding because a freed pool block's first word becomes
//! its free-list link; the tag must survive the free to recognise a double free.

use crate::heap::Heap;
use crate::os::ArenaSource;
use crate::pool::{NO_CLASS, PoolHeader};

/// CPython's `PYMEM_CLEANBYTE`: fresh bytes.
pub const CLEAN_BYTE: u8 = 0xCD;
/// CPython's `PYMEM_DEADBYTE`: freed bytes.
pub const DEAD_BYTE: u8 = 0xDD;
/// CPython's `PYMEM_FORBIDDENBYTE`: guard bytes around a block.
pub const FORBIDDEN_BYTE: u8 = 0xFD;

/// Distance from a pool block's start to the caller's bytes.
const FRONT: usize = 32;
/// The same for raw blocks: glibc's free writes up to four words (fd, bk, fd_nextsize,
/// bk_nextsize) into a freed chunk, so the header sits past them to survive a free.
const RAW_FRONT: usize = 48;
const GUARD: usize = 8;
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
        /// The size it was allocated with.
        size: usize,
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
}

pub(crate) fn alloc<S: ArenaSource>(heap: &mut Heap<S>, size: usize, align: usize) -> *mut u8 {
    let small = align == 0 && size <= heap.config().small_request_threshold() - FRONT - GUARD;
    let front = if small { FRONT } else { RAW_FRONT.max(align) };
    let Some(total) = size.checked_add(front + GUARD) else { return core::ptr::null_mut() };
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
    // SAFETY: base is a fresh block of `total` bytes: header, user bytes and guard fit.
    unsafe {
        let user = base.add(front);
        user.sub(16).cast::<u64>().write_unaligned(size as u64);
        user.sub(8).cast::<u64>().write_unaligned(LIVE | front as u64);
        user.write_bytes(CLEAN_BYTE, size);
        user.add(size).write_bytes(FORBIDDEN_BYTE, GUARD);
        user
    }
}

/// Checks a free; on success frees the block and poisons it.
///
/// # Safety
/// `p` is readable for the 32 bytes before it when it is not inside an arena (a pointer inside
/// an arena is validated against its pool first).
pub(crate) unsafe fn try_free<S: ArenaSource>(
    heap: &mut Heap<S>,
    p: *mut u8,
) -> Result<(), HeapError> {
    let address = p as usize;
    let not_ours = HeapError::NotAllocated { address };
    if address < FRONT {
        return Err(not_ours);
    }
    if heap.owns(p) {
        // Inside an arena: the block must start on a block boundary of a classed pool.
        let pool = PoolHeader::of(p.wrapping_sub(FRONT), heap.config().pool_size());
        if !heap.owns(pool.cast()) {
            return Err(not_ours);
        }
        // SAFETY: `pool` lies inside a live arena, so its header bytes are mapped (zero when
        // never carved).
        let szidx = unsafe { (*pool).szidx };
        if szidx == NO_CLASS || szidx as usize >= heap.config().num_classes() {
            return Err(not_ours);
        }
        let block = (szidx as usize + 1) * heap.config().alignment();
        let off = (address - FRONT).wrapping_sub(pool as usize + heap.config().pool_overhead());
        if off % block != 0 || off >= heap.config().pool_size() {
            return Err(not_ours);
        }
    }
    // SAFETY: the header words before p are readable (checked above for arena pointers; the
    // caller's contract for others).
    let (size, tag) = unsafe {
        (p.sub(16).cast::<u64>().read_unaligned() as usize, p.sub(8).cast::<u64>().read_unaligned())
    };
    let front = (tag & !MAGIC_MASK) as usize;
    match tag & MAGIC_MASK {
        LIVE => {}
        // The size word may be a free-list link by now: report what the pool says instead.
        FREED => return Err(HeapError::DoubleFree { address, size: freed_size(heap, p, size) }),
        _ => return Err(not_ours),
    }
    // SAFETY: a live debug block has `size` user bytes and a guard after them.
    let guard_ok = unsafe { core::slice::from_raw_parts(p.add(size), GUARD) }
        .iter()
        .all(|&b| b == FORBIDDEN_BYTE);
    if !guard_ok {
        return Err(HeapError::Overrun { address, size });
    }
    // SAFETY: the block is live and ours: poison it, mark it freed, free its base.
    unsafe {
        p.write_bytes(DEAD_BYTE, size + GUARD);
        p.sub(8).cast::<u64>().write_unaligned(FREED | front as u64);
        heap.free_plain(p.sub(front));
    }
    Ok(())
}

/// The caller's size of a freed block, as well as it can be known: the header's size word
/// survives for raw blocks; for pool blocks it may now hold a list link, so the user part of
/// the block is given instead.
fn freed_size<S: ArenaSource>(heap: &Heap<S>, p: *mut u8, recorded: usize) -> usize {
    if heap.owns(p) {
        let pool = PoolHeader::of(p.wrapping_sub(FRONT), heap.config().pool_size());
        // SAFETY: validated in try_free: a classed pool header inside a live arena.
        let szidx = unsafe { (*pool).szidx } as usize;
        (szidx + 1) * heap.config().alignment() - FRONT - GUARD
    } else {
        recorded
    }
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

/// Debug-mode realloc: a new block, a copy, a checked free.
///
/// # Safety
/// As for [`try_free`].
pub(crate) unsafe fn realloc<S: ArenaSource>(
    heap: &mut Heap<S>,
    p: *mut u8,
    size: usize,
) -> *mut u8 {
    // SAFETY: read after validating in try_free below would be too late; the header read here
    // is the same one try_free performs, under the same contract.
    let tag = unsafe { p.sub(8).cast::<u64>().read_unaligned() };
    if tag & MAGIC_MASK != LIVE {
        // SAFETY: forwarded contract; this reports the bad pointer and aborts.
        unsafe { free_or_abort(heap, p) };
        return core::ptr::null_mut();
    }
    // SAFETY: a live block's size word.
    let old = unsafe { p.sub(16).cast::<u64>().read_unaligned() } as usize;
    let new = alloc(heap, size, 0);
    if !new.is_null() {
        // SAFETY: both blocks are live and distinct; min(old, size) bytes fit in each.
        unsafe {
            core::ptr::copy_nonoverlapping(p, new, old.min(size));
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

//! `size`: one allocation and its free, back to back, at one size.
//!
//! The fast path and nothing else: every allocator reuses the block it just got back, so this
//! measures the cost of the size-class lookup, the free-list pop and push, and (for `pymalloc`)
//! the lock. 1024 B is above pymalloc's 512 B small-object threshold, where pymalloc hands the
//! request to libc `malloc`: that row shows the cost of the detour.

use crate::contender::{Contender, alloc_touched};

/// The sizes measured: the small-object range in doublings, and one size above the threshold.
pub const SIZES: [usize; 7] = [16, 32, 64, 128, 256, 512, 1024];

/// Allocates `size` bytes, touches them and frees them: one operation.
#[inline]
pub fn pair<C: Contender>(c: &mut C, size: usize) {
    let p = alloc_touched(c, size);
    // SAFETY: `p` was just allocated on `c` with `size` and is freed once.
    unsafe { c.free(p, size) };
}

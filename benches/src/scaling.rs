//! `scaling`: allocate N blocks, then free all N, for N from a thousand to a million.
//!
//! Reported per element, so a flat line means allocation and free stay O(1) as the heap grows:
//! no list walks, no searches over arenas. pymalloc's arena bookkeeping (the `usable_arenas`
//! list kept sorted with `nfp2lasta` fingers) is what this group checks.

use crate::contender::{Contender, alloc_touched};

/// The element counts.
pub const COUNTS: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];

/// The object size.
pub const OBJECT_SIZE: usize = 64;

/// Allocates `ptrs.len()` touched blocks into `ptrs`, then frees them in allocation order.
/// `ptrs` is the harness's array, allocated before timing; its old contents are ignored.
pub fn run<C: Contender>(c: &mut C, ptrs: &mut [*mut u8]) {
    for slot in ptrs.iter_mut() {
        *slot = alloc_touched(c, OBJECT_SIZE);
    }
    for &p in ptrs.iter() {
        // SAFETY: each pointer was allocated on `c` above with OBJECT_SIZE and is freed once.
        unsafe { c.free(p, OBJECT_SIZE) };
    }
}

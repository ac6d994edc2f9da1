//! `ports`: two well-known allocator micro-benchmarks, rewritten from their published
//! descriptions as workloads over a [`Contender`].
//!
//! * **glibc-simple** (glibc's `benchtests/bench-malloc-simple`): for one size (16, 32 or 64 B)
//!   and batch counts 25, 100, 400 and 1600, allocate the batch, free its first half in
//!   allocation order (FIFO) and its second half from the end (LIFO). One iteration here runs all
//!   four batch counts: 2125 alloc+free pairs.
//! * **sh6bench** (MicroQuill's SmartHeap stress test, as run by mimalloc-bench): sizes swept
//!   upward; at each size a batch is allocated, half of it is freed at once most-recent-first
//!   (LIFO), and the other half survives into the next size step, where it is freed in the
//!   opposite (allocation) order. The sweep crosses pymalloc's 512 B threshold, so pymalloc's
//!   figures mix its own pools with libc `malloc` above 512 B.

use crate::contender::{Contender, alloc_touched};

/// glibc-simple's sizes.
pub const SIMPLE_SIZES: [usize; 3] = [16, 32, 64];

/// glibc-simple's batch counts; one iteration runs them all.
pub const SIMPLE_BATCHES: [usize; 4] = [25, 100, 400, 1600];

/// Alloc+free pairs in one glibc-simple iteration.
pub const SIMPLE_OPS: usize = 25 + 100 + 400 + 1600;

/// The pointer array glibc-simple needs (the largest batch).
pub const SIMPLE_SLOTS: usize = 1600;

/// One glibc-simple iteration at `size`; `ptrs` holds at least [`SIMPLE_SLOTS`] entries.
pub fn glibc_simple<C: Contender>(c: &mut C, size: usize, ptrs: &mut [*mut u8]) {
    for n in SIMPLE_BATCHES {
        let batch = &mut ptrs[..n];
        for slot in batch.iter_mut() {
            *slot = alloc_touched(c, size);
        }
        let (first, second) = batch.split_at(n / 2);
        for &p in first.iter().chain(second.iter().rev()) {
            // SAFETY: each block of the batch was allocated above on `c` with `size`; the two
            // halves are disjoint, so each is freed once.
            unsafe { c.free(p, size) };
        }
    }
}

/// sh6bench's smallest size.
pub const SH6_MIN: usize = 8;
/// sh6bench's largest size (above pymalloc's threshold on purpose).
pub const SH6_MAX: usize = 1024;
/// The size step of the sweep.
pub const SH6_STEP: usize = 8;
/// Blocks allocated at each size.
pub const SH6_BATCH: usize = 50;
/// Allocations in one sh6bench iteration.
pub const SH6_OPS: usize = ((SH6_MAX - SH6_MIN) / SH6_STEP + 1) * SH6_BATCH;

/// One sh6bench sweep. `fresh` and `survivors` are harness arrays of at least [`SH6_BATCH`]
/// entries each.
pub fn sh6bench<C: Contender>(c: &mut C, fresh: &mut [*mut u8], survivors: &mut [*mut u8]) {
    let half = SH6_BATCH / 2;
    // Survivors of the previous size step: (count, size).
    let mut kept = 0;
    let mut kept_size = 0;
    for size in (SH6_MIN..=SH6_MAX).step_by(SH6_STEP) {
        for slot in fresh[..SH6_BATCH].iter_mut() {
            *slot = alloc_touched(c, size);
        }
        for &p in &survivors[..kept] {
            // SAFETY: the survivors were allocated on `c` at the previous step with `kept_size`
            // and not freed since.
            unsafe { c.free(p, kept_size) };
        }
        for &p in fresh[half..SH6_BATCH].iter().rev() {
            // SAFETY: the second half of this step's batch, allocated above with `size`.
            unsafe { c.free(p, size) };
        }
        survivors[..half].copy_from_slice(&fresh[..half]);
        kept = half;
        kept_size = size;
    }
    for &p in &survivors[..kept] {
        // SAFETY: the last step's survivors, allocated with `kept_size`, not yet freed.
        unsafe { c.free(p, kept_size) };
    }
}

//! `order`: a batch of same-size blocks allocated, then freed in one of three orders.
//!
//! LIFO hands blocks back in the reverse of allocation, which free lists love; FIFO walks the
//! batch forward; shuffled frees in a seeded random permutation, which scatters the frees over
//! pools (pymalloc), pages (mimalloc), runs (jemalloc) or chunks and bins (glibc). The permutation
//! is computed before timing, and all three orders go through the same index array, so they cost
//! the harness the same.

use crate::contender::{Contender, alloc_touched};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

/// The object size: a small object (a CPython 2-tuple is 64 B with its GC header).
pub const OBJECT_SIZE: usize = 64;

/// The batch sizes: one that fits in L1/L2, one that does not.
pub const BATCHES: [usize; 2] = [1_000, 100_000];

/// The order the batch is freed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Last allocated, first freed.
    Lifo,
    /// First allocated, first freed.
    Fifo,
    /// A seeded random permutation.
    Shuffled,
}

impl Order {
    /// All three orders.
    pub const ALL: [Order; 3] = [Order::Lifo, Order::Fifo, Order::Shuffled];

    /// The pattern field of the benchmark id.
    pub const fn name(self) -> &'static str {
        match self {
            Order::Lifo => "lifo",
            Order::Fifo => "fifo",
            Order::Shuffled => "shuffled",
        }
    }

    /// The free order for `n` blocks: a permutation of `0..n`.
    pub fn permutation(self, n: usize, seed: u64) -> Vec<u32> {
        let mut v: Vec<u32> = (0..n as u32).collect();
        match self {
            Order::Lifo => v.reverse(),
            Order::Fifo => {}
            Order::Shuffled => v.shuffle(&mut StdRng::seed_from_u64(seed)),
        }
        v
    }
}

/// One batch: the free order and the pointer array, both prepared before timing.
pub struct Batch {
    /// A permutation of `0..ptrs.len()` (checked in [`Batch::new`]).
    order: Vec<u32>,
    /// Between runs: stale pointers, never dereferenced; during a run, the live blocks.
    ptrs: Vec<*mut u8>,
}

impl Batch {
    /// A batch of `n` blocks freed in `order` (seeded for the shuffle).
    pub fn new(order: Order, n: usize, seed: u64) -> Batch {
        let order = order.permutation(n, seed);
        debug_assert!(is_permutation(&order));
        Batch { order, ptrs: vec![core::ptr::null_mut(); n] }
    }

    /// Blocks per run (alloc+free pairs).
    pub fn len(&self) -> usize {
        self.ptrs.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ptrs.is_empty()
    }

    /// Allocates and touches every block, then frees them all in the batch's order.
    pub fn run<C: Contender>(&mut self, c: &mut C) {
        for slot in self.ptrs.iter_mut() {
            *slot = alloc_touched(c, OBJECT_SIZE);
        }
        for &i in &self.order {
            // SAFETY: `order` is a permutation, so every block allocated above is freed exactly
            // once, on the contender it came from, with its size.
            unsafe { c.free(self.ptrs[i as usize], OBJECT_SIZE) };
        }
    }
}

/// Whether `v` holds each of `0..v.len()` exactly once.
pub fn is_permutation(v: &[u32]) -> bool {
    let mut seen = vec![false; v.len()];
    v.iter().all(|&i| seen.get_mut(i as usize).is_some_and(|s| !core::mem::replace(s, true)))
}

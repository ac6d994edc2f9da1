//! `churn`: a steady working set where each step frees a random live block and allocates a new
//! one of a random size from 8 to 512 bytes.
//!
//! This is the shape of a long-running interpreter: the heap neither grows nor shrinks, but the
//! free lists are stirred continually, so blocks come back in no useful order and sizes mix. The
//! steps (slot, size) are drawn from a seeded generator before timing.

use crate::contender::{Contender, alloc_touched};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// The live working sets: one that fits in cache, one that does not.
pub const WORKING_SETS: [usize; 2] = [1_000, 100_000];

/// Steps per timed iteration.
pub const STEPS: usize = 10_000;

/// The smallest size drawn.
pub const MIN_SIZE: usize = 8;

/// The largest size drawn (pymalloc's small-object threshold).
pub const MAX_SIZE: usize = 512;

/// One step: free the block in `slot`, allocate `size` bytes into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Index into the working set.
    pub slot: u32,
    /// Bytes to allocate, in `MIN_SIZE..=MAX_SIZE`.
    pub size: u32,
}

/// The random inputs of one churn benchmark, made before timing.
pub struct Plan {
    /// Initial size of each working-set slot.
    pub initial: Vec<u32>,
    /// The steps of one timed iteration.
    pub steps: Vec<Step>,
}

impl Plan {
    /// A plan for a working set of `working_set` blocks and `steps` steps.
    pub fn new(working_set: usize, steps: usize, seed: u64) -> Plan {
        let mut rng = StdRng::seed_from_u64(seed);
        let initial = (0..working_set).map(|_| random_size(&mut rng)).collect();
        let steps = (0..steps)
            .map(|_| Step {
                slot: rng.random_range(0..working_set as u32),
                size: random_size(&mut rng),
            })
            .collect();
        Plan { initial, steps }
    }
}

fn random_size(rng: &mut StdRng) -> u32 {
    rng.random_range(MIN_SIZE as u32..=MAX_SIZE as u32)
}

/// A live working set on one contender; dropping it frees every block.
pub struct WorkingSet<'c, C: Contender> {
    contender: &'c mut C,
    /// `ptrs[i]` is a live block of `sizes[i]` bytes from `contender`.
    ptrs: Vec<*mut u8>,
    sizes: Vec<usize>,
}

impl<'c, C: Contender> WorkingSet<'c, C> {
    /// Allocates the plan's initial working set (not timed).
    pub fn fill(contender: &'c mut C, plan: &Plan) -> Self {
        let sizes: Vec<usize> = plan.initial.iter().map(|&s| s as usize).collect();
        let ptrs = sizes.iter().map(|&s| alloc_touched(contender, s)).collect();
        WorkingSet { contender, ptrs, sizes }
    }

    /// Runs the steps: free one block, allocate another in its slot.
    pub fn churn(&mut self, steps: &[Step]) {
        for step in steps {
            let slot = step.slot as usize;
            let size = step.size as usize;
            // SAFETY: `ptrs[slot]` is live with `sizes[slot]` bytes (the field invariant); it is
            // replaced right below, so it is freed once.
            unsafe { self.contender.free(self.ptrs[slot], self.sizes[slot]) };
            self.ptrs[slot] = alloc_touched(self.contender, size);
            self.sizes[slot] = size;
        }
    }
}

impl<C: Contender> Drop for WorkingSet<'_, C> {
    fn drop(&mut self) {
        for (&p, &size) in self.ptrs.iter().zip(&self.sizes) {
            // SAFETY: every slot holds a live block of its size (the field invariant), and the
            // set is dropped once.
            unsafe { self.contender.free(p, size) };
        }
    }
}

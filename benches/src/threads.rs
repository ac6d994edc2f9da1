//! `threads`: two threads sharing one process-global allocator.
//!
//! * **producer-consumer** (xmalloc-test's pattern): one thread allocates blocks of random small
//!   sizes and hands them over in batches; the other frees them. Every free is a free of memory
//!   another thread allocated, which mimalloc and jemalloc route through per-page or per-arena
//!   remote-free paths and pymalloc through its one lock.
//! * **larson** (Larson and Krishnan's server simulation): each thread keeps a working set and
//!   repeatedly frees a random block and allocates a replacement; between rounds the two threads
//!   swap working sets, so each also frees what the other allocated.
//!
//! pymalloc's bare [`pymalloc::Heap`] is not a contender here: it is single-threaded by design
//! (`&mut self`), and the thread-safe form of the same heap is the `pymalloc` global, which is.
//! Hand-over uses atomics and a barrier; nothing in the harness allocates inside the timed part.

use crate::contender::{Contender, Global, alloc_touched};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Blocks per hand-over batch.
pub const BATCH: usize = 256;
/// Hand-over slots in flight.
pub const SLOTS: usize = 8;
/// Batches per round of producer-consumer.
pub const BATCHES_PER_ROUND: usize = 64;
/// Objects per round of producer-consumer.
pub const PC_OBJECTS: usize = BATCH * BATCHES_PER_ROUND;

/// Random sizes from 8 to 512 bytes, seeded.
pub fn random_sizes(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(8..=512usize)).collect()
}

struct Slot {
    full: AtomicBool,
    ptrs: Vec<AtomicPtr<u8>>,
}

fn wait_until(flag: &AtomicBool, value: bool) {
    let mut spins = 0u32;
    while flag.load(Ordering::Acquire) != value {
        spins += 1;
        if spins < 64 {
            core::hint::spin_loop();
        } else {
            // Two cores, shared with the other thread and the rest of the machine: give way.
            std::thread::yield_now();
        }
    }
}

/// Runs `rounds` rounds of producer-consumer on `allocator` and returns the time they took.
/// `sizes` has [`PC_OBJECTS`] entries: the size of each object of a round.
pub fn producer_consumer(allocator: lineup::Allocator, sizes: &[usize], rounds: u64) -> Duration {
    assert_eq!(sizes.len(), PC_OBJECTS, "one size per object of a round");
    let ring: Vec<Slot> = (0..SLOTS)
        .map(|_| Slot {
            full: AtomicBool::new(false),
            ptrs: (0..BATCH).map(|_| AtomicPtr::new(core::ptr::null_mut())).collect(),
        })
        .collect();
    let batches = rounds as usize * BATCHES_PER_ROUND;
    let start = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut c = Global::new(allocator);
            start.wait();
            for b in 0..batches {
                let slot = &ring[b % SLOTS];
                wait_until(&slot.full, true);
                let base = (b % BATCHES_PER_ROUND) * BATCH;
                for (i, p) in slot.ptrs.iter().enumerate() {
                    let p = p.load(Ordering::Relaxed);
                    // SAFETY: the producer stored a live block of `sizes[base + i]` bytes from
                    // the same global allocator in this slot before setting `full` (Release,
                    // seen by our Acquire); the slot is only refilled after we clear `full`.
                    unsafe { c.free(p, sizes[base + i]) };
                }
                slot.full.store(false, Ordering::Release);
            }
        });
        let mut c = Global::new(allocator);
        start.wait();
        let t0 = Instant::now();
        for b in 0..batches {
            let slot = &ring[b % SLOTS];
            wait_until(&slot.full, false);
            let base = (b % BATCHES_PER_ROUND) * BATCH;
            for (i, p) in slot.ptrs.iter().enumerate() {
                p.store(alloc_touched(&mut c, sizes[base + i]), Ordering::Relaxed);
            }
            slot.full.store(true, Ordering::Release);
        }
        // The scope joins the consumer before returning: the time includes the last frees.
        t0
    })
    .elapsed()
}

/// Working-set blocks per larson thread.
pub const LARSON_SLOTS: usize = 1_000;
/// Steps per thread per round.
pub const LARSON_STEPS: usize = 10_000;

/// One larson thread's random inputs: the (slot, size) of each step of a round.
pub fn larson_steps(seed: u64) -> Vec<(u32, u32)> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..LARSON_STEPS)
        .map(|_| (rng.random_range(0..LARSON_SLOTS as u32), rng.random_range(8..=512u32)))
        .collect()
}

/// A working set shared between the two threads, used by one at a time (the barrier between
/// rounds hands it over).
struct Set {
    ptrs: Vec<AtomicPtr<u8>>,
    sizes: Vec<AtomicUsize>,
}

/// Runs `rounds` larson rounds with two threads on `allocator` and returns their time.
/// `steps[t]` are thread `t`'s steps (from [`larson_steps`]).
pub fn larson(allocator: lineup::Allocator, steps: [&[(u32, u32)]; 2], rounds: u64) -> Duration {
    let mut c = Global::new(allocator);
    let sets: Vec<Set> = (0..2)
        .map(|t| {
            let sizes: Vec<usize> =
                (0..LARSON_SLOTS).map(|i| 8 + (i * 37 + t * 11) % 505).collect();
            Set {
                ptrs: sizes.iter().map(|&s| AtomicPtr::new(alloc_touched(&mut c, s))).collect(),
                sizes: sizes.into_iter().map(AtomicUsize::new).collect(),
            }
        })
        .collect();
    let barrier = Barrier::new(2);
    let work = |t: usize| {
        let mut c = Global::new(allocator);
        for round in 0..rounds as usize {
            let set = &sets[(t + round) % 2];
            for &(slot, size) in steps[t] {
                let (slot, size) = (slot as usize, size as usize);
                let old = set.ptrs[slot].load(Ordering::Relaxed);
                let old_size = set.sizes[slot].load(Ordering::Relaxed);
                // SAFETY: the set holds live blocks of the recorded sizes from this allocator;
                // during a round only this thread uses this set (the other has the other set,
                // and the barrier orders the hand-over), and the slot is refilled right below.
                unsafe { c.free(old, old_size) };
                set.ptrs[slot].store(alloc_touched(&mut c, size), Ordering::Relaxed);
                set.sizes[slot].store(size, Ordering::Relaxed);
            }
            barrier.wait();
        }
    };
    let start = Barrier::new(2);
    let elapsed = std::thread::scope(|s| {
        s.spawn(|| {
            start.wait();
            work(1);
        });
        start.wait();
        let t0 = Instant::now();
        work(0);
        t0.elapsed()
    });
    for set in &sets {
        for (p, size) in set.ptrs.iter().zip(&set.sizes) {
            // SAFETY: after the threads are joined every slot holds one live block of its size.
            unsafe { c.free(p.load(Ordering::Relaxed), size.load(Ordering::Relaxed)) };
        }
    }
    elapsed
}

//! `threads`: threads sharing one process-global allocator.
//!
//! * **producer-consumer** (xmalloc-test's pattern): one thread allocates blocks of random small
//!   sizes and hands them over in batches; the other frees them. Every free is a free of memory
//!   another thread allocated, which mimalloc and jemalloc route through per-page or per-arena
//!   remote-free paths and pymalloc through the owning heap's remote-free stack.
//! * **larson** (Larson and Krishnan's server simulation): each thread keeps a working set and
//!   repeatedly frees a random block and allocates a replacement; between rounds the two threads
//!   swap working sets, so each also frees what the other allocated.
//!
//! * **mstress** (a port of mimalloc-bench's `mstress`): threads come and go each round, and
//!   objects outlive them through a transfer array (see [`mstress`]).
//! * **mleak** (a port of mimalloc-bench's `mleak`): short-lived threads in rounds, a tenth of
//!   whose blocks are freed by the main thread after they exit (see [`mleak`]). The benchmark
//!   also records, per allocator and in a child process, the RSS after every round
//!   ([`rss_in_child`]), written to `threads-rss.json` in the criterion folder.
//!
//! With per-thread heaps, `pymalloc` frees a block of its own thread with no lock, and one of
//! another thread by a push onto the owner's remote-free stack (or, when the owner has exited,
//! directly into its abandoned heap, which the next thread adopts).
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

/// Threads per round of [`mstress`] and [`mleak`].
pub const CHURN_THREADS: usize = 4;
/// Steps per thread per round of [`mstress`].
pub const MSTRESS_STEPS: usize = 5_000;
/// Blocks a [`mstress`] thread keeps at most.
pub const MSTRESS_LOCAL: usize = 256;
/// Slots of the transfer array of [`mstress`], shared by every thread of every round.
pub const MSTRESS_TRANSFER: usize = 1_024;
/// Blocks each [`mleak`] thread allocates per round.
pub const MLEAK_BLOCKS: usize = 10_000;

/// A block whose size is written in its first word, so that whoever frees it (another thread,
/// a later round) knows its layout.
fn alloc_sized(c: &mut Global, size: usize) -> *mut u8 {
    let p = alloc_touched(c, size);
    // SAFETY: a fresh block of at least 8 bytes, aligned for a usize (every size here is >= 8).
    unsafe { p.cast::<usize>().write(size) };
    p
}

/// Frees a block written by [`alloc_sized`]; null is ignored.
///
/// # Safety
/// `p` is null or a live block from [`alloc_sized`] on the same allocator.
unsafe fn free_sized(c: &mut Global, p: *mut u8) {
    if !p.is_null() {
        // SAFETY: caller contract: the first word holds the size it was allocated with.
        unsafe { c.free(p, p.cast::<usize>().read()) };
    }
}

/// mstress's object sizes: small nine times in ten, else up to 4 KiB (mimalloc's test-stress
/// mixes in larger objects too).
fn mstress_size(rng: &mut StdRng) -> usize {
    if rng.random_range(0..10) < 9 {
        rng.random_range(8..=512)
    } else {
        rng.random_range(513..=4096)
    }
}

/// A port of mimalloc-bench's `mstress` (mimalloc's `test-stress`), written from its published
/// description: threads come and go, and objects outlive the thread that allocated them.
///
/// Each round starts [`CHURN_THREADS`] new threads. Each takes [`MSTRESS_STEPS`] random steps:
/// allocate a block (kept, up to [`MSTRESS_LOCAL`]), free one of its own, or swap one into a
/// random slot of a transfer array shared by all threads of all rounds and free what comes out
/// (a block another thread, often one that has exited, allocated). A thread that ends swaps a
/// quarter of its blocks into the transfer array and frees the rest. The transfer array is
/// emptied after the last round. Returns the time of the rounds.
pub fn mstress(allocator: lineup::Allocator, rounds: u64, seed: u64) -> Duration {
    let transfer: Vec<AtomicPtr<u8>> =
        (0..MSTRESS_TRANSFER).map(|_| AtomicPtr::new(core::ptr::null_mut())).collect();
    let t0 = Instant::now();
    for round in 0..rounds {
        std::thread::scope(|s| {
            for t in 0..CHURN_THREADS as u64 {
                let transfer = &transfer;
                s.spawn(move || {
                    let mut c = Global::new(allocator);
                    let mut rng = StdRng::seed_from_u64(seed ^ (round << 8) ^ t);
                    let mut local: Vec<*mut u8> = Vec::with_capacity(MSTRESS_LOCAL);
                    let swap_out = |c: &mut Global, rng: &mut StdRng, p: *mut u8| {
                        let slot = &transfer[rng.random_range(0..MSTRESS_TRANSFER)];
                        // SAFETY: the array holds null or live blocks of `alloc_sized`; the swap
                        // hands the old one to this thread alone.
                        unsafe { free_sized(c, slot.swap(p, Ordering::AcqRel)) };
                    };
                    for _ in 0..MSTRESS_STEPS {
                        match rng.random_range(0..100) {
                            0..50 if local.len() < MSTRESS_LOCAL => {
                                let size = mstress_size(&mut rng);
                                local.push(alloc_sized(&mut c, size));
                            }
                            0..80 if !local.is_empty() => {
                                let p = local.swap_remove(rng.random_range(0..local.len()));
                                // SAFETY: a live block of this thread's list, freed once.
                                unsafe { free_sized(&mut c, p) };
                            }
                            _ if !local.is_empty() => {
                                let p = local.swap_remove(rng.random_range(0..local.len()));
                                swap_out(&mut c, &mut rng, p);
                            }
                            _ => {
                                let size = mstress_size(&mut rng);
                                local.push(alloc_sized(&mut c, size));
                            }
                        }
                    }
                    for (i, p) in local.into_iter().enumerate() {
                        if i % 4 == 0 {
                            swap_out(&mut c, &mut rng, p); // outlives this thread
                        } else {
                            // SAFETY: a live block of this thread's list, freed once.
                            unsafe { free_sized(&mut c, p) };
                        }
                    }
                });
            }
        });
    }
    let elapsed = t0.elapsed();
    let mut c = Global::new(allocator);
    for slot in &transfer {
        // SAFETY: after the last round the array holds null or live blocks, each freed once.
        unsafe { free_sized(&mut c, slot.swap(core::ptr::null_mut(), Ordering::AcqRel)) };
    }
    elapsed
}

/// A port of mimalloc-bench's `mleak`, written from its published description: short-lived
/// threads must not leak memory. Each round starts [`CHURN_THREADS`] threads that allocate
/// [`MLEAK_BLOCKS`] blocks of 8 to 512 bytes each, free nine in ten themselves and exit; the
/// main thread frees the tenth that outlived them. `after_round` runs after each round (the
/// RSS recording uses it). Returns the time of the rounds, `after_round` excluded.
pub fn mleak(
    allocator: lineup::Allocator,
    rounds: u64,
    seed: u64,
    mut after_round: impl FnMut(u64),
) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut c = Global::new(allocator);
    for round in 0..rounds {
        let t0 = Instant::now();
        let left: Vec<Vec<usize>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..CHURN_THREADS as u64)
                .map(|t| {
                    s.spawn(move || {
                        let mut c = Global::new(allocator);
                        let mut rng = StdRng::seed_from_u64(seed ^ (round << 8) ^ t);
                        let mut left = Vec::with_capacity(MLEAK_BLOCKS / 10 + 1);
                        for i in 0..MLEAK_BLOCKS {
                            let p = alloc_sized(&mut c, rng.random_range(8..=512));
                            if i % 10 == 0 {
                                left.push(p as usize);
                            } else {
                                // SAFETY: a live block, freed once.
                                unsafe { free_sized(&mut c, p) };
                            }
                        }
                        left
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for p in left.into_iter().flatten() {
            // SAFETY: live blocks of the exited threads, each freed once.
            unsafe { free_sized(&mut c, p as *mut u8) };
        }
        elapsed += t0.elapsed();
        after_round(round);
    }
    elapsed
}

/// Resident set size of this process now, in KiB (`VmRSS` of `/proc/self/status`); 0 when it
/// cannot be read.
pub fn rss_kib() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The resident memory of one workload on one allocator, measured in a child process.
#[derive(Clone, Debug, PartialEq)]
pub struct RssRow {
    /// `mstress` or `mleak`.
    pub workload: &'static str,
    /// The allocator's name.
    pub allocator: &'static str,
    /// Rounds run.
    pub rounds: u64,
    /// The child's RSS before the workload, KiB (inherited pages included).
    pub before_kib: u64,
    /// The child's RSS after each round, KiB.
    pub rounds_kib: Vec<u64>,
    /// The allocator's own "held" figure after the run, bytes (see `lineup::AllocatorStats`).
    pub held_bytes: Option<u64>,
}

impl RssRow {
    /// This row as one JSON object.
    pub fn to_json(&self) -> String {
        let rounds: Vec<String> = self.rounds_kib.iter().map(u64::to_string).collect();
        format!(
            "{{\"workload\":\"{}\",\"allocator\":\"{}\",\"rounds\":{},\"before_kib\":{},\
             \"rounds_kib\":[{}],\"held_bytes\":{}}}",
            self.workload,
            self.allocator,
            self.rounds,
            self.before_kib,
            rounds.join(","),
            self.held_bytes.map_or("null".to_string(), |h| h.to_string())
        )
    }
}

/// Runs `workload` (`mstress` or `mleak`, `rounds` rounds) on `allocator` in a forked child,
/// so that each allocator's resident memory is measured apart from the others' (they all live
/// in the benchmark process), and returns the child's RSS before and after each round. `None`
/// when the child fails.
pub fn rss_in_child(
    workload: &'static str,
    allocator: lineup::Allocator,
    rounds: u64,
    seed: u64,
) -> Option<RssRow> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: the child runs the workload with the same allocators (each has fork handlers, or
    // none is needed: glibc, mimalloc and jemalloc handle fork themselves, pymalloc registers
    // its own) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let before_kib = rss_kib();
        let mut rounds_kib = Vec::with_capacity(rounds as usize);
        if workload == "mstress" {
            for r in 0..rounds {
                mstress(allocator, 1, seed ^ (r << 32));
                rounds_kib.push(rss_kib());
            }
        } else {
            mleak(allocator, rounds, seed, |_| rounds_kib.push(rss_kib()));
        }
        let row = RssRow {
            workload,
            allocator: allocator.name(),
            rounds,
            before_kib,
            rounds_kib,
            held_bytes: allocator.stats().held_bytes,
        };
        let json = row.to_json();
        // SAFETY: writes a live buffer to the pipe, then ends the child without running the
        // parent's atexit handlers.
        unsafe {
            libc::write(fds[1], json.as_ptr().cast(), json.len());
            libc::_exit(0);
        }
    }
    // SAFETY: closes the parent's copy of the write end.
    unsafe { libc::close(fds[1]) };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads into a live buffer of its length.
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    let mut status = 0;
    // SAFETY: closes our read end; waits for our own child.
    unsafe {
        libc::close(fds[0]);
        libc::waitpid(pid, &mut status, 0);
    }
    if pid < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 || out.is_empty() {
        return None;
    }
    parse_row(&String::from_utf8_lossy(&out), workload, allocator, rounds)
}

/// Reads back the figures of [`RssRow::to_json`] (the child's answer).
fn parse_row(
    json: &str,
    workload: &'static str,
    allocator: lineup::Allocator,
    rounds: u64,
) -> Option<RssRow> {
    let field = |name: &str| -> Option<&str> {
        let start = json.find(&format!("\"{name}\":"))? + name.len() + 3;
        let rest = &json[start..];
        let end = if rest.starts_with('[') { rest.find(']')? + 1 } else { rest.find([',', '}'])? };
        Some(&rest[..end])
    };
    let rounds_kib = field("rounds_kib")?
        .trim_matches(['[', ']'])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    Some(RssRow {
        workload,
        allocator: allocator.name(),
        rounds,
        before_kib: field("before_kib")?.parse().ok()?,
        rounds_kib,
        held_bytes: field("held_bytes")?.parse().ok(),
    })
}

/// Rounds of each workload in the RSS recording.
pub const RSS_ROUNDS: u64 = 20;

/// Measures [`RSS_ROUNDS`] rounds of `mstress` and `mleak` on every allocator, each in its own
/// child ([`rss_in_child`]), and writes the rows to `path` as JSON
/// (`{"version":1,"rows":[...]}`, read by `arenalab bench-report`). A failed child is left out
/// and reported on stderr; a file that cannot be written is reported, not fatal.
pub fn write_rss_json(path: &std::path::Path, seed: u64) {
    let mut rows = Vec::new();
    for workload in ["mstress", "mleak"] {
        for a in lineup::Allocator::ALL {
            match rss_in_child(workload, a, RSS_ROUNDS, seed) {
                Some(row) => rows.push(row.to_json()),
                None => eprintln!("threads: the RSS child of {workload} on {} failed", a.name()),
            }
        }
    }
    let json = format!("{{\"version\":1,\"rows\":[\n{}\n]}}\n", rows.join(",\n"));
    if let Err(e) = std::fs::create_dir_all(path.parent().unwrap_or(path))
        .and_then(|()| std::fs::write(path, json))
    {
        eprintln!("threads: cannot write {}: {e}", path.display());
    }
}

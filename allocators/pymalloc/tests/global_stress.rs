//! Eight threads on one `PyMalloc`, the process's `#[global_allocator]`, for a fixed time.
//!
//! Each thread fills up to 4,096 live buffers and drains to 256, again and again (so arenas are
//! mapped and unmapped while other threads allocate), and at random: allocates one (1 to 512
//! bytes three times in four, else up to 2,048: pool blocks and raw blocks), grows one by pushing
//! bytes (reallocs within a class, across classes and out over the 512-byte threshold), shrinks
//! one (`shrink_to_fit`, often back under the threshold), checks one, frees one, or sends one to
//! the next thread of a ring through a channel, where the receiver checks it and then frees or
//! grows it (frees and reallocs of blocks allocated by another thread: with one heap per
//! thread, pushes onto the owner's remote-free stack). Every byte of every buffer follows a
//! pattern derived from the buffer's seed, and every buffer is checked whole before it is
//! freed. Meanwhile the main thread, every 20 ms, calls `check_invariants()` (every heap and
//! every remote-free stack) and runs a short-lived thread that allocates a batch of buffers and
//! exits; the main thread frees half of the batch at once (into the abandoned heap) and half
//! after the next short-lived thread has adopted that heap (remote frees to its new owner).
//! The heaps never outnumber the threads that ever lived at once.
//!
//! It runs for `PYMALLOC_STRESS_SECS` seconds (default 10; CI runs the default):
//! `PYMALLOC_STRESS_SECS=60 cargo test --release -p pymalloc --test global_stress`. At the end
//! every buffer is gone, and the heap holds exactly as many pool blocks and raw blocks as before
//! the threads started. A plain program (`harness = false`): a failed check panics, which exits
//! with code 101 and fails `cargo test`.

use pymalloc::PyMalloc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: PyMalloc = PyMalloc::new();

const THREADS: usize = 8;
/// The most buffers one thread keeps.
const LIVE: usize = 4096;
/// The largest buffer (a quarter of new buffers are over the 512-byte threshold).
const MAX_SIZE: usize = 2048;

/// A buffer whose byte `i` is `byte(seed, i)`.
struct Buffer {
    seed: u64,
    data: Vec<u8>,
}

fn byte(seed: u64, i: usize) -> u8 {
    (seed.wrapping_add(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

impl Buffer {
    fn new(seed: u64, len: usize) -> Buffer {
        Buffer { seed, data: (0..len).map(|i| byte(seed, i)).collect() }
    }

    /// Appends `n` bytes one push at a time, so the vector reallocs as it doubles.
    fn grow(&mut self, n: usize) {
        for _ in 0..n {
            let i = self.data.len();
            self.data.push(byte(self.seed, i));
        }
    }

    fn shrink(&mut self, len: usize) {
        self.data.truncate(len);
        self.data.shrink_to_fit();
    }

    fn check(&self) {
        if let Some(i) = (0..self.data.len()).find(|&i| self.data[i] != byte(self.seed, i)) {
            panic!(
                "buffer of {} bytes (capacity {}) at {:p}: byte {i} is {:#x}, expected {:#x}",
                self.data.len(),
                self.data.capacity(),
                self.data.as_ptr(),
                self.data[i],
                byte(self.seed, i)
            );
        }
    }
}

/// 1 to 512 bytes (a pool block) three times in four, else 513 to `MAX_SIZE` (a raw block).
fn random_size(rng: &mut Rng) -> usize {
    if rng.below(4) < 3 { 1 + rng.below(512) } else { 513 + rng.below(MAX_SIZE - 512) }
}

/// xorshift64*: enough randomness for a schedule, and no allocation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Operations done by all threads, by kind.
#[derive(Default)]
struct Counts {
    allocs: AtomicU64,
    grows: AtomicU64,
    shrinks: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    checks: AtomicU64,
    churned: AtomicU64,
}

/// A short-lived thread's work: a batch of buffers that outlive it.
fn short_lived(batch: u64) -> Vec<Buffer> {
    let mut rng = Rng(0xC0FF_EE00_0000_0001 ^ batch.wrapping_mul(0x9E37_79B9));
    (0..256).map(|i| Buffer::new((1 << 63) | (batch << 16) | i, random_size(&mut rng))).collect()
}

fn worker(
    t: usize,
    stop: &AtomicBool,
    counts: &Counts,
    to_next: SyncSender<Buffer>,
    from_prev: Receiver<Buffer>,
) {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1 ^ ((t as u64 + 1) << 32));
    let mut live: Vec<Buffer> = Vec::with_capacity(LIVE);
    let mut seed = (t as u64) << 48;
    let mut filling = true;
    let (mut allocs, mut grows, mut shrinks, mut sent, mut received, mut checks) =
        (0, 0, 0, 0, 0, 0);
    while !stop.load(Ordering::Relaxed) {
        while let Ok(b) = from_prev.try_recv() {
            b.check();
            received += 1;
            if live.len() < LIVE && rng.below(2) == 0 {
                let mut b = b;
                let n = rng.below(MAX_SIZE / 2);
                b.grow(n); // a realloc of a block another thread allocated
                live.push(b);
            } // else freed here, on another thread than the one that allocated it
        }
        // Phases of filling up to LIVE buffers and draining to LIVE / 16 make arenas fill up
        // and empty again (mapped and unmapped while other threads allocate).
        if live.len() >= LIVE {
            filling = false;
        } else if live.len() <= LIVE / 16 {
            filling = true;
        }
        let alloc_share = if filling { 50 } else { 10 };
        if live.is_empty() || (rng.below(100) < alloc_share && live.len() < LIVE) {
            seed += 1;
            live.push(Buffer::new(seed, random_size(&mut rng)));
            allocs += 1;
            continue;
        }
        let i = rng.below(live.len());
        match rng.below(100) {
            0..25 => {
                let n = rng.below(MAX_SIZE - live[i].data.len().min(MAX_SIZE - 1));
                live[i].grow(n);
                grows += 1;
            }
            25..40 => {
                let len = rng.below(live[i].data.len() + 1);
                live[i].shrink(len);
                shrinks += 1;
            }
            40..60 => {
                live[i].check();
                checks += 1;
            }
            60..85 => live.swap_remove(i).check(),
            _ => match to_next.try_send(live.swap_remove(i)) {
                Ok(()) => sent += 1,
                Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => b.check(),
            },
        }
    }
    for b in &live {
        b.check();
    }
    drop(live);
    // The ring drains: once this sender is gone, the next thread's receiver ends after the
    // buffers still in flight.
    drop(to_next);
    for b in from_prev.iter() {
        b.check();
        received += 1;
    }
    for (c, n) in [
        (&counts.allocs, allocs),
        (&counts.grows, grows),
        (&counts.shrinks, shrinks),
        (&counts.sent, sent),
        (&counts.received, received),
        (&counts.checks, checks),
    ] {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Runs the eight threads for `duration` while checking the invariants every 20 ms; returns
/// how many times they were checked.
fn run(duration: Duration, counts: &Counts) -> u64 {
    let stop = AtomicBool::new(false);
    let mut invariant_checks = 0u64;
    std::thread::scope(|s| {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..THREADS).map(|_| sync_channel::<Buffer>(64)).unzip();
        let mut receivers: Vec<Option<Receiver<Buffer>>> =
            receivers.into_iter().map(Some).collect();
        // Channel k carries buffers from thread k to thread k + 1 (mod 8).
        let mut threads = Vec::with_capacity(THREADS);
        for (t, to_next) in senders.into_iter().enumerate() {
            let from_prev = receivers[(t + THREADS - 1) % THREADS].take().unwrap();
            let stop = &stop;
            threads.push(s.spawn(move || worker(t, stop, counts, to_next, from_prev)));
        }
        let start = Instant::now();
        let mut kept: Vec<Buffer> = Vec::new();
        let mut batch = 0u64;
        while start.elapsed() < duration {
            std::thread::sleep(Duration::from_millis(20));
            GLOBAL.check_invariants().unwrap();
            invariant_checks += 1;
            batch += 1;
            let mut buffers = std::thread::spawn(move || short_lived(batch)).join().unwrap();
            for b in kept.drain(..).chain(buffers.drain(buffers.len() / 2..)) {
                b.check();
            }
            kept = buffers;
            counts.churned.fetch_add(1, Ordering::Relaxed);
        }
        drop(kept);
        stop.store(true, Ordering::Relaxed);
        // Joined here, not by the end of the scope: that waits only for the closures to
        // return, this for the threads to exit (their thread-local state freed).
        for t in threads {
            t.join().unwrap();
        }
    });
    invariant_checks
}

/// Eight threads with cross-thread frees keep the heap consistent.
fn main() {
    eprintln!("global_stress: eight threads with cross-thread frees keep the heap consistent");
    let secs: f64 =
        std::env::var("PYMALLOC_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10.0);
    // A run of no time first: std allocates some state once and keeps it (the main thread's
    // handle, taken by the scope), so `before` is measured after it. No other thread runs: this
    // file has no test harness (`harness = false` in Cargo.toml), whose own thread would
    // allocate (a channel waiter's state) at an unknown moment of the run.
    run(Duration::ZERO, &Counts::default());
    let counts = Counts::default();
    let before = GLOBAL.stats();
    let invariant_checks = run(Duration::from_secs_f64(secs), &counts);
    GLOBAL.check_invariants().unwrap();
    let after = GLOBAL.stats();
    let heaps = GLOBAL.heap_count();
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "{secs} s: {} allocations, {} grows, {} shrinks, {} checks, {} buffers sent and {} \
         received across threads, {invariant_checks} invariant checks; {} arenas mapped and {} \
         unmapped, {} at the peak (summed over heaps); {} short-lived threads; {heaps:?}",
        c(&counts.allocs),
        c(&counts.grows),
        c(&counts.shrinks),
        c(&counts.checks),
        c(&counts.sent),
        c(&counts.received),
        after.arenas_allocated_total - before.arenas_allocated_total,
        after.arenas_reclaimed - before.arenas_reclaimed,
        after.arenas_highwater,
        c(&counts.churned),
    );
    // The ring's threads, the main thread, and one short-lived thread at a time.
    assert!(heaps.heaps <= THREADS + 2, "{heaps:?}: short-lived threads did not adopt heaps");
    assert!(c(&counts.churned) > 0);
    assert!(invariant_checks > 0, "PYMALLOC_STRESS_SECS={secs} is too short to check once");
    assert_eq!(c(&counts.sent), c(&counts.received), "every buffer sent was received");
    assert!(c(&counts.sent) > 0 && c(&counts.grows) > 0 && c(&counts.shrinks) > 0);
    assert_eq!(after.blocks_in_use(), before.blocks_in_use(), "pool blocks in use");
    assert_eq!(after.raw_blocks_current, before.raw_blocks_current, "raw blocks in use");
    assert_eq!(after.accounted_bytes(), after.arenas_current * after.arena_size);
    eprintln!("global_stress: ok");
}

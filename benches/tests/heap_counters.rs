//! Every benchmark workload, run on the pymalloc model's `Heap`, must leave the heap in exactly
//! the state recorded in `tests/data/heap_counters.txt`: the same arena and pool counters, the
//! same per-class figures, the same occupancy of every pool, and the same pointer handed out
//! for every request. The file was recorded from the model before its hot paths were
//! optimised, so a speed-up that changes any count, order or placement fails here.
//!
//! What is compared, at every power-of-two operation count of each workload and after it:
//! * the counters of `Heap::stats()` (arenas allocated, reclaimed, current, high-water; pools
//!   used, full, empty, never carved; raw requests and live raw blocks; per class pools,
//!   blocks in use, blocks available);
//! * a hash of the occupancy snapshot (state, class and blocks in use of every pool slot, the
//!   arenas taken in the order they were mapped);
//! * a hash of every pointer returned so far, as (ordinal of its arena's mapping, offset in
//!   the arena): which arena and pool and block each request got, independent of where the
//!   kernel puts the mappings.
//!
//! Arenas come from [`Placed`], which aligns each one to the arena size (one page past it for
//! the misaligned placement), so the pool counts (64, or 63 when the start is off a pool
//! boundary) and every offset are the same on every run. The layouts: the benchmarks' 3.10
//! preset under both placements, 3.8 (an empty arena released at once), 3.7 (64 classes of
//! 4 KiB pools), the ablation policy newest-first, and debug mode.
//!
//! Regenerate (only when a change of behaviour is intended, and say so in the commit):
//! `HEAP_COUNTERS_BLESS=1 cargo test --release -p arenalab-benches --test heap_counters`.

use arenalab_benches::contender::Contender;
use arenalab_benches::{churn, order, ports, scaling, size};
use pymalloc::os::{ArenaSource, Mmap};
use pymalloc::{ArenaPolicy, Config, Heap, PoolState, Preset};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ptr::NonNull;

/// The benchmarks' seed (`benches/allocators.rs`).
const SEED: u64 = 0x5eed_a110c;
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/heap_counters.txt");
const BLESS: &str = "HEAP_COUNTERS_BLESS";

/// 64-bit FNV-1a, written out so that the recorded hashes never depend on a library version.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    const NEW: Fnv = Fnv(0xcbf2_9ce4_8422_2325);
    fn word(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// An arena source placing every arena at an arena-size boundary (or one page past it) and
/// numbering its mappings in order.
struct Placed {
    misaligned: bool,
    next: u64,
    /// Live arenas: start address -> (ordinal, mapping start, mapping size).
    live: BTreeMap<usize, (u64, NonNull<u8>, usize)>,
}

impl Placed {
    fn new(misaligned: bool) -> Placed {
        Placed { misaligned, next: 0, live: BTreeMap::new() }
    }

    /// (ordinal of the arena holding `p`, offset of `p` in it).
    fn locate(&self, p: usize) -> (u64, usize) {
        let (&start, &(seq, ..)) = self.live.range(..=p).next_back().expect("pointer in no arena");
        (seq, p - start)
    }
}

// SAFETY: every arena is a fresh, whole, zeroed anonymous mapping from `Mmap`, of `size` bytes
// from the returned start on, aligned to the arena size (or a page past it, which is aligned
// to the page and so to any `align` the heap asks with a page-aligned placement; the aligned
// placement is used for larger `align`); `unmap` gives the whole mapping back. `Mmap` never
// allocates through the global allocator; the `BTreeMap` does, which a test source may.
unsafe impl ArenaSource for Placed {
    fn map(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let skew =
            if self.misaligned && align <= pymalloc::os::PAGE { pymalloc::os::PAGE } else { 0 };
        let total = size + skew;
        let base = Mmap.map(total, size.max(align))?;
        // SAFETY: skew < total: inside the mapping just made.
        let start = unsafe { base.add(skew) };
        self.live.insert(start.as_ptr().addr(), (self.next, base, total));
        self.next += 1;
        Some(start)
    }

    unsafe fn unmap(&mut self, ptr: NonNull<u8>, _size: usize) {
        let (_, base, total) =
            self.live.remove(&ptr.as_ptr().addr()).expect("unmap of an arena never mapped");
        // SAFETY: the whole mapping made by `map` for this arena, given back by the heap.
        unsafe { Mmap.unmap(base, total) };
    }
}

/// Forwards to a heap and records its state at every power-of-two operation count.
struct Recorder<'a> {
    heap: &'a mut Heap<Placed>,
    name: String,
    ops: u64,
    ptrs: Fnv,
    out: &'a mut String,
}

impl<'a> Recorder<'a> {
    fn new(heap: &'a mut Heap<Placed>, name: String, out: &'a mut String) -> Recorder<'a> {
        Recorder { heap, name, ops: 0, ptrs: Fnv::NEW, out }
    }

    fn op(&mut self) {
        self.ops += 1;
        if self.ops.is_power_of_two() {
            self.record();
        }
    }

    /// One line: workload, operation count, counters, per-class figures, hashes.
    fn record(&mut self) {
        let h = &*self.heap;
        let s = h.stats();
        let mut line = format!(
            "{} @{}: arenas {}/{}/{}/{} pools {}/{}/{}/{} raw {}/{} classes",
            self.name,
            self.ops,
            s.arenas_allocated_total,
            s.arenas_reclaimed,
            s.arenas_current,
            s.arenas_highwater,
            s.pools_used,
            s.pools_full,
            s.pools_empty,
            s.pools_never_carved,
            s.raw_allocations_total,
            s.raw_blocks_current,
        );
        for (i, c) in s.classes.iter().enumerate().filter(|(_, c)| c.pools > 0) {
            let _ = write!(line, " {i}:{}/{}/{}", c.pools, c.blocks_in_use, c.blocks_available);
        }
        let snap = h.snapshot();
        let mut arenas: Vec<_> =
            snap.arenas.iter().map(|a| (h.source().locate(a.address).0, a)).collect();
        arenas.sort_by_key(|&(seq, _)| seq);
        let mut occ = Fnv::NEW;
        for (seq, a) in arenas {
            occ.word(seq);
            for p in &a.pools {
                let state = match p.state {
                    PoolState::NeverCarved => 0,
                    PoolState::Empty => 1,
                    PoolState::Used => 2,
                    PoolState::Full => 3,
                };
                occ.word(state);
                occ.word(p.size_class.map_or(u64::MAX, |c| c.index() as u64));
                occ.word(p.blocks_in_use as u64);
            }
        }
        let _ = writeln!(line, " occupancy {:016x} pointers {:016x}", occ.0, self.ptrs.0);
        self.out.push_str(&line);
    }
}

impl Contender for Recorder<'_> {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        let p = Contender::alloc(&mut *self.heap, size);
        if self.heap.owns(p) {
            let (seq, off) = self.heap.source().locate(p.addr());
            self.ptrs.word(seq);
            self.ptrs.word(off as u64);
        } else {
            self.ptrs.word(u64::MAX); // a raw block: where libc puts it is not the model's
        }
        self.op();
        p
    }

    unsafe fn free(&mut self, p: *mut u8, size: usize) {
        // SAFETY: forwarded contract: a live block of this heap.
        unsafe { Contender::free(&mut *self.heap, p, size) };
        self.op();
    }
}

/// Runs `f` on a fresh heap of `config`, recording its state inside and after.
fn run(
    config: Config,
    misaligned: bool,
    name: &str,
    out: &mut String,
    f: impl FnOnce(&mut Recorder<'_>),
) {
    let mut heap = Heap::with_source(config, Placed::new(misaligned));
    let mut r = Recorder::new(&mut heap, name.to_string(), out);
    f(&mut r);
    r.name.push_str(" end");
    r.record();
    heap.check_invariants().unwrap();
}

/// Every workload of the benchmark groups size, order, churn, scaling and ports, each repeated
/// as a benchmark repeats it on the same heap.
fn workloads(config: Config, misaligned: bool, out: &mut String) {
    run(config, misaligned, "size/pair", out, |r| {
        for s in size::SIZES {
            for _ in 0..3 {
                size::pair(r, s);
            }
        }
    });
    for n in order::BATCHES {
        for o in order::Order::ALL {
            run(config, misaligned, &format!("order/{}/{n}", o.name()), out, |r| {
                let mut batch = order::Batch::new(o, n, SEED);
                for _ in 0..3 {
                    batch.run(r);
                }
            });
        }
    }
    for w in churn::WORKING_SETS {
        let plan = churn::Plan::new(w, churn::STEPS, SEED);
        run(config, misaligned, &format!("churn/random/{w}"), out, |r| {
            let mut set = churn::WorkingSet::fill(r, &plan);
            set.churn(&plan.steps);
            set.churn(&plan.steps);
        });
    }
    for n in scaling::COUNTS {
        run(config, misaligned, &format!("scaling/alloc-all-free-all/{n}"), out, |r| {
            let mut ptrs = vec![core::ptr::null_mut(); n];
            for _ in 0..2 {
                scaling::run(r, &mut ptrs);
            }
        });
    }
    run(config, misaligned, "ports", out, |r| {
        let mut a = vec![core::ptr::null_mut(); ports::SIMPLE_SLOTS];
        let mut b = vec![core::ptr::null_mut(); ports::SH6_BATCH];
        for s in ports::SIMPLE_SIZES {
            for _ in 0..2 {
                ports::glibc_simple(r, s, &mut a);
            }
        }
        for _ in 0..2 {
            ports::sh6bench(r, &mut a, &mut b);
        }
    });
}

/// The layouts compared, by name.
fn layouts() -> Vec<(&'static str, Config, bool)> {
    let newest = Config::builder(Preset::Cpython310).policy(ArenaPolicy::NewestFirst).build();
    let debug = Config::builder(Preset::Cpython310).debug(true).build();
    vec![
        ("3.10 pool-aligned", Config::CPYTHON_3_10, false),
        ("3.10 misaligned", Config::CPYTHON_3_10, true),
        ("3.8 misaligned", Config::CPYTHON_3_8, true),
        ("3.7 pool-aligned", Config::CPYTHON_3_7, false),
        ("3.10 newest-first misaligned", newest.unwrap(), true),
        ("3.10 debug misaligned", debug.unwrap(), true),
    ]
}

#[test]
fn every_benchmark_workload_keeps_the_recorded_heap_state() {
    let mut got = String::new();
    for (name, config, misaligned) in layouts() {
        let _ = writeln!(got, "## {name}");
        workloads(config, misaligned, &mut got);
    }
    if std::env::var_os(BLESS).is_some() {
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let header = format!(
            "# Heap state after every benchmark workload (benches/tests/heap_counters.rs).\n\
             # Recorded from commit {commit} (plus any uncommitted change).\n\
             # Regenerate: {BLESS}=1 cargo test --release -p arenalab-benches --test heap_counters\n\
             # Line: workload @ops: arenas total/reclaimed/current/highwater \
             pools used/full/empty/never-carved raw total/current classes class:pools/in-use/available \
             occupancy <hash> pointers <hash>\n"
        );
        std::fs::create_dir_all(std::path::Path::new(DATA).parent().unwrap()).unwrap();
        std::fs::write(DATA, header + &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(DATA)
        .unwrap_or_else(|e| panic!("{DATA}: {e} (record it with {BLESS}=1)"));
    let want: Vec<&str> = want.lines().filter(|l| !l.starts_with("# ")).collect();
    let got: Vec<&str> = got.lines().collect();
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(g, w, "line {} of the record differs (got, then recorded)", i + 1);
    }
    assert_eq!(got.len(), want.len(), "number of records");
}

/// Figures derived from the layout, beside the recorded ones: the 1,000,000-block scaling run
/// at 64 B needs ceil(1e6 / 252) pools (252 blocks of 64 B in a 16 KiB pool after its 48-byte
/// header), 64 to an arena placed on a pool boundary, 63 off one; after freeing everything the
/// 3.10 layout keeps exactly one arena.
#[test]
fn scaling_peak_and_keep_one_follow_from_the_layout() {
    for (misaligned, per_arena) in [(false, 64), (true, 63)] {
        let c = Config::CPYTHON_3_10;
        let per_pool = c.blocks_per_pool(c.size_class(scaling::OBJECT_SIZE).unwrap());
        assert_eq!(per_pool, (16384 - 48) / 64);
        let n: usize = 1_000_000;
        let arenas = n.div_ceil(per_pool).div_ceil(per_arena);
        let mut heap = Heap::with_source(c, Placed::new(misaligned));
        scaling::run(&mut heap, &mut vec![core::ptr::null_mut(); n]);
        let s = heap.stats();
        assert_eq!((s.arenas_highwater, s.arenas_current), (arenas, 1));
        assert_eq!(s.arenas_allocated_total as usize, arenas);
        assert_eq!(s.pools_empty + s.pools_never_carved, per_arena);
    }
}

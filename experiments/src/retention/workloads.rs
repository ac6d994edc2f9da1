//! The retention workloads, run inside a worker process.
//!
//! Each workload allocates objects through the allocator under test, frees some or all of them
//! in a pattern, and asks for a measurement after every phase. Three rules keep the numbers
//! honest:
//!
//! 1. **Bookkeeping is not the allocator's.** The pointer and size arrays are [`MappedVec`]s:
//!    anonymous mappings made, and touched, before the baseline, so they add the same constant
//!    to every phase and never come from (or fragment) the allocator being measured.
//! 2. **Every object is written.** All of its bytes get a pattern when it is allocated, and its
//!    first and last byte are checked before it is freed; an allocator cannot look small by
//!    handing out pages nobody touches, and a corrupting one is caught.
//! 3. **The allocator is warmed up before the baseline.** One object is allocated and freed
//!    first, so a phase shows what the workload costs, not the allocator's one-off start-up
//!    (jemalloc's base metadata, mimalloc's first segment header).

use super::{Phase, WorkerArgs};
use crate::error::{Error, Result};
use core::alloc::{GlobalAlloc, Layout};
use lineup::Allocator;
use pymalloc::{ArenaPolicy, Config, Preset, PyMalloc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The seed of every random choice (sizes and free order of `mixed`), so runs repeat exactly.
pub const SEED: u64 = 0x5eed_a11c;

/// Block sizes of the `large` workload: glibc's starting mmap threshold is 128 KiB, so both are
/// mmapped at first; freeing a 200 KiB mmapped block raises the threshold above it, and later
/// 200 KiB blocks come from the heap.
pub const LARGE_BLOCK: usize = 4 << 20;
/// The mid-size block of `large` (see [`LARGE_BLOCK`]).
pub const MID_BLOCK: usize = 200 << 10;
/// Bytes allocated in each round of `large`.
pub const LARGE_TOTAL: usize = 64 << 20;

/// Smallest and largest request of `mixed` (pymalloc's whole small-object range).
pub const MIXED_SIZES: (usize, usize) = (8, 512);

/// A workload: what is allocated and in which order it is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// N objects, then free them all: "I deleted my big list; why is RSS still high?"
    Seed,
    /// Free every second object (maximal fragmentation), refill N/2, free all.
    EveryOther,
    /// Keep 1 object in 1000: spread over the allocation order, or packed at its start.
    Survivors,
    /// Free the oldest half, then the rest.
    FifoHalf,
    /// Random sizes from 8 to 512 bytes, freed in random order.
    Mixed,
    /// 4 MiB and 200 KiB blocks: glibc's mmap threshold and its dynamic raise.
    Large,
    /// pymalloc only: CPython's arena order (most used first) against newest first.
    Policy,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 7] = [
        Workload::Seed,
        Workload::EveryOther,
        Workload::Survivors,
        Workload::FifoHalf,
        Workload::Mixed,
        Workload::Large,
        Workload::Policy,
    ];

    /// The name used on the command line and in results.
    pub const fn name(self) -> &'static str {
        match self {
            Workload::Seed => "seed",
            Workload::EveryOther => "every-other",
            Workload::Survivors => "survivors",
            Workload::FifoHalf => "fifo-half",
            Workload::Mixed => "mixed",
            Workload::Large => "large",
            Workload::Policy => "policy",
        }
    }

    /// The workload with this name.
    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// The variants run for this workload; empty when there is just one form.
    pub const fn variants(self) -> &'static [&'static str] {
        match self {
            Workload::Survivors => &["spread", "packed"],
            Workload::Policy => &["most-used-first", "newest-first"],
            _ => &[],
        }
    }

    /// Whether only pymalloc runs it.
    pub const fn pymalloc_only(self) -> bool {
        matches!(self, Workload::Policy)
    }

    /// Whether pymalloc's occupancy map is recorded after each phase.
    pub const fn records_occupancy(self) -> bool {
        matches!(self, Workload::EveryOther | Workload::Survivors | Workload::Policy)
    }

    /// One sentence for the report: what the workload does, phase by phase.
    pub const fn description(self) -> &'static str {
        match self {
            Workload::Seed => {
                "Allocate N objects of S bytes, free them all, then call the allocator's release function."
            }
            Workload::EveryOther => {
                "Allocate N objects, free every second one (no two free neighbours), allocate N/2 again into the holes, free everything, release."
            }
            Workload::Survivors => {
                "Allocate N objects and free all but 1 in 1000: `spread` keeps every 1000th (scattered over all memory), `packed` keeps the first N/1000 (together at the start); then release with the survivors still alive."
            }
            Workload::FifoHalf => {
                "Allocate N objects, free the oldest half (a queue draining), free the rest, release."
            }
            Workload::Mixed => {
                "Allocate N objects of random sizes from 8 to 512 bytes (seeded), free a random half in random order, free the rest, release."
            }
            Workload::Large => {
                "64 MiB in 4 MiB blocks, freed; 64 MiB in 200 KiB blocks, freed (the first free raises glibc's mmap threshold); 64 MiB in 200 KiB blocks again, all freed but the last; release with that one still alive. N and S do not apply."
            }
            Workload::Policy => {
                "pymalloc only. Allocate N objects; keep a minority, dense in the older half of memory and sparse in the newer half; churn (rounds of allocating objects of another size class and freeing half of the previous round); the old sparse-half survivors die; free everything. `most-used-first` is CPython's arena order, `newest-first` the alternative."
            }
        }
    }
}

pub use crate::worker::MappedVec;

/// What a workload calls to record a phase: the worker measures the process and the
/// allocator. `release` also makes the allocator's release call first.
pub trait Recorder {
    /// Records phase `name` with `live` objects of `live_bytes` requested bytes alive.
    fn phase(&mut self, name: &str, live: u64, live_bytes: u64) -> Result<()>;
    /// Calls the allocator's release function, then records phase `release`.
    fn release(&mut self, live: u64, live_bytes: u64) -> Result<()>;
}

/// The allocator a workload runs against.
pub struct Target {
    /// Which of the lineup it is.
    pub allocator: Allocator,
    /// Where to allocate.
    pub alloc: &'static dyn GlobalAlloc,
    /// The pymalloc instance, when it is one: for its counters and occupancy snapshots.
    pub pymalloc: Option<&'static PyMalloc>,
    /// Whether this is the lineup's own instance (so `Allocator::stats()` describes it).
    pub is_lineup: bool,
}

impl Target {
    /// The target for a run: the lineup's allocator, or for `policy` a pymalloc built with the
    /// variant's arena policy and `layout`'s geometry (leaked: a `GlobalAlloc` must outlive
    /// every block it handed out).
    pub fn for_run(
        allocator: Allocator,
        workload: Workload,
        variant: &str,
        layout: pymalloc::Layout,
    ) -> Result<Target> {
        if workload != Workload::Policy {
            return Ok(Target {
                allocator,
                alloc: allocator.global(),
                pymalloc: (allocator == Allocator::Pymalloc).then(Allocator::pymalloc),
                is_lineup: true,
            });
        }
        if allocator != Allocator::Pymalloc {
            return Err(Error::Failed(format!(
                "workload policy runs only under pymalloc, not {allocator}"
            )));
        }
        let policy = match variant {
            "most-used-first" => ArenaPolicy::MostUsedFirst,
            "newest-first" => ArenaPolicy::NewestFirst,
            other => return Err(Error::Failed(format!("unknown policy variant {other:?}"))),
        };
        let geometry = layout.config();
        let cfg = Config::builder(Preset::Cpython310)
            .alignment(geometry.alignment())
            .small_request_threshold(geometry.small_request_threshold())
            .pool_size(geometry.pool_size())
            .arena_size(geometry.arena_size())
            .keep_last_empty_arena(geometry.keep_last_empty_arena())
            .policy(policy)
            .build()
            .map_err(|e| Error::Failed(format!("pymalloc config: {e}")))?;
        let heap: &'static PyMalloc = Box::leak(Box::new(PyMalloc::with_config(cfg)));
        Ok(Target { allocator, alloc: heap, pymalloc: Some(heap), is_lineup: false })
    }
}

/// Live objects of one workload: pointer and requested size per slot, in mapped memory.
struct Objects {
    alloc: &'static dyn GlobalAlloc,
    ptrs: MappedVec<*mut u8>,
    sizes: MappedVec<u32>,
    live: u64,
    live_bytes: u64,
}

/// Objects are aligned to 8 bytes, like most small C and Python objects.
const ALIGN: usize = 8;

impl Objects {
    fn new(alloc: &'static dyn GlobalAlloc, slots: usize) -> Result<Objects> {
        Ok(Objects {
            alloc,
            ptrs: MappedVec::filled(slots, core::ptr::null_mut())?,
            sizes: MappedVec::filled(slots, 0)?,
            live: 0,
            live_bytes: 0,
        })
    }

    fn pattern(i: usize) -> u8 {
        (i % 251) as u8 | 1
    }

    /// Allocates `size` bytes into slot `i` and writes every byte.
    fn alloc(&mut self, i: usize, size: usize) -> Result<()> {
        debug_assert!(self.ptrs[i].is_null(), "slot {i} is already in use");
        let layout = Layout::from_size_align(size, ALIGN)
            .map_err(|e| Error::Failed(format!("layout of {size} bytes: {e}")))?;
        // SAFETY: size > 0 (checked by the workload arguments).
        let p = unsafe { self.alloc.alloc(layout) };
        if p.is_null() {
            return Err(Error::Failed(format!("allocating {size} bytes for object {i} failed")));
        }
        // SAFETY: p points to `size` writable bytes just handed out.
        unsafe { p.write_bytes(Self::pattern(i), size) };
        self.ptrs[i] = p;
        self.sizes[i] = size as u32;
        self.live += 1;
        self.live_bytes += size as u64;
        Ok(())
    }

    /// Checks slot `i`'s first and last byte, then frees it.
    fn free(&mut self, i: usize) -> Result<()> {
        let p = self.ptrs[i];
        if p.is_null() {
            return Err(Error::Failed(format!("object {i} freed twice by the workload")));
        }
        let size = self.sizes[i] as usize;
        // SAFETY: p is a live block of `size` bytes that we wrote in `alloc`.
        let (first, last) = unsafe { (p.read(), p.add(size - 1).read()) };
        let want = Self::pattern(i);
        if first != want || last != want {
            return Err(Error::Failed(format!(
                "object {i} ({size} bytes) was overwritten: first/last byte {first:#x}/{last:#x}, expected {want:#x}"
            )));
        }
        let layout = Layout::from_size_align(size, ALIGN).expect("valid when allocated");
        // SAFETY: p came from this allocator with this layout and is freed once (slot cleared).
        unsafe { self.alloc.dealloc(p, layout) };
        self.ptrs[i] = core::ptr::null_mut();
        self.live -= 1;
        self.live_bytes -= size as u64;
        Ok(())
    }

    fn free_all(&mut self) -> Result<()> {
        for i in 0..self.ptrs.len() {
            if !self.ptrs[i].is_null() {
                self.free(i)?;
            }
        }
        Ok(())
    }

    fn phase(&self, rec: &mut dyn Recorder, name: &str) -> Result<()> {
        rec.phase(name, self.live, self.live_bytes)
    }

    fn release(&self, rec: &mut dyn Recorder) -> Result<()> {
        rec.release(self.live, self.live_bytes)
    }
}

/// Everything a workload needs, prepared before the baseline.
pub struct Prepared {
    workload: Workload,
    variant: String,
    n: usize,
    size: usize,
    objects: Objects,
    /// Slots for the second class of `policy`'s churn.
    churn: Option<Objects>,
    /// A permutation of 0..n for `mixed`, and its sizes written into `objects.sizes`.
    order: Option<MappedVec<u32>>,
    planned_sizes: Option<MappedVec<u32>>,
    /// For `policy`: blocks per pool of the object size, to place survivors by pool.
    blocks_per_pool: usize,
}

/// Maps the bookkeeping and warms the allocator up; after this, take the baseline.
pub fn prepare(args: &WorkerArgs, target: &Target) -> Result<Prepared> {
    let workload = Workload::from_name(&args.workload)
        .ok_or_else(|| Error::Failed(format!("unknown workload {:?}", args.workload)))?;
    let n = usize::try_from(args.objects)
        .map_err(|_| Error::Failed(format!("objects {} too large", args.objects)))?;
    let size = usize::try_from(args.size)
        .map_err(|_| Error::Failed(format!("size {} too large", args.size)))?;
    if n == 0 || size == 0 {
        return Err(Error::Failed("objects and size must be positive".into()));
    }
    let slots = match workload {
        Workload::Large => LARGE_TOTAL / MID_BLOCK + 1,
        _ => n,
    };
    let objects = Objects::new(target.alloc, slots)?;
    let (mut order, mut planned_sizes) = (None, None);
    if workload == Workload::Mixed {
        let mut rng = StdRng::seed_from_u64(SEED);
        let mut sizes = MappedVec::filled(n, 0u32)?;
        for s in sizes.iter_mut() {
            *s = rng.random_range(MIXED_SIZES.0..=MIXED_SIZES.1) as u32;
        }
        let mut perm = MappedVec::filled(n, 0u32)?;
        for (i, p) in perm.iter_mut().enumerate() {
            *p = i as u32;
        }
        perm.shuffle(&mut rng);
        order = Some(perm);
        planned_sizes = Some(sizes);
    }
    let cfg = Config::CPYTHON_3_10;
    let blocks_per_pool = cfg.size_class(size).map_or(1, |c| cfg.blocks_per_pool(c)).max(1);
    let churn = if workload == Workload::Policy {
        Some(Objects::new(target.alloc, policy_churn_slots(n))?)
    } else {
        None
    };
    // Warm-up: the allocator's one-off start-up cost is not part of any phase.
    let layout = Layout::from_size_align(size.min(LARGE_BLOCK), ALIGN)
        .map_err(|e| Error::Failed(format!("layout of {size} bytes: {e}")))?;
    // SAFETY: non-zero size.
    let p = unsafe { target.alloc.alloc(layout) };
    if p.is_null() {
        return Err(Error::Failed("warm-up allocation failed".into()));
    }
    // SAFETY: p is a live block of `layout`; written, then freed once.
    unsafe {
        p.write(1);
        target.alloc.dealloc(p, layout);
    }
    Ok(Prepared {
        workload,
        variant: args.variant.clone().unwrap_or_default(),
        n,
        size,
        objects,
        churn,
        order,
        planned_sizes,
        blocks_per_pool,
    })
}

/// Runs the prepared workload, calling `rec` after each phase. The baseline is recorded by the
/// caller before this.
pub fn run(p: &mut Prepared, rec: &mut dyn Recorder) -> Result<()> {
    let n = p.n;
    let size = p.size;
    let o = &mut p.objects;
    match p.workload {
        Workload::Seed => {
            for i in 0..n {
                o.alloc(i, size)?;
            }
            o.phase(rec, "alloc")?;
            o.free_all()?;
            o.phase(rec, "full free")?;
            o.release(rec)?;
        }
        Workload::EveryOther => {
            for i in 0..n {
                o.alloc(i, size)?;
            }
            o.phase(rec, "alloc")?;
            for i in (1..n).step_by(2) {
                o.free(i)?;
            }
            o.phase(rec, "partial free")?;
            for i in (1..n).step_by(2) {
                o.alloc(i, size)?;
            }
            o.phase(rec, "refill")?;
            o.free_all()?;
            o.phase(rec, "full free")?;
            o.release(rec)?;
        }
        Workload::Survivors => {
            for i in 0..n {
                o.alloc(i, size)?;
            }
            o.phase(rec, "alloc")?;
            let keep = survivors_keep(&p.variant, n)?;
            for i in 0..n {
                if !keep(i) {
                    o.free(i)?;
                }
            }
            o.phase(rec, "partial free")?;
            o.release(rec)?;
            o.free_all()?;
        }
        Workload::FifoHalf => {
            for i in 0..n {
                o.alloc(i, size)?;
            }
            o.phase(rec, "alloc")?;
            for i in 0..n / 2 {
                o.free(i)?;
            }
            o.phase(rec, "partial free")?;
            o.free_all()?;
            o.phase(rec, "full free")?;
            o.release(rec)?;
        }
        Workload::Mixed => {
            let sizes = p.planned_sizes.as_ref().expect("prepared for mixed");
            let order = p.order.as_ref().expect("prepared for mixed");
            for (i, &s) in sizes.iter().enumerate() {
                o.alloc(i, s as usize)?;
            }
            o.phase(rec, "alloc")?;
            for &i in &order[..n / 2] {
                o.free(i as usize)?;
            }
            o.phase(rec, "partial free")?;
            for &i in &order[n / 2..] {
                o.free(i as usize)?;
            }
            o.phase(rec, "full free")?;
            o.release(rec)?;
        }
        Workload::Large => run_large(o, rec)?,
        Workload::Policy => {
            let churn = p.churn.as_mut().expect("prepared for policy");
            run_policy(o, churn, n, size, p.blocks_per_pool, rec)?;
        }
    }
    Ok(())
}

/// `survivors` keeps one object in this many.
pub const SURVIVOR_EVERY: usize = 1000;

/// Which objects `survivors` keeps: 1 in [`SURVIVOR_EVERY`], spread or packed.
fn survivors_keep(variant: &str, n: usize) -> Result<Box<dyn Fn(usize) -> bool>> {
    let kept = n.div_ceil(SURVIVOR_EVERY);
    match variant {
        "spread" => Ok(Box::new(|i| i % SURVIVOR_EVERY == 0)),
        "packed" => Ok(Box::new(move |i| i < kept)),
        other => Err(Error::Failed(format!("unknown survivors variant {other:?}"))),
    }
}

fn run_large(o: &mut Objects, rec: &mut dyn Recorder) -> Result<()> {
    let big = LARGE_TOTAL / LARGE_BLOCK;
    let mid = LARGE_TOTAL / MID_BLOCK;
    for i in 0..big {
        o.alloc(i, LARGE_BLOCK)?;
    }
    o.phase(rec, "alloc 4M")?;
    o.free_all()?;
    o.phase(rec, "free 4M")?;
    for i in 0..mid {
        o.alloc(i, MID_BLOCK)?;
    }
    o.phase(rec, "alloc 200K")?;
    o.free_all()?;
    o.phase(rec, "free 200K")?;
    for i in 0..mid {
        o.alloc(i, MID_BLOCK)?;
    }
    o.phase(rec, "alloc 200K again")?;
    for i in 0..mid - 1 {
        o.free(i)?;
    }
    o.phase(rec, "free all but last")?;
    o.release(rec)?;
    o.free_all()
}

/// `policy`'s keep pattern repeats every this many pools (see `policy_keeps`).
pub const POLICY_PERIOD: usize = 16;

/// Rounds of `policy`'s churn phase.
pub const CHURN_ROUNDS: usize = 8;

/// Churn objects per round: N/64, so the churn's live set stays well inside the free pools the
/// older half leaves.
pub fn churn_per_round(n: usize) -> usize {
    (n / 64).max(1)
}

fn policy_churn_slots(n: usize) -> usize {
    churn_per_round(n) * CHURN_ROUNDS
}

/// Survivors of `policy`: the first block of a pool-sized run of objects is kept when the run's
/// index modulo 16 is below 12 in the older half (three pools in four stay in use) and is 0 in
/// the newer half (one pool in sixteen).
fn policy_keeps(i: usize, n: usize, blocks_per_pool: usize) -> bool {
    if !i.is_multiple_of(blocks_per_pool) {
        return false;
    }
    let pool = i / blocks_per_pool;
    if i < n / 2 { pool % POLICY_PERIOD < 12 } else { pool.is_multiple_of(POLICY_PERIOD) }
}

fn run_policy(
    o: &mut Objects,
    churn: &mut Objects,
    n: usize,
    size: usize,
    blocks_per_pool: usize,
    rec: &mut dyn Recorder,
) -> Result<()> {
    for i in 0..n {
        o.alloc(i, size)?;
    }
    o.phase(rec, "alloc")?;
    for i in 0..n {
        if !policy_keeps(i, n, blocks_per_pool) {
            o.free(i)?;
        }
    }
    o.phase(rec, "partial free")?;
    // Churn with another size class, so every churn object needs pools the policy places.
    let churn_size = (size * 2).clamp(MIXED_SIZES.0, MIXED_SIZES.1);
    let per = churn_per_round(n);
    let both = |o: &Objects, c: &Objects| (o.live + c.live, o.live_bytes + c.live_bytes);
    for round in 0..CHURN_ROUNDS {
        for i in round * per..(round + 1) * per {
            churn.alloc(i, churn_size)?;
        }
        if round > 0 {
            for i in ((round - 1) * per..round * per).step_by(2) {
                churn.free(i)?;
            }
        }
    }
    let (live, bytes) = both(o, churn);
    rec.phase("churn", live, bytes)?;
    for i in n / 2..n {
        if !o.ptrs[i].is_null() {
            o.free(i)?;
        }
    }
    let (live, bytes) = both(o, churn);
    rec.phase("old die", live, bytes)?;
    o.free_all()?;
    churn.free_all()?;
    o.phase(rec, "full free")?;
    o.release(rec)
}

/// Names of the phases a workload records, in order (baseline first).
pub fn phase_names(workload: Workload) -> &'static [&'static str] {
    match workload {
        Workload::Seed => &["baseline", "alloc", "full free", "release"],
        Workload::EveryOther => {
            &["baseline", "alloc", "partial free", "refill", "full free", "release"]
        }
        Workload::Survivors => &["baseline", "alloc", "partial free", "release"],
        Workload::FifoHalf | Workload::Mixed => {
            &["baseline", "alloc", "partial free", "full free", "release"]
        }
        Workload::Large => &[
            "baseline",
            "alloc 4M",
            "free 4M",
            "alloc 200K",
            "free 200K",
            "alloc 200K again",
            "free all but last",
            "release",
        ],
        Workload::Policy => {
            &["baseline", "alloc", "partial free", "churn", "old die", "full free", "release"]
        }
    }
}

/// Checks that recorded phases have the expected names (a worker bug otherwise).
pub fn check_phases(workload: Workload, phases: &[Phase]) -> Result<()> {
    let got: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
    if got != phase_names(workload) {
        return Err(Error::Failed(format!(
            "workload {} recorded phases {got:?}, expected {:?}",
            workload.name(),
            phase_names(workload)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(Workload::from_name(w.name()), Some(w));
        }
        assert_eq!(Workload::from_name("nope"), None);
    }

    #[test]
    fn a_mapped_vec_is_filled_and_indexable() {
        let mut v = MappedVec::filled(10_000, 7u32).unwrap();
        assert_eq!(v.len(), 10_000);
        assert!(v.iter().all(|&x| x == 7));
        v[9_999] = 3;
        assert_eq!(v[9_999], 3);
    }

    #[test]
    fn policy_survivors_are_dense_in_the_older_half_and_sparse_in_the_newer() {
        let (n, bpp) = (1_000_000, 510);
        let old = (0..n / 2).filter(|&i| policy_keeps(i, n, bpp)).count();
        let new = (n / 2..n).filter(|&i| policy_keeps(i, n, bpp)).count();
        let pools_half = n / 2 / bpp;
        assert!((old as f64 / pools_half as f64 - 0.75).abs() < 0.02, "{old}");
        assert!((new as f64 / pools_half as f64 - 1.0 / 16.0).abs() < 0.02, "{new}");
    }
}
